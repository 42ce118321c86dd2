//! The checks every decoder makes while decoding, before a sample is built: how much one
//! request may hold, and the per-sample checks of the validate stage that need no state
//! (label count, name and value lengths, name validity, the timestamp window).
//!
//! A line (or NDJSON record, or gRPC series) that fails one is refused with its reason,
//! so the sender gets a partial-write answer naming it instead of a `204` followed by a
//! silent drop in the validate stage; and nothing of it is copied, so a body's memory
//! stays proportional to what it is allowed to hold.
//!
//! A receiver feeds exactly one pipeline (the config refuses a receiver named by two), so
//! its limits are that pipeline's `[pipelines.<name>.validate]` settings
//! ([`DecodeLimits::for_pipeline`]). They apply to the labels as sent plus the pipeline's
//! static labels; relabel rules run later and do not lift them. The validate stage still
//! checks every sample after normalization (relabel rules may add labels or lengthen them).

use std::sync::Arc;

use crate::model::{Labels, MetricKind, Sample};
use crate::pipeline::PipelineConfig;
use crate::pipeline::stages::{InvalidNames, NormalizeConfig, ValidateConfig};
use crate::registry::{is_valid_label_name, is_valid_metric_name};
use crate::telemetry::DropReason;

/// What one request may bring into its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeLimits {
    /// Most samples one request (HTTP body, gRPC request, Kafka message) may decode to;
    /// a request over it is refused whole (HTTP `413`), before more is decoded.
    pub max_samples: usize,
    /// Most fields one line-protocol line may carry (each numeric field is a sample).
    pub max_fields_per_line: usize,
    /// Most labels a sample may carry besides `__name__`, static labels included.
    pub max_labels: usize,
    /// Longest metric or label name, in bytes.
    pub max_name_length: usize,
    /// Longest label value, in characters.
    pub max_label_value_length: usize,
    /// Oldest and newest accepted timestamps, relative to now, in ms.
    pub max_past_ms: i64,
    pub max_future_ms: i64,
    /// `normalize.invalid_names = "reject"`: names outside the Prometheus syntax are refused.
    pub reject_invalid_names: bool,
    /// Names of the pipeline's static labels: every sample gets them (counted once).
    pub static_labels: Arc<[String]>,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self::unlimited()
    }
}

impl DecodeLimits {
    /// No limits at all (tests, fuzzing, tools that decode outside a pipeline).
    pub fn unlimited() -> Self {
        DecodeLimits {
            max_samples: usize::MAX,
            max_fields_per_line: usize::MAX,
            max_labels: usize::MAX,
            max_name_length: usize::MAX,
            max_label_value_length: usize::MAX,
            max_past_ms: i64::MAX,
            max_future_ms: i64::MAX,
            reject_invalid_names: false,
            static_labels: Arc::from(Vec::new()),
        }
    }

    /// The limits of a pipeline with every validate and normalize default.
    pub fn for_pipeline_defaults() -> Self {
        Self::from_stages(&ValidateConfig::default(), &NormalizeConfig::default())
    }

    /// The limits of the pipeline a receiver feeds.
    pub fn for_pipeline(p: &PipelineConfig) -> Self {
        Self::from_stages(&p.validate, &p.normalize)
    }

    fn from_stages(v: &ValidateConfig, n: &NormalizeConfig) -> Self {
        DecodeLimits {
            max_samples: v.max_samples_per_request,
            max_fields_per_line: v.max_fields_per_line,
            max_labels: v.max_labels,
            max_name_length: v.max_name_length,
            max_label_value_length: v.max_label_value_length,
            max_past_ms: i64::try_from(v.max_past.as_millis()).unwrap_or(i64::MAX),
            max_future_ms: i64::try_from(v.max_future.as_millis()).unwrap_or(i64::MAX),
            reject_invalid_names: n.invalid_names == InvalidNames::Reject,
            static_labels: n.static_labels.keys().cloned().collect::<Vec<_>>().into(),
        }
    }

    /// A digest of the limits a series key is checked against on its own — label count,
    /// static labels, name and value lengths, name syntax — so that lines with the same key,
    /// decoded under limits with the same fingerprint, pass or fail those checks alike.
    pub fn key_checks_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        // A fixed-key hasher: the same limits give the same fingerprint in every call.
        let mut h = std::hash::DefaultHasher::new();
        (self.max_labels, self.max_name_length, self.max_label_value_length).hash(&mut h);
        self.reject_invalid_names.hash(&mut h);
        self.static_labels.hash(&mut h);
        h.finish()
    }

    /// The checks for one request decoded at `now_ms`.
    pub fn checker(&self, now_ms: i64) -> Checker<'_> {
        // `i64::MAX` stands for "no bound" (see `unlimited`).
        let oldest_ms = if self.max_past_ms == i64::MAX { i64::MIN } else { now_ms.saturating_sub(self.max_past_ms) };
        Checker { limits: self, oldest_ms, newest_ms: now_ms.saturating_add(self.max_future_ms) }
    }
}

