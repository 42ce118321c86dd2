//! `type = "blackhole"`: accepts and counts everything. For benchmarks and
//! for measuring the pipeline without a backend.

use std::time::Duration;

use serde::Deserialize;

use super::{BatchConfig, Delivery, Sink, SinkBatch};
use crate::queue::QueueConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long the sink may fail before `/readyz` turns red (it never fails).
    #[serde(default = "super::file::defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

pub struct BlackholeSink;

impl Sink for BlackholeSink {
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        Delivery::all(batch.len())
    }
}
