//! The receivers' side of a pipeline: admission into its ingest queue, then
//! the stateless stages and the shard split, run to completion on the task
//! that received the data (issue #17 item 3).
//!
//! The ingest queue is a budget of batches, not a channel: a batch is
//! admitted when a slot is free, runs through normalize and validate on the
//! receiving task, and its per-shard parts go straight to the shards. The
//! slot is freed once every shard has finished its part (fanned out to the
//! sink queues or dropped). Admission is the only wait a receiver sees: once
//! admitted, nothing blocks it (the shard channels never hold more than the
//! budget), so `max_wait_ms` bounds how long a request waits.
//!
//! Order: a receiving task hands a request's parts to the shards before it
//! answers, and the shards take their channels in order, so two requests of
//! one sender (one connection, stream or partition) reach every series' shard
//! in the order they were sent; there is no hand-off between tasks left to
//! reorder them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{ShardBatch, StatelessStage, flush_drops, split_by_series};
use crate::model::{Ack, Batch, Sample};
use crate::telemetry::{DropReason, Stage, pipeline_dropped};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("pipeline {pipeline}: ingest queue full for {waited:?}")]
    Full { pipeline: Arc<str>, waited: Duration, batch: Batch },
    #[error("pipeline {pipeline} is shutting down")]
    Closed { pipeline: Arc<str>, batch: Batch },
}

/// Most samples in one batch on the ingest queue. A larger request is split,
/// so the queue holds at most `slots × INGEST_BATCH_MAX_SAMPLES` samples: a
/// bound the start-up memory check can count on.
pub const INGEST_BATCH_MAX_SAMPLES: usize = 4096;

/// What runs between admission and the shards: the stateless stages and the
/// shards' channels. Shared by every clone of a [`PipelineInput`]; the shards
/// stop once the last clone is gone.
pub(super) struct Front {
    pub(super) stateless: Vec<Box<dyn StatelessStage>>,
    pub(super) shards: Vec<mpsc::UnboundedSender<ShardBatch>>,
}

/// A cheap, cloneable handle receivers use to hand batches to a pipeline.
#[derive(Clone)]
pub struct PipelineInput {
    pipeline: Arc<str>,
    /// One permit per batch in the pipeline (admitted, not yet finished by
    /// every shard): the ingest queue's bound.
    slots: Arc<Semaphore>,
    front: Arc<Front>,
}