/// Why a sample was refused by a limit, with the numbers a sender needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{count} labels besides the metric name (static labels included), more than max_labels = {max}")]
    TooManyLabels { count: usize, max: usize },
    #[error("{count} fields, more than max_fields_per_line = {max}")]
    TooManyFields { count: usize, max: usize },
    #[error("{what} {name:?} is {len} bytes long, more than max_name_length = {max}")]
    NameTooLong { what: &'static str, name: String, len: usize, max: usize },
    #[error("{what} {name:?} is not a valid name and the pipeline rejects invalid names")]
    InvalidName { what: &'static str, name: String },
    #[error("the value of label {label:?} is longer than max_label_value_length = {max} characters")]
    LabelValueTooLong { label: String, max: usize },
    #[error(
        "timestamp {timestamp_ms} ms is outside the accepted window [{oldest_ms}, {newest_ms}] (max_past, max_future)"
    )]
    TimestampOutOfWindow { timestamp_ms: i64, oldest_ms: i64, newest_ms: i64 },
}

impl LimitError {
    /// The drop reason the refused samples are counted with (DESIGN §4).
    pub fn reason(&self) -> DropReason {
        match self {
            LimitError::TooManyLabels { .. } => DropReason::TooManyLabels,
            // No reason of its own in the closed set: the line is refused as unreadable.
            LimitError::TooManyFields { .. } => DropReason::ParseError,
            LimitError::NameTooLong { .. } | LimitError::InvalidName { .. } => DropReason::InvalidName,
            LimitError::LabelValueTooLong { .. } => DropReason::LabelValueTooLong,
            LimitError::TimestampOutOfWindow { .. } => DropReason::TimestampOutOfWindow,
        }
    }

    /// The message with the reason's metric label, as a sender reads it.
    pub fn message(&self) -> String {
        format!("{self} ({})", self.reason().as_str())
    }
}

/// Longest piece of a name quoted in a message.
const QUOTED_NAME_BYTES: usize = 64;

fn quoted(name: &str) -> String {
    match name.char_indices().nth(QUOTED_NAME_BYTES) {
        Some((at, _)) => format!("{}…", &name[..at]),
        None => name.to_owned(),
    }
}

/// The limits bound to one request's clock.
#[derive(Debug, Clone, Copy)]
pub struct Checker<'l> {
    limits: &'l DecodeLimits,
    oldest_ms: i64,
    newest_ms: i64,
}

impl Checker<'_> {
    pub fn limits(&self) -> &DecodeLimits {
        self.limits
    }

    /// `sent` labels besides `__name__`, of which `sent_static` carry a static label's name
    /// (those are not added again).
    pub fn label_count(&self, sent: usize, sent_static: usize) -> Result<(), LimitError> {
        let count = sent - sent_static.min(sent) + self.limits.static_labels.len();
        let max = self.limits.max_labels;
        if count > max { Err(LimitError::TooManyLabels { count, max }) } else { Ok(()) }
    }

    /// Whether `name` is one of the pipeline's static labels.
    pub fn is_static(&self, name: &str) -> bool {
        self.limits.static_labels.iter().any(|s| s == name)
    }

    pub fn field_count(&self, count: usize) -> Result<(), LimitError> {
        let max = self.limits.max_fields_per_line;
        if count > max { Err(LimitError::TooManyFields { count, max }) } else { Ok(()) }
    }

    /// A metric name given as the concatenation of `parts` (line protocol's
    /// `<measurement>_<field>` is never built just to be checked).
    pub fn metric_name(&self, parts: &[&str]) -> Result<(), LimitError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let max = self.limits.max_name_length;
        if len > max {
            return Err(LimitError::NameTooLong { what: "metric name", name: quoted(&parts.concat()), len, max });
        }
        if self.limits.reject_invalid_names {
            let name = parts.concat();
            if !is_valid_metric_name(&name) {
                return Err(LimitError::InvalidName { what: "metric name", name: quoted(&name) });
            }
        }
        Ok(())
    }

    /// One label besides `__name__`.
    pub fn label(&self, name: &str, value: &str) -> Result<(), LimitError> {
        let max = self.limits.max_name_length;
        if name.len() > max {
            return Err(LimitError::NameTooLong { what: "label name", name: quoted(name), len: name.len(), max });
        }
        if self.limits.reject_invalid_names && !is_valid_label_name(name) {
            return Err(LimitError::InvalidName { what: "label name", name: quoted(name) });
        }
        let max = self.limits.max_label_value_length;
        // Bytes first: characters are counted only when the bytes exceed.
        if value.len() > max && value.chars().count() > max {
            return Err(LimitError::LabelValueTooLong { label: quoted(name), max });
        }
        Ok(())
    }

    pub fn timestamp(&self, timestamp_ms: i64) -> Result<(), LimitError> {
        if timestamp_ms < self.oldest_ms || timestamp_ms > self.newest_ms {
            return Err(LimitError::TimestampOutOfWindow {
                timestamp_ms,
                oldest_ms: self.oldest_ms,
                newest_ms: self.newest_ms,
            });
        }
        Ok(())
    }

    /// Appends one series' samples to `out`, sharing `labels`, and refuses
    /// those whose timestamp is beyond what the model holds or outside the
    /// window: how many, why the first one was, and the series' labels.
    pub fn push_series(
        &self,
        out: &mut Vec<Sample>,
        labels: Labels,
        kind: MetricKind,
        samples: impl ExactSizeIterator<Item = (f64, i64)>,
    ) -> Option<RefusedTimestamps> {
        // The series' samples share its labels instead of a copy each.
        let labels = if samples.len() > 1 { labels.share() } else { labels };
        let (mut count, mut first) = (0u64, None);
        for (value, ts) in samples {
            // A range check, not `abs()`: `i64::MIN` has no absolute value.
            let refusal = if !(-MAX_ABS_TIMESTAMP_MS..=MAX_ABS_TIMESTAMP_MS).contains(&ts) {
                Some(format!("timestamp {ts} ms is beyond ±{MAX_ABS_TIMESTAMP_MS} ms"))
            } else {
                self.timestamp(ts).err().map(|e| e.message())
            };
            match refusal {
                None => out.push(Sample { labels: labels.clone(), value, timestamp_ms: ts, kind }),
                Some(message) => {
                    count += 1;
                    first.get_or_insert(message);
                }
            }
        }
        first.map(|first| RefusedTimestamps { count, first, labels })
    }
}

