//! Stage 3, stateful: bounds the number of distinct series, per metric and
//! per pipeline, and reports labels that look like ids.
//!
//! Each shard owns the series hashed to it in its series table (see
//! [`super::series`]), which this stage admits into and forgets from. Series
//! counts per metric and for the pipeline are shared by all shards (dashmap
//! and an atomic). Only *new* series can be refused; known series always pass.
//! Series idle for `forget_after` are forgotten and stop counting.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::Mutex;
use serde::Deserialize;

use super::retain_aligned_ahead;
use super::series::{ShardSeries, SharedShard};
use crate::model::{LabelStr, METRIC_NAME_LABEL, Sample};
use crate::pipeline::{DropTally, StatefulStage};
use crate::telemetry::{CardinalityMetrics, DropReason, Stage, suspicious_label};

/// `[pipelines.<name>.cardinality]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardinalityConfig {
    /// Distinct series one metric name may have; new ones beyond are refused.
    #[serde(default = "defaults::max_series_per_metric")]
    pub max_series_per_metric: u32,
    /// Distinct series the whole pipeline may track; bounds the memory of
    /// this stage and of `monotonic` (about 130 bytes a series together).
    #[serde(default = "defaults::max_series")]
    pub max_series: u64,
    /// Distinct metric names the pipeline may track at once; bounds the
    /// per-metric tables (a new name beyond is refused like a new series).
    #[serde(default = "defaults::max_metrics")]
    pub max_metrics: u32,
    /// Distinct label pairs (`name="value"`) kept for the discovery API,
    /// split evenly across shards. Beyond, new series are listed with only
    /// their known pairs; limits and accounting are unaffected.
    #[serde(default = "defaults::max_label_pairs")]
    pub max_label_pairs: usize,
    /// Share of a limit at which a warning is logged and counted.
    #[serde(default = "defaults::warn_ratio")]
    pub warn_ratio: f64,
    /// What happens to a sample of a new series over a limit.
    #[serde(default)]
    pub action: CardinalityAction,
    /// A series without samples for this long is forgotten (and so is its monotonic state).
    #[serde(default = "defaults::forget_after", with = "humantime_serde")]
    pub forget_after: Duration,
    /// Report labels that look like ids (UUIDs, long hex or digit strings, `id_label_names`).
    #[serde(default = "defaults::detect_id_labels")]
    pub detect_id_labels: bool,
    /// Label names that are ids whatever their values look like.
    #[serde(default = "defaults::id_label_names")]
    pub id_label_names: Vec<String>,
    /// Most metric/label pairs reported as suspicious (bounds that metric's series).
    #[serde(default = "defaults::max_suspicious_labels")]
    pub max_suspicious_labels: usize,
}

/// `action = "drop_sample"` or `action = { drop_label = "name" }`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardinalityAction {
    /// Drop the sample (`cardinality`).
    #[default]
    DropSample,
    /// Remove this label and keep the sample as the reduced series. Reduced
    /// series count toward their metric and may exceed its limit (there is
    /// one per remaining label set), but not the pipeline's `max_series`;
    /// samples without the label, or over that limit, are dropped (`cardinality`).
    DropLabel(String),
}

pub mod defaults {
    use std::time::Duration;

    pub fn max_series_per_metric() -> u32 {
        10_000
    }
    pub fn max_series() -> u64 {
        1_000_000
    }
    pub fn max_metrics() -> u32 {
        100_000
    }
    pub fn max_label_pairs() -> usize {
        200_000
    }
    pub fn warn_ratio() -> f64 {
        0.8
    }
    pub fn forget_after() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn detect_id_labels() -> bool {
        true
    }
    pub fn id_label_names() -> Vec<String> {
        ["user_id", "session_id", "request_id", "trace_id", "span_id", "uuid"].map(String::from).to_vec()
    }
    pub fn max_suspicious_labels() -> usize {
        1000
    }
}

impl Default for CardinalityConfig {
    fn default() -> Self {
        CardinalityConfig {
            max_series_per_metric: defaults::max_series_per_metric(),
            max_series: defaults::max_series(),
            max_metrics: defaults::max_metrics(),
            max_label_pairs: defaults::max_label_pairs(),
            warn_ratio: defaults::warn_ratio(),
            action: CardinalityAction::default(),
            forget_after: defaults::forget_after(),
            detect_id_labels: defaults::detect_id_labels(),
            id_label_names: defaults::id_label_names(),
            max_suspicious_labels: defaults::max_suspicious_labels(),
        }
    }
}

