//! The golden-test harness (issue 14, DESIGN §7): one data set written THROUGH
//! tsrelay into real backends, the graphs of `tests/golden/graphs/` rendered from
//! each backend through the query API, and every point compared with the
//! reference computed from the written data. Backends plug in with a sink
//! snippet and their declared [`Quirks`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tsrelay::query::backends::{RawForm, RawResult, RawSeries};
use tsrelay::query::graphs::GraphStore;
use tsrelay::query::grid::TimeGrid;
use tsrelay::query::model::Function;
use tsrelay::query::normalize::normalize;
use tsrelay::registry::MetricRegistry;

use crate::common::{Tsrelay, free_port, http, loopback, wait_for};

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 60 * MIN;
/// Relative tolerance of a value comparison.
pub const TOLERANCE: f64 = 1e-9;

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn registry() -> MetricRegistry {
    MetricRegistry::load(&golden_dir().join("metrics.yaml")).expect("tests/golden/metrics.yaml")
}

pub fn graphs() -> GraphStore {
    GraphStore::load_dir(&golden_dir().join("graphs"), &registry()).expect("tests/golden/graphs")
}

/// One written series.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(i64, f64)>,
    /// Counters: growth in units per second (the exact rate everywhere but the hole).
    pub slope: Option<f64>,
}

/// Six hours of minute-aligned samples: 9 linear counters (one reset), 3 gauges,
/// and a 10-minute hole in every series.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// First sample time (hour-aligned).
    pub t0: i64,
    /// Last sample time: `t0 + 6h`.
    pub t_end: i64,
    /// No sample has a time in `(hole, hole + 10 min)`.
    pub hole: i64,
    /// The counter `{device="sw2", port="ge-1"}` restarts at this time.
    pub reset: i64,
    pub series: Vec<Series>,
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Dataset {
    pub fn generate(now_ms: i64) -> Dataset {
        let t0 = now_ms / HOUR * HOUR - 7 * HOUR;
        let t_end = t0 + 6 * HOUR;
        let hole = t0 + 2 * HOUR;
        let reset = t0 + 4 * HOUR + 7 * MIN;
        let times: Vec<i64> = (0..=360).map(|k| t0 + k * MIN).filter(|&t| !(t > hole && t < hole + 10 * MIN)).collect();
        let mut series = Vec::new();
        let mut i = 0;
        for device in ["sw1", "sw2", "sw3"] {
            for port in ["ge-0", "ge-1", "xe-0"] {
                // binary fractions: every value and rate is exact in f64
                let slope = 12.5 * (i + 1) as f64;
                let base = 1000.0 * i as f64;
                let resets = device == "sw2" && port == "ge-1";
                let samples = times
                    .iter()
                    .map(|&t| {
                        // after the reset the counter restarted one minute before `reset` from zero,
                        // so the growth per minute stays `slope × 60` (as Prometheus counts it)
                        let v = if resets && t >= reset {
                            slope * ((t - reset + MIN) / 1000) as f64
                        } else {
                            base + slope * ((t - t0) / 1000) as f64
                        };
                        (t, v)
                    })
                    .collect();
                series.push(Series {
                    name: "golden_octets_total",
                    labels: labels(&[("device", device), ("port", port)]),
                    samples,
                    slope: Some(slope),
                });
                i += 1;
            }
        }
        for (h, host) in ["h1", "h2", "h3"].into_iter().enumerate() {
            let samples = times
                .iter()
                .map(|&t| {
                    let k = (t - t0) / MIN;
                    (t, ((k * 37 + h as i64 * 11) % 100) as f64 / 4.0)
                })
                .collect();
            series.push(Series { name: "golden_load", labels: labels(&[("host", host)]), samples, slope: None });
        }
        Dataset { t0, t_end, hole, reset, series }
    }

    pub fn total_samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// Line-protocol bodies (`precision=ms`), in time order, 30 minutes of every series each.
    pub fn line_protocol_bodies(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut from = self.t0;
        while from <= self.t_end {
            let to = from + 30 * MIN;
            let mut body = String::new();
            for s in &self.series {
                let tags: String = s.labels.iter().map(|(k, v)| format!(",{k}={v}")).collect();
                for &(t, v) in s.samples.iter().filter(|(t, _)| *t >= from && *t < to) {
                    let _ = writeln!(body, "{}{tags} value={v:?} {t}", s.name);
                }
            }
            bodies.push(body);
            from = to;
        }
        bodies
    }

    /// The grids every graph is rendered at: a 1 h window at 60 s over the hole,
    /// 6 h at 300 s, 1 h at 120 s over the reset.
    pub fn grids(&self) -> Vec<TimeGrid> {
        vec![
            TimeGrid::new(self.hole - 30 * MIN, self.hole + 30 * MIN, MIN).unwrap(),
            TimeGrid::new(self.t0, self.t_end, 5 * MIN).unwrap(),
            TimeGrid::new(self.reset - 30 * MIN, self.reset + 30 * MIN, 2 * MIN).unwrap(),
        ]
    }

    /// Whether the bucket at `t` holds the counter reset (Prometheus counts the
    /// restarted counter's value there; other backends may leave it empty).
    pub fn reset_in_bucket(&self, t: i64, step: i64) -> bool {
        self.reset > t - step && self.reset <= t
    }

    /// Whether the bucket at `t` touches the hole's edges (the last sample before
    /// it or the first after it lies in its window).
    pub fn hole_edge(&self, t: i64, step: i64) -> bool {
        let (a, b) = (self.hole, self.hole + 10 * MIN);
        (t - step..=t + step).contains(&a) || (t - step..=t + step).contains(&b)
    }
}

