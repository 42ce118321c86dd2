//! The remote-write receiver (`POST /api/v1/write`) with real senders:
//! Debian's Prometheus scraping a target and remote-writing to tsrelay, and
//! vmagent doing the same; tsrelay forwards into a second, real Prometheus.
//! "Nothing lost" is checked with queries: the same series with the same
//! values at the same instant as a reference copy written without tsrelay.
//! Bad input gets the specification's answers (400 naming the failure, 415,
//! 413), and the 2.0 path is exercised by a request built from the spec.
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;
use prost::Message;
use tsrelay::proto::prometheus as rw1;
use tsrelay::proto::write_v2 as rw2;

/// tsrelay with an HTTP receiver whose samples go to the remote-write sink at `url`.
fn start_relay(dir: &Path, url: &str, http_extra: &str) -> (Tsrelay, SocketAddr) {
    let listen = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "2s"

[limits]
memory_bytes = 2147483648

[receivers.http]
type = "http"
listen = "{listen}"
{http_extra}

[pipelines.main]
receivers = ["http"]
sinks = ["prom"]

[pipelines.main.validate]
max_labels = 30
max_label_value_length = 400

[sinks.prom]
type = "prometheus_remote_write"
url = "{url}"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
"#
    );
    (Tsrelay::start(dir, &config), listen)
}

/// Every series of `selector` at `time_ms`, labels → value.
fn snapshot(p: &Prometheus, selector: &str, time_ms: i64) -> BTreeMap<BTreeMap<String, String>, String> {
    p.query(selector, Some(time_ms)).into_iter().map(|q| (q.labels, q.value)).collect()
}

/// Waits until `p` has a sample of `up{job}` at `t_ms` or later.
fn wait_for_sample(p: &Prometheus, job: &str, t_ms: i64, what: &str) {
    wait_for(Duration::from_secs(60), what, || {
        let ts = p.query_number(&format!("timestamp(up{{job=\"{job}\"}})"), None);
        (ts * 1000.0 >= t_ms as f64).then_some(())
    });
}

/// Checks that `got` holds exactly the series and values of `want`, saying which differ.
fn assert_same(want: &BTreeMap<BTreeMap<String, String>, String>, got: &BTreeMap<BTreeMap<String, String>, String>) {
    assert!(want.len() > 20, "the reference holds too few series to compare: {want:?}");
    let missing: Vec<_> = want.iter().filter(|(k, _)| !got.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|(k, _)| !want.contains_key(*k)).take(5).collect();
    let differ: Vec<_> =
        want.iter().filter_map(|(k, v)| got.get(k).filter(|g| *g != v).map(|g| (k, v, g))).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{} series expected, {} found\nmissing: {missing:?}\nextra: {extra:?}\ndifferent values: {differ:?}",
        want.len(),
        got.len()
    );
}

/// The last scrape time (ms) of `job` in `p`.
fn last_scrape_ms(p: &Prometheus, job: &str) -> i64 {
    wait_for(Duration::from_secs(60), "a first scrape", || {
        let ts = p.query_number(&format!("timestamp(up{{job=\"{job}\"}})"), None);
        (ts > 0.0).then_some((ts * 1000.0).round() as i64)
    })
}

#[test]
fn prometheus_remote_writes_through_tsrelay_into_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (relay, listen) = start_relay(dir.path(), &backend.write_url(), "");

    // The sender: a Prometheus scraping tsrelay's own /metrics every second
    // and remote-writing everything (metadata too) to tsrelay.
    let sender_dir = dir.path().join("sender");
    std::fs::create_dir_all(&sender_dir).expect("sender dir");
    let sender_config = format!(
        r#"
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: relay
    static_configs: [{{targets: ["{admin}"]}}]
remote_write:
  - url: http://{listen}/api/v1/write
    queue_config: {{batch_send_deadline: 200ms, min_backoff: 50ms}}
    metadata_config: {{send_interval: 1s}}
"#,
        admin = relay.admin
    );
    let sender = Prometheus::start_with_config(&sender_dir, &sender_config);

    // Wait for a few scrapes, then compare one instant in both TSDBs.
    wait_for(Duration::from_secs(60), "three scrapes in the sender", || {
        (sender.query_number("count_over_time(up{job=\"relay\"}[1m])", None) >= 3.0).then_some(())
    });
    let t = last_scrape_ms(&sender, "relay");
    wait_for_sample(&backend, "relay", t, "the scrape at t to reach the backend through tsrelay");
    let want = snapshot(&sender, "{job=\"relay\"}", t);
    let got = snapshot(&backend, "{job=\"relay\"}", t);
    assert_same(&want, &got);

    // Metadata requests arrived and nothing was refused by the receiver.
    let m = relay.metrics();
    assert!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]) >= want.len() as f64);
    assert_eq!(
        sum_metric(&m, "tsrelay_dropped_samples_total", &["stage=\"receiver\""]),
        0.0,
        "receiver drops: {:?}",
        m.iter().filter(|(k, _)| k.contains("dropped")).collect::<Vec<_>>()
    );
}

