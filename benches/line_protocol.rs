//! Line-protocol decoding throughput: the parser alone, and parsing plus conversion to
//! samples. Budget (DESIGN §6): parser alone ≥ 300 MB/s on one core.
//!
//! Time is the benchmark thread's CPU time, not wall time: the budgets are per CPU-second,
//! and on the shared 2-core machine wall time mostly measures the other processes.

#[path = "common/cpu_clock.rs"]
mod cpu_clock;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tsrelay::codecs::line_protocol::{LineErrors, LineParser, Point, Precision, decode_body};

/// A body shaped like a Telegraf agent's output: several measurements, 3–4 tags, integer,
/// float and unsigned fields, nanosecond timestamps, an occasional escape or string field.
fn telegraf_like_body(lines: usize) -> Vec<u8> {
    use std::io::Write;
    let mut body = Vec::with_capacity(lines * 140);
    let ts = 1_700_000_000_000_000_000i64;
    for i in 0..lines {
        let host = i % 500;
        let t = ts + (i as i64) * 10_000_000;
        let written = match i % 5 {
            0 => writeln!(
                body,
                "cpu,host=server-{host:04},region=eu-west-1,cpu=cpu{} usage_user={}.{},usage_system=3.25,usage_idle=84.125,usage_iowait=0i {t}",
                i % 8,
                i % 100,
                i % 7
            ),
            1 => writeln!(
                body,
                "mem,host=server-{host:04},region=eu-west-1 used={}i,free=8123456789i,cached=123456i,used_percent=42.{} {t}",
                1_000_000 + i,
                i % 1000
            ),
            2 => writeln!(
                body,
                "disk,host=server-{host:04},path=/var/lib/data\\ {},fstype=ext4 used_percent=71.{},inodes_free={}u {t}",
                i % 3,
                i % 10,
                900_000 + i
            ),
            3 => writeln!(
                body,
                "net,host=server-{host:04},interface=eth{} bytes_recv={}i,bytes_sent={}i,err_in=0i,drop_in=0i {t}",
                i % 2,
                i * 1500,
                i * 900
            ),
            _ => writeln!(
                body,
                "system,host=server-{host:04} load1={}.{},load5=0.52,n_users=3i,uptime_format=\"3 days\" {t}",
                i % 4,
                i % 100
            ),
        };
        written.expect("writing to a Vec cannot fail");
    }
    body
}

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
    let body = telegraf_like_body(20_000);
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
