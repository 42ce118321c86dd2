//! Prometheus remote-write request bodies → samples: 1.0
//! (`prometheus.WriteRequest`, [`v1`]) and 2.0 (`io.prometheus.write.v2.Request`,
//! [`v2`]). Both are a snappy block (format, not framed) around a protobuf
//! message; the receiver picks the version from `Content-Type`.
//!
//! What tsrelay's model cannot hold is counted, never lost silently: native
//! histograms (`unsupported_histogram`) and exemplars (`exemplar`) are not
//! kept; series without a usable name are refused (`invalid_name`), as are
//! series over the pipeline's limits, checked while decoding ([`DecodeLimits`]).

pub mod metadata;
pub mod v1;
pub mod v2;

pub use metadata::MetadataCache;

use std::sync::Arc;

use crate::codecs::limits::{Checker, DecodeLimits as PipelineLimits, LimitError, RefusedSamples};
use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};
use crate::telemetry::DropReason;

/// Errors reported back to the sender; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

/// Bounds applied while decoding, before anything is allocated per sample, so
/// memory follows the configuration and not the input: the body size, and the
/// limits of the pipeline the receiver feeds ([`crate::codecs::limits`]:
/// samples per request, labels per series, name and value lengths, the
/// timestamp window).
#[derive(Debug, Clone)]
pub struct DecodeLimits {
    /// Largest decompressed body (the receiver's `max_body_bytes`): `413` above.
    pub max_body_bytes: usize,
    /// The pipeline's limits; a request over `max_samples` (samples, histograms
    /// and exemplars) is refused whole (`413`), a series over another limit is
    /// refused with that limit's reason.
    pub pipeline: Arc<PipelineLimits>,
}

impl DecodeLimits {
    pub fn new(max_body_bytes: usize, pipeline: Arc<PipelineLimits>) -> Self {
        DecodeLimits { max_body_bytes, pipeline }
    }

    /// Only the body limit (tests, fuzzing).
    pub fn with_body_limit(max_body_bytes: usize) -> Self {
        Self::new(max_body_bytes, Arc::new(PipelineLimits::unlimited()))
    }

    pub fn max_samples(&self) -> usize {
        self.pipeline.max_samples
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
    #[error("invalid {message} protobuf: {source}")]
    Wire { message: &'static str, source: crate::codecs::wire::WireError },
    #[error("request carries {count} samples, histograms and exemplars, over max_samples_per_request = {max}")]
    TooManySamples { count: usize, max: usize },
}

impl DecodeError {
    /// `413` for size limits, `400` for the rest (never retried by senders).
    pub fn is_too_large(&self) -> bool {
        matches!(self, DecodeError::TooLarge { .. } | DecodeError::TooManySamples { .. })
    }
}

/// Undoes the snappy block format, refusing output over the body limit
/// before allocating it, and hands the bytes to `decode`.
pub fn with_decompressed<R>(
    body: &[u8],
    max_body_bytes: usize,
    decode: impl FnOnce(&[u8]) -> R,
) -> Result<R, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > max_body_bytes {
        return Err(DecodeError::TooLarge { size, max: max_body_bytes });
    }
    // A buffer kept between requests (see `codecs::buffers`): not mapped and faulted
    // in again for every request.
    let mut buf = super::buffers::take_len(size);
    let result = snap::raw::Decoder::new().decompress(body, &mut buf);
    let out = result.map(|n| decode(&buf[..n]));
    super::buffers::give_back(buf);
    Ok(out?)
}

/// The decoded samples and what was refused or not kept.
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: Vec<Sample>,
    /// Samples refused, per reason (`invalid_name`, `too_many_labels`,
    /// `label_value_too_long`, `timestamp_out_of_window`).
    pub refused: RefusedSamples,
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
        self.refused.total()
    }

    /// Whether two decodings are the same, NaN values compared by their bits
    /// (how the fuzz targets compare the in-place and the generated decoders).
    pub fn same_as(&self, other: &Decoded) -> bool {
        self.samples.len() == other.samples.len()
            && self.samples.iter().zip(&other.samples).all(|(a, b)| a.identical(b))
            && self.refused == other.refused
            && (self.histograms, self.exemplars, self.metadata) == (other.histograms, other.exemplars, other.metadata)
            && self.errors == other.errors
    }

    fn report(&mut self, series: usize, labels: &str, message: impl std::fmt::Display) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("series {series} {labels}: {message}"));
        }
    }
}

/// Why one series cannot be taken: its reason and message.
type SeriesProblem = (DropReason, String);

fn invalid(message: impl Into<String>) -> SeriesProblem {
    (DropReason::InvalidName, message.into())
}

/// Builds a series' labels from name/value pairs, checking the pipeline's limits.
fn build_labels<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)> + Clone,
    checker: &Checker<'_>,
) -> Result<Labels, SeriesProblem> {
    let count = pairs.len();
    let mut text = 0;
    let mut has_name = false;
    let (mut others, mut sent_static) = (0, 0);
    for (name, value) in pairs.clone() {
        if name.is_empty() {
            return Err(invalid("a label has an empty name"));
        }
        if name == METRIC_NAME_LABEL {
            if value.is_empty() {
                return Err(invalid(format!("empty {METRIC_NAME_LABEL}")));
            }
            has_name = true;
        } else if !value.is_empty() {
            others += 1;
            sent_static += usize::from(checker.is_static(name));
        }
        text += name.len() + value.len();
    }
    if !has_name {
        return Err(invalid(format!("no {METRIC_NAME_LABEL} label")));
    }
    let refused = |e: LimitError| (e.reason(), e.message());
    checker.label_count(others, sent_static).map_err(refused)?;
    for (name, value) in pairs.clone() {
        if name == METRIC_NAME_LABEL {
            checker.metric_name(&[value]).map_err(refused)?;
        } else if !value.is_empty() {
            checker.label(name, value).map_err(refused)?;
        }
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
    checker: &Checker<'_>,
    describe: impl FnOnce() -> String,
) {
    let n = samples.len() as u64;
    let labels = match labels {
        Ok(l) => l,
        Err((reason, message)) => {
            out.refused.add(reason, n);
            if n > 0 {
                out.report(index, &describe(), message);
            }
            return;
        }
    };
    if let Some(refused) = checker.push_series(&mut out.samples, labels, kind, samples) {
        out.refused.add(DropReason::TimestampOutOfWindow, refused.count);
        out.report(index, &refused.labels.to_string(), refused.message());
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
