//! Batch → remote-write 2.0 request body (`io.prometheus.write.v2.Request`,
//! snappy block format): label names and values interned once in the
//! request's `symbols` table (which starts with `""`, as the specification
//! asks), one `TimeSeries` per series with its samples in timestamp order and
//! its type in the series' own metadata. Also the reverse direction a sender
//! needs when a receiver turns out to speak only 1.0: [`to_v1`].

use std::collections::HashMap;

use prost::Message;

use crate::model::{MetricKind, Sample};
use crate::proto::prometheus as v1;
use crate::proto::write_v2 as v2;

/// `Metadata.MetricType` of a sample kind.
fn metric_type(kind: MetricKind) -> i32 {
    match kind {
        MetricKind::Unspecified => 0,
        MetricKind::Counter => 1,
        MetricKind::Gauge => 2,
        MetricKind::Histogram => 3,
        MetricKind::Summary => 5,
    }
}

/// What one encoding produced besides the bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct V2Summary {
    pub series: usize,
    pub samples: usize,
    /// Samples of series with a repeated label name or no label at all.
    pub unrepresentable: usize,
}

/// Encodes 2.0 requests.
#[derive(Default)]
pub struct V2Encoder;

impl V2Encoder {
    pub fn encode<'a>(
        &mut self,
        samples: impl Iterator<Item = (&'a Sample, u64)>,
    ) -> Result<(Vec<u8>, V2Summary), snap::Error> {
        let mut symbols: Vec<String> = vec![String::new()];
        let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
        let mut intern = |s: &str, symbols: &mut Vec<String>| -> u32 {
            if let Some(&i) = index.get(s) {
                return i;
            }
            let i = symbols.len() as u32;
            symbols.push(s.to_string());
            index.insert(s.to_string(), i);
            i
        };
        let mut by_hash: HashMap<u64, usize> = HashMap::new();
        let mut series: Vec<v2::TimeSeries> = Vec::new();
        let mut summary = V2Summary::default();
        for (sample, hash) in samples {
            let at = match by_hash.get(&hash) {
                Some(&i) => i,
                None => {
                    let mut labels: Vec<(&str, &str)> =
                        sample.labels.iter().filter(|l| !l.value.is_empty()).map(|l| (l.name, l.value)).collect();
                    labels.sort_unstable();
                    if labels.is_empty() || labels.windows(2).any(|w| w[0].0 == w[1].0) {
                        summary.unrepresentable += 1;
                        continue;
                    }
                    let mut refs = Vec::with_capacity(labels.len() * 2);
                    for (n, v) in labels {
                        refs.push(intern(n, &mut symbols));
                        refs.push(intern(v, &mut symbols));
                    }
                    let metadata = (sample.kind != MetricKind::Unspecified).then(|| v2::Metadata {
                        r#type: metric_type(sample.kind),
                        help_ref: 0,
                        unit_ref: 0,
                    });
                    series.push(v2::TimeSeries { labels_refs: refs, metadata, ..Default::default() });
                    by_hash.insert(hash, series.len() - 1);
                    series.len() - 1
                }
            };
            series[at].samples.push(v2::Sample {
                value: sample.value,
                timestamp: sample.timestamp_ms,
                ..Default::default()
            });
            summary.samples += 1;
        }
        for s in &mut series {
            s.samples.sort_by_key(|x| x.timestamp);
        }
        summary.series = series.len();
        let request = v2::Request { symbols, timeseries: series };
        let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
        Ok((body, summary))
    }
}

/// Why a 2.0 body could not be turned into a 1.0 body.
#[derive(Debug, thiserror::Error)]
pub enum TranscodeError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("a symbol reference is out of range")]
    BadRef,
}

/// A 2.0 body (as [`V2Encoder`] wrote it) as the equivalent 1.0 body, for the
/// fallback when the receiver speaks only 1.0. Metadata becomes 1.0 metadata
/// entries per metric name.
pub fn to_v1(body: &[u8]) -> Result<Vec<u8>, TranscodeError> {
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    let req = v2::Request::decode(&raw[..])?;
    let sym = |r: u32| req.symbols.get(r as usize).cloned().ok_or(TranscodeError::BadRef);
    let mut out = v1::WriteRequest::default();
    let mut typed: HashMap<String, i32> = HashMap::new();
    for s in &req.timeseries {
        let mut labels = Vec::with_capacity(s.labels_refs.len() / 2);
        for pair in s.labels_refs.chunks_exact(2) {
            labels.push(v1::Label { name: sym(pair[0])?, value: sym(pair[1])? });
        }
        if let (Some(m), Some(name)) = (&s.metadata, labels.iter().find(|l| l.name == "__name__"))
            && m.r#type != 0
        {
            typed.insert(name.value.clone(), m.r#type);
        }
        out.timeseries.push(v1::TimeSeries {
            labels,
            samples: s.samples.iter().map(|x| v1::Sample { value: x.value, timestamp: x.timestamp }).collect(),
            ..Default::default()
        });
    }
    out.metadata = typed
        .into_iter()
        .map(|(name, t)| v1::MetricMetadata { r#type: t, metric_family_name: name, ..Default::default() })
        .collect();
    Ok(snap::raw::Encoder::new().compress_vec(&out.encode_to_vec())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::remote_write::{DecodeLimits, MetadataCache, v1 as dec1, v2 as dec2};
    use crate::model::Labels;

    fn sample(name: &str, job: &str, value: f64, ts: i64, kind: MetricKind) -> Sample {
        let mut labels = Labels::new();
        labels.push("__name__", name);
        labels.push("job", job);
        Sample { labels, value, timestamp_ms: ts, kind }
    }

    #[test]
    fn round_trips_through_both_decoders() {
        let samples = [
            sample("a_total", "x", 1.0, 20, MetricKind::Counter),
            sample("b", "x", f64::from_bits(0x7ff0_0000_0000_0002), 10, MetricKind::Gauge),
            sample("a_total", "x", 0.5, 10, MetricKind::Counter),
        ];
        let (body, summary) = V2Encoder.encode(samples.iter().map(|s| (s, s.labels.series_hash()))).expect("encodes");
        assert_eq!((summary.series, summary.samples, summary.unrepresentable), (2, 3, 0));
        let limits = DecodeLimits::with_body_limit(1 << 20);
        let d =
            dec2::decode(&body, 0, &limits, &crate::codecs::remote_write::MetadataCache::new()).expect("2.0 decodes");
        let got: Vec<_> =
            d.samples.iter().map(|s| (s.name().to_string(), s.value.to_bits(), s.timestamp_ms, s.kind)).collect();
        assert_eq!(
            got,
            vec![
                ("a_total".into(), 0.5f64.to_bits(), 10, MetricKind::Counter),
                ("a_total".into(), 1.0f64.to_bits(), 20, MetricKind::Counter),
                ("b".into(), 0x7ff0_0000_0000_0002, 10, MetricKind::Gauge),
            ]
        );
        let as_v1 = to_v1(&body).expect("transcodes");
        let d1 = dec1::decode(&as_v1, 0, &limits, &MetadataCache::new()).expect("1.0 decodes");
        let got1: Vec<_> =
            d1.samples.iter().map(|s| (s.name().to_string(), s.value.to_bits(), s.timestamp_ms, s.kind)).collect();
        assert_eq!(got1, got);
    }
}
