//! The aggregate stage end to end: samples over HTTP (NDJSON) into tsrelay,
//! rollups delivered by remote-write into a real Prometheus and read back
//! with its HTTP API, checked exactly against a reference computed here.
//! Covers counter resets, late samples within and past `lag`, `by` and
//! `without`, `keep_input = false`, and a restart (open buckets are flushed
//! on shutdown). Also: the shipped rollup example passes `tsrelay validate`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::prometheus::Prometheus;
use common::{Tsrelay, free_port, http, loopback, wait_for};

const INTERVAL_MS: i64 = 10_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn bucket_end(ts: i64) -> i64 {
    let rem = ts.rem_euclid(INTERVAL_MS);
    if rem == 0 { ts } else { ts + INTERVAL_MS - rem }
}

/// One input sample: name, labels, value, timestamp (ms), counter or not.
#[derive(Clone, Debug)]
struct In {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    value: f64,
    ts: i64,
    counter: bool,
}

fn s(name: &'static str, labels: &[(&'static str, &'static str)], value: f64, ts: i64) -> In {
    In { name, labels: labels.to_vec(), value, ts, counter: name.ends_with("_total") }
}

fn send(addr: std::net::SocketAddr, samples: &[In]) {
    let body: String = samples
        .iter()
        .map(|x| {
            let labels: serde_json::Map<String, serde_json::Value> =
                x.labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect();
            let kind = if x.counter { "counter" } else { "gauge" };
            format!(
                "{}\n",
                serde_json::json!({"name": x.name, "labels": labels, "value": x.value, "timestamp": x.ts, "type": kind})
            )
        })
        .collect();
    let answer = http().post(format!("http://{addr}/api/v1/ingest")).body(body).send().unwrap();
    assert_eq!(answer.status(), 204, "{:?}", answer.text());
}

/// The reference: a group's outputs computed from its samples in time order.
/// `prev` holds each counter series' value before the bucket (None: first seen).
fn reference(samples: &[&In], prev: &BTreeMap<String, f64>) -> BTreeMap<&'static str, f64> {
    let values: Vec<f64> = samples.iter().map(|x| x.value).collect();
    let n = values.len() as f64;
    let sum: f64 = values.iter().sum();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |phi: f64| {
        let rank = phi * (sorted.len() - 1) as f64;
        let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
        let w = rank - lo as f64;
        if lo == hi { sorted[lo] } else { sorted[lo] * (1.0 - w) + sorted[hi] * w }
    };
    let mut increase = 0.0;
    let mut last_by_series: BTreeMap<String, f64> = prev.clone();
    let mut ordered: Vec<&&In> = samples.iter().collect();
    ordered.sort_by_key(|x| x.ts);
    for x in ordered {
        let key = format!("{:?}", x.labels);
        if let Some(p) = last_by_series.get(&key) {
            increase += if x.value >= *p { x.value - p } else { x.value };
        }
        last_by_series.insert(key, x.value);
    }
    let newest = samples.iter().max_by_key(|x| x.ts).unwrap().value;
    BTreeMap::from([
        ("count", n),
        ("sum", sum),
        ("min", sorted[0]),
        ("max", *sorted.last().unwrap()),
        ("avg", sum / n),
        ("last", newest),
        ("increase", increase),
        ("rate", increase / (INTERVAL_MS as f64 / 1000.0)),
        ("q0.5", q(0.5)),
        ("q0.9", q(0.9)),
    ])
}

fn config(http_addr: std::net::SocketAddr, prom: &Prometheus) -> String {
    format!(
        r#"
[receivers.http]
type = "http"
listen = "{http_addr}"

[sinks.prom]
type = "prometheus_remote_write"
url = "{url}"
batch = {{ max_age_ms = 20 }}

[pipelines.main]
receivers = ["http"]
sinks = ["prom"]

[[pipelines.main.aggregate]]
name = "requests"
match = 'req_total{{job="api"}}'
interval = "10s"
lag = "3s"
by = ["job"]
outputs = ["increase", "rate", "count"]

[[pipelines.main.aggregate]]
name = "temps"
match = '{{__name__="temp"}}'
interval = "10s"
lag = "3s"
without = ["sensor"]
outputs = ["count", "sum", "min", "max", "avg", "last", "quantiles(0.5, 0.9)"]

[[pipelines.main.aggregate]]
name = "consumed"
match = "scratch"
interval = "10s"
lag = "3s"
keep_input = false
outputs = ["sum"]
"#,
        url = prom.write_url()
    )
}

/// Waits until the wall clock is at least `t` (ms): buckets close by the clock.
fn wait_until(t: i64) {
    wait_for(Duration::from_secs(30), &format!("wall clock at {t}"), || (now_ms() >= t).then_some(()));
}

/// The value Prometheus holds for `promql` at exactly `t` (ms).
fn value_at(prom: &Prometheus, promql: &str, t: i64) -> Option<f64> {
    prom.query(promql, Some(t)).first().map(|p| p.value.parse().unwrap()).filter(|_| {
        // Only a sample stamped exactly at t: not one found by the look-back.
        prom.query(&format!("timestamp({promql})"), Some(t))
            .first()
            .is_some_and(|p| p.value.parse::<f64>().unwrap() * 1000.0 == t as f64)
    })
}

