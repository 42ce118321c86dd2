//! Cost of the aggregate stage per sample and per rule, at 200,000 distinct
//! active input series in one shard, in the steady state (every bucket and
//! counter exists; each sample folds into its bucket). Every case feeds the
//! same 200,000 series, in batches of 1,000 samples.
//!
//! - `rules_N` (N = 1, 4, 16): N hourly rules (`count, sum, min, max, avg`,
//!   `by = [host]`), selector `{job="node"}`: tried on every sample, all match.
//!   The cost of one more rule is the slope between the N.
//! - `rules_N_by_name`: the same with selector `m0` (the fast path: rules found
//!   by one name lookup), every series named `m0`, so again all N rules match.
//! - `increase`: one rule with `increase, rate` (a counter table lookup more).
//! - `no_match`: four rules for other metric names: what a sample pays when
//!   nothing matches (one name lookup).
//!
//! Run: `cargo bench --bench aggregate` (release). `cargo test --bench aggregate`
//! runs each case once, after a short warm-up, as a smoke test.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Labels, MetricKind, Sample, now_ms};
use tsrelay::pipeline::DropTally;
use tsrelay::pipeline::stages::{Aggregate, AggregateRule, AggregateShared};

/// Distinct input series in every case.
const SERIES: usize = 200_000;
const HOSTS: usize = 1_000;
const BATCH: usize = 1000;

/// Input series with their hashes, shared by the cases that feed them.
type SeriesSet = Arc<Vec<(Labels, u64)>>;

fn rules(text: &str) -> Vec<AggregateRule> {
    #[derive(serde::Deserialize)]
    struct Wrap {
        aggregate: Vec<AggregateRule>,
    }
    toml::from_str::<Wrap>(text).expect("bench rules").aggregate
}

fn rule(name: &str, selector: &str, outputs: &str) -> String {
    format!(
        "[[aggregate]]\nname = '{name}'\nmatch = '{selector}'\ninterval = '1h'\nby = ['host']\nmax_series = 1000000\noutputs = [{outputs}]\n"
    )
}

/// `n` rules named `r0`… with `selector`.
fn n_rules(n: usize, selector: &str, outputs: &str) -> String {
    (0..n).map(|i| rule(&format!("r{i}"), selector, outputs)).collect()
}

/// 200,000 distinct series spread over `metric_names`: series `i` is named
/// `metric_names[i % n]`, with `host` = `host-<r % 1000>` and `core` = `r / 1000`
/// for `r = i / n`, so each (name, host) output series folds 200,000 / n / 1,000 inputs.
fn all_series(metric_names: &[&str]) -> SeriesSet {
    let series: Vec<(Labels, u64)> = (0..SERIES)
        .map(|i| {
            let r = i / metric_names.len();
            let mut l = Labels::with_capacity(4, 48);
            l.push("__name__", metric_names[i % metric_names.len()]);
            l.push("core", format!("{}", r / HOSTS));
            l.push("host", format!("host-{}", r % HOSTS));
            l.push("job", "node");
            l.sort();
            let h = l.series_hash();
            (l, h)
        })
        .collect();
    let distinct: std::collections::HashSet<u64> = series.iter().map(|(_, h)| *h).collect();
    assert_eq!(distinct.len(), SERIES, "every case feeds {SERIES} distinct series");
    Arc::new(series)
}

fn bench(c: &mut Criterion) {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a
    // few batches of warm-up instead of a pass over every series (slow in debug).
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30).measurement_time(Duration::from_secs(8));
    let five = "'count', 'sum', 'min', 'max', 'avg'";
    let names = ["m0", "m1", "m2", "m3"];
    let four_names = all_series(&names);
    let one_name = all_series(&["m0"]);
    let by_label = "{job=\"node\"}";
    let mut cases: Vec<(String, String, SeriesSet)> = Vec::new();
    for n in [1, 4, 16] {
        cases.push((format!("rules_{n}"), n_rules(n, by_label, five), four_names.clone()));
    }
    for n in [1, 4, 16] {
        cases.push((format!("rules_{n}_by_name"), n_rules(n, "m0", five), one_name.clone()));
    }
    cases.push(("increase".into(), n_rules(1, by_label, "'increase', 'rate'"), four_names.clone()));
    let other: String = names.iter().map(|n| rule(n, &format!("other_{n}"), five)).collect();
    cases.push(("no_match".into(), other, four_names.clone()));

    for (case, text, series) in cases {
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
        let warm_batches = if smoke { 2 } else { SERIES / BATCH };
        for _ in 0..warm_batches {
            let (mut s, mut h) = batch(&mut next, &mut ts);
            stage.process_at(now, &mut s, &mut h, &mut DropTally::default());
        }
        group.bench_function(&case, |b| {
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