#[test]
fn vmagent_remote_writes_through_tsrelay_into_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let reference = Prometheus::start(&dir.path().join("reference"));
    let (relay, listen) = start_relay(dir.path(), &backend.write_url(), "");

    // vmagent scrapes tsrelay's /metrics and writes every sample both to
    // tsrelay and, as the reference, straight to a second Prometheus.
    let vm_dir = dir.path().join("vmagent");
    std::fs::create_dir_all(&vm_dir).expect("vmagent dir");
    let scrape = vm_dir.join("scrape.yml");
    std::fs::write(
        &scrape,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: vm\n    static_configs: [{{targets: [\"{}\"]}}]\n",
            relay.admin
        ),
    )
    .expect("write scrape config");
    let bin = require_binary("vmagent", "apt-get install -y victoria-metrics");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("-remoteWrite.url=http://{listen}/api/v1/write"))
        .arg(format!("-remoteWrite.url={}", reference.write_url()))
        .arg(format!("-promscrape.config={}", scrape.display()))
        .arg(format!("-remoteWrite.tmpDataPath={}", vm_dir.join("tmp").display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
        .arg("-remoteWrite.flushInterval=200ms");
    let _vmagent = ChildGuard::spawn("vmagent", &mut cmd, &vm_dir);

    wait_for(Duration::from_secs(60), "three scrapes in the reference", || {
        (reference.query_number("count_over_time(up{job=\"vm\"}[1m])", None) >= 3.0).then_some(())
    });
    let t = last_scrape_ms(&reference, "vm");
    wait_for_sample(&backend, "vm", t, "vmagent's scrape at t to reach the backend through tsrelay");
    let want = snapshot(&reference, "{job=\"vm\"}", t);
    let got = snapshot(&backend, "{job=\"vm\"}", t);
    assert_same(&want, &got);
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &["stage=\"receiver\""]), 0.0);
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).expect("snappy")
}

fn post(addr: SocketAddr, content_type: Option<&str>, body: Vec<u8>) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = http().post(format!("http://{addr}/api/v1/write")).header("Content-Encoding", "snappy").body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let resp = req.send().expect("POST /api/v1/write");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().unwrap_or_default(), headers)
}

const V1: Option<&str> = Some("application/x-protobuf");
const V2: Option<&str> = Some("application/x-protobuf;proto=io.prometheus.write.v2.Request");

