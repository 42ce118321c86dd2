//! Any OTLP metrics body, as protobuf and as JSON: decoding and the
//! translation to samples must not panic, and the samples must have names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::otlp::{OtlpConfig, Translator, decode_json, decode_protobuf};
use tsrelay::codecs::limits::DecodeLimits;

fuzz_target!(|data: &[u8]| {
    let translator = Translator::new(OtlpConfig::default(), std::sync::Arc::new(DecodeLimits::for_pipeline_defaults()));
    for req in [decode_protobuf(data).ok(), decode_json(data).ok()].into_iter().flatten() {
        if let Ok(t) = translator.translate(&req, 1_700_000_000_000) {
            assert!(t.samples.iter().all(|s| !s.name().is_empty()));
            assert!(t.errors.len() <= tsrelay::codecs::otlp::translate::MAX_REPORTED_ERRORS);
        }
    }
});
