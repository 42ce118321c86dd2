//! The `influxdb` sink against real servers: InfluxDB 1.6 (v1 API, InfluxQL
//! read-back, its 400/404/413 answers), VictoriaMetrics (the v2 write API),
//! and a scripted HTTP server for the token header, 429/503 with Retry-After.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::grpc_client::{series, write_all};
use common::influxdb::{Influxd, VictoriaMetrics};
use common::*;
use tsrelay::proto::v1::MetricType;

const SENT: &str = "tsrelay_sink_sent_samples_total";
const DROPPED: &str = "tsrelay_dropped_samples_total";
const RECEIVED: &str = "tsrelay_sink_received_samples_total";
const RETRIES: &str = "tsrelay_sink_retries_total";

fn config(grpc: u16, sinks: &str, names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
{sinks}
[pipelines.main]
receivers = ["grpc"]
sinks = [{}]
"#,
        list.join(", ")
    )
}

fn sink_label(sink: &str) -> String {
    format!("sink=\"{sink}\"")
}

/// Waits until `sink` has accounted for `n` samples (sent + dropped), then
/// checks received = sent + dropped + queued exactly; returns (sent, dropped).
fn settle(t: &Tsrelay, sink: &str, n: f64) -> (f64, f64) {
    let l = sink_label(sink);
    wait_for(Duration::from_secs(30), &format!("sink {sink} to account for {n} samples"), || {
        let m = t.metrics();
        let done = sum_metric(&m, SENT, &[&l]) + sum_metric(&m, DROPPED, &[&l]);
        (done >= n).then_some(())
    });
    let m = t.metrics();
    let (received, sent, dropped) =
        (sum_metric(&m, RECEIVED, &[&l]), sum_metric(&m, SENT, &[&l]), sum_metric(&m, DROPPED, &[&l]));
    let queued = sum_metric(&m, "tsrelay_queue_samples", &[&l]);
    assert_eq!(received, n, "sink {sink} received");
    assert_eq!(received, sent + dropped + queued, "accounting of sink {sink}: {m:?}");
    (sent, dropped)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

const FAST_RETRY: &str = r#"request = { retry = { initial = "50ms", max = "300ms", max_retry_duration = "30s" } }"#;

#[test]
fn v1_round_trip_through_influxql() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Influxd::start(dir.path(), 0);
    influx.create_database("metrics");
    let grpc = free_port();
    let sink = format!(
        "[sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"metrics\"\nbatch = {{ max_samples = 500, max_age_ms = 50 }}\n{FAST_RETRY}\n",
        influx.url()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sink, &["influx"]));
    let t0 = now_ms() - 60_000;
    let points: Vec<(f64, i64)> = (0..50).map(|i| (i as f64 * 1.5, t0 + i * 1000)).collect();
    write_all(
        grpc,
        vec![
            series(&[("__name__", "cpu_load"), ("host", "web 1,a=b"), ("region", "eu")], &points, MetricType::Gauge),
            series(&[("__name__", "cpu_load"), ("host", "db\\"), ("region", "us")], &points[..10], MetricType::Gauge),
        ],
    );
    // InfluxDB 1.x cannot parse a tag value that ends in a backslash: those
    // lines are refused (partial write) and counted, never mangled into others.
    let (sent, dropped) = settle(&t, "influx", 60.0);
    assert_eq!((sent, dropped), (50.0, 10.0));
    assert_eq!(t.metric_sum(DROPPED, &[&sink_label("influx"), "reason=\"rejected\""]), 10.0);

    let rows = influx.select_all("metrics", "cpu_load");
    assert_eq!(rows.len(), 50, "{rows:?}");
    let web: Vec<_> = rows.iter().filter(|r| r["host"] == "web 1,a=b").collect();
    assert_eq!(web.len(), 50);
    for (i, r) in web.iter().enumerate() {
        assert_eq!(r["time"].as_i64().unwrap(), t0 + i as i64 * 1000);
        assert_eq!(r["value"].as_f64().unwrap(), i as f64 * 1.5);
        assert_eq!(r["region"], "eu");
    }
    assert_eq!(rows.iter().filter(|r| r["region"] == "us").count(), 0);
    assert_eq!(t.metric_sum(RETRIES, &[&sink_label("influx")]), 0.0);
}