/// What a backend declares it does differently from the reference (and the test names).
#[derive(Debug, Clone, Default)]
pub struct Quirks {
    /// A bucket holding a counter reset may be `null` (the backend drops the
    /// negative difference instead of counting the restarted counter).
    pub reset_bucket_may_be_null: bool,
    /// Buckets next to the hole may be `null` where the reference has a value
    /// (storage loses data past a heartbeat).
    pub hole_edge_may_be_null: bool,
    /// A bucket holding a counter reset may be *lower* than the reference, never
    /// negative (the backend loses the reset's own base step but keeps the rest
    /// of the bucket: RRD's DERIVE with minimum 0).
    pub reset_bucket_may_be_low: bool,
    /// Graph ids the backend refuses with 422, and the feature it names.
    pub unsupported: Vec<(&'static str, &'static str)>,
}

/// A tsrelay with an HTTP line-protocol receiver, the golden registry and graphs,
/// the query listener, and the given sinks (TOML of `[sinks.<name>]` sections).
pub struct Relay {
    pub tsrelay: Tsrelay,
    pub http: SocketAddr,
    pub query: SocketAddr,
}

pub fn start_relay(dir: &Path, sink_names: &[&str], sinks_toml: &str) -> Relay {
    let http = loopback(free_port());
    let query = loopback(free_port());
    let golden = golden_dir();
    let sinks: Vec<String> = sink_names.iter().map(|s| format!("{s:?}")).collect();
    let config = format!(
        r#"
shutdown_timeout = "2s"
[limits]
memory_bytes = 2147483648

[registry]
path = "{registry}"

[receivers.http]
type = "http"
listen = "{http}"

[pipelines.main]
receivers = ["http"]
sinks = [{sinks}]

[pipelines.main.validate]
unknown_metrics = "reject"

[query]
listen = "{query}"
graphs_dir = "{graphs}"
timeout = "20s"

{sinks_toml}
"#,
        registry = golden.join("metrics.yaml").display(),
        graphs = golden.join("graphs").display(),
        sinks = sinks.join(", "),
    );
    let tsrelay = Tsrelay::start(dir, &config);
    wait_for(Duration::from_secs(20), "query listener", || std::net::TcpStream::connect(query).ok());
    Relay { tsrelay, http, query }
}

/// Writes the data set through tsrelay's `/write`, 30 minutes at a time, and
/// waits for every sink to deliver each part before the next: a backend like
/// Prometheus refuses samples more than an hour older than the newest it holds,
/// and one request may carry a series' whole range.
pub fn write_through(relay: &Relay, data: &Dataset, sinks: &[&str]) {
    let client = http();
    let mut written = 0.0;
    for body in data.line_protocol_bodies() {
        written += body.lines().count() as f64;
        let url = format!("http://{}/write?precision=ms", relay.http);
        let r = client.post(&url).body(body).send().expect("POST /write");
        assert_eq!(r.status().as_u16(), 204, "tsrelay refused golden data: {}", r.text().unwrap_or_default());
        for sink in sinks {
            let label = format!("sink=\"{sink}\"");
            wait_for(Duration::from_secs(60), &format!("{sink} to take {written} samples"), || {
                let sent = relay.tsrelay.metric_sum("tsrelay_sink_sent_samples_total", &[&label]);
                let dropped = relay.tsrelay.metric_sum("tsrelay_dropped_samples_total", &[]);
                (sent + dropped >= written).then_some(())
            });
        }
    }
    let dropped = relay.tsrelay.metric_sum("tsrelay_dropped_samples_total", &[]);
    assert_eq!(
        dropped,
        0.0,
        "samples dropped on the way: {:?}\n{}",
        relay.tsrelay.metrics().iter().filter(|(k, _)| k.starts_with("tsrelay_dropped")).collect::<Vec<_>>(),
        relay.tsrelay.process.log_tail()
    );
    assert_eq!(written, data.total_samples() as f64);
}

