//! Any remote-write 1.0 body (snappy + `prometheus.WriteRequest`):
//! decoding must not panic (symbol references out of range, odd pairs, …),
//! stay within the limits and account for every sample; and the in-place
//! decoder must agree with the generated (prost) one on every input: the same
//! bodies refused, the same samples, refusals and reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsrelay::codecs::remote_write::{DecodeLimits, MetadataCache, v1};

const NOW: i64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::with_body_limit(1 << 20);
    // The compressed path, with whatever the fuzzer made of the snappy framing.
    let _ = v1::decode(data, NOW, &limits, &MetadataCache::new());
    // The message itself, both ways, each with its own metadata cache.
    let walked = v1::decode_message(data, NOW, &limits, &MetadataCache::new());
    let generated = v1::decode_message_with_prost(data, NOW, &limits, &MetadataCache::new());
    match (&walked, &generated) {
        (Ok(a), Ok(b)) => assert!(a.same_as(b), "decoders differ:\n{a:?}\n{b:?}"),
        (Err(a), Err(b)) => assert_eq!(a.is_too_large(), b.is_too_large(), "{a} / {b}"),
        _ => panic!("one decoder refused what the other took: walked {walked:?}, generated {generated:?}"),
    }
    let Ok(d) = walked else { return };
    let req = tsrelay::proto::prometheus::WriteRequest::decode(data).expect("decoded once already");
    let total: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
    assert_eq!(d.samples.len() as u64 + d.rejected(), total as u64);
    assert!(d.samples.iter().all(|s| !s.name().is_empty()));
});
