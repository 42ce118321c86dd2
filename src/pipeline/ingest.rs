//! The receivers' side of a pipeline's ingest queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

use crate::model::{Batch, Sample};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("pipeline {pipeline}: ingest queue full for {waited:?}")]
    Full { pipeline: Arc<str>, waited: Duration, batch: Batch },
    #[error("pipeline {pipeline} is shutting down")]
    Closed { pipeline: Arc<str>, batch: Batch },
}

/// Most samples in one batch on the ingest queue. A larger request is split,
/// so the queue holds at most `ingest_queue_batches × INGEST_BATCH_MAX_SAMPLES`
/// samples: a bound the start-up memory check can count on.
pub const INGEST_BATCH_MAX_SAMPLES: usize = 4096;

/// A cheap, cloneable handle receivers use to hand batches to a pipeline.
#[derive(Clone)]
pub struct PipelineInput {
    pipeline: Arc<str>,
    tx: mpsc::Sender<Batch>,
}

impl PipelineInput {
    pub(super) fn new(pipeline: Arc<str>, tx: mpsc::Sender<Batch>) -> Self {
        PipelineInput { pipeline, tx }
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// Enqueues, waiting at most `max_wait` for room (HTTP, gRPC unary).
    /// A large batch is split; it is accepted whole or not at all.
    pub async fn send_within(&self, batch: Batch, max_wait: Duration) -> Result<(), IngestError> {
        if batch.len() <= INGEST_BATCH_MAX_SAMPLES {
            return match self.tx.send_timeout(batch, max_wait).await {
                Ok(()) => Ok(()),
                Err(SendTimeoutError::Timeout(batch)) => {
                    Err(IngestError::Full { pipeline: self.pipeline.clone(), waited: max_wait, batch })
                }
                Err(SendTimeoutError::Closed(batch)) => {
                    Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch })
                }
            };
        }
        // The first part is admitted within `max_wait` or the whole request
        // is refused; once admitted, the rest follow as the pipeline makes
        // room, so a request is never half accepted.
        let parts = split(batch);
        let permit = match tokio::time::timeout(max_wait, self.tx.reserve()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch: join(parts) }),
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
            permit.send(first);
        }
        self.send_parts(parts).await
    }

    /// Enqueues, waiting as long as it takes (gRPC streams, Kafka): the
    /// caller stops reading its source meanwhile, which is the backpressure.
    pub async fn send(&self, batch: Batch) -> Result<(), IngestError> {
        if batch.len() <= INGEST_BATCH_MAX_SAMPLES {
            return self.tx.send(batch).await.map_err(|mpsc::error::SendError(batch)| IngestError::Closed {
                pipeline: self.pipeline.clone(),
                batch,
            });
        }
        self.send_parts(split(batch).into_iter()).await
    }

    async fn send_parts(&self, mut parts: impl Iterator<Item = Batch>) -> Result<(), IngestError> {
        while let Some(part) = parts.next() {
            if let Err(mpsc::error::SendError(part)) = self.tx.send(part).await {
                let rest = std::iter::once(part).chain(parts).collect();
                return Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch: join(rest) });
            }
        }
        Ok(())
    }

    /// Free slots (in batches) in the ingest queue right now.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
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

    #[tokio::test]
    async fn a_large_request_is_split_and_accepted_whole() {
        let (tx, mut rx) = mpsc::channel(4);
        let input = PipelineInput::new("p".into(), tx);
        let (ack, done) = Ack::new();
        let n = INGEST_BATCH_MAX_SAMPLES * 3 + 7;
        input.send_within(Batch::with_ack(samples(n), Some(ack)), Duration::from_millis(100)).await.unwrap();
        let mut values = Vec::new();
        for _ in 0..4 {
            let part = rx.recv().await.unwrap();
            assert!(part.len() <= INGEST_BATCH_MAX_SAMPLES);
            // Each part owns a buffer of its own size, not the request's.
            assert!(part.samples.capacity() <= INGEST_BATCH_MAX_SAMPLES, "{}", part.samples.capacity());
            values.extend(part.samples.iter().map(|s| s.value));
        }
        assert_eq!(values, (0..n).map(|i| i as f64).collect::<Vec<_>>());
        assert!(done.await.is_ok(), "ack completes once every part is gone");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_the_whole_request() {
        let (tx, mut rx) = mpsc::channel(4);
        let input = PipelineInput::new("p".into(), tx);
        for _ in 0..4 {
            input.send_within(Batch::new(samples(10)), Duration::from_millis(10)).await.unwrap();
        }
        let n = INGEST_BATCH_MAX_SAMPLES * 3 + 7;
        match input.send_within(Batch::new(samples(n)), Duration::from_millis(50)).await {
            Err(IngestError::Full { batch, .. }) => assert_eq!(batch.len(), n),
            other => panic!("expected Full, got {:?}", other.map(|_| ())),
        }
        for _ in 0..4 {
            assert_eq!(rx.recv().await.unwrap().len(), 10);
        }
        assert!(rx.try_recv().is_err(), "no part of the refused request entered");
    }

    #[tokio::test]
    async fn a_request_larger_than_the_queue_still_gets_in_whole() {
        let (tx, mut rx) = mpsc::channel(2);
        let input = PipelineInput::new("p".into(), tx);
        let n = INGEST_BATCH_MAX_SAMPLES * 5;
        let consumer = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                got += rx.recv().await.unwrap().len();
            }
            got
        });
        input.send_within(Batch::new(samples(n)), Duration::from_millis(100)).await.unwrap();
        assert_eq!(consumer.await.unwrap(), n);
    }
}
