//! The parser in use against the reference: the conformance corpus, generated bodies around
//! the fast path's edges, and the word-at-a-time number readers against the reference's.

use std::path::PathBuf;

use super::super::Precision;
use super::first_difference;
use crate::test_rng::Rng;

const PRECISIONS: [Precision; 6] = [
    Precision::Nanosecond,
    Precision::Microsecond,
    Precision::Millisecond,
    Precision::Second,
    Precision::Minute,
    Precision::Hour,
];

fn assert_same(body: &[u8], precision: Precision) {
    if let Some(why) = first_difference(body, precision) {
        panic!("{:?} at {precision:?}: {why}", String::from_utf8_lossy(body));
    }
}

#[test]
fn every_input_of_the_conformance_corpus_parses_as_the_reference_parses_it() {
    let path = match std::env::var_os("TSRELAY_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
    }
    .join("line-protocol-corpus.json");
    let Ok(raw) = std::fs::read(&path) else {
        assert!(
            std::env::var_os("CI").is_none_or(|ci| ci.is_empty()),
            "line-protocol corpus not found at {} (set TSRELAY_CONFORMANCE_DIR)",
            path.display()
        );
        println!("skipped: line-protocol corpus not found at {}", path.display());
        return;
    };
    let corpus: serde_json::Value = serde_json::from_slice(&raw).expect("corpus is valid JSON");
    let cases = corpus["decode"].as_object().expect("corpus has a decode object");
    let mut compared = 0;
    for case in cases.values() {
        let input = &case["input"];
        let body = match &input["text"] {
            serde_json::Value::String(text) => text.as_bytes().to_vec(),
            // Inputs that are not UTF-8 are standard base64 in the corpus.
            other => {
                use base64::Engine;
                let encoded = other["binary"].as_str().expect("binary text is a string");
                base64::engine::general_purpose::STANDARD.decode(encoded).expect("valid base64 in corpus")
            }
        };
        for precision in PRECISIONS {
            assert_same(&body, precision);
        }
        compared += 1;
    }
    assert!(compared > 6000, "the corpus should hold more than 6000 inputs, found {compared}");
}

/// Lines in the common shape and near it: the generator starts from these and mutates them.
const TEMPLATES: &[&str] = &[
    "bench_metric_42,host=host-01234,region=r3,service=svc-7 value=123 1733380000000",
    "cpu,host=server-0001,region=eu-west-1,cpu=cpu3 usage_user=12.5,usage_system=3.25,usage_idle=84.125,usage_iowait=0i 1700000000000000000",
    "mem,host=server-0001 used=1000007i,free=8123456789i,cached=123456i,used_percent=42.7 1700000000010000000",
    "disk,host=server-0001,path=/var/lib/data\\ 1,fstype=ext4 used_percent=71.3,inodes_free=900003u 1700000000020000000",
    "system,host=server-0001 load1=1.5,load5=0.52,n_users=3i,uptime_format=\"3 days\" 1700000000030000000",
    "m f=1",
    "m,t=v f=t,g=FALSE,h=-0,i=-0i,j=.5,k=5.,l=-.5e-3",
    "m=x,a=b,c=d x=18446744073709551615u,y=9223372036854775807i,z=-9223372036854775808i -1",
    "m f=9007199254740993,g=123456789012345678901234,h=0.1234567890123456789 0",
    "m,a=1,b=2,a=3 f=1 1",
    "é,ü=ß ñ=1 2",
    "m\\ x\\,y\\=z,t\\=k=v\\,w\\ x,u=a\\b f\\ k=\"x\\\\\\\"y\",g=\"multi\nline\" 1",
    "m s=\"\",t=\"a,b c=d\",u=\"x\"y 1",
    "m\\,a\\,=1,b\\=\\ =2 c\\=\\,=3i",
];

/// Bytes the mutations insert: every separator, escape, quote and line end, control bytes,
/// DEL, non-ASCII, and the characters numbers and booleans are made of.
const INSERTS: &[&[u8]] = &[
    b" ",
    b",",
    b"=",
    b"\\",
    b"\"",
    b"\n",
    b"\r",
    b"\r\n",
    b"\t",
    b"\x00",
    b"\x7f",
    b"\xc3\xa9",
    b"\xff",
    b"#",
    b"-",
    b".",
    b"e",
    b"E",
    b"+",
    b"i",
    b"u",
    b"t",
    b"f",
    b"0",
    b"9",
    b"12345678901234567890",
    b"  ",
    b"\\ ",
    b"\\,",
    b"\\=",
    b"\\\"",
    b"\"a b\"",
];

fn mutate(line: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = line.to_vec();
    for _ in 0..rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 => {
                out.splice(at..at, rng.pick(INSERTS).iter().copied());
            }
            1 if at < out.len() => {
                let insert = rng.pick(INSERTS);
                out.splice(at..at + 1, insert.iter().copied());
            }
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
}

#[test]
fn generated_bodies_parse_as_the_reference_parses_them() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..60_000 {
        let mut body = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let template = rng.pick(TEMPLATES).as_bytes();
            let line = if rng.below(3) == 0 { template.to_vec() } else { mutate(template, &mut rng) };
            body.extend_from_slice(&line);
            body.extend_from_slice(match rng.below(8) {
                0 => b"\r\n",
                1 => b"",
                2 => b"\n\n# a comment\n   ",
                _ => b"\n",
            });
        }
        // Long bodies cross the scanner's 64-byte windows at every offset.
        let precision = PRECISIONS[round % PRECISIONS.len()];
        assert_same(&body, precision);
    }
}

#[test]
fn many_lines_in_one_body_parse_as_the_reference_parses_them() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut body = Vec::new();
    for i in 0..5_000 {
        let template = rng.pick(TEMPLATES).as_bytes();
        let line = if i % 4 == 0 { mutate(template, &mut rng) } else { template.to_vec() };
        body.extend_from_slice(&line);
        body.push(b'\n');
    }
    for precision in PRECISIONS {
        assert_same(&body, precision);
    }
}

#[test]
fn word_at_a_time_numbers_agree_with_the_reference_readers() {
    use super::super::number::{digits_before, plain_f64_before};
    use super::number::{parse_f64, parse_u64};
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    const BYTES: &[u8] = b"0123456789012345678901234567890123456789.-e+x ";
    for _ in 0..300_000 {
        let len = rng.below(26);
        let mut text: Vec<u8> = (0..len).map(|_| *rng.pick(BYTES)).collect();
        if rng.below(2) == 0 {
            text.retain(|c| c.is_ascii_digit() || *c == b'.' || *c == b'-');
        }
        // Padding before the number, so that the word reads have bytes to read.
        let pad = rng.below(20);
        let mut buffer = vec![b'7'; pad];
        buffer.extend_from_slice(&text);
        buffer.extend_from_slice(b" x");
        let (start, end) = (pad, pad + text.len());
        if let Some(value) = digits_before(&buffer, start, end) {
            assert_eq!(Ok(value), parse_u64(&text), "{:?}", String::from_utf8_lossy(&text));
        }
        if let Some(value) = plain_f64_before(&buffer, start, end) {
            let reference = parse_f64(&text).map(f64::to_bits);
            assert_eq!(Ok(value.to_bits()), reference, "{:?}", String::from_utf8_lossy(&text));
        }
    }
}
