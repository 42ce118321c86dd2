//! How a receiver hands decoded samples to its pipeline and answers its sender:
//! backpressure (DESIGN §3) and acknowledgements, written once for every receiver.

use std::time::Duration;

use serde::Deserialize;

use crate::codecs::limits::DecodeLimits;
use crate::limits::MemoryPressure;
use crate::model::{Ack, AckOutcome, Batch, Sample};
use crate::pipeline::{INGEST_BATCH_MAX_SAMPLES, IngestError, PipelineInput, parts_of};
use crate::telemetry::ReceiverMetrics;

/// When a receiver answers its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Once the batch is in the ingest queue.
    #[default]
    Accepted,
    /// Once every sink has delivered (or counted as dropped) the batch.
    Delivered,
}

#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("ingest queue of pipeline {pipeline} stayed full for {waited:?}; retry later")]
    Full { pipeline: String, waited: Duration },
    #[error("pipeline {pipeline} is shutting down")]
    ShuttingDown { pipeline: String },
    #[error("tsrelay is above its memory high-water mark (limits.memory_bytes); retry later")]
    MemoryPressure,
    #[error("accepted, but not delivered within {0:?}; it will still be delivered")]
    AckTimeout(Duration),
    /// Some copy of the data was abandoned unsettled (the daemon stopped at its
    /// shutdown timeout, a task panicked, a batch was lost): it may not have
    /// been delivered anywhere, and was not counted. Send it again.
    #[error(
        "pipeline {pipeline}: accepted, but not delivered to every sink (stopped or failed before settling); send it again"
    )]
    Undelivered { pipeline: String },
}

/// How often a blocking submitter looks whether memory pressure is over.
const PRESSURE_POLL: Duration = Duration::from_millis(20);
/// Why [`Submitter::offer`] gave the batch back.
#[derive(Debug)]
pub enum OfferError {
    /// The ingest queue stayed full for the whole wait.
    Full(Batch),
    /// The pipeline is shutting down.
    ShuttingDown(Batch),
}

/// A receiver's side of its pipeline.
#[derive(Clone)]
pub struct Submitter {
    pub input: PipelineInput,
    pub metrics: ReceiverMetrics,
    pub max_wait: Duration,
    pub ack: AckMode,
    pub ack_timeout: Duration,
    /// Raised above the RSS high-water mark: new data is refused (or, for
    /// blocking submitters, waits) instead of growing the process.
    pub pressure: MemoryPressure,
    /// What one request may bring into the pipeline, checked while decoding.
    pub limits: std::sync::Arc<DecodeLimits>,
}

impl Submitter {
    /// Enqueues `samples`, waiting at most `max_wait` for room; with
    /// `ack = "delivered"` also waits for delivery. Counts them as received once accepted.
    pub async fn submit(&self, samples: Vec<Sample>) -> Result<Option<AckOutcome>, SubmitError> {
        if self.pressure.is_high() {
            self.metrics.requests_rejected_memory.increment(1);
            return Err(SubmitError::MemoryPressure);
        }
        let max_wait = self.max_wait;
        let n = samples.len() as u64;
        self.submit_with(n, move |input, ack| async move {
            input.send_within(Batch::with_ack(samples, ack), max_wait).await
        })
        .await
    }

    /// [`submit`](Self::submit) for a request its decoder delivered in parts of at most
    /// [`INGEST_BATCH_MAX_SAMPLES`] samples (line protocol over HTTP): they enter as they
    /// are, whole or not at all, without being split again.
    pub async fn submit_parts(&self, parts: Vec<Vec<Sample>>) -> Result<Option<AckOutcome>, SubmitError> {
        let parts = match <[Vec<Sample>; 1]>::try_from(parts) {
            // One vector, of any size (`submit` splits it if it must).
            Ok([samples]) => return self.submit(samples).await,
            Err(parts) => parts,
        };
        debug_assert!(parts.iter().all(|p| p.len() <= INGEST_BATCH_MAX_SAMPLES));
        if self.pressure.is_high() {
            self.metrics.requests_rejected_memory.increment(1);
            return Err(SubmitError::MemoryPressure);
        }
        let max_wait = self.max_wait;
        let n = parts.iter().map(|p| p.len() as u64).sum();
        self.submit_with(
            n,
            move |input, ack| async move { input.send_parts_within(parts_of(parts, ack), max_wait).await },
        )
        .await
    }

