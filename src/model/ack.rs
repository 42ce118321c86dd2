//! Delivery acknowledgements, failing closed.
//!
//! An [`Ack`] travels with a batch and with every piece the batch is split
//! into (shards) or shared as (fanout). Every clone is an *obligation*: its
//! holder either [settles](Ack::settle) it — its samples were delivered,
//! durably queued or counted as dropped — or hands it on. The acknowledgement
//! completes when the last clone is gone, and it reports success only if every
//! clone was settled: a clone dropped unsettled (a task aborted at the shutdown
//! timeout, a panic unwinding, a batch lost on a closed channel) makes it a
//! failure, so `ack = "delivered"` answers 503 and Kafka does not commit.
//! Nothing can complete an acknowledgement successfully by forgetting it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// How the samples behind an ack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOutcome {
    /// At least one sample was counted as dropped somewhere downstream.
    pub dropped_any: bool,
    /// Some copy was abandoned unsettled: the samples may be lost and were not
    /// counted; the sender must treat the data as not delivered.
    pub unsettled: bool,
}

impl AckOutcome {
    /// Every copy was settled (delivered, durably queued or counted as dropped).
    pub fn settled(&self) -> bool {
        !self.unsettled
    }
}

#[derive(Debug)]
struct AckInner {
    dropped_any: AtomicBool,
    unsettled: AtomicBool,
    done: Mutex<Option<oneshot::Sender<AckOutcome>>>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(tx) = self.done.get_mut().take() {
            let outcome = AckOutcome { dropped_any: *self.dropped_any.get_mut(), unsettled: *self.unsettled.get_mut() };
            let _ = tx.send(outcome);
        }
    }
}

/// A shared handle; cloning it is one atomic increment and creates one more
/// obligation to [settle](Ack::settle).
#[derive(Debug)]
pub struct Ack {
    inner: Arc<AckInner>,
    /// Dropping an armed clone marks the acknowledgement as failed.
    armed: bool,
}

impl Clone for Ack {
    fn clone(&self) -> Self {
        Ack { inner: self.inner.clone(), armed: true }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if self.armed {
            self.inner.unsettled.store(true, Ordering::Relaxed);
        }
    }
}

/// Resolves once every clone of the matching [`Ack`] is gone.
pub type AckReceiver = oneshot::Receiver<AckOutcome>;

impl Ack {
    pub fn new() -> (Ack, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        let inner = AckInner {
            dropped_any: AtomicBool::new(false),
            unsettled: AtomicBool::new(false),
            done: Mutex::new(Some(tx)),
        };
        (Ack { inner: Arc::new(inner), armed: true }, rx)
    }

    /// Records that some of the samples were dropped (still an acknowledgement:
    /// the loss is counted, the sender need not resend).
    pub fn mark_dropped(&self) {
        self.inner.dropped_any.store(true, Ordering::Relaxed);
    }

    /// This copy's samples are done (delivered, durably queued or counted as dropped).
    pub fn settle(mut self) {
        self.armed = false;
    }

    /// Turns this clone into a passive one: it keeps the acknowledgement open
    /// while it lives but carries no obligation (the holder handed its
    /// obligation on in clones, e.g. one per sink queue).
    pub fn into_passive(mut self) -> Ack {
        self.armed = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_when_last_clone_settles() {
        let (ack, mut rx) = Ack::new();
        let a2 = ack.clone();
        ack.settle();
        assert!(rx.try_recv().is_err());
        a2.mark_dropped();
        a2.settle();
        assert_eq!(rx.await.unwrap(), AckOutcome { dropped_any: true, unsettled: false });
    }

    #[tokio::test]
    async fn a_clone_dropped_unsettled_fails_the_ack() {
        let (ack, rx) = Ack::new();
        let lost = ack.clone();
        ack.settle();
        drop(lost);
        let outcome = rx.await.unwrap();
        assert!(!outcome.settled(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_passive_clone_holds_the_ack_open_without_an_obligation() {
        let (ack, mut rx) = Ack::new();
        let passive = ack.clone().into_passive();
        ack.settle();
        assert!(rx.try_recv().is_err(), "still open while the passive clone lives");
        drop(passive);
        assert!(rx.await.unwrap().settled());
    }

    #[tokio::test]
    async fn a_panic_unwinding_past_a_clone_fails_the_ack() {
        let (ack, rx) = Ack::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = ack;
            panic!("test panic");
        }));
        assert!(r.is_err());
        assert!(!rx.await.unwrap().settled());
    }
}
