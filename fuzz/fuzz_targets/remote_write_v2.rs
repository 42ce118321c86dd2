//! Any remote-write 2.0 body (snappy + `io.prometheus.write.v2.Request`):
//! decoding must not panic (symbol references out of range, odd pairs …) and
//! must account for every sample.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsrelay::codecs::remote_write::{DecodeLimits, MetadataCache, v2};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::with_body_limit(1 << 20);
    let metadata = MetadataCache::new();
    let _ = v2::decode(data, 1_700_000_000_000, &limits, &metadata);
    let Ok(d) = v2::decode_message(data, 1_700_000_000_000, &limits, &metadata) else { return };
    let req = tsrelay::proto::write_v2::Request::decode(data).expect("decoded once already");
    let total: usize = req.timeseries.iter().map(|s| s.samples.len()).sum();
    assert_eq!(d.samples.len() as u64 + d.rejected(), total as u64);
    assert!(d.samples.iter().all(|s| !s.name().is_empty()));
});