/// `POST /api/v1/graph/render`: (HTTP status, body).
pub fn render(query: SocketAddr, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = http()
        .post(format!("http://{query}/api/v1/graph/render"))
        .json(body)
        .send()
        .expect("POST /api/v1/graph/render");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// One rendered series: its labels and its points `(t_ms, value or null)`.
pub type Line = (BTreeMap<String, String>, Vec<(i64, Option<f64>)>);

/// The reference answer: the written samples through tsrelay's neutral definition.
pub fn expected(data: &Dataset, graph_id: &str, grid: &TimeGrid) -> Vec<Line> {
    let store = graphs();
    let graph = store.get(graph_id).unwrap_or_else(|| panic!("no golden graph {graph_id}"));
    let mut out = Vec::new();
    for plan in &graph.series {
        let series = data
            .series
            .iter()
            .filter(|s| s.name == plan.metric_name())
            .filter(|s| plan.matchers.iter().all(|m| m.matches(s.labels.get(&m.label).map_or("", String::as_str))))
            .map(|s| RawSeries { labels: s.labels.clone(), points: s.samples.clone() })
            .collect();
        let raw = RawResult { form: RawForm::Samples, series, warnings: vec![] };
        let lines = normalize(plan, grid, &raw, None).expect("reference normalization");
        out.extend(lines.into_iter().map(|l| (l.labels, l.points)));
    }
    out
}

fn parse_lines(data: &serde_json::Value) -> Vec<Line> {
    data["series"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let labels = s["labels"]
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
                        .unwrap_or_default();
                    let points = s["points"]
                        .as_array()
                        .map(|p| p.iter().map(|p| (p[0].as_i64().unwrap_or(i64::MIN), p[1].as_f64())).collect())
                        .unwrap_or_default();
                    (labels, points)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// Renders every golden graph at every grid from `backend` and compares point by
/// point; panics listing every difference. Returns how many points were compared.
pub fn check_backend(query: SocketAddr, backend: &str, data: &Dataset, quirks: &Quirks) -> usize {
    let store = graphs();
    let mut diffs = Vec::new();
    let mut compared = 0;
    for graph in store.iter() {
        let id = graph.def.id.as_str();
        let counter = graph.series.iter().any(|p| matches!(p.function, Function::Rate | Function::Increase));
        for grid in data.grids() {
            let body = serde_json::json!({
                "graph": id, "backend": backend,
                "start": grid.start_ms, "end": grid.end_ms, "step": format!("{}s", grid.step_ms / 1000),
            });
            let (status, answer) = render(query, &body);
            let at = format!("{backend} {id} step {}s", grid.step_ms / 1000);
            if let Some((_, feature)) = quirks.unsupported.iter().find(|(g, _)| *g == id) {
                if status != 422 || answer["feature"] != *feature {
                    diffs.push(format!("{at}: expected 422 feature {feature}, got {status} {answer}"));
                }
                continue;
            }
            if status != 200 {
                diffs.push(format!("{at}: HTTP {status}: {answer}"));
                continue;
            }
            let data_json = &answer["data"];
            if data_json["start"] != grid.start_ms
                || data_json["end"] != grid.end_ms
                || data_json["step_ms"] != grid.step_ms
            {
                diffs.push(format!(
                    "{at}: grid {} {} {} differs",
                    data_json["start"], data_json["end"], data_json["step_ms"]
                ));
            }
            let got = parse_lines(data_json);
            let want = expected(data, id, &grid);
            let got_labels: Vec<_> = got.iter().map(|l| &l.0).collect();
            let want_labels: Vec<_> = want.iter().map(|l| &l.0).collect();
            if got_labels != want_labels {
                diffs.push(format!("{at}: series {got_labels:?}, expected {want_labels:?}"));
                continue;
            }
            for ((labels, g), (_, w)) in got.iter().zip(&want) {
                if g.len() != w.len() {
                    diffs.push(format!("{at} {labels:?}: {} points, expected {}", g.len(), w.len()));
                    continue;
                }
                for (&(gt, gv), &(wt, wv)) in g.iter().zip(w) {
                    compared += 1;
                    let here = format!("{at} {labels:?} t={gt}");
                    if gt != wt {
                        diffs.push(format!("{here}: timestamp, expected {wt}"));
                        continue;
                    }
                    if counter && gv.is_some_and(|v| v < 0.0) {
                        diffs.push(format!("{here}: negative counter growth {gv:?}"));
                    }
                    let excused = gv.is_none()
                        && ((quirks.reset_bucket_may_be_null && counter && data.reset_in_bucket(gt, grid.step_ms))
                            || (quirks.hole_edge_may_be_null && data.hole_edge(gt, grid.step_ms)));
                    let lower = match (gv, wv) {
                        (Some(a), Some(b)) => a >= 0.0 && a < b,
                        _ => false,
                    };
                    let excused = excused
                        || (lower
                            && quirks.reset_bucket_may_be_low
                            && counter
                            && data.reset_in_bucket(gt, grid.step_ms));
                    match (gv, wv) {
                        (None, None) => {}
                        (Some(a), Some(b)) if close(a, b) => {}
                        _ if excused => {}
                        _ => diffs.push(format!("{here}: got {gv:?}, expected {wv:?}")),
                    }
                }
            }
        }
    }
    assert!(diffs.is_empty(), "{} differences from the reference:\n{}", diffs.len(), diffs.join("\n"));
    assert!(compared > 1000, "only {compared} points compared");
    compared
}