impl CardinalityConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.max_series_per_metric == 0 || self.max_series == 0 || self.max_metrics == 0 {
            return Err("cardinality.max_series_per_metric, max_series and max_metrics must be at least 1".into());
        }
        if self.max_series >= 1 << 31 {
            return Err(format!("cardinality.max_series is above {}", (1u64 << 31) - 1));
        }
        if !(self.warn_ratio > 0.0 && self.warn_ratio <= 1.0) {
            return Err(format!("cardinality.warn_ratio {} is not in (0, 1]", self.warn_ratio));
        }
        if self.forget_after < Duration::from_secs(1) {
            return Err("cardinality.forget_after must be at least 1s".into());
        }
        if let CardinalityAction::DropLabel(l) = &self.action
            && (l == METRIC_NAME_LABEL || !crate::registry::is_valid_label_name(l))
        {
            return Err(format!("cardinality.action.drop_label {l:?} is not a label one may drop"));
        }
        Ok(())
    }

    fn threshold(&self, limit: u64) -> u64 {
        ((limit as f64 * self.warn_ratio).ceil() as u64).max(1)
    }
}

/// State shared by the shards of one pipeline.
pub struct CardinalityShared {
    pipeline: Arc<str>,
    config: CardinalityConfig,
    metric_warn_at: u32,
    total_warn_at: u64,
    total: AtomicU64,
    per_metric: DashMap<LabelStr, u32, ahash::RandomState>,
    /// Entries in `per_metric` (`DashMap::len` would lock every shard).
    metric_count: AtomicUsize,
    suspicious: DashMap<(LabelStr, LabelStr), (), ahash::RandomState>,
    suspicious_count: AtomicUsize,
    suspicious_full_logged: AtomicBool,
    total_warned: AtomicBool,
    metrics: CardinalityMetrics,
    /// Every shard's series table, for the discovery API.
    shards: Mutex<Vec<SharedShard>>,
    max_label_pairs_per_shard: usize,
    /// Zero of the seconds clock every shard stamps series with.
    epoch: Instant,
}

impl CardinalityShared {
    /// State for a pipeline of `shards` shards.
    pub fn new(pipeline: &str, config: &CardinalityConfig, shards: usize) -> Arc<Self> {
        let metrics = CardinalityMetrics::new(pipeline);
        metrics.limit_series.set(config.max_series as f64);
        metrics.series.set(0.0);
        Arc::new(CardinalityShared {
            pipeline: pipeline.into(),
            metric_warn_at: config.threshold(config.max_series_per_metric as u64) as u32,
            total_warn_at: config.threshold(config.max_series),
            config: config.clone(),
            total: AtomicU64::new(0),
            per_metric: DashMap::with_hasher(ahash::RandomState::new()),
            metric_count: AtomicUsize::new(0),
            suspicious: DashMap::with_hasher(ahash::RandomState::new()),
            suspicious_count: AtomicUsize::new(0),
            suspicious_full_logged: AtomicBool::new(false),
            total_warned: AtomicBool::new(false),
            metrics,
            shards: Mutex::new(Vec::new()),
            max_label_pairs_per_shard: config.max_label_pairs.div_ceil(shards.max(1)),
            epoch: Instant::now(),
        })
    }

    /// A new shard's series table, registered for discovery.
    pub fn new_shard(&self) -> SharedShard {
        let shard = Arc::new(Mutex::new(ShardSeries::new(self.max_label_pairs_per_shard)));
        self.shards.lock().push(shard.clone());
        shard
    }

    /// The shards' series tables.
    pub fn shards(&self) -> Vec<SharedShard> {
        self.shards.lock().clone()
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    fn now(&self) -> u32 {
        self.epoch.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    /// Series tracked by the pipeline right now.
    pub fn series(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Series tracked for one metric name right now.
    pub fn series_of(&self, metric: &str) -> u32 {
        self.per_metric.get(metric).map_or(0, |c| *c)
    }

    /// Takes one slot of the pipeline-wide limit, if one is left.
    fn reserve_total(&self) -> bool {
        let max = self.config.max_series;
        let taken = self.total.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |t| (t < max).then_some(t + 1));
        match taken {
            Ok(before) => {
                self.metrics.series.increment(1.0);
                if before + 1 == self.total_warn_at && !self.total_warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        pipeline = %self.pipeline, series = before + 1, limit = max,
                        "pipeline reached {:.0}% of cardinality.max_series", self.config.warn_ratio * 100.0
                    );
                }
                true
            }
            Err(_) => false,
        }
    }

