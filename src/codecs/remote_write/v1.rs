//! Remote-write 1.0: `prometheus.WriteRequest` → samples.
//!
//! Each `TimeSeries` carries its labels and samples; metric types come in the
//! `metadata` field (often in a request of their own), remembered in a
//! [`MetadataCache`] and given to the samples of the families they name.

use prost::Message;

use super::{DecodeError, DecodeLimits, Decoded, MetadataCache, add_series, build_labels, kind_of_metadata_type};
use crate::proto::prometheus::WriteRequest;

pub const MESSAGE: &str = "prometheus.WriteRequest";

/// Decodes a snappy-compressed `prometheus.WriteRequest`.
pub fn decode(body: &[u8], limits: &DecodeLimits, metadata: &MetadataCache) -> Result<Decoded, DecodeError> {
    let raw = super::decompress(body, limits.max_body_bytes)?;
    decode_message(&raw, limits, metadata)
}

/// Decodes an uncompressed `prometheus.WriteRequest`.
pub fn decode_message(raw: &[u8], limits: &DecodeLimits, metadata: &MetadataCache) -> Result<Decoded, DecodeError> {
    let req = WriteRequest::decode(raw).map_err(|source| DecodeError::Protobuf { message: MESSAGE, source })?;
    let count: usize = req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len() + s.exemplars.len()).sum();
    if count > limits.max_samples {
        return Err(DecodeError::TooManySamples { count, max: limits.max_samples });
    }
    let mut out = Decoded { samples: Vec::with_capacity(count), ..Default::default() };
    if !req.metadata.is_empty() {
        out.metadata = req.metadata.len() as u64;
        metadata.learn(req.metadata.iter().map(|m| (m.metric_family_name.as_str(), kind_of_metadata_type(m.r#type))));
    }
    let types = metadata.reader();
    for (i, series) in req.timeseries.iter().enumerate() {
        out.histograms += series.histograms.len() as u64;
        out.exemplars += series.exemplars.len() as u64;
        let labels = build_labels(series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())), limits);
        let kind = match &labels {
            Ok(l) => types.kind_of(l.name().unwrap_or("")),
            Err(_) => Default::default(),
        };
        add_series(&mut out, i, labels, series.samples.iter().map(|s| (s.value, s.timestamp)), kind, || {
            describe(&series.labels)
        });
    }
    Ok(out)
}

/// `{name="value", ...}` of a refused series, shortened.
fn describe(labels: &[crate::proto::prometheus::Label]) -> String {
    let mut s = String::from("{");
    for (i, l) in labels.iter().take(8).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let value: String = l.value.chars().take(64).collect();
        s.push_str(&format!("{}={:?}", l.name.chars().take(64).collect::<String>(), value));
    }
    if labels.len() > 8 {
        s.push_str(", …");
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;
    use crate::proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries};

    fn label(n: &str, v: &str) -> Label {
        Label { name: n.into(), value: v.into() }
    }

    fn compress(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("compress")
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::with_body_limit(1 << 20)
    }

    #[test]
    fn samples_metadata_and_refusals() {
        let cache = MetadataCache::new();
        let meta = WriteRequest {
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "reqs".into(),
                help: "h".into(),
                unit: String::new(),
            }],
            ..Default::default()
        };
        let d = decode(&compress(&meta), &limits(), &cache).expect("metadata-only request");
        assert_eq!((d.samples.len(), d.metadata), (0, 1));
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "reqs_total"), label("job", "a")],
                    samples: vec![Sample { value: 1.0, timestamp: 1000 }, Sample { value: 2.0, timestamp: 2000 }],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![label("job", "a")],
                    samples: vec![Sample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![label("__name__", "g")],
                    samples: vec![Sample { value: 1.0, timestamp: i64::MAX }],
                    histograms: vec![Default::default()],
                    exemplars: vec![Default::default(), Default::default()],
                },
            ],
            ..Default::default()
        };
        let d = decode(&compress(&req), &limits(), &cache).expect("decodes");
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!(d.samples[1].timestamp_ms, 2000);
        assert_eq!(d.samples[0].labels.get("job"), Some("a"));
        assert_eq!((d.invalid_name, d.bad_timestamp, d.histograms, d.exemplars), (1, 1, 1, 2));
        assert!(d.errors[0].contains("series 1") && d.errors[0].contains("__name__"), "{:?}", d.errors);
    }

    #[test]
    fn bad_input_names_what_failed() {
        let cache = MetadataCache::new();
        let e = decode(b"\xff\xff\xff\xff\xff\x01garbage", &limits(), &cache).expect_err("bad snappy");
        assert!(e.to_string().starts_with("invalid snappy block"), "{e}");
        let junk = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff").expect("compress");
        let e = decode(&junk, &limits(), &cache).expect_err("bad protobuf");
        assert!(e.to_string().contains("prometheus.WriteRequest"), "{e}");
        let big = snap::raw::Encoder::new().compress_vec(&vec![0u8; 2 << 20]).expect("compress");
        let e = decode(&big, &limits(), &cache).expect_err("too large");
        assert!(e.is_too_large(), "{e}");
    }

    #[test]
    fn limits_bound_samples_and_labels() {
        let cache = MetadataCache::new();
        let many: Vec<Label> = (0..200).map(|i| label(&format!("l{i}"), "v")).chain([label("__name__", "m")]).collect();
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: many,
                samples: vec![Sample { value: 1.0, timestamp: 1 }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = decode(&compress(&req), &limits(), &cache).expect("decodes");
        assert_eq!((d.samples.len(), d.too_many_labels), (0, 1));
        let mut small = limits();
        small.max_samples = 1;
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "m")],
                samples: vec![Sample { value: 1.0, timestamp: 1 }; 2],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(decode(&compress(&req), &small, &cache).expect_err("too many").is_too_large());
    }
}