impl PipelineInput {
    pub(super) fn new(pipeline: Arc<str>, slots: usize, front: Front) -> Self {
        PipelineInput { pipeline, slots: Arc::new(Semaphore::new(slots)), front: Arc::new(front) }
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Admits, waiting at most `max_wait` for room (HTTP, gRPC unary), then
    /// runs the batch to the shards. A large batch is split; it is accepted
    /// whole or not at all.
    pub async fn send_within(&self, batch: Batch, max_wait: Duration) -> Result<(), IngestError> {
        if self.closed() {
            return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch });
        }
        if batch.len() <= INGEST_BATCH_MAX_SAMPLES {
            return match tokio::time::timeout(max_wait, self.slot()).await {
                Ok(Some(slot)) => {
                    self.run(batch, slot);
                    Ok(())
                }
                Ok(None) => Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch }),
                Err(_) => Err(IngestError::Full { pipeline: self.pipeline.clone(), waited: max_wait, batch }),
            };
        }
        self.send_parts_within(split(batch), max_wait).await
    }

    /// [`send_within`](Self::send_within) for a request already in parts of at most
    /// [`INGEST_BATCH_MAX_SAMPLES`] samples (see [`parts_of`]): accepted whole or not at all.
    pub async fn send_parts_within(&self, parts: Vec<Batch>, max_wait: Duration) -> Result<(), IngestError> {
        if self.closed() {
            return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch: join(parts) });
        }
        // The first part is admitted within `max_wait` or the whole request
        // is refused; once admitted, the rest follow as the pipeline makes
        // room, so a request is never half accepted.
        let slot = match tokio::time::timeout(max_wait, self.slot()).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch: join(parts) }),
            Err(_) => {
                return Err(IngestError::Full {
                    pipeline: self.pipeline.clone(),
                    waited: max_wait,
                    batch: join(parts),
                });
            }
        };
        let mut parts = parts.into_iter();
        if let Some(first) = parts.next() {
            self.run(first, slot);
        }
        self.send_parts(parts).await
    }

    /// Admits, waiting as long as it takes (gRPC streams, Kafka): the
    /// caller stops reading its source meanwhile, which is the backpressure.
    pub async fn send(&self, batch: Batch) -> Result<(), IngestError> {
        if self.closed() {
            return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch });
        }
        if batch.len() <= INGEST_BATCH_MAX_SAMPLES {
            return self.send_parts(std::iter::once(batch)).await;
        }
        self.send_parts(split(batch).into_iter()).await
    }

    async fn send_parts(&self, mut parts: impl Iterator<Item = Batch>) -> Result<(), IngestError> {
        while let Some(part) = parts.next() {
            match self.slot().await {
                Some(slot) => self.run(part, slot),
                None => {
                    let rest = std::iter::once(part).chain(parts).collect();
                    return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch: join(rest) });
                }
            }
        }
        Ok(())
    }

    /// Free slots (in batches) in the ingest queue right now.
    pub fn capacity(&self) -> usize {
        self.slots.available_permits()
    }

    /// The shards are gone: only while the daemon stops (or after a shard
    /// task failed, which stops it).
    fn closed(&self) -> bool {
        self.front.shards.iter().any(mpsc::UnboundedSender::is_closed)
    }

    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }

    /// Runs one admitted batch through the stateless stages on this task and
    /// hands its parts to their shards; the slot goes with the parts.
    fn run(&self, mut batch: Batch, slot: OwnedSemaphorePermit) {
        let mut drops = super::DropTally::default();
        let mut hashed = false;
        for stage in &self.front.stateless {
            if batch.samples.is_empty() {
                break;
            }
            hashed = stage.process_hashed(&mut batch.samples, &mut batch.hashes, &mut drops);
        }
        if !hashed {
            batch.hashes.clear();
        }
        flush_drops(&self.pipeline, &mut drops, batch.ack.as_ref());
        if batch.samples.is_empty() {
            // Every sample was counted as dropped by a stage: this copy is settled.
            if let Some(a) = batch.ack.take() {
                a.settle();
            }
            return;
        }
        let slot = Arc::new(slot);
        for (shard, part) in split_by_series(batch, self.front.shards.len()).into_iter().enumerate() {
            let Some(mut part) = part else { continue };
            part.slot = Some(slot.clone());
            if let Err(mpsc::error::SendError(lost)) = self.front.shards[shard].send(part) {
                // Only during shutdown: the shard is gone.
                pipeline_dropped(&self.pipeline, Stage::Normalize, DropReason::Shutdown)
                    .increment(lost.samples.len() as u64);
                if let Some(a) = lost.ack {
                    a.mark_dropped();
                    a.settle();
                }
            }
        }
    }
}

/// Splits a batch into parts of at most [`INGEST_BATCH_MAX_SAMPLES`], each
/// carrying the batch's ack (it completes when the last part is done).
///
/// Each part gets a buffer of its own size and every sample is moved once; the request's
/// buffer is freed when the split is done. (Splitting with `split_off` left every part
/// holding the whole remaining buffer: a 200,000-sample request then held ~50 buffers of
/// up to its full size, ~25× its samples' memory.)
fn split(batch: Batch) -> Vec<Batch> {
    let Batch { samples, ack, received_at, .. } = batch;
    let count = samples.len().div_ceil(INGEST_BATCH_MAX_SAMPLES);
    let mut parts = Vec::with_capacity(count);
    let mut rest = samples.into_iter();
    for _ in 1..count {
        let part: Vec<Sample> = rest.by_ref().take(INGEST_BATCH_MAX_SAMPLES).collect();
        parts.push(Batch { samples: part, hashes: Vec::new(), ack: ack.clone(), received_at });
    }
    parts.push(Batch { samples: rest.collect(), hashes: Vec::new(), ack, received_at });
    parts
}

/// The batches of a request a decoder delivered in parts (each of at most
/// [`INGEST_BATCH_MAX_SAMPLES`] samples), each carrying the request's ack, for
/// [`PipelineInput::send_parts_within`]. A decoder that fills parts as it goes saves
/// the split's copy of every sample, made when they are long out of cache.
pub fn parts_of(parts: Vec<Vec<Sample>>, mut ack: Option<Ack>) -> Vec<Batch> {
    debug_assert!(parts.iter().all(|p| p.len() <= INGEST_BATCH_MAX_SAMPLES));
    let received_at = std::time::Instant::now();
    let mut batches = Vec::with_capacity(parts.len());
    let mut parts = parts.into_iter().peekable();
    while let Some(samples) = parts.next() {
        // Every part holds an obligation; the last one takes the caller's.
        let ack = if parts.peek().is_some() { ack.clone() } else { ack.take() };
        batches.push(Batch { samples, hashes: Vec::new(), ack, received_at });
    }
    batches
}

