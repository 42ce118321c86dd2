//! Runs every decode case of InfluxData's line-protocol corpus against our parser.
//!
//! The corpus lives beside the checkout in `shared/conformance/` (or in the directory named
//! by `TSRELAY_CONFORMANCE_DIR`). Under CI a missing corpus fails the test; elsewhere it is
//! reported as skipped.

use std::path::PathBuf;

use serde_json::Value;
use tsrelay::codecs::line_protocol::{FieldValue, LineParser, Point, Precision};

const CORPUS_FILE: &str = "line-protocol-corpus.json";

fn corpus_path() -> PathBuf {
    match std::env::var_os("TSRELAY_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir).join(CORPUS_FILE),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance").join(CORPUS_FILE),
    }
}

/// Standard base64 with padding, as the corpus uses for inputs that are not UTF-8.
fn decode_base64(text: &str) -> Vec<u8> {
    fn sextet(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            other => panic!("invalid base64 byte {other:#x} in corpus"),
        }
    }
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= sextet(c) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

fn precision_of(name: &str) -> Precision {
    match name {
        "1ns" => Precision::Nanosecond,
        "1µs" | "1us" => Precision::Microsecond,
        "1ms" => Precision::Millisecond,
        "1s" => Precision::Second,
        other => panic!("unknown precision {other:?} in corpus"),
    }
}

/// Our point in the corpus's JSON shape: tags sorted by key (the corpus lists them that way).
fn to_corpus_json(point: &Point<'_>, default_ns: i64) -> Value {
    let mut tags: Vec<_> = point.tags.iter().collect();
    tags.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    let tags: Vec<Value> =
        tags.iter().map(|t| serde_json::json!({"key": t.key.as_ref(), "value": t.value.as_ref()})).collect();
    let fields: Vec<Value> = point
        .fields
        .iter()
        .map(|f| {
            let value = match &f.value {
                FieldValue::Float(v) => serde_json::json!({"float": v}),
                FieldValue::Int(v) => serde_json::json!({"int": v}),
                FieldValue::UInt(v) => serde_json::json!({"uint": v}),
                FieldValue::String(v) => serde_json::json!({"string": v.as_ref()}),
                FieldValue::Bool(v) => serde_json::json!({"bool": v}),
            };
            serde_json::json!({"key": f.key.as_ref(), "value": value})
        })
        .collect();
    serde_json::json!({
        "time": point.timestamp_ns.unwrap_or(default_ns),
        "name": point.measurement.as_ref(),
        "tags": tags,
        "fields": fields,
    })
}

/// Our float as serde_json reads it back from its shortest decimal form.
///
/// serde_json's default float reader is not always correctly rounded (it reads the corpus's
/// `1.7976931348623157E+53` one ULP low), so an exact comparison would blame our parser for
/// the harness's reader. Passing our value through the same reader, from the same shortest
/// digits Go wrote into the corpus, makes both sides suffer the same rounding.
fn as_json_reads_it(value: f64) -> Option<f64> {
    serde_json::from_str::<f64>(&format!("{value:e}")).ok()
}

/// Compares typed values exactly; floats by value (the corpus writes 1.0 as 1).
fn same_point(ours: &Value, expected: &Value) -> bool {
    let (Some(a), Some(b)) = (ours.as_object(), expected.as_object()) else {
        return false;
    };
    if a["time"] != b["time"] || a["name"] != b["name"] || a["tags"] != b["tags"] {
        return false;
    }
    let (Some(fa), Some(fb)) = (a["fields"].as_array(), b["fields"].as_array()) else {
        return false;
    };
    fa.len() == fb.len()
        && fa.iter().zip(fb).all(|(x, y)| {
            x["key"] == y["key"]
                && match (x["value"].get("float"), y["value"].get("float")) {
                    (Some(p), Some(q)) => p.as_f64().and_then(as_json_reads_it).is_some_and(|p| Some(p) == q.as_f64()),
                    (None, None) => x["value"] == y["value"],
                    _ => false,
                }
        })
}

#[test]
fn every_decode_case_of_the_corpus_agrees() {
    let path = corpus_path();
    let Ok(raw) = std::fs::read(&path) else {
        if std::env::var_os("CI").is_some_and(|ci| !ci.is_empty()) {
            panic!(
                "line-protocol corpus not found at {} (set TSRELAY_CONFORMANCE_DIR or check out shared/ beside the repo)",
                path.display()
            );
        }
        println!("skipped: line-protocol corpus not found at {}", path.display());
        return;
    };
    let corpus: Value = serde_json::from_slice(&raw).expect("corpus is valid JSON");
    let cases = corpus["decode"].as_object().expect("corpus has a decode object");
    let mut passed = 0usize;
    let mut failures = Vec::new();
    for (key, case) in cases {
        let input = &case["input"];
        let text = match &input["text"] {
            Value::String(s) => s.as_bytes().to_vec(),
            other => decode_base64(other["binary"].as_str().expect("binary text is a string")),
        };
        let precision = precision_of(input["precision"].as_str().expect("precision is a string"));
        let default_ns = precision.truncate(input["defaultTime"].as_i64().expect("defaultTime is an i64"));

        let mut points = Vec::new();
        let mut first_error = None;
        for (_, result) in LineParser::new(&text, precision) {
            match result {
                Ok(point) => points.push(to_corpus_json(&point, default_ns)),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let output = &case["output"];
        let verdict = match (output.get("result"), first_error) {
            (Some(_), Some(error)) => Err(format!("rejected a valid input: {error}")),
            (Some(expected), None) => {
                let expected = expected.as_array().map(Vec::as_slice).unwrap_or_default();
                if expected.len() == points.len() && expected.iter().zip(&points).all(|(e, o)| same_point(o, e)) {
                    Ok(())
                } else {
                    Err(format!(
                        "points differ:\n  ours:     {}\n  expected: {}",
                        Value::from(points),
                        Value::from(expected)
                    ))
                }
            }
            (None, Some(_)) => Ok(()),
            (None, None) => Err(format!("accepted an invalid input (reference: {})", output["error"])),
        };
        match verdict {
            Ok(()) => passed += 1,
            Err(why) => failures.push(format!("{key} {:?}: {why}", String::from_utf8_lossy(&text))),
        }
    }
    println!("line protocol conformance: {passed} of {} decode cases agree", cases.len());
    for failure in failures.iter().take(40) {
        println!("FAIL {failure}");
    }
    assert!(failures.is_empty(), "{} of {} decode cases disagree", failures.len(), cases.len());
    assert!(passed > 6000, "the corpus should hold more than 6000 decode cases, found {passed}");
}
