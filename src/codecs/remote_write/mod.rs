//! Prometheus remote-write request bodies → samples: 1.0
//! (`prometheus.WriteRequest`, [`v1`]) and 2.0 (`io.prometheus.write.v2.Request`,
//! [`v2`]). Both are a snappy block (format, not framed) around a protobuf
//! message; the receiver picks the version from `Content-Type`.
//!
//! What tsrelay's model cannot hold is counted, never lost silently: native
//! histograms (`unsupported_histogram`) and exemplars (`exemplar`) are not
//! kept; series without a usable name are refused (`invalid_name`), as are
//! series over the decode limits ([`DecodeLimits`]).

pub mod metadata;
pub mod v1;
pub mod v2;

pub use metadata::MetadataCache;

use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};

/// Errors reported back to the sender; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// The most a timestamp may be in ms and still fit in ns everywhere (year 2262).
const MAX_ABS_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;

/// Bounds applied while decoding, before anything is allocated per sample,
/// so memory follows the configuration and not the input.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Largest decompressed body (the receiver's `max_body_bytes`): `413` above.
    pub max_body_bytes: usize,
    /// Most samples (plus histograms and exemplars) in one request: `413` above.
    pub max_samples: usize,
    /// Most labels (including `__name__`) in one series: the series is refused
    /// (`too_many_labels`) above.
    pub max_labels: usize,
    /// Longest label name or value, in bytes: the series is refused
    /// (`label_value_too_long`, or `invalid_name` for a name) above.
    pub max_label_bytes: usize,
}

pub mod defaults {
    /// Decode-time bounds; the pipeline's validate stage applies its own
    /// (smaller, by default) limits afterwards.
    pub const MAX_SAMPLES: usize = 1_000_000;
    pub const MAX_LABELS: usize = 128;
    pub const MAX_LABEL_BYTES: usize = 16 * 1024;
}

impl DecodeLimits {
    pub fn with_body_limit(max_body_bytes: usize) -> Self {
        DecodeLimits {
            max_body_bytes,
            max_samples: defaults::MAX_SAMPLES,
            max_labels: defaults::MAX_LABELS,
            max_label_bytes: defaults::MAX_LABEL_BYTES,
        }
    }
}

/// Why a whole request is refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid snappy block: {0}")]
    Snappy(#[from] snap::Error),
    #[error("snappy block decompresses to {size} bytes, over max_body_bytes ({max} bytes)")]
    TooLarge { size: usize, max: usize },
    #[error("invalid {message} protobuf: {source}")]
    Protobuf { message: &'static str, source: prost::DecodeError },
    #[error("request carries {count} samples, histograms and exemplars, over the limit of {max} per request")]
    TooManySamples { count: usize, max: usize },
    #[error("{0}")]
    Invalid(String),
}

impl DecodeError {
    /// `413` for size limits, `400` for the rest (never retried by senders).
    pub fn is_too_large(&self) -> bool {
        matches!(self, DecodeError::TooLarge { .. } | DecodeError::TooManySamples { .. })
    }
}

/// Undoes the snappy block format, refusing output over the body limit
/// before allocating it.
pub fn decompress(body: &[u8], max_body_bytes: usize) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > max_body_bytes {
        return Err(DecodeError::TooLarge { size, max: max_body_bytes });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// The decoded samples and what was refused or not kept.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    /// Samples of series without a usable metric or label name.
    pub invalid_name: u64,
    /// Samples of series with more labels than [`DecodeLimits::max_labels`].
    pub too_many_labels: u64,
    /// Samples of series with a label value over [`DecodeLimits::max_label_bytes`].
    pub label_too_long: u64,
    /// Samples whose timestamp cannot be represented.
    pub bad_timestamp: u64,
    /// Native histogram samples (not kept).
    pub histograms: u64,
    /// Exemplars (not kept).
    pub exemplars: u64,
    /// Metadata entries seen (1.0: `metadata`; 2.0: per series).
    pub metadata: u64,
    /// The first problems, naming the series.
    pub errors: Vec<String>,
}

impl Decoded {
    /// Samples refused (not counting histograms and exemplars, which are
    /// valid input tsrelay does not keep).
    pub fn rejected(&self) -> u64 {
        self.invalid_name + self.too_many_labels + self.label_too_long + self.bad_timestamp
    }

    fn report(&mut self, series: usize, labels: &str, message: impl std::fmt::Display) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("series {series} {labels}: {message}"));
        }
    }
}

