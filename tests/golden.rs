//! Golden tests of the read side (issue 14): a graph written once renders from
//! every real backend with the same result. Harness: `tests/golden/harness.rs`;
//! graphs: `tests/golden/graphs/`; registry: `tests/golden/metrics.yaml`.

mod common;
#[path = "golden/harness.rs"]
mod harness;

use std::time::Duration;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use harness::{Dataset, HOUR, MIN, Quirks, check_backend, render, start_relay, write_through};
use tsrelay::query::service::now_ms;

fn prom_sink(name: &str, prom: &Prometheus) -> String {
    format!(
        "[sinks.{name}]\ntype = \"prometheus_remote_write\"\nurl = \"{}\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        prom.write_url()
    )
}

#[test]
fn prometheus_serves_every_golden_graph_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prometheus"));
    let data = Dataset::generate(now_ms());
    let relay = start_relay(dir.path(), &["prom"], &prom_sink("prom", &prom));
    write_through(&relay, &data, &["prom"]);

    let compared = check_backend(relay.query, "prom", &data, &Quirks::default());
    eprintln!("prometheus: {compared} points equal to the reference");

    // Independent of the reference: each device's rate is 8 × the sum of its
    // ports' slopes in every bucket, the reset included, and null exactly where
    // the 10-minute hole leaves fewer than two samples in [t − step, t].
    let (status, answer) = render(
        relay.query,
        &serde_json::json!({"graph": "golden.rate.by_device", "backend": "prom",
            "start": data.t0, "end": data.t_end, "step": "5m"}),
    );
    assert_eq!(status, 200, "{answer}");
    for (d, line) in answer["data"]["series"].as_array().unwrap().iter().enumerate() {
        let slopes: f64 = data.series[d * 3..d * 3 + 3].iter().map(|s| s.slope.unwrap()).sum();
        for p in line["points"].as_array().unwrap() {
            let t = p[0].as_i64().unwrap();
            if t == data.hole + 5 * MIN || t == data.hole + 10 * MIN {
                assert!(p[1].is_null(), "{line} at {t}: the hole must be null");
            } else {
                assert_eq!(p[1].as_f64(), Some(8.0 * slopes), "{} at {t}", line["labels"]);
            }
        }
    }

    // The terminal client renders the same numbers (CSV), without a daemon.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["graph", "render", "--config"])
        .arg(&relay.tsrelay.config_path)
        .args(["--graph", "golden.load.min_max", "--backend", "prom", "--format", "csv", "--step", "5m"])
        .args(["--start", &data.t0.to_string(), "--end", &data.t_end.to_string()])
        .output()
        .expect("run tsrelay graph render");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, answer) = render(
        relay.query,
        &serde_json::json!({"graph": "golden.load.min_max", "backend": "prom", "start": data.t0, "end": data.t_end, "step": 300}),
    );
    let mut want = String::from("timestamp_ms,legend,value\n");
    for line in answer["data"]["series"].as_array().unwrap() {
        for p in line["points"].as_array().unwrap() {
            let v = p[1].as_f64().map(|v| v.to_string()).unwrap_or_default();
            want.push_str(&format!("{},{},{v}\n", p[0], line["legend"].as_str().unwrap()));
        }
    }
    assert_eq!(csv, want);
    assert_eq!(csv.lines().count(), 1 + 2 * 72);
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_tsrelay"))
        .args(["graph", "render", "--config"])
        .arg(&relay.tsrelay.config_path)
        .args(["--graph", "golden.load.avg", "--backend", "prom", "--step", "5m", "--start", "-8h"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success() && text.lines().next().unwrap().contains("golden.load{host=\"h1\"}"), "{text}");
    let _ = HOUR;
}

#[test]
fn requests_refused_before_any_backend_io() {
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(&dir.path().join("prometheus"));
    let sinks = format!(
        "{}\n[sinks.out]\ntype = \"file\"\npath = \"{}/out.lp\"\n",
        prom_sink("prom", &prom),
        dir.path().display()
    );
    let relay = start_relay(dir.path(), &["prom", "out"], &sinks);
    let calls = || relay.tsrelay.metric_sum("tsrelay_query_backend_requests_total", &[]);
    let before = calls();
    let now = now_ms();
    let cases = [
        // sink without a read driver
        (
            serde_json::json!({"graph": "golden.load.raw", "backend": "out", "start": now - HOUR, "step": "1m"}),
            422,
            "read",
        ),
        (
            serde_json::json!({"graph": "golden.load.raw", "backend": "nope", "start": now - HOUR, "step": "1m"}),
            404,
            "",
        ),
        (serde_json::json!({"graph": "nope", "backend": "prom", "start": now - HOUR, "step": "1m"}), 404, ""),
        (
            serde_json::json!({"graph": "golden.load.raw", "backend": "prom", "start": now - HOUR, "step": "500ms"}),
            400,
            "step",
        ),
        (
            serde_json::json!({"graph": "golden.load.raw", "backend": "prom", "start": now - 1000 * HOUR, "step": "1s"}),
            400,
            "step",
        ),
        (
            serde_json::json!({"graph": {"id": "x", "series": [{"metric": "golden.load", "function": "rate"}]},
            "backend": "prom", "start": now - HOUR, "step": "1m"}),
            400,
            "graph.series[0].function",
        ),
        (
            serde_json::json!({"graph": "golden.load.raw", "backend": "prom", "start": "yesterday", "step": "1m"}),
            400,
            "start",
        ),
    ];
    for (body, status, detail) in cases {
        let (got, answer) = render(relay.query, &body);
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(answer["status"], "error", "{answer}");
        match status {
            422 => {
                assert_eq!(answer["errorType"], "unsupported");
                assert_eq!(answer["feature"], detail, "{answer}");
                assert_eq!(answer["backend"], "out", "{answer}");
            }
            400 => assert_eq!(answer["field"], detail, "{answer}"),
            _ => assert!(answer["error"].as_str().unwrap().contains("unknown"), "{answer}"),
        }
    }
    assert_eq!(calls(), before, "a refused request reached a backend");
    // and a good one does reach it, once per graph series
    let (got, answer) = render(
        relay.query,
        &serde_json::json!({"graph": "golden.load.min_max", "backend": "prom", "start": now - HOUR, "step": "1m"}),
    );
    assert_eq!(got, 200, "{answer}");
    common::wait_for(Duration::from_secs(5), "backend request counted", || (calls() == before + 2.0).then_some(()));
}

