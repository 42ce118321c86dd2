//! `[[pipelines.<name>.aggregate]]`: one stream-aggregation rule.

use std::time::Duration;

use serde::Deserialize;

use crate::model::METRIC_NAME_LABEL;
use crate::model::selector::Selector;

/// One rule: which series (`match`), over which buckets (`interval`), grouped
/// how (`by` / `without`), computing what (`outputs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateRule {
    /// The `rule` label of this rule's metrics; default `<match>:<interval>`.
    /// Names must be unique within a pipeline.
    #[serde(default)]
    pub name: Option<String>,
    /// A series selector, PromQL style: `http_requests_total{job="api"}`,
    /// `{__name__=~"node_.*", env!="dev"}`.
    #[serde(rename = "match")]
    pub selector: String,
    /// Bucket length (`1m`, `1h`); buckets are aligned to multiples of it
    /// since the Unix epoch and cover `(end − interval, end]`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Labels the output keeps (besides `__name__`); all others are combined.
    #[serde(default)]
    pub by: Option<Vec<String>>,
    /// Labels the output drops; all others are kept. Neither `by` nor
    /// `without`: every input series is its own output series.
    #[serde(default)]
    pub without: Option<Vec<String>>,
    /// What to compute per bucket: `count`, `sum`, `min`, `max`, `avg`, `last`,
    /// `increase`, `rate`, `quantiles(0.5, 0.99)`.
    pub outputs: Vec<Output>,
    /// Sinks the outputs go to (any `[sinks.<name>]`, also ones outside the
    /// pipeline's `sinks`); default: the pipeline's `sinks`.
    #[serde(default)]
    pub sinks: Option<Vec<String>>,
    /// Pass matched input samples on too (`false`: only the rollups leave,
    /// the inputs are counted as dropped, `reason="aggregated"`).
    #[serde(default = "defaults::keep_input")]
    pub keep_input: bool,
    /// How long after its end a bucket stays open for late samples.
    #[serde(default = "defaults::lag", with = "humantime_serde")]
    pub lag: Duration,
    /// Emit the open buckets (partial) when the daemon stops.
    #[serde(default = "defaults::flush_on_shutdown")]
    pub flush_on_shutdown: bool,
    /// Most open buckets (output series × open intervals, per shard) at once;
    /// the state's memory is bounded by `max_series × BYTES_PER_SERIES` and
    /// counted in the start-up memory budget. Beyond: `aggregate_overflow`.
    #[serde(default = "defaults::max_series")]
    pub max_series: u64,
    /// Most values held for `quantiles` (exact quantiles keep every value of
    /// an open bucket). Beyond: `aggregate_overflow`.
    #[serde(default = "defaults::max_quantile_samples")]
    pub max_quantile_samples: u64,
}

/// One output of a rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum Output {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Last,
    /// Counter increase over the bucket, reset-aware.
    Increase,
    /// `increase` per second of `interval`.
    Rate,
    /// Exact φ-quantiles of the bucket's values, one output series per φ.
    Quantiles(Vec<f64>),
}

impl Output {
    /// The suffix of the output name: `<name>:<interval>_<suffix>`.
    pub fn suffix(&self) -> &'static str {
        match self {
            Output::Count => "count",
            Output::Sum => "sum",
            Output::Min => "min",
            Output::Max => "max",
            Output::Avg => "avg",
            Output::Last => "last",
            Output::Increase => "increase",
            Output::Rate => "rate",
            Output::Quantiles(_) => "quantiles",
        }
    }
}

impl TryFrom<String> for Output {
    type Error = String;

    fn try_from(text: String) -> Result<Output, String> {
        let t = text.trim();
        Ok(match t {
            "count" => Output::Count,
            "sum" => Output::Sum,
            "min" => Output::Min,
            "max" => Output::Max,
            "avg" => Output::Avg,
            "last" => Output::Last,
            "increase" => Output::Increase,
            "rate" => Output::Rate,
            _ => {
                let Some(args) = t.strip_prefix("quantiles(").and_then(|r| r.strip_suffix(')')) else {
                    return Err(format!(
                        "unknown output {text:?}: expected count, sum, min, max, avg, last, increase, rate or quantiles(φ, ...)"
                    ));
                };
                let mut phis = Vec::new();
                for a in args.split(',') {
                    let phi: f64 =
                        a.trim().parse().map_err(|_| format!("output {text:?}: {:?} is not a number", a.trim()))?;
                    if !(0.0..=1.0).contains(&phi) {
                        return Err(format!("output {text:?}: quantile {phi} is not in [0, 1]"));
                    }
                    phis.push(phi);
                }
                Output::Quantiles(phis)
            }
        })
    }
}

pub mod defaults {
    use std::time::Duration;

    pub fn keep_input() -> bool {
        true
    }
    pub fn lag() -> Duration {
        Duration::from_secs(10)
    }
    pub fn flush_on_shutdown() -> bool {
        true
    }
    pub fn max_series() -> u64 {
        10_000
    }
    pub fn max_quantile_samples() -> u64 {
        1_000_000
    }
}

