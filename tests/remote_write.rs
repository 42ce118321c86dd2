//! The `prometheus_remote_write` sink end to end: samples sent to tsrelay
//! over gRPC land in a real Prometheus; Prometheus' own refusals are counted
//! and never retried; an outage loses nothing with a blocking memory queue.
//! A fault-injection server adds what Prometheus won't do on demand.
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fault_http::{FaultServer, Recorded, Reply};
use common::prometheus::Prometheus;
use common::*;
use prost::Message;
use tsrelay::proto::prometheus as rw;
use tsrelay::proto::v1::{self as pb, ingest_client::IngestClient};

const SENT: &str = "tsrelay_sink_sent_samples_total";
const RETRIES: &str = "tsrelay_sink_retries_total";
const DROPPED: &str = "tsrelay_dropped_samples_total";
const RECEIVED: &str = "tsrelay_received_samples_total";
const SINK_RECEIVED: &str = "tsrelay_sink_received_samples_total";
const QUEUED: &str = "tsrelay_queue_samples";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One series for the gRPC ingest API.
fn series(labels: &[(&str, &str)], kind: pb::MetricType, points: &[(f64, i64)]) -> pb::Series {
    pb::Series {
        labels: labels.iter().map(|(n, v)| pb::Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: points.iter().map(|&(value, timestamp)| pb::Sample { value, timestamp }).collect(),
        r#type: kind as i32,
        unit: String::new(),
    }
}

/// A unary `Write` to tsrelay's gRPC receiver.
fn grpc_write(addr: SocketAddr, series: Vec<pb::Series>) -> Result<pb::WriteResponse, tonic::Status> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let call = async {
        let mut client = IngestClient::connect(format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to tsrelay gRPC at {addr}: {e}"));
        client.write(pb::WriteRequest { series, id: 1 }).await.map(|r| r.into_inner())
    };
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), call).await })
        .unwrap_or_else(|_| panic!("gRPC write to {addr} got no answer within 30 s"))
}

/// A tsrelay with a gRPC receiver feeding one remote-write sink `prom` at `url`;
/// `sink_extra` goes inside `[sinks.prom]`, `tail` after it (e.g. `[sinks.prom.request]`).
fn start_relay(dir: &std::path::Path, url: &str, sink_extra: &str, tail: &str) -> (Tsrelay, SocketAddr) {
    let grpc = loopback(free_port());
    let batch = if sink_extra.contains("batch =") { "" } else { "batch = { max_samples = 10000, max_age_ms = 50 }" };
    let config = format!(
        r#"
shutdown_timeout = "2s"

[receivers.grpc]
type = "grpc"
listen = "{grpc}"

[pipelines.main]
receivers = ["grpc"]
sinks = ["prom"]

[sinks.prom]
type = "prometheus_remote_write"
url = "{url}"
{batch}
{sink_extra}
{tail}
"#
    );
    (Tsrelay::start(dir, &config), grpc)
}

/// Waits until `name{labels}` reaches `want` (bounded), returning the metrics then.
fn wait_metric(t: &Tsrelay, name: &str, labels: &[&str], want: f64, timeout: Duration) -> BTreeMap<String, f64> {
    let mut last = 0.0;
    let deadline = Instant::now() + timeout;
    loop {
        let m = t.metrics();
        last = sum_metric(&m, name, labels).max(last);
        if sum_metric(&m, name, labels) >= want {
            return m;
        }
        if Instant::now() > deadline {
            panic!("{name}{labels:?} stayed at {last}, wanted {want}, after {timeout:?}:\n{}", t.process.log_tail());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `received = sent + dropped + queued` for sink `sink`, from one scrape.
fn assert_accounting(m: &BTreeMap<String, f64>, sink: &str) {
    let label = format!("sink=\"{sink}\"");
    let received = sum_metric(m, SINK_RECEIVED, &[&label]);
    let sent = sum_metric(m, SENT, &[&label]);
    let dropped = sum_metric(m, DROPPED, &[&label]);
    let queued = sum_metric(m, QUEUED, &[&label]);
    assert_eq!(
        received,
        sent + dropped + queued,
        "sink {sink}: received {received} != sent {sent} + dropped {dropped} + queued {queued}"
    );
}

fn decode(body: &[u8]) -> rw::WriteRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).expect("snappy block body");
    rw::WriteRequest::decode(raw.as_slice()).expect("remote-write protobuf")
}

fn samples_in(r: &Recorded) -> usize {
    if r.body.is_empty() {
        return 0;
    }
    decode(&r.body).timeseries.iter().map(|t| t.samples.len()).sum()
}

fn readyz(t: &Tsrelay) -> (u16, serde_json::Value) {
    let r = http().get(format!("http://{}/readyz", t.admin)).send().expect("readyz");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or_default())
}

