//! `GET /api/v1/status`: what flows in and out right now (docs/status.md).
//!
//! Built from the readable copies of the telemetry counters and gauges
//! ([`crate::telemetry::status`]) and the sinks' health; rates are the
//! change over the last few seconds of history.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::Key;
use serde::{Deserialize, Serialize};

use crate::telemetry::status::{Reading, StatusStore};
use crate::telemetry::*;

/// The status report (the `data` of the answer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// When the report was made, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Seconds the rates are computed over (`null` right after start).
    pub window_seconds: Option<f64>,
    pub ready: bool,
    pub receivers: Vec<ReceiverStatus>,
    pub pipelines: Vec<PipelineStatus>,
    pub sinks: Vec<SinkStatus>,
    /// Every non-zero drop counter, by where and why.
    pub drops: Vec<DropStatus>,
    pub memory: MemoryStatus,
}

/// A count and how fast it grows (per second; `null` without history yet).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Flow {
    pub total: f64,
    pub per_second: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiverStatus {
    pub name: String,
    /// `listening` or `starting`.
    pub state: String,
    pub received_samples: Flow,
    pub dropped_samples: Flow,
    /// Requests refused for backpressure or memory pressure.
    pub rejected_requests: Flow,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineStatus {
    pub name: String,
    pub dropped_samples: Flow,
    /// Series tracked by the cardinality stage (absent without one).
    pub cardinality_series: Option<f64>,
    pub cardinality_limit_series: Option<f64>,
    pub cardinality_metrics_over_warn: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkStatus {
    pub name: String,
    /// `healthy`, `retrying` or `failing` (as `/readyz`).
    pub state: String,
    pub last_error: Option<String>,
    pub failing_for_seconds: Option<f64>,
    pub received_samples: Flow,
    pub sent_samples: Flow,
    pub dropped_samples: Flow,
    pub retries: Flow,
    pub queue_samples: f64,
    pub queue_capacity_samples: f64,
    /// `queue_samples / queue_capacity_samples` (0 when the capacity is unknown).
    pub queue_fill_ratio: f64,
    /// Seconds fanout waited on this sink's full queue; `per_second` is the
    /// share of time spent blocked.
    pub fanout_blocked_seconds: Flow,
    pub in_flight_requests: f64,
    pub concurrency_limit: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DropStatus {
    /// `receiver`, `pipeline` or `sink`.
    pub scope: String,
    /// The receiver, pipeline or sink name.
    pub name: String,
    pub stage: String,
    pub reason: String,
    pub samples: Flow,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryStatus {
    pub rss_bytes: f64,
    pub limit_bytes: f64,
    pub worst_case_bytes: f64,
    /// `rss_bytes / limit_bytes` (0 when the limit is unknown).
    pub used_ratio: f64,
    /// Receivers refuse data while RSS is above the high-water mark.
    pub pressure: bool,
}

fn label<'a>(key: &'a Key, name: &str) -> Option<&'a str> {
    key.labels().find(|l| l.key() == name).map(|l| l.value())
}

struct Rates<'a> {
    now: &'a Reading,
    before: Option<&'a Reading>,
}

impl Rates<'_> {
    fn window(&self) -> Option<f64> {
        let before = self.before?;
        let dt = self.now.at.duration_since(before.at).as_secs_f64();
        (dt >= 0.2).then_some(dt)
    }

    fn flow(&self, key: &Key) -> Flow {
        let total = self.now.value(key).unwrap_or(0.0);
        let per_second = self.window().map(|dt| {
            let was = self.before.and_then(|b| b.value(key)).unwrap_or(0.0);
            ((total - was) / dt).max(0.0)
        });
        Flow { total, per_second }
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Option<f64> {
        self.now.value(&key(name, labels))
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    Key::from_parts(name, labels.iter().map(|(k, v)| metrics::Label::new(*k, v.to_string())).collect::<Vec<_>>())
}

fn add(a: Flow, b: Flow) -> Flow {
    let per_second = match (a.per_second, b.per_second) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    };
    Flow { total: a.total + b.total, per_second }
}

fn names_with(reading: &Reading, metric: &str, label_name: &str) -> Vec<String> {
    let mut out: Vec<String> = reading
        .counters
        .keys()
        .chain(reading.gauges.keys())
        .filter(|k| k.name() == metric)
        .filter_map(|k| label(k, label_name).map(str::to_string))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Builds the report from the store's readings and the health registry.
pub fn report(store: &StatusStore, health: &Health) -> Status {
    let now = store.read();
    let before = store.oldest();
    let rates = Rates { now: &now, before: before.as_ref() };
    let health = health.report();

    // Drops: every dropped-samples counter, by scope.
    let mut drops = Vec::new();
    let mut dropped_by: BTreeMap<(&'static str, String), Flow> = BTreeMap::new();
    let mut drop_keys: Vec<&Key> = now.counters.keys().filter(|k| k.name() == DROPPED_SAMPLES_TOTAL).collect();
    drop_keys.sort_by_key(|k| k.labels().map(|l| format!("{}={}", l.key(), l.value())).collect::<Vec<_>>());
    for k in drop_keys {
        let flow = rates.flow(k);
        let (scope, name) = ["receiver", "pipeline", "sink"]
            .into_iter()
            .find_map(|s| label(k, s).map(|n| (s, n.to_string())))
            .unwrap_or(("pipeline", String::new()));
        let e = dropped_by.entry((scope, name.clone())).or_default();
        *e = add(*e, flow);
        if flow.total > 0.0 {
            drops.push(DropStatus {
                scope: scope.to_string(),
                name,
                stage: label(k, "stage").unwrap_or_default().to_string(),
                reason: label(k, "reason").unwrap_or_default().to_string(),
                samples: flow,
            });
        }
    }
    let dropped =
        |scope: &'static str, name: &str| dropped_by.get(&(scope, name.to_string())).copied().unwrap_or_default();

    let mut receiver_names: Vec<String> = health.receivers.keys().cloned().collect();
    receiver_names.extend(names_with(&now, RECEIVED_SAMPLES_TOTAL, "receiver"));
    receiver_names.sort();
    receiver_names.dedup();
    let receivers = receiver_names
        .into_iter()
        .map(|name| {
            let l = [("receiver", name.as_str())];
            ReceiverStatus {
                state: health.receivers.get(&name).copied().unwrap_or("listening").to_string(),
                received_samples: rates.flow(&key(RECEIVED_SAMPLES_TOTAL, &l)),
                dropped_samples: dropped("receiver", &name),
                rejected_requests: add(
                    rates.flow(&key(RECEIVER_BACKPRESSURE_TOTAL, &l)),
                    rates.flow(&key(RECEIVER_MEMORY_PRESSURE_REJECTIONS_TOTAL, &l)),
                ),
                name,
            }
        })
        .collect();

    let mut pipeline_names = names_with(&now, CARDINALITY_SERIES, "pipeline");
    pipeline_names.extend(dropped_by.keys().filter(|(s, _)| *s == "pipeline").map(|(_, n)| n.clone()));
    pipeline_names.sort();
    pipeline_names.dedup();
    pipeline_names.retain(|n| !n.is_empty());
    let pipelines = pipeline_names
        .into_iter()
        .map(|name| {
            let l = [("pipeline", name.as_str())];
            PipelineStatus {
                dropped_samples: dropped("pipeline", &name),
                cardinality_series: rates.gauge(CARDINALITY_SERIES, &l),
                cardinality_limit_series: rates.gauge(CARDINALITY_LIMIT_SERIES, &l),
                cardinality_metrics_over_warn: rates.gauge(CARDINALITY_METRICS_OVER_WARN, &l),
                name,
            }
        })
        .collect();

    let mut sink_names: Vec<String> = health.sinks.keys().cloned().collect();
    sink_names.extend(names_with(&now, SINK_RECEIVED_SAMPLES_TOTAL, "sink"));
    sink_names.sort();
    sink_names.dedup();
    let sinks = sink_names
        .into_iter()
        .map(|name| {
            let l = [("sink", name.as_str())];
            let h = health.sinks.get(&name);
            let queue_samples = rates.gauge(QUEUE_SAMPLES, &l).unwrap_or(0.0);
            let queue_capacity_samples = rates.gauge(QUEUE_CAPACITY_SAMPLES, &l).unwrap_or(0.0);
            SinkStatus {
                state: h.map_or("healthy", |h| h.state).to_string(),
                last_error: h.and_then(|h| h.storage_error.clone().or_else(|| h.last_error.clone())),
                failing_for_seconds: h.and_then(|h| h.failing_for_seconds),
                received_samples: rates.flow(&key(SINK_RECEIVED_SAMPLES_TOTAL, &l)),
                sent_samples: rates.flow(&key(SINK_SENT_SAMPLES_TOTAL, &l)),
                dropped_samples: dropped("sink", &name),
                retries: rates.flow(&key(SINK_RETRIES_TOTAL, &l)),
                queue_samples,
                queue_capacity_samples,
                queue_fill_ratio: if queue_capacity_samples > 0.0 {
                    queue_samples / queue_capacity_samples
                } else {
                    0.0
                },
                fanout_blocked_seconds: rates.flow(&key(FANOUT_BLOCKED_SECONDS_TOTAL, &l)),
                in_flight_requests: rates.gauge(SINK_IN_FLIGHT_REQUESTS, &l).unwrap_or(0.0),
                concurrency_limit: rates.gauge(SINK_CONCURRENCY_LIMIT, &l).unwrap_or(0.0),
                name,
            }
        })
        .collect();

    let rss_bytes = rates.gauge(MEMORY_RSS_BYTES, &[]).unwrap_or(0.0);
    let limit_bytes = rates.gauge(MEMORY_LIMIT_BYTES, &[]).unwrap_or(0.0);
    let memory = MemoryStatus {
        rss_bytes,
        limit_bytes,
        worst_case_bytes: rates.gauge(MEMORY_WORST_CASE_BYTES, &[]).unwrap_or(0.0),
        used_ratio: if limit_bytes > 0.0 { rss_bytes / limit_bytes } else { 0.0 },
        pressure: rates.gauge(MEMORY_PRESSURE, &[]).unwrap_or(0.0) > 0.0,
    };

    let time_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Status {
        time_ms,
        window_seconds: rates.window(),
        ready: health.ready(),
        receivers,
        pipelines,
        sinks,
        drops,
        memory,
    }
}

/// `GET /api/v1/status` (a router to merge into a listener's).
pub fn router(health: Health) -> Router {
    Router::new().route("/api/v1/status", get(status)).with_state(health)
}

async fn status(State(health): State<Health>) -> Response {
    let store = crate::telemetry::status::store();
    let report = report(&store, &health);
    axum::Json(serde_json::json!({"status": "success", "data": report})).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::telemetry::status::TeeRecorder;
    use crate::telemetry::{DropReason, ReceiverMetrics, SinkMetrics, Stage, pipeline_dropped};

    #[test]
    fn report_has_totals_rates_drops_and_health() {
        let store = Arc::new(StatusStore::new());
        let recorder = TeeRecorder::new(metrics::NoopRecorder, store.clone());
        let health = Health::default();
        health.register_receiver("http");
        health.receiver_listening("http");
        let sink_health = health.register_sink("prom", Duration::from_secs(60));
        let (rx, sink, dropped) = metrics::with_local_recorder(&recorder, || {
            let sink = SinkMetrics::new("prom");
            sink.queue_capacity_samples.set(1000.0);
            (ReceiverMetrics::new("http"), sink, pipeline_dropped("main", Stage::Validate, DropReason::UnknownMetric))
        });
        rx.received_samples.increment(100);
        store.sample();
        std::thread::sleep(Duration::from_millis(300));
        rx.received_samples.increment(50);
        sink.sent_samples.increment(120);
        sink.queue_samples.set(250.0);
        dropped.increment(3);
        sink_health.failed("HTTP 500 from prom");

        let s = report(&store, &health);
        let window = s.window_seconds.expect("a window after one sample");
        assert!(window >= 0.3, "{window}");
        let r = &s.receivers[0];
        assert_eq!((r.name.as_str(), r.state.as_str(), r.received_samples.total), ("http", "listening", 150.0));
        let rate = r.received_samples.per_second.unwrap();
        assert!((rate - 50.0 / window).abs() < 1e-9, "{rate}");
        let k = &s.sinks[0];
        assert_eq!((k.name.as_str(), k.state.as_str()), ("prom", "retrying"));
        assert_eq!(k.last_error.as_deref(), Some("HTTP 500 from prom"));
        assert_eq!((k.sent_samples.total, k.queue_fill_ratio), (120.0, 0.25));
        assert_eq!(s.drops.len(), 1);
        let d = &s.drops[0];
        assert_eq!(
            (d.scope.as_str(), d.name.as_str(), d.stage.as_str(), d.reason.as_str()),
            ("pipeline", "main", "validate", "unknown_metric")
        );
        assert_eq!(s.pipelines[0].name, "main");
        assert_eq!(s.pipelines[0].dropped_samples.total, 3.0);
        // what `tsrelay top` reads back
        let json = serde_json::json!({"status": "success", "data": &s}).to_string();
        let back = crate::top::client::parse_report(json.as_bytes()).unwrap();
        assert_eq!(back.sinks[0].sent_samples, k.sent_samples);
    }
}
