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
//! See docs/aggregate.md for the semantics and the accounting.

mod config;
mod flush;
mod stage;
mod state;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
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
        })
    }

    /// A new shard's state, registered with the flush task.
    pub fn new_shard(&self) -> SharedAggShard {
        let shard = Arc::new(Mutex::new(self.rules.iter().map(|_| RuleShard::new()).collect()));
        self.shards.lock().push(shard.clone());
        shard
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
