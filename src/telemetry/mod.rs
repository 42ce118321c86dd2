//! tsrelay's own metrics, logs and health.
//!
//! Every metric name of the public contract (DESIGN §4) is spelled here and
//! nowhere else; components hold typed handles built by the functions below.

mod health;
mod kafka;
mod listener;
mod names;
mod parquet;
mod query;
mod stages;
pub mod status;
mod supervise;

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub use health::{Health, HealthReport, SinkHealth, SinkReport, SinkState};
pub use kafka::{KafkaReceiverMetrics, KafkaTopicMetrics, kafka_produced_messages};
pub use listener::{AdmissionMetrics, AuthMetrics, ListenerMetrics, TimeoutKind, auth_failures, tls_reloads};
pub use names::*;
pub use parquet::{ParquetMetrics, RollReason};
pub use query::{
    query_backend_requests, query_cache_bytes, query_cache_evictions, query_cache_hits, query_cache_misses,
    query_request,
};
pub use stages::{
    AggregateMetrics, CardinalityMetrics, MonotonicMetrics, aggregate_watermark_write_errors, suspicious_label,
};
pub use supervise::{contain_panic, panic_is_contained, supervise};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide metrics recorder (idempotent) and returns the
/// handle that renders `/metrics`.
pub fn install_recorder() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            // Every histogram gets buckets (fixed memory per series) rather
            // than a summary; the two contract histograms get their own.
            let builder = PrometheusBuilder::new()
                .set_buckets(DEFAULT_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(SINK_REQUEST_DURATION_SECONDS.to_string()),
                        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(PIPELINE_LATENCY_SECONDS.to_string()),
                        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(QUERY_DURATION_SECONDS.to_string()),
                        &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
                    )
                });
            let handle = match builder {
                Ok(b) => {
                    let recorder = b.build_recorder();
                    let handle = recorder.handle();
                    match metrics::set_global_recorder(status::TeeRecorder::new(recorder, status::store())) {
                        Ok(()) => handle,
                        // A recorder is already installed (only in tests that build
                        // several daemons in one process): render an empty, private one.
                        Err(_) => PrometheusBuilder::new().build_recorder().handle(),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "invalid histogram buckets; metrics are not recorded");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            spawn_upkeep(handle.clone(), UPKEEP_INTERVAL);
            handle
        })
        .clone()
}

/// Buckets (seconds) of any histogram without buckets of its own.
const DEFAULT_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0];

/// How often recorded histogram values are folded into their buckets.
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The exporter keeps every value a histogram records until it is folded into
/// the buckets, which `install_recorder` leaves to a render of `/metrics`.
/// Never scraped, that buffer would grow without bound; this thread folds it
/// at a fixed interval instead (what the exporter's own listener would do).
pub fn spawn_upkeep(handle: PrometheusHandle, every: std::time::Duration) {
    let spawned = std::thread::Builder::new().name("tsrelay-metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(every);
            handle.run_upkeep();
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the metrics upkeep thread; histograms grow until /metrics is scraped");
    }
}

/// Why a sample was dropped: the `reason` label, a closed set (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    ParseError,
    NonNumeric,
    InvalidName,
    TooManyLabels,
    LabelValueTooLong,
    TimestampOutOfWindow,
    UnknownMetric,
    TypeConflict,
    LabelNotAllowed,
    Cardinality,
    OutOfOrder,
    Duplicate,
    CounterReset,
    QueueFull,
    Rejected,
    RetryExhausted,
    Shutdown,
    Corrupt,
    /// Removed on purpose by a `keep`/`drop`/`keepequal`/`dropequal` relabel rule.
    Relabel,
    /// Native (exponential) histograms: valid input the sample model cannot hold
    /// (remote-write histograms, OTLP exponential histograms).
    UnsupportedHistogram,
    /// Exemplars attached to remote-write or OTLP samples: not kept.
    Exemplar,
    /// OTLP delta temporality refused (`otlp.delta = "reject"`), or a delta
    /// point whose series was not seen before with the same start.
    Delta,
    /// Aggregate stage: the sample's bucket was already closed (emitted) when
    /// it arrived, later than the rule's `lag` allows.
    TooLate,
    /// Aggregate stage: the rule's state is full (`max_series`, or
    /// `max_quantile_samples` for `quantiles`), so no new bucket or value fits.
    AggregateOverflow,
    /// Aggregate stage: folded into a rollup by a rule with `keep_input = false`;
    /// the rollup is delivered instead of the sample (removed on purpose, like `relabel`).
    Aggregated,
}

