//! The pipeline frame alone: ingest queue → label sort + series hash → shard
//! split → fanout into a sink queue drained by a consumer. No stages, no sink
//! encoding: this is the floor every stage and sink adds to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Batch, Labels, Sample};
use tsrelay::pipeline::{self, PipelineConfig, Stages};
use tsrelay::queue::{Ledger, MemoryQueue, SinkQueue, WhenFull};
use tsrelay::telemetry::SinkMetrics;

const BATCH: usize = 10_000;
const SERIES: usize = 200_000;

fn batches() -> Vec<Vec<Sample>> {
    (0..SERIES / BATCH)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let labels: Labels = [
                        ("__name__", format!("bench_metric_{}", n % 100)),
                        ("host", format!("host-{:05}", n / 100)),
                        ("region", format!("r{}", n % 7)),
                        ("service", format!("svc-{}", n % 13)),
                    ]
                    .into_iter()
                    .collect();
                    Sample::new(labels, n as f64, 1_700_000_000_000)
                })
                .collect()
        })
        .collect()
}

fn frame(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let input_batches = batches();
    let mut group = c.benchmark_group("pipeline_frame");
    group.throughput(Throughput::Elements(SERIES as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for shards in [1usize, 2] {
        group.bench_function(format!("{shards}_shards_200k_samples"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let queue = Arc::new(SinkQueue::Memory(MemoryQueue::new(
                        10_000_000,
                        WhenFull::Block,
                        Ledger::new(SinkMetrics::new("bench")),
                    )));
                    let config: PipelineConfig =
                        toml::from_str(&format!("receivers = [\"r\"]\nsinks = [\"s\"]\nshards = {shards}")).unwrap();
                    let running = pipeline::spawn("bench", &config, Stages::none(), vec![queue.clone()]);
                    let total = iters as usize * SERIES;
                    let consumer = {
                        let queue = queue.clone();
                        tokio::spawn(async move {
                            let mut seen = 0;
                            while seen < total {
                                match queue.pop().await {
                                    Some(b) => seen += b.len(),
                                    None => break,
                                }
                            }
                        })
                    };
                    // Cloning the input is not what is measured.
                    let prepared: Vec<Batch> =
                        (0..iters).flat_map(|_| input_batches.iter().map(|s| Batch::new(s.clone()))).collect();
                    let start = Instant::now();
                    for batch in prepared {
                        running.input.send(batch).await.unwrap();
                    }
                    consumer.await.unwrap();
                    let elapsed = start.elapsed();
                    queue.close();
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