/// Puts refused parts back together for the caller.
fn join(parts: Vec<Batch>) -> Batch {
    let mut parts = parts.into_iter();
    let mut whole = parts.next().unwrap_or_else(|| Batch::new(Vec::new()));
    for mut p in parts {
        whole.samples.extend(std::mem::take(&mut p.samples));
        // `whole` keeps one obligation for the request; the parts' copies go.
        if let Some(a) = p.ack.take() {
            a.settle();
        }
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Ack, Sample};

    fn samples(n: usize) -> Vec<Sample> {
        (0..n).map(|i| Sample::new([("__name__", "m")].into_iter().collect(), i as f64, 0)).collect()
    }

    /// An input with no stages and one shard whose channel the test reads.
    fn input(slots: usize) -> (PipelineInput, mpsc::UnboundedReceiver<ShardBatch>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (PipelineInput::new("p".into(), slots, Front { stateless: Vec::new(), shards: vec![tx] }), rx)
    }

    #[tokio::test]
    async fn a_large_request_is_split_and_accepted_whole() {
        let (input, mut rx) = input(4);
        let (ack, done) = Ack::new();
        let n = INGEST_BATCH_MAX_SAMPLES * 3 + 7;
        input.send_within(Batch::with_ack(samples(n), Some(ack)), Duration::from_millis(100)).await.unwrap();
        let mut values = Vec::new();
        for _ in 0..4 {
            let part = rx.recv().await.unwrap();
            assert!(part.samples.len() <= INGEST_BATCH_MAX_SAMPLES);
            // Each part owns a buffer of its own size, not the request's.
            assert!(part.samples.capacity() <= INGEST_BATCH_MAX_SAMPLES, "{}", part.samples.capacity());
            values.extend(part.samples.iter().map(|s| s.value));
        }
        assert_eq!(values, (0..n).map(|i| i as f64).collect::<Vec<_>>());
        assert!(done.await.is_ok(), "ack completes once every part is gone");
    }

    #[tokio::test]
    async fn parts_from_a_decoder_enter_as_they_are_and_share_one_ack() {
        let (input, mut rx) = input(8);
        let (ack, done) = Ack::new();
        let sizes = [INGEST_BATCH_MAX_SAMPLES, INGEST_BATCH_MAX_SAMPLES, 5];
        let parts = sizes.iter().map(|&n| samples(n)).collect();
        input.send_parts_within(parts_of(parts, Some(ack)), Duration::from_millis(100)).await.unwrap();
        for &n in &sizes {
            let mut part = rx.recv().await.unwrap();
            assert_eq!(part.samples.len(), n);
            part.ack.take().expect("every part holds an obligation").settle();
        }
        let outcome = done.await.unwrap();
        assert!(outcome.settled(), "every part settled: the request is acknowledged");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_whole_request() {
        let (input, mut rx) = input(4);
        for _ in 0..4 {
            input.send_within(Batch::new(samples(10)), Duration::from_millis(10)).await.unwrap();
        }
        let n = INGEST_BATCH_MAX_SAMPLES * 3 + 7;
        match input.send_within(Batch::new(samples(n)), Duration::from_millis(50)).await {
            Err(IngestError::Full { batch, .. }) => assert_eq!(batch.len(), n),
            other => panic!("expected Full, got {:?}", other.map(|_| ())),
        }
        let mut held = Vec::new();
        for _ in 0..4 {
            let part = rx.recv().await.unwrap();
            assert_eq!(part.samples.len(), 10);
            held.push(part);
        }
        assert!(rx.try_recv().is_err(), "no part of the refused request entered");
        assert_eq!(input.capacity(), 0, "admitted batches hold their slots until the shard is done");
        drop(held);
        assert_eq!(input.capacity(), 4, "a finished batch frees its slot");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_queue_still_gets_in_whole() {
        let (input, mut rx) = input(2);
        let n = INGEST_BATCH_MAX_SAMPLES * 5;
        let consumer = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                got += rx.recv().await.unwrap().samples.len();
            }
            got
        });
        input.send_within(Batch::new(samples(n)), Duration::from_millis(100)).await.unwrap();
        assert_eq!(consumer.await.unwrap(), n);
    }

    #[tokio::test]
    async fn a_closed_pipeline_hands_the_batch_back() {
        let (input, rx) = input(4);
        drop(rx);
        match input.send_within(Batch::new(samples(3)), Duration::from_millis(10)).await {
            Err(IngestError::Closed { batch, .. }) => assert_eq!(batch.len(), 3),
            other => panic!("expected Closed, got {:?}", other.map(|_| ())),
        }
    }
}
