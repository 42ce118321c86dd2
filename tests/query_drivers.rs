//! The InfluxDB and rrdcached read drivers against real servers: the same
//! minute-aligned data written through tsrelay's own sinks into a real influxd
//! 1.6 and a real rrdcached, then every graph series rendered through the
//! drivers and compared point by point with the reference (the neutral
//! normalizer over the samples that were sent). Deviations are allowed only
//! where a driver declares them (RRD's heartbeat at the edge of a hole, RRD's
//! DERIVE at a counter reset), and each one is named. Then the failures: a
//! server stopped (502 naming it), an answer that is garbage (502), a server
//! that never answers (504).
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::fault_http::{FaultServer, Reply};
use common::influxdb::Influxd;
use common::rrdcached::Rrdcached;
use common::*;
use tsrelay::query::backends::influxdb::InfluxdbDriver;
use tsrelay::query::backends::rrdcached::RrdcachedDriver;
use tsrelay::query::backends::{BackendError, Driver, RawForm, RawResult, RawSeries};
use tsrelay::query::grid::TimeGrid;
use tsrelay::query::model::GraphDef;
use tsrelay::query::normalize::normalize;
use tsrelay::query::plan::SeriesPlan;
use tsrelay::query::result::ResultSeries;
use tsrelay::query::validate::validate_graph;
use tsrelay::registry::MetricRegistry;

const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    unit: bytes
    labels: [device, port]
    backends:
      influxdb: { measurement: port, field: in_octets }
      rrdcached: { path: "{device}/port-{port}.rrd", ds: in, ds_type: DERIVE }
  - key: load
    name: node_load1
    type: gauge
    labels: [host]
    backends:
      rrdcached: { path: "{host}/load.rrd", ds: load1, ds_type: GAUGE }
"#;

/// Minutes of data (0..=MINUTES), the hole (no samples), the reset of one counter.
const MINUTES: i64 = 120;
const HOLE: std::ops::Range<i64> = 50..60;
const RESET_AT: i64 = 90;

/// `(labels incl. __name__, kind, [(ts_ms, value)])` of everything sent.
type Sent = Vec<(BTreeMap<String, String>, &'static str, Vec<(i64, f64)>)>;

fn t0() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    (now - 3 * 3600) / 3600 * 3600
}

fn data(t0: i64) -> Sent {
    let minutes = || (0..=MINUTES).filter(|k| !HOLE.contains(k));
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let at = |k: i64| (t0 + 60 * k) * 1000;
    let port = |d: &str, p: &str| labels(&[("__name__", "port_in_octets_total"), ("device", d), ("port", p)]);
    let load = |h: &str| labels(&[("__name__", "node_load1"), ("host", h)]);
    vec![
        (port("sw1", "1"), "counter", minutes().map(|k| (at(k), 600.0 * k as f64)).collect()),
        (
            port("sw1", "2"),
            "counter",
            minutes()
                .map(|k| (at(k), if k < RESET_AT { 300.0 * k as f64 } else { 300.0 * (k - RESET_AT) as f64 }))
                .collect(),
        ),
        (port("sw2", "1"), "counter", minutes().map(|k| (at(k), 1e6 + 60.0 * k as f64)).collect()),
        (load("h1"), "gauge", minutes().map(|k| (at(k), (k % 7) as f64 + 0.5)).collect()),
        (load("h2"), "gauge", minutes().map(|k| (at(k), 2.0 * k as f64)).collect()),
    ]
}

/// NDJSON of every sample, oldest first (each RRD file takes its updates in order).
fn ndjson(sent: &Sent) -> String {
    let mut lines: Vec<(i64, String)> = Vec::new();
    for (labels, kind, points) in sent {
        let name = &labels["__name__"];
        let rest: BTreeMap<&String, &String> = labels.iter().filter(|(k, _)| *k != "__name__").collect();
        for (t, v) in points {
            let line = serde_json::json!({"name": name, "labels": rest, "value": v, "timestamp": t, "type": kind});
            lines.push((*t, line.to_string()));
        }
    }
    lines.sort_by_key(|(t, _)| *t);
    lines.into_iter().map(|(_, l)| l + "\n").collect()
}

