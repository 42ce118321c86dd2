//! InfluxDB sink encoding: samples → line protocol (and gzip), per sample.
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Labels, Sample};
use tsrelay::sinks::influxdb::encode::{EncodedLines, InfluxdbOverride, OverrideLookup, encode_batch, gzip_into};

fn samples(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| {
            let labels: Labels = [
                ("__name__", format!("http_requests_total_{}", i % 50)),
                ("host", format!("web-{:04}", i % 200)),
                ("method", "GET".to_string()),
                ("region", "eu-west-1".to_string()),
                ("status", format!("{}", 200 + i % 5)),
            ]
            .into_iter()
            .collect();
            Sample::new(labels, i as f64 * 0.37, 1_700_000_000_000 + i as i64)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let batch = samples(10_000);
    let mut g = c.benchmark_group("influxdb_encode");
    g.throughput(Throughput::Elements(batch.len() as u64));
    let mut out = EncodedLines::default();
    g.bench_function("line_protocol", |b| {
        b.iter(|| {
            out.clear();
            encode_batch(black_box(batch.iter()), "value", None, &mut out);
            black_box(out.body.len())
        })
    });
    let lookup: OverrideLookup = Arc::new(|name: &str| {
        name.ends_with('7')
            .then(|| Arc::new(InfluxdbOverride { measurement: Some("http".into()), field: Some("req".into()) }))
    });
    g.bench_function("line_protocol_with_registry_overrides", |b| {
        b.iter(|| {
            out.clear();
            encode_batch(black_box(batch.iter()), "value", Some(&lookup), &mut out);
            black_box(out.body.len())
        })
    });
    out.clear();
    encode_batch(batch.iter(), "value", None, &mut out);
    let mut gz = Vec::new();
    g.bench_function("gzip_level_1", |b| {
        b.iter(|| {
            gzip_into(black_box(&out.body), &mut gz).unwrap();
            black_box(gz.len())
        })
    });
    g.finish();
    println!("line protocol: {} bytes for {} samples, gzip {} bytes", out.body.len(), batch.len(), gz.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
