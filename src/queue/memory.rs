//! `queue.type = "memory"`: a bounded in-memory queue of shared batches.
//!
//! The bound (`max_samples`) covers every sample the sink holds, not only
//! those waiting here: a popped batch keeps its room until the sink worker
//! has settled all of its samples (delivered, or counted as dropped). So the
//! queue, the worker's lanes and the requests in flight together never hold
//! more than `max_samples` (beyond one oversized batch admitted into an empty
//! sink), and `when_full` acts once that total is reached.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Ledger, WhenFull};
use crate::model::{Ack, Batch};
use crate::telemetry::DropReason;

/// A queued batch and this sink's obligation for its acknowledgement.
struct Entry {
    batch: Arc<Batch>,
    ack: Option<Ack>,
}

impl Entry {
    /// The batch was counted as dropped here: its obligation is settled.
    fn dropped(self) {
        self.batch.mark_dropped();
        if let Some(a) = self.ack {
            a.mark_dropped();
            a.settle();
        }
    }

    /// The batch is destroyed at shutdown: counted (`reason="shutdown"`), but
    /// not delivered, so its acknowledgement fails and the sender resends.
    fn abandoned(self) {
        self.batch.mark_dropped();
        if let Some(a) = &self.ack {
            a.mark_dropped();
        }
    }
}

struct State {
    items: VecDeque<Entry>,
    /// Samples waiting in `items`.
    waiting: usize,
    /// Samples the sink holds: waiting, plus handed out and not yet settled.
    held: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    when_full: WhenFull,
    not_empty: Notify,
    not_full: Notify,
    ledger: Ledger,
}

impl Shared {
    /// `n` handed-out samples are settled (or abandoned): their room is free.
    fn release(&self, n: usize) {
        let mut st = self.state.lock();
        st.held = st.held.saturating_sub(n);
        drop(st);
        self.not_full.notify_waiters();
    }
}

/// A bounded in-memory queue of shared batches, one consumer side per sink.
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

/// One batch handed to the sink worker: keeps its room in the queue and its
/// acknowledgement obligation until all of its samples are settled. Dropped
/// before that (the worker was aborted, a lane panicked), it frees the room
/// and fails the acknowledgement.
pub struct MemoryToken {
    samples: usize,
    settled: AtomicUsize,
    ack: Mutex<Option<Ack>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryToken").field("samples", &self.samples).finish()
    }
}

impl MemoryToken {
    pub(crate) fn settle(&self, n: usize) {
        let before = self.settled.fetch_add(n, Ordering::AcqRel);
        if before < self.samples && before + n >= self.samples {
            self.shared.release(self.samples);
            if let Some(a) = self.ack.lock().take() {
                a.settle();
            }
        }
    }
}

impl Drop for MemoryToken {
    fn drop(&mut self) {
        let settled = *self.settled.get_mut();
        if settled < self.samples {
            // The unsettled rest stays `queued` in the ledger (counted at
            // shutdown); the room is freed, the ack (still armed) fails.
            self.shared.release(self.samples);
        }
    }
}

