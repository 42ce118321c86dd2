//! What the four stages add to the skeleton's per-sample cost, on 1,000,000
//! active series (issue 3: at most +30 %).
//!
//! One pipeline with one shard on a current-thread runtime: all of it runs
//! on one thread, whose CPU time (from /proc/thread-self/schedstat, so other
//! processes on a busy machine do not count) is the figure. Each timed sample goes the skeleton's whole way:
//! protobuf bytes → `tsrelay.v1.WriteRequest` → samples (the gRPC receiver's
//! decoder) → ingest queue → [stages] → shard → fanout → a sink queue →
//! line-protocol encoding (the file sink's encoder). Once with no stages
//! (`Stages::none()`), once with the stages `stages::build` makes from the
//! default config. Every series is known before the clock starts and every
//! timed sample is newer than its series' last one (the steady state).
//!
//! Run: `cargo bench --bench pipeline` (release profile).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use figment::providers::{Format, Toml};
use prost::Message;
use tsrelay::model::{Batch, now_ms};
use tsrelay::pipeline::{self, PipelineConfig, PipelineInput, Stages, stages};
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest};
use tsrelay::queue::{Ledger, MemoryQueue, SinkQueue, WhenFull};
use tsrelay::receivers::grpc::decode_request;
use tsrelay::registry::MetricRegistry;
use tsrelay::sinks::line_protocol::encode_sample;
use tsrelay::telemetry::SinkMetrics;

const SERIES: usize = 1_000_000;
const PER_REQUEST: usize = 1000;

/// One request of `PER_REQUEST` series starting at `first`, one sample each.
fn request(first: usize, ts: i64) -> Vec<u8> {
    let series = (first..first + PER_REQUEST)
        .map(|i| {
            let label = |n: &str, v: String| Label { name: n.into(), value: v };
            Series {
                labels: vec![
                    label("__name__", format!("node_metric_{}", i % 200)),
                    label("instance", format!("10.{}.{}.{}:9100", i / 65536 % 256, i / 256 % 256, i % 256)),
                    label("job", "node".into()),
                    label("cpu", format!("{}", i / 200 % 16)),
                ],
                samples: vec![Sample { value: (ts % 100_000) as f64, timestamp: ts }],
                r#type: if i % 2 == 0 { MetricType::Counter } else { MetricType::Gauge } as i32,
                unit: String::new(),
            }
        })
        .collect();
    WriteRequest { series, id: 0 }.encode_to_vec()
}

fn config() -> PipelineConfig {
    figment::Figment::from(Toml::string(&format!(
        "receivers = [\"bench\"]\nsinks = [\"bench\"]\nshards = 1\n[cardinality]\nmax_series = {SERIES}\nmax_series_per_metric = {SERIES}\n"
    )))
    .extract()
    .expect("bench pipeline config")
}

async fn send_all(input: &PipelineInput, requests: &[Vec<u8>]) {
    for bytes in requests {
        let decoded = decode_request(WriteRequest::decode(bytes.as_slice()).expect("decode"), now_ms());
        input.send(Batch::new(decoded.samples)).await.expect("pipeline open");
    }
}

async fn wait_for(delivered: &AtomicUsize, n: usize) {
    while delivered.load(Ordering::Relaxed) < n {
        tokio::task::yield_now().await;
    }
}

/// CPU time the calling thread has used so far.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat (Linux)");
    let ns: u64 = stat.split_whitespace().next().and_then(|f| f.parse().ok()).expect("schedstat runtime field");
    Duration::from_nanos(ns)
}

/// CPU time to push `timed` through the pipeline after `warmup`.
fn run(stages: Stages, warmup: &[Vec<u8>], timed: &[Vec<u8>]) -> Duration {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let queue = Arc::new(SinkQueue::Memory(MemoryQueue::new(
            4 * PER_REQUEST * 64,
            WhenFull::Block,
            Ledger::new(SinkMetrics::new("bench")),
        )));
        let mut running = pipeline::spawn("bench", &config(), stages, vec![queue.clone()]);
        let delivered = Arc::new(AtomicUsize::new(0));
        let consumer = {
            let (queue, delivered) = (queue.clone(), delivered.clone());
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(1 << 20);
                while let Some(batch) = queue.pop().await {
                    out.clear();
                    for s in &batch.batch.samples {
                        encode_sample(s, s.name(), "value", &mut out);
                    }
                    delivered.fetch_add(batch.len(), Ordering::Relaxed);
                }
            })
        };
        send_all(&running.input, warmup).await;
        wait_for(&delivered, warmup.len() * PER_REQUEST).await;
        let start = thread_cpu();
        send_all(&running.input, timed).await;
        wait_for(&delivered, (warmup.len() + timed.len()) * PER_REQUEST).await;
        let elapsed = thread_cpu() - start;
        drop(running.input);
        while running.tasks.join_next().await.is_some() {}
        queue.close();
        let _ = consumer.await;
        elapsed
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects nothing here.
    let t0 = now_ms() - 3_600_000;
    let requests =
        |ts: i64| -> Vec<Vec<u8>> { (0..SERIES / PER_REQUEST).map(|r| request(r * PER_REQUEST, ts)).collect() };
    let warmup = requests(t0);
    let timed = requests(t0 + 1000);
    let samples = (SERIES) as f64;
    let mut results = Vec::new();
    for round in 0..3 {
        let none = run(Stages::none(), &warmup, &timed);
        let registry = Arc::new(MetricRegistry::empty());
        let with = run(stages::build("bench", &config(), registry), &warmup, &timed);
        let (a, b) = (none.as_secs_f64() * 1e9 / samples, with.as_secs_f64() * 1e9 / samples);
        println!(
            "round {round}: skeleton {a:.0} ns/sample ({:.2} M/s), with stages {b:.0} ns/sample ({:.2} M/s), +{:.1} %",
            1e3 / a,
            1e3 / b,
            (b / a - 1.0) * 100.0
        );
        results.push((a, b));
    }
    let best = |f: fn(&(f64, f64)) -> f64| results.iter().map(f).fold(f64::INFINITY, f64::min);
    let (a, b) = (best(|r| r.0), best(|r| r.1));
    println!(
        "best of 3 on {SERIES} active series: skeleton {a:.0} ns/sample, with the four stages {b:.0} ns/sample: +{:.1} %",
        (b / a - 1.0) * 100.0
    );
}