struct Backends {
    _dir: tempfile::TempDir,
    influxd: Influxd,
    rrd: Rrdcached,
    influx: Arc<dyn Driver>,
    rrdcached: Arc<dyn Driver>,
    registry: MetricRegistry,
    sent: Sent,
    t0: i64,
}

fn influx_sink_toml(url: &str) -> String {
    format!("url = \"{url}\"\ndatabase = \"golden\"\ngzip = false\nrequest = {{ timeout = \"2s\" }}\n")
}

fn rrd_sink_toml(address: &str) -> String {
    format!(
        "address = \"{address}\"\npath_template = \"{{__name__}}/{{host}}.rrd\"\nstep = \"60s\"\ntimeout = \"2s\"\n"
    )
}

fn influx_driver(toml_text: &str) -> Arc<dyn Driver> {
    let c: tsrelay::sinks::influxdb::InfluxdbSinkConfig = toml::from_str(toml_text).expect("influx sink config");
    InfluxdbDriver::for_sink("influx", &c, &tsrelay::registry::MetricRegistry::empty(), Path::new("."))
        .expect("v1 sink")
        .expect("driver")
}

fn rrd_driver(toml_text: &str) -> Arc<dyn Driver> {
    let c: tsrelay::sinks::rrdcached::RrdcachedSinkConfig = toml::from_str(toml_text).expect("rrd sink config");
    RrdcachedDriver::for_sink("rrd", &c, &tsrelay::registry::MetricRegistry::empty()).expect("driver")
}

/// Starts both servers and tsrelay, sends the data, waits until both sinks delivered it.
fn backends() -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    let rrd = Rrdcached::start(dir.path());
    std::fs::write(dir.path().join("metrics.yaml"), REGISTRY).unwrap();
    let http_port = free_port();
    let config = format!(
        r#"
[receivers.http]
type = "http"
listen = "127.0.0.1:{http_port}"
[sinks.influx]
type = "influxdb"
{influx}
batch = {{ max_samples = 5000, max_age_ms = 50 }}
[sinks.rrd]
type = "rrdcached"
{rrd}
batch = {{ max_samples = 5000, max_age_ms = 50 }}
[pipelines.main]
receivers = ["http"]
sinks = ["influx", "rrd"]
[registry]
path = "metrics.yaml"
"#,
        influx = influx_sink_toml(&influxd.url()),
        rrd = rrd_sink_toml(&rrd.unix_address()),
    );
    let relay = Tsrelay::start(dir.path(), &config);
    let t0 = t0();
    let sent = data(t0);
    let total: usize = sent.iter().map(|s| s.2.len()).sum();
    let r = http()
        .post(format!("http://127.0.0.1:{http_port}/api/v1/ingest"))
        .body(ndjson(&sent))
        .send()
        .expect("POST /api/v1/ingest");
    assert!(r.status().is_success(), "ingest: {} {}", r.status(), r.text().unwrap_or_default());
    for sink in ["influx", "rrd"] {
        let label = format!("sink=\"{sink}\"");
        wait_for(Duration::from_secs(60), &format!("sink {sink} to deliver {total} samples"), || {
            let sent = relay.metric_sum("tsrelay_sink_sent_samples_total", &[&label]);
            let dropped = relay.metric_sum("tsrelay_dropped_samples_total", &[&label]);
            assert_eq!(dropped, 0.0, "sink {sink} dropped samples:\n{}", relay.process.log_tail());
            (sent >= total as f64).then_some(())
        });
    }
    drop(relay);
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
    Backends {
        influx: influx_driver(&influx_sink_toml(&influxd.url())),
        rrdcached: rrd_driver(&rrd_sink_toml(&rrd.unix_address())),
        _dir: dir,
        influxd,
        rrd,
        registry,
        sent,
        t0,
    }
}

fn plan(registry: &MetricRegistry, series_yaml: &str) -> SeriesPlan {
    let def: GraphDef = serde_norway::from_str(&format!("id: golden\nseries:\n  - {series_yaml}")).unwrap();
    validate_graph(&def, registry).unwrap_or_else(|e| panic!("{series_yaml}: {e}")).series.remove(0)
}

