//! Any Kafka message in any of the receiver's formats: decoding must not panic, must
//! only append to the caller's batch, must count what it refuses under a drop reason,
//! and must name the first error whenever a line or the message itself was malformed
//! (that text goes to the dead-letter topic). (A bad series without samples is named
//! but refuses nothing, so an error does not imply a drop.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsrelay::codecs::limits::DecodeLimits;
use tsrelay::codecs::line_protocol::Precision;
use tsrelay::model::Sample;
use tsrelay::receivers::kafka::{MessageFormat, decode_message};
use tsrelay::telemetry::DropReason;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else { return };
    let format = match selector % 4 {
        0 => MessageFormat::Protobuf,
        1 => MessageFormat::Json,
        2 => MessageFormat::LineProtocol(Precision::Nanosecond),
        _ => MessageFormat::LineProtocol(Precision::Second),
    };
    // The batch already holds another message's sample: it must stay untouched.
    let first = Sample::new([("__name__", "before")].into_iter().collect(), 1.0, 1);
    let mut out = vec![first.clone()];
    let d = decode_message(format, payload, 1_700_000_000_000, &DecodeLimits::unlimited(), &mut out);
    assert_eq!(out[0], first);
    assert_eq!(d.samples, out.len() - 1);
    assert!(d.dropped.iter().all(|&(_, n)| n > 0));
    let parse_errors: u64 = d.dropped.iter().filter(|(r, _)| *r == DropReason::ParseError).map(|(_, n)| n).sum();
    if parse_errors > 0 {
        assert!(d.error.as_ref().is_some_and(|e| !e.is_empty()), "{parse_errors} parse errors but no message");
    }
    assert!(out[1..].iter().all(|s| !s.name().is_empty()));
});
