//! `otlp` settings of the receivers that take OTLP metrics (HTTP and gRPC).

use serde::Deserialize;

/// How OTLP metrics become Prometheus-style series (Prometheus' own OTLP
/// translation; see docs/otlp.md).
///
/// ```toml
/// [receivers.http.otlp]
/// add_unit_suffix = true
/// add_type_suffix = true
/// promote_resource_attributes = ["k8s.namespace.name"]
/// target_info = true
/// delta = "convert"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Append the unit to the metric name (`_seconds`, `_bytes`, `_ratio` …).
    #[serde(default = "defaults::yes")]
    pub add_unit_suffix: bool,
    /// Append `_total` to monotonic sums (counters).
    #[serde(default = "defaults::yes")]
    pub add_type_suffix: bool,
    /// Resource attributes copied onto every series of the resource as labels.
    #[serde(default)]
    pub promote_resource_attributes: Vec<String>,
    /// Emit `target_info` (value 1) with the remaining resource attributes.
    #[serde(default = "defaults::yes")]
    pub target_info: bool,
    /// Delta temporality: `convert` (default; running totals per series, the
    /// table bounded by `max_delta_series`) or `reject` (reason `delta`).
    #[serde(default)]
    pub delta: DeltaPolicy,
    /// Most series whose running total the delta conversion remembers; past it
    /// the table starts over (a counter reset for the series it held).
    #[serde(default = "defaults::max_delta_series")]
    pub max_delta_series: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaPolicy {
    #[default]
    Convert,
    Reject,
}

pub mod defaults {
    pub fn yes() -> bool {
        true
    }
    pub fn max_delta_series() -> usize {
        100_000
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            add_unit_suffix: true,
            add_type_suffix: true,
            promote_resource_attributes: Vec::new(),
            target_info: true,
            delta: DeltaPolicy::default(),
            max_delta_series: defaults::max_delta_series(),
        }
    }
}

impl OtlpConfig {
    /// Worst-case bytes of the delta table (start-up memory check).
    pub fn table_bytes(&self) -> u64 {
        // Key hash, running total, last time, hash-table slot, growth slack.
        self.max_delta_series as u64 * 48
    }
}
