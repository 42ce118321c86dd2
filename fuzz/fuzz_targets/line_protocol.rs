//! Any body: the line-protocol decoder must not panic, must account for every line it
//! reports, must point its errors inside the body, must agree with itself between its
//! entry points, and what it accepts must survive the sinks' line-protocol encoder
//! (decode → encode → decode gives the same samples: a Kafka or file relay loses nothing),
//! and decoding it again, once its series keys are known, or while it arrives in pieces,
//! must give exactly the same.
//! And it must decide every entry exactly as the parser before its fast path did (the
//! `reference` module): same points, same errors and messages, same positions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::limits::DecodeLimits;
use tsrelay::codecs::line_protocol::{LineErrors, LineParser, Precision, decode_body, parse_line, reference};
use tsrelay::codecs::stream::{LineStream, assert_streams_as_whole};
use tsrelay::sinks::line_protocol::encode_sample;

const NOW_NS: i64 = 1_700_000_000_000_000_000;

fuzz_target!(|body: &[u8]| {
    let precision = match body.first().map(|b| b % 6) {
        Some(0) => Precision::Nanosecond,
        Some(1) => Precision::Microsecond,
        Some(2) => Precision::Millisecond,
        Some(3) => Precision::Second,
        Some(4) => Precision::Minute,
        _ => Precision::Hour,
    };
    if let Some(why) = reference::first_difference(body, precision) {
        panic!("differs from the reference parser at {precision:?}: {why}");
    }
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();

    let mut valid_lines = 0u64;
    let mut bad_lines = 0u64;
    let mut numeric_fields = 0u64;
    let mut reserved_name_lines = 0u64;
    for (line, result) in LineParser::new(body, precision) {
        assert!((1..=lines.len()).contains(&line), "line {line} of {}", lines.len());
        match result {
            Ok(point) => {
                assert!(!point.measurement.is_empty());
                assert!(!point.fields.is_empty());
                if point.tags.iter().any(|t| t.key == "__name__") {
                    reserved_name_lines += 1;
                    continue;
                }
                valid_lines += 1;
                numeric_fields += point.fields.iter().filter(|f| f.value.as_f64().is_some()).count() as u64;
            }
            Err(error) => {
                // An error names a line of the body and, when it has one, a column on
                // that line (one past its end for "end of line" problems).
                assert!(error.line() >= line && error.line() <= lines.len(), "{error} ({} lines)", lines.len());
                if let Some(column) = error.position.column {
                    let len = lines[error.line() - 1].len();
                    assert!(column >= 1 && column <= len + 1, "{error}: line is {len} bytes");
                }
                assert!(!error.to_string().is_empty());
                bad_lines += 1;
            }
        }
    }

    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    let summary = decode_body(body, precision, NOW_NS, &mut samples, &mut errors);
    assert_eq!(summary.accepted_lines, valid_lines);
    assert_eq!(summary.rejected_lines, bad_lines + reserved_name_lines);
    assert_eq!(summary.accepted_samples, numeric_fields);
    assert_eq!(samples.len() as u64, numeric_fields);
    assert_eq!(errors.rejected(), summary.rejected_lines);
    assert!(errors.reported().iter().all(|e| (1..=lines.len()).contains(&e.line)));
    assert!(samples.iter().all(|s| s.value.is_finite()));

    // Decoded again, the body's series keys are known (only fields and timestamps are parsed
    // then): the outcome must be exactly the same.
    let mut again = Vec::new();
    let mut again_errors = LineErrors::new();
    let again_summary = decode_body(body, precision, NOW_NS, &mut again, &mut again_errors);
    assert_eq!(again_summary, summary, "summary differs once the keys are known");
    assert_eq!(again_errors.reported(), errors.reported(), "errors differ once the keys are known");
    assert_eq!(again.len(), samples.len());
    for (a, s) in again.iter().zip(&samples) {
        assert_eq!(a.labels, s.labels);
        assert_eq!(a.value.to_bits(), s.value.to_bits());
        assert_eq!(a.timestamp_ms, s.timestamp_ms);
    }

    // Decoded while it arrives (the HTTP receiver's way), in frames and pieces of sizes the
    // body picks, in parts of a few samples: exactly the same samples, summary and errors.
    let frame = 1 + usize::from(body.get(1).copied().unwrap_or(0) % 29);
    let piece = 1 + usize::from(body.get(2).copied().unwrap_or(0) % 97);
    let part = 1 + usize::from(body.get(3).copied().unwrap_or(0) % 7);
    let unlimited = DecodeLimits::unlimited();
    let stream = LineStream::line_protocol(precision, NOW_NS, &unlimited, part, body.len()).with_piece_bytes(piece);
    assert_streams_as_whole(stream, body, frame, (&summary, &errors, &samples));

    // A body that is one valid entry parses the same through parse_line.
    if valid_lines == 1 && bad_lines == 0 && reserved_name_lines == 0 {
        assert!(matches!(parse_line(body, precision), Ok(Some(_))));
    }

    // Re-encoded as the file and InfluxDB sinks write it, every sample decodes back.
    let mut encoded = Vec::new();
    for s in &samples {
        encoded.clear();
        if !encode_sample(s, s.name(), "value", &mut encoded) {
            // The encoder refuses what line protocol cannot carry unambiguously (see its
            // doc); what it writes must come back exactly.
            continue;
        }
        let mut again = Vec::new();
        let mut errors = LineErrors::new();
        decode_body(&encoded, Precision::Nanosecond, NOW_NS, &mut again, &mut errors);
        let text = String::from_utf8_lossy(&encoded);
        assert!(errors.is_empty(), "{text:?} does not decode: {:?}", errors.reported());
        assert_eq!(again.len(), 1, "{text:?}");
        assert_eq!(again[0].labels, s.labels, "{text:?}");
        assert_eq!(again[0].value.to_bits(), s.value.to_bits(), "{text:?}");
        assert_eq!(again[0].timestamp_ms, s.timestamp_ms, "{text:?}");
    }
});
