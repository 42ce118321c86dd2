//! The receivers' side of a pipeline's ingest queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

use crate::model::Batch;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("pipeline {pipeline}: ingest queue full for {waited:?}")]
    Full { pipeline: Arc<str>, waited: Duration, batch: Batch },
    #[error("pipeline {pipeline} is shutting down")]
    Closed { pipeline: Arc<str>, batch: Batch },
}

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
    pub async fn send_within(&self, batch: Batch, max_wait: Duration) -> Result<(), IngestError> {
        match self.tx.send_timeout(batch, max_wait).await {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(batch)) => {
                Err(IngestError::Full { pipeline: self.pipeline.clone(), waited: max_wait, batch })
            }
            Err(SendTimeoutError::Closed(batch)) => Err(IngestError::Closed { pipeline: self.pipeline.clone(), batch }),
        }
    }

    /// Enqueues, waiting as long as it takes (gRPC streams, Kafka): the
    /// caller stops reading its source meanwhile, which is the backpressure.
    pub async fn send(&self, batch: Batch) -> Result<(), IngestError> {
        self.tx
            .send(batch)
            .await
            .map_err(|mpsc::error::SendError(batch)| IngestError::Closed { pipeline: self.pipeline.clone(), batch })
    }

    /// Free slots (in batches) in the ingest queue right now.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }
}