    fn release_total(&self, n: u64) {
        self.metrics.series.decrement(n as f64);
        let after = self.total.fetch_sub(n, Ordering::AcqRel) - n;
        if after < self.total_warn_at {
            self.total_warned.store(false, Ordering::Relaxed);
        }
    }

    /// Admits a new series of `metric` if the limits allow it (the metric's
    /// own limit only when `per_metric_limit`).
    fn admit(&self, metric: &str, per_metric_limit: bool) -> bool {
        let limit = if per_metric_limit { self.config.max_series_per_metric } else { u32::MAX };
        let over_warn = |count: u32| count >= self.metric_warn_at;
        let count = match self.per_metric.get_mut(metric) {
            Some(mut count) => {
                if *count >= limit || !self.reserve_total() {
                    return false;
                }
                *count += 1;
                *count
            }
            None => match self.per_metric.entry(LabelStr::from(metric)) {
                Entry::Occupied(mut count) => {
                    if *count.get() >= limit || !self.reserve_total() {
                        return false;
                    }
                    *count.get_mut() += 1;
                    *count.get()
                }
                Entry::Vacant(slot) => {
                    if self.metric_count.load(Ordering::Relaxed) >= self.config.max_metrics as usize {
                        return false;
                    }
                    if !self.reserve_total() {
                        return false;
                    }
                    slot.insert(1);
                    self.metric_count.fetch_add(1, Ordering::Relaxed);
                    1
                }
            },
        };
        if over_warn(count) && !over_warn(count - 1) {
            self.metrics.metrics_over_warn.increment(1.0);
            tracing::warn!(
                pipeline = %self.pipeline, metric, series = count, limit = self.config.max_series_per_metric,
                "metric reached {:.0}% of cardinality.max_series_per_metric", self.config.warn_ratio * 100.0
            );
        }
        true
    }

    /// `n` series of `metric` were forgotten.
    fn forget(&self, metric: &str, n: u32) {
        if let Some(mut count) = self.per_metric.get_mut(metric) {
            let before = *count;
            *count = before.saturating_sub(n);
            if before >= self.metric_warn_at && *count < self.metric_warn_at {
                self.metrics.metrics_over_warn.decrement(1.0);
            }
        }
        if self.per_metric.remove_if(metric, |_, count| *count == 0).is_some() {
            self.metric_count.fetch_sub(1, Ordering::Relaxed);
        }
        self.release_total(n as u64);
    }

    /// Reports `label` of `metric` as id-like, once, within the bound.
    fn report_suspicious(&self, metric: &str, label: &str, why: &str) {
        if self.suspicious_count.load(Ordering::Relaxed) >= self.config.max_suspicious_labels {
            if !self.suspicious_full_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    pipeline = %self.pipeline, limit = self.config.max_suspicious_labels,
                    "cardinality.max_suspicious_labels reached: further id-like labels are not reported"
                );
            }
            return;
        }
        if let Entry::Vacant(slot) = self.suspicious.entry((LabelStr::from(metric), LabelStr::from(label))) {
            slot.insert(());
            self.suspicious_count.fetch_add(1, Ordering::Relaxed);
            suspicious_label(&self.pipeline, metric, label).set(1.0);
            tracing::warn!(
                pipeline = %self.pipeline, metric, label, reason = why,
                "label looks like an id: every value makes a new series"
            );
        }
    }
}

/// The cardinality stage of one shard.
pub struct Cardinality {
    shared: Arc<CardinalityShared>,
    shard: SharedShard,
    /// (metric, label) hashes this shard already reported; bounded like the shared set.
    reported: HashSet<u64, ahash::RandomState>,
    last_sweep: u32,
}

impl Cardinality {
    /// The stage of one shard; `shard` is that shard's series table (see
    /// [`CardinalityShared::new_shard`]), shared with its monotonic stage.
    pub fn new(shared: Arc<CardinalityShared>, shard: SharedShard) -> Self {
        Cardinality { shared, shard, reported: HashSet::default(), last_sweep: 0 }
    }

