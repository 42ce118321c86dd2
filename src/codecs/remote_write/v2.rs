//! Remote-write 2.0: `io.prometheus.write.v2.Request` → samples.
//!
//! Strings (label names and values, help, unit) are references into the
//! request's `symbols` table; each series carries its own metadata, whose type
//! is given to the series' samples.

use prost::Message;

use super::{DecodeError, DecodeLimits, Decoded, SeriesProblem, add_series, build_labels, kind_of_metadata_type};
use crate::proto::write_v2::Request;

pub const MESSAGE: &str = "io.prometheus.write.v2.Request";

/// Decodes a snappy-compressed `io.prometheus.write.v2.Request`.
pub fn decode(body: &[u8], limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let raw = super::decompress(body, limits.max_body_bytes)?;
    decode_message(&raw, limits)
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request`.
pub fn decode_message(raw: &[u8], limits: &DecodeLimits) -> Result<Decoded, DecodeError> {
    let req = Request::decode(raw).map_err(|source| DecodeError::Protobuf { message: MESSAGE, source })?;
    let count: usize = req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len() + s.exemplars.len()).sum();
    if count > limits.max_samples {
        return Err(DecodeError::TooManySamples { count, max: limits.max_samples });
    }
    let symbols = &req.symbols;
    let mut out = Decoded { samples: Vec::with_capacity(count), ..Default::default() };
    for (i, series) in req.timeseries.iter().enumerate() {
        out.histograms += series.histograms.len() as u64;
        out.exemplars += series.exemplars.len() as u64;
        let refs = &series.labels_refs;
        let labels = if refs.len() % 2 != 0 {
            Err(SeriesProblem::InvalidName(format!("labels_refs has an odd length ({})", refs.len())))
        } else if let Some(bad) = refs.iter().find(|&&r| r as usize >= symbols.len()) {
            Err(SeriesProblem::InvalidName(format!(
                "labels_refs points at symbol {bad}, but the table has {} symbols",
                symbols.len()
            )))
        } else {
            let pairs =
                refs.chunks_exact(2).map(|p| (symbols[p[0] as usize].as_str(), symbols[p[1] as usize].as_str()));
            build_labels(pairs, limits)
        };
        let kind = match &series.metadata {
            Some(m) => {
                out.metadata += 1;
                kind_of_metadata_type(m.r#type)
            }
            None => Default::default(),
        };
        add_series(&mut out, i, labels, series.samples.iter().map(|s| (s.value, s.timestamp)), kind, || {
            describe(refs, symbols)
        });
    }
    Ok(out)
}

fn describe(refs: &[u32], symbols: &[String]) -> String {
    let sym = |r: u32| {
        symbols.get(r as usize).map(|s| s.chars().take(64).collect::<String>()).unwrap_or_else(|| format!("#{r}?"))
    };
    let parts: Vec<String> = refs
        .chunks(2)
        .take(8)
        .map(|p| format!("{}={:?}", sym(p[0]), p.get(1).map(|&v| sym(v)).unwrap_or_default()))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetricKind;
    use crate::proto::write_v2::{Metadata, Sample, TimeSeries};

    fn compress(req: &Request) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("compress")
    }

    #[test]
    fn symbols_metadata_and_refusals() {
        let symbols = ["", "__name__", "up", "job", "a", "reqs_total"].map(String::from).to_vec();
        let req = Request {
            symbols,
            timeseries: vec![
                TimeSeries {
                    labels_refs: vec![1, 5, 3, 4],
                    samples: vec![Sample { value: 3.0, timestamp: 10, ..Default::default() }],
                    metadata: Some(Metadata { r#type: 1, help_ref: 0, unit_ref: 0 }),
                    exemplars: vec![Default::default()],
                    ..Default::default()
                },
                TimeSeries {
                    labels_refs: vec![1, 2, 3],
                    samples: vec![Sample { value: 1.0, timestamp: 10, ..Default::default() }],
                    ..Default::default()
                },
                TimeSeries {
                    labels_refs: vec![1, 99],
                    samples: vec![Sample { value: 1.0, timestamp: 10, ..Default::default() }],
                    histograms: vec![Default::default()],
                    ..Default::default()
                },
            ],
        };
        let d = decode(&compress(&req), &DecodeLimits::with_body_limit(1 << 20)).expect("decodes");
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].name(), "reqs_total");
        assert_eq!(d.samples[0].labels.get("job"), Some("a"));
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!((d.invalid_name, d.exemplars, d.histograms), (2, 1, 1));
        assert!(d.errors.iter().any(|e| e.contains("odd length")), "{:?}", d.errors);
        assert!(d.errors.iter().any(|e| e.contains("symbol 99")), "{:?}", d.errors);
    }

    #[test]
    fn a_v1_body_is_an_empty_v2_request() {
        // Fields 1-3 are reserved in 2.0 so a 1.0 body decodes as "nothing", deterministically.
        let v1 = crate::proto::prometheus::WriteRequest { timeseries: vec![Default::default()], ..Default::default() };
        let d = decode_message(&v1.encode_to_vec(), &DecodeLimits::with_body_limit(1 << 20)).expect("decodes");
        assert!(d.samples.is_empty());
    }
}
