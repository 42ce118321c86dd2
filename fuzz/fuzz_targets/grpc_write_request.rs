//! Any gRPC message body: protobuf decoding plus the conversion to samples must
//! not panic, and every sample must be either accepted or counted as rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsrelay::proto::v1::WriteRequest;
use tsrelay::codecs::protobuf::decode_request;

fuzz_target!(|body: &[u8]| {
    let Ok(req) = WriteRequest::decode(body) else { return };
    let total: usize = req.series.iter().map(|s| s.samples.len()).sum();
    let d = decode_request(req, 1_700_000_000_000);
    assert_eq!(d.samples.len() as u64 + d.refused.total(), total as u64);
    assert!(d.samples.iter().all(|s| !s.name().is_empty()));
});
