//! Any gRPC message body: protobuf decoding plus the conversion to samples must not
//! panic, every sample must be either accepted or counted as rejected, and an accepted
//! sample carries exactly its series' labels, value and (in-range) timestamp. The
//! in-place walk (what the receivers run, directly and through the gRPC server's
//! `RawWriteRequest`) must agree with the generated decoder on every input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsrelay::codecs::limits::DecodeLimits;
use tsrelay::codecs::protobuf::{MAX_REPORTED_ERRORS, decode_bytes, decode_request};
use tsrelay::proto::v1::WriteRequest;
use tsrelay::receivers::grpc::RawWriteRequest;

const NOW_MS: i64 = 1_700_000_000_000;

fuzz_target!(|body: &[u8]| {
    let limits = DecodeLimits::unlimited();
    let walked = decode_bytes(body, NOW_MS, &limits);
    let through_server = RawWriteRequest::decode(body)
        .map_err(|e| e.to_string())
        .and_then(|raw| decode_bytes(&raw.series, NOW_MS, &limits).map(|d| (raw.id, d)).map_err(|e| e.to_string()));
    let Ok(req) = WriteRequest::decode(body) else {
        assert!(walked.is_err(), "the walk took what prost refused: {walked:?}");
        assert!(through_server.is_err(), "the server type took what prost refused");
        return;
    };
    let walked = walked.expect("the walk refused what prost took");
    let (id, served) = through_server.expect("the server type refused what prost took");
    assert_eq!(id, req.id);
    let reference = decode_request(req.clone(), NOW_MS);
    assert!(walked.same_as(&reference), "walk and prost differ:\n{walked:?}\n{reference:?}");
    assert!(served.samples.len() == walked.samples.len() && served.refused == walked.refused);
    let total: usize = req.series.iter().map(|s| s.samples.len()).sum();
    let expected: Vec<(Vec<(String, String)>, f64)> = req
        .series
        .iter()
        .flat_map(|s| {
            let labels: Vec<(String, String)> = s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            s.samples.iter().map(move |p| (labels.clone(), p.value))
        })
        .collect();
    let d = decode_request(req, NOW_MS);
    assert_eq!(d.samples.len() as u64 + d.refused.total(), total as u64);
    assert!(d.errors.len() <= MAX_REPORTED_ERRORS);
    // Every refusal is explained (a bad series with no samples is explained, refusing none).
    if d.refused.total() > 0 {
        assert!(!d.errors.is_empty());
    }
    // Accepted samples are the request's samples in order, minus the rejected ones.
    let mut sent = expected.iter();
    for s in &d.samples {
        assert!(!s.name().is_empty());
        assert!(s.timestamp_ms.checked_mul(1_000_000).is_some(), "timestamp {} does not fit in ns", s.timestamp_ms);
        // Labels are stored packed and read back unchecked: they must be the text sent.
        let labels: Vec<(String, String)> = s.labels.iter().map(|l| (l.name.to_owned(), l.value.to_owned())).collect();
        assert!(
            sent.any(|(want, v)| *want == labels && v.to_bits() == s.value.to_bits()),
            "sample {s:?} was not in the request (or out of order)"
        );
    }
});
