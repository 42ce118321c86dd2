//! One Kafka message → samples, in the configured format.

use prost::Message as _;

use super::config::KafkaFormat;
use crate::model::Sample;
use crate::proto::v1::WriteRequest;
use crate::receivers::grpc::decode_request;
use crate::receivers::http::{line_protocol, ndjson};
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

/// Decodes `payload`, appending its samples to `out`. `now_ms` stands in for missing timestamps.
pub fn decode_message(format: KafkaFormat, payload: &[u8], now_ms: i64, out: &mut Vec<Sample>) -> Decoded {
    let before = out.len();
    let mut d = Decoded::default();
    match format {
        KafkaFormat::Protobuf => match WriteRequest::decode(payload) {
            Ok(req) => {
                let r = decode_request(req, now_ms);
                out.extend(r.samples);
                d.drop(DropReason::InvalidName, r.rejected_invalid_name);
                d.drop(DropReason::TimestampOutOfWindow, r.rejected_timestamp);
                d.error = r.errors.into_iter().next();
            }
            Err(e) => {
                // How many samples the message held is unknown: it counts as one.
                d.drop(DropReason::ParseError, 1);
                d.error = Some(format!("not a tsrelay.v1.WriteRequest: {e}"));
            }
        },
        KafkaFormat::LineProtocol => {
            let mut errors = Vec::new();
            let s =
                line_protocol::decode_into(payload, line_protocol::Precision::Nanoseconds, now_ms, out, &mut errors);
            d.drop(DropReason::ParseError, s.rejected_lines);
            d.drop(DropReason::NonNumeric, s.non_numeric);
            d.error = errors.into_iter().next().map(|(line, message)| format!("line {line}: {message}"));
        }
        KafkaFormat::Json => {
            let mut errors = Vec::new();
            let s = ndjson::decode_into(payload, now_ms, out, &mut errors);
            d.drop(DropReason::ParseError, s.rejected_lines);
            d.error = errors.into_iter().next().map(|(line, message)| format!("line {line}: {message}"));
        }
    }
    d.samples = out.len() - before;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Label, Sample as PbSample, Series};

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
        let d = decode_message(KafkaFormat::Protobuf, &req.encode_to_vec(), 1, &mut out);
        assert_eq!((d.samples, out.len()), (2, 2));
        assert!(d.error.is_none() && d.dropped.is_empty());

        let d = decode_message(KafkaFormat::Protobuf, b"\xff\xff\xff not protobuf", 1, &mut out);
        assert_eq!(d.samples, 0);
        assert_eq!(d.dropped, vec![(DropReason::ParseError, 1)]);
        assert!(d.error.unwrap().contains("WriteRequest"));
        assert_eq!(out.len(), 2);
    }
}
