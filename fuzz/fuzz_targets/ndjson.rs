//! Any body: the NDJSON decoder must not panic and must account for every line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::ndjson::{LineErrors, decode_body, parse_rfc3339_ms};

fuzz_target!(|body: &[u8]| {
    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    let summary = decode_body(body, 1_700_000_000_000, &mut samples, &mut errors);
    let non_blank_lines =
        body.split(|&b| b == b'\n').filter(|line| !line.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r'))).count()
            as u64;
    assert_eq!(summary.accepted_lines + summary.rejected_lines, non_blank_lines);
    assert_eq!(summary.accepted_samples, samples.len() as u64);
    assert_eq!(errors.rejected(), summary.rejected_lines);
    assert!(samples.iter().all(|s| !s.name().is_empty()));

    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_rfc3339_ms(text);
    }
});