/// Why one series cannot be taken.
enum SeriesProblem {
    InvalidName(String),
    TooManyLabels(usize),
    TooLong(String),
}

/// Builds a series' labels from name/value pairs, checking the decode limits.
fn build_labels<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    limits: &DecodeLimits,
) -> Result<Labels, SeriesProblem> {
    let count = pairs.len();
    if count > limits.max_labels {
        return Err(SeriesProblem::TooManyLabels(count));
    }
    let mut text = 0;
    let mut has_name = false;
    for (name, value) in pairs.clone() {
        if name.is_empty() {
            return Err(SeriesProblem::InvalidName("a label has an empty name".into()));
        }
        if name.len() > limits.max_label_bytes {
            return Err(SeriesProblem::InvalidName(format!("label name of {} bytes", name.len())));
        }
        if value.len() > limits.max_label_bytes {
            return Err(SeriesProblem::TooLong(format!(
                "label {name} has a value of {} bytes, over {}",
                value.len(),
                limits.max_label_bytes
            )));
        }
        if name == METRIC_NAME_LABEL {
            if value.is_empty() {
                return Err(SeriesProblem::InvalidName(format!("empty {METRIC_NAME_LABEL}")));
            }
            has_name = true;
        }
        text += name.len() + value.len();
    }
    if !has_name {
        return Err(SeriesProblem::InvalidName(format!("no {METRIC_NAME_LABEL} label")));
    }
    let mut labels = Labels::with_capacity(count, text);
    for (name, value) in pairs {
        labels.push(name, value);
    }
    Ok(labels)
}

/// Adds one series' samples, or counts them as refused.
fn add_series(
    out: &mut Decoded,
    index: usize,
    labels: Result<Labels, SeriesProblem>,
    samples: impl ExactSizeIterator<Item = (f64, i64)>,
    kind: MetricKind,
    describe: impl FnOnce() -> String,
) {
    let n = samples.len() as u64;
    let labels = match labels {
        Ok(l) => l,
        Err(problem) => {
            let (counter, message) = match problem {
                SeriesProblem::InvalidName(m) => (&mut out.invalid_name, m),
                SeriesProblem::TooManyLabels(c) => {
                    (&mut out.too_many_labels, format!("{c} labels, over the decode limit"))
                }
                SeriesProblem::TooLong(m) => (&mut out.label_too_long, m),
            };
            *counter += n;
            if n > 0 {
                out.report(index, &describe(), message);
            }
            return;
        }
    };
    let mut bad_ts = 0u64;
    for (value, ts) in samples {
        if ts.unsigned_abs() > MAX_ABS_TIMESTAMP_MS as u64 {
            bad_ts += 1;
            continue;
        }
        out.samples.push(Sample { labels: labels.clone(), value, timestamp_ms: ts, kind });
    }
    if bad_ts > 0 {
        out.bad_timestamp += bad_ts;
        let labels = labels.to_string();
        out.report(index, &labels, format!("{bad_ts} samples with a timestamp beyond ±{MAX_ABS_TIMESTAMP_MS} ms"));
    }
}

/// `MetricMetadata.MetricType` (1.0) and `Metadata.MetricType` (2.0) share numbers.
pub fn kind_of_metadata_type(t: i32) -> MetricKind {
    match t {
        1 => MetricKind::Counter,
        2 => MetricKind::Gauge,
        3 | 4 => MetricKind::Histogram,
        5 => MetricKind::Summary,
        _ => MetricKind::Unspecified,
    }
}
