use std::time::Duration;

use serde::Deserialize;

use crate::librdkafka::{LibrdkafkaOptions, refuse_reserved};
use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;

/// `type = "kafka"`: one record per series per batch, keyed by the series
/// hash so a series always lands on the same partition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Topic the records are produced to.
    pub topic: String,
    /// Record encoding; a consuming tsrelay's receiver must use the same.
    #[serde(default)]
    pub format: KafkaSinkFormat,
    /// Record-batch compression.
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka keeps retrying a record (broker down, leader
    /// change...) before it counts as `retry_exhausted`. With a disk queue
    /// there is no limit: the data is kept instead.
    #[serde(default = "defaults::max_retry_duration", with = "humantime_serde")]
    pub max_retry_duration: Duration,
    /// Batches in flight at once, each in its own lane (a series always uses
    /// the same lane, so its order is kept). One producer serves every lane.
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Passed to librdkafka as they are (SASL, TLS, `linger.ms`, `batch.size`,
    /// `partitioner`...). Durability settings are fixed: `acks=all` and
    /// idempotence are always on.
    #[serde(default)]
    pub librdkafka_options: LibrdkafkaOptions,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long deliveries may fail before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSinkFormat {
    /// `tsrelay.v1.WriteRequest` holding the one series and its samples.
    #[default]
    Protobuf,
    /// Line protocol, one line per sample (measurement = metric name, field `value`).
    LineProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    /// Cheap on CPU, good on repetitive label sets.
    #[default]
    Lz4,
}

impl Compression {
    /// librdkafka's `compression.type` value.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
        }
    }
}

const RESERVED_OPTIONS: [&str; 9] = [
    "bootstrap.servers",
    "metadata.broker.list",
    "acks",
    "request.required.acks",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "compression.type",
    "compression.codec",
];

impl KafkaSinkConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty; give at least one host:port".into());
        }
        if self.topic.trim().is_empty() {
            return Err("topic is empty".into());
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(format!("concurrency = {} must be between 1 and 64", self.concurrency));
        }
        if self.max_retry_duration < Duration::from_millis(1) {
            return Err("max_retry_duration must be at least 1ms".into());
        }
        refuse_reserved(
            &self.librdkafka_options,
            &RESERVED_OPTIONS,
            "acks=all and idempotence are always on; use compression and max_retry_duration",
        )
    }
}

pub mod defaults {
    use std::time::Duration;

    pub fn max_retry_duration() -> Duration {
        Duration::from_secs(300)
    }
    pub fn concurrency() -> usize {
        4
    }
    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
}
