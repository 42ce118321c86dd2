//! One Kafka message → samples, in the configured format.

use super::config::MessageFormat;
use crate::codecs::limits::DecodeLimits;
use crate::codecs::protobuf::decode_bytes;
use crate::codecs::report::DecodeSummary;
use crate::codecs::{line_protocol, ndjson};
use crate::model::Sample;
use crate::telemetry::DropReason;

/// What a message held: its samples (appended to the caller's batch), what
/// was refused and why, and — when anything was refused — the first error,
/// which names the message as malformed (counted, dead-lettered).
#[derive(Debug, Default)]
pub struct Decoded {
    pub samples: usize,
    pub dropped: Vec<(DropReason, u64)>,
    pub error: Option<String>,
}

impl Decoded {
    fn drop(&mut self, reason: DropReason, n: u64) {
        if n > 0 {
            self.dropped.push((reason, n));
        }
    }
}

fn first_error(errors: &line_protocol::LineErrors) -> Option<String> {
    errors.reported().first().map(|e| format!("line {}: {}", e.line, e.message))
}

/// Decodes `payload`, appending its samples to `out`. `now_ms` stands in for missing
/// timestamps; `limits` are the pipeline's (a message over `max_samples` adds nothing and
/// is malformed as a whole).
pub fn decode_message(
    format: MessageFormat,
    payload: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    out: &mut Vec<Sample>,
) -> Decoded {
    let before = out.len();
    let mut d = Decoded::default();
    let mut over_sample_limit = false;
    match format {
        MessageFormat::Protobuf => match decode_bytes(payload, now_ms, limits) {
            Ok(r) => {
                if r.over_sample_limit {
                    d.drop(DropReason::ParseError, r.total as u64);
                    over_sample_limit = true;
                } else {
                    out.extend(r.samples);
                    for (reason, n) in r.refused.iter() {
                        d.drop(reason, n);
                    }
                    d.error = r.errors.into_iter().next();
                }
            }
            Err(e) => {
                // How many samples the message held is unknown: it counts as one.
                d.drop(DropReason::ParseError, 1);
                d.error = Some(format!("not a tsrelay.v1.WriteRequest: {e}"));
            }
        },
        MessageFormat::LineProtocol(precision) => {
            let mut errors = line_protocol::LineErrors::new();
            let default_ns = now_ms.saturating_mul(1_000_000);
            let s = line_protocol::decode_body_limited(payload, precision, default_ns, limits, out, &mut errors);
            over_sample_limit = s.over_sample_limit;
            d.count(&s, out.len() - before);
            d.error = first_error(&errors);
        }
        MessageFormat::Json => {
            let mut errors = line_protocol::LineErrors::new();
            let s = ndjson::decode_body_limited(payload, now_ms, limits, out, &mut errors);
            over_sample_limit = s.over_sample_limit;
            d.count(&s, out.len() - before);
            d.error = first_error(&errors);
        }
    }
    if over_sample_limit {
        out.truncate(before);
        d.error = Some(format!(
            "message holds more than {} samples (validate.max_samples_per_request); none was taken",
            limits.max_samples
        ));
    }
    d.samples = out.len() - before;
    d
}

impl Decoded {
    /// The drops of a line-oriented decode; a message over the sample limit loses the
    /// samples decoded so far (at least one is counted).
    fn count(&mut self, s: &DecodeSummary, decoded: usize) {
        if s.over_sample_limit {
            self.drop(DropReason::ParseError, (decoded as u64).max(1));
            return;
        }
        self.drop(DropReason::ParseError, s.unparsable_lines());
        self.drop(DropReason::NonNumeric, s.non_numeric);
        for (reason, n) in s.refused.iter() {
            self.drop(reason, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Label, Sample as PbSample, Series, WriteRequest};
    use prost::Message as _;

    #[test]
    fn protobuf_message_decodes_and_garbage_is_one_parse_error() {
        let req = WriteRequest {
            id: 0,
            series: vec![Series {
                labels: vec![Label { name: "__name__".into(), value: "up".into() }],
                samples: vec![PbSample { value: 1.0, timestamp: 5 }, PbSample { value: 2.0, timestamp: 6 }],
                ..Default::default()
            }],
        };
        let mut out = Vec::new();
        let d = decode_message(MessageFormat::Protobuf, &req.encode_to_vec(), 1, &DecodeLimits::unlimited(), &mut out);
        assert_eq!((d.samples, out.len()), (2, 2));
        assert!(d.error.is_none() && d.dropped.is_empty());

        let d = decode_message(
            MessageFormat::Protobuf,
            b"\xff\xff\xff not protobuf",
            1,
            &DecodeLimits::unlimited(),
            &mut out,
        );
        assert_eq!(d.samples, 0);
        assert_eq!(d.dropped, vec![(DropReason::ParseError, 1)]);
        assert!(d.error.unwrap().contains("WriteRequest"));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn line_protocol_and_ndjson_keep_good_lines_and_name_the_first_bad_one() {
        let mut out = Vec::new();
        let body = b"cpu,host=a value=1 1700000000000000000\nnot line protocol\ncpu,host=b value=2,note=\"x\" 1700000000000000000\n";
        let format = MessageFormat::LineProtocol(line_protocol::Precision::Nanosecond);
        let d = decode_message(format, body, 1, &DecodeLimits::unlimited(), &mut out);
        assert_eq!(d.samples, 2);
        assert_eq!(out[0].timestamp_ms, 1_700_000_000_000);
        assert_eq!(d.dropped, vec![(DropReason::ParseError, 1), (DropReason::NonNumeric, 1)]);
        assert!(d.error.unwrap().starts_with("line 2:"));

        out.clear();
        let body = b"{\"name\": \"up\", \"labels\": {\"job\": \"a\"}, \"value\": 1, \"timestamp\": 5}\n{oops\n";
        let d = decode_message(MessageFormat::Json, body, 1, &DecodeLimits::unlimited(), &mut out);
        assert_eq!((d.samples, out[0].timestamp_ms), (1, 5));
        assert_eq!(d.dropped, vec![(DropReason::ParseError, 1)]);
        assert!(d.error.unwrap().starts_with("line 2:"));
    }
}