#[test]
fn bad_input_gets_the_specified_answers_and_v2_is_spoken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (relay, listen) = start_relay(dir.path(), &backend.write_url(), "max_body_bytes = 65536");

    let (s, body, _) = post(listen, V1, b"\x0a\xff\xfe\x01".to_vec());
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    let (s, body, _) = post(listen, V1, snappy(b"\x0a\xff\xff\xff\x0f"));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("prometheus.WriteRequest"), "{body}");
    let (s, body, _) = post(listen, V2, snappy(b"\x22\x05ab"));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("io.prometheus.write.v2.Request"), "{body}");
    let (s, body, _) = post(listen, Some("application/json"), snappy(b"{}"));
    assert_eq!(s, 415, "{body}");
    let (s, body, _) = post(listen, Some("application/x-protobuf;proto=io.prometheus.write.v9.Request"), snappy(b""));
    assert_eq!(s, 415, "{body}");
    assert!(body.contains("v9"), "{body}");
    let (s, _, _) = post(listen, V1, vec![0; 70_000]);
    assert_eq!(s, 413);
    let (s, body, _) = post(listen, V1, snappy(&vec![0; 70_000]));
    assert_eq!(s, 413, "{body}");
    assert!(body.contains("max_body_bytes"), "{body}");

    // A series without a name is refused (400, never retried) while its
    // neighbours are written.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let label = |n: &str, v: &str| rw1::Label { name: n.into(), value: v.into() };
    let v1 = rw1::WriteRequest {
        timeseries: vec![
            rw1::TimeSeries {
                labels: vec![label("__name__", "rw1_ok"), label("src", "spec")],
                samples: vec![rw1::Sample { value: 41.5, timestamp: now }],
                ..Default::default()
            },
            rw1::TimeSeries {
                labels: vec![label("src", "spec")],
                samples: vec![rw1::Sample { value: 1.0, timestamp: now }],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let (s, body, _) = post(listen, V1, snappy(&v1.encode_to_vec()));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("series 1") && body.contains("__name__"), "{body}");

    // Remote-write 2.0, built as the specification describes: a symbols
    // table starting with "", label refs in pairs, per-series metadata; one
    // native histogram and one exemplar that tsrelay counts but does not keep.
    let symbols: Vec<String> = ["", "__name__", "rw2_requests_total", "src", "spec", "rw2_temp", "trace_id", "abc"]
        .into_iter()
        .map(String::from)
        .collect();
    let v2 = rw2::Request {
        symbols,
        timeseries: vec![
            rw2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    rw2::Sample { value: 7.0, timestamp: now - 1000, ..Default::default() },
                    rw2::Sample { value: 9.0, timestamp: now, ..Default::default() },
                ],
                metadata: Some(rw2::Metadata { r#type: 1, help_ref: 0, unit_ref: 0 }),
                exemplars: vec![rw2::Exemplar { labels_refs: vec![6, 7], value: 1.0, timestamp: now }],
                ..Default::default()
            },
            rw2::TimeSeries {
                labels_refs: vec![1, 5, 3, 4],
                samples: vec![rw2::Sample { value: -3.25, timestamp: now, ..Default::default() }],
                metadata: Some(rw2::Metadata { r#type: 2, help_ref: 0, unit_ref: 0 }),
                histograms: vec![rw2::Histogram { sum: 1.0, timestamp: now, ..Default::default() }],
                ..Default::default()
            },
        ],
    };
    let (s, body, headers) = post(listen, V2, snappy(&v2.encode_to_vec()));
    assert_eq!(s, 204, "{body}");
    let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header("x-prometheus-remote-write-samples-written").as_deref(), Some("3"));
    assert_eq!(header("x-prometheus-remote-write-histograms-written").as_deref(), Some("0"));
    assert_eq!(header("x-prometheus-remote-write-exemplars-written").as_deref(), Some("0"));

    wait_for(Duration::from_secs(30), "rw1_ok and the 2.0 series in the backend", || {
        let ok = backend.query_number("rw1_ok{src=\"spec\"}", None) == 41.5
            && backend.query_number("rw2_requests_total{src=\"spec\"}", None) == 9.0
            && backend.query_number("rw2_temp{src=\"spec\"}", None) == -3.25;
        ok.then_some(())
    });
    assert_eq!(backend.query_number("count_over_time(rw2_requests_total[5m])", None), 2.0);
    let m = relay.metrics();
    let dropped = |reason: &str| sum_metric(&m, "tsrelay_dropped_samples_total", &[&format!("reason=\"{reason}\"")]);
    assert_eq!(dropped("invalid_name"), 1.0);
    assert_eq!(dropped("unsupported_histogram"), 1.0);
    assert_eq!(dropped("exemplar"), 1.0);
}

/// tsrelay A (NDJSON in) with a remote-write sink of protocol `protocol` at `url`.
fn start_sender(dir: &Path, url: &str, protocol: &str) -> (Tsrelay, SocketAddr) {
    let listen = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "2s"

[limits]
memory_bytes = 2147483648

[receivers.http]
type = "http"
listen = "{listen}"

[pipelines.main]
receivers = ["http"]
sinks = ["out"]

[sinks.out]
type = "prometheus_remote_write"
url = "{url}"
protocol = "{protocol}"
batch = {{ max_samples = 10000, max_age_ms = 50 }}
"#
    );
    (Tsrelay::start(dir, &config), listen)
}

fn ndjson(addr: SocketAddr, name: &str, points: &[(f64, i64)], kind: &str) {
    let body: String = points
        .iter()
        .map(|(v, t)| format!("{{\"name\":\"{name}\",\"labels\":{{\"via\":\"test\"}},\"value\":{v},\"timestamp\":{t},\"type\":\"{kind}\"}}\n"))
        .collect();
    let resp = http().post(format!("http://{addr}/api/v1/ingest")).body(body).send().expect("POST /api/v1/ingest");
    assert_eq!(resp.status().as_u16(), 204, "{:?}", resp.text());
}

#[test]
fn remote_write_2_sink_into_tsrelay_and_auto_falls_back_for_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;

    // A (2.0 sink) → B (2.0 receiver, 1.0 sink) → Prometheus.
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&b_dir).expect("b dir");
    let (b, b_listen) = start_relay(&b_dir, &backend.write_url(), "");
    let a_dir = dir.path().join("a");
    std::fs::create_dir_all(&a_dir).expect("a dir");
    let (a, a_listen) = start_sender(&a_dir, &format!("http://{b_listen}/api/v1/write"), "2.0");
    let points: Vec<(f64, i64)> = (0..50).map(|i| (i as f64 * 1.5, now - 50_000 + i * 1000)).collect();
    ndjson(a_listen, "v2_path_total", &points, "counter");
    wait_for(Duration::from_secs(30), "50 samples through the 2.0 path", || {
        (backend.query_number("count_over_time(v2_path_total{via=\"test\"}[5m])", None) == 50.0).then_some(())
    });
    assert_eq!(backend.query_number("v2_path_total{via=\"test\"}", None), 73.5);
    // B saw a 2.0 request (with the counter type in its metadata) and refused nothing.
    let bm = b.metrics();
    assert_eq!(sum_metric(&bm, "tsrelay_received_samples_total", &["receiver=\"http\""]), 50.0);
    assert_eq!(sum_metric(&bm, "tsrelay_dropped_samples_total", &[]), 0.0);
    assert_eq!(a.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"out\""]), 50.0);

    // C ("auto") → Prometheus 2.42, which speaks only 1.0: C notices (no
    // written-count header), resends as 1.0 and stays with 1.0.
    let c_dir = dir.path().join("c");
    std::fs::create_dir_all(&c_dir).expect("c dir");
    let (c, c_listen) = start_sender(&c_dir, &backend.write_url(), "auto");
    ndjson(c_listen, "auto_path", &[(1.0, now - 2000)], "gauge");
    ndjson(c_listen, "auto_path", &[(2.0, now - 1000)], "gauge");
    wait_for(Duration::from_secs(30), "both auto samples in Prometheus", || {
        (backend.query_number("count_over_time(auto_path{via=\"test\"}[5m])", None) == 2.0).then_some(())
    });
    assert_eq!(c.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"out\""]), 2.0);
    assert_eq!(c.metric_sum("tsrelay_dropped_samples_total", &[]), 0.0);
    let log = std::fs::read_to_string(c_dir.join("tsrelay.log")).unwrap_or_default();
    assert_eq!(log.matches("does not speak 2.0").count(), 1, "{log}");
}

