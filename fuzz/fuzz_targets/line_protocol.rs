//! Any body: the line-protocol decoder must not panic, must account for every line it
//! reports, and must agree with itself between its two entry points.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::line_protocol::{LineErrors, LineParser, Precision, decode_body, parse_line};

fuzz_target!(|body: &[u8]| {
    let precision = match body.first().map(|b| b % 6) {
        Some(0) => Precision::Nanosecond,
        Some(1) => Precision::Microsecond,
        Some(2) => Precision::Millisecond,
        Some(3) => Precision::Second,
        Some(4) => Precision::Minute,
        _ => Precision::Hour,
    };

    let mut valid_lines = 0u64;
    let mut bad_lines = 0u64;
    let mut numeric_fields = 0u64;
    let mut reserved_name_lines = 0u64;
    for (line, result) in LineParser::new(body, precision) {
        assert!(line >= 1);
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
                assert!(error.line() >= line);
                assert!(!error.to_string().is_empty());
                bad_lines += 1;
            }
        }
    }

    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    let summary = decode_body(body, precision, 1_700_000_000_000_000_000, &mut samples, &mut errors);
    assert_eq!(summary.accepted_lines, valid_lines);
    assert_eq!(summary.rejected_lines, bad_lines + reserved_name_lines);
    assert_eq!(summary.accepted_samples, numeric_fields);
    assert_eq!(samples.len() as u64, numeric_fields);
    assert_eq!(errors.rejected(), summary.rejected_lines);
    assert!(samples.iter().all(|s| s.value.is_finite()));

    // A body that is one valid entry parses the same through parse_line.
    if valid_lines == 1 && bad_lines == 0 && reserved_name_lines == 0 {
        assert!(matches!(parse_line(body, precision), Ok(Some(_))));
    }
});
