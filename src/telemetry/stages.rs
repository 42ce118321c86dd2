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

/// Per-rule handles of the aggregate stage (`rule` is the rule's `name`).
#[derive(Clone)]
pub struct AggregateMetrics {
    /// `tsrelay_aggregate_series{pipeline,rule}`: open buckets held now
    /// (an output series' bucket in one shard; see docs/aggregate.md).
    pub series: Gauge,
    /// `tsrelay_aggregate_state_bytes{pipeline,rule}`: bytes those buckets are charged.
    pub state_bytes: Gauge,
    /// `tsrelay_aggregate_limit_bytes{pipeline,rule}`: the bound of `state_bytes`.
    pub limit_bytes: Gauge,
    /// `tsrelay_aggregate_quantile_samples{pipeline,rule}`: values held for `quantiles`.
    pub quantile_samples: Gauge,
    /// `tsrelay_aggregate_counter_series{pipeline,rule}`: input series whose last
    /// counter value is kept for `increase` / `rate`.
    pub counter_series: Gauge,
    /// Samples folded into a bucket.
    pub input_samples: Counter,
    /// Samples emitted (every output of every closed bucket).
    pub output_samples: Counter,
    /// Buckets closed and emitted.
    pub flushes: Counter,
    /// `tsrelay_aggregate_emitted_until_timestamp_seconds{pipeline,rule}`: end
    /// of the newest bucket emitted (in this run or, read back from
    /// `data_dir`, an earlier one); samples for buckets up to it are `too_late`.
    pub emitted_until: Gauge,
    pipeline: String,
    rule: String,
}

impl AggregateMetrics {
    pub fn new(pipeline: &str, rule: &str) -> Self {
        let l = || [("pipeline", pipeline.to_string()), ("rule", rule.to_string())];
        AggregateMetrics {
            series: gauge!(AGGREGATE_SERIES, &l()),
            state_bytes: gauge!(AGGREGATE_STATE_BYTES, &l()),
            limit_bytes: gauge!(AGGREGATE_LIMIT_BYTES, &l()),
            quantile_samples: gauge!(AGGREGATE_QUANTILE_SAMPLES, &l()),
            counter_series: gauge!(AGGREGATE_COUNTER_SERIES, &l()),
            input_samples: counter!(AGGREGATE_INPUT_SAMPLES_TOTAL, &l()),
            output_samples: counter!(AGGREGATE_OUTPUT_SAMPLES_TOTAL, &l()),
            flushes: counter!(AGGREGATE_FLUSHES_TOTAL, &l()),
            emitted_until: gauge!(AGGREGATE_EMITTED_UNTIL_SECONDS, &l()),
            pipeline: pipeline.to_string(),
            rule: rule.to_string(),
        }
    }

    /// `tsrelay_aggregate_skipped_samples_total{pipeline,rule,reason}`: samples
    /// a rule matched but could not fold in (`too_late`, `aggregate_overflow`,
    /// `timestamp_out_of_window`, `shutdown`). With `keep_input = true` the sample
    /// itself is still delivered, so this is not a drop.
    pub fn skipped(&self, reason: super::DropReason) -> Counter {
        counter!(AGGREGATE_SKIPPED_SAMPLES_TOTAL, "pipeline" => self.pipeline.clone(), "rule" => self.rule.clone(), "reason" => reason.as_str())
    }
}

/// `tsrelay_aggregate_watermark_write_errors_total{pipeline}`: failed saves of
/// the pipeline's aggregate watermark file (the rollups still leave; after a
/// restart a bucket emitted since the last good save may be emitted again).
pub fn aggregate_watermark_write_errors(pipeline: &str) -> Counter {
    counter!(AGGREGATE_WATERMARK_WRITE_ERRORS_TOTAL, "pipeline" => pipeline.to_string())
}
