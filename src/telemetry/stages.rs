//! Handles the pipeline stages update (cardinality and monotonic state).

use metrics::{Counter, Gauge, counter, gauge};

use super::names::*;

/// Per-pipeline handles of the cardinality stage.
#[derive(Clone)]
pub struct CardinalityMetrics {
    /// `tsrelay_cardinality_series{pipeline}`: series tracked right now.
    pub series: Gauge,
    /// The pipeline's `max_series`, so dashboards can show how close it is.
    pub limit_series: Gauge,
    /// Metrics whose series count is at or above `warn_ratio` of their limit.
    pub metrics_over_warn: Gauge,
    /// New series admitted only after `action = { drop_label = ... }` removed a label.
    pub rewritten_samples: Counter,
    /// Series forgotten after `forget_after` without a sample.
    pub forgotten_series: Counter,
}

impl CardinalityMetrics {
    pub fn new(pipeline: &str) -> Self {
        let p = || pipeline.to_string();
        CardinalityMetrics {
            series: gauge!(CARDINALITY_SERIES, "pipeline" => p()),
            limit_series: gauge!(CARDINALITY_LIMIT_SERIES, "pipeline" => p()),
            metrics_over_warn: gauge!(CARDINALITY_METRICS_OVER_WARN, "pipeline" => p()),
            rewritten_samples: counter!(CARDINALITY_REWRITTEN_SAMPLES_TOTAL, "pipeline" => p()),
            forgotten_series: counter!(CARDINALITY_FORGOTTEN_SERIES_TOTAL, "pipeline" => p()),
        }
    }
}

/// `tsrelay_cardinality_suspicious_labels{pipeline,metric,label}`: set to 1
/// once a label of a metric looks like an id. The caller bounds how many exist.
pub fn suspicious_label(pipeline: &str, metric: &str, label: &str) -> Gauge {
    gauge!(CARDINALITY_SUSPICIOUS_LABELS, "pipeline" => pipeline.to_string(), "metric" => metric.to_string(), "label" => label.to_string())
}

/// Per-pipeline handles of the monotonic stage.
#[derive(Clone)]
pub struct MonotonicMetrics {
    /// Counter decreases seen (whatever `counter_reset` then did with them).
    pub counter_resets: Counter,
}

impl MonotonicMetrics {
    pub fn new(pipeline: &str) -> Self {
        MonotonicMetrics {
            counter_resets: counter!(MONOTONIC_COUNTER_RESETS_TOTAL, "pipeline" => pipeline.to_string()),
        }
    }
}