fn ten_samples(name: &str, ts: i64) -> Vec<pb::Series> {
    (0..10)
        .map(|i| series(&[("__name__", name), ("i", &i.to_string())], pb::MetricType::Gauge, &[(i as f64, ts)]))
        .collect()
}

// ---------------------------------------------------------------- real Prometheus

#[test]
fn samples_land_in_prometheus_with_labels_values_and_stale_markers() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let (relay, grpc) = start_relay(dir.path(), &prom.write_url(), "", "");
    let t0 = (now_ms() / 1000 - 60) * 1000;
    let mut batch: Vec<pb::Series> = (0..20)
        .map(|h| {
            let host = format!("h{h:02}");
            let points: Vec<(f64, i64)> = (0..5).map(|k| ((h * 10 + k) as f64, t0 + k * 1000)).collect();
            series(
                &[("job", "relay-test"), ("__name__", "rt_requests_total"), ("host", &host)],
                pb::MetricType::Counter,
                &points,
            )
        })
        .collect();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    batch.push(series(
        &[("__name__", "rt_temperature"), ("room", "a")],
        pb::MetricType::Gauge,
        &[(1.0, t0), (2.0, t0 + 1000), (stale, t0 + 2000)],
    ));
    let answer = grpc_write(grpc, batch).expect("gRPC write");
    assert_eq!(answer.accepted, 103);
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 103.0, Duration::from_secs(30));
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\""]), 0.0);
    assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom\""]), 0.0);
    assert_eq!(sum_metric(&m, RECEIVED, &["receiver=\"grpc\""]), 103.0);
    assert_accounting(&m, "prom");

    let at = Some(t0 + 4500);
    let mut points = prom.query("rt_requests_total{job=\"relay-test\"}", at);
    points.sort_by(|a, b| a.labels["host"].cmp(&b.labels["host"]));
    assert_eq!(points.len(), 20, "{points:?}");
    for (h, p) in points.iter().enumerate() {
        let want: BTreeMap<String, String> = [
            ("__name__".to_string(), "rt_requests_total".to_string()),
            ("host".to_string(), format!("h{h:02}")),
            ("job".to_string(), "relay-test".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(p.labels, want);
        assert_eq!(p.value, (h * 10 + 4).to_string());
    }
    assert_eq!(prom.query_number("sum(count_over_time(rt_requests_total[1m]))", at), 100.0);
    // The stale marker arrived as a stale marker: the series ends at t0+2s.
    assert_eq!(prom.query("rt_temperature", Some(t0 + 1500)).first().map(|p| p.value.clone()), Some("2".to_string()));
    assert!(prom.query("rt_temperature", Some(t0 + 2500)).is_empty(), "stale marker not honoured");
}

#[test]
fn line_protocol_over_http_lands_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let http_addr = loopback(free_port());
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "{http_addr}"
[pipelines.main]
receivers = ["http"]
sinks = ["prom"]
[sinks.prom]
type = "prometheus_remote_write"
url = "{}"
batch = {{ max_age_ms = 20 }}
"#,
        prom.write_url()
    );
    let relay = Tsrelay::start(dir.path(), &config);
    let t = (now_ms() / 1000 - 10) * 1000;
    let body = format!("weather,city=paris temperature=21.5,humidity=40i {t}\nweather,city=oslo value=-3 {t}\n");
    let answer = http().post(format!("http://{http_addr}/write?precision=ms")).body(body).send().unwrap();
    assert_eq!(answer.status(), 204, "{:?}", answer.text());
    wait_metric(&relay, SENT, &["sink=\"prom\""], 3.0, Duration::from_secs(30));
    let value = |q: &str| prom.query(q, Some(t + 500)).first().map(|p| p.value.clone());
    assert_eq!(value("weather_temperature{city=\"paris\"}"), Some("21.5".into()));
    assert_eq!(value("weather_humidity{city=\"paris\"}"), Some("40".into()));
    assert_eq!(value("weather{city=\"oslo\"}"), Some("-3".into()));
}

