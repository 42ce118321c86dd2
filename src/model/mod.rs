//! The neutral data model every receiver produces and every sink consumes.
//!
//! A [`Sample`] is one numeric value of one series at one instant. All
//! dimensionality lives in [`Labels`]; the metric name is the label `__name__`.
//! Nothing backend-specific lives here (DESIGN §1, invariant 2).

use std::time::Instant;

mod ack;
mod labels;
pub mod regex;
pub mod selector;
mod series_map;

pub use ack::{Ack, AckOutcome, AckReceiver};
pub use labels::{Label, LabelRef, LabelStr, Labels, METRIC_NAME_LABEL, SharedPart, copy_bytes, name_before};
pub use series_map::{SeriesHasher, SeriesMap, prefetch};

/// The kind of metric a sample belongs to, as far as the sender told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    #[default]
    Unspecified,
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Unspecified => "unspecified",
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// One value of one series at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub kind: MetricKind,
}

// Every sample in flight (ingest slots, sink queues: several hundred thousand
// at full load) costs this much besides its labels' shared part.
const _: () = assert!(std::mem::size_of::<Sample>() <= 40);

impl Sample {
    pub fn new(labels: Labels, value: f64, timestamp_ms: i64) -> Self {
        Sample { labels, value, timestamp_ms, kind: MetricKind::Unspecified }
    }

    pub fn name(&self) -> &str {
        self.labels.name().unwrap_or("")
    }

    /// Equality with values compared by their bits (a NaN equals the same NaN).
    pub fn identical(&self, other: &Sample) -> bool {
        self.labels == other.labels
            && self.value.to_bits() == other.value.to_bits()
            && self.timestamp_ms == other.timestamp_ms
            && self.kind == other.kind
    }
}

/// The unit of work on every channel: many samples and, optionally, the
/// acknowledgement that completes once every sink has delivered or dropped them.
#[derive(Debug)]
pub struct Batch {
    pub samples: Vec<Sample>,
    /// `hashes[i]` is the series hash of `samples[i]`; filled by the shard
    /// split (empty before it), so sinks can route by series without rehashing.
    pub hashes: Vec<u64>,
    pub ack: Option<Ack>,
    /// When the receiver accepted the data; the latency budget starts here.
    pub received_at: Instant,
}

impl Batch {
    pub fn new(samples: Vec<Sample>) -> Self {
        Batch { samples, hashes: Vec::new(), ack: None, received_at: Instant::now() }
    }

    pub fn with_ack(samples: Vec<Sample>, ack: Option<Ack>) -> Self {
        Batch { samples, hashes: Vec::new(), ack, received_at: Instant::now() }
    }

    /// Marks the batch's acknowledgement (if any) as partly dropped.
    pub fn mark_dropped(&self) {
        if let Some(ack) = &self.ack {
            ack.mark_dropped();
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
