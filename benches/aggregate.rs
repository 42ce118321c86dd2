//! Cost of the aggregate stage per sample, at 200,000 active series in one
//! shard (the steady state: every bucket exists, samples fold into it).
//!
//! - `aggregate/rules_N`: N hourly rules (`count, sum, min, max, avg`, `by = [host]`)
//!   matching every sample (each on its own metric-name selector, so N name
//!   lookups hit); the per-rule cost is the slope between N = 1 and N = 4.
//! - `aggregate/increase`: one rule with `increase, rate` (a counter table lookup more).
//! - `aggregate/no_match`: four rules for other metric names: the cost a
//!   sample pays when nothing matches (one name lookup).
//!
//! Run: `cargo bench --bench aggregate`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Labels, MetricKind, Sample, now_ms};
use tsrelay::pipeline::DropTally;
use tsrelay::pipeline::stages::{Aggregate, AggregateRule, AggregateShared};

const SERIES: usize = 200_000;
const BATCH: usize = 1000;

fn rules(text: &str) -> Vec<AggregateRule> {
    #[derive(serde::Deserialize)]
    struct Wrap {
        aggregate: Vec<AggregateRule>,
    }
    toml::from_str::<Wrap>(text).expect("bench rules").aggregate
}

fn rule(name: &str, metric: &str, outputs: &str) -> String {
    format!(
        "[[aggregate]]\nname = '{name}'\nmatch = '{metric}'\ninterval = '1h'\nby = ['host']\nmax_series = 1000000\noutputs = [{outputs}]\n"
    )
}

/// 200,000 series: 100 metric names × 2,000 (host, core) pairs; 1,000 hosts.
fn all_series(metric_names: &[&str]) -> Vec<(Labels, u64)> {
    (0..SERIES)
        .map(|i| {
            let mut l = Labels::with_capacity(3, 48);
            l.push("__name__", metric_names[i % metric_names.len()]);
            l.push("core", format!("{}", (i / metric_names.len()) % 2));
            l.push("host", format!("host-{}", (i / metric_names.len() / 2) % 1000));
            l.push("job", "node");
            l.sort();
            let h = l.series_hash();
            (l, h)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    let five = "'count', 'sum', 'min', 'max', 'avg'";
    let names = ["m0", "m1", "m2", "m3"];
    let cases: Vec<(&str, String)> = vec![
        ("rules_1", rule("r0", "{job=\"node\"}", five)),
        ("rules_4", names.iter().map(|n| rule(n, "{job=\"node\"}", five)).collect()),
        ("rules_1_by_name", rule("r0", "m0", five)),
        ("increase", rule("r0", "{job=\"node\"}", "'increase', 'rate'")),
        ("no_match", names.iter().map(|n| rule(n, &format!("other_{n}"), five)).collect()),
    ];
    for (case, text) in cases {
        // `rules_1_by_name` selects one name of four: keep every sample of it.
        let metric_names: Vec<&str> = if case == "rules_1_by_name" { vec!["m0"] } else { names.to_vec() };
        let series = all_series(&metric_names);
        let shared = AggregateShared::new("bench", &rules(&text), Duration::from_secs(3600));
        let mut stage = Aggregate::new(shared.clone(), shared.new_shard());
        let now = now_ms();
        let mut next = 0usize;
        let mut ts = now - 1000;
        let batch = |next: &mut usize, ts: &mut i64| {
            let mut samples = Vec::with_capacity(BATCH);
            let mut hashes = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let (l, h) = &series[*next];
                samples.push(Sample {
                    labels: l.clone(),
                    value: *ts as f64,
                    timestamp_ms: *ts,
                    kind: MetricKind::Counter,
                });
                hashes.push(*h);
                *next += 1;
                if *next == SERIES {
                    *next = 0;
                    *ts += 1;
                }
            }
            (samples, hashes)
        };
        // Warm up: every bucket and counter exists.
        for _ in 0..SERIES / BATCH {
            let (mut s, mut h) = batch(&mut next, &mut ts);
            stage.process_at(now, &mut s, &mut h, &mut DropTally::default());
        }
        group.bench_function(case, |b| {
            b.iter_batched(
                || batch(&mut next, &mut ts),
                |(mut samples, mut hashes)| {
                    let mut drops = DropTally::default();
                    stage.process_at(now, &mut samples, &mut hashes, &mut drops);
                    black_box((samples, hashes))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
