//! Per-sample cost of the pipeline stages.
//!
//! - `normalize_validate/*`: the stateless stages on batches of 1000 samples,
//!   clean (already normalized: only checks, no writes) and dirty (unsorted,
//!   invalid names, a label to drop, a static label to add).
//! - `cardinality_monotonic/*`: the stateful stages of one shard tracking
//!   1,000,000 (or 10,000) active series, every sample a known series with a
//!   newer timestamp (the steady state).
//!
//! Run: `cargo bench --bench stages`.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use figment::providers::{Format, Toml};
use tsrelay::model::{Labels, MetricKind, Sample, now_ms};
use tsrelay::pipeline::stages::{
    Cardinality, CardinalityConfig, CardinalityShared, Monotonic, MonotonicConfig, Normalize, NormalizeConfig,
    Validate, ValidateConfig,
};
use tsrelay::pipeline::{DropTally, StatefulStage, StatelessStage};
use tsrelay::registry::MetricRegistry;

const BATCH: usize = 1000;

fn registry() -> Arc<MetricRegistry> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/metrics.yaml");
    Arc::new(MetricRegistry::load(&path).expect("shipped registry"))
}

fn normalize_config() -> NormalizeConfig {
    figment::Figment::from(Toml::string(
        r#"
static_labels = { cluster = "c1" }
[[relabel]]
action = "labeldrop"
regex = "tmp_.*"
"#,
    ))
    .extract()
    .expect("bench normalize config")
}

/// Node-exporter-like samples: runs of 10 samples per metric name, 5 labels.
fn clean_batch() -> Vec<Sample> {
    let now = now_ms();
    (0..BATCH)
        .map(|i| {
            let mut l = Labels::with_capacity(5, 80);
            l.push("__name__", format!("node_metric_{}", i / 10 % 50));
            l.push("cluster", "c1");
            l.push("instance", format!("10.0.{}.{}:9100", i % 7, i % 250));
            l.push("job", "node");
            l.push("mode", ["idle", "user", "system", "iowait"][i % 4]);
            l.sort();
            Sample { labels: l, value: i as f64, timestamp_ms: now, kind: MetricKind::Gauge }
        })
        .collect()
}

/// The same data as receivers might hand it over: unsorted, dotted names,
/// a temporary label to drop, the static label missing.
fn dirty_batch() -> Vec<Sample> {
    let now = now_ms();
    (0..BATCH)
        .map(|i| {
            let mut l = Labels::with_capacity(5, 80);
            l.push("mode", ["idle", "user", "system", "iowait"][i % 4]);
            l.push("job", "node");
            l.push("tmp_scrape", "x");
            l.push("instance.addr", format!("10.0.{}.{}:9100", i % 7, i % 250));
            l.push("__name__", format!("node.metric-{}", i / 10 % 50));
            Sample { labels: l, value: i as f64, timestamp_ms: now, kind: MetricKind::Gauge }
        })
        .collect()
}

fn stateless(c: &mut Criterion) {
    let normalize = Normalize::new(&normalize_config());
    let validate = Validate::new("bench", &ValidateConfig::default(), registry());
    let mut group = c.benchmark_group("normalize_validate");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (name, batch) in [("clean", clean_batch()), ("dirty", dirty_batch())] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || batch.clone(),
                |mut samples| {
                    let mut drops = DropTally::default();
                    normalize.process(&mut samples, &mut drops);
                    validate.process(&mut samples, &mut drops);
                    assert_eq!(samples.len(), BATCH);
                    black_box(samples)
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// Synthetic series hashes: the stateful stages key on them and read labels
/// only for new series, so one small label set can stand in for all series.
fn series_hash(i: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
}

fn template() -> Vec<Sample> {
    (0..BATCH)
        .map(|i| {
            let mut l = Labels::with_capacity(2, 32);
            l.push("__name__", format!("metric_{}", i % 100));
            l.push("series", format!("{i}"));
            l.sort();
            let kind = if i % 2 == 0 { MetricKind::Counter } else { MetricKind::Gauge };
            Sample { labels: l, value: 0.0, timestamp_ms: 0, kind }
        })
        .collect()
}

fn stateful(c: &mut Criterion) {
    let mut group = c.benchmark_group("cardinality_monotonic");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30).measurement_time(Duration::from_secs(10));
    for active in [10_000u64, 1_000_000] {
        let config = CardinalityConfig {
            max_series: active,
            max_series_per_metric: (active / 50) as u32,
            ..CardinalityConfig::default()
        };
        let shared = CardinalityShared::new("bench", &config, 1);
        let shard = shared.new_shard();
        let mut cardinality = Cardinality::new(shared.clone(), shard.clone());
        let mut monotonic = Monotonic::new("bench", &MonotonicConfig::default(), shard);
        let template = template();
        let mut round = 0i64;
        let mut next = 0u64;
        let batch = |round: i64, next: &mut u64| {
            let mut samples = template.clone();
            let mut hashes = Vec::with_capacity(BATCH);
            for s in samples.iter_mut() {
                s.timestamp_ms = 1_000 + round;
                s.value = round as f64;
                hashes.push(series_hash(*next));
                *next = (*next + 1) % active;
            }
            (samples, hashes)
        };
        // Warm up: every series known once.
        for _ in 0..active.div_ceil(BATCH as u64) {
            let (mut s, mut h) = batch(round, &mut next);
            let mut drops = DropTally::default();
            cardinality.process(&mut s, &mut h, &mut drops);
            monotonic.process(&mut s, &mut h, &mut drops);
        }
        assert_eq!(shared.series(), active);
        group.bench_function(format!("{active}_series"), |b| {
            b.iter_batched(
                || {
                    if next == 0 {
                        round += 1;
                    }
                    batch(round, &mut next)
                },
                |(mut samples, mut hashes)| {
                    let mut drops = DropTally::default();
                    cardinality.process(&mut samples, &mut hashes, &mut drops);
                    monotonic.process(&mut samples, &mut hashes, &mut drops);
                    black_box((samples, hashes))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, stateless, stateful);
criterion_main!(benches);
