//! Delivery acknowledgements.
//!
//! An [`Ack`] travels with a batch and with every piece the batch is split
//! into (shards) or shared as (fanout). It completes when the last clone is
//! dropped, i.e. when every sink has delivered, durably queued or counted as
//! dropped its copy. Completion never depends on a sink remembering to call
//! something: dropping the data is enough, so no path can leak an ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// How the samples behind an ack ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckOutcome {
    /// At least one sample was counted as dropped somewhere downstream.
    pub dropped_any: bool,
}

#[derive(Debug)]
struct AckInner {
    dropped_any: AtomicBool,
    done: Mutex<Option<oneshot::Sender<AckOutcome>>>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(tx) = self.done.get_mut().take() {
            let _ = tx.send(AckOutcome { dropped_any: *self.dropped_any.get_mut() });
        }
    }
}

/// A shared handle; cloning it is one atomic increment.
#[derive(Debug, Clone)]
pub struct Ack(Arc<AckInner>);

/// Resolves once every clone of the matching [`Ack`] is gone.
pub type AckReceiver = oneshot::Receiver<AckOutcome>;

impl Ack {
    pub fn new() -> (Ack, AckReceiver) {
        let (tx, rx) = oneshot::channel();
        let inner = AckInner { dropped_any: AtomicBool::new(false), done: Mutex::new(Some(tx)) };
        (Ack(Arc::new(inner)), rx)
    }

    /// Records that some of the samples were dropped (still an acknowledgement:
    /// the loss is counted, the sender need not resend).
    pub fn mark_dropped(&self) {
        self.0.dropped_any.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_when_last_clone_drops() {
        let (ack, mut rx) = Ack::new();
        let a2 = ack.clone();
        drop(ack);
        assert!(rx.try_recv().is_err());
        a2.mark_dropped();
        drop(a2);
        assert_eq!(rx.await.unwrap(), AckOutcome { dropped_any: true });
    }
}