#[test]
fn prometheus_refusals_are_counted_rejected_and_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let (grpc_a, grpc_b) = (loopback(free_port()), loopback(free_port()));
    let url = prom.write_url();
    // Two pipelines into one Prometheus: per-series state upstream is per
    // pipeline, so what `b` sends reaches Prometheus whatever stages run.
    let sink = |name: &str| {
        format!("[sinks.{name}]\ntype = \"prometheus_remote_write\"\nurl = \"{url}\"\nbatch = {{ max_age_ms = 20 }}\n")
    };
    let config = format!(
        r#"
# Two pipelines with default per-series tables need more than the default budget.
[limits]
memory_bytes = 2147483648
[receivers.a]
type = "grpc"
listen = "{grpc_a}"
[receivers.b]
type = "grpc"
listen = "{grpc_b}"
[pipelines.a]
receivers = ["a"]
sinks = ["prom_a"]
[pipelines.b]
receivers = ["b"]
sinks = ["prom_b"]
{}
{}
"#,
        sink("prom_a"),
        sink("prom_b")
    );
    let relay = Tsrelay::start(dir.path(), &config);
    let now = now_ms();
    let x = [("__name__", "refusal_test"), ("series", "x")];
    grpc_write(grpc_a, vec![series(&x, pb::MetricType::Gauge, &[(1.0, now)])]).unwrap();
    wait_metric(&relay, SENT, &["sink=\"prom_a\""], 1.0, Duration::from_secs(30));

    let refused = [
        ("out of order", series(&x, pb::MetricType::Gauge, &[(2.0, now - 10_000)])),
        ("duplicate timestamp, other value", series(&x, pb::MetricType::Gauge, &[(3.0, now)])),
        (
            "out of bounds",
            series(
                &[("__name__", "refusal_test"), ("series", "y")],
                pb::MetricType::Gauge,
                &[(4.0, now - 3 * 3_600_000)],
            ),
        ),
    ];
    for (n, (what, s)) in refused.into_iter().enumerate() {
        grpc_write(grpc_b, vec![s]).unwrap();
        let m = wait_metric(
            &relay,
            DROPPED,
            &["sink=\"prom_b\"", "reason=\"rejected\""],
            (n + 1) as f64,
            Duration::from_secs(30),
        );
        assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom_b\""]), 0.0, "{what} was retried");
    }
    // Give a wrong retry time to show up before the final check.
    std::thread::sleep(Duration::from_millis(500));
    let m = relay.metrics();
    assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom_b\""]), 0.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"prom_b\""]), 0.0);
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom_b\"", "reason=\"rejected\""]), 3.0);
    assert_accounting(&m, "prom_b");
    assert_eq!(prom.query("refusal_test", Some(now)).first().map(|p| p.value.clone()), Some("1".to_string()));
    let (status, body) = readyz(&relay);
    assert_eq!(status, 200, "refused data must not make the sink unready: {body}");
}

