//! Per-sink accounting: `received = sent + dropped + queued`, at every moment.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::telemetry::{DropReason, SinkMetrics, Stage};

/// The single owner of a sink's counters. `queued` counts samples in the
/// queue *and* in the sink worker's hands, so the identity holds while a
/// request is in flight.
#[derive(Clone)]
pub struct Ledger {
    pub metrics: SinkMetrics,
    queued: std::sync::Arc<AtomicI64>,
}

impl Ledger {
    pub fn new(metrics: SinkMetrics) -> Self {
        Ledger { metrics, queued: Default::default() }
    }

    pub fn name(&self) -> &str {
        &self.metrics.name
    }

    /// Fanout handed `n` samples to this sink.
    pub fn offered(&self, n: usize) {
        self.metrics.received_samples.increment(n as u64);
    }

    /// `n` samples entered the queue.
    pub fn enqueued(&self, n: usize) {
        self.adjust_queued(n as i64);
    }

    /// `n` offered samples never entered the queue.
    pub fn refused(&self, reason: DropReason, n: usize) {
        self.metrics.dropped(Stage::Queue, reason, n as u64);
    }

    /// `n` queued samples were evicted to make room (`drop_oldest`).
    pub fn evicted(&self, reason: DropReason, n: usize) {
        self.metrics.dropped(Stage::Queue, reason, n as u64);
        self.adjust_queued(-(n as i64));
    }

    /// `n` queued samples were delivered.
    pub fn sent(&self, n: usize) {
        self.metrics.sent_samples.increment(n as u64);
        self.adjust_queued(-(n as i64));
    }

    /// `n` queued samples ended in a drop at the sink.
    pub fn failed(&self, reason: DropReason, n: usize) {
        self.metrics.dropped(Stage::Sink, reason, n as u64);
        self.adjust_queued(-(n as i64));
    }

    pub fn queued(&self) -> i64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Counts whatever is still queued as dropped for `reason` (shutdown).
    pub fn abandon_queued(&self, reason: DropReason) -> u64 {
        let n = self.queued.swap(0, Ordering::Relaxed).max(0) as u64;
        self.metrics.dropped(Stage::Queue, reason, n);
        self.metrics.queue_samples.set(0.0);
        n
    }

    fn adjust_queued(&self, delta: i64) {
        let now = self.queued.fetch_add(delta, Ordering::Relaxed) + delta;
        self.metrics.queue_samples.set(now as f64);
    }
}
