//! Per-sink queues: the memory queue against the disk queue on the same load,
//! in (push: encode + append), out (read + decode + settle) and through (both
//! at once, the reader keeping up), for each fsync policy. Figures: BENCHMARKS.md.
//!
//! The load: batches of 1000 samples, each a name and four labels, as the
//! shard tasks hand them to the fanout. Throughput is in samples; the disk
//! bytes per sample are printed once, to turn it into MB/s.
//!
//! Time is the process's CPU time (every thread: runtime workers, the disk
//! queue's reader and sync threads), so the figures are samples per
//! CPU-second like the budgets of DESIGN §6 and hold on a busy machine. Time
//! spent waiting for the disk is not CPU time: with `fsync = "always"` the
//! appends do not wait for it (only acknowledgements do).

#[path = "common/cpu_clock.rs"]
mod cpu_clock;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Batch, Labels, Sample};
use tsrelay::queue::{DiskQueue, DiskQueueOptions, FsyncPolicy, Ledger, MemoryQueue, WhenFull};
use tsrelay::telemetry::SinkMetrics;

const BATCH: usize = 1000;
const BATCHES: usize = 200;
const SAMPLES: usize = BATCH * BATCHES;

fn batches() -> Vec<Arc<Batch>> {
    (0..BATCHES)
        .map(|b| {
            let samples = (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    let mut labels: Labels = [
                        ("__name__", format!("bench_metric_{}", n % 100)),
                        ("host", format!("host-{:05}", n / 100)),
                        ("region", format!("r{}", n % 7)),
                        ("service", format!("svc-{}", n % 13)),
                        ("instance", format!("10.0.{}.{}:9100", n % 250, n % 200)),
                    ]
                    .into_iter()
                    .collect();
                    labels.sort();
                    Sample::new(labels, n as f64 * 0.5, 1_700_000_000_000 + n as i64 * 10)
                })
                .collect();
            Arc::new(Batch::new(samples))
        })
        .collect()
}

/// CPU time of the whole process.
fn process_cpu_time() -> Duration {
    cpu_clock::cpu_time(cpu_clock::CpuClock::Process)
}

fn ledger() -> Ledger {
    Ledger::new(SinkMetrics::new("bench"))
}

fn disk(dir: &std::path::Path, fsync: FsyncPolicy) -> DiskQueue {
    DiskQueue::open(dir, DiskQueueOptions::new(8 << 30, WhenFull::Block, fsync), ledger()).expect("open disk queue")
}

async fn drain_disk(q: &DiskQueue, samples: usize) {
    let mut seen = 0;
    while seen < samples {
        let item = q.pop().await.expect("queue ended early");
        seen += item.len();
        item.settle(item.len());
    }
}

const POLICIES: [(&str, FsyncPolicy); 3] = [
    ("never", FsyncPolicy::Never),
    ("interval_200ms", FsyncPolicy::Interval { interval_ms: 200 }),
    ("always", FsyncPolicy::Always),
];

fn queues(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let input = batches();

    {
        let dir = tempfile::tempdir().unwrap();
        let q = disk(dir.path(), FsyncPolicy::Never);
        rt.block_on(async {
            for b in &input {
                q.push(b.clone()).await;
            }
        });
        let (_, bytes) = q.len();
        println!("disk queue record bytes per sample: {:.1}", bytes as f64 / SAMPLES as f64);
    }

    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));

    group.bench_function("memory/through", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let q = Arc::new(MemoryQueue::new(SAMPLES * 2, WhenFull::Block, ledger()));
                    let start = process_cpu_time();
                    let consumer = {
                        let q = q.clone();
                        tokio::spawn(async move {
                            let mut seen = 0;
                            while seen < SAMPLES {
                                seen += q.pop().await.expect("open").0.len();
                            }
                        })
                    };
                    for b in &input {
                        q.push(b.clone()).await;
                    }
                    consumer.await.unwrap();
                    total += process_cpu_time() - start;
                }
                total
            })
        })
    });

    for (name, fsync) in POLICIES {
        group.bench_function(format!("disk_{name}/in"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let q = disk(dir.path(), fsync);
                        let start = process_cpu_time();
                        for b in &input {
                            q.push(b.clone()).await;
                        }
                        total += process_cpu_time() - start;
                    }
                    total
                })
            })
        });
    }

    group.bench_function("disk/out", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    {
                        let q = disk(dir.path(), FsyncPolicy::Never);
                        for b in &input {
                            q.push(b.clone()).await;
                        }
                    }
                    // Reopened: everything is read back from the segment files.
                    let q = disk(dir.path(), FsyncPolicy::Never);
                    let start = process_cpu_time();
                    drain_disk(&q, SAMPLES).await;
                    total += process_cpu_time() - start;
                }
                total
            })
        })
    });

    for (name, fsync) in POLICIES {
        group.bench_function(format!("disk_{name}/through"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dir = tempfile::tempdir().unwrap();
                        let q = Arc::new(disk(dir.path(), fsync));
                        let start = process_cpu_time();
                        let consumer = {
                            let q = q.clone();
                            tokio::spawn(async move { drain_disk(&q, SAMPLES).await })
                        };
                        for b in &input {
                            q.push(b.clone()).await;
                        }
                        consumer.await.unwrap();
                        total += process_cpu_time() - start;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, queues);
criterion_main!(benches);
