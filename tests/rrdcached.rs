//! The `rrdcached` sink against a real rrdcached: files created from the
//! template on `No such file`, values read back with `rrdtool fetch`, label
//! values kept inside the base directory, same-second samples coalesced,
//! older ones dropped as `out_of_order` (by the sink and by rrdcached's own
//! answer), and an rrdcached restart in mid-stream losing nothing.
mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::grpc_client::{series, write_all};
use common::rrdcached::Rrdcached;
use common::*;
use tsrelay::proto::v1::MetricType;

const SENT: &str = "tsrelay_sink_sent_samples_total";
const DROPPED: &str = "tsrelay_dropped_samples_total";
const RECEIVED: &str = "tsrelay_sink_received_samples_total";
const STEP: i64 = 10;

fn config(grpc: u16, address: &str, extra: &str) -> String {
    format!(
        r#"
[receivers.grpc]
type = "grpc"
listen = "127.0.0.1:{grpc}"
[sinks.rrd]
type = "rrdcached"
address = "{address}"
path_template = "{{__name__}}/{{host}}.rrd"
step = "{STEP}s"
batch = {{ max_samples = 1000, max_age_ms = 50 }}
retry = {{ initial = "50ms", max = "200ms", max_retry_duration = "60s" }}
{extra}
[pipelines.main]
receivers = ["grpc"]
sinks = ["rrd"]
"#
    )
}

/// Waits until the sink accounted for `n` samples; checks received = sent + dropped + queued.
fn settle(t: &Tsrelay, n: f64) -> BTreeMap<String, f64> {
    let l = "sink=\"rrd\"";
    wait_for(Duration::from_secs(60), &format!("the rrdcached sink to account for {n} samples"), || {
        let m = t.metrics();
        (sum_metric(&m, SENT, &[l]) + sum_metric(&m, DROPPED, &[l]) >= n).then_some(())
    });
    let m = t.metrics();
    let (received, sent, dropped) =
        (sum_metric(&m, RECEIVED, &[l]), sum_metric(&m, SENT, &[l]), sum_metric(&m, DROPPED, &[l]));
    let queued = sum_metric(&m, "tsrelay_queue_samples", &[l]);
    assert_eq!(received, n);
    assert_eq!(received, sent + dropped + queued, "accounting: {m:?}");
    m
}

fn dropped(m: &BTreeMap<String, f64>, reason: &str) -> f64 {
    sum_metric(m, DROPPED, &["sink=\"rrd\"", &format!("reason=\"{reason}\"")])
}

/// A step-aligned start time an hour ago, in seconds.
fn t0() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (now - 3600) / STEP * STEP
}

/// `ts → value` of the known rows of `rrdtool fetch LAST`.
fn fetch(r: &Rrdcached, file: &str, start: i64, end: i64) -> BTreeMap<i64, f64> {
    r.fetch(file, "LAST", start, end).into_iter().filter_map(|(t, v)| Some((t, v?))).collect()
}

#[test]
fn values_round_trip_through_files_created_from_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let grpc = free_port();
    let t = Tsrelay::start(dir.path(), &config(grpc, &rrd.unix_address(), ""));
    let t0 = t0();
    let gauge: Vec<(f64, i64)> = (0..20).map(|k| (k as f64 * 1.25, (t0 + k * STEP) * 1000)).collect();
    let counter: Vec<(f64, i64)> = (0..20).map(|k| (k as f64 * 100.0, (t0 + k * STEP) * 1000)).collect();
    write_all(
        grpc,
        vec![
            series(&[("__name__", "temperature"), ("host", "a")], &gauge, MetricType::Gauge),
            series(&[("__name__", "requests_total"), ("host", "b")], &counter, MetricType::Counter),
        ],
    );
    let m = settle(&t, 40.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"rrd\""]), 40.0);

    assert_eq!(Rrdcached::files_under(&rrd.base), vec!["requests_total/b.rrd", "temperature/a.rrd"]);
    let values = fetch(&rrd, "temperature/a.rrd", t0, t0 + 19 * STEP);
    for k in 1..20 {
        assert_eq!(values.get(&(t0 + k * STEP)), Some(&(k as f64 * 1.25)), "step {k}: {values:?}");
    }
    let info = rrd.info("requests_total/b.rrd");
    assert!(info.contains("ds[value].type = \"DERIVE\""), "{info}");
    assert!(info.contains("ds[value].min = 0.0000000000e+00"), "{info}");
    assert!(info.contains(&format!("step = {STEP}")), "{info}");
    // 100 per 10 s step is a rate of 10/s.
    let rates = fetch(&rrd, "requests_total/b.rrd", t0, t0 + 19 * STEP);
    assert_eq!(rates.get(&(t0 + 5 * STEP)), Some(&10.0), "{rates:?}");
}

#[test]
fn label_values_cannot_leave_the_base_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let grpc = free_port();
    let t = Tsrelay::start(dir.path(), &config(grpc, &rrd.tcp_address(), ""));
    let t0 = t0();
    let p = [(1.0, t0 * 1000)];
    let mut all = Vec::new();
    for host in ["../../etc", "../x", "/abs/olute", "ok", ".."] {
        all.push(series(&[("__name__", "escape"), ("host", host)], &p, MetricType::Gauge));
    }
    // No `host`: dropped (missing_label = "drop"), counted as rejected.
    all.push(series(&[("__name__", "escape")], &p, MetricType::Gauge));
    write_all(grpc, all);
    let m = settle(&t, 6.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"rrd\""]), 5.0);
    assert_eq!(dropped(&m, "rejected"), 1.0);

    assert_eq!(
        Rrdcached::files_under(&rrd.base),
        vec!["escape/...rrd", "escape/.._.._etc.rrd", "escape/.._x.rrd", "escape/_abs_olute.rrd", "escape/ok.rrd"]
    );
    // Nothing appeared next to the base directory or above it.
    let root = rrd.base.parent().unwrap();
    let outside: Vec<String> = Rrdcached::files_under(root)
        .into_iter()
        .filter(|f| !f.starts_with("base/") && !f.starts_with("journal/"))
        .collect();
    assert_eq!(outside, vec!["pid", "sock"]);
    assert!(!dir.path().join("etc").exists() && !dir.path().join("x.rrd").exists());
}