    /// Like [`submit`](Self::submit) but waits for room as long as it takes
    /// (streams, Kafka): the caller stops reading its source meanwhile.
    pub async fn submit_blocking(&self, samples: Vec<Sample>) -> Result<Option<AckOutcome>, SubmitError> {
        while self.pressure.is_high() {
            tokio::time::sleep(PRESSURE_POLL).await;
        }
        let n = samples.len() as u64;
        self.submit_with(n, |input, ack| async move { input.send(Batch::with_ack(samples, ack)).await }).await
    }

    /// Offers a batch that carries the caller's own acknowledgement, waiting
    /// at most `wait` for room. A full queue hands the batch back so the caller
    /// can hold it and stop reading its source (Kafka pauses its partitions).
    /// Counts the samples as received once accepted.
    pub async fn offer(&self, batch: Batch, wait: Duration) -> Result<(), OfferError> {
        let n = batch.len() as u64;
        match self.input.send_within(batch, wait).await {
            Ok(()) => {
                self.metrics.received_samples.increment(n);
                Ok(())
            }
            Err(IngestError::Full { batch, .. }) => Err(OfferError::Full(batch)),
            Err(IngestError::Closed { batch, .. }) => Err(OfferError::ShuttingDown(batch)),
        }
    }

    /// Admits `n` samples with `send`, which gets the pipeline and the request's
    /// acknowledgement (with `ack = "delivered"`).
    async fn submit_with<F, Fut>(&self, n: u64, send: F) -> Result<Option<AckOutcome>, SubmitError>
    where
        F: FnOnce(PipelineInput, Option<Ack>) -> Fut,
        Fut: std::future::Future<Output = Result<(), IngestError>> + Send + 'static,
    {
        if n == 0 {
            return Ok(None);
        }
        let (ack, done) = match self.ack {
            AckMode::Accepted => (None, None),
            AckMode::Delivered => {
                let (a, rx) = Ack::new();
                (Some(a), Some(rx))
            }
        };
        let admission = send(self.input.clone(), ack);
        let admitted = if n as usize > INGEST_BATCH_MAX_SAMPLES {
            // A split request enters part by part. Admission runs on its own
            // task, counting included, so a client that disconnects (or a gRPC
            // deadline) cannot cut it between parts: the request ends wholly
            // refused, or wholly admitted and counted.
            let metrics = self.metrics.clone();
            let task = tokio::spawn(async move {
                let r = admission.await;
                if r.is_ok() {
                    metrics.received_samples.increment(n);
                }
                r
            });
            match task.await {
                Ok(r) => r.map(|()| true),
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        } else {
            admission.await.map(|()| false)
        };
        match admitted {
            Ok(true) => {}
            Ok(false) => self.metrics.received_samples.increment(n),
            Err(IngestError::Full { pipeline, waited, .. }) => {
                self.metrics.requests_rejected_backpressure.increment(1);
                return Err(SubmitError::Full { pipeline: pipeline.to_string(), waited });
            }
            Err(IngestError::Closed { pipeline, .. }) => {
                return Err(SubmitError::ShuttingDown { pipeline: pipeline.to_string() });
            }
        }
        let Some(done) = done else { return Ok(None) };
        match tokio::time::timeout(self.ack_timeout, done).await {
            Ok(Ok(outcome)) if outcome.settled() => Ok(Some(outcome)),
            Ok(Ok(_)) => {
                self.metrics.requests_undelivered.increment(1);
                Err(SubmitError::Undelivered { pipeline: self.input.pipeline().to_string() })
            }
            // The sender side vanished without an outcome: only when the daemon stops.
            Ok(Err(_)) => Err(SubmitError::ShuttingDown { pipeline: self.input.pipeline().to_string() }),
            Err(_) => Err(SubmitError::AckTimeout(self.ack_timeout)),
        }
    }
}

/// Defaults shared by the receivers' configs.
pub mod defaults {
    use std::time::Duration;

    pub fn max_wait_ms() -> u64 {
        1000
    }
    pub fn ack_timeout() -> Duration {
        Duration::from_secs(30)
    }
}