    /// Series tracked by this shard.
    pub fn len(&self) -> usize {
        self.shard.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tracks a series seen for the first time, if the limits allow.
    fn admit(
        &mut self,
        series: &mut ShardSeries,
        sample: &Sample,
        hash: u64,
        now: u32,
        per_metric_limit: bool,
    ) -> bool {
        if self.shared.config.detect_id_labels {
            self.inspect_ids(sample);
        }
        if !self.shared.admit(sample.name(), per_metric_limit) {
            return false;
        }
        series.insert(hash, &sample.labels, now);
        true
    }

    fn inspect_ids(&mut self, sample: &Sample) {
        let metric = sample.name();
        for l in sample.labels.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            let why = if self.shared.config.id_label_names.iter().any(|n| n == l.name) {
                "id label name"
            } else if let Some(why) = looks_like_id(l.value) {
                why
            } else {
                continue;
            };
            let key = xxhash_rust::xxh3::xxh3_64(format!("{metric}\u{0}{}", l.name).as_bytes());
            if self.reported.contains(&key) {
                continue;
            }
            if self.reported.len() < self.shared.config.max_suspicious_labels {
                self.reported.insert(key);
            }
            self.shared.report_suspicious(metric, l.name, why);
        }
    }

    /// Forgets series idle for longer than `forget_after`.
    fn sweep(&mut self, series: &mut ShardSeries, now: u32) {
        let idle = self.shared.config.forget_after.as_secs().min(u32::MAX as u64) as u32;
        let mut total = 0u64;
        for (metric, n) in series.sweep(now, idle) {
            self.shared.forget(&metric, n);
            total += n as u64;
        }
        if total > 0 {
            self.shared.metrics.forgotten_series.increment(total);
        }
    }

    /// The stage with an explicit clock (seconds since the pipeline started), for tests.
    pub(super) fn process_at(
        &mut self,
        now: u32,
        samples: &mut Vec<Sample>,
        hashes: &mut Vec<u64>,
        drops: &mut DropTally,
    ) {
        let shard = self.shard.clone();
        let mut series = shard.lock();
        let sweep_every = (self.shared.config.forget_after.as_secs() / 8).max(1) as u32;
        if now.saturating_sub(self.last_sweep) >= sweep_every {
            self.last_sweep = now;
            self.sweep(&mut series, now);
        }
        let mut refused = 0u64;
        let mut rewritten = 0u64;
        let drop_label = match &self.shared.config.action {
            CardinalityAction::DropLabel(l) => Some(l.clone()),
            CardinalityAction::DropSample => None,
        };
        // The table is far larger than the caches at many series: each lookup is
        // asked for a few samples ahead.
        retain_aligned_ahead(samples, hashes, |sample, hash, ahead| {
            if let Some(ahead) = ahead {
                series.prefetch(ahead);
            }
            if let Some(s) = series.get_mut(*hash) {
                s.seen = now;
                return true;
            }
            if self.admit(&mut series, sample, *hash, now, true) {
                return true;
            }
            if let Some(label) = &drop_label
                && sample.labels.remove(label)
            {
                let reduced = sample.labels.series_hash();
                let kept = match series.get_mut(reduced) {
                    Some(s) => {
                        s.seen = now;
                        true
                    }
                    // One reduced series per remaining label set may exceed
                    // the metric's limit; the pipeline's limit still applies.
                    None => self.admit(&mut series, sample, reduced, now, false),
                };
                if kept {
                    *hash = reduced;
                    rewritten += 1;
                    return true;
                }
            }
            refused += 1;
            false
        });
        drops.add(Stage::Cardinality, DropReason::Cardinality, refused);
        if rewritten > 0 {
            self.shared.metrics.rewritten_samples.increment(rewritten);
        }
    }
}

impl StatefulStage for Cardinality {
    fn process(&mut self, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally) {
        let now = self.shared.now();
        self.process_at(now, samples, hashes, drops);
    }
}

