//! The pipeline stages through the real daemon: gRPC in, file sink out, every
//! stage configured; the output file and the drop counters in /metrics are
//! checked, and so is conservation (received = fanned out + dropped).
mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use tsrelay::proto::v1::ingest_client::IngestClient;
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest};

const REGISTRY: &str = r#"
metrics:
  - key: network.port.octets.in
    name: port_in_octets_total
    type: counter
    unit: bytes
    labels: [device, port, cluster]
"#;

fn pipeline_config(grpc_port: u16) -> String {
    format!(
        r#"
[registry]
path = "metrics.yaml"

[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc_port}"

[sinks.out]
type = "file"
path = "out.lp"
batch = {{ max_samples = 1000, max_age_ms = 50 }}

[pipelines.main]
receivers = ["grpc"]
sinks = ["out"]

[pipelines.main.normalize]
static_labels = {{ cluster = "c1" }}

[[pipelines.main.normalize.relabel]]
action = "labeldrop"
regex = "tmp_.*"

[[pipelines.main.normalize.relabel]]
action = "drop"
source_labels = ["__name__"]
regex = "debug_.*"

[[pipelines.main.normalize.relabel]]
source_labels = ["host"]
regex = "(.+)"
target_label = "instance"
replacement = "$1:9100"

[pipelines.main.validate]
max_labels = 5
max_past = "7d"
max_future = "1h"

[pipelines.main.cardinality]
max_series_per_metric = 3
warn_ratio = 0.5

[pipelines.main.monotonic]
counter_reset = "adjust"
"#
    )
}