#[test]
fn prometheus_outage_loses_nothing_with_a_blocking_memory_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::start(&dir.path().join("prom"));
    let (relay, grpc) = start_relay(
        dir.path(),
        &prom.write_url(),
        "queue = { type = \"memory\", max_samples = 100000, when_full = \"block\" }\nunhealthy_after = \"1s\"",
        "[sinks.prom.request]\ntimeout = \"2s\"\nretry = { initial = \"50ms\", max = \"500ms\", max_retry_duration = \"10m\" }",
    );
    let t0 = (now_ms() / 1000 - 30) * 1000;
    grpc_write(grpc, ten_samples("outage_test", t0)).unwrap();
    wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));

    prom.stop();
    for k in 1..=5 {
        grpc_write(grpc, ten_samples("outage_test", t0 + k * 1000)).unwrap();
    }
    wait_metric(&relay, RETRIES, &["sink=\"prom\""], 3.0, Duration::from_secs(30));
    let body = wait_for(Duration::from_secs(20), "/readyz to report the sink failing", || {
        let (status, body) = readyz(&relay);
        (status == 503 && body["sinks"]["prom"]["state"] == "failing").then_some(body)
    });
    assert!(body["sinks"]["prom"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
    assert!(body["sinks"]["prom"]["failing_since"].is_string(), "{body}");
    assert_eq!(relay.metric_sum(SENT, &["sink=\"prom\""]), 10.0, "delivered while Prometheus was down?");

    prom.restart();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 60.0, Duration::from_secs(60));
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\""]), 0.0, "samples lost in the outage");
    assert_eq!(sum_metric(&m, QUEUED, &["sink=\"prom\""]), 0.0);
    assert_accounting(&m, "prom");
    let stored = prom.query_number("sum(count_over_time(outage_test[5m]))", Some(t0 + 5500));
    assert_eq!(stored, 60.0, "Prometheus holds {stored} of 60 samples");
    wait_for(Duration::from_secs(10), "/readyz back to 200", || (readyz(&relay).0 == 200).then_some(()));
}

// ------------------------------------------------------------- fault injection

/// tsrelay in front of a fault server: one request lane, 2 s timeout and fast
/// retries unless `request` (lines of `[sinks.prom.request]`) sets them.
fn relay_on(fault: &FaultServer, dir: &std::path::Path, request: &str) -> (Tsrelay, SocketAddr) {
    let mut lines = vec![request.to_string()];
    for (key, default) in [
        ("concurrency", "concurrency = 1"),
        ("timeout", "timeout = \"2s\""),
        ("retry", "retry = { initial = \"20ms\", max = \"100ms\" }"),
    ] {
        if !request.lines().any(|l| l.trim_start().starts_with(key)) {
            lines.push(default.to_string());
        }
    }
    start_relay(
        dir,
        &fault.url("/api/v1/write"),
        "unhealthy_after = \"500ms\"",
        &format!("[sinks.prom.request]\n{}", lines.join("\n")),
    )
}

#[test]
fn server_errors_are_retried_with_the_same_body_until_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(
        vec![Reply::with_body(500, "boom"), Reply::status(503), Reply::status(502), Reply::status(504)],
        Reply::status(204),
    );
    let (relay, grpc) = relay_on(&fault, dir.path(), "");
    grpc_write(grpc, ten_samples("retry_test", now_ms())).unwrap();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    let requests = fault.requests();
    assert_eq!(requests.len(), 5, "4 failures then success");
    assert!(requests.windows(2).all(|w| w[0].body == w[1].body), "the batch must be encoded once and resent as is");
    assert_eq!(samples_in(&requests[4]), 10);
    assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom\""]), 4.0);
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\""]), 0.0);
    assert_accounting(&m, "prom");
}

