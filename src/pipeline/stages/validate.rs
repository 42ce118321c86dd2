//! Stage 2, stateless: limits, timestamp window, metric registry, type
//! immutability, NaN/Inf policy.
//!
//! Runs on normalized samples (sorted labels, `__name__` present). Consecutive
//! samples usually share their metric name, so the registry and type lookups
//! are done once per run of equal names.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use serde::Deserialize;

use crate::model::{LabelStr, Labels, METRIC_NAME_LABEL, MetricKind, Sample, now_ms};
use crate::pipeline::{DropTally, StatelessStage};
use crate::registry::{MetricEntry, MetricRegistry};
use crate::telemetry::{DropReason, Stage};

/// `[pipelines.<name>.validate]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateConfig {
    /// Most labels a sample may carry besides `__name__` (`too_many_labels`).
    #[serde(default = "defaults::max_labels")]
    pub max_labels: usize,
    /// Longest label value, in characters (`label_value_too_long`).
    #[serde(default = "defaults::max_label_value_length")]
    pub max_label_value_length: usize,
    /// Longest metric or label name, in bytes (`invalid_name`).
    #[serde(default = "defaults::max_name_length")]
    pub max_name_length: usize,
    /// Most samples one request (HTTP body, gRPC request, Kafka message) may decode to;
    /// a larger request is refused whole (HTTP `413`, gRPC `INVALID_ARGUMENT`) before more
    /// of it is decoded. Bounds the memory one request takes.
    #[serde(default = "defaults::max_samples_per_request")]
    pub max_samples_per_request: usize,
    /// Most fields one line-protocol line may carry; a line with more is refused
    /// (`parse_error`).
    #[serde(default = "defaults::max_fields_per_line")]
    pub max_fields_per_line: usize,
    /// Oldest accepted timestamp, relative to now (`timestamp_out_of_window`).
    #[serde(default = "defaults::max_past", with = "humantime_serde")]
    pub max_past: Duration,
    /// Newest accepted timestamp, relative to now (`timestamp_out_of_window`).
    #[serde(default = "defaults::max_future", with = "humantime_serde")]
    pub max_future: Duration,
    /// Metrics missing from the registry: `allow` (default) or `reject` (`unknown_metric`).
    #[serde(default)]
    pub unknown_metrics: UnknownMetrics,
    /// NaN and ±Inf values: `keep` (default; counters still refuse them) or
    /// `drop` (`non_numeric`). Prometheus staleness markers always pass.
    #[serde(default)]
    pub non_finite: NonFinite,
    /// How many metric names remember the first type they were sent with
    /// (type immutability for metrics outside the registry); bounds that table.
    #[serde(default = "defaults::max_typed_metrics")]
    pub max_typed_metrics: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMetrics {
    #[default]
    Allow,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinite {
    #[default]
    Keep,
    Drop,
}

pub mod defaults {
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    pub fn max_labels() -> usize {
        10
    }
    pub fn max_label_value_length() -> usize {
        100
    }
    pub fn max_name_length() -> usize {
        200
    }
    pub fn max_samples_per_request() -> usize {
        500_000
    }
    pub fn max_fields_per_line() -> usize {
        1_000
    }
    pub fn max_past() -> Duration {
        7 * DAY
    }
    pub fn max_future() -> Duration {
        7 * DAY
    }
    pub fn max_typed_metrics() -> usize {
        100_000
    }
}

impl Default for ValidateConfig {
    fn default() -> Self {
        ValidateConfig {
            max_labels: defaults::max_labels(),
            max_label_value_length: defaults::max_label_value_length(),
            max_name_length: defaults::max_name_length(),
            max_samples_per_request: defaults::max_samples_per_request(),
            max_fields_per_line: defaults::max_fields_per_line(),
            max_past: defaults::max_past(),
            max_future: defaults::max_future(),
            unknown_metrics: UnknownMetrics::default(),
            non_finite: NonFinite::default(),
            max_typed_metrics: defaults::max_typed_metrics(),
        }
    }
}

impl ValidateConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_name_length == 0 {
            return Err("validate.max_name_length must be at least 1".into());
        }
        if self.max_samples_per_request == 0 {
            return Err("validate.max_samples_per_request must be at least 1".into());
        }
        if self.max_fields_per_line == 0 {
            return Err("validate.max_fields_per_line must be at least 1".into());
        }
        if self.max_label_value_length == 0 {
            return Err("validate.max_label_value_length must be at least 1".into());
        }
        for (key, d) in [("max_past", self.max_past), ("max_future", self.max_future)] {
            if d.as_millis() > i64::MAX as u128 / 2 {
                return Err(format!("validate.{key} is too large"));
            }
        }
        Ok(())
    }

    /// Worst-case bytes of the type table (for the start-up memory check).
    pub fn table_bytes(&self) -> u64 {
        // Key (inline name up to 24 bytes), kind, hash-table slot and control bytes, with growth slack.
        const PER_NAME: u64 = 80;
        self.max_typed_metrics as u64 * PER_NAME
    }
}