impl MemoryQueue {
    pub fn new(capacity: usize, when_full: WhenFull, ledger: Ledger) -> Self {
        ledger.metrics.queue_capacity_samples.set(capacity as f64);
        let state = State { items: VecDeque::new(), waiting: 0, held: 0, closed: false };
        MemoryQueue {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                capacity,
                when_full,
                not_empty: Notify::new(),
                not_full: Notify::new(),
                ledger,
            }),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.shared.ledger
    }

    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Offers a batch; applies `when_full` to everything the sink holds.
    /// With `block` this waits for room and the wait is added to
    /// `tsrelay_fanout_blocked_seconds_total`.
    pub async fn push(&self, batch: Arc<Batch>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        let sh = &*self.shared;
        let entry = Entry { ack: batch.ack.clone(), batch };
        // `offered` is counted only once the batch's fate is decided, next to
        // that decision: a batch waiting in a blocked push is in no column yet,
        // so `received = sent + dropped + queued` also holds while fanout waits.
        let mut blocked_since: Option<Instant> = None;
        let mut entry = Some(entry);
        loop {
            let notified = sh.not_full.notified();
            tokio::pin!(notified);
            {
                let mut st = sh.state.lock();
                let e = entry.take().expect("pushed at most once");
                if st.closed {
                    drop(st);
                    sh.ledger.offered(n);
                    sh.ledger.refused(DropReason::Shutdown, n);
                    e.abandoned();
                    break;
                }
                // An oversized batch is admitted into an empty sink, or it could never enter.
                if st.held + n <= sh.capacity || st.held == 0 {
                    self.admit(st, e, n);
                    break;
                }
                match sh.when_full {
                    WhenFull::DropNewest => {
                        drop(st);
                        sh.ledger.offered(n);
                        sh.ledger.refused(DropReason::QueueFull, n);
                        e.dropped();
                        break;
                    }
                    WhenFull::DropOldest => {
                        // The oldest samples the sink can still give up are the
                        // oldest waiting ones; those in requests are on their way.
                        let mut evicted = Vec::new();
                        let mut count = 0;
                        while st.held + n > sh.capacity {
                            let Some(old) = st.items.pop_front() else { break };
                            let k = old.batch.len();
                            st.waiting -= k;
                            st.held -= k;
                            count += k;
                            evicted.push(old);
                        }
                        let fits = st.held + n <= sh.capacity || st.held == 0;
                        sh.ledger.evicted(DropReason::QueueFull, count);
                        if fits {
                            self.admit(st, e, n);
                        } else {
                            // Everything older is in the worker's hands: the
                            // newest batch is the only one left to drop.
                            drop(st);
                            sh.ledger.offered(n);
                            sh.ledger.refused(DropReason::QueueFull, n);
                            e.dropped();
                        }
                        for old in evicted {
                            old.dropped();
                        }
                        break;
                    }
                    WhenFull::Block => {
                        entry = Some(e);
                        notified.as_mut().enable();
                    }
                }
            }
            blocked_since.get_or_insert_with(Instant::now);
            notified.await;
        }
        if let Some(t) = blocked_since {
            sh.ledger.metrics.fanout_blocked_seconds.increment(t.elapsed().as_secs_f64());
        }
    }

    fn admit(&self, mut st: parking_lot::MutexGuard<'_, State>, e: Entry, n: usize) {
        let sh = &*self.shared;
        st.waiting += n;
        st.held += n;
        st.items.push_back(e);
        // Counted under the lock, so a concurrent pop cannot settle samples
        // the ledger does not yet count as queued.
        sh.ledger.offered(n);
        sh.ledger.enqueued(n);
        drop(st);
        sh.not_empty.notify_one();
    }

    fn token(&self, e: Entry) -> (Arc<Batch>, Arc<MemoryToken>) {
        let token = MemoryToken {
            samples: e.batch.len(),
            settled: AtomicUsize::new(0),
            ack: Mutex::new(e.ack),
            shared: self.shared.clone(),
        };
        (e.batch, Arc::new(token))
    }

    /// Takes the next batch without waiting.
    pub fn try_pop(&self) -> Option<(Arc<Batch>, Arc<MemoryToken>)> {
        let mut st = self.shared.state.lock();
        let e = st.items.pop_front()?;
        st.waiting -= e.batch.len();
        drop(st);
        Some(self.token(e))
    }

    /// Waits for the next batch; `None` once closed and empty. Cancel-safe.
    pub async fn pop(&self) -> Option<(Arc<Batch>, Arc<MemoryToken>)> {
        let sh = &*self.shared;
        loop {
            let notified = sh.not_empty.notified();
            tokio::pin!(notified);
            {
                let mut st = sh.state.lock();
                if let Some(e) = st.items.pop_front() {
                    st.waiting -= e.batch.len();
                    let more = !st.items.is_empty();
                    drop(st);
                    if more {
                        sh.not_empty.notify_one();
                    }
                    return Some(self.token(e));
                }
                if st.closed {
                    return None;
                }
                notified.as_mut().enable();
            }
            notified.await;
        }
    }

    /// No more pushes; the consumer drains what is left and then sees `None`.
    pub fn close(&self) {
        let sh = &*self.shared;
        sh.state.lock().closed = true;
        sh.not_empty.notify_waiters();
        sh.not_empty.notify_one();
        sh.not_full.notify_waiters();
    }

    /// Samples waiting to be popped.
    pub fn len_samples(&self) -> usize {
        self.shared.state.lock().waiting
    }

    /// Samples the sink holds: waiting, and popped but not yet settled.
    pub fn held_samples(&self) -> usize {
        self.shared.state.lock().held
    }

    /// After the worker stopped: what is still waiting is destroyed (the
    /// caller counts it as `shutdown`); its acknowledgements fail.
    pub(crate) fn drain_waiting(&self) {
        let items: Vec<Entry> = {
            let mut st = self.shared.state.lock();
            st.waiting = 0;
            st.items.drain(..).collect()
        };
        for e in items {
            e.abandoned();
        }
    }
}