#[test]
fn retry_after_is_honoured_up_to_max_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(
        vec![Reply::with_header(429, "Retry-After", "2"), Reply::with_header(503, "Retry-After", "3600")],
        Reply::status(204),
    );
    let (relay, grpc) =
        relay_on(&fault, dir.path(), "retry = { initial = \"10ms\", max = \"20ms\", max_retry_after = \"3s\" }");
    grpc_write(grpc, ten_samples("retry_after_test", now_ms())).unwrap();
    wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    let r = fault.requests();
    assert_eq!(r.len(), 3);
    let first_wait = r[1].arrived - r[0].arrived;
    let second_wait = r[2].arrived - r[1].arrived;
    assert!(first_wait >= Duration::from_millis(1950), "Retry-After: 2 but retried after {first_wait:?}");
    assert!(second_wait >= Duration::from_millis(2950), "capped wait of 3 s cut short: {second_wait:?}");
    assert!(second_wait < Duration::from_secs(15), "Retry-After: 3600 not capped at 3 s: {second_wait:?}");
}

#[test]
fn a_hanging_request_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(vec![Reply::Hang], Reply::status(204));
    let (relay, grpc) = relay_on(&fault, dir.path(), "timeout = \"500ms\"");
    grpc_write(grpc, ten_samples("hang_test", now_ms())).unwrap();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    let r = fault.requests();
    assert_eq!(r.len(), 2);
    let gap = r[1].arrived - r[0].arrived;
    assert!(gap >= Duration::from_millis(450) && gap < Duration::from_secs(10), "retried after {gap:?}");
    assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom\""]), 1.0);
    assert_accounting(&m, "prom");
}

#[test]
fn a_reset_connection_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(vec![Reply::Reset, Reply::Reset], Reply::status(204));
    let (relay, grpc) = relay_on(&fault, dir.path(), "");
    grpc_write(grpc, ten_samples("reset_test", now_ms())).unwrap();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    let r = fault.requests();
    assert_eq!(r.iter().filter(|q| q.reply == "reset").count(), 2);
    assert_eq!(samples_in(r.last().unwrap()), 10);
    assert!(sum_metric(&m, RETRIES, &["sink=\"prom\""]) >= 2.0);
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\""]), 0.0);
}

#[test]
fn client_errors_and_501_are_rejected_without_retry() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(
        vec![Reply::with_body(400, "out of order sample"), Reply::status(501), Reply::with_body(422, "no")],
        Reply::status(204),
    );
    let (relay, grpc) = relay_on(&fault, dir.path(), "");
    for n in 1..=3 {
        grpc_write(grpc, ten_samples("reject_test", now_ms() + n)).unwrap();
        wait_metric(
            &relay,
            DROPPED,
            &["sink=\"prom\"", "reason=\"rejected\""],
            (n * 10) as f64,
            Duration::from_secs(30),
        );
    }
    grpc_write(grpc, ten_samples("reject_test", now_ms() + 10)).unwrap();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    assert_eq!(fault.requests().len(), 4, "a refused request was sent again");
    assert_eq!(sum_metric(&m, RETRIES, &["sink=\"prom\""]), 0.0);
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\"", "reason=\"rejected\""]), 30.0);
    assert_accounting(&m, "prom");
    let log = std::fs::read_to_string(relay.dir.join("tsrelay.log")).unwrap_or_default();
    assert!(log.contains("out of order sample"), "the backend's message is not in the log");
    assert_eq!(readyz(&relay).0, 200);
}

#[test]
fn retrying_stops_after_max_retry_duration_and_readiness_follows() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(Vec::new(), Reply::status(503));
    let (relay, grpc) =
        relay_on(&fault, dir.path(), "retry = { initial = \"50ms\", max = \"200ms\", max_retry_duration = \"1s\" }");
    grpc_write(grpc, ten_samples("exhaust_test", now_ms())).unwrap();
    let m =
        wait_metric(&relay, DROPPED, &["sink=\"prom\"", "reason=\"retry_exhausted\""], 10.0, Duration::from_secs(30));
    assert!(sum_metric(&m, RETRIES, &["sink=\"prom\""]) >= 2.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"prom\""]), 0.0);
    assert_accounting(&m, "prom");
    let (status, body) = readyz(&relay);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sinks"]["prom"]["state"], "failing");

    fault.set_default(Reply::status(204));
    grpc_write(grpc, ten_samples("exhaust_test", now_ms() + 1)).unwrap();
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 10.0, Duration::from_secs(30));
    assert_accounting(&m, "prom");
    let (status, body) = readyz(&relay);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sinks"]["prom"]["state"], "healthy");
}

