//! Sinks: everything backend-specific lives below this module (DESIGN §1.2).
//!
//! Each sink is a [`Sink`] driven by the shared [`worker`], which takes
//! batches from the sink's queue, shards them over the sink's lanes by series
//! hash, groups them by size, bytes and age, hands them to the sink once, and
//! does the accounting. Network sinks build their lanes from [`common`]
//! (retry, timeout, concurrency, HTTP).

pub mod blackhole;
pub mod common;
pub mod file;
pub mod influxdb;
pub mod kafka;
pub mod line_protocol;
pub mod parquet;
pub mod remote_write;
pub mod rrdcached;
mod worker;

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;

pub use worker::{BatchConfig, SinkBatch, estimated_sample_bytes, prefetch, prefetch_labels, run_worker};

use crate::queue::QueueConfig;
use crate::telemetry::DropReason;

/// `[sinks.<name>]`, selected by `type`.
// Parsed once at start-up: variant sizes don't matter, readable matches do.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConfig {
    File(file::FileSinkConfig),
    Blackhole(blackhole::BlackholeSinkConfig),
    Influxdb(influxdb::InfluxdbSinkConfig),
    Rrdcached(rrdcached::RrdcachedSinkConfig),
    PrometheusRemoteWrite(remote_write::RemoteWriteSinkConfig),
    Kafka(kafka::KafkaSinkConfig),
    Parquet(parquet::ParquetSinkConfig),
}

/// Settings every sink has, whatever its type.
#[derive(Debug, Clone)]
pub struct CommonSinkSettings<'a> {
    pub queue: &'a QueueConfig,
    pub batch: &'a BatchConfig,
    pub unhealthy_after: Duration,
}