/// The reference: the neutral normalizer over the samples sent, filtered like the plan.
fn reference(b: &Backends, plan: &SeriesPlan, grid: &TimeGrid) -> Vec<ResultSeries> {
    let series = b
        .sent
        .iter()
        .filter(|(labels, _, _)| labels["__name__"] == plan.entry.name)
        .filter(|(labels, _, _)| {
            plan.matchers.iter().all(|m| m.matches(labels.get(&m.label).map_or("", String::as_str)))
        })
        .map(|(labels, _, points)| {
            let mut labels = labels.clone();
            labels.remove("__name__");
            RawSeries { labels, points: points.clone() }
        })
        .collect();
    let raw = RawResult { form: RawForm::Samples, series, warnings: Vec::new() };
    normalize(plan, grid, &raw, None).expect("reference normalizes")
}

fn render(
    rt: &tokio::runtime::Runtime,
    d: &dyn Driver,
    plan: &SeriesPlan,
    grid: &TimeGrid,
) -> Result<Vec<ResultSeries>, String> {
    d.capabilities().check(d.backend(), plan, grid).map_err(|e| format!("422 {e}"))?;
    let compiled = d.compile(plan, grid).map_err(|e| format!("422 {e}"))?;
    let raw = rt.block_on(d.execute(&compiled, plan, grid)).map_err(|e| format!("{} {e}", e.http_status()))?;
    normalize(plan, grid, &raw, None).map_err(|e| format!("502 {e}"))
}

/// Why a point may differ from the reference on `backend`, if it may: only
/// the deviations the rrdcached driver declares in its capability notes.
fn declared(
    backend: &str,
    plan: &SeriesPlan,
    t0: i64,
    step_s: i64,
    t_ms: i64,
    reference: Option<f64>,
    got: Option<f64>,
) -> Option<&'static str> {
    if backend != "rrd" {
        return None;
    }
    let bucket = |k: i64| ((t0 + 60 * k) * 1000 + step_s * 1000 - 1).div_euclid(step_s * 1000) * step_s * 1000;
    if t_ms == bucket(HOLE.end) && got.is_none() && reference.is_some() {
        return Some("heartbeat: the first bucket after a hole");
    }
    // The reset's base step is unknown: the series has no value there, and a
    // combination over several series lacks its share.
    let counter = plan.entry.name == "port_in_octets_total";
    let combined = plan.group_by.is_some();
    if counter && step_s == 60 && t_ms == bucket(RESET_AT) && (got.is_none() || combined) {
        return Some("DERIVE: a counter reset makes its base step unknown");
    }
    None
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Compares a backend's render with the reference; returns the named deviations.
fn compare(
    backend: &str,
    b: &Backends,
    plan: &SeriesPlan,
    step_s: i64,
    got: &[ResultSeries],
    want: &[ResultSeries],
) -> Vec<String> {
    let what = format!("{backend} {} {} step {step_s}s", plan.entry.key, plan.function);
    let labels = |s: &[ResultSeries]| s.iter().map(|s| s.labels.clone()).collect::<Vec<_>>();
    assert_eq!(labels(got), labels(want), "{what}: series");
    let mut differences = Vec::new();
    let mut declared_seen = Vec::new();
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.points.len(), w.points.len(), "{what}: grid");
        for (&(t, gv), &(wt, wv)) in g.points.iter().zip(&w.points) {
            assert_eq!(t, wt, "{what}: timestamps");
            let same = match (gv, wv) {
                (Some(a), Some(b)) => close(a, b),
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            match declared(backend, plan, b.t0, step_s, t, wv, gv) {
                Some(why) => declared_seen.push(format!("{why} at {t}")),
                None => differences.push(format!("{what} {:?} at {t}: got {gv:?}, reference {wv:?}", g.labels)),
            }
        }
    }
    assert!(differences.is_empty(), "{} points differ:\n{}", differences.len(), differences.join("\n"));
    declared_seen
}