fn series(labels: &[(&str, &str)], kind: MetricType, points: &[(f64, i64)]) -> Series {
    Series {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: points.iter().map(|&(value, timestamp)| Sample { value, timestamp }).collect(),
        r#type: kind as i32,
        unit: String::new(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn send(grpc_port: u16, request: WriteRequest) -> tsrelay::proto::v1::WriteResponse {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut client = IngestClient::connect(format!("http://127.0.0.1:{grpc_port}")).await.expect("connect to gRPC");
        client.write(request).await.expect("gRPC write").into_inner()
    })
}

#[test]
fn every_stage_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.yaml"), REGISTRY).unwrap();
    let grpc_port = free_port();
    let t = Tsrelay::start(dir.path(), &pipeline_config(grpc_port));

    let t0 = now_ms() - 60_000;
    let unspecified = MetricType::Unspecified;
    let request = WriteRequest {
        id: 1,
        series: vec![
            // Registered counter (type from the registry): a reset the
            // `adjust` policy rebases, a duplicate and an out-of-order sample.
            series(
                &[("__name__", "port_in_octets_total"), ("device", "sw1"), ("port", "1")],
                unspecified,
                &[
                    (10.0, t0),
                    (20.0, t0 + 1000),
                    (5.0, t0 + 2000),
                    (7.0, t0 + 3000),
                    (8.0, t0 + 3000),
                    (9.0, t0 + 1000),
                ],
            ),
            // Registered metric, label outside its `labels`.
            series(
                &[("__name__", "port_in_octets_total"), ("device", "sw1"), ("vlan", "7")],
                unspecified,
                &[(1.0, t0)],
            ),
            // Registered counter sent as a gauge.
            series(
                &[("__name__", "port_in_octets_total"), ("device", "sw1"), ("port", "2")],
                MetricType::Gauge,
                &[(1.0, t0)],
            ),
            // Counters must be finite.
            series(
                &[("__name__", "port_in_octets_total"), ("device", "sw2"), ("port", "1")],
                unspecified,
                &[(f64::NAN, t0)],
            ),
            // Name sanitized, tmp_ label dropped, static label and instance added.
            series(&[("__name__", "node.load-1"), ("host", "a"), ("tmp_x", "1")], MetricType::Gauge, &[(1.5, t0)]),
            // Dropped by a relabel rule.
            series(&[("__name__", "debug_thing")], unspecified, &[(1.0, t0)]),
            // A label name twice.
            series(&[("__name__", "dup"), ("x", "1"), ("x", "2")], unspecified, &[(1.0, t0)]),
            // Too old.
            series(&[("__name__", "old_metric")], unspecified, &[(1.0, t0 - 30 * 86_400_000)]),
            // Six labels with the static one: over max_labels = 5.
            series(
                &[("__name__", "wide"), ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5")],
                unspecified,
                &[(1.0, t0)],
            ),
            // An id-like label: reported, not dropped.
            series(&[("__name__", "sessions"), ("session_id", "abc")], MetricType::Gauge, &[(1.0, t0)]),
        ]
        .into_iter()
        // Five series of one metric: only three fit.
        .chain(
            ["/a", "/b", "/c", "/d", "/e"]
                .map(|p| series(&[("__name__", "requests"), ("path", p)], MetricType::Counter, &[(1.0, t0)])),
        )
        .collect(),
    };
    let answer = send(grpc_port, request);
    // The checks that need no state run while decoding: the old and the wide series are
    // refused in the answer, by name and reason, and counted on the receiver.
    assert_eq!((answer.accepted, answer.rejected), (18, 2), "{answer:?}");
    assert!(answer.errors.iter().any(|e| e.ends_with("(timestamp_out_of_window)")), "{answer:?}");
    assert!(answer.errors.iter().any(|e| e.contains("6 labels") && e.ends_with("(too_many_labels)")), "{answer:?}");

    let out = dir.path().join("out.lp");
    let lines = wait_for(Duration::from_secs(20), "9 samples in the file sink", || {
        let lines = read_lp_file(&out);
        (lines.len() >= 9 && t.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"out\""]) >= 9.0).then_some(lines)
    });
    let ns = |ms: i64| ms * 1_000_000;
    let port: Vec<(f64, i64)> = lines
        .iter()
        .filter(|(s, _, _)| s == "port_in_octets_total,cluster=c1,device=sw1,port=1")
        .map(|(_, v, ts)| (*v, *ts))
        .collect();
    assert_eq!(port, vec![(10.0, ns(t0)), (20.0, ns(t0 + 1000)), (25.0, ns(t0 + 2000)), (27.0, ns(t0 + 3000))]);
    assert!(lines.contains(&("node_load_1,cluster=c1,host=a,instance=a:9100".to_string(), 1.5, ns(t0))), "{lines:?}");
    assert!(lines.iter().any(|(s, _, _)| s == "sessions,cluster=c1,session_id=abc"), "{lines:?}");
    assert_eq!(lines.iter().filter(|(s, _, _)| s.starts_with("requests,cluster=c1,path=/")).count(), 3);
    assert_eq!(lines.len(), 9, "{lines:?}");

    let m = t.metrics();
    let dropped = |stage: &str, reason: &str| {
        sum_metric(
            &m,
            "tsrelay_dropped_samples_total",
            &["pipeline=\"main\"", &format!("stage=\"{stage}\""), &format!("reason=\"{reason}\"")],
        )
    };
    let expected = [
        ("normalize", "relabel", 1.0),
        ("normalize", "invalid_name", 1.0),
        ("validate", "label_not_allowed", 1.0),
        ("validate", "type_conflict", 1.0),
        ("validate", "non_numeric", 1.0),
        ("cardinality", "cardinality", 2.0),
        ("monotonic", "duplicate", 1.0),
        ("monotonic", "out_of_order", 1.0),
    ];
    for (stage, reason, n) in expected {
        assert_eq!(dropped(stage, reason), n, "dropped{{stage={stage}, reason={reason}}}");
    }
    let all_dropped = sum_metric(&m, "tsrelay_dropped_samples_total", &["pipeline=\"main\""]);
    assert_eq!(all_dropped, 9.0);
    for reason in ["timestamp_out_of_window", "too_many_labels"] {
        let at_receiver = ["receiver=\"grpc\"", "stage=\"receiver\"", &format!("reason=\"{reason}\"")];
        assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &at_receiver), 1.0, "{reason}");
    }

    // Conservation: everything received was fanned out to the sink or dropped by a stage.
    let received = sum_metric(&m, "tsrelay_received_samples_total", &["receiver=\"grpc\""]);
    let fanned_out = sum_metric(&m, "tsrelay_sink_received_samples_total", &["sink=\"out\""]);
    assert_eq!(received, 18.0);
    assert_eq!(received, fanned_out + all_dropped);
    assert_eq!(sum_metric(&m, "tsrelay_sink_sent_samples_total", &["sink=\"out\""]), 9.0);

    // port{sw1,1}, node_load_1, sessions and three requests.
    assert_eq!(sum_metric(&m, "tsrelay_cardinality_series", &["pipeline=\"main\""]), 6.0);
    assert_eq!(sum_metric(&m, "tsrelay_cardinality_metrics_over_warn", &["pipeline=\"main\""]), 1.0);
    assert_eq!(
        sum_metric(
            &m,
            "tsrelay_cardinality_suspicious_labels",
            &["pipeline=\"main\"", "metric=\"sessions\"", "label=\"session_id\""]
        ),
        1.0
    );
    assert_eq!(sum_metric(&m, "tsrelay_monotonic_counter_resets_total", &["pipeline=\"main\""]), 1.0);

    // Known series keep flowing at the limit; new ones are still refused.
    let again = WriteRequest {
        id: 2,
        series: ["/a", "/b", "/c", "/d", "/e"]
            .map(|p| series(&[("__name__", "requests"), ("path", p)], MetricType::Counter, &[(2.0, t0 + 1000)]))
            .to_vec(),
    };
    assert_eq!(send(grpc_port, again).accepted, 5);
    wait_for(Duration::from_secs(20), "the second batch", || {
        (t.metric_sum("tsrelay_sink_sent_samples_total", &["sink=\"out\""]) >= 12.0).then_some(())
    });
    let m = t.metrics();
    assert_eq!(sum_metric(&m, "tsrelay_dropped_samples_total", &["pipeline=\"main\"", "reason=\"cardinality\""]), 4.0);
    assert_eq!(sum_metric(&m, "tsrelay_sink_sent_samples_total", &["sink=\"out\""]), 12.0);

    check_discovery_api(&t);
}

