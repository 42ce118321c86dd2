//! Render latency of the three read drivers (Prometheus, InfluxDB 1.x,
//! rrdcached) against real servers: 500 series × 288 points (a 288-minute grid
//! at 60 s, `avg` of a gauge, one sample per series and minute on the minute),
//! each render = capability check, compile, execute (all backend I/O),
//! normalize. The data is loaded once per backend before anything is measured
//! (Prometheus: backfilled with `promtool tsdb create-blocks-from openmetrics`;
//! InfluxDB: line protocol on `/write`; rrdcached: `CREATE` + `UPDATE`). Prints
//! p50/p99 wall time and this process's CPU time per render (utime + stime of
//! every thread, `CLOCK_PROCESS_CPUTIME_ID`; the servers are other processes).
//! The machine is shared: CPU time is the steadier figure. Needs prometheus +
//! promtool, influxd and rrdcached (scripts/install-test-deps).
//!
//! `cargo bench --bench query_drivers [-- RENDERS]` (default 40 renders per backend,
//! after 2 warm-ups); a short debug check: `cargo test --bench query_drivers -- 3`.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/cpu_clock.rs"]
mod cpu_clock;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::influxdb::Influxd;
use common::prometheus::Prometheus;
use common::rrdcached::Rrdcached;
use cpu_clock::{CpuClock, cpu_time};
use tsrelay::query::backends::Driver;
use tsrelay::query::backends::influxdb::InfluxdbDriver;
use tsrelay::query::backends::prometheus::PrometheusDriver;
use tsrelay::query::backends::rrdcached::RrdcachedDriver;
use tsrelay::query::grid::TimeGrid;
use tsrelay::query::model::GraphDef;
use tsrelay::query::normalize::normalize;
use tsrelay::query::validate::validate_graph;
use tsrelay::registry::MetricRegistry;

const SERIES: usize = 500;
const POINTS: i64 = 288;
const REGISTRY: &str = "metrics:\n  - key: load\n    name: bench_load\n    type: gauge\n    labels: [host]\n";

/// This process's CPU time (all threads), in seconds.
fn cpu_seconds() -> f64 {
    cpu_time(CpuClock::Process).as_secs_f64()
}

/// Backfills `dir/data` (the TSDB the Prometheus started on `dir` opens) with the
/// same samples as the other backends get, as OpenMetrics through promtool.
fn fill_prometheus(dir: &Path, t0: i64) {
    let promtool = common::require_binary("promtool", common::prometheus::INSTALL_HINT);
    let mut om = String::from("# TYPE bench_load gauge\n");
    for s in 0..SERIES {
        for k in 0..=POINTS {
            om.push_str(&format!("bench_load{{host=\"h{s:03}\"}} {} {}\n", (s as i64 + k) % 17, t0 + 60 * k));
        }
    }
    om.push_str("# EOF\n");
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("data.om");
    std::fs::write(&file, om).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.join("data"))
        .output()
        .expect("run promtool");
    assert!(out.status.success(), "promtool backfill failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn fill_influx(influxd: &Influxd, t0: i64) {
    influxd.create_database("bench");
    for chunk in (0..SERIES).collect::<Vec<_>>().chunks(50) {
        let mut body = String::new();
        for &s in chunk {
            for k in 0..=POINTS {
                body.push_str(&format!(
                    "bench_load,host=h{s:03} value={} {}\n",
                    (s as i64 + k) % 17,
                    (t0 + 60 * k) * 1_000_000_000
                ));
            }
        }
        assert_eq!(influxd.write("bench", &body), 204);
    }
}

fn fill_rrd(rrd: &Rrdcached, t0: i64) {
    let mut sock = std::os::unix::net::UnixStream::connect(&rrd.socket).expect("rrdcached socket");
    let mut reader = BufReader::new(sock.try_clone().unwrap());
    let mut line = String::new();
    let mut send = |cmd: String, reader: &mut BufReader<std::os::unix::net::UnixStream>| {
        sock.write_all(cmd.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with('-'), "{cmd}: {line}");
    };
    for s in 0..SERIES {
        let path = rrd.base.join(format!("h{s:03}/load.rrd"));
        send(
            format!("CREATE {} -b {} -s 60 -O DS:value:GAUGE:120:U:U RRA:AVERAGE:0.5:1:1440\n", path.display(), t0 - 1),
            &mut reader,
        );
        let mut points = String::new();
        for k in 0..=POINTS {
            points.push_str(&format!(" {}:{}", t0 + 60 * k, (s as i64 + k) % 17));
            if points.len() > 3000 || k == POINTS {
                send(format!("UPDATE {}{points}\n", path.display()), &mut reader);
                points.clear();
            }
        }
    }
}

