//! Any body: the NDJSON decoder must not panic, must account for every line, must point
//! its errors inside the body, and must agree with its one-line entry point and with
//! itself when the body arrives in pieces. RFC 3339
//! timestamps (any text) must not panic, and one that parses must print and parse back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::limits::DecodeLimits;
use tsrelay::codecs::ndjson::{LineErrors, decode_body, parse_line, parse_rfc3339_ms};
use tsrelay::codecs::stream::{LineStream, assert_streams_as_whole};

fuzz_target!(|body: &[u8]| {
    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    let summary = decode_body(body, 1_700_000_000_000, &mut samples, &mut errors);
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let non_blank_lines = lines.iter().filter(|line| !line.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r'))).count();
    assert_eq!(summary.accepted_lines + summary.rejected_lines, non_blank_lines as u64);
    assert_eq!(summary.accepted_samples, samples.len() as u64);
    assert_eq!(errors.rejected(), summary.rejected_lines);
    assert!(samples.iter().all(|s| !s.name().is_empty()));
    assert!(errors.reported().iter().all(|e| (1..=lines.len()).contains(&e.line)));

    // Line by line: the same verdicts, and columns inside their line.
    let mut accepted = 0;
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line, i + 1) {
            Ok(Some(record)) => {
                assert!(!record.name.is_empty());
                assert!(record.labels.iter().all(|l| l.name != "__name__"));
                accepted += 1;
            }
            Ok(None) => {}
            Err(e) => {
                assert_eq!(e.line(), i + 1);
                if let Some(column) = e.position.column {
                    assert!(column >= 1 && column <= line.len() + 1, "{e}: line is {} bytes", line.len());
                }
            }
        }
    }
    assert_eq!(accepted, summary.accepted_lines);

    // Decoded while it arrives (the HTTP receiver's way), in frames, pieces and parts of
    // sizes the body picks: exactly the same samples, summary and errors.
    let frame = 1 + usize::from(body.first().copied().unwrap_or(0) % 29);
    let piece = 1 + usize::from(body.get(1).copied().unwrap_or(0) % 97);
    let part = 1 + usize::from(body.get(2).copied().unwrap_or(0) % 7);
    let unlimited = DecodeLimits::unlimited();
    let stream = LineStream::ndjson(1_700_000_000_000, &unlimited, part, body.len()).with_piece_bytes(piece);
    assert_streams_as_whole(stream, body, frame, (&summary, &errors, &samples));

    if let Ok(text) = std::str::from_utf8(body) {
        if let Some(ms) = parse_rfc3339_ms(text) {
            // Whatever parses is a real instant: printed in UTC it parses to the same
            // millisecond (a leap second is the next minute's first instant).
            let secs = ms.div_euclid(1000);
            let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            let printed = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                rem / 3600,
                rem / 60 % 60,
                rem % 60,
                ms.rem_euclid(1000)
            );
            if (0..=9999).contains(&y) {
                assert_eq!(parse_rfc3339_ms(&printed), Some(ms), "{text:?} -> {printed}");
            }
        }
    }
});

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
