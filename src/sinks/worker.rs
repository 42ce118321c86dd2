//! The shared sink worker: queue → batches by size and age → `Sink::deliver`
//! → accounting. Written once; every sink plugs into it.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::Sink;
use crate::model::{Batch, Sample};
use crate::queue::MemoryQueue;
use crate::telemetry::SinkHealth;

/// `batch = { max_samples = 10000, max_age_ms = 200 }`: a request goes out when
/// either bound is reached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most samples in one request.
    #[serde(default = "defaults::max_samples")]
    pub max_samples: usize,
    /// Longest a sample waits for its batch to fill, in milliseconds.
    #[serde(default = "defaults::max_age_ms")]
    pub max_age_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_samples: defaults::max_samples(), max_age_ms: defaults::max_age_ms() }
    }
}

impl BatchConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_samples == 0 {
            return Err("batch.max_samples must be at least 1".into());
        }
        Ok(())
    }
}

pub mod defaults {
    pub fn max_samples() -> usize {
        10_000
    }
    pub fn max_age_ms() -> u64 {
        200
    }
}

/// The samples of one outgoing request: slices of shared pipeline batches
/// (never copied). Dropping it releases the batches and so their acks.
#[derive(Debug, Default)]
pub struct SinkBatch {
    parts: Vec<(Arc<Batch>, Range<usize>)>,
    len: usize,
}

impl SinkBatch {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, batch: Arc<Batch>, range: Range<usize>) {
        self.len += range.len();
        self.parts.push((batch, range));
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> + '_ {
        self.parts.iter().flat_map(|(b, r)| b.samples[r.clone()].iter())
    }

    /// Samples with their series hashes (computed by the shard split).
    pub fn samples_with_hash(&self) -> impl Iterator<Item = (&Sample, u64)> + '_ {
        self.parts.iter().flat_map(|(b, r)| {
            b.samples[r.clone()]
                .iter()
                .enumerate()
                .map(move |(i, s)| (s, b.hashes.get(r.start + i).copied().unwrap_or_else(|| s.labels.series_hash())))
        })
    }

    /// The earliest time any of these samples was received.
    pub fn oldest_received(&self) -> Option<std::time::Instant> {
        self.parts.iter().map(|(b, _)| b.received_at).min()
    }

    pub fn mark_dropped(&self) {
        for (b, _) in &self.parts {
            b.mark_dropped();
        }
    }
}

/// Pulls from `queue` until it is closed and drained, delivering through `sink`.
pub async fn run_worker<S: Sink>(mut sink: S, queue: Arc<MemoryQueue>, config: BatchConfig, health: SinkHealth) {
    let ledger = queue.ledger().clone();
    let max_age = Duration::from_millis(config.max_age_ms);
    // The unsent rest of a batch larger than one request.
    let mut carry: Option<(Arc<Batch>, usize)> = None;
    loop {
        let mut out = SinkBatch::default();
        let first = match carry.take() {
            Some(c) => Some(c),
            None => queue.pop().await.map(|b| (b, 0)),
        };
        let Some(first) = first else { break };
        let deadline = Instant::now() + max_age;
        let mut next = Some(first);
        loop {
            if let Some((batch, start)) = next.take() {
                let room = config.max_samples - out.len();
                let end = batch.len().min(start + room);
                if end < batch.len() {
                    carry = Some((batch.clone(), end));
                }
                out.push(batch, start..end);
            }
            if out.len() >= config.max_samples || carry.is_some() {
                break;
            }
            next = match queue.try_pop() {
                Some(b) => Some((b, 0)),
                None => match tokio::time::timeout_at(deadline, queue.pop()).await {
                    Ok(Some(b)) => Some((b, 0)),
                    Ok(None) | Err(_) => break,
                },
            };
        }

        let n = out.len();
        if let Some(t) = out.oldest_received() {
            ledger.metrics.pipeline_latency.record(t.elapsed().as_secs_f64());
        }
        let delivery = sink.deliver(&out).await;
        debug_assert_eq!(delivery.total(), n);
        ledger.sent(delivery.delivered);
        let dropped_elsewhere: usize = delivery.dropped.iter().map(|d| d.0).sum();
        for &(count, reason) in &delivery.dropped {
            ledger.failed(reason, count);
        }
        if dropped_elsewhere > 0 && delivery.failed.is_none() {
            out.mark_dropped();
        }
        match delivery.failed {
            None => health.succeeded(),
            Some((count, error)) => {
                out.mark_dropped();
                ledger.failed(error.reason(), count);
                tracing::warn!(sink = ledger.name(), samples = count, %error, "samples dropped at sink");
            }
        }
    }
    sink.close().await;
}
