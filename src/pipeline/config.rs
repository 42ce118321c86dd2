use serde::Deserialize;

use super::stages::{AggregateRule, CardinalityConfig, MonotonicConfig, NormalizeConfig, ValidateConfig};

/// One pipeline: which receivers feed it, which sinks it fans out to, and
/// how it runs. Stage settings are added by the stages themselves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Receiver names (`[receivers.<name>]`) whose samples enter this pipeline.
    pub receivers: Vec<String>,
    /// Sink names (`[sinks.<name>]`) every sample of this pipeline goes to.
    pub sinks: Vec<String>,
    /// Shard tasks that own per-series state; 0 = one per CPU core.
    #[serde(default)]
    pub shards: usize,
    /// Capacity of the ingest queue, in batches (a request's or a message's
    /// samples, split into batches of at most 4096), on top of
    /// `shard_queue_batches` per shard. A batch holds its slot from admission
    /// until every shard has finished its part; a receiver waits for a slot
    /// at most its `max_wait_ms`.
    #[serde(default = "defaults::ingest_queue_batches")]
    pub ingest_queue_batches: usize,
    /// Ingest-queue slots added per shard, so the queue grows with the
    /// shards that drain it.
    #[serde(default = "defaults::shard_queue_batches")]
    pub shard_queue_batches: usize,
    /// Name cleanup, static labels, relabel rules.
    #[serde(default)]
    pub normalize: NormalizeConfig,
    /// Limits, timestamp window, metric registry, types, NaN policy.
    #[serde(default)]
    pub validate: ValidateConfig,
    /// Series limits and id-like label detection.
    #[serde(default)]
    pub cardinality: CardinalityConfig,
    /// Timestamp order and counter resets.
    #[serde(default)]
    pub monotonic: MonotonicConfig,
    /// Stream-aggregation rules (`[[pipelines.<name>.aggregate]]`), run after
    /// `monotonic`; see docs/aggregate.md.
    #[serde(default)]
    pub aggregate: Vec<AggregateRule>,
}

impl PipelineConfig {
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }

    /// Batches the pipeline holds at once, from admission until every shard
    /// is done with them: the ingest queue's bound.
    pub fn ingest_slots(&self) -> usize {
        self.ingest_queue_batches.saturating_add(self.shard_count().saturating_mul(self.shard_queue_batches))
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.ingest_queue_batches == 0 {
            return Err("ingest_queue_batches must be at least 1".into());
        }
        if self.shard_queue_batches == 0 {
            return Err("shard_queue_batches must be at least 1".into());
        }
        self.normalize.check()?;
        self.validate.check()?;
        self.cardinality.check()?;
        super::stages::aggregate::check_rules(&self.aggregate)
    }
}

pub mod defaults {
    // Small enough that the default config's worst case fits the default
    // `limits.memory_bytes` on machines of up to 8 cores (one shard per core).
    pub fn ingest_queue_batches() -> usize {
        32
    }
    pub fn shard_queue_batches() -> usize {
        4
    }
}
