//! rrdcached sink encoding: samples → files (template, sanitizing, coalescing) → UPDATE lines.
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Labels, Sample};
use tsrelay::sinks::rrdcached::config::MissingLabel;
use tsrelay::sinks::rrdcached::encode::{PathTemplate, Router, write_updates};

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let labels: Labels = [
                ("__name__", format!("if_octets_{}", i % 10)),
                ("host", format!("switch-{:03}", i % 100)),
                ("port", format!("{}", i % 48)),
            ]
            .into_iter()
            .collect();
            // Ten samples per series, one per second.
            Sample::new(labels, i as f64 * 1.5, 1_700_000_000_000 + (i / 1000) as i64 * 1000)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = samples(10_000);
    let mut router = Router::new(
        PathTemplate::parse("{__name__}/{host}/port-{port}.rrd").unwrap(),
        MissingLabel::Drop,
        "unknown".into(),
        "value".into(),
        None,
    );
    let mut g = c.benchmark_group("rrdcached_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("plan_and_update_lines", |b| {
        let mut out = Vec::with_capacity(1 << 20);
        let mut per_line = Vec::new();
        b.iter(|| {
            out.clear();
            let plan = router.plan(black_box(batch.iter()));
            for f in &plan.files {
                write_updates(&f.path, &f.points, &mut out, &mut per_line);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