/// Every function and `across`, at two steps, from both backends.
#[test]
fn both_drivers_render_the_reference_grid() {
    let b = backends();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let both = ["influx", "rrd"];
    let cases: &[(&str, &[&str])] = &[
        ("{ metric: port.in, function: rate }", &both),
        ("{ metric: port.in, function: increase, group_by: [device] }", &both),
        (
            "{ metric: port.in, function: rate, group_by: [], across: max, filter: { device: \"=~sw.*\", port: \"!=2\" } }",
            &both,
        ),
        ("{ metric: port.in, function: rate, group_by: [device], across: avg }", &both),
        ("{ metric: port.in, function: raw }", &["influx"]),
        ("{ metric: load, function: avg }", &both),
        ("{ metric: load, function: min, filter: { host: h2 } }", &both),
        ("{ metric: load, function: max }", &both),
        ("{ metric: load, function: last }", &both),
        ("{ metric: load, function: raw, filter: { host: \"!~h1\" } }", &both),
        ("{ metric: load, function: avg, group_by: [], across: sum }", &both),
        ("{ metric: load, function: max, group_by: [], across: min }", &both),
        ("{ metric: load, function: last, group_by: [], across: count }", &both),
        ("{ metric: load, function: count }", &["influx"]),
        ("{ metric: load, function: sum, group_by: [host] }", &["influx"]),
    ];
    let mut deviations = Vec::new();
    for step_s in [60, 300] {
        let grid = TimeGrid::new(b.t0 * 1000, (b.t0 + 60 * MINUTES) * 1000, step_s * 1000).unwrap();
        for (yaml, on) in cases {
            let p = plan(&b.registry, yaml);
            let want = reference(&b, &p, &grid);
            assert!(want.iter().any(|s| s.points.iter().any(|p| p.1.is_some())), "{yaml}: empty reference");
            for (name, driver) in [("influx", &b.influx), ("rrd", &b.rrdcached)] {
                match render(&rt, driver.as_ref(), &p, &grid) {
                    Ok(got) => {
                        assert!(on.contains(&name), "{name} served {yaml}, which it declares unsupported");
                        deviations.extend(compare(name, &b, &p, step_s, &got, &want));
                    }
                    Err(e) => {
                        assert!(!on.contains(&name), "{name} {yaml} step {step_s}: {e}");
                        assert!(e.starts_with("422 ") && e.contains("\"rrd\""), "{name} {yaml}: {e}");
                    }
                }
            }
        }
    }
    // The declared RRD deviations did happen, and only those.
    assert!(deviations.iter().any(|d| d.starts_with("heartbeat")), "{deviations:?}");
    assert!(deviations.iter().any(|d| d.starts_with("DERIVE")), "{deviations:?}");

    // A stopped server: 502 naming the backend.
    let p = plan(&b.registry, "{ metric: load, function: avg }");
    let grid = TimeGrid::new(b.t0 * 1000, (b.t0 + 3600) * 1000, 60_000).unwrap();
    let Backends { mut influxd, mut rrd, influx, rrdcached, .. } = b;
    assert!(influxd.process.terminate(Duration::from_secs(20)));
    assert!(rrd.process.terminate(Duration::from_secs(20)));
    for d in [&influx, &rrdcached] {
        let compiled = d.compile(&p, &grid).unwrap();
        let e = rt.block_on(d.execute(&compiled, &p, &grid)).unwrap_err();
        assert!(matches!(e, BackendError::Unreachable { .. }), "{e}");
        assert_eq!((e.http_status(), e.backend()), (502, d.backend()));
    }
}

#[test]
fn influxdb_garbage_and_silence_are_502_and_504() {
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
    let p = plan(&registry, "{ metric: load, function: avg }");
    let grid = TimeGrid::new(1_764_806_400_000, 1_764_810_000_000, 60_000).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = |reply: Reply| {
        let server = FaultServer::start(Vec::new(), reply);
        let d = influx_driver(&influx_sink_toml(server.url("").trim_end_matches('/')));
        let compiled = d.compile(&p, &grid).unwrap();
        let r = rt.block_on(d.execute(&compiled, &p, &grid));
        (r, server.requests())
    };
    let (r, requests) = run(Reply::with_body(200, "<html>not influx</html>"));
    let e = r.unwrap_err();
    assert!(matches!(e, BackendError::BadResponse { .. }) && e.to_string().contains("\"influx\""), "{e}");
    assert_eq!(requests.len(), 1);
    let form = String::from_utf8_lossy(&requests[0].body).into_owned();
    assert!(form.contains("epoch=ms") && form.contains("db=golden") && form.contains("q=SELECT"), "{form}");
    let (r, _) = run(Reply::with_body(
        200,
        r#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[1,"x"]]}]}]}"#,
    ));
    assert!(matches!(r, Err(BackendError::BadResponse { .. })), "{r:?}");
    let (r, _) = run(Reply::with_body(503, "overloaded"));
    let e = r.unwrap_err();
    assert!(matches!(&e, BackendError::Status { status: 503, body, .. } if body == "overloaded"), "{e}");
    let (r, _) = run(Reply::Hang);
    let e = r.unwrap_err();
    assert!(matches!(e, BackendError::Timeout { .. }) && e.http_status() == 504, "{e}");
}

