//! A sink batch → one record per series: key = the series hash (8 bytes,
//! big-endian), value = the series' samples in the configured format.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::config::KafkaSinkFormat;
use crate::model::{MetricKind, Sample};
use crate::proto::v1::MetricType;
use crate::sinks::line_protocol::encode_sample;

/// Groups samples by series hash, keeping each series' samples in order.
/// Returns `(hash, samples)` groups in hash order.
pub fn group_by_series<'a>(samples: impl Iterator<Item = (&'a Sample, u64)>) -> Vec<(u64, Vec<&'a Sample>)> {
    let mut all: Vec<(u64, &Sample)> = samples.map(|(s, h)| (h, s)).collect();
    // Stable: a series' samples keep their order.
    all.sort_by_key(|(h, _)| *h);
    let mut groups: Vec<(u64, Vec<&Sample>)> = Vec::new();
    for (h, s) in all {
        match groups.last_mut() {
            Some((last, v)) if *last == h => v.push(s),
            _ => groups.push((h, vec![s])),
        }
    }
    groups
}

/// The record key of a series.
pub fn key(hash: u64) -> [u8; 8] {
    hash.to_be_bytes()
}

/// Encodes one group's samples into `out` (cleared first). Returns how many
/// samples could not be represented (line protocol: NaN/Inf, out-of-range time).
pub fn encode_value(format: KafkaSinkFormat, samples: &[&Sample], out: &mut Vec<u8>) -> usize {
    out.clear();
    match format {
        KafkaSinkFormat::Protobuf => {
            encode_write_request(samples, out);
            0
        }
        KafkaSinkFormat::LineProtocol => samples.iter().filter(|s| !encode_sample(s, s.name(), "value", out)).count(),
    }
}

fn metric_type(kind: MetricKind) -> MetricType {
    match kind {
        MetricKind::Unspecified => MetricType::Unspecified,
        MetricKind::Counter => MetricType::Counter,
        MetricKind::Gauge => MetricType::Gauge,
        MetricKind::Histogram => MetricType::Histogram,
        MetricKind::Summary => MetricType::Summary,
    }
}

fn sample_len(s: &Sample) -> usize {
    // value: key + fixed64; timestamp: key + varint (proto3 leaves out zeros).
    let value = if s.value.to_bits() != 0 { 1 + 8 } else { 0 };
    let ts = if s.timestamp_ms != 0 { 1 + encoded_len_varint(s.timestamp_ms as u64) } else { 0 };
    value + ts
}

/// `tsrelay.v1.WriteRequest` written directly (no intermediate owned
/// strings): one `Series` per run of samples with the same labels, which is
/// one series unless two series share a hash.
fn encode_write_request(samples: &[&Sample], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < samples.len() {
        let first = samples[i];
        let run = samples[i..].iter().take_while(|s| s.labels == first.labels && s.kind == first.kind).count();
        let series = &samples[i..i + run];
        i += run;

        // Packed labels are already `repeated Label labels = 1`.
        let labels = first.labels.packed_parts();
        let kind = metric_type(first.kind) as i32;
        let mut series_len = first.labels.packed_len();
        for s in series {
            let n = sample_len(s);
            series_len += 1 + encoded_len_varint(n as u64) + n;
        }
        if kind != 0 {
            series_len += 1 + encoded_len_varint(kind as u64);
        }

        encode_key(1, WireType::LengthDelimited, out);
        encode_varint(series_len as u64, out);
        labels.iter().for_each(|part| out.extend_from_slice(part));
        for s in series {
            encode_key(2, WireType::LengthDelimited, out);
            encode_varint(sample_len(s) as u64, out);
            if s.value.to_bits() != 0 {
                encode_key(1, WireType::SixtyFourBit, out);
                out.extend_from_slice(&s.value.to_le_bytes());
            }
            if s.timestamp_ms != 0 {
                encode_key(2, WireType::Varint, out);
                encode_varint(s.timestamp_ms as u64, out);
            }
        }
        if kind != 0 {
            encode_key(3, WireType::Varint, out);
            encode_varint(kind as u64, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::Labels;
    use crate::proto::v1::WriteRequest;

    fn sample(host: &str, value: f64, ts: i64, kind: MetricKind) -> Sample {
        let mut labels: Labels = [("__name__", "cpu"), ("host", host), ("empty", "")].into_iter().collect();
        labels.sort();
        Sample { labels, value, timestamp_ms: ts, kind }
    }

    #[test]
    fn protobuf_value_decodes_as_a_write_request() {
        let samples = [
            sample("a", 1.5, 1_700_000_000_000, MetricKind::Counter),
            sample("a", 0.0, -5, MetricKind::Counter),
            sample("b", f64::NAN, 0, MetricKind::Unspecified),
        ];
        let refs: Vec<&Sample> = samples.iter().collect();
        let mut out = Vec::new();
        assert_eq!(encode_value(KafkaSinkFormat::Protobuf, &refs, &mut out), 0);
        let req = WriteRequest::decode(&out[..]).unwrap();
        assert_eq!(req.series.len(), 2);
        let a = &req.series[0];
        assert_eq!(a.r#type, MetricType::Counter as i32);
        let names: Vec<(&str, &str)> = a.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(names, vec![("__name__", "cpu"), ("empty", ""), ("host", "a")]);
        assert_eq!(a.samples.len(), 2);
        assert_eq!((a.samples[0].value, a.samples[0].timestamp), (1.5, 1_700_000_000_000));
        assert_eq!((a.samples[1].value, a.samples[1].timestamp), (0.0, -5));
        assert!(req.series[1].samples[0].value.is_nan());
        assert_eq!(req.series[1].r#type, 0);
    }

    #[test]
    fn groups_by_hash_in_order_and_line_protocol_counts_unrepresentable() {
        let samples = [
            sample("a", 1.0, 1, MetricKind::Gauge),
            sample("b", 2.0, 1, MetricKind::Gauge),
            sample("a", f64::INFINITY, 2, MetricKind::Gauge),
            sample("a", 3.0, 3, MetricKind::Gauge),
        ];
        let groups = group_by_series(samples.iter().map(|s| (s, s.labels.series_hash())));
        assert_eq!(groups.len(), 2);
        let a = groups.iter().find(|(h, _)| *h == samples[0].labels.series_hash()).unwrap();
        assert_eq!(a.1.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(), vec![1, 2, 3]);
        let mut out = Vec::new();
        assert_eq!(encode_value(KafkaSinkFormat::LineProtocol, &a.1, &mut out), 1);
        assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
        assert_eq!(key(0x0102030405060708), [1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
