//! Remote-write encoding speed (samples per second on one core): batch →
//! protobuf, and batch → protobuf → snappy (the full request body).
//!
//! Two shapes bracket real traffic: every sample its own series (a request of
//! a high-cardinality scrape: labels dominate), and ten samples per series.

use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::model::{Batch, Labels, MetricKind, Sample};
use tsrelay::sinks::SinkBatch;
use tsrelay::sinks::remote_write::{MetadataSettings, RemoteWriteEncoder};

const SAMPLES: usize = 10_000;

/// `SAMPLES` samples over `series` series, labels as a switch exporter would have them.
fn batch(series: usize) -> SinkBatch {
    let per_series = SAMPLES / series;
    let mut samples = Vec::with_capacity(SAMPLES);
    for t in 0..per_series {
        for s in 0..series {
            let mut labels: Labels = [
                ("__name__", "network_port_in_octets_total".to_string()),
                ("cluster", "eu-west-1-prod".to_string()),
                ("device", format!("switch-{:03}.rack-{:02}", s / 48, s % 17)),
                ("instance", format!("10.{}.{}.{}:9100", s / 65536, (s / 256) % 256, s % 256)),
                ("job", "snmp".to_string()),
                ("port", format!("Ethernet1/{}", s % 48)),
            ]
            .into_iter()
            .collect();
            labels.sort();
            let mut sample = Sample::new(labels, (s * 1000 + t) as f64 * 1.5, 1_700_000_000_000 + t as i64 * 15_000);
            sample.kind = MetricKind::Counter;
            samples.push(sample);
        }
    }
    let hashes = samples.iter().map(|s| s.labels.series_hash()).collect();
    SinkBatch::from_batch(Arc::new(Batch { hashes, ..Batch::new(samples) }))
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("remote_write_encode");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    for series in [SAMPLES, SAMPLES / 10] {
        let input = batch(series);
        let shape = format!("{}_samples_per_series", SAMPLES / series);
        let mut encoder = RemoteWriteEncoder::new(MetadataSettings::default());
        group.bench_with_input(BenchmarkId::new("protobuf", &shape), &input, |b, input| {
            b.iter(|| encoder.encode_protobuf(input.samples_with_hash(), Instant::now()).1)
        });
        let mut encoder = RemoteWriteEncoder::new(MetadataSettings::default());
        group.bench_with_input(BenchmarkId::new("protobuf_snappy", &shape), &input, |b, input| {
            b.iter(|| encoder.encode_body(input.samples_with_hash(), Instant::now()).map(|(body, _)| body.len()))
        });
        let mut encoder = RemoteWriteEncoder::new(MetadataSettings::default());
        let (body, _) = encoder.encode_body(input.samples_with_hash(), Instant::now()).expect("encodes");
        let raw = encoder.encode_protobuf(input.samples_with_hash(), Instant::now()).0.len();
        eprintln!(
            "{shape}: {raw} bytes protobuf, {} bytes snappy ({:.1} and {:.1} bytes per sample)",
            body.len(),
            raw as f64 / SAMPLES as f64,
            body.len() as f64 / SAMPLES as f64
        );
    }
    group.finish();
}

/// CPU time of this thread in nanoseconds (Linux), so the figure holds on a
/// loaded machine: the budget is in samples per CPU-second.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Samples per CPU-second of the full body (protobuf + snappy), printed for BENCHMARKS.md.
fn cpu_time_report(_c: &mut Criterion) {
    // `cargo test --all-targets` runs benches once as a smoke test: skip the long loop there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for series in [SAMPLES, SAMPLES / 10] {
        let input = batch(series);
        let mut encoder = RemoteWriteEncoder::new(MetadataSettings::default());
        let rounds = 300;
        let (Some(start), wall) = (thread_cpu_ns(), Instant::now()) else {
            eprintln!("no /proc/thread-self/schedstat: CPU-time figures skipped");
            return;
        };
        for _ in 0..rounds {
            let encoded = encoder.encode_body(input.samples_with_hash(), Instant::now()).map(|(b, _)| b.len());
            std::hint::black_box(encoded.ok());
        }
        let cpu = thread_cpu_ns().unwrap_or(start).saturating_sub(start).max(1);
        let proto_start = thread_cpu_ns().unwrap_or(0);
        for _ in 0..rounds {
            std::hint::black_box(encoder.encode_protobuf(input.samples_with_hash(), Instant::now()).1);
        }
        let proto_cpu = thread_cpu_ns().unwrap_or(proto_start).saturating_sub(proto_start).max(1);
        let samples = (rounds * SAMPLES) as f64;
        eprintln!(
            "cpu-time {}_samples_per_series protobuf+snappy: {:.2} M samples per CPU-second ({:.0} ns/sample, of which protobuf {:.0} ns; wall {:.2} s)",
            SAMPLES / series,
            samples / (cpu as f64 / 1e9) / 1e6,
            cpu as f64 / samples,
            proto_cpu as f64 / samples,
            wall.elapsed().as_secs_f64()
        );
    }
}

criterion_group!(benches, encoding, cpu_time_report);
criterion_main!(benches);