/// InfluxDB 1.6 through InfluxQL: every golden graph exactly, no quirk.
#[test]
fn influxdb_serves_every_golden_graph_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    let data = Dataset::generate(now_ms());
    let sink = format!(
        "[sinks.influx]\ntype = \"influxdb\"\nurl = \"{}\"\ndatabase = \"golden\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        influxd.url()
    );
    let relay = start_relay(dir.path(), &["influx"], &sink);
    write_through(&relay, &data, &["influx"]);
    let compared = check_backend(relay.query, "influx", &data, &Quirks::default());
    eprintln!("influxdb: {compared} points equal to the reference");
}

/// rrdcached: every golden graph the driver serves, equal to the reference but
/// for what it declares (its capability notes): the first bucket after the hole
/// is null (heartbeat), the bucket of a counter reset misses the reset's base
/// step (DERIVE), and `count`/`sum` are refused with 422 before any I/O.
#[test]
fn rrdcached_serves_the_golden_graphs_with_its_declared_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let data = Dataset::generate(now_ms());
    let sink = format!(
        "[sinks.rrd]\ntype = \"rrdcached\"\naddress = \"{}\"\nstep = \"60s\"\nbatch = {{ max_samples = 10000, max_age_ms = 50 }}\n",
        rrd.unix_address()
    );
    let relay = start_relay(dir.path(), &["rrd"], &sink);
    write_through(&relay, &data, &["rrd"]);
    // Every update written before the renders: rrdcached 1.7.2's flush (which `FETCH` does
    // first) does not wait for a write already under way, so two renders reading a file whose
    // backlog another render's `FETCH` is writing at that moment would see part of it.
    rrd.flush_all();
    let quirks = Quirks {
        reset_bucket_may_be_null: true,
        hole_edge_may_be_null: true,
        reset_bucket_may_be_low: true,
        unsupported: vec![("golden.load.count_sum", "function:count")],
    };
    let compared = check_backend(relay.query, "rrd", &data, &quirks);
    eprintln!("rrdcached: {compared} points equal to the reference or declared");
    // The files are where the registry says, one per series.
    let files = Rrdcached::files_under(&rrd.base);
    assert_eq!(files.len(), 12, "{files:?}");
    assert!(files.contains(&"golden/sw2/ge-1.rrd".to_string()) && files.contains(&"golden/load/h3.rrd".to_string()));
    // The octets template `golden/{device}/{port}.rrd` also matches the load files
    // (device "load", port "h1"): each listed file is asked `INFO`, and only the files
    // holding the `octets` data source are fetched. rrdcached 1.7.2 answers a `FETCH` of
    // a data source a file lacks with an error quoting freed memory, which once held a
    // newline and broke the rest of the pipeline (CI saw `"T\x07\x7f"` as a status line).
    // (A step no check above used, so that the render is not served from the cache.)
    let calls = || relay.tsrelay.metric_sum("tsrelay_query_backend_requests_total", &[]);
    let before = calls();
    let (got, answer) = render(
        relay.query,
        &serde_json::json!({"graph": "golden.rate.by_device", "backend": "rrd", "start": data.t0, "end": data.t_end, "step": 1200}),
    );
    assert_eq!(got, 200, "{answer}");
    let octets_files = files.iter().filter(|f| !f.starts_with("golden/load/")).count();
    assert!(octets_files > 0 && octets_files < files.len(), "{files:?}");
    let expected = (1 + files.len() + octets_files) as f64;
    let counted = common::wait_for(Duration::from_secs(5), "the render's backend requests counted", || {
        let n = calls() - before;
        (n >= expected).then_some(n)
    });
    assert_eq!(
        counted,
        expected,
        "LIST, INFO of each of {} files, FETCH of the {octets_files} octets files",
        files.len()
    );
}