#[test]
fn v1_field_type_conflict_is_rejected_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Influxd::start(dir.path(), 0);
    influx.create_database("metrics");
    let t0 = now_ms() - 60_000;
    // `value` is an integer field of `conflict` from now on; tsrelay writes floats.
    assert_eq!(influx.write("metrics", &format!("conflict,host=a value=1i {}\n", (t0 - 1000) * 1_000_000)), 204);
    let grpc = free_port();
    let sink = format!(
        "[sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"metrics\"\nbatch = {{ max_samples = 500, max_age_ms = 100 }}\n{FAST_RETRY}\n",
        influx.url()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sink, &["influx"]));
    let points: Vec<(f64, i64)> = (0..3).map(|i| (i as f64 + 0.5, t0 + i * 1000)).collect();
    write_all(
        grpc,
        vec![
            series(&[("__name__", "conflict"), ("host", "a")], &points, MetricType::Gauge),
            series(&[("__name__", "fine"), ("host", "a")], &points[..2], MetricType::Gauge),
        ],
    );
    let (sent, dropped) = settle(&t, "influx", 5.0);
    // The server wrote the good lines of the partial write and refused the rest.
    assert_eq!((sent, dropped), (2.0, 3.0));
    let l = sink_label("influx");
    assert_eq!(t.metric_sum(DROPPED, &[&l, "reason=\"rejected\""]), 3.0);
    assert_eq!(t.metric_sum(RETRIES, &[&l]), 0.0, "a 400 must not be retried");
    assert_eq!(influx.select_all("metrics", "fine").len(), 2);
    assert_eq!(influx.select_all("metrics", "conflict").len(), 1);
    let log = std::fs::read_to_string(&t.process.log).unwrap();
    assert!(log.contains("field type conflict"), "the server's message is logged:\n{log}");
}

#[test]
fn v1_missing_database_is_created_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let influx = Influxd::start(dir.path(), 0);
    let grpc = free_port();
    let sinks = format!(
        r#"
[sinks.absent]
type = "influxdb"
url = "{url}"
database = "absent_db"
batch = {{ max_samples = 500, max_age_ms = 50 }}
{FAST_RETRY}
[sinks.creator]
type = "influxdb"
url = "{url}"
database = "made_db"
create_database = true
batch = {{ max_samples = 500, max_age_ms = 50 }}
{FAST_RETRY}
"#,
        url = influx.url()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sinks, &["absent", "creator"]));
    let t0 = now_ms() - 60_000;
    let points: Vec<(f64, i64)> = (0..5).map(|i| (i as f64, t0 + i * 1000)).collect();
    write_all(grpc, vec![series(&[("__name__", "up"), ("job", "x")], &points, MetricType::Gauge)]);

    assert_eq!(settle(&t, "absent", 5.0), (0.0, 5.0));
    assert_eq!(t.metric_sum(DROPPED, &[&sink_label("absent"), "reason=\"rejected\""]), 5.0);
    assert_eq!(t.metric_sum(RETRIES, &[&sink_label("absent")]), 0.0);
    assert_eq!(settle(&t, "creator", 5.0), (5.0, 0.0));
    let dbs = influx.databases();
    assert!(dbs.contains(&"made_db".to_string()) && !dbs.contains(&"absent_db".to_string()), "{dbs:?}");
    assert_eq!(influx.select_all("made_db", "up").len(), 5);
}

#[test]
fn v1_413_splits_the_batch_until_it_fits() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB bodies at most; 300 lines of ~70 bytes need several splits.
    let influx = Influxd::start(dir.path(), 4096);
    influx.create_database("metrics");
    let grpc = free_port();
    let sink = format!(
        "[sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"metrics\"\ngzip = false\nbatch = {{ max_samples = 1000, max_age_ms = 200 }}\n{FAST_RETRY}\n",
        influx.url()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sink, &["influx"]));
    let t0 = now_ms() - 600_000;
    let points: Vec<(f64, i64)> = (0..300).map(|i| (i as f64, t0 + i * 1000)).collect();
    write_all(
        grpc,
        vec![series(&[("__name__", "split_me"), ("host", "a-rather-long-host-name")], &points, MetricType::Gauge)],
    );
    assert_eq!(settle(&t, "influx", 300.0), (300.0, 0.0));
    let rows = influx.select_all("metrics", "split_me");
    assert_eq!(rows.len(), 300);
    let mut values: Vec<f64> = rows.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, (0..300).map(|i| i as f64).collect::<Vec<_>>());
}

#[test]
fn v2_write_api_against_victoria_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VictoriaMetrics::start(dir.path());
    let grpc = free_port();
    let sink = format!(
        "[sinks.v2]\ntype = \"influxdb\"\napi = \"v2\"\nurl = \"{}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"secret\"\nbatch = {{ max_samples = 500, max_age_ms = 50 }}\n{FAST_RETRY}\n",
        vm.url()
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sink, &["v2"]));
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let points: Vec<(f64, i64)> = (0..20).map(|i| (i as f64 * 0.25, t0 + i * 1000)).collect();
    write_all(grpc, vec![series(&[("__name__", "v2_temp"), ("room", "lab 1")], &points, MetricType::Gauge)]);
    assert_eq!(settle(&t, "v2", 20.0), (20.0, 0.0));
    let got = wait_for(Duration::from_secs(20), "VictoriaMetrics to show 20 samples", || {
        let series = vm.export("v2_temp_value");
        (series.first().map_or(0, |s| s.1.len()) == 20).then_some(series)
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0["room"], "lab 1");
    assert_eq!(got[0].1, points.iter().map(|&(v, ts)| (ts, v)).collect::<Vec<_>>());
}

