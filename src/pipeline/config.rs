use serde::Deserialize;

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
    /// Capacity of the ingest queue, in batches (a batch is one request's or
    /// one message's samples).
    #[serde(default = "defaults::ingest_queue_batches")]
    pub ingest_queue_batches: usize,
    /// Capacity of each shard's input channel, in batches.
    #[serde(default = "defaults::shard_queue_batches")]
    pub shard_queue_batches: usize,
}

impl PipelineConfig {
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 { self.shards } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.ingest_queue_batches == 0 {
            return Err("ingest_queue_batches must be at least 1".into());
        }
        if self.shard_queue_batches == 0 {
            return Err("shard_queue_batches must be at least 1".into());
        }
        Ok(())
    }
}

pub mod defaults {
    pub fn ingest_queue_batches() -> usize {
        64
    }
    pub fn shard_queue_batches() -> usize {
        16
    }
}