/// The discovery API answers from the series the cardinality stage tracks.
fn check_discovery_api(t: &Tsrelay) {
    let get = |path: &str| -> (u16, serde_json::Value) {
        let r = http().get(format!("http://{}{path}", t.admin)).send().expect("admin request");
        (r.status().as_u16(), r.json().expect("JSON answer"))
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v["data"].as_array().expect("data array").iter().map(|s| s.as_str().unwrap().to_string()).collect()
    };

    let (status, labels) = get("/api/v1/labels");
    assert_eq!((status, labels["status"].as_str()), (200, Some("success")));
    assert_eq!(strings(&labels), ["__name__", "cluster", "device", "host", "instance", "path", "port", "session_id"]);
    let (_, paths) = get("/api/v1/label/path/values");
    assert_eq!(strings(&paths).len(), 3, "{paths}");
    let (_, names) = get("/api/v1/label/__name__/values?match[]=%7Bcluster%3D%22c1%22%7D");
    assert_eq!(strings(&names), ["node_load_1", "port_in_octets_total", "requests", "sessions"]);

    let (_, port) = get("/api/v1/series?match[]=port_in_octets_total");
    assert_eq!(
        port["data"],
        serde_json::json!([{"__name__": "port_in_octets_total", "cluster": "c1", "device": "sw1", "port": "1"}])
    );
    let (_, some) = get("/api/v1/series?match[]=%7B__name__%3D~%22requests%7Csessions%22%7D&limit=2");
    assert_eq!(some["data"].as_array().unwrap().len(), 2);
    assert!(some["warnings"][0].as_str().unwrap().contains("truncated"), "{some}");
    let (status, error) = get("/api/v1/series");
    assert_eq!((status, error["status"].as_str(), error["errorType"].as_str()), (400, Some("error"), Some("bad_data")));

    let (_, metrics) = get("/api/v1/metrics");
    assert_eq!(
        metrics["data"],
        serde_json::json!([{
            "key": "network.port.octets.in", "name": "port_in_octets_total", "type": "counter",
            "unit": "bytes", "help": null, "series": 1
        }])
    );
}