/// Prometheus' staleness marker: a NaN with this exact bit pattern.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The validate stage of one pipeline (shared by its stateless workers).
pub struct Validate {
    pipeline: Arc<str>,
    config: ValidateConfig,
    max_past_ms: i64,
    max_future_ms: i64,
    registry: Arc<MetricRegistry>,
    /// First type seen per metric name outside the registry.
    typed: DashMap<LabelStr, MetricKind, ahash::RandomState>,
    typed_count: AtomicUsize,
    typed_full_logged: AtomicBool,
}

/// What one metric name resolved to, reused while names repeat.
#[derive(Clone, Copy)]
struct Resolved<'r> {
    entry: Option<&'r MetricEntry>,
    pinned: Option<MetricKind>,
}

/// Names resolved during one batch, in a small direct-mapped cache: a
/// batch holds few distinct names, and the shared type table takes a lock
/// per lookup. Names are copied into the slots (no allocation per name).
pub(super) struct NameMemo<'r> {
    slots: Vec<MemoSlot<'r>>,
}

#[derive(Clone, Copy)]
struct MemoSlot<'r> {
    name: [u8; MEMO_NAME_BYTES],
    len: u8,
    resolved: Option<Resolved<'r>>,
}

const MEMO_SLOTS: usize = 64;
const MEMO_NAME_BYTES: usize = 48;

impl<'r> NameMemo<'r> {
    pub(super) fn new() -> Self {
        let empty = MemoSlot { name: [0; MEMO_NAME_BYTES], len: 0, resolved: None };
        NameMemo { slots: vec![empty; MEMO_SLOTS] }
    }

    fn slot(name: &str) -> usize {
        xxhash_rust::xxh3::xxh3_64(name.as_bytes()) as usize % MEMO_SLOTS
    }

    fn get(&self, name: &str) -> Option<Resolved<'r>> {
        let s = &self.slots[Self::slot(name)];
        s.resolved.filter(|_| s.len as usize == name.len() && &s.name[..name.len()] == name.as_bytes())
    }

    fn set(&mut self, name: &str, r: Resolved<'r>) {
        if name.len() <= MEMO_NAME_BYTES {
            let s = &mut self.slots[Self::slot(name)];
            s.name[..name.len()].copy_from_slice(name.as_bytes());
            s.len = name.len() as u8;
            s.resolved = Some(r);
        }
    }
}

impl Validate {
    pub fn new(pipeline: &str, config: &ValidateConfig, registry: Arc<MetricRegistry>) -> Self {
        Validate {
            pipeline: pipeline.into(),
            max_past_ms: config.max_past.as_millis() as i64,
            max_future_ms: config.max_future.as_millis() as i64,
            config: config.clone(),
            registry,
            typed: DashMap::with_hasher(ahash::RandomState::new()),
            typed_count: AtomicUsize::new(0),
            typed_full_logged: AtomicBool::new(false),
        }
    }