fn measure(name: &str, driver: &Arc<dyn Driver>, registry: &MetricRegistry, grid: &TimeGrid, renders: usize) {
    let def: GraphDef = serde_norway::from_str("id: bench\nseries:\n  - { metric: load, function: avg }").unwrap();
    let plan = validate_graph(&def, registry).unwrap().series.remove(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut wall = Vec::with_capacity(renders);
    let mut cpu = Vec::with_capacity(renders);
    for i in 0..renders + 2 {
        let (w0, c0) = (Instant::now(), cpu_seconds());
        driver.capabilities().check(driver.backend(), &plan, grid).unwrap();
        let compiled = driver.compile(&plan, grid).unwrap();
        let raw = rt.block_on(driver.execute(&compiled, &plan, grid)).unwrap();
        let out = normalize(&plan, grid, &raw, None).unwrap();
        assert_eq!(out.len(), SERIES, "{name}: series");
        assert!(out.iter().all(|s| s.points.len() == POINTS as usize && s.points.iter().all(|p| p.1.is_some())));
        if i >= 2 {
            wall.push(w0.elapsed().as_secs_f64() * 1000.0);
            cpu.push((cpu_seconds() - c0) * 1000.0);
        }
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    println!(
        "{name}: {SERIES} series x {POINTS} points, {renders} renders: wall p50 {:.1} ms p99 {:.1} ms; tsrelay CPU p50 {:.0} ms p99 {:.0} ms",
        pct(&mut wall, 0.5),
        pct(&mut wall, 0.99),
        pct(&mut cpu, 0.5),
        pct(&mut cpu, 0.99)
    );
}

fn main() {
    let renders: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let t0 = (now - 6 * 3600) / 3600 * 3600;
    let grid = TimeGrid::new(t0 * 1000, (t0 + 60 * POINTS) * 1000, 60_000).unwrap();
    let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();

    fill_prometheus(&dir.path().join("prometheus"), t0);
    let prometheus = Prometheus::start(&dir.path().join("prometheus"));
    let prom: Arc<dyn Driver> = Arc::new(PrometheusDriver::new(
        "prom",
        format!("http://127.0.0.1:{}", prometheus.port).parse().unwrap(),
        reqwest::Client::new(),
        Default::default(),
    ));
    measure("prometheus 2.42", &prom, &registry, &grid, renders);
    drop(prometheus);

    let influxd = Influxd::start(dir.path(), 0);
    fill_influx(&influxd, t0);
    let c: tsrelay::sinks::influxdb::InfluxdbSinkConfig =
        toml::from_str(&format!("url = \"{}\"\ndatabase = \"bench\"\n", influxd.url())).unwrap();
    let influx = InfluxdbDriver::for_sink("influx", &c, &tsrelay::registry::MetricRegistry::empty(), Path::new("."))
        .unwrap()
        .unwrap();
    measure("influxdb 1.6", &influx, &registry, &grid, renders);
    drop(influxd);

    let rrd = Rrdcached::start(dir.path());
    fill_rrd(&rrd, t0);
    // The files as an rrdcached sink with this template writes them (data source `value`).
    let c: tsrelay::sinks::rrdcached::RrdcachedSinkConfig = toml::from_str(&format!(
        "address = \"{}\"\npath_template = \"{{host}}/load.rrd\"\nstep = \"60s\"\n",
        rrd.unix_address()
    ))
    .unwrap();
    let rrdcached = RrdcachedDriver::for_sink("rrd", &c, &tsrelay::registry::MetricRegistry::empty()).unwrap();
    measure("rrdcached 1.7", &rrdcached, &registry, &grid, renders);
}