#[test]
fn requests_carry_protocol_headers_credentials_tenant_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(Vec::new(), Reply::status(204));
    let (relay, grpc) = relay_on(
        &fault,
        dir.path(),
        "auth = { type = \"basic\", username = \"relay\", password = \"s3cret\" }\ntenant = \"team-a\"\nheaders = { \"X-Env\" = \"test\" }",
    );
    let now = now_ms();
    grpc_write(
        grpc,
        vec![series(
            &[("zone", "z1"), ("__name__", "hdr_requests_total"), ("app", "a")],
            pb::MetricType::Counter,
            &[(1.0, now), (2.0, now + 1), (3.0, now + 2)],
        )],
    )
    .unwrap();
    wait_metric(&relay, SENT, &["sink=\"prom\""], 3.0, Duration::from_secs(30));
    let r = &fault.requests()[0];
    assert_eq!(r.header("content-encoding"), Some("snappy"));
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(r.header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert_eq!(r.header("user-agent"), Some(concat!("tsrelay/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(r.header("authorization"), Some("Basic cmVsYXk6czNjcmV0"));
    assert_eq!(r.header("x-scope-orgid"), Some("team-a"));
    assert_eq!(r.header("x-env"), Some("test"));
    let req = decode(&r.body);
    assert_eq!(req.timeseries.len(), 1);
    let names: Vec<&str> = req.timeseries[0].labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "app", "zone"]);
    let ts: Vec<i64> = req.timeseries[0].samples.iter().map(|s| s.timestamp).collect();
    assert_eq!(ts, [now, now + 1, now + 2]);
    assert_eq!(req.metadata.len(), 1);
    assert_eq!(req.metadata[0].metric_family_name, "hdr_requests_total");
    assert_eq!(req.metadata[0].r#type, rw::metric_metadata::MetricType::Counter as i32);
    let log = std::fs::read_to_string(relay.dir.join("tsrelay.log")).unwrap_or_default();
    assert!(!log.contains("s3cret"), "the password appears in the log");
}

#[test]
fn a_header_overriding_the_protocol_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tsrelay.toml");
    std::fs::write(
        &config,
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:1"
[pipelines.main]
receivers = ["grpc"]
sinks = ["prom"]
[sinks.prom]
type = "prometheus_remote_write"
url = "http://127.0.0.1:9/api/v1/write"
[sinks.prom.request]
headers = { "Content-Encoding" = "gzip" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .expect("run tsrelay validate");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "validate accepted a protocol header override");
    assert!(stderr.contains("Content-Encoding") && stderr.contains("cannot be overridden"), "{stderr}");
}

#[test]
fn concurrent_requests_never_share_a_series_and_keep_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let fault = FaultServer::start(Vec::new(), Reply::delayed(204, Duration::from_millis(40)));
    let (relay, grpc) = start_relay(
        dir.path(),
        &fault.url("/api/v1/write"),
        "batch = { max_samples = 25, max_age_ms = 20 }",
        "[sinks.prom.request]\nconcurrency = 4",
    );
    let t0 = now_ms();
    for k in 0..5 {
        let batch = (0..100)
            .map(|i| {
                series(
                    &[("__name__", "order_test"), ("i", &i.to_string())],
                    pb::MetricType::Gauge,
                    &[(k as f64, t0 + k)],
                )
            })
            .collect();
        grpc_write(grpc, batch).unwrap();
    }
    let m = wait_metric(&relay, SENT, &["sink=\"prom\""], 500.0, Duration::from_secs(60));
    assert_accounting(&m, "prom");
    // (arrived, answered, (series id, timestamp) of every sample)
    type Seen = (Instant, Instant, Vec<(String, i64)>);
    let mut requests: Vec<Seen> = fault
        .requests()
        .iter()
        .map(|r| {
            let points = decode(&r.body)
                .timeseries
                .iter()
                .flat_map(|t| {
                    let id = t.labels.iter().find(|l| l.name == "i").map(|l| l.value.clone()).unwrap_or_default();
                    t.samples.iter().map(move |s| (id.clone(), s.timestamp))
                })
                .collect();
            (r.arrived, r.answered.expect("answered"), points)
        })
        .collect();
    requests.sort_by_key(|r| r.0);
    assert!(requests.iter().all(|r| r.2.len() <= 25), "a request above batch.max_samples");
    let mut max_overlap = 1;
    for (i, a) in requests.iter().enumerate() {
        let overlapping: Vec<_> = requests.iter().skip(i + 1).filter(|b| b.0 < a.1 && a.0 < b.1).collect();
        max_overlap = max_overlap.max(1 + overlapping.len());
        let mine: BTreeSet<&String> = a.2.iter().map(|(id, _)| id).collect();
        for b in overlapping {
            assert!(b.2.iter().all(|(id, _)| !mine.contains(id)), "two requests in flight share a series");
        }
    }
    assert!(max_overlap >= 2, "requests never overlapped: concurrency not used");
    let mut last: HashMap<&String, i64> = HashMap::new();
    for r in &requests {
        for (id, ts) in &r.2 {
            if let Some(prev) = last.insert(id, *ts) {
                assert!(prev < *ts, "series {id}: {ts} sent after {prev}");
            }
        }
    }
    assert_eq!(last.len(), 100);
}

#[test]
fn a_stuck_sink_pushes_back_on_grpc_senders_or_drops_by_policy() {
    for (policy, expect_pushback) in [("block", true), ("drop_newest", false), ("drop_oldest", false)] {
        let dir = tempfile::tempdir().unwrap();
        let fault = FaultServer::start(Vec::new(), Reply::Hang);
        let grpc = loopback(free_port());
        let config = format!(
            r#"
shutdown_timeout = "1s"
[receivers.grpc]
type = "grpc"
listen = "{grpc}"
max_wait_ms = 200
[pipelines.main]
receivers = ["grpc"]
sinks = ["prom"]
shards = 1
ingest_queue_batches = 1
shard_queue_batches = 1
[sinks.prom]
type = "prometheus_remote_write"
url = "{}"
queue = {{ max_samples = 50, when_full = "{policy}" }}
batch = {{ max_samples = 10, max_age_ms = 10 }}
[sinks.prom.request]
concurrency = 1
timeout = "60s"
"#,
            fault.url("/api/v1/write")
        );
        let relay = Tsrelay::start(dir.path(), &config);
        let mut exhausted = None;
        let mut accepted = 0;
        for n in 0..200 {
            match grpc_write(grpc, ten_samples("pushback_test", now_ms() + n)) {
                Ok(r) => accepted += r.accepted,
                Err(status) => {
                    exhausted = Some(status);
                    break;
                }
            }
        }
        let m = relay.metrics();
        assert_accounting(&m, "prom");
        if expect_pushback {
            let status = exhausted.expect("a blocked sink never pushed back on the sender");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            assert_eq!(sum_metric(&m, DROPPED, &["sink=\"prom\""]), 0.0, "block must not drop");
        } else {
            assert!(exhausted.is_none(), "{policy} pushed back: {exhausted:?}");
            assert_eq!(accepted, 2000);
            assert!(sum_metric(&m, DROPPED, &["sink=\"prom\"", "reason=\"queue_full\""]) > 0.0);
        }
    }
}