    fn resolve<'r>(&'r self, name: &str, memo: &mut NameMemo<'r>) -> Resolved<'r> {
        if let Some(r) = memo.get(name) {
            return r;
        }
        let entry = self.registry.get(name);
        let pinned = if entry.is_some() { None } else { self.typed.get(name).map(|k| *k) };
        let r = Resolved { entry, pinned };
        memo.set(name, r);
        r
    }

    /// Remembers `kind` as the type of `name`; returns the type that holds.
    fn pin(&self, name: &str, kind: MetricKind) -> MetricKind {
        if self.typed_count.load(Ordering::Relaxed) >= self.config.max_typed_metrics {
            if !self.typed_full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    pipeline = %self.pipeline,
                    limit = self.config.max_typed_metrics,
                    "validate.max_typed_metrics reached: types of further new metric names are not remembered"
                );
            }
            return kind;
        }
        let mut inserted = false;
        let held = *self.typed.entry(LabelStr::from(name)).or_insert_with(|| {
            inserted = true;
            kind
        });
        if inserted {
            self.typed_count.fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// Checks one sample (and fills in its type); `Err` says why it must go.
    fn check<'r>(&'r self, s: &mut Sample, now: i64, memo: &mut NameMemo<'r>) -> Result<(), DropReason> {
        self.check_labels(&s.labels)?;
        self.check_window(s.timestamp_ms, now)?;
        let resolved = self.resolve(s.name(), memo);
        match resolved.entry {
            Some(entry) => {
                check_allowed_labels(entry, &s.labels)?;
                self.check_kind_registered(s, entry.kind())?;
            }
            None => {
                self.check_unknown()?;
                self.check_kind_unregistered(s, resolved.pinned, memo)?;
            }
        }
        self.check_value(s)
    }

    /// The checks of the labels alone that come before the timestamp window:
    /// name lengths, label count, value lengths.
    pub(super) fn check_labels(&self, labels: &Labels) -> Result<(), DropReason> {
        let c = &self.config;
        let mut count = 0;
        let mut too_long = false;
        for l in labels.iter() {
            if l.name == METRIC_NAME_LABEL {
                if l.value.len() > c.max_name_length {
                    return Err(DropReason::InvalidName);
                }
                continue;
            }
            count += 1;
            if l.name.len() > c.max_name_length {
                return Err(DropReason::InvalidName);
            }
            // Bytes first: characters are counted only when bytes exceed.
            too_long |= l.value.len() > c.max_label_value_length && l.value.chars().count() > c.max_label_value_length;
        }
        if count > c.max_labels {
            return Err(DropReason::TooManyLabels);
        }
        if too_long {
            return Err(DropReason::LabelValueTooLong);
        }
        Ok(())
    }

    pub(super) fn check_window(&self, timestamp_ms: i64, now: i64) -> Result<(), DropReason> {
        if timestamp_ms < now.saturating_sub(self.max_past_ms) || timestamp_ms > now.saturating_add(self.max_future_ms)
        {
            return Err(DropReason::TimestampOutOfWindow);
        }
        Ok(())
    }

    /// The registry's entry for a metric name, if it has one.
    pub(super) fn registered(&self, name: &str) -> Option<&MetricEntry> {
        self.registry.get(name)
    }

    /// A metric outside the registry, when the registry is closed.
    pub(super) fn check_unknown(&self) -> Result<(), DropReason> {
        if self.config.unknown_metrics == UnknownMetrics::Reject {
            return Err(DropReason::UnknownMetric);
        }
        Ok(())
    }

    /// The sample's type against its registered one (filled in when unspecified).
    pub(super) fn check_kind_registered(&self, s: &mut Sample, registered: MetricKind) -> Result<(), DropReason> {
        match s.kind {
            MetricKind::Unspecified => s.kind = registered,
            k if k != registered => return Err(DropReason::TypeConflict),
            _ => {}
        }
        Ok(())
    }

    /// The sample's type against the first type seen for its name outside the registry.
    fn check_kind_unregistered<'r>(
        &'r self,
        s: &mut Sample,
        pinned: Option<MetricKind>,
        memo: &mut NameMemo<'r>,
    ) -> Result<(), DropReason> {
        match (s.kind, pinned) {
            (MetricKind::Unspecified, Some(pinned)) => s.kind = pinned,
            (MetricKind::Unspecified, None) => {}
            (k, Some(pinned)) if k != pinned => return Err(DropReason::TypeConflict),
            (_, Some(_)) => {}
            (k, None) => {
                let held = self.pin(s.name(), k);
                let name = s.labels.name().unwrap_or("");
                memo.set(name, Resolved { entry: None, pinned: Some(held) });
                if held != k {
                    return Err(DropReason::TypeConflict);
                }
            }
        }
        Ok(())
    }

    /// [`Self::check_kind_unregistered`] with the name's pinned type looked up.
    pub(super) fn check_kind_unpinned<'r>(&'r self, s: &mut Sample, memo: &mut NameMemo<'r>) -> Result<(), DropReason> {
        let pinned = self.resolve(s.name(), memo).pinned;
        self.check_kind_unregistered(s, pinned, memo)
    }

    /// Non-finite values, after the type is known.
    pub(super) fn check_value(&self, s: &Sample) -> Result<(), DropReason> {
        if !s.value.is_finite()
            && s.value.to_bits() != STALE_NAN_BITS
            && (self.config.non_finite == NonFinite::Drop || s.kind == MetricKind::Counter)
        {
            return Err(DropReason::NonNumeric);
        }
        Ok(())
    }
}