/// Why a label value looks like an id, if it does: a UUID, 16 or more hex
/// digits (hashes, trace ids) or 10 or more decimal digits (user ids, timestamps).
pub fn looks_like_id(value: &str) -> Option<&'static str> {
    let b = value.as_bytes();
    let is_uuid = b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() });
    if is_uuid {
        return Some("uuid value");
    }
    if b.len() >= 10 && b.iter().all(u8::is_ascii_digit) {
        return Some("long digit value");
    }
    if b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit) {
        return Some("long hex value");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use figment::providers::Format;

    fn config(toml_text: &str) -> CardinalityConfig {
        let c: CardinalityConfig =
            figment::Figment::from(figment::providers::Toml::string(toml_text)).extract().unwrap();
        c.check().unwrap();
        c
    }

    fn sample(name: &str, pairs: &[(&str, &str)]) -> Sample {
        let mut labels: Labels = std::iter::once(("__name__", name)).chain(pairs.iter().copied()).collect();
        labels.sort();
        Sample::new(labels, 1.0, 1)
    }

    fn stage(shared: &Arc<CardinalityShared>) -> Cardinality {
        Cardinality::new(shared.clone(), shared.new_shard())
    }

    fn run(shard: &mut Cardinality, now: u32, samples: Vec<Sample>) -> (Vec<Sample>, Vec<u64>, u64) {
        let mut samples = samples;
        let mut hashes: Vec<u64> = samples.iter().map(|s| s.labels.series_hash()).collect();
        let mut drops = DropTally::default();
        shard.process_at(now, &mut samples, &mut hashes, &mut drops);
        let refused = drops.drain().map(|(stage, reason, n)| {
            assert_eq!((stage, reason), (Stage::Cardinality, DropReason::Cardinality));
            n
        });
        let refused = refused.sum();
        (samples, hashes, refused)
    }

    fn hosts(name: &str, range: std::ops::Range<u32>) -> Vec<Sample> {
        range.map(|i| sample(name, &[("host", &format!("h{i}"))])).collect()
    }

    #[test]
    fn config_defaults_and_action_forms() {
        let c = config("");
        assert_eq!((c.max_series_per_metric, c.warn_ratio, c.forget_after), (10_000, 0.8, Duration::from_secs(3600)));
        assert_eq!(c.action, CardinalityAction::DropSample);
        assert_eq!(config("action = \"drop_sample\"").action, CardinalityAction::DropSample);
        assert_eq!(config("action = { drop_label = \"path\" }").action, CardinalityAction::DropLabel("path".into()));
        let bad: CardinalityConfig =
            figment::Figment::from(figment::providers::Toml::string("warn_ratio = 1.5")).extract().unwrap();
        assert!(bad.check().unwrap_err().contains("warn_ratio"));
    }

    #[test]
    fn per_metric_limit_refuses_only_new_series() {
        let shared = CardinalityShared::new("t1", &config("max_series_per_metric = 3"), 1);
        let mut shard = stage(&shared);
        let (kept, _, refused) = run(&mut shard, 0, hosts("m", 0..5));
        assert_eq!((kept.len(), refused), (3, 2));
        // Known series keep flowing; new ones stay refused; other metrics are unaffected.
        let mut again = hosts("m", 0..5);
        again.push(sample("other", &[]));
        let (kept, _, refused) = run(&mut shard, 1, again);
        assert_eq!((kept.len(), refused), (4, 2));
        assert_eq!(shared.series_of("m"), 3);
        assert_eq!(shared.series(), 4);
    }

    #[test]
    fn metric_name_limit() {
        let shared = CardinalityShared::new("t6", &config("max_metrics = 2"), 1);
        let mut shard = stage(&shared);
        let samples = vec![sample("a", &[]), sample("b", &[]), sample("c", &[]), sample("a", &[("x", "1")])];
        let (kept, _, refused) = run(&mut shard, 0, samples);
        assert_eq!((kept.len(), refused), (3, 1));
        assert_eq!(shared.series_of("c"), 0);
    }

    #[test]
    fn pipeline_limit_is_shared_by_shards() {
        let shared = CardinalityShared::new("t2", &config("max_series = 4"), 1);
        let mut a = stage(&shared);
        let mut b = stage(&shared);
        assert_eq!(run(&mut a, 0, hosts("m", 0..3)).2, 0);
        let (kept, _, refused) = run(&mut b, 0, hosts("n", 0..3));
        assert_eq!((kept.len(), refused), (1, 2));
        assert_eq!(shared.series(), 4);
    }

    #[test]
    fn idle_series_are_forgotten_and_free_their_slots() {
        let shared = CardinalityShared::new("t3", &config("max_series_per_metric = 2\nforget_after = \"16s\""), 1);
        let mut shard = stage(&shared);
        assert_eq!(run(&mut shard, 0, hosts("m", 0..2)).2, 0);
        // h0 stays active, h1 goes idle.
        for t in [4, 8, 12] {
            run(&mut shard, t, hosts("m", 0..1));
        }
        assert_eq!(run(&mut shard, 12, hosts("m", 2..3)).2, 1, "limit still full");
        let (kept, _, refused) = run(&mut shard, 18, hosts("m", 0..1).into_iter().chain(hosts("m", 2..3)).collect());
        assert_eq!((kept.len(), refused), (2, 0), "h1 forgotten, h2 admitted");
        assert_eq!(shared.series_of("m"), 2);
        // Everything idle: the metric's shared entry disappears too.
        run(&mut shard, 60, Vec::new());
        assert_eq!(shard.len(), 0);
        assert_eq!(shared.series(), 0);
        assert!(shared.per_metric.is_empty());
    }

    #[test]
    fn drop_label_action_keeps_a_reduced_series() {
        let shared = CardinalityShared::new(
            "t4",
            &config("max_series_per_metric = 2\naction = { drop_label = \"path\" }\ndetect_id_labels = false"),
            1,
        );
        let mut shard = stage(&shared);
        let samples: Vec<Sample> =
            (0..5).map(|i| sample("http", &[("code", "200"), ("path", &format!("/p{i}"))])).collect();
        let (kept, hashes, refused) = run(&mut shard, 0, samples);
        // /p0 and /p1 fit; /p2../p4 lose `path` and share http{code="200"},
        // which may exceed the metric's limit (it is one series per remaining label set).
        assert_eq!((kept.len(), refused), (5, 0));
        assert_eq!(kept.iter().filter(|s| s.labels.get("path").is_none()).count(), 3);
        for (s, h) in kept.iter().zip(&hashes) {
            assert_eq!(*h, s.labels.series_hash(), "hashes stay aligned with rewritten samples");
        }
        assert_eq!(shared.series_of("http"), 3);

        // The pipeline limit still holds for reduced series.
        let shared = CardinalityShared::new(
            "t4b",
            &config("max_series = 2\naction = { drop_label = \"path\" }\ndetect_id_labels = false"),
            1,
        );
        let mut shard = stage(&shared);
        let samples: Vec<Sample> =
            (0..4).map(|i| sample("http", &[("code", "200"), ("path", &format!("/p{i}"))])).collect();
        let (kept, _, refused) = run(&mut shard, 0, samples);
        assert_eq!((kept.len(), refused), (2, 2));
        // A sample without the label cannot be reduced: dropped.
        let (kept, _, refused) = run(&mut shard, 0, vec![sample("http", &[("code", "500")])]);
        assert_eq!((kept.len(), refused), (0, 1));
    }

    #[test]
    fn id_like_labels_are_reported_once_and_bounded() {
        let shared = CardinalityShared::new("t5", &config("max_suspicious_labels = 2"), 1);
        let mut shard = stage(&shared);
        let samples = vec![
            sample("a", &[("id", "0f8fad5b-d9cb-469f-a165-70867728950e")]),
            sample("a", &[("id", "7c9e6679-7425-40de-944b-e07fc1f90ae7")]),
            sample("a", &[("user_id", "42")]),
            sample("b", &[("trace", "4bf92f3577b34da6a3ce929d0e0e4736")]),
            sample("b", &[("host", "web-1")]),
        ];
        run(&mut shard, 0, samples);
        let mut reported: Vec<(String, String)> =
            shared.suspicious.iter().map(|e| (e.key().0.to_string(), e.key().1.to_string())).collect();
        reported.sort();
        assert_eq!(reported, vec![("a".into(), "id".into()), ("a".into(), "user_id".into())]);
    }

    #[test]
    fn id_detection() {
        for id in ["0f8fad5b-d9cb-469f-a165-70867728950e", "4bf92f3577b34da6", "1700000000", "deadbeefcafebabe00"] {
            assert!(looks_like_id(id).is_some(), "{id}");
        }
        for not_id in ["web-1", "200", "GET", "/api/v1/write", "123456789", "deadbeef", "eu-west-1a"] {
            assert!(looks_like_id(not_id).is_none(), "{not_id}");
        }
    }
}