fn validate(dir: &std::path::Path, config: &str) -> (bool, String) {
    let path = dir.join("tsrelay.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay")).arg("validate").arg("--config").arg(&path).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn validate_reports_registry_errors_with_file_and_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_config(free_port());
    std::fs::write(dir.path().join("metrics.yaml"), REGISTRY).unwrap();
    let (ok, stderr) = validate(dir.path(), &config);
    assert!(ok, "{stderr}");

    let bad = format!("{REGISTRY}  - key: network.port.octets.in\n    name: other_total\n    type: counter\n");
    std::fs::write(dir.path().join("metrics.yaml"), bad).unwrap();
    let (ok, stderr) = validate(dir.path(), &config);
    assert!(!ok);
    assert!(
        stderr.contains("metrics.yaml") && stderr.contains("entry 1") && stderr.contains("network.port.octets.in"),
        "{stderr}"
    );

    std::fs::write(dir.path().join("metrics.yaml"), "metrics:\n  - key: a\n    name: a\n    type: meter\n").unwrap();
    let (ok, stderr) = validate(dir.path(), &config);
    assert!(!ok);
    assert!(stderr.contains("metrics.yaml") && stderr.contains("meter") && stderr.contains("line"), "{stderr}");

    std::fs::remove_file(dir.path().join("metrics.yaml")).unwrap();
    let (ok, stderr) = validate(dir.path(), &config);
    assert!(!ok);
    assert!(stderr.contains("cannot read metric registry") && stderr.contains("metrics.yaml"), "{stderr}");
}

#[test]
fn validate_reports_stage_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.yaml"), REGISTRY).unwrap();
    let base = pipeline_config(free_port());

    let bad_regex = base.replace("regex = \"tmp_.*\"", "regex = \"tmp_(\"");
    let (ok, stderr) = validate(dir.path(), &bad_regex);
    assert!(!ok);
    assert!(stderr.contains("invalid relabel regex") && stderr.contains("tmp_("), "{stderr}");

    let no_target = base.replace("target_label = \"instance\"\n", "");
    let (ok, stderr) = validate(dir.path(), &no_target);
    assert!(!ok);
    assert!(stderr.contains("pipelines.main: normalize.relabel[2]: action replace needs target_label"), "{stderr}");

    let unknown_key = base.replace("max_series_per_metric = 3", "max_series_per_metrics = 3");
    let (ok, stderr) = validate(dir.path(), &unknown_key);
    assert!(!ok);
    assert!(stderr.contains("max_series_per_metrics"), "{stderr}");
}

#[test]
fn memory_limit_refuses_configs_that_cannot_fit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metrics.yaml"), REGISTRY).unwrap();
    // 256 MiB: unset bounds are derived to fit, but bounds set explicitly
    // are kept — a million series and a 5 M-sample queue cannot fit and are
    // refused by name; 10 000 series and a 10 000-sample queue can, with the
    // channels and the baseline the start-up check also counts.
    let config = format!("[limits]\nmemory_bytes = 268435456\n{}", pipeline_config(free_port()));
    let too_big = config
        .replace("max_series_per_metric = 3", "max_series_per_metric = 3\nmax_series = 1000000")
        .replace("path = \"out.lp\"", "path = \"out.lp\"\nqueue = { max_samples = 5000000 }");
    let (ok, stderr) = validate(dir.path(), &too_big);
    assert!(!ok);
    assert!(
        stderr.contains("limits.memory_bytes")
            && stderr.contains("sinks.out queue")
            && stderr.contains("pipelines.main"),
        "{stderr}"
    );
    // Every bound that counts, lowered.
    let fits = config
        .replace(
            "max_series_per_metric = 3",
            "max_series_per_metric = 3\nmax_series = 10000\nmax_metrics = 1000\nmax_label_pairs = 10000",
        )
        .replace("max_future = \"1h\"", "max_future = \"1h\"\nmax_typed_metrics = 1000")
        .replace("sinks = [\"out\"]\n", "sinks = [\"out\"]\ningest_queue_batches = 4\n")
        .replace("path = \"out.lp\"", "path = \"out.lp\"\nqueue = { max_samples = 10000 }");
    let (ok, stderr) = validate(dir.path(), &fits);
    assert!(ok, "{stderr}");
}