impl DropReason {
    pub const ALL: [DropReason; 25] = [
        DropReason::ParseError,
        DropReason::NonNumeric,
        DropReason::InvalidName,
        DropReason::TooManyLabels,
        DropReason::LabelValueTooLong,
        DropReason::TimestampOutOfWindow,
        DropReason::UnknownMetric,
        DropReason::TypeConflict,
        DropReason::LabelNotAllowed,
        DropReason::Cardinality,
        DropReason::OutOfOrder,
        DropReason::Duplicate,
        DropReason::CounterReset,
        DropReason::QueueFull,
        DropReason::Rejected,
        DropReason::RetryExhausted,
        DropReason::Shutdown,
        DropReason::Corrupt,
        DropReason::Relabel,
        DropReason::UnsupportedHistogram,
        DropReason::Exemplar,
        DropReason::Delta,
        DropReason::TooLate,
        DropReason::AggregateOverflow,
        DropReason::Aggregated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::ParseError => "parse_error",
            DropReason::NonNumeric => "non_numeric",
            DropReason::InvalidName => "invalid_name",
            DropReason::TooManyLabels => "too_many_labels",
            DropReason::LabelValueTooLong => "label_value_too_long",
            DropReason::TimestampOutOfWindow => "timestamp_out_of_window",
            DropReason::UnknownMetric => "unknown_metric",
            DropReason::TypeConflict => "type_conflict",
            DropReason::LabelNotAllowed => "label_not_allowed",
            DropReason::Cardinality => "cardinality",
            DropReason::OutOfOrder => "out_of_order",
            DropReason::Duplicate => "duplicate",
            DropReason::CounterReset => "counter_reset",
            DropReason::QueueFull => "queue_full",
            DropReason::Rejected => "rejected",
            DropReason::RetryExhausted => "retry_exhausted",
            DropReason::Shutdown => "shutdown",
            DropReason::Corrupt => "corrupt",
            DropReason::Relabel => "relabel",
            DropReason::UnsupportedHistogram => "unsupported_histogram",
            DropReason::Exemplar => "exemplar",
            DropReason::Delta => "delta",
            DropReason::TooLate => "too_late",
            DropReason::AggregateOverflow => "aggregate_overflow",
            DropReason::Aggregated => "aggregated",
        }
    }
}

/// Where a drop happened: the `stage` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Receiver,
    Normalize,
    Validate,
    Cardinality,
    Monotonic,
    Aggregate,
    Queue,
    Sink,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Receiver => "receiver",
            Stage::Normalize => "normalize",
            Stage::Validate => "validate",
            Stage::Cardinality => "cardinality",
            Stage::Monotonic => "monotonic",
            Stage::Aggregate => "aggregate",
            Stage::Queue => "queue",
            Stage::Sink => "sink",
        }
    }
}

/// `tsrelay_dropped_samples_total` for drops before fanout (receivers and stages).
pub fn pipeline_dropped(pipeline: &str, stage: Stage, reason: DropReason) -> Counter {
    counter!(DROPPED_SAMPLES_TOTAL, "pipeline" => pipeline.to_string(), "stage" => stage.as_str(), "reason" => reason.as_str())
}

/// `tsrelay_dropped_samples_total` for drops inside a receiver, before any pipeline.
pub fn receiver_dropped(receiver: &str, reason: DropReason) -> Counter {
    counter!(DROPPED_SAMPLES_TOTAL, "receiver" => receiver.to_string(), "stage" => Stage::Receiver.as_str(), "reason" => reason.as_str())
}

/// `tsrelay_dropped_samples_total` for drops at or after a sink's queue.
pub fn sink_dropped(sink: &str, stage: Stage, reason: DropReason) -> Counter {
    counter!(DROPPED_SAMPLES_TOTAL, "sink" => sink.to_string(), "stage" => stage.as_str(), "reason" => reason.as_str())
}

/// Handles a receiver updates.
#[derive(Clone)]
pub struct ReceiverMetrics {
    pub received_samples: Counter,
    pub requests_rejected_backpressure: Counter,
    /// Requests refused because the process is above its RSS high-water mark.
    pub requests_rejected_memory: Counter,
    /// `ack = "delivered"` requests answered 503 / UNAVAILABLE because some
    /// copy of their data was abandoned unsettled.
    pub requests_undelivered: Counter,
    pub name: std::sync::Arc<str>,
}

impl ReceiverMetrics {
    pub fn new(receiver: &str) -> Self {
        ReceiverMetrics {
            received_samples: counter!(RECEIVED_SAMPLES_TOTAL, "receiver" => receiver.to_string()),
            requests_rejected_backpressure: counter!(RECEIVER_BACKPRESSURE_TOTAL, "receiver" => receiver.to_string()),
            requests_rejected_memory: counter!(RECEIVER_MEMORY_PRESSURE_REJECTIONS_TOTAL, "receiver" => receiver.to_string()),
            requests_undelivered: counter!(RECEIVER_UNDELIVERED_TOTAL, "receiver" => receiver.to_string()),
            name: receiver.into(),
        }
    }

