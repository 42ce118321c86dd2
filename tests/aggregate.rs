//! The aggregate stage end to end: samples over HTTP (NDJSON) into tsrelay,
//! rollups delivered by remote-write into a real Prometheus and read back
//! with its HTTP API, checked exactly against a reference computed here.
//! Covers counter resets, late samples within and past `lag`, `by` and
//! `without`, `keep_input = false`, and restarts (open buckets are flushed
//! on shutdown; a bucket emitted before a restart is never emitted again).
//! Also: the shipped rollup example passes `tsrelay validate`.

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

/// Every `(timestamp ms, value)` Prometheus holds for `selector` in `(t − range, t]`.
fn samples_in(prom: &Prometheus, selector: &str, range: &str, t: i64) -> Vec<(i64, f64)> {
    let answer: serde_json::Value = http()
        .get(format!("http://127.0.0.1:{}/api/v1/query", prom.port))
        .query(&[("query", format!("{selector}[{range}]")), ("time", format!("{:.3}", t as f64 / 1000.0))])
        .send()
        .and_then(|r| r.json())
        .unwrap();
    assert_eq!(answer["status"], "success", "{answer}");
    let series = answer["data"]["result"].as_array().cloned().unwrap_or_default();
    assert!(series.len() <= 1, "{selector}: {answer}");
    series
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().parse().unwrap()))
        .collect()
}

/// A bucket emitted before a restart (here: on shutdown, with `flush_on_shutdown`)
/// is never emitted again: the restarted daemon reads the rule's watermark from
/// `data_dir` and counts replayed and late samples for it as `too_late`, even
/// though they are well within `lag`. Checked in a real Prometheus and in the
/// file sink's output, which keeps every line it was given.
#[test]
fn a_restart_never_emits_a_bucket_twice() {
    const STEP: i64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let http_addr = loopback(free_port());
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "{http_addr}"

[sinks.prom]
type = "prometheus_remote_write"
url = "{url}"
batch = {{ max_age_ms = 20 }}

[sinks.out]
type = "file"
path = "{{dir}}/out.lp"

[pipelines.main]
receivers = ["http"]
sinks = ["prom", "out"]

[[pipelines.main.aggregate]]
name = "temps"
match = "temp"
interval = "2s"
lag = "1m"          # nothing closes by the clock in this test: only the watermark can refuse
by = ["room"]
outputs = ["sum", "count"]
"#,
        url = prom.write_url()
    );
    let mut relay = Tsrelay::start(dir.path(), &config);
    let step_end = |ts: i64| ts + (STEP - ts.rem_euclid(STEP)) % STEP;
    // Two buckets, both still open (lag): `prev` and `end`, the one the clock is in.
    let end = step_end(now_ms());
    let prev = end - STEP;
    let a = |sensor: &'static str| vec![("room", "a"), ("sensor", sensor)];
    let first = vec![
        s("temp", &a("s1"), 1.5, prev - 5),
        s("temp", &a("s1"), 2.0, end - 1999),
        s("temp", &a("s2"), 4.0, end - 1998),
    ];
    send(http_addr, &first);
    wait_for(Duration::from_secs(10), "the first run's samples folded in", || {
        (relay.metric_sum("tsrelay_aggregate_input_samples_total", &["rule=\"temps\""]) == 3.0).then_some(())
    });
    // Stop: both open buckets are emitted on shutdown.
    assert!(relay.process.terminate(Duration::from_secs(30)), "tsrelay did not stop");
    assert_eq!(value_at(&prom, r#"temp:2s_sum{room="a"}"#, prev), Some(1.5));
    assert_eq!(value_at(&prom, r#"temp:2s_sum{room="a"}"#, end), Some(6.0));
    let watermark = std::fs::read_to_string(dir.path().join("data/aggregate/main.json")).unwrap();
    assert!(watermark.contains(&format!("\"temps\":{end}")), "{watermark}");

    // Restart; the first run's samples come again (a client retry, a Kafka
    // replay), a late one for `end`, one of a room never emitted for `end`,
    // and two for the next bucket.
    let (config_path, admin) = (relay.config_path.clone(), relay.admin);
    drop(relay);
    let mut relay = Tsrelay::start_with_file(dir.path(), &config_path, admin);
    let next = end + STEP;
    let mut second = first.clone();
    second.extend([
        s("temp", &a("s2"), 8.0, end - 1000),
        s("temp", &[("room", "b"), ("sensor", "s3")], -1.0, end - 500),
        s("temp", &a("s1"), 3.0, end + 1),
        s("temp", &a("s2"), 5.0, end + 2),
    ]);
    send(http_addr, &second);
    let m = wait_for(Duration::from_secs(10), "the second run's samples folded in or refused", || {
        let m = relay.metrics();
        let folded = common::sum_metric(&m, "tsrelay_aggregate_input_samples_total", &["rule=\"temps\""]);
        let refused = common::sum_metric(
            &m,
            "tsrelay_aggregate_skipped_samples_total",
            &["rule=\"temps\"", "reason=\"too_late\""],
        );
        (folded + refused == 7.0).then_some(m)
    });
    let metric = |name: &str, labels: &[&str]| common::sum_metric(&m, name, labels);
    assert_eq!(metric("tsrelay_aggregate_input_samples_total", &["rule=\"temps\""]), 2.0, "only the next bucket's");
    assert_eq!(metric("tsrelay_aggregate_skipped_samples_total", &["rule=\"temps\"", "reason=\"too_late\""]), 5.0);
    assert_eq!(metric("tsrelay_aggregate_emitted_until_timestamp_seconds", &["rule=\"temps\""]), end as f64 / 1000.0);
    assert!(now_ms() < end + 60_000, "the replays were within lag: only the watermark refused them");
    assert!(relay.process.terminate(Duration::from_secs(30)), "tsrelay did not stop");

    // Exactly one value per bucket, the first run's for `prev` and `end`.
    let expected_sum = vec![(prev, 1.5), (end, 6.0), (next, 8.0)];
    let expected_count = vec![(prev, 1.0), (end, 2.0), (next, 2.0)];
    assert_eq!(samples_in(&prom, r#"temp:2s_sum{room="a"}"#, "1m", next), expected_sum);
    assert_eq!(samples_in(&prom, r#"temp:2s_count{room="a"}"#, "1m", next), expected_count);
    assert!(samples_in(&prom, r#"temp:2s_sum{room="b"}"#, "1m", next).is_empty(), "a closed bucket re-opened");
    let lines = common::read_lp_file(&dir.path().join("out.lp"));
    let rollups = |series: &str| -> Vec<(i64, f64)> {
        lines.iter().filter(|(s, _, _)| s == series).map(|(_, v, ts)| (ts / 1_000_000, *v)).collect()
    };
    assert_eq!(rollups("temp:2s_sum,room=a"), expected_sum, "the file sink got one line per bucket");
    assert_eq!(rollups("temp:2s_count,room=a"), expected_count);
    assert!(rollups("temp:2s_sum,room=b").is_empty());
    assert_eq!(lines.iter().filter(|(s, _, _)| s.starts_with("temp,")).count(), 10, "raw samples: 3 + 7");
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
