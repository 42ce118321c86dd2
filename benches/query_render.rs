//! Read side (DESIGN §6, issue 14): a render of 500 series × 288 points from a
//! real Prometheus, p50 and p99, wall time and this process' CPU time (the
//! driver's parsing and the neutral layer; Prometheus is another process).
//!
//! `cargo bench --bench query_render` (needs `prometheus` and `promtool`:
//! apt-get install -y prometheus). Data: 500 counters and 500 gauges, one sample
//! a minute for 24 h, backfilled with `promtool tsdb create-blocks-from openmetrics`.

#[path = "common/cpu_clock.rs"]
mod cpu_clock;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_clock::{CpuClock, cpu_time};
use tsrelay::query::backends::Driver;
use tsrelay::query::backends::prometheus::PrometheusDriver;
use tsrelay::query::config::QueryConfig;
use tsrelay::query::graphs::GraphStore;
use tsrelay::query::request::RenderRequest;
use tsrelay::query::service::QueryService;
use tsrelay::registry::MetricRegistry;

const SERIES: usize = 500;
const HOUR: i64 = 3_600_000;
const RUNS: usize = 40;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn backfill(dir: &Path, end_ms: i64) {
    let mut om = String::new();
    om.push_str("# TYPE bench_octets counter\n");
    let start = end_ms - 24 * HOUR - HOUR;
    for i in 0..SERIES {
        for k in 0..=(25 * 60) {
            let t = start + k * 60_000;
            let _ = writeln!(
                om,
                "bench_octets_total{{device=\"d{}\",port=\"p{}\"}} {} {}",
                i / 10,
                i % 10,
                (k * (i as i64 + 1) * 60) as f64,
                t / 1000
            );
        }
    }
    om.push_str("# TYPE bench_load gauge\n");
    for i in 0..SERIES {
        for k in 0..=(25 * 60) {
            let t = start + k * 60_000;
            let _ =
                writeln!(om, "bench_load{{host=\"h{i}\"}} {} {}", ((k * 37 + i as i64) % 100) as f64 / 4.0, t / 1000);
        }
    }
    om.push_str("# EOF\n");
    let file = dir.join("data.om");
    std::fs::write(&file, om).unwrap();
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .status()
        .expect("promtool (apt-get install -y prometheus)");
    assert!(status.success(), "promtool backfill failed");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let end = now / HOUR * HOUR - 3 * HOUR;
    backfill(dir.path(), end);
    let port = free_port();
    std::fs::write(dir.path().join("prometheus.yml"), "global: {scrape_interval: 15s}\nscrape_configs: []\n").unwrap();
    let _prom = Kill(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=30d")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install -y prometheus)"),
    );
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("http://127.0.0.1:{port}/-/ready"))
        .send()
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let registry_path = dir.path().join("metrics.yaml");
    std::fs::write(
        &registry_path,
        "metrics:\n- key: bench.octets\n  name: bench_octets_total\n  type: counter\n  labels: [device, port]\n\
         - key: bench.load\n  name: bench_load\n  type: gauge\n  labels: [host]\n",
    )
    .unwrap();
    let registry = Arc::new(MetricRegistry::load(&registry_path).unwrap());
    let driver = PrometheusDriver::new(
        "prom",
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        reqwest::Client::new(),
        Default::default(),
    );
    let drivers: BTreeMap<String, Arc<dyn Driver>> = [("prom".to_string(), Arc::new(driver) as Arc<dyn Driver>)].into();
    let service = QueryService::new(registry, GraphStore::default(), drivers, BTreeMap::new(), QueryConfig::default());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();

    let cases = [
        ("avg, 500 series (PromQL avg_over_time)", r#"{"metric": "bench.load", "function": "avg"}"#),
        ("rate, 500 series (raw samples, bucketed by tsrelay)", r#"{"metric": "bench.octets", "function": "rate"}"#),
        ("rate, sum by device (50 lines)", r#"{"metric": "bench.octets", "function": "rate", "group_by": ["device"]}"#),
    ];
    println!("render of 24 h at 5 m (288 points) from Prometheus, {RUNS} runs each");
    for (name, series) in cases {
        let req: RenderRequest = serde_json::from_str(&format!(
            r#"{{"graph": {{"id": "b", "series": [{series}]}}, "backend": "prom", "start": {}, "end": {end}, "step": "5m"}}"#,
            end - 24 * HOUR
        ))
        .unwrap();
        let mut walls = Vec::new();
        let mut cpus = Vec::new();
        let mut lines = 0;
        for run in 0..RUNS + 3 {
            let (w0, c0) = (Instant::now(), cpu_time(CpuClock::Process));
            let r = runtime.block_on(service.render(&req, now)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (w, c) =
                (w0.elapsed().as_secs_f64() * 1000.0, (cpu_time(CpuClock::Process) - c0).as_secs_f64() * 1000.0);
            lines = r.series.len();
            assert!(r.series.iter().all(|s| s.points.len() == 288));
            if run >= 3 {
                walls.push(w);
                cpus.push(c);
            }
        }
        walls.sort_by(f64::total_cmp);
        cpus.sort_by(f64::total_cmp);
        println!(
            "{name}: {lines} lines; wall p50 {:.1} ms p99 {:.1} ms; tsrelay CPU p50 {:.1} ms p99 {:.1} ms",
            percentile(&walls, 0.5),
            percentile(&walls, 0.99),
            percentile(&cpus, 0.5),
            percentile(&cpus, 0.99)
        );
    }
}
