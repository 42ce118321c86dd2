//! Per-sink accounting: `received = sent + dropped + queued`, at every moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::telemetry::{DropReason, SinkMetrics, Stage};

/// The single owner of a sink's counters. `queued` counts samples in the
/// queue *and* in the sink worker's hands, so the identity holds while a
/// request is in flight; `tsrelay_queue_samples{sink}` shows it.
#[derive(Clone)]
pub struct Ledger {
    pub metrics: SinkMetrics,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    queued: AtomicI64,
    received: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of a ledger, for checks and tests (the same numbers as `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerTotals {
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
    pub queued: i64,
}

impl LedgerTotals {
    /// `received = sent + dropped + queued`.
    pub fn balanced(&self) -> bool {
        self.received as i128 == self.sent as i128 + self.dropped as i128 + self.queued as i128
    }
}

impl Ledger {
    pub fn new(metrics: SinkMetrics) -> Self {
        Ledger { metrics, counts: Default::default() }
    }

    pub fn name(&self) -> &str {
        &self.metrics.name
    }

    /// Fanout handed `n` samples to this sink (or a disk queue found them at start-up).
    pub fn offered(&self, n: usize) {
        self.metrics.received_samples.increment(n as u64);
        self.counts.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` samples entered the queue.
    pub fn enqueued(&self, n: usize) {
        self.adjust_queued(n as i64);
    }

    /// `n` offered samples never entered the queue.
    pub fn refused(&self, reason: DropReason, n: usize) {
        self.count_dropped(Stage::Queue, reason, n);
    }

    /// `n` queued samples were evicted to make room (`drop_oldest`) or found damaged.
    pub fn evicted(&self, reason: DropReason, n: usize) {
        self.count_dropped(Stage::Queue, reason, n);
        self.adjust_queued(-(n as i64));
    }

    /// `n` queued samples were delivered.
    pub fn sent(&self, n: usize) {
        self.metrics.sent_samples.increment(n as u64);
        self.counts.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.adjust_queued(-(n as i64));
    }

    /// `n` queued samples ended in a drop at the sink.
    pub fn failed(&self, reason: DropReason, n: usize) {
        self.count_dropped(Stage::Sink, reason, n);
        self.adjust_queued(-(n as i64));
    }

    pub fn queued(&self) -> i64 {
        self.counts.queued.load(Ordering::Relaxed)
    }

    pub fn totals(&self) -> LedgerTotals {
        LedgerTotals {
            received: self.counts.received.load(Ordering::Relaxed),
            sent: self.counts.sent.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            queued: self.queued(),
        }
    }

    /// Counts whatever is still queued as dropped for `reason` (shutdown).
    pub fn abandon_queued(&self, reason: DropReason) -> u64 {
        let n = self.counts.queued.swap(0, Ordering::Relaxed).max(0) as u64;
        self.metrics.dropped(Stage::Queue, reason, n);
        self.counts.dropped.fetch_add(n, Ordering::Relaxed);
        self.metrics.queue_samples.decrement(n as f64);
        n
    }

    fn count_dropped(&self, stage: Stage, reason: DropReason, n: usize) {
        if n > 0 {
            self.metrics.dropped(stage, reason, n as u64);
            self.counts.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The gauge moves by the same delta as the count, atomically: two
    /// concurrent updates cannot leave it at a stale value (a `set` of each
    /// one's result could land in either order).
    fn adjust_queued(&self, delta: i64) {
        self.counts.queued.fetch_add(delta, Ordering::Relaxed);
        self.metrics.queue_samples.increment(delta as f64);
    }
}
