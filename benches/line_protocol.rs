//! Line-protocol decoding throughput: the parser alone, and parsing plus conversion to
//! samples. Budget (DESIGN §6): parser alone ≥ 300 MB/s on one core.
//!
//! Time is the benchmark thread's CPU time, not wall time: the budgets are per CPU-second,
//! and on the shared 2-core machine wall time mostly measures the other processes.

#[path = "common/cpu_clock.rs"]
mod cpu_clock;
#[path = "common/telegraf_body.rs"]
mod telegraf_body;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::codecs::line_protocol::{LineErrors, LineParser, Point, Precision, decode_body};

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    cpu_clock::cpu_time(cpu_clock::CpuClock::Thread)
}

/// Criterion measurement in thread CPU time, formatted like wall time.
struct ThreadCpuTime;

static WALL_TIME: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, started: Duration) -> Duration {
        thread_cpu_time().saturating_sub(started)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL_TIME.formatter()
    }
}

fn bench_line_protocol(c: &mut Criterion<ThreadCpuTime>) {
    let body = telegraf_body::telegraf_like_body(20_000);
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Bytes(body.len() as u64));

    group.bench_function("parse", |b| {
        let mut point = Point::default();
        b.iter(|| {
            let mut parser = LineParser::new(black_box(&body), Precision::Nanosecond);
            let mut fields = 0usize;
            while let Some((_, result)) = parser.next_into(&mut point) {
                if result.is_ok() {
                    fields += point.fields.len();
                }
            }
            black_box(fields)
        })
    });

    group.bench_function("parse_and_convert_to_samples", |b| {
        let mut samples = Vec::with_capacity(100_000);
        let mut errors = LineErrors::new();
        b.iter(|| {
            samples.clear();
            errors.clear();
            let summary = decode_body(black_box(&body), Precision::Nanosecond, 0, &mut samples, &mut errors);
            black_box(summary)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_line_protocol
}
criterion_main!(benches);
