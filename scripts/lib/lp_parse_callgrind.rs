//! Instructions per line of the line-protocol parser, before and after issue #17 item 4, in
//! one binary (see scripts/bench-lp-parser, which builds this with the parser's sources).
//!
//!   lp_parse_callgrind new|reference [rounds] [bench|telegraf]
//!
//! Parses a 10,000-line body `rounds` times with `LineParser::next_into` (one reused point
//! per body, as `decode_body_limited` does), with the parser in use or with the reference
//! copy of the one before; prints the numeric fields parsed.

mod lp;
mod telegraf_body;

use std::hint::black_box;
use std::io::Write;

use lp::{Point, Precision};

/// The load generator's lines (`tsrelay-loadgen`'s series_line) with a millisecond stamp.
fn bench_body(lines: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..lines {
        let line = format!(
            "bench_metric_{},host=host-{:05},region=r{},service=svc-{} value={} {}",
            i % 100,
            i / 100,
            i % 7,
            i % 13,
            i % 1000,
            1_733_380_000_000u64 + i as u64
        );
        writeln!(body, "{line}").expect("writing to a Vec cannot fail");
    }
    body
}

#[inline(never)]
fn run_new(body: &[u8], precision: Precision) -> usize {
    let mut parser = lp::LineParser::new(body, precision);
    let mut point = Point::default();
    let mut fields = 0;
    while let Some((_, result)) = parser.next_into(&mut point) {
        if result.is_ok() {
            fields += point.fields.len();
        }
    }
    fields
}

#[inline(never)]
fn run_reference(body: &[u8], precision: Precision) -> usize {
    let mut parser = lp::reference::LineParser::new(body, precision);
    let mut point = Point::default();
    let mut fields = 0;
    while let Some((_, result)) = parser.next_into(&mut point) {
        if result.is_ok() {
            fields += point.fields.len();
        }
    }
    fields
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("new");
    let rounds: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(10);
    let (body, precision) = match args.get(3).map(String::as_str) {
        Some("telegraf") => (telegraf_body::telegraf_like_body(10_000), Precision::Nanosecond),
        _ => (bench_body(10_000), Precision::Millisecond),
    };
    let mut fields = 0;
    for _ in 0..rounds {
        fields += match which {
            "reference" => run_reference(black_box(&body), precision),
            _ => run_new(black_box(&body), precision),
        };
    }
    println!("{} bytes, {fields} fields", body.len());
}