#[test]
fn same_second_is_coalesced_and_older_samples_are_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let t0 = t0();
    // A file rrdcached already holds up to t0+100, written behind tsrelay's back.
    let rrdtool = require_binary("rrdtool", "apt-get install rrdtool");
    let file = rrd.base.join("pre/a.rrd");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let status = Command::new(&rrdtool)
        .arg("create")
        .arg(&file)
        .args(["--start", &(t0 - 1).to_string(), "--step", &STEP.to_string()])
        .args(["DS:value:GAUGE:20:U:U", "RRA:LAST:0.5:1:1000"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new(&rrdtool)
        .arg("update")
        .arg(&file)
        .arg(format!("{}:7", t0 + 100))
        .args(["--daemon", &rrd.unix_address()])
        .status()
        .unwrap();
    assert!(status.success());

    let grpc = free_port();
    let t = Tsrelay::start(dir.path(), &config(grpc, &rrd.unix_address(), ""));
    let ms = |s: i64| s * 1000;
    write_all(
        grpc,
        vec![
            // Two samples in the second t0+10: the last received wins.
            series(
                &[("__name__", "co"), ("host", "a")],
                &[(0.0, ms(t0)), (1.0, ms(t0 + 10) + 100), (2.0, ms(t0 + 10) + 900), (3.0, ms(t0 + 20))],
                MetricType::Gauge,
            ),
            // rrdcached says t0+50 is not newer than its last update (t0+100);
            // the newer t0+110 of the same command is resent and written.
            series(
                &[("__name__", "pre"), ("host", "a")],
                &[(5.0, ms(t0 + 50)), (11.0, ms(t0 + 110))],
                MetricType::Gauge,
            ),
        ],
    );
    let m = settle(&t, 6.0);
    assert_eq!(dropped(&m, "duplicate"), 1.0);
    assert_eq!(dropped(&m, "out_of_order"), 1.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"rrd\""]), 4.0);

    // t0+15 is older than the series' last sample: the pipeline's monotonic
    // stage drops it before fanout. t0+20.5 is newer to the pipeline but falls
    // in the second the sink already wrote: the sink drops it as a duplicate
    // before sending.
    write_all(
        grpc,
        vec![series(
            &[("__name__", "co"), ("host", "a")],
            &[(9.0, ms(t0 + 15)), (8.0, ms(t0 + 20) + 500), (4.0, ms(t0 + 30))],
            MetricType::Gauge,
        )],
    );
    let m = settle(&t, 8.0);
    assert_eq!(dropped(&m, "duplicate"), 2.0);
    assert_eq!(dropped(&m, "out_of_order"), 1.0);
    assert_eq!(sum_metric(&m, DROPPED, &["stage=\"monotonic\"", "reason=\"out_of_order\""]), 1.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"rrd\""]), 5.0);

    let co = fetch(&rrd, "co/a.rrd", t0, t0 + 30);
    assert_eq!(
        (co.get(&(t0 + 10)), co.get(&(t0 + 20)), co.get(&(t0 + 30))),
        (Some(&2.0), Some(&3.0), Some(&4.0)),
        "{co:?}"
    );
    let pre = fetch(&rrd, "pre/a.rrd", t0 + 100, t0 + 110);
    assert_eq!(pre.get(&(t0 + 110)), Some(&11.0), "{pre:?}");
}

#[test]
fn an_rrdcached_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut rrd = Rrdcached::start(dir.path());
    let grpc = free_port();
    let t = Tsrelay::start(dir.path(), &config(grpc, &rrd.unix_address(), ""));
    let t0 = t0();
    let send = |k: i64| {
        write_all(
            grpc,
            vec![series(
                &[("__name__", "stream"), ("host", "a")],
                &[(k as f64, (t0 + k * STEP) * 1000)],
                MetricType::Gauge,
            )],
        )
    };
    for k in 0..10 {
        send(k);
    }
    settle(&t, 10.0);
    // Down: samples wait in the queue while the sink retries.
    assert!(rrd.process.terminate(Duration::from_secs(20)), "rrdcached did not stop");
    for k in 10..20 {
        send(k);
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(t.metric_sum(SENT, &["sink=\"rrd\""]), 10.0, "nothing can be sent while rrdcached is down");
    rrd.restart(Duration::ZERO);
    for k in 20..30 {
        send(k);
    }
    let m = settle(&t, 30.0);
    assert_eq!(sum_metric(&m, SENT, &["sink=\"rrd\""]), 30.0);
    assert_eq!(sum_metric(&m, DROPPED, &["sink=\"rrd\""]), 0.0);
    assert!(sum_metric(&m, "tsrelay_sink_retries_total", &["sink=\"rrd\""]) > 0.0);
    let values = fetch(&rrd, "stream/a.rrd", t0, t0 + 29 * STEP);
    for k in 1..30 {
        assert_eq!(values.get(&(t0 + k * STEP)), Some(&(k as f64)), "step {k}: {values:?}");
    }
}