    pub fn dropped(&self, reason: DropReason, n: u64) {
        if n > 0 {
            receiver_dropped(&self.name, reason).increment(n);
        }
    }
}

/// Handles a sink, its queue and the fanout in front of it update.
#[derive(Clone)]
pub struct SinkMetrics {
    pub name: std::sync::Arc<str>,
    /// Samples handed to this sink by fanout (including those its queue then dropped).
    pub received_samples: Counter,
    pub sent_samples: Counter,
    pub retries: Counter,
    pub request_duration: Histogram,
    pub in_flight_requests: Gauge,
    /// Requests allowed in flight now (moves under adaptive concurrency).
    pub concurrency_limit: Gauge,
    pub queue_samples: Gauge,
    pub queue_capacity_samples: Gauge,
    /// A gauge only because counters are integers; it only ever grows.
    pub fanout_blocked_seconds: Gauge,
    pub pipeline_latency: Histogram,
}

impl SinkMetrics {
    pub fn new(sink: &str) -> Self {
        let s = || sink.to_string();
        SinkMetrics {
            name: sink.into(),
            received_samples: counter!(SINK_RECEIVED_SAMPLES_TOTAL, "sink" => s()),
            sent_samples: counter!(SINK_SENT_SAMPLES_TOTAL, "sink" => s()),
            retries: counter!(SINK_RETRIES_TOTAL, "sink" => s()),
            request_duration: histogram!(SINK_REQUEST_DURATION_SECONDS, "sink" => s()),
            in_flight_requests: gauge!(SINK_IN_FLIGHT_REQUESTS, "sink" => s()),
            concurrency_limit: gauge!(SINK_CONCURRENCY_LIMIT, "sink" => s()),
            queue_samples: gauge!(QUEUE_SAMPLES, "sink" => s()),
            queue_capacity_samples: gauge!(QUEUE_CAPACITY_SAMPLES, "sink" => s()),
            fanout_blocked_seconds: gauge!(FANOUT_BLOCKED_SECONDS_TOTAL, "sink" => s()),
            pipeline_latency: histogram!(PIPELINE_LATENCY_SECONDS, "sink" => s()),
        }
    }

    pub fn dropped(&self, stage: Stage, reason: DropReason, n: u64) {
        if n > 0 {
            sink_dropped(&self.name, stage, reason).increment(n);
        }
    }

    /// The gauges only a disk queue has; registered when one is opened.
    pub fn disk_queue(&self) -> DiskQueueMetrics {
        let s = || self.name.to_string();
        DiskQueueMetrics {
            bytes: gauge!(QUEUE_BYTES, "sink" => s()),
            capacity_bytes: gauge!(QUEUE_CAPACITY_BYTES, "sink" => s()),
            records: gauge!(QUEUE_RECORDS, "sink" => s()),
            oldest_record_age_seconds: gauge!(QUEUE_OLDEST_RECORD_AGE_SECONDS, "sink" => s()),
            replayed_samples: counter!(QUEUE_REPLAYED_SAMPLES_TOTAL, "sink" => s()),
        }
    }
}

/// A disk queue's own gauges (samples queued are `queue_samples`, as for memory queues).
#[derive(Clone)]
pub struct DiskQueueMetrics {
    /// Bytes of unsettled records.
    pub bytes: Gauge,
    pub capacity_bytes: Gauge,
    /// Unsettled records (one per batch pushed).
    pub records: Gauge,
    pub oldest_record_age_seconds: Gauge,
    /// Samples found on disk at start-up and queued again (they count as received).
    pub replayed_samples: Counter,
}

/// Process memory, against `limits.memory_bytes`.
#[derive(Clone)]
pub struct MemoryMetrics {
    pub rss_bytes: Gauge,
    pub limit_bytes: Gauge,
    /// The start-up estimate of the worst case of every queue and table.
    pub worst_case_bytes: Gauge,
    /// 1 while receivers refuse data because RSS is above the high-water mark.
    pub pressure: Gauge,
}

impl MemoryMetrics {
    pub fn new() -> Self {
        MemoryMetrics {
            rss_bytes: gauge!(MEMORY_RSS_BYTES),
            limit_bytes: gauge!(MEMORY_LIMIT_BYTES),
            worst_case_bytes: gauge!(MEMORY_WORST_CASE_BYTES),
            pressure: gauge!(MEMORY_PRESSURE),
        }
    }
}

impl Default for MemoryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the tracing subscriber; `RUST_LOG` overrides the default level.
pub fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