/// A registered metric whose entry lists its labels allows only those.
pub(super) fn check_allowed_labels(entry: &MetricEntry, labels: &Labels) -> Result<(), DropReason> {
    if entry.labels.is_some() && !labels.iter().all(|l| entry.allows_label(l.name)) {
        return Err(DropReason::LabelNotAllowed);
    }
    Ok(())
}

impl StatelessStage for Validate {
    fn process(&self, samples: &mut Vec<Sample>, drops: &mut DropTally) {
        let now = now_ms();
        let mut memo = NameMemo::new();
        let mut dropped: [u64; DropReason::ALL.len()] = [0; DropReason::ALL.len()];
        samples.retain_mut(|s| match self.check(s, now, &mut memo) {
            Ok(()) => true,
            Err(reason) => {
                dropped[reason as usize] += 1;
                false
            }
        });
        for reason in DropReason::ALL {
            drops.add(Stage::Validate, reason, dropped[reason as usize]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use figment::providers::Format;
    use std::path::Path;

    const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    unit: bytes
    labels: [device, port]
  - key: load
    name: load1
    type: gauge
"#;

    fn registry() -> Arc<MetricRegistry> {
        Arc::new(MetricRegistry::parse(REGISTRY, Path::new("test.yaml")).unwrap())
    }

    fn config(toml_text: &str) -> ValidateConfig {
        let c: ValidateConfig = figment::Figment::from(figment::providers::Toml::string(toml_text)).extract().unwrap();
        c.check().unwrap();
        c
    }

    fn sample(pairs: &[(&str, &str)], value: f64, kind: MetricKind) -> Sample {
        let mut labels: Labels = pairs.iter().copied().collect();
        labels.sort();
        Sample { labels, value, timestamp_ms: now_ms(), kind }
    }

    /// Runs one sample through a fresh memo; returns its outcome and resulting kind.
    fn check(v: &Validate, mut s: Sample) -> Result<MetricKind, DropReason> {
        let mut memo = NameMemo::new();
        v.check(&mut s, now_ms(), &mut memo).map(|()| s.kind)
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config("");
        assert_eq!((c.max_labels, c.max_label_value_length), (10, 100));
        assert_eq!(c.max_past, Duration::from_secs(7 * 86400));
        assert_eq!(c.max_future, Duration::from_secs(7 * 86400));
        assert_eq!(c.unknown_metrics, UnknownMetrics::Allow);
        let c = config("max_past = \"1h\"\nmax_future = \"5m\"\nunknown_metrics = \"reject\"\nnon_finite = \"drop\"");
        assert_eq!((c.max_past, c.max_future), (Duration::from_secs(3600), Duration::from_secs(300)));
    }

    #[test]
    fn limits() {
        let v =
            Validate::new("p", &config("max_labels = 2\nmax_label_value_length = 3\nmax_name_length = 5"), registry());
        let k = MetricKind::Unspecified;
        assert!(check(&v, sample(&[("__name__", "m"), ("a", "1"), ("b", "2")], 1.0, k)).is_ok());
        assert_eq!(
            check(&v, sample(&[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3")], 1.0, k)),
            Err(DropReason::TooManyLabels)
        );
        assert_eq!(check(&v, sample(&[("__name__", "m"), ("a", "1234")], 1.0, k)), Err(DropReason::LabelValueTooLong));
        // Characters, not bytes.
        assert!(check(&v, sample(&[("__name__", "m"), ("a", "äöü")], 1.0, k)).is_ok());
        assert_eq!(check(&v, sample(&[("__name__", "toolong")], 1.0, k)), Err(DropReason::InvalidName));
        assert_eq!(check(&v, sample(&[("__name__", "m"), ("toolong", "1")], 1.0, k)), Err(DropReason::InvalidName));
    }

    #[test]
    fn timestamp_window() {
        let v = Validate::new("p", &config("max_past = \"1h\"\nmax_future = \"1m\""), registry());
        let now = now_ms();
        let at = |ts: i64| {
            let mut s = sample(&[("__name__", "m")], 1.0, MetricKind::Gauge);
            s.timestamp_ms = ts;
            v.check(&mut s, now, &mut NameMemo::new())
        };
        assert!(at(now).is_ok());
        assert!(at(now - 3_599_000).is_ok());
        assert_eq!(at(now - 3_601_000), Err(DropReason::TimestampOutOfWindow));
        assert!(at(now + 59_000).is_ok());
        assert_eq!(at(now + 61_000), Err(DropReason::TimestampOutOfWindow));
        assert_eq!(at(i64::MIN), Err(DropReason::TimestampOutOfWindow));
    }

    #[test]
    fn registry_type_labels_and_unknown_metrics() {
        let v = Validate::new("p", &config(""), registry());
        let port = [("__name__", "port_in_octets_total"), ("device", "sw1"), ("port", "1")];
        assert_eq!(check(&v, sample(&port, 1.0, MetricKind::Unspecified)), Ok(MetricKind::Counter));
        assert_eq!(check(&v, sample(&port, 1.0, MetricKind::Counter)), Ok(MetricKind::Counter));
        assert_eq!(check(&v, sample(&port, 1.0, MetricKind::Gauge)), Err(DropReason::TypeConflict));
        let extra = [("__name__", "port_in_octets_total"), ("device", "sw1"), ("vlan", "7")];
        assert_eq!(check(&v, sample(&extra, 1.0, MetricKind::Counter)), Err(DropReason::LabelNotAllowed));
        // No `labels` list: anything goes.
        assert!(check(&v, sample(&[("__name__", "load1"), ("x", "y")], 1.0, MetricKind::Unspecified)).is_ok());
        assert!(check(&v, sample(&[("__name__", "other")], 1.0, MetricKind::Unspecified)).is_ok());

        let strict = Validate::new("p", &config("unknown_metrics = \"reject\""), registry());
        assert_eq!(
            check(&strict, sample(&[("__name__", "other")], 1.0, MetricKind::Gauge)),
            Err(DropReason::UnknownMetric)
        );
        assert!(check(&strict, sample(&[("__name__", "load1")], 1.0, MetricKind::Gauge)).is_ok());
    }

    #[test]
    fn first_type_seen_wins() {
        let v = Validate::new("p", &config(""), registry());
        assert_eq!(
            check(&v, sample(&[("__name__", "jobs")], 1.0, MetricKind::Unspecified)),
            Ok(MetricKind::Unspecified)
        );
        assert_eq!(check(&v, sample(&[("__name__", "jobs")], 1.0, MetricKind::Counter)), Ok(MetricKind::Counter));
        assert_eq!(check(&v, sample(&[("__name__", "jobs")], 1.0, MetricKind::Gauge)), Err(DropReason::TypeConflict));
        // A sample without a hint inherits the remembered type.
        assert_eq!(check(&v, sample(&[("__name__", "jobs")], 1.0, MetricKind::Unspecified)), Ok(MetricKind::Counter));
    }

    #[test]
    fn type_table_is_bounded() {
        let v = Validate::new("p", &config("max_typed_metrics = 1"), registry());
        assert!(check(&v, sample(&[("__name__", "a")], 1.0, MetricKind::Counter)).is_ok());
        assert!(check(&v, sample(&[("__name__", "b")], 1.0, MetricKind::Counter)).is_ok());
        assert!(check(&v, sample(&[("__name__", "b")], 1.0, MetricKind::Gauge)).is_ok(), "b was not remembered");
        assert_eq!(check(&v, sample(&[("__name__", "a")], 1.0, MetricKind::Gauge)), Err(DropReason::TypeConflict));
        assert_eq!(v.typed.len(), 1);
    }

    #[test]
    fn non_finite_values() {
        let keep = Validate::new("p", &config(""), registry());
        let g = |v| sample(&[("__name__", "temp")], v, MetricKind::Gauge);
        assert!(check(&keep, g(f64::NAN)).is_ok());
        assert!(check(&keep, g(f64::INFINITY)).is_ok());
        let c = |v| sample(&[("__name__", "port_in_octets_total")], v, MetricKind::Unspecified);
        assert_eq!(check(&keep, c(f64::NAN)), Err(DropReason::NonNumeric));
        assert_eq!(check(&keep, c(f64::NEG_INFINITY)), Err(DropReason::NonNumeric));
        assert!(check(&keep, c(f64::from_bits(STALE_NAN_BITS))).is_ok(), "staleness markers pass");
        let drop = Validate::new("p", &config("non_finite = \"drop\""), registry());
        assert_eq!(check(&drop, g(f64::NAN)), Err(DropReason::NonNumeric));
        assert!(check(&drop, g(1.5)).is_ok());
    }

    #[test]
    fn stage_counts_each_reason_and_memo_does_not_leak_between_names() {
        let v = Validate::new("p", &config("max_labels = 1"), registry());
        let mut samples = vec![
            sample(&[("__name__", "load1")], 1.0, MetricKind::Unspecified),
            sample(&[("__name__", "load1")], 2.0, MetricKind::Counter),
            sample(&[("__name__", "port_in_octets_total"), ("device", "a")], 3.0, MetricKind::Unspecified),
            sample(&[("__name__", "x"), ("a", "1"), ("b", "2")], 4.0, MetricKind::Unspecified),
            sample(&[("__name__", "load1")], 5.0, MetricKind::Unspecified),
        ];
        let mut drops = DropTally::default();
        v.process(&mut samples, &mut drops);
        let kinds: Vec<_> = samples.iter().map(|s| (s.value, s.kind)).collect();
        assert_eq!(kinds, vec![(1.0, MetricKind::Gauge), (3.0, MetricKind::Counter), (5.0, MetricKind::Gauge)]);
        let mut counted: Vec<_> = drops.drain().collect();
        counted.sort_by_key(|c| c.1);
        assert_eq!(
            counted,
            vec![(Stage::Validate, DropReason::TooManyLabels, 1), (Stage::Validate, DropReason::TypeConflict, 1)]
        );
    }
}
