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
use crate::codecs::wire::{Fields, WireError, WireType};
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
    super::with_decompressed(body, limits.max_body_bytes, |raw| decode_message(raw, now_ms, limits, metadata))?
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request`, walking the
/// bytes in place: symbols are borrowed `&str`, label references go to one
/// flat list, and labels are packed once per series. A request with exemplars
/// or native histograms (not kept, only counted) is decoded by the generated
/// code instead ([`decode_message_with_prost`]); the two accept the same
/// bodies and give the same result (the `remote_write_v2` fuzz target
/// compares them).
pub fn decode_message(
    raw: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    match Walked::walk(raw).map_err(|source| DecodeError::Wire { message: MESSAGE, source })? {
        Some(request) => request.decode(now_ms, limits, metadata),
        None => decode_message_with_prost(raw, now_ms, limits, metadata),
    }
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request` with the generated
/// (prost) types: the path for requests with exemplars or histograms, and the
/// reference the in-place walk is compared with.
pub fn decode_message_with_prost(
    raw: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    let req = Request::decode(raw).map_err(|source| DecodeError::Protobuf { message: MESSAGE, source })?;
    Walked::from_generated(&req).decode(now_ms, limits, metadata)
}

/// A request as borrowed slices of its body: the symbols, and every series'
/// label references and samples in two flat lists, ranges per series.
#[derive(Default)]
struct Walked<'a> {
    symbols: Vec<&'a str>,
    series: Vec<SeriesParts>,
    refs: Vec<u32>,
    samples: Vec<(f64, i64)>,
}

#[derive(Default)]
struct SeriesParts {
    refs: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    /// `(type, help_ref, unit_ref)` when the series has metadata.
    metadata: Option<(i32, u32, u32)>,
    /// Counted, not kept.
    histograms: u64,
    exemplars: u64,
}