#[test]
fn rrdcached_garbage_and_silence_are_502_and_504() {
    use std::io::{BufRead, BufReader, Write};
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
    let p = plan(&registry, "{ metric: load, function: avg }");
    let grid = TimeGrid::new(1_764_806_400_000, 1_764_810_000_000, 60_000).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A fake rrdcached on a unix socket: answers each line with `answer(line)`, or never.
    let run = |answer: fn(&str) -> Option<String>| {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fake.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(4).flatten() {
                std::thread::spawn(move || {
                    let mut w = stream.try_clone().unwrap();
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        match answer(&line) {
                            Some(a) => {
                                let _ = w.write_all(a.as_bytes());
                            }
                            None => std::thread::sleep(Duration::from_secs(10)),
                        }
                    }
                });
            }
        });
        let d = rrd_driver(&rrd_sink_toml(&format!("unix:{}", sock.display())));
        let compiled = d.compile(&p, &grid).unwrap();
        rt.block_on(d.execute(&compiled, &p, &grid))
    };
    let e = run(|_| Some("garbage\n".into())).unwrap_err();
    assert!(matches!(e, BackendError::BadResponse { .. }) && e.to_string().contains("\"rrd\""), "{e}");
    // A listing, then a FETCH answer that is not one.
    let e = run(|line| {
        Some(if line.starts_with("LIST") {
            "1 RRDs\nh1/load.rrd\n".into()
        } else if line.starts_with("INFO") {
            "2 Info\nstep 1 60\nds[load1].type 2 GAUGE\n".into()
        } else {
            "2 Success\nStart: x\nStep: 60\n".into()
        })
    })
    .unwrap_err();
    assert!(matches!(&e, BackendError::BadResponse { message, .. } if message.contains("h1/load.rrd")), "{e}");
    let e = run(|_| None).unwrap_err();
    assert!(matches!(e, BackendError::Timeout { .. }) && e.http_status() == 504, "{e}");
    // Nobody listening.
    let d = rrd_driver(&rrd_sink_toml("unix:/nonexistent/tsrelay-test.sock"));
    let compiled = d.compile(&p, &grid).unwrap();
    let e = rt.block_on(d.execute(&compiled, &p, &grid)).unwrap_err();
    assert!(matches!(e, BackendError::Unreachable { .. }) && e.http_status() == 502, "{e}");
}

