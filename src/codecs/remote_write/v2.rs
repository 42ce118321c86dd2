//! Remote-write 2.0: `io.prometheus.write.v2.Request` → samples.
//!
//! Strings (label names and values, help, unit) are references into the
//! request's `symbols` table; each series carries its own metadata, whose type
//! is given to the series' samples and remembered in the [`MetadataCache`]
//! shared with 1.0 (so a later series of the family without a type, in 1.0 or
//! 2.0, gets it too).
//!
//! Help and unit: their references are checked (a reference outside the
//! symbols table refuses the series, as a bad label reference does), but the
//! text is not kept, as 1.0's is not. The one place the design has for help
//! and unit is the metric registry, which is the operator's configuration
//! (the validate stage checks senders against it, never the reverse); taking
//! a sender's text would let any writer rewrite what the registry and the
//! discovery API show. The 2.0 sink sends no help or unit either.

use prost::Message;

use super::{DecodeError, DecodeLimits, Decoded, MetadataCache, add_series, build_labels, kind_of_metadata_type};
use crate::model::MetricKind;
use crate::proto::write_v2::Request;

pub const MESSAGE: &str = "io.prometheus.write.v2.Request";

/// Decodes a snappy-compressed `io.prometheus.write.v2.Request`.
pub fn decode(
    body: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    let raw = super::decompress(body, limits.max_body_bytes)?;
    decode_message(&raw, now_ms, limits, metadata)
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request`.
pub fn decode_message(
    raw: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    let req = Request::decode(raw).map_err(|source| DecodeError::Protobuf { message: MESSAGE, source })?;
    let count: usize = req.timeseries.iter().map(|s| s.samples.len() + s.histograms.len() + s.exemplars.len()).sum();
    if count > limits.max_samples() {
        return Err(DecodeError::TooManySamples { count, max: limits.max_samples() });
    }
    let symbols = &req.symbols;
    // The types this request states, remembered before any series is read.
    let name_of = |refs: &[u32]| {
        refs.chunks_exact(2)
            .find(|p| symbols.get(p[0] as usize).is_some_and(|n| n == "__name__"))
            .and_then(|p| symbols.get(p[1] as usize))
            .map(String::as_str)
    };
    let stated = req.timeseries.iter().filter_map(|series| {
        let kind = kind_of_metadata_type(series.metadata.as_ref()?.r#type);
        Some((name_of(&series.labels_refs)?, kind))
    });
    metadata.learn(stated);
    let types = metadata.reader();
    let checker = limits.pipeline.checker(now_ms);
    let mut out = Decoded { samples: Vec::with_capacity(count), ..Default::default() };
    for (i, series) in req.timeseries.iter().enumerate() {
        out.histograms += series.histograms.len() as u64;
        out.exemplars += series.exemplars.len() as u64;
        let refs = &series.labels_refs;
        let labels = if refs.len() % 2 != 0 {
            Err(super::invalid(format!("labels_refs has an odd length ({})", refs.len())))
        } else if let Some(bad) = refs.iter().find(|&&r| r as usize >= symbols.len()) {
            Err(super::invalid(format!(
                "labels_refs points at symbol {bad}, but the table has {} symbols",
                symbols.len()
            )))
        } else if let Some((what, bad)) = series.metadata.as_ref().and_then(|m| {
            [("help_ref", m.help_ref), ("unit_ref", m.unit_ref)].into_iter().find(|(_, r)| *r as usize >= symbols.len())
        }) {
            Err(super::invalid(format!(
                "metadata {what} points at symbol {bad}, but the table has {} symbols",
                symbols.len()
            )))
        } else {
            let pairs =
                refs.chunks_exact(2).map(|p| (symbols[p[0] as usize].as_str(), symbols[p[1] as usize].as_str()));
            build_labels(pairs, &checker)
        };
        let stated = match &series.metadata {
            Some(m) => {
                out.metadata += 1;
                kind_of_metadata_type(m.r#type)
            }
            None => MetricKind::Unspecified,
        };
        let kind = match (&labels, stated) {
            (Ok(l), MetricKind::Unspecified) => types.kind_of(l.name().unwrap_or("")),
            _ => stated,
        };
        add_series(&mut out, i, labels, series.samples.iter().map(|s| (s.value, s.timestamp)), kind, &checker, || {
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
        let d = decode(&compress(&req), 0, &DecodeLimits::with_body_limit(1 << 20), &MetadataCache::new())
            .expect("decodes");
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].name(), "reqs_total");
        assert_eq!(d.samples[0].labels.get("job"), Some("a"));
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!((d.refused.get(crate::telemetry::DropReason::InvalidName), d.exemplars, d.histograms), (2, 1, 1));
        assert!(d.errors.iter().any(|e| e.contains("odd length")), "{:?}", d.errors);
        assert!(d.errors.iter().any(|e| e.contains("symbol 99")), "{:?}", d.errors);
    }

    #[test]
    fn a_v1_body_is_an_empty_v2_request() {
        // Fields 1-3 are reserved in 2.0 so a 1.0 body decodes as "nothing", deterministically.
        let v1 = crate::proto::prometheus::WriteRequest { timeseries: vec![Default::default()], ..Default::default() };
        let d = decode_message(&v1.encode_to_vec(), 0, &DecodeLimits::with_body_limit(1 << 20), &MetadataCache::new())
            .expect("decodes");
        assert!(d.samples.is_empty());
    }

    /// A stated type reaches the samples, is remembered for later series of
    /// the family (in 2.0 and in 1.0), and bad help/unit references refuse the series.
    #[test]
    fn metadata_types_are_shared_with_v1_and_help_unit_refs_checked() {
        let cache = MetadataCache::new();
        let limits = DecodeLimits::with_body_limit(1 << 20);
        let symbols = ["", "__name__", "lat_seconds", "le", "1", "Latency.", "seconds", "lat_seconds_bucket"]
            .map(String::from)
            .to_vec();
        let with_type = Request {
            symbols: symbols.clone(),
            timeseries: vec![
                TimeSeries {
                    labels_refs: vec![1, 2],
                    samples: vec![Sample { value: 1.0, timestamp: 10, ..Default::default() }],
                    // HISTOGRAM, help "Latency.", unit "seconds".
                    metadata: Some(Metadata { r#type: 3, help_ref: 5, unit_ref: 6 }),
                    ..Default::default()
                },
                TimeSeries {
                    labels_refs: vec![1, 2],
                    samples: vec![Sample { value: 2.0, timestamp: 10, ..Default::default() }],
                    metadata: Some(Metadata { r#type: 3, help_ref: 42, unit_ref: 6 }),
                    ..Default::default()
                },
            ],
        };
        let d = decode_message(&with_type.encode_to_vec(), 0, &limits, &cache).expect("decodes");
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.samples[0].kind, MetricKind::Histogram);
        assert!(d.errors.iter().any(|e| e.contains("help_ref points at symbol 42")), "{:?}", d.errors);
        // A later 2.0 series of the family, without metadata: the remembered type.
        let without = Request {
            symbols,
            timeseries: vec![TimeSeries {
                labels_refs: vec![1, 7, 3, 4],
                samples: vec![Sample { value: 3.0, timestamp: 10, ..Default::default() }],
                ..Default::default()
            }],
        };
        let d = decode_message(&without.encode_to_vec(), 0, &limits, &cache).expect("decodes");
        assert_eq!(d.samples[0].kind, MetricKind::Histogram);
        // And a 1.0 request of the family, which sent no metadata of its own.
        use crate::proto::prometheus as rw1;
        let v1 = rw1::WriteRequest {
            timeseries: vec![rw1::TimeSeries {
                labels: vec![rw1::Label { name: "__name__".into(), value: "lat_seconds_count".into() }],
                samples: vec![rw1::Sample { value: 4.0, timestamp: 10 }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let d = super::super::v1::decode_message(&v1.encode_to_vec(), 0, &limits, &cache).expect("decodes");
        assert_eq!(d.samples[0].kind, MetricKind::Histogram);
    }
}