impl SinkConfig {
    pub fn common(&self) -> CommonSinkSettings<'_> {
        match self {
            SinkConfig::File(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::Blackhole(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::Influxdb(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::Rrdcached(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::PrometheusRemoteWrite(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::Kafka(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
            SinkConfig::Parquet(c) => {
                CommonSinkSettings { queue: &c.queue, batch: &c.batch, unhealthy_after: c.unhealthy_after }
            }
        }
    }

    /// The sink's queue settings, for the loader to fill in derived bounds.
    pub fn queue_mut(&mut self) -> &mut crate::queue::QueueConfig {
        match self {
            SinkConfig::File(c) => &mut c.queue,
            SinkConfig::Blackhole(c) => &mut c.queue,
            SinkConfig::Influxdb(c) => &mut c.queue,
            SinkConfig::Rrdcached(c) => &mut c.queue,
            SinkConfig::PrometheusRemoteWrite(c) => &mut c.queue,
            SinkConfig::Kafka(c) => &mut c.queue,
            SinkConfig::Parquet(c) => &mut c.queue,
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        let common = self.common();
        common.queue.check()?;
        common.batch.check()?;
        match self {
            SinkConfig::Influxdb(c) => c.check(),
            SinkConfig::Rrdcached(c) => c.check(),
            SinkConfig::PrometheusRemoteWrite(c) => c.check(),
            SinkConfig::Kafka(c) => c.check(),
            SinkConfig::Parquet(c) => c.check(),
            SinkConfig::File(_) | SinkConfig::Blackhole(_) => Ok(()),
        }
    }
}

/// Why a batch could not be delivered; decides how it is counted.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The backend refused the data for good (it would refuse it again).
    #[error("rejected by {sink}: {message}")]
    Rejected { sink: String, message: String },
    /// Retrying stopped (time budget spent) while the backend kept failing.
    #[error("{sink}: gave up after retrying: {message}")]
    RetryExhausted { sink: String, message: String },
    /// Some samples could not be written in this backend's format.
    #[error("{sink}: {count} samples cannot be represented: {message}")]
    Unrepresentable { sink: String, count: usize, message: String },
    #[error("{sink}: I/O error: {source}")]
    Io { sink: String, source: std::io::Error },
}

impl SinkError {
    pub fn reason(&self) -> DropReason {
        match self {
            SinkError::Rejected { .. } | SinkError::Unrepresentable { .. } => DropReason::Rejected,
            SinkError::RetryExhausted { .. } | SinkError::Io { .. } => DropReason::RetryExhausted,
        }
    }
}

/// What a sink reports for one batch: how many samples it delivered and,
/// if some were not, why.
/// `delivered + failed.count + Σ dropped.count == batch.samples`.
#[derive(Debug)]
pub struct Delivery {
    pub delivered: usize,
    pub failed: Option<(usize, SinkError)>,
    /// Samples the sink did not send for other reasons than `failed` (e.g. an
    /// rrdcached sink refusing samples older than a file's last update), each
    /// counted under its reason. The sink logs these itself.
    pub dropped: Vec<(usize, DropReason)>,
}

impl Delivery {
    pub fn all(n: usize) -> Self {
        Delivery { delivered: n, failed: None, dropped: Vec::new() }
    }

    pub fn none(n: usize, error: SinkError) -> Self {
        Delivery { delivered: 0, failed: Some((n, error)), dropped: Vec::new() }
    }

    /// `delivered` went out, `count` failed with `error`.
    pub fn partial(delivered: usize, count: usize, error: SinkError) -> Self {
        Delivery { delivered, failed: Some((count, error)), dropped: Vec::new() }
    }

    /// Every sample this delivery accounts for.
    pub fn total(&self) -> usize {
        self.delivered + self.failed.as_ref().map_or(0, |f| f.0) + self.dropped.iter().map(|d| d.0).sum::<usize>()
    }
}

/// A backend writer; one value per lane. The worker calls `deliver` with one
/// batch at a time per lane and waits for it; network sinks retry inside
/// `deliver` (shared layers, see [`common`]).
pub trait Sink: Send + 'static {
    fn deliver(&mut self, batch: &SinkBatch) -> impl Future<Output = Delivery> + Send;

    /// Called once after the queue is drained, before the worker exits.
    /// A [deferring](Sink::defers_settlement) sink makes everything it holds
    /// durable here (or reports it failed through [`Sink::take_settled`]).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// `true` for a sink whose deliveries become durable only later than
    /// `deliver` returns (the Parquet archive: a sample is safe once the file
    /// holding it is finished, renamed and synced). Its lane then keeps each
    /// delivered batch — queue records unsettled, acknowledgements open, the
    /// samples counted as queued — until [`Sink::take_settled`] reports it.
    fn defers_settlement(&self) -> bool {
        false
    }

    /// When the sink wants [`Sink::tick`] called although no batch arrived
    /// (e.g. a file to roll by age).
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// Time-driven work, called at or after [`Sink::deadline`].
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Deferring sinks: how the oldest delivered-but-unsettled batches ended,
    /// in delivery order: `(batches, outcome)` groups. `Ok` settles their
    /// delivered samples as sent; `Err` counts them dropped with the error.
    fn take_settled(&mut self) -> Vec<(usize, Result<(), SinkError>)> {
        Vec::new()
    }
}

/// Starts the worker of sink `name`, reading from `queue`.
pub fn spawn_sink(
    name: &str,
    config: &SinkConfig,
    registry: &std::sync::Arc<crate::registry::MetricRegistry>,
    resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    queue: std::sync::Arc<crate::queue::SinkQueue>,
    health: crate::telemetry::SinkHealth,
) -> Result<tokio::task::JoinHandle<()>, SinkBuildError> {
    let common = config.common();
    let batch = common.batch.clone();
    // A durable queue keeps the data through any outage (DESIGN §2): retrying must not give up on it.
    let retry_forever = queue.is_durable();
    let context = common::SinkContext::new(name, queue.ledger().metrics.clone(), health.clone());
    let build_error = |message: String| SinkBuildError { sink: name.to_string(), message };
    let handle = match config {
        SinkConfig::File(c) => {
            let sink = file::FileSink::new(name, resolve(&c.path));
            tokio::spawn(run_worker(vec![sink], queue, batch, health))
        }
        SinkConfig::Blackhole(_) => tokio::spawn(run_worker(vec![blackhole::BlackholeSink], queue, batch, health)),
        SinkConfig::PrometheusRemoteWrite(c) => {
            // The metric registry's help and unit plug in here as a `MetadataProvider`;
            // an empty one has nothing to add, and leaving it out spares the
            // encoder a lookup per series.
            let metadata =
                (!registry.is_empty()).then(|| registry.clone() as std::sync::Arc<dyn remote_write::MetadataProvider>);
            let lanes = remote_write::lanes(c, &context, resolve, retry_forever, metadata)
                .map_err(|e| build_error(e.to_string()))?;
            tokio::spawn(run_worker(lanes, queue, batch, health))
        }
        SinkConfig::Influxdb(c) => {
            let overrides = Some(registry.influxdb_overrides());
            let lanes = influxdb::lanes(c, &context, resolve, retry_forever, overrides)
                .map_err(|e| build_error(e.to_string()))?;
            tokio::spawn(run_worker(lanes, queue, batch, health))
        }
        SinkConfig::Rrdcached(c) => {
            let overrides = Some(registry.rrdcached_overrides());
            let sink = rrdcached::RrdcachedSink::new(name, c.clone(), overrides, context, retry_forever)?;
            tokio::spawn(run_worker(vec![sink], queue, batch, health))
        }
        SinkConfig::Kafka(c) => {
            let lanes =
                kafka::KafkaSink::lanes(name, c, retry_forever, queue.ledger().metrics.clone(), health.clone())?;
            tokio::spawn(run_worker(lanes, queue, batch, health))
        }
        SinkConfig::Parquet(c) => {
            let sink = parquet::ParquetSink::open(name, c, resolve(&c.path), queue.replay_end())
                .map_err(|e| build_error(e.to_string()))?;
            tokio::spawn(run_worker(vec![sink], queue, batch, health))
        }
    };
    Ok(handle)
}

/// A sink that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}")]
pub struct SinkBuildError {
    pub sink: String,
    pub message: String,
}
