//! Stage 5, stateful: stream aggregation (`[[pipelines.<name>.aggregate]]`).
//!
//! Each rule folds the samples its `match` selects into buckets aligned to
//! multiples of `interval` since the epoch, one bucket per output series
//! (the input's labels reduced by `by` / `without`). A bucket covers
//! `(end − interval, end]` and closes once the wall clock passes `end + lag`;
//! its results leave as ordinary samples stamped `end`, named
//! `<name>:<interval>_<output>`, to every sink of the pipeline.
//!
//! Series of one output series may live on different shards, so each shard
//! keeps its own partial buckets ([`state::RuleShard`], locked once per batch
//! by the shard and once per tick by the flusher); the pipeline's flush task
//! ([`AggregateShared::flush`]) takes the closed buckets of every shard,
//! merges the partials and emits the results. Counter state (`increase`,
//! `rate`) is per input series, which lives on one shard.
//!
//! Per rule, the end of the newest bucket emitted is kept in a small file
//! under `data_dir` ([`watermark`]); a restarted daemon reads it back and
//! treats those buckets as closed, so none is emitted twice.
//!
//! See docs/aggregate.md for the semantics and the accounting.

mod config;
mod flush;
mod stage;
mod state;
#[cfg(test)]
mod tests;
pub mod watermark;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

pub(crate) use config::check_rules;
pub use config::{
    AggregateRule, BYTES_PER_COUNTER_SERIES, BYTES_PER_QUANTILE_SAMPLE, BYTES_PER_SERIES, FIXED_BYTES_PER_BUCKET,
    Output, interval_text,
};
pub use flush::{FlushKind, format_phi, quantile};
pub use stage::Aggregate;
pub use state::Acc;

use crate::model::selector::Selector;
use crate::telemetry::AggregateMetrics;
use state::{RuleLimits, RuleShard};
use watermark::{WatermarkError, WatermarkFile};

/// Every rule's state in one shard.
pub type SharedAggShard = Arc<Mutex<Vec<RuleShard>>>;

/// How a rule reduces an input's labels to its output series.
#[derive(Debug, Clone)]
enum Grouping {
    /// Every input series is its own output series.
    All,
    /// Keep only these (sorted).
    By(Vec<String>),
    /// Keep all but these (sorted).
    Without(Vec<String>),
}

/// A rule ready to run.
struct CompiledRule {
    config: AggregateRule,
    selector: Selector,
    grouping: Grouping,
    interval_ms: i64,
    lag_ms: i64,
    /// `:<interval>_` in output names.
    infix: String,
    counters: bool,
    values: bool,
    limits: RuleLimits,
    /// End (ms) of the newest bucket this rule emitted, in this run or an
    /// earlier one (`i64::MIN`: none); buckets up to it are closed for good.
    emitted_until: AtomicI64,
}

/// Where a pipeline's watermarks are saved, and what was saved last.
struct Saved {
    file: WatermarkFile,
    rules: BTreeMap<String, i64>,
}

/// The aggregate state of one pipeline, shared by its shards and its flush task.
pub struct AggregateShared {
    pipeline: Arc<str>,
    rules: Vec<CompiledRule>,
    /// Rules whose selector fixes `__name__`, by that name; the others are tried on every sample.
    by_name: HashMap<String, Vec<usize>, ahash::RandomState>,
    any_name: Vec<usize>,
    shards: Mutex<Vec<SharedAggShard>>,
    /// Counters idle this long are forgotten (the pipeline's `cardinality.forget_after`).
    forget_after_secs: u32,
    epoch: Instant,
    last_sweep: Mutex<u32>,
    /// Set by [`AggregateShared::restore`] (the daemon); without it nothing is saved.
    saved: Mutex<Option<Saved>>,
    watermark_write_errors: metrics::Counter,
}

