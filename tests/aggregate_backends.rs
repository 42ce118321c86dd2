//! The shipped rollup example (config/examples/rollups.toml) end to end, with
//! a 2 s interval instead of 1 h: raw samples into a real Prometheus, the
//! rollups (`count, sum, min, max, avg` per metric and host) into a real
//! influxd (read back with InfluxQL over its HTTP API) and into RRD files
//! through a real rrdcached (read back with `rrdtool fetch`), each checked
//! exactly against a reference computed here, late samples within `lag` included.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use common::{Tsrelay, free_port, http, loopback, wait_for};

const INTERVAL_MS: i64 = 2_000;
const BUCKETS: i64 = 4;
const OUTPUTS: [&str; 5] = ["count", "sum", "min", "max", "avg"];

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn bucket_end(ts: i64) -> i64 {
    ts + (INTERVAL_MS - ts.rem_euclid(INTERVAL_MS)) % INTERVAL_MS
}

/// `text` with `from` (which must occur exactly once) replaced by `to`, so a
/// change of the example that this test no longer covers fails loudly.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "config/examples/rollups.toml no longer holds {from:?} once");
    text.replacen(from, to, 1)
}

/// The example, pointed at the servers of this test, with a 2 s interval.
fn example_config(http_addr: std::net::SocketAddr, prom: &Prometheus, influx: &Influxd, rrd: &Rrdcached) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/rollups.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in [
        (r#"listen = "127.0.0.1:9188""#.to_string(), r#"listen = "{admin}""#.to_string()),
        (r#"listen = "127.0.0.1:8186""#.to_string(), format!(r#"listen = "{http_addr}""#)),
        (r#"url = "http://127.0.0.1:9090/api/v1/write""#.to_string(), format!(r#"url = "{}""#, prom.write_url())),
        (r#"url = "http://127.0.0.1:8086""#.to_string(), format!(r#"url = "{}""#, influx.url())),
        (r#"address = "unix:/run/rrdcached.sock""#.to_string(), format!(r#"address = "{}""#, rrd.unix_address())),
        (r#"interval = "1h""#.to_string(), r#"interval = "2s""#.to_string()),
        (r#"step = "1h""#.to_string(), r#"step = "2s""#.to_string()),
        // Room for a late sample on a loaded machine (the example: 30 s).
        (r#"lag = "30s""#.to_string(), r#"lag = "5s""#.to_string()),
    ] {
        text = replace_once(&text, &from, &to);
    }
    text
}

#[derive(Clone, Debug)]
struct In {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    value: f64,
    ts: i64,
}

fn send(addr: std::net::SocketAddr, samples: &[In]) {
    let body: String = samples
        .iter()
        .map(|x| {
            let labels: serde_json::Map<String, serde_json::Value> =
                x.labels.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.clone()))).collect();
            format!("{}\n", serde_json::json!({"name": x.name, "labels": labels, "value": x.value, "timestamp": x.ts}))
        })
        .collect();
    let answer = http().post(format!("http://{addr}/api/v1/ingest")).body(body).send().unwrap();
    assert_eq!(answer.status(), 204, "{:?}", answer.text());
}

/// The samples of bucket `k` (ending at `end`): per host, node_load1 of two
/// cores twice each, node_load5 once (web1 only), and an unmatched metric.
/// Values are multiples of 1/4 and four a group, so every output is exact in
/// decimal too (rrdtool prints 11 digits).
fn bucket_samples(k: i64, end: i64) -> Vec<In> {
    let mut out = Vec::new();
    for (h, host) in ["web1", "web2"].into_iter().enumerate() {
        for j in 0..2i64 {
            for core in 0..2i64 {
                let v = ((k * 7 + h as i64 * 3 + core * 5 + j * 11) % 17) as f64 * 0.25 - 1.0;
                let labels = vec![("host", host.to_string()), ("core", core.to_string())];
                out.push(In { name: "node_load1", labels, value: v, ts: end - 1900 + j * 900 + core });
            }
        }
        out.push(In { name: "http_requests", labels: vec![("host", host.to_string())], value: 1.0, ts: end - 1500 });
    }
    out.push(In { name: "node_load5", labels: vec![("host", "web1".into())], value: 0.5 * k as f64, ts: end - 1200 });
    out
}

/// A late sample for bucket `end`: stamped at its very end, sent after it.
fn late_sample(k: i64, end: i64) -> In {
    In {
        name: "node_load1",
        labels: vec![("host", "web2".into()), ("core", "late".into())],
        value: 3.0 + k as f64,
        ts: end,
    }
}

/// (metric, host, bucket end) → output → value, as the rule computes it.
type Reference = BTreeMap<(String, String, i64), BTreeMap<&'static str, f64>>;

fn reference(samples: &[In]) -> Reference {
    let mut groups: BTreeMap<(String, String, i64), Vec<f64>> = BTreeMap::new();
    for x in samples.iter().filter(|x| x.name.starts_with("node_")) {
        let host = x.labels.iter().find(|(k, _)| *k == "host").unwrap().1.clone();
        groups.entry((x.name.to_string(), host, bucket_end(x.ts))).or_default().push(x.value);
    }
    groups
        .into_iter()
        .map(|(key, values)| {
            let sum: f64 = values.iter().sum();
            let n = values.len() as f64;
            let outputs = BTreeMap::from([
                ("count", n),
                ("sum", sum),
                ("min", values.iter().copied().fold(f64::INFINITY, f64::min)),
                ("max", values.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                ("avg", sum / n),
            ]);
            (key, outputs)
        })
        .collect()
}

#[test]
fn the_rollup_example_lands_in_influxdb_and_rrd_files_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prom"));
    let influx = Influxd::start(dir.path(), 0);
    let rrd = Rrdcached::start(dir.path());
    let http_addr = loopback(free_port());
    let relay = Tsrelay::start(dir.path(), &example_config(http_addr, &prom, &influx, &rrd));

    // Four consecutive buckets in real time: each bucket's samples are sent
    // just after it begins, and a late one for the bucket before just after
    // that one ended (within `lag`).
    let first_end = bucket_end(now_ms()) + INTERVAL_MS;
    let mut sent = Vec::new();
    for k in 0..BUCKETS {
        let end = first_end + k * INTERVAL_MS;
        wait_for(Duration::from_secs(30), "the next bucket to begin", || (now_ms() > end - INTERVAL_MS).then_some(()));
        let mut batch = bucket_samples(k, end);
        if k > 0 {
            batch.push(late_sample(k - 1, end - INTERVAL_MS));
        }
        send(http_addr, &batch);
        sent.extend(batch);
    }
    let last_end = first_end + (BUCKETS - 1) * INTERVAL_MS;
    let expected = reference(&sent);
    assert_eq!(expected.len() as i64, 3 * BUCKETS, "node_load1 × 2 hosts + node_load5 × 1 host, per bucket");
    // By hand, as a check on the reference: web2's node_load1 in bucket 0 holds
    // (3, 8, 14, 2) / 4 − 1 and the late 3.
    let web2_first = &expected[&("node_load1".to_string(), "web2".to_string(), first_end)];
    assert_eq!((web2_first["count"], web2_first["sum"], web2_first["min"]), (5.0, 5.75, -0.5));

    // InfluxDB: one measurement per output, one row per host and bucket.
    let rows = |out: &str, metric: &str| influx.select_all("rollups", &format!("{metric}:2s_{out}"));
    let expected_rows: usize = expected.len();
    wait_for(Duration::from_secs(60), "every rollup in influxd", || {
        let n: usize = OUTPUTS.iter().map(|o| rows(o, "node_load1").len() + rows(o, "node_load5").len()).sum();
        (n == expected_rows * OUTPUTS.len()).then_some(())
    });
    let mut got: Reference = BTreeMap::new();
    for metric in ["node_load1", "node_load5"] {
        for out in OUTPUTS {
            for row in rows(out, metric) {
                let key =
                    (metric.to_string(), row["host"].as_str().unwrap().to_string(), row["time"].as_i64().unwrap());
                let mut fields: Vec<&String> = row.keys().collect();
                fields.sort();
                assert_eq!(fields, ["host", "time", "value"], "{metric}:2s_{out}: by = [host] keeps only host");
                got.entry(key).or_default().insert(out, row["value"].as_f64().unwrap());
            }
        }
    }
    assert_eq!(got, expected, "rollups in influxd");

    // rrdcached: one file per output series (`{__name__}/{host}.rrd`, `:` made `_`).
    let mut files = Vec::new();
    for out in OUTPUTS {
        for (metric, host) in [("node_load1", "web1"), ("node_load1", "web2"), ("node_load5", "web1")] {
            files.push((metric, host, out, format!("{metric}_2s_{out}/{host}.rrd")));
        }
    }
    let mut names: Vec<String> = files.iter().map(|f| f.3.clone()).collect();
    names.sort();
    wait_for(Duration::from_secs(60), "every RRD file", || (Rrdcached::files_under(&rrd.base) == names).then_some(()));
    let (start, end) = ((first_end - INTERVAL_MS) / 1000, last_end / 1000);
    for (metric, host, out, file) in &files {
        let want: BTreeMap<i64, f64> = (0..BUCKETS)
            .map(|k| {
                let t = first_end + k * INTERVAL_MS;
                (t / 1000, expected[&(metric.to_string(), host.to_string(), t)][*out])
            })
            .collect();
        for cf in ["LAST", "AVERAGE"] {
            let values = wait_for(Duration::from_secs(30), &format!("{file} {cf} filled"), || {
                let v: BTreeMap<i64, f64> =
                    rrd.fetch(file, cf, start, end).into_iter().filter_map(|(t, v)| Some((t, v?))).collect();
                (v.len() == want.len()).then_some(v)
            });
            assert_eq!(values, want, "{file} {cf}");
        }
        let info = rrd.info(file);
        assert!(info.contains("step = 2") && info.contains("ds[value].type = \"GAUGE\""), "{file}: {info}");
    }

    // Prometheus: the raw samples, and no rollup (the rule's own sinks).
    let raw = |q: &str| prom.query_number(&format!("sum(count_over_time({q}[1m]))"), Some(last_end));
    wait_for(Duration::from_secs(30), "every raw sample in Prometheus", || {
        let n = raw("node_load1") + raw("node_load5") + raw("http_requests");
        (n == sent.len() as f64).then_some(())
    });
    let series = |q: &str| prom.query_number(&format!("count(count_over_time({q}[1m]))"), Some(last_end));
    assert_eq!((series("node_load1"), series("node_load5"), series("http_requests")), (5.0, 1.0, 2.0));
    assert!(prom.query("{__name__=~\".+:2s_.+\"}", Some(last_end)).is_empty(), "rollups reached Prometheus");

    // Accounting: nothing dropped; late samples within lag were folded in.
    let m = relay.metrics();
    let metric = |name: &str, labels: &[&str]| common::sum_metric(&m, name, labels);
    assert_eq!(metric("tsrelay_aggregate_skipped_samples_total", &[]), 0.0, "{m:?}");
    let matched = sent.iter().filter(|x| x.name.starts_with("node_")).count() as f64;
    assert_eq!(metric("tsrelay_aggregate_input_samples_total", &["rule=\"node_hourly\""]), matched);
    assert_eq!(metric("tsrelay_dropped_samples_total", &[]), 0.0, "{m:?}");
}