/// Backpressure as the specification asks: behind a backend that never
/// answers (a `when_full = "block"` queue, one-batch ingest queue), requests
/// soon wait `max_wait_ms` in vain and get `503` with `Retry-After`; what was
/// refused never entered the pipeline.
#[test]
fn remote_write_answers_503_with_retry_after_when_the_queue_stays_full() {
    use common::fault_http::{FaultServer, Reply};
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FaultServer::start(Vec::new(), Reply::Hang);
    let listen = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "1s"

[receivers.http]
type = "http"
listen = "{listen}"
max_wait_ms = 100

{stalled}"#,
        stalled = common::fault_http::stalled_pipeline_toml(&["http"], &backend.url("/api/v1/write"), 20, 10, "30s")
    );
    let relay = Tsrelay::start(dir.path(), &config);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let label = |n: &str, v: &str| rw1::Label { name: n.into(), value: v.into() };
    let (mut accepted, mut refused) = (0u64, None);
    let start = std::time::Instant::now();
    for i in 0..200 {
        let req = rw1::WriteRequest {
            timeseries: (0..10)
                .map(|j| rw1::TimeSeries {
                    labels: vec![label("__name__", "rw_full"), label("j", &j.to_string())],
                    samples: vec![rw1::Sample { value: f64::from(i), timestamp: now + i64::from(i) }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let (s, body, headers) = post(listen, V1, snappy(&req.encode_to_vec()));
        match s {
            204 => accepted += 10,
            503 => {
                refused = Some((body, headers));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no 503 within a minute");
    }
    let (body, headers) = refused.expect("a 503 within 200 requests");
    let retry = headers.get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After {retry:?}: {body}");
    assert!(body.contains("ingest queue"), "{body}");
    let m = relay.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_receiver_backpressure_rejections_total", &["receiver=\"http\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"http\""]), accepted as f64);
}