impl<'a> Walked<'a> {
    /// The same view of a request prost decoded.
    fn from_generated(req: &'a Request) -> Self {
        let mut out = Walked { symbols: req.symbols.iter().map(String::as_str).collect(), ..Default::default() };
        for series in &req.timeseries {
            let (refs_from, samples_from) = (out.refs.len(), out.samples.len());
            out.refs.extend_from_slice(&series.labels_refs);
            out.samples.extend(series.samples.iter().map(|s| (s.value, s.timestamp)));
            out.series.push(SeriesParts {
                refs: refs_from..out.refs.len(),
                samples: samples_from..out.samples.len(),
                metadata: series.metadata.as_ref().map(|m| (m.r#type, m.help_ref, m.unit_ref)),
                histograms: series.histograms.len() as u64,
                exemplars: series.exemplars.len() as u64,
            });
        }
        out
    }

    /// The samples, refusals and counts of the request.
    fn decode(&self, now_ms: i64, limits: &DecodeLimits, metadata: &MetadataCache) -> Result<Decoded, DecodeError> {
        let count =
            self.samples.len() + self.series.iter().map(|s| (s.histograms + s.exemplars) as usize).sum::<usize>();
        if count > limits.max_samples() {
            return Err(DecodeError::TooManySamples { count, max: limits.max_samples() });
        }
        let symbols = &self.symbols;
        // The types this request states, remembered before any series is read.
        let name_of = |refs: &[u32]| {
            refs.chunks_exact(2)
                .find(|p| symbols.get(p[0] as usize).is_some_and(|n| *n == "__name__"))
                .and_then(|p| symbols.get(p[1] as usize))
                .copied()
        };
        let stated = self.series.iter().filter_map(|series| {
            let kind = kind_of_metadata_type(series.metadata?.0);
            Some((name_of(&self.refs[series.refs.clone()])?, kind))
        });
        metadata.learn(stated);
        let types = metadata.reader();
        let checker = limits.pipeline.checker(now_ms);
        let mut out = Decoded { samples: Vec::with_capacity(count), ..Default::default() };
        for (i, series) in self.series.iter().enumerate() {
            out.histograms += series.histograms;
            out.exemplars += series.exemplars;
            let refs = &self.refs[series.refs.clone()];
            let labels = if !refs.len().is_multiple_of(2) {
                Err(super::invalid(format!("labels_refs has an odd length ({})", refs.len())))
            } else if let Some(bad) = refs.iter().find(|&&r| r as usize >= symbols.len()) {
                Err(super::invalid(format!(
                    "labels_refs points at symbol {bad}, but the table has {} symbols",
                    symbols.len()
                )))
            } else if let Some((what, bad)) = series.metadata.and_then(|(_, help, unit)| {
                [("help_ref", help), ("unit_ref", unit)].into_iter().find(|(_, r)| *r as usize >= symbols.len())
            }) {
                Err(super::invalid(format!(
                    "metadata {what} points at symbol {bad}, but the table has {} symbols",
                    symbols.len()
                )))
            } else {
                let pairs = refs.chunks_exact(2).map(|p| (symbols[p[0] as usize], symbols[p[1] as usize]));
                build_labels(pairs, &checker)
            };
            let stated = match series.metadata {
                Some((kind, _, _)) => {
                    out.metadata += 1;
                    kind_of_metadata_type(kind)
                }
                None => MetricKind::Unspecified,
            };
            let kind = match (&labels, stated) {
                (Ok(l), MetricKind::Unspecified) => types.kind_of(l.name().unwrap_or("")),
                _ => stated,
            };
            let samples = &self.samples[series.samples.clone()];
            add_series(&mut out, i, labels, samples.iter().copied(), kind, &checker, || describe(refs, symbols));
        }
        Ok(out)
    }

    /// Walks the whole body (every wire error comes out before anything is
    /// built, as with prost); `None` when a series carries exemplars or
    /// histograms.
    fn walk(raw: &'a [u8]) -> Result<Option<Walked<'a>>, WireError> {
        let mut request = Walked::default();
        let mut fields = Fields::new(raw);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                4 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let symbol = fields.str()?;
                    request.symbols.push(symbol);
                }
                5 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let series = fields.message()?;
                    if !request.series(series)? {
                        return Ok(None);
                    }
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        Ok(Some(request))
    }

    /// One `TimeSeries`; false when it has exemplars or histograms.
    fn series(&mut self, mut fields: Fields<'a>) -> Result<bool, WireError> {
        let (refs_from, samples_from) = (self.refs.len(), self.samples.len());
        let mut metadata = None;
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                // Repeated `uint32`: packed, or one value per field.
                1 if wire_type == WireType::LengthDelimited => {
                    let mut packed = Fields::new(fields.bytes()?);
                    while !packed.is_empty() {
                        self.refs.push(packed.varint()? as u32);
                    }
                }
                1 => {
                    wire_type.must_be(WireType::Varint)?;
                    self.refs.push(fields.varint()? as u32);
                }
                2 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    // Field 3 is `start_timestamp`, not kept.
                    let sample = fields.message()?.value_timestamp(&[3])?;
                    self.samples.push(sample);
                }
                3 | 4 => return Ok(false),
                5 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let mut m = fields.message()?;
                    // A singular message field met twice is merged, as prost does.
                    let (kind, help, unit) = metadata.get_or_insert((0, 0, 0));
                    while let Some((tag, wire_type)) = m.next_key()? {
                        match tag {
                            1 => {
                                wire_type.must_be(WireType::Varint)?;
                                *kind = m.varint()? as i32;
                            }
                            3 => {
                                wire_type.must_be(WireType::Varint)?;
                                *help = m.varint()? as u32;
                            }
                            4 => {
                                wire_type.must_be(WireType::Varint)?;
                                *unit = m.varint()? as u32;
                            }
                            _ => m.skip(tag, wire_type)?,
                        }
                    }
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        self.series.push(SeriesParts {
            refs: refs_from..self.refs.len(),
            samples: samples_from..self.samples.len(),
            metadata,
            ..Default::default()
        });
        Ok(true)
    }
}

fn describe(refs: &[u32], symbols: &[&str]) -> String {
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

    /// The in-place walk and the generated decoder give the same result:
    /// packed and unpacked label references, metadata met twice (merged),
    /// fields tsrelay does not know, exemplars (the generated path).
    #[test]
    fn walk_agrees_with_prost() {
        let symbols = ["", "__name__", "reqs_total", "job", "a"].map(String::from).to_vec();
        let req = Request {
            symbols,
            timeseries: vec![
                TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![Sample { value: 3.0, timestamp: 10, start_timestamp: 5 }],
                    metadata: Some(Metadata { r#type: 1, help_ref: 0, unit_ref: 0 }),
                    ..Default::default()
                },
                TimeSeries { labels_refs: vec![1, 2, 3], samples: vec![Default::default()], ..Default::default() },
            ],
        };
        let limits = DecodeLimits::with_body_limit(1 << 20);
        let check = |raw: &[u8]| {
            let a = decode_message(raw, 0, &limits, &MetadataCache::new());
            let b = decode_message_with_prost(raw, 0, &limits, &MetadataCache::new());
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert!(a.same_as(&b), "{a:?}\n{b:?}");
                    a
                }
                (a, b) => panic!("{a:?} / {b:?}"),
            }
        };
        let d = check(&req.encode_to_vec());
        assert_eq!((d.samples.len(), d.samples[0].kind), (1, MetricKind::Counter));
        // A series with unpacked references (field 1 as varints), its metadata
        // twice (the second sets only the type: merged, help_ref stays 0), and
        // an unknown field (9) and group (10).
        let series: &[u8] = b"\x08\x01\x08\x02\x12\x00\x2a\x02\x08\x01\x2a\x02\x08\x02\x48\x07\x53\x08\x01\x54";
        let mut raw = req.encode_to_vec();
        raw.push(0x2a);
        raw.push(series.len() as u8);
        raw.extend_from_slice(series);
        let d = check(&raw);
        assert_eq!(d.samples.len(), 2);
        assert_eq!((d.samples[1].name(), d.samples[1].kind), ("reqs_total", MetricKind::Gauge));
        let mut with_exemplar = req.clone();
        with_exemplar.timeseries[0].exemplars = vec![Default::default()];
        assert_eq!(check(&with_exemplar.encode_to_vec()).exemplars, 1);
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
