use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{Ledger, WhenFull};
use crate::model::Batch;
use crate::telemetry::DropReason;

struct State {
    items: VecDeque<Arc<Batch>>,
    samples: usize,
    closed: bool,
}

/// A bounded in-memory queue of shared batches, one consumer side per sink.
pub struct MemoryQueue {
    state: Mutex<State>,
    capacity: usize,
    when_full: WhenFull,
    not_empty: Notify,
    not_full: Notify,
    ledger: Ledger,
}

impl MemoryQueue {
    pub fn new(capacity: usize, when_full: WhenFull, ledger: Ledger) -> Self {
        ledger.metrics.queue_capacity_samples.set(capacity as f64);
        MemoryQueue {
            state: Mutex::new(State { items: VecDeque::new(), samples: 0, closed: false }),
            capacity,
            when_full,
            not_empty: Notify::new(),
            not_full: Notify::new(),
            ledger,
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Offers a batch; applies `when_full`. With `block` this waits for room
    /// and the wait is added to `tsrelay_fanout_blocked_seconds_total`.
    pub async fn push(&self, batch: Arc<Batch>) {
        let n = batch.len();
        if n == 0 {
            return;
        }
        // `offered` is counted only once the batch's fate is decided, next to
        // that decision: a batch waiting in a blocked push is in no column yet,
        // so `received = sent + dropped + queued` also holds while fanout waits.
        let mut blocked_since: Option<Instant> = None;
        loop {
            let notified = self.not_full.notified();
            tokio::pin!(notified);
            {
                let mut st = self.state.lock();
                if st.closed {
                    drop(st);
                    batch.mark_dropped();
                    self.ledger.offered(n);
                    self.ledger.refused(DropReason::Shutdown, n);
                    break;
                }
                // An oversized batch is admitted into an empty queue, or it could never enter.
                if st.samples + n <= self.capacity || st.items.is_empty() {
                    st.samples += n;
                    st.items.push_back(batch);
                    drop(st);
                    self.ledger.offered(n);
                    self.ledger.enqueued(n);
                    self.not_empty.notify_one();
                    break;
                }
                match self.when_full {
                    WhenFull::DropNewest => {
                        drop(st);
                        batch.mark_dropped();
                        self.ledger.offered(n);
                        self.ledger.refused(DropReason::QueueFull, n);
                        break;
                    }
                    WhenFull::DropOldest => {
                        let mut evicted = 0;
                        while st.samples + n > self.capacity {
                            let Some(old) = st.items.pop_front() else {
                                break;
                            };
                            st.samples -= old.len();
                            evicted += old.len();
                            old.mark_dropped();
                        }
                        st.samples += n;
                        st.items.push_back(batch);
                        drop(st);
                        self.ledger.offered(n);
                        self.ledger.evicted(DropReason::QueueFull, evicted);
                        self.ledger.enqueued(n);
                        self.not_empty.notify_one();
                        break;
                    }
                    WhenFull::Block => {
                        notified.as_mut().enable();
                    }
                }
            }
            blocked_since.get_or_insert_with(Instant::now);
            notified.await;
        }
        if let Some(t) = blocked_since {
            self.ledger.metrics.fanout_blocked_seconds.increment(t.elapsed().as_secs_f64());
        }
    }

    /// Takes the next batch without waiting.
    pub fn try_pop(&self) -> Option<Arc<Batch>> {
        let mut st = self.state.lock();
        let b = st.items.pop_front()?;
        st.samples -= b.len();
        drop(st);
        self.not_full.notify_waiters();
        Some(b)
    }

    /// Waits for the next batch; `None` once closed and empty. Cancel-safe.
    pub async fn pop(&self) -> Option<Arc<Batch>> {
        loop {
            let notified = self.not_empty.notified();
            tokio::pin!(notified);
            {
                let mut st = self.state.lock();
                if let Some(b) = st.items.pop_front() {
                    st.samples -= b.len();
                    let more = !st.items.is_empty();
                    drop(st);
                    self.not_full.notify_waiters();
                    if more {
                        self.not_empty.notify_one();
                    }
                    return Some(b);
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
        self.state.lock().closed = true;
        self.not_empty.notify_waiters();
        self.not_empty.notify_one();
        self.not_full.notify_waiters();
    }

    pub fn len_samples(&self) -> usize {
        self.state.lock().samples
    }
}