/// Bytes one open bucket is charged besides its labels: its table slot, its
/// accumulator and their growth slack. Its output labels are charged as
/// they are; the bound is `max_series` buckets of [`BYTES_PER_SERIES`].
pub const FIXED_BYTES_PER_BUCKET: u64 = 256;
/// What `max_series` is multiplied by for the byte bound: the fixed part
/// and up to 256 bytes of labels. Longer label sets take more than one slot.
pub const BYTES_PER_SERIES: u64 = FIXED_BYTES_PER_BUCKET + 256;
/// Bytes one kept counter value (`increase`, `rate`) costs, in its table.
pub const BYTES_PER_COUNTER_SERIES: u64 = 48;
/// Bytes one value held for `quantiles` costs (a vector that may have doubled).
pub const BYTES_PER_QUANTILE_SAMPLE: u64 = 16;

impl AggregateRule {
    /// The rule's name (for the `rule` label).
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}:{}", self.selector.trim(), interval_text(self.interval)))
    }

    /// The interval as it appears in output names: `30s`, `5m`, `1h`, `1d`, `500ms`.
    pub fn interval_text(&self) -> String {
        interval_text(self.interval)
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval.as_millis().min(i64::MAX as u128) as i64
    }

    pub fn lag_ms(&self) -> i64 {
        self.lag.as_millis().min(i64::MAX as u128) as i64
    }

    /// Whether any output needs a counter's previous value.
    pub fn needs_counters(&self) -> bool {
        self.outputs.iter().any(|o| matches!(o, Output::Increase | Output::Rate))
    }

    pub fn needs_values(&self) -> bool {
        self.outputs.iter().any(|o| matches!(o, Output::Quantiles(_)))
    }

    /// Worst-case bytes of this rule's state, for the start-up budget;
    /// `input_series` bounds the counters kept (the pipeline's `cardinality.max_series`).
    pub fn state_bytes(&self, input_series: u64) -> u64 {
        let mut bytes = self.max_series.saturating_mul(BYTES_PER_SERIES);
        if self.needs_counters() {
            bytes = bytes.saturating_add(input_series.saturating_mul(BYTES_PER_COUNTER_SERIES));
        }
        if self.needs_values() {
            bytes = bytes.saturating_add(self.max_quantile_samples.saturating_mul(BYTES_PER_QUANTILE_SAMPLE));
        }
        bytes
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        Selector::parse(&self.selector).map_err(|e| format!("match: {e}"))?;
        if self.interval < Duration::from_secs(1) {
            return Err(format!("interval {:?} is shorter than 1s", self.interval));
        }
        if !self.interval.subsec_nanos().is_multiple_of(1_000_000) {
            return Err("interval must be a whole number of milliseconds".into());
        }
        if self.by.is_some() && self.without.is_some() {
            return Err("set `by` or `without`, not both".into());
        }
        for l in self.by.iter().chain(&self.without).flatten() {
            if l == METRIC_NAME_LABEL {
                return Err(format!("{l} is always kept; it cannot be in `by` or `without`"));
            }
            if !crate::registry::is_valid_label_name(l) {
                return Err(format!("{l:?} is not a valid label name"));
            }
        }
        if self.sinks.as_ref().is_some_and(|s| s.is_empty()) {
            return Err("sinks is empty (leave it out to use the pipeline's sinks)".into());
        }
        if self.outputs.is_empty() {
            return Err("outputs is empty".into());
        }
        for (i, o) in self.outputs.iter().enumerate() {
            if self.outputs[..i].iter().any(|p| p.suffix() == o.suffix()) {
                return Err(format!("output {} appears twice", o.suffix()));
            }
            if let Output::Quantiles(phis) = o
                && phis.is_empty()
            {
                return Err("quantiles() needs at least one φ".into());
            }
        }
        if self.max_series == 0 {
            return Err("max_series must be at least 1".into());
        }
        if self.needs_values() && self.max_quantile_samples == 0 {
            return Err("max_quantile_samples must be at least 1 with quantiles".into());
        }
        if self.lag > Duration::from_secs(7 * 24 * 3600) {
            return Err("lag is longer than 7d".into());
        }
        Ok(())
    }
}

/// Checks a pipeline's rules: each valid, names unique.
pub(crate) fn check_rules(rules: &[AggregateRule]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let name = r.name();
        r.check().map_err(|m| format!("aggregate[{i}] ({name}): {m}"))?;
        if !names.insert(name.clone()) {
            return Err(format!("aggregate[{i}]: two rules are named {name:?}; give one a `name`"));
        }
    }
    Ok(())
}

/// The largest unit that divides `d` evenly: `90s` → `90s`, `3600s` → `1h`.
pub fn interval_text(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, len) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms >= len && ms.is_multiple_of(len) {
            return format!("{}{unit}", ms / len);
        }
    }
    format!("{ms}ms")
}
