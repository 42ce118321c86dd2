//! The OTLP metrics receiver with a real sender: the OpenTelemetry Python SDK
//! and its OTLP gRPC and HTTP exporters (pip `opentelemetry-sdk
//! opentelemetry-exporter-otlp`), through tsrelay into a real Prometheus,
//! checked with queries. Also OTLP/JSON, partial success, delta temporality
//! and the bad-input answers.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::*;

const INSTALL_OTEL: &str = "python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp";

/// tsrelay with HTTP and gRPC receivers (both speak OTLP) → remote-write to `url`.
fn start_relay(dir: &Path, url: &str, otlp_extra: &str) -> (Tsrelay, SocketAddr, SocketAddr) {
    let http_addr = loopback(free_port());
    let grpc_addr = loopback(free_port());
    let config = format!(
        r#"
shutdown_timeout = "2s"

[limits]
memory_bytes = 2147483648

[receivers.http]
type = "http"
listen = "{http_addr}"

[receivers.http.otlp]
{otlp_extra}

[receivers.grpc]
type = "grpc"
listen = "{grpc_addr}"

[receivers.grpc.otlp]
{otlp_extra}

[pipelines.main]
receivers = ["http", "grpc"]
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
    (Tsrelay::start(dir, &config), http_addr, grpc_addr)
}

fn send_with_sdk(protocol: &str, endpoint: &str, service: &str, delta: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/otel_send.py");
    let probe = Command::new("python3").args(["-c", "import opentelemetry.exporter.otlp, opentelemetry.sdk"]).output();
    assert!(
        probe.as_ref().map(|o| o.status.success()).unwrap_or(false),
        "the OpenTelemetry SDK is missing; install it with: {INSTALL_OTEL}"
    );
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args([protocol, endpoint, service]);
    if delta {
        cmd.arg("delta");
    }
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("sent"),
        "otel_send.py {protocol} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until `promql` answers `want` in `p`.
fn wait_value(p: &Prometheus, promql: &str, want: f64) {
    let mut last = f64::NAN;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        last = p.query_number(promql, None);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{promql} = {last}, expected {want}");
}

/// What otel_send.py sent, as Prometheus' OTLP translation names it.
fn check_translation(p: &Prometheus, job: &str) {
    let sel = |extra: &str| format!("{{job=\"{job}\",instance=\"i1\"{extra}}}");
    wait_value(p, &format!("app_requests_total{}", sel(",route=\"/a\"")), 9.0);
    wait_value(p, &format!("app_requests_total{}", sel(",route=\"/b\"")), 2.0);
    wait_value(p, &format!("app_queue_depth{}", sel("")), 3.0);
    wait_value(p, &format!("app_temperature_celsius{}", sel(",room=\"x\"")), 21.5);
    wait_value(p, &format!("app_latency_seconds_count{}", sel("")), 4.0);
    wait_value(p, &format!("app_latency_seconds_sum{}", sel("")), 9.4);
    wait_value(p, &format!("app_latency_seconds_bucket{}", sel(",le=\"0\"")), 0.0);
    wait_value(p, &format!("app_latency_seconds_bucket{}", sel(",le=\"5\"")), 3.0);
    wait_value(p, &format!("app_latency_seconds_bucket{}", sel(",le=\"10\"")), 4.0);
    wait_value(p, &format!("app_latency_seconds_bucket{}", sel(",le=\"+Inf\"")), 4.0);
    wait_value(p, &format!("target_info{}", sel(",host_name=\"h1\",telemetry_sdk_language=\"python\"")), 1.0);
    // Nothing else under these names (no stray series from the translation).
    wait_value(p, &format!("count(app_requests_total{})", sel("")), 2.0);
    wait_value(p, &format!("count(app_latency_seconds_bucket{})", sel("")), 16.0);
}

#[test]
fn opentelemetry_sdk_over_grpc_and_http_lands_in_prometheus() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (relay, http_addr, grpc_addr) = start_relay(dir.path(), &backend.write_url(), "");

    send_with_sdk("grpc", &format!("http://{grpc_addr}"), "via-grpc", false);
    send_with_sdk("http", &format!("http://{http_addr}/v1/metrics"), "via-http", false);
    // Delta temporality becomes running totals: the same answers.
    send_with_sdk("http", &format!("http://{http_addr}/v1/metrics"), "via-delta", true);
    check_translation(&backend, "via-grpc");
    check_translation(&backend, "via-http");
    check_translation(&backend, "via-delta");
    assert_eq!(relay.metric_sum("tsrelay_dropped_samples_total", &["stage=\"receiver\""]), 0.0);
}

fn post(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let resp = http()
        .post(format!("http://{addr}/v1/metrics"))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .expect("POST /v1/metrics");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

#[test]
fn otlp_json_partial_success_and_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = Prometheus::start(&dir.path().join("backend"));
    let (relay, http_addr, _) = start_relay(dir.path(), &backend.write_url(), "delta = \"reject\"");
    let now_ns = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()
        as u64)
        * 1_000_000;
    // OTLP/JSON as the specification spells it: camelCase, 64-bit integers as
    // strings, enums as numbers. One gauge, one exponential histogram (not
    // supported), one delta sum (refused by this configuration).
    let body = serde_json::json!({
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json"}}]},
            "scopeMetrics": [{
                "scope": {"name": "manual"},
                "metrics": [
                    {"name": "json.gauge", "unit": "By", "gauge": {"dataPoints": [
                        {"asDouble": 12.5, "timeUnixNano": now_ns.to_string(),
                         "attributes": [{"key": "k", "value": {"intValue": "7"}}]}]}},
                    {"name": "json.exp", "exponentialHistogram": {"aggregationTemporality": 2, "dataPoints": [
                        {"timeUnixNano": now_ns.to_string(), "count": "1", "scale": 0}]}},
                    {"name": "json.delta", "sum": {"aggregationTemporality": 1, "isMonotonic": true, "dataPoints": [
                        {"asInt": "3", "timeUnixNano": now_ns.to_string()}]}}
                ]
            }]
        }]
    });
    let (s, text) = post(http_addr, "application/json", body.to_string().into_bytes());
    assert_eq!(s, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).expect("JSON answer");
    assert_eq!(answer["partialSuccess"]["rejectedDataPoints"], "2", "{answer}");
    let message = answer["partialSuccess"]["errorMessage"].as_str().unwrap_or("");
    assert!(message.contains("json.exp") && message.contains("exponential"), "{message}");
    assert!(message.contains("json.delta") && message.contains("delta"), "{message}");
    wait_value(&backend, "json_gauge_bytes{job=\"json\",k=\"7\"}", 12.5);
    let m = relay.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["reason=\"unsupported_histogram\""]), 1.0);
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["reason=\"delta\""]), 1.0);

    let (s, text) = post(http_addr, "application/x-protobuf", vec![0x0a, 0xff, 0xff, 0x0f]);
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("ExportMetricsServiceRequest"), "{text}");
    let (s, text) = post(http_addr, "application/json", b"{\"resourceMetrics\": 5}".to_vec());
    assert_eq!(s, 400, "{text}");
    assert!(text.contains("JSON"), "{text}");
    let (s, text) = post(http_addr, "text/plain", b"x".to_vec());
    assert_eq!(s, 415, "{text}");
    // Over the body limit once unpacked: a 40 MiB body sent gzipped (~40 KB on
    // the wire), so the 413 cannot be lost to a broken pipe while the client
    // would still be writing a 40 MiB body.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vec![0u8; 40 << 20]).expect("gzip");
    let resp = http()
        .post(format!("http://{http_addr}/v1/metrics"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .expect("POST /v1/metrics, gzipped");
    assert_eq!(resp.status().as_u16(), 413, "{:?}", resp.text());
}

/// Backpressure behind a backend that never answers (a `when_full = "block"`
/// queue, one-batch ingest queue): OTLP/gRPC answers `UNAVAILABLE` (OTLP's
/// retryable code) with `retry-after-ms`, checked with grpcio and the stubs of
/// `opentelemetry-proto`; OTLP/HTTP answers `503` with `Retry-After`. Refused
/// points never enter the pipeline.
#[test]
fn a_full_queue_answers_unavailable_over_grpc_and_503_over_http() {
    use common::fault_http::{FaultServer, Reply};
    let dir = tempfile::tempdir().expect("temp dir");
    let backend = FaultServer::start(Vec::new(), Reply::Hang);
    let (http_addr, grpc_addr) = (loopback(free_port()), loopback(free_port()));
    let config = format!(
        r#"
shutdown_timeout = "1s"

[receivers.http]
type = "http"
listen = "{http_addr}"
max_wait_ms = 100

[receivers.grpc]
type = "grpc"
listen = "{grpc_addr}"
max_wait_ms = 100

{stalled}"#,
        stalled =
            common::fault_http::stalled_pipeline_toml(&["http", "grpc"], &backend.url("/api/v1/write"), 20, 10, "30s")
    );
    let relay = Tsrelay::start(dir.path(), &config);
    // 40 calls of 10 points: the stalled pipeline holds far fewer.
    let answer = grpcio::otlp_export(&grpc_addr.to_string(), &["--points", "10", "--repeat", "40"]);
    let codes: Vec<&str> = answer["codes"].as_array().expect("codes").iter().filter_map(|c| c.as_str()).collect();
    assert!(codes.contains(&"UNAVAILABLE"), "{answer}");
    assert!(codes.iter().all(|c| *c == "OK" || *c == "UNAVAILABLE"), "{answer}");
    assert!(
        answer["metadata"]["retry-after-ms"].as_str().is_some_and(|v| v.parse::<u64>().unwrap() >= 100),
        "{answer}"
    );
    let ok_calls = codes.iter().filter(|c| **c == "OK").count();
    let m = relay.metrics();
    // Each accepted call brought its 10 points (and a target_info sample if the translation adds one).
    let received = sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"grpc\""]);
    assert!(
        received >= (ok_calls * 10) as f64 && received <= (ok_calls * 11) as f64,
        "{received} for {ok_calls} calls"
    );
    // OTLP/HTTP into the same full pipeline: 503 with Retry-After.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    let body = serde_json::json!({"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "otlp_full", "gauge": {"dataPoints": [{"asDouble": 1.0, "timeUnixNano": now.to_string()}]}}]}]}]});
    let resp = http()
        .post(format!("http://{http_addr}/v1/metrics"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .expect("POST /v1/metrics");
    assert_eq!(resp.status().as_u16(), 503);
    let retry = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(retry.parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After {retry:?}");
    assert_eq!(relay.metric_sum("tsrelay_received_samples_total", &["receiver=\"http\""]), 0.0);
}
