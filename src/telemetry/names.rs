//! The metric names of the public contract (DESIGN §4), and the ones tsrelay adds.

pub const RECEIVED_SAMPLES_TOTAL: &str = "tsrelay_received_samples_total";
pub const RECEIVER_BACKPRESSURE_TOTAL: &str = "tsrelay_receiver_backpressure_rejections_total";
pub const DROPPED_SAMPLES_TOTAL: &str = "tsrelay_dropped_samples_total";
pub const SINK_RECEIVED_SAMPLES_TOTAL: &str = "tsrelay_sink_received_samples_total";
pub const SINK_SENT_SAMPLES_TOTAL: &str = "tsrelay_sink_sent_samples_total";
pub const SINK_RETRIES_TOTAL: &str = "tsrelay_sink_retries_total";
pub const SINK_REQUEST_DURATION_SECONDS: &str = "tsrelay_sink_request_duration_seconds";
pub const SINK_IN_FLIGHT_REQUESTS: &str = "tsrelay_sink_in_flight_requests";
pub const SINK_CONCURRENCY_LIMIT: &str = "tsrelay_sink_concurrency_limit";
pub const QUEUE_SAMPLES: &str = "tsrelay_queue_samples";
pub const QUEUE_CAPACITY_SAMPLES: &str = "tsrelay_queue_capacity_samples";
pub const FANOUT_BLOCKED_SECONDS_TOTAL: &str = "tsrelay_fanout_blocked_seconds_total";
pub const PIPELINE_LATENCY_SECONDS: &str = "tsrelay_pipeline_latency_seconds";
pub const CARDINALITY_SERIES: &str = "tsrelay_cardinality_series";
pub const CARDINALITY_SUSPICIOUS_LABELS: &str = "tsrelay_cardinality_suspicious_labels";