/// One request as the scripted server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    target: String,
    authorization: Option<String>,
    lines: usize,
}

/// A tiny HTTP/1.1 server on loopback: answers requests in order from `script`
/// (status, extra headers), then 204; records each request.
fn scripted_server(script: Vec<(u16, &'static str)>) -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    break;
                }
                let (mut length, mut auth, mut gzip) = (0usize, None, false);
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    match k.to_ascii_lowercase().as_str() {
                        "content-length" => length = v.trim().parse().unwrap(),
                        "authorization" => auth = Some(v.trim().to_string()),
                        "content-encoding" => gzip = v.trim() == "gzip",
                        _ => {}
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let text = if gzip {
                    let mut s = String::new();
                    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut s).unwrap();
                    s
                } else {
                    String::from_utf8(body).unwrap()
                };
                let target = request_line.split(' ').nth(1).unwrap_or("").to_string();
                record.lock().unwrap().push(Seen {
                    at: Instant::now(),
                    target,
                    authorization: auth.clone(),
                    lines: text.lines().count(),
                });
                let (status, headers) = if auth.as_deref() != Some("Token secret") {
                    (401, "")
                } else {
                    script.next().unwrap_or((204, ""))
                };
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{headers}\r\n");
                let mut w = &stream;
                if w.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (port, seen)
}

#[test]
fn v2_token_retry_after_and_413_against_a_scripted_server() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) =
        scripted_server(vec![(429, "retry-after: 1\r\n"), (503, "retry-after: 1\r\n"), (413, ""), (500, "")]);
    let grpc = free_port();
    let sinks = format!(
        r#"
[sinks.v2]
type = "influxdb"
api = "v2"
url = "http://127.0.0.1:{port}"
org = "my org"
bucket = "b"
token = "secret"
batch = {{ max_samples = 1000, max_age_ms = 200 }}
request = {{ retry = {{ initial = "50ms", max = "100ms", max_retry_duration = "30s" }} }}
"#
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sinks, &["v2"]));
    let t0 = now_ms() - 60_000;
    let points: Vec<(f64, i64)> = (0..40).map(|i| (i as f64, t0 + i * 1000)).collect();
    write_all(grpc, vec![series(&[("__name__", "scripted"), ("host", "a")], &points, MetricType::Gauge)]);
    assert_eq!(settle(&t, "v2", 40.0), (40.0, 0.0));

    let seen = seen.lock().unwrap().clone();
    // 429, 503 (each honoured for ~1 s), 413 → two halves; the first half meets a 500 and is retried.
    let lines: Vec<usize> = seen.iter().map(|s| s.lines).collect();
    assert_eq!(lines, vec![40, 40, 40, 20, 20, 20], "{seen:?}");
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950), "Retry-After of 429 honoured");
    assert!(seen[2].at - seen[1].at >= Duration::from_millis(950), "Retry-After of 503 honoured");
    for s in &seen {
        assert_eq!(s.target, "/api/v2/write?org=my+org&bucket=b&precision=ns");
        assert_eq!(s.authorization.as_deref(), Some("Token secret"));
    }
    assert_eq!(t.metric_sum(RETRIES, &[&sink_label("v2")]), 3.0);
}

#[test]
fn v2_wrong_token_is_rejected_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (port, seen) = scripted_server(vec![]);
    let grpc = free_port();
    let sinks = format!(
        "[sinks.v2]\ntype = \"influxdb\"\napi = \"v2\"\nurl = \"http://127.0.0.1:{port}\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"wrong\"\nbatch = {{ max_samples = 1000, max_age_ms = 50 }}\n{FAST_RETRY}\n"
    );
    let t = Tsrelay::start(dir.path(), &config(grpc, &sinks, &["v2"]));
    write_all(grpc, vec![series(&[("__name__", "x")], &[(1.0, now_ms())], MetricType::Gauge)]);
    assert_eq!(settle(&t, "v2", 1.0), (0.0, 1.0));
    assert_eq!(t.metric_sum(DROPPED, &[&sink_label("v2"), "reason=\"rejected\""]), 1.0);
    assert_eq!(seen.lock().unwrap().len(), 1, "a 401 is not retried");
}