/// The samples of one series refused for their timestamps.
#[derive(Debug)]
pub struct RefusedTimestamps {
    pub count: u64,
    /// Why the first one was refused.
    pub first: String,
    pub labels: Labels,
}

impl RefusedTimestamps {
    /// What a sender is told.
    pub fn message(&self) -> String {
        format!("{} samples refused (timestamp_out_of_window), the first: {}", self.count, self.first)
    }
}

/// The most a timestamp may be in ms and still fit in ns everywhere (year 2262).
pub const MAX_ABS_TIMESTAMP_MS: i64 = i64::MAX / 1_000_000;

/// Samples refused by a limit, per drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefusedSamples {
    counts: [u64; DropReason::ALL.len()],
}

impl RefusedSamples {
    pub fn add(&mut self, reason: DropReason, n: u64) {
        self.counts[reason as usize] += n;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The reasons with a count, in the order of [`DropReason::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.counts[r as usize])).filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits {
            max_samples: 10,
            max_fields_per_line: 2,
            max_labels: 2,
            max_name_length: 8,
            max_label_value_length: 3,
            max_past_ms: 1000,
            max_future_ms: 100,
            reject_invalid_names: false,
            static_labels: vec!["cluster".to_string()].into(),
        }
    }

    #[test]
    fn each_limit_names_its_reason() {
        let l = limits();
        let c = l.checker(10_000);
        assert_eq!(c.label_count(1, 0), Ok(()));
        assert_eq!(c.label_count(2, 1), Ok(()));
        let e = c.label_count(2, 0).unwrap_err();
        assert_eq!(e.reason(), DropReason::TooManyLabels);
        assert!(e.message().contains("3 labels") && e.message().ends_with("(too_many_labels)"), "{}", e.message());
        assert_eq!(c.field_count(3).unwrap_err().reason(), DropReason::ParseError);
        assert_eq!(c.metric_name(&["cpu", "_", "idle"]), Ok(()));
        assert_eq!(c.metric_name(&["cpu", "_", "idle12"]).unwrap_err().reason(), DropReason::InvalidName);
        assert_eq!(c.label("abcdefghi", "v").unwrap_err().reason(), DropReason::InvalidName);
        assert_eq!(c.label("k", "abc"), Ok(()));
        assert_eq!(c.label("k", "ééé"), Ok(()), "characters, not bytes");
        assert_eq!(c.label("k", "abcd").unwrap_err().reason(), DropReason::LabelValueTooLong);
        assert_eq!(c.timestamp(9_000), Ok(()));
        assert_eq!(c.timestamp(10_100), Ok(()));
        assert_eq!(c.timestamp(8_999).unwrap_err().reason(), DropReason::TimestampOutOfWindow);
        assert_eq!(c.timestamp(i64::MIN).unwrap_err().reason(), DropReason::TimestampOutOfWindow);
        assert_eq!(c.timestamp(i64::MAX).unwrap_err().reason(), DropReason::TimestampOutOfWindow);
    }

    #[test]
    fn strict_names_and_unlimited() {
        let l = DecodeLimits { reject_invalid_names: true, ..limits() };
        let c = l.checker(0);
        assert_eq!(c.metric_name(&["9cpu"]).unwrap_err().reason(), DropReason::InvalidName);
        assert_eq!(c.label("a-b", "v").unwrap_err().reason(), DropReason::InvalidName);
        let u = DecodeLimits::unlimited();
        let c = u.checker(0);
        assert_eq!(c.timestamp(i64::MIN), Ok(()));
        assert_eq!(c.timestamp(i64::MAX), Ok(()));
        assert_eq!(c.label_count(1_000_000, 0), Ok(()));
    }
}
