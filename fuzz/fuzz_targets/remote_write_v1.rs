//! Any remote-write 1.0 body (snappy + `prometheus.WriteRequest`): decoding
//! must not panic, stay within the limits, and account for every sample.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsrelay::codecs::remote_write::{DecodeLimits, MetadataCache, v1};

const NOW: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::with_body_limit(1 << 20);
    let cache = MetadataCache::new();
    // The compressed path, with whatever the fuzzer made of the snappy framing.
    let _ = v1::decode(data, NOW, &limits, &cache);
    // The message itself.
    let Ok(d) = v1::decode_message(data, NOW, &limits, &cache) else { return };
    let req = tsrelay::proto::prometheus::WriteRequest::decode(data).expect("decoded once already");
    let total: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
    assert_eq!(d.samples.len() as u64 + d.rejected(), total as u64);
    assert!(d.samples.iter().all(|s| !s.name().is_empty()));
});
