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
use tsrelay::codecs::protobuf::decode_request;
use tsrelay::model::{Batch, now_ms};
use tsrelay::pipeline::{self, PipelineConfig, PipelineInput, Stages, stages};
use tsrelay::proto::v1::{Label, MetricType, Sample, Series, WriteRequest};
use tsrelay::queue::{Ledger, MemoryQueue, SinkQueue, WhenFull};
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

/// CPU time to push every pass of `timed` through the pipeline after `warmup`.
fn run(stages: Stages, warmup: &[Vec<u8>], timed: &[Vec<Vec<u8>>]) -> Duration {
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
        let mut expected = warmup.len() * PER_REQUEST;
        for pass in timed {
            send_all(&running.input, pass).await;
            expected += pass.len() * PER_REQUEST;
        }
        wait_for(&delivered, expected).await;
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
    // Without it (`cargo test --benches`) one round checks the bench still runs.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let t0 = now_ms() - 3_600_000;
    let requests =
        |ts: i64| -> Vec<Vec<u8>> { (0..SERIES / PER_REQUEST).map(|r| request(r * PER_REQUEST, ts)).collect() };
    let warmup = requests(t0);
    const PASSES: i64 = 3;
    let timed: Vec<Vec<Vec<u8>>> = (1..=PASSES).map(|pass| requests(t0 + pass * 1000)).collect();
    let samples = (SERIES as i64 * PASSES) as f64;
    let mut results = Vec::new();
    // PROFILE_ONLY=skeleton|stages runs one side, e.g. under `perf record`.
    let only = std::env::var("PROFILE_ONLY").ok();
    let skip = |side: &str| only.as_deref().is_some_and(|o| o != side);
    for round in 0..if smoke { 1 } else { 3 } {
        let none = if skip("skeleton") { Duration::from_secs(1) } else { run(Stages::none(), &warmup, &timed) };
        let registry = Arc::new(MetricRegistry::empty());
        let with = if skip("stages") {
            Duration::from_secs(1)
        } else {
            run(stages::build("bench", &config(), registry), &warmup, &timed)
        };
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
        "best of {} runs of {PASSES} passes over {SERIES} active series: skeleton {a:.0} ns/sample, with the four stages {b:.0} ns/sample: +{:.1} %",
        results.len(),
        (b / a - 1.0) * 100.0
    );
    if only.is_none() && !smoke {
        stage_costs(&warmup, &timed);
    }
}

/// CPU time of the stages alone, per sample, on the same data: the
/// stateless pair on batches as the receiver decodes them, the stateful
/// pair on one shard tracking all series.
fn stage_costs(warmup: &[Vec<u8>], timed: &[Vec<Vec<u8>>]) {
    let decode = |requests: &[Vec<u8>]| -> Vec<Vec<tsrelay::model::Sample>> {
        requests
            .iter()
            .map(|b| decode_request(WriteRequest::decode(b.as_slice()).expect("decode"), now_ms()).samples)
            .collect()
    };
    let mut drops = tsrelay::pipeline::DropTally::default();
    let built = stages::build("bench-stages", &config(), Arc::new(MetricRegistry::empty()));
    let mut stateful = (built.stateful)(0);
    let per_sample = |cpu: Duration, n: usize| cpu.as_secs_f64() * 1e9 / n as f64;
    let mut stateless_ns = Vec::new();
    let mut stateful_ns = Vec::new();
    for (i, requests) in std::iter::once(warmup).chain(timed.iter().map(Vec::as_slice)).enumerate() {
        let mut batches = decode(requests);
        let n: usize = batches.iter().map(Vec::len).sum();
        let start = thread_cpu();
        for b in batches.iter_mut() {
            for stage in &built.stateless {
                stage.process(b, &mut drops);
            }
        }
        let stateless = thread_cpu() - start;
        let mut hashed: Vec<(Vec<tsrelay::model::Sample>, Vec<u64>)> = batches
            .into_iter()
            .map(|b| {
                let h = b.iter().map(|s| s.labels.series_hash()).collect();
                (b, h)
            })
            .collect();
        let start = thread_cpu();
        for (samples, hashes) in hashed.iter_mut() {
            for stage in stateful.iter_mut() {
                stage.process(samples, hashes, &mut drops);
            }
        }
        let stateful_cpu = thread_cpu() - start;
        assert!(drops.is_empty(), "the bench data passes every stage");
        // The first pass admits every series; later ones are the steady state.
        if i > 0 {
            stateless_ns.push(per_sample(stateless, n));
            stateful_ns.push(per_sample(stateful_cpu, n));
        } else {
            println!(
                "admitting {n} new series: normalize+validate {:.0} ns/sample, cardinality+monotonic {:.0} ns/sample",
                per_sample(stateless, n),
                per_sample(stateful_cpu, n)
            );
        }
    }
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "steady state on {SERIES} series: normalize+validate {:.0} ns/sample, cardinality+monotonic {:.0} ns/sample (best pass)",
        min(&stateless_ns),
        min(&stateful_ns)
    );
}