/// A bucket whose end is at least `room` ms away.
fn next_roomy_bucket(room: i64) -> i64 {
    let end = bucket_end(now_ms() + 1);
    if end - now_ms() >= room { end } else { end + INTERVAL_MS }
}

#[test]
fn rollups_land_in_prometheus_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let http_addr = loopback(free_port());
    let mut relay = Tsrelay::start(dir.path(), &config(http_addr, &prom));

    // Counter baselines in the bucket before: the first sample of a series adds nothing.
    // Sent just before `start`, so a slow machine can't push them past the
    // previous bucket's lag (they would be too late and carry nothing).
    let end = next_roomy_bucket(10_500);
    let start = end - INTERVAL_MS;
    wait_until(start - 400);
    let before = start; // the previous bucket's end: a sample 0.4 s ahead of the clock
    let api = |inst: &'static str| vec![("job", "api"), ("instance", inst)];
    let baselines = vec![s("req_total", &api("i1"), 100.0, before), s("req_total", &api("i2"), 5.0, before)];
    send(http_addr, &baselines);

    // The bucket (start, end]: i1 resets (100 → 130 → 4 → 9), i2 grows; a series of
    // another job is not matched. Temperatures in two rooms, three sensors.
    let t = |ms: i64| start + ms;
    let mut on_time = vec![
        s("req_total", &api("i1"), 130.0, t(1)),
        s("req_total", &api("i2"), 7.5, t(2)),
        s("req_total", &api("i1"), 4.0, t(500)),
        s("req_total", &[("job", "web"), ("instance", "i1")], 1.0, t(600)),
        s("temp", &[("room", "a"), ("sensor", "s1")], 20.5, t(10)),
        s("temp", &[("room", "a"), ("sensor", "s2")], 22.0, t(20)),
        s("temp", &[("room", "a"), ("sensor", "s1")], 21.25, t(700)),
        s("temp", &[("room", "b"), ("sensor", "s3")], -3.0, t(30)),
        s("scratch", &[("k", "v")], 2.0, t(40)),
        s("scratch", &[("k", "v")], 3.0, t(800)),
    ];
    send(http_addr, &on_time);
    // Late but within lag: stamped at the bucket's very end, sent after it.
    wait_until(end + 300);
    let late = vec![s("req_total", &api("i1"), 9.0, end), s("temp", &[("room", "a"), ("sensor", "s2")], 19.0, end)];
    send(http_addr, &late);
    on_time.extend(late);

    // The bucket closes at end + lag; its rollups reach Prometheus.
    let requests_increase = r#"req_total:10s_increase{job="api"}"#;
    wait_for(Duration::from_secs(30), "the first bucket's rollups in Prometheus", || {
        value_at(&prom, requests_increase, end).map(|_| ())
    });
    // Too late now: it is not folded in (the raw sample is still delivered).
    let too_late = s("temp", &[("room", "b"), ("sensor", "s3")], 1000.0, end - 1);
    send(http_addr, std::slice::from_ref(&too_late));

    // Reference: group the accepted samples as each rule does.
    let mut prev = BTreeMap::new();
    for b in &baselines {
        prev.insert(format!("{:?}", b.labels), b.value);
    }
    let api_samples: Vec<&In> =
        on_time.iter().filter(|x| x.name == "req_total" && x.labels.contains(&("job", "api"))).collect();
    let r = reference(&api_samples, &prev);
    // By hand, as a check on the reference: i1 30 + 4 + 5, i2 2.5.
    assert_eq!(r["increase"], 41.5);
    let got = |q: &str| value_at(&prom, q, end).unwrap_or_else(|| panic!("{q} missing at {end}"));
    assert_eq!(got(requests_increase), r["increase"]);
    assert_eq!(got(r#"req_total:10s_rate{job="api"}"#), r["rate"]);
    assert_eq!(got(r#"req_total:10s_count{job="api"}"#), r["count"]);
    assert_eq!(
        prom.query(r#"count({__name__=~"req_total:10s_.*"})"#, Some(end)).first().map(|p| p.value.clone()),
        Some("3".into()),
        "`by = [job]`: one output series per output, the web job unmatched"
    );
    for room in ["a", "b"] {
        let samples: Vec<&In> =
            on_time.iter().filter(|x| x.name == "temp" && x.labels.contains(&("room", room))).collect();
        let r = reference(&samples, &BTreeMap::new());
        for out in ["count", "sum", "min", "max", "avg", "last"] {
            let q = format!("temp:10s_{out}{{room=\"{room}\"}}");
            assert_eq!(got(&q), r[out], "{q}");
        }
        for phi in ["0.5", "0.9"] {
            let q = format!("temp:10s_quantiles{{room=\"{room}\",quantile=\"{phi}\"}}");
            assert_eq!(got(&q), r[format!("q{phi}").as_str()], "{q}");
        }
        // `without = [sensor]`: the sensor label is gone from the outputs.
        let series = prom.query(&format!("temp:10s_count{{room=\"{room}\"}}"), Some(end));
        assert_eq!(series.len(), 1);
        assert!(!series[0].labels.contains_key("sensor"), "{series:?}");
    }
    // keep_input = false: only the rollup left; the inputs are counted as aggregated.
    assert_eq!(got(r#"scratch:10s_sum{k="v"}"#), 5.0);
    assert!(prom.query("scratch", Some(t(900))).is_empty(), "consumed input reached Prometheus");
    // keep_input = true: the raw samples are there, the too-late one too.
    assert_eq!(value_at(&prom, r#"temp{room="a",sensor="s1"}"#, t(700)), Some(21.25));
    wait_for(Duration::from_secs(30), "the too-late sample delivered raw", || {
        value_at(&prom, r#"temp{room="b",sensor="s3"}"#, end - 1).filter(|v| *v == 1000.0)
    });
    assert_eq!(got(r#"temp:10s_max{room="b"}"#), -3.0, "a too-late sample changed a closed bucket");

    // Accounting: everything fanned out reached Prometheus (received = sent
    // here, nothing dropped), and fanned out = received − dropped + rollups.
    let m = wait_for(Duration::from_secs(30), "sink accounting settled", || {
        let m = relay.metrics();
        let metric = |name: &str, labels: &[&str]| common::sum_metric(&m, name, labels);
        let received = metric("tsrelay_sink_received_samples_total", &["sink=\"prom\""]);
        let sent = metric("tsrelay_sink_sent_samples_total", &["sink=\"prom\""]);
        let outputs = metric("tsrelay_aggregate_output_samples_total", &[]);
        let inputs = metric("tsrelay_received_samples_total", &[]);
        (received == inputs - 2.0 + outputs && sent == received).then_some(m)
    });
    let metric = |name: &str, labels: &[&str]| common::sum_metric(&m, name, labels);
    assert_eq!(metric("tsrelay_aggregate_skipped_samples_total", &["rule=\"temps\"", "reason=\"too_late\""]), 1.0);
    assert_eq!(
        metric("tsrelay_dropped_samples_total", &["stage=\"aggregate\"", "reason=\"aggregated\""]),
        2.0,
        "two scratch samples consumed"
    );
    assert_eq!(metric("tsrelay_aggregate_input_samples_total", &["rule=\"requests\""]), 6.0);
    assert!(
        m.keys().any(|k| k.starts_with("tsrelay_aggregate_series{") && k.contains("rule=\"temps\"")),
        "state gauge"
    );
    assert!(m.keys().any(|k| k.starts_with("tsrelay_aggregate_limit_bytes{")), "limit gauge");

    // Restart: samples of a bucket that is still open when the daemon stops
    // are emitted on shutdown (flush_on_shutdown), stamped at the bucket's end.
    let end2 = next_roomy_bucket(5_000);
    wait_until(end2 - INTERVAL_MS + 1);
    let open = vec![
        s("temp", &[("room", "c"), ("sensor", "s9")], 1.5, end2 - INTERVAL_MS + 1),
        s("temp", &[("room", "c"), ("sensor", "s8")], 2.5, end2 - INTERVAL_MS + 2),
    ];
    send(http_addr, &open);
    wait_for(Duration::from_secs(10), "the open bucket's samples folded in", || {
        (relay.metric_sum("tsrelay_aggregate_input_samples_total", &["rule=\"temps\""]) >= 7.0).then_some(())
    });
    assert!(now_ms() < end2, "the bucket closed before the shutdown: the machine is too slow for this test");
    assert!(relay.process.terminate(Duration::from_secs(30)), "tsrelay did not stop");
    assert_eq!(value_at(&prom, r#"temp:10s_sum{room="c"}"#, end2), Some(4.0), "open bucket not flushed on shutdown");
    assert_eq!(value_at(&prom, r#"temp:10s_count{room="c"}"#, end2), Some(2.0));
    // The daemon starts again with the same config and aggregates afresh.
    let (config_path, admin) = (relay.config_path.clone(), relay.admin);
    drop(relay);
    let relay = Tsrelay::start_with_file(dir.path(), &config_path, admin);
    let m = wait_for(Duration::from_secs(10), "the restarted daemon's aggregate gauges", || {
        let m = relay.metrics();
        m.keys().any(|k| k.starts_with("tsrelay_aggregate_series{") && k.contains("rule=\"temps\"")).then_some(m)
    });
    assert_eq!(common::sum_metric(&m, "tsrelay_aggregate_series", &["rule=\"temps\""]), 0.0, "state starts empty");
}

#[test]
fn the_rollup_example_validates() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rollups.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("pipelines.main.aggregate[0] (node_hourly: max_series 50000)"), "{stdout}");
}

#[test]
fn bad_rules_are_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[receivers.http]
type = "http"
[sinks.out]
type = "blackhole"
[pipelines.main]
receivers = ["http"]
sinks = ["out"]
[[pipelines.main.aggregate]]
match = 'up{job=}'
interval = "1m"
outputs = ["sum"]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tsrelay")).args(["validate", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pipelines.main: aggregate[0] (up{job=}:1m): match: invalid selector"), "{stderr}");
}