/// Label values that try to end the string, the regex or the statement are
/// matched as plain text by a real influxd: equality, regex and negation each
/// select exactly the series they name.
#[test]
fn influxdb_filter_values_cannot_escape_their_quotes() {
    use tsrelay::model::{Labels, Sample};
    let dir = tempfile::tempdir().unwrap();
    let influxd = Influxd::start(dir.path(), 0);
    influxd.create_database("golden");
    // (A value ending in a backslash is left out: influxd 1.6 refuses such a tag at write time.)
    let values = [
        "plain",
        "a'b",
        "x' OR host =~ /.*/ --",
        "back\\slash",
        "sla/sh",
        "q\"uote",
        "semi;colon",
        "it's \\' OR '1'='1",
    ];
    let t0 = t0();
    let mut body = Vec::new();
    for v in values {
        let labels: Labels = [("__name__", "node_load1"), ("host", v)].into_iter().collect();
        let s = Sample::new(labels, 1.0, (t0 + 60) * 1000);
        assert!(tsrelay::sinks::line_protocol::encode_sample(&s, "node_load1", "value", &mut body));
    }
    assert_eq!(influxd.write("golden", &String::from_utf8(body).unwrap()), 204);
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
    let d = influx_driver(&influx_sink_toml(&influxd.url()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let grid = TimeGrid::new(t0 * 1000, (t0 + 120) * 1000, 60_000).unwrap();
    let hosts = |filter: String| -> Vec<String> {
        let yaml = format!("{{ metric: load, function: last, filter: {{ host: {filter} }} }}");
        let p = plan(&registry, &yaml);
        let out = render(&rt, d.as_ref(), &p, &grid).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        out.into_iter().map(|s| s.labels.get("host").cloned().unwrap_or_default()).collect()
    };
    let quoted = |s: &str| serde_json::to_string(s).unwrap();
    for v in values {
        assert_eq!(hosts(quoted(v)), vec![v.to_string()], "= {v}");
        assert_eq!(hosts(quoted(&format!("=~{}", regex::escape(v)))), vec![v.to_string()], "=~ {v}");
        let mut others: Vec<String> = values.iter().filter(|o| **o != v).map(|o| o.to_string()).collect();
        others.sort();
        assert_eq!(hosts(quoted(&format!("!={v}"))), others, "!= {v}");
    }
}

/// The rrdcached driver's buckets are the rows `rrdtool fetch` shows (a row at
/// `t` covers `(t − step, t]`), and a range the fine archive no longer reaches
/// is refused with 422 once rrdcached answers from a coarser one.
#[test]
fn rrdcached_buckets_are_rrdtool_fetch_rows_and_coarse_archives_are_422() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let rrd = Rrdcached::start(dir.path());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let end = now / 300 * 300;
    let file = "h1/load.rrd";
    {
        let mut sock = std::os::unix::net::UnixStream::connect(&rrd.socket).unwrap();
        let mut reader = BufReader::new(sock.try_clone().unwrap());
        let mut send = |cmd: String| {
            sock.write_all(cmd.as_bytes()).unwrap();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(!line.starts_with('-'), "{cmd}: {line}");
        };
        // 30 one-minute rows, 300 five-minute rows.
        send(format!(
            "CREATE {} -b {} -s 60 -O DS:load1:GAUGE:120:U:U RRA:AVERAGE:0.5:1:30 RRA:AVERAGE:0.5:5:300\n",
            rrd.base.join(file).display(),
            end - 7200 - 1
        ));
        let points: String =
            (0..=120).map(|k| format!(" {}:{}", end - 7200 + 60 * k, (k % 11) as f64 * 0.25)).collect();
        send(format!("UPDATE {}{points}\n", rrd.base.join(file).display()));
    }
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
    let d = rrd_driver(&rrd_sink_toml(&rrd.unix_address()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = plan(&registry, "{ metric: load, function: avg }");

    // The last 20 minutes at 60 s: exactly rrdtool's rows.
    let grid = TimeGrid::new((end - 1200) * 1000, end * 1000, 60_000).unwrap();
    let got = render(&rt, d.as_ref(), &p, &grid).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, BTreeMap::from([("host".to_string(), "h1".to_string())]));
    let rows: Vec<(i64, Option<f64>)> =
        rrd.fetch(file, "AVERAGE", end - 1200, end).into_iter().filter(|(t, _)| *t > end - 1200 && *t <= end).collect();
    let points: Vec<(i64, Option<f64>)> = got[0].points.iter().map(|&(t, v)| (t / 1000, v)).collect();
    assert_eq!(points, rows);
    assert!(points.iter().all(|p| p.1.is_some()));

    // Two hours at 60 s: the one-minute archive does not reach back; rrdcached
    // answers with five-minute rows, which cannot make one-minute buckets.
    let grid = TimeGrid::new((end - 7200) * 1000, end * 1000, 60_000).unwrap();
    let e = render(&rt, d.as_ref(), &p, &grid).unwrap_err();
    assert!(e.starts_with("422 ") && e.contains("300s rows") && e.contains(file), "{e}");
    // At 300 s the same range is served, from the five-minute archive.
    let grid = TimeGrid::new((end - 7200) * 1000, end * 1000, 300_000).unwrap();
    let got = render(&rt, d.as_ref(), &p, &grid).unwrap();
    let rows = rrd.fetch(file, "AVERAGE", end - 7200, end);
    let known: Vec<(i64, Option<f64>)> = rows.into_iter().filter(|(t, _)| *t > end - 7200 && *t <= end).collect();
    let points: Vec<(i64, Option<f64>)> = got[0].points.iter().map(|&(t, v)| (t / 1000, v)).collect();
    assert_eq!(points, known);
}