impl AggregateShared {
    /// The state of pipeline `pipeline`'s rules (already checked by the config).
    pub fn new(pipeline: &str, rules: &[AggregateRule], forget_after: std::time::Duration) -> Arc<Self> {
        let mut compiled = Vec::with_capacity(rules.len());
        let mut by_name: HashMap<String, Vec<usize>, ahash::RandomState> = HashMap::default();
        let mut any_name = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            // The config was checked at load; a selector that fails here selects nothing.
            let selector = Selector::parse(&r.selector).unwrap_or_else(|e| {
                tracing::error!(pipeline, rule = %r.name(), error = %e, "aggregate rule disabled");
                Selector::parse("__tsrelay_aggregate_disabled__").expect("a plain name parses")
            });
            match selector.metric_name() {
                Some(name) => by_name.entry(name.to_string()).or_default().push(i),
                None => any_name.push(i),
            }
            let sorted = |v: &Vec<String>| {
                let mut v = v.clone();
                v.sort();
                v.dedup();
                v
            };
            let grouping = match (&r.by, &r.without) {
                (Some(by), _) => Grouping::By(sorted(by)),
                (None, Some(without)) => Grouping::Without(sorted(without)),
                (None, None) => Grouping::All,
            };
            let metrics = AggregateMetrics::new(pipeline, &r.name());
            let limit_bytes = r.max_series.saturating_mul(BYTES_PER_SERIES);
            compiled.push(CompiledRule {
                selector,
                grouping,
                interval_ms: r.interval_ms(),
                lag_ms: r.lag_ms(),
                infix: format!(":{}_", r.interval_text()),
                counters: r.needs_counters(),
                values: r.needs_values(),
                limits: RuleLimits::new(
                    limit_bytes,
                    if r.needs_values() { r.max_quantile_samples } else { 0 },
                    metrics,
                ),
                config: r.clone(),
                emitted_until: AtomicI64::new(i64::MIN),
            });
        }
        Arc::new(AggregateShared {
            pipeline: pipeline.into(),
            rules: compiled,
            by_name,
            any_name,
            shards: Mutex::new(Vec::new()),
            forget_after_secs: forget_after.as_secs().clamp(1, u32::MAX as u64) as u32,
            epoch: Instant::now(),
            last_sweep: Mutex::new(0),
            saved: Mutex::new(None),
            watermark_write_errors: crate::telemetry::aggregate_watermark_write_errors(pipeline),
        })
    }

    /// A new shard's state, registered with the flush task.
    pub fn new_shard(&self) -> SharedAggShard {
        let shard = Arc::new(Mutex::new(
            self.rules.iter().map(|r| RuleShard::new(r.emitted_until.load(Ordering::Acquire))).collect(),
        ));
        self.shards.lock().push(shard.clone());
        shard
    }

    /// Reads the watermarks an earlier run saved under `data_dir` (buckets up
    /// to them stay closed: later samples for them are `too_late`), and saves
    /// this run's there from now on. Rules are matched by name.
    pub fn restore(&self, data_dir: &Path) -> Result<(), WatermarkError> {
        let file = WatermarkFile::new(data_dir, &self.pipeline);
        let rules = file.load()?;
        for rule in &self.rules {
            if let Some(&end) = rules.get(&rule.config.name()) {
                self.advance(rule, end);
                tracing::info!(
                    pipeline = %self.pipeline,
                    rule = %rule.config.name(),
                    emitted_until = end,
                    "aggregate rule resumes after the buckets an earlier run emitted"
                );
            }
        }
        let closed: Vec<i64> = self.rules.iter().map(|r| r.emitted_until.load(Ordering::Acquire)).collect();
        for shard in self.shards.lock().iter() {
            for (state, &end) in shard.lock().iter_mut().zip(&closed) {
                state.closed_until = state.closed_until.max(end);
            }
        }
        *self.saved.lock() = Some(Saved { file, rules });
        Ok(())
    }

    /// Saves the watermarks if any moved since the last save (after
    /// [`Self::restore`]; a no-op before). Blocking: it syncs a file. Call it
    /// after [`Self::flush_rules`] and before the samples leave, so a crash can
    /// lose a bucket's results but never emit them twice.
    pub fn save_watermarks(&self) -> Result<(), WatermarkError> {
        let mut saved = self.saved.lock();
        let Some(saved) = saved.as_mut() else { return Ok(()) };
        let now: BTreeMap<String, i64> = self
            .rules
            .iter()
            .filter_map(|r| {
                let end = r.emitted_until.load(Ordering::Acquire);
                (end != i64::MIN).then(|| (r.config.name(), end))
            })
            .collect();
        if now == saved.rules {
            return Ok(());
        }
        let result = saved.file.save(&now);
        match &result {
            Ok(()) => saved.rules = now,
            Err(e) => {
                self.watermark_write_errors.increment(1);
                tracing::error!(pipeline = %self.pipeline, error = %e, "cannot save the aggregate watermarks");
            }
        }
        result
    }

    /// Moves `rule`'s watermark forward to `end`.
    fn advance(&self, rule: &CompiledRule, end: i64) {
        let before = rule.emitted_until.fetch_max(end, Ordering::AcqRel);
        if end > before {
            rule.limits.metrics.emitted_until.set(end as f64 / 1000.0);
        }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }

    /// How often the flush task looks for closed buckets: often enough that
    /// a bucket leaves within a second (or a tenth of the shortest interval) of closing.
    pub fn tick_every(&self) -> std::time::Duration {
        let shortest = self.rules.iter().map(|r| r.interval_ms).min().unwrap_or(1000);
        std::time::Duration::from_millis((shortest / 10).clamp(10, 1000) as u64)
    }

    fn now_secs(&self) -> u32 {
        self.epoch.elapsed().as_secs().min(u32::MAX as u64) as u32
    }
}

/// Aligns `ts` up to the end of its bucket: buckets are `(end − interval, end]`.
#[inline]
pub fn bucket_end(ts: i64, interval_ms: i64) -> i64 {
    let rem = ts.rem_euclid(interval_ms);
    if rem == 0 { ts } else { ts.saturating_add(interval_ms - rem) }
}
