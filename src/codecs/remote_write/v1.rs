//! Remote-write 1.0: `prometheus.WriteRequest` → samples.
//!
//! Each `TimeSeries` carries its labels and samples; metric types come in the
//! `metadata` field (often in a request of their own), remembered in a
//! [`MetadataCache`] and given to the samples of the families they name.

use prost::Message;

use super::{DecodeError, DecodeLimits, Decoded, MetadataCache, add_series, build_labels, kind_of_metadata_type};
use crate::codecs::intern::{InternKey, SeriesInterner};
use crate::codecs::walk_vecs;
use crate::codecs::wire::{Fields, WireError, WireType, utf8};
use crate::limits::KeptVecs;
use crate::model::Labels;
use crate::proto::prometheus::WriteRequest;

pub const MESSAGE: &str = "prometheus.WriteRequest";

/// Mixed into a series' key in the series-key table, apart from other formats'.
const KEY_DOMAIN: &[u8] = b"\0prometheus.TimeSeries.labels";

/// Decodes a snappy-compressed `prometheus.WriteRequest`.
pub fn decode(
    body: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    super::with_decompressed(body, limits.max_body_bytes, |raw| decode_message(raw, now_ms, limits, metadata))?
}

/// Decodes an uncompressed `prometheus.WriteRequest`, walking the bytes in
/// place: labels are read as borrowed `&str` and packed once per series, with
/// no `String` per label and no `TimeSeries` tree in between. A request with
/// exemplars or native histograms (neither kept, only counted) is decoded by
/// the generated code instead ([`decode_message_with_prost`]): the two accept
/// the same bodies and give the same result (the `remote_write_v1` fuzz
/// target compares them).
pub fn decode_message(
    raw: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    match Request::walk(raw).map_err(|source| DecodeError::Wire { message: MESSAGE, source })? {
        Some(request) => request.decode(now_ms, limits, metadata),
        None => decode_message_with_prost(raw, now_ms, limits, metadata),
    }
}

/// Decodes an uncompressed `prometheus.WriteRequest` with the generated
/// (prost) types: the path for requests with exemplars or histograms, and the
/// reference the in-place walk is compared with.
pub fn decode_message_with_prost(
    raw: &[u8],
    now_ms: i64,
    limits: &DecodeLimits,
    metadata: &MetadataCache,
) -> Result<Decoded, DecodeError> {
    let req = WriteRequest::decode(raw).map_err(|source| DecodeError::Protobuf { message: MESSAGE, source })?;
    Request::from_generated(&req).decode(now_ms, limits, metadata)
}

/// A `prometheus.WriteRequest` as borrowed slices of its body: every series'
/// labels and samples in two flat lists, ranges per series.
#[derive(Default)]
struct Request<'a> {
    series: Vec<SeriesRanges<'a>>,
    /// Names and values as sent: checked to be UTF-8 only for a series the
    /// series-key table does not know (see [`Request::decode`]).
    labels: Vec<(&'a [u8], &'a [u8])>,
    samples: Vec<(f64, i64)>,
    /// `(metric_family_name, type)` of each `MetricMetadata`.
    metadata: Vec<(&'a str, i32)>,
}

/// Series entries of walks, kept between requests ([`walk_vecs`]).
static KEPT_SERIES: KeptVecs<SeriesRanges<'static>> = KeptVecs::new(walk_vecs::SERIES_BYTES);

#[derive(Default)]
struct SeriesRanges<'a> {
    /// The series' bytes from its start to the end of its last label: all
    /// that decides its labels, so the key of its entry in the series-key
    /// table ([`SeriesInterner`]). Empty when prost decoded the request.
    key: &'a [u8],
    labels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    /// Counted, not kept.
    histograms: u64,
    exemplars: u64,
}

impl Drop for Request<'_> {
    /// The vectors go back to their pools for the next request ([`walk_vecs`]).
    fn drop(&mut self) {
        KEPT_SERIES.give_back(walk_vecs::recycle(std::mem::take(&mut self.series)));
        walk_vecs::LABELS.give_back(walk_vecs::recycle(std::mem::take(&mut self.labels)));
        walk_vecs::give_back_samples(std::mem::take(&mut self.samples));
    }
}

impl<'a> Request<'a> {
    /// The same view of a request prost decoded.
    fn from_generated(req: &'a WriteRequest) -> Self {
        let mut out = Request::default();
        for series in &req.timeseries {
            let (labels_from, samples_from) = (out.labels.len(), out.samples.len());
            out.labels.extend(series.labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())));
            out.samples.extend(series.samples.iter().map(|s| (s.value, s.timestamp)));
            out.series.push(SeriesRanges {
                key: &[],
                labels: labels_from..out.labels.len(),
                samples: samples_from..out.samples.len(),
                histograms: series.histograms.len() as u64,
                exemplars: series.exemplars.len() as u64,
            });
        }
        out.metadata = req.metadata.iter().map(|m| (m.metric_family_name.as_str(), m.r#type)).collect();
        out
    }

    /// The samples, refusals and counts of the request.
    ///
    /// First every series is looked up in the series-key table: a known one's
    /// labels are the stored copy, and its label bytes are not checked to be
    /// UTF-8 again (its key is a digest of those very bytes, stored only after
    /// they were checked). The others' are checked before anything else is
    /// done, so a request prost would refuse is refused whole, as before.
    fn decode(&self, now_ms: i64, limits: &DecodeLimits, metadata: &MetadataCache) -> Result<Decoded, DecodeError> {
        let interner = SeriesInterner::global();
        let keys = self.series_keys(interner, limits);
        let mut known: Vec<Option<Labels>> = Vec::with_capacity(self.series.len());
        for (i, series) in self.series.iter().enumerate() {
            interner.prefetch_ahead(&keys, i);
            let hit = keys[i].and_then(|key| interner.get(key));
            if hit.is_none() {
                self.check_utf8(series)?;
            }
            known.push(hit);
        }
        let count =
            self.samples.len() + self.series.iter().map(|s| (s.histograms + s.exemplars) as usize).sum::<usize>();
        if count > limits.max_samples() {
            return Err(DecodeError::TooManySamples { count, max: limits.max_samples() });
        }
        let mut out = Decoded { samples: Vec::with_capacity(count), ..Default::default() };
        if !self.metadata.is_empty() {
            out.metadata = self.metadata.len() as u64;
            metadata.learn(self.metadata.iter().map(|&(name, kind)| (name, kind_of_metadata_type(kind))));
        }
        let types = metadata.reader();
        let checker = limits.pipeline.checker(now_ms);
        for ((i, series), hit) in self.series.iter().enumerate().zip(known) {
            out.histograms += series.histograms;
            out.exemplars += series.exemplars;
            let pairs = &self.labels[series.labels.clone()];
            let labels = match hit {
                Some(stored) => Ok(stored),
                // Looked up again: an earlier series of this request may have stored it.
                None => interner
                    .get_or_build(keys[i], || build_labels(pairs.iter().map(|&(n, v)| (text(n), text(v))), &checker)),
            };
            let kind = match &labels {
                Ok(l) => types.kind_of(l.name().unwrap_or("")),
                Err(_) => Default::default(),
            };
            let samples = &self.samples[series.samples.clone()];
            add_series(&mut out, i, labels, samples.iter().copied(), kind, &checker, || describe_pairs(pairs));
        }
        Ok(out)
    }

    /// Refuses the request if a label of `series` is not UTF-8 (as prost does).
    fn check_utf8(&self, series: &SeriesRanges<'_>) -> Result<(), DecodeError> {
        for &(name, value) in &self.labels[series.labels.clone()] {
            if utf8(name).and(utf8(value)).is_err() {
                return Err(DecodeError::Wire { message: MESSAGE, source: WireError::InvalidUtf8 });
            }
        }
        Ok(())
    }

    /// Each series' key in the series-key table (`None`: no labels, or a
    /// request prost decoded). The digest covers the limits the labels are
    /// checked against, as for line protocol, and a domain of its own; a
    /// line-protocol key could not be the same bytes anyway (these start
    /// with a field tag, 0x0a, a newline in line protocol).
    fn series_keys(&self, interner: &SeriesInterner, limits: &DecodeLimits) -> Vec<Option<InternKey>> {
        let checks = limits.pipeline.key_checks_fingerprint();
        self.series.iter().map(|s| (!s.key.is_empty()).then(|| interner.key(s.key, Some(KEY_DOMAIN), checks))).collect()
    }

    /// Walks the whole body (every wire error comes out before anything is
    /// built, as with prost); `None` when a series carries exemplars or
    /// histograms.
    fn walk(raw: &'a [u8]) -> Result<Option<Request<'a>>, WireError> {
        let mut request = Request {
            series: KEPT_SERIES.take_largest(),
            labels: walk_vecs::LABELS.take_largest(),
            samples: walk_vecs::SAMPLES.take_largest(),
            metadata: Vec::new(),
        };
        let mut fields = Fields::new(raw);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let series = fields.message()?;
                    if !request.series(series)? {
                        return Ok(None);
                    }
                }
                3 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let metadata = fields.message()?;
                    request.metadata(metadata)?;
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        Ok(Some(request))
    }

    /// One `TimeSeries`; false when it has exemplars or histograms.
    fn series(&mut self, mut fields: Fields<'a>) -> Result<bool, WireError> {
        let (labels_from, samples_from) = (self.labels.len(), self.samples.len());
        let whole = fields.remaining();
        let mut key_len = 0;
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 | 2 => {
                    fields.label_bytes_or_sample(tag, wire_type, &mut self.labels, &mut self.samples)?;
                    if tag == 1 {
                        key_len = whole.len() - fields.remaining().len();
                    }
                }
                3 | 4 => return Ok(false),
                _ => fields.skip(tag, wire_type)?,
            }
        }
        self.series.push(SeriesRanges {
            key: &whole[..key_len],
            labels: labels_from..self.labels.len(),
            samples: samples_from..self.samples.len(),
            ..Default::default()
        });
        Ok(true)
    }

    /// One `MetricMetadata`: its type and family name (help and unit are checked, not kept).
    fn metadata(&mut self, mut fields: Fields<'a>) -> Result<(), WireError> {
        let (mut kind, mut name) = (0, "");
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    wire_type.must_be(WireType::Varint)?;
                    kind = fields.varint()? as i32;
                }
                2 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    name = fields.str()?;
                }
                4 | 5 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    fields.str()?;
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        self.metadata.push((name, kind));
        Ok(())
    }
}

/// A label's bytes as text, once [`Request::check_utf8`] passed (else empty).
fn text(bytes: &[u8]) -> &str {
    utf8(bytes).unwrap_or_default()
}

/// `{name="value", ...}` of a refused series, shortened.
fn describe_pairs(labels: &[(&[u8], &[u8])]) -> String {
    let mut s = String::from("{");
    for (i, (name, value)) in labels.iter().map(|&(n, v)| (text(n), text(v))).take(8).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let value: String = value.chars().take(64).collect();
        s.push_str(&format!("{}={:?}", name.chars().take(64).collect::<String>(), value));
    }
    if labels.len() > 8 {
        s.push_str(", …");
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codecs::limits::DecodeLimits as PipelineLimits;
    use crate::model::MetricKind;
    use crate::proto::prometheus::{Label, MetricMetadata, Sample, TimeSeries};

    fn label(n: &str, v: &str) -> Label {
        Label { name: n.into(), value: v.into() }
    }

    fn compress(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("compress")
    }

    const NOW: i64 = 1_700_000_000_000;

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
        let d = decode(&compress(&meta), NOW, &limits(), &cache).expect("metadata-only request");
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
        let d = decode(&compress(&req), NOW, &limits(), &cache).expect("decodes");
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!(d.samples[1].timestamp_ms, 2000);
        assert_eq!(d.samples[0].labels.get("job"), Some("a"));
        use crate::telemetry::DropReason;
        assert_eq!((d.refused.get(DropReason::InvalidName), d.refused.get(DropReason::TimestampOutOfWindow)), (1, 1));
        assert_eq!((d.histograms, d.exemplars), (1, 2));
        assert!(d.errors[0].contains("series 1") && d.errors[0].contains("__name__"), "{:?}", d.errors);
    }

    /// A series seen before takes its labels from the series-key table (the
    /// stored copy, no new one), but only under the limits they were checked
    /// against: the same bytes under stricter limits are refused. A series
    /// whose labels come after its samples decodes the same.
    #[test]
    fn known_series_come_from_the_table_under_the_same_limits_only() {
        use crate::model::SharedPart;
        let cache = MetadataCache::new();
        let series = |job: &str| TimeSeries {
            labels: vec![label("__name__", "interned_total"), label("job", job), label("zone", "z1")],
            samples: vec![Sample { value: 1.0, timestamp: NOW }],
            ..Default::default()
        };
        // A job of its own: no other test shares these entries.
        let req = WriteRequest { timeseries: vec![series("v1-table-a"), series("v1-table-a")], ..Default::default() };
        let first = decode(&compress(&req), NOW, &limits(), &cache).expect("decodes");
        let second = decode(&compress(&req), NOW, &limits(), &cache).expect("decodes");
        assert_eq!((first.samples.len(), second.samples.len()), (2, 2));
        let stored =
            |d: &Decoded, i: usize| d.samples[i].labels.shared_whole().cloned().expect("labels from the table");
        assert!(SharedPart::ptr_eq(&stored(&first, 0), &stored(&second, 1)), "the second request built its own labels");
        assert_eq!(second.samples[1].labels.to_string(), r#"interned_total{job="v1-table-a",zone="z1"}"#);

        let strict =
            DecodeLimits::new(1 << 20, Arc::new(PipelineLimits { max_labels: 1, ..PipelineLimits::unlimited() }));
        let refused = decode(&compress(&req), NOW, &strict, &cache).expect("decodes");
        assert_eq!((refused.samples.len(), refused.refused.total()), (0, 2), "{:?}", refused.errors);

        // Labels after the sample: the key then covers the sample too; same labels either way.
        let mut interleaved =
            TimeSeries { samples: vec![Sample { value: 2.0, timestamp: NOW }], ..Default::default() }.encode_to_vec();
        interleaved.extend(TimeSeries { labels: series("v1-table-b").labels, ..Default::default() }.encode_to_vec());
        let mut body = Vec::new();
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut body);
        prost::encoding::encode_varint(interleaved.len() as u64, &mut body);
        body.extend(&interleaved);
        for _ in 0..2 {
            let walked = decode_message(&body, NOW, &limits(), &cache).expect("decodes");
            let generated = decode_message_with_prost(&body, NOW, &limits(), &cache).expect("decodes");
            assert_eq!(walked.samples, generated.samples);
            assert_eq!(walked.samples[0].labels.get("job"), Some("v1-table-b"));
        }
    }

    /// Label bytes are checked to be UTF-8 only for series the table does not know,
    /// and a request with any that are not is refused whole, as prost refuses it:
    /// also when it is over the sample limit, and when the bad copy of a label name
    /// was replaced by a later one.
    #[test]
    fn labels_that_are_not_utf8_refuse_the_request_as_prost_does() {
        use prost::encoding::{WireType as PbWire, encode_key, encode_varint};
        fn field(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
            encode_key(tag, PbWire::LengthDelimited, out);
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
        // One series: labels given as raw (name, value) fields, one sample.
        let request = |labels: &[&[(u32, &[u8])]], samples: usize| {
            let mut series = Vec::new();
            for label in labels {
                let mut l = Vec::new();
                for &(tag, bytes) in *label {
                    field(tag, bytes, &mut l);
                }
                field(1, &l, &mut series);
            }
            for _ in 0..samples {
                field(2, &Sample { value: 1.0, timestamp: NOW }.encode_to_vec(), &mut series);
            }
            let mut body = Vec::new();
            field(1, &series, &mut body);
            body
        };
        let name: &[(u32, &[u8])] = &[(1, b"__name__"), (2, b"utf8_check_total")];
        let cases = [
            request(&[name, &[(1, b"job"), (2, b"\xff")]], 1),
            request(&[name, &[(1, b"\xc3"), (2, b"a")]], 1),
            // Over the sample limit too: prost's refusal comes first.
            request(&[name, &[(1, b"job"), (2, b"\xff")]], 3),
            // A name sent twice, the first copy not UTF-8.
            request(&[name, &[(1, b"\xff"), (1, b"job"), (2, b"a")]], 1),
        ];
        let small =
            DecodeLimits::new(1 << 20, Arc::new(PipelineLimits { max_samples: 2, ..PipelineLimits::unlimited() }));
        for (i, body) in cases.iter().enumerate() {
            let limits = if i == 2 { &small } else { &limits() };
            let walked = decode_message(body, NOW, limits, &MetadataCache::new()).expect_err("refused");
            let generated = decode_message_with_prost(body, NOW, limits, &MetadataCache::new()).expect_err("refused");
            assert!(!walked.is_too_large() && !generated.is_too_large(), "case {i}: {walked} / {generated}");
            assert!(walked.to_string().contains("UTF-8") || walked.to_string().contains("utf"), "case {i}: {walked}");
        }
        let over = request(&[name, &[(1, b"job"), (2, b"utf8-check")]], 3);
        assert!(decode_message(&over, NOW, &small, &MetadataCache::new()).expect_err("over").is_too_large());
        // The same request with valid labels decodes, the first time and from the table.
        let valid = request(&[name, &[(1, b"job"), (2, b"utf8-check")]], 1);
        for _ in 0..2 {
            let d = decode_message(&valid, NOW, &limits(), &MetadataCache::new()).expect("decodes");
            assert_eq!(d.samples[0].labels.get("job"), Some("utf8-check"));
        }
    }

    /// The in-place walk and the generated decoder give the same result,
    /// with exemplars (the generated path), metadata, refusals and fields
    /// tsrelay does not know (appended raw).
    /// A walk on vectors an earlier walk handed back (empty, with their room)
    /// reads the same as the first. Whether a given vector comes back cannot be
    /// observed here: tests share the process-wide pools (their bounds are
    /// tested in `limits::kept`, the reuse of the allocation in `walk_vecs`).
    #[test]
    fn a_walk_on_kept_vectors_reads_the_same() {
        let series: Vec<TimeSeries> = (0..2000)
            .map(|i| TimeSeries {
                labels: vec![label("__name__", "kept_walk"), label("i", &i.to_string())],
                samples: vec![Sample { value: i as f64, timestamp: 1 }],
                ..Default::default()
            })
            .collect();
        let raw = WriteRequest { timeseries: series, ..Default::default() }.encode_to_vec();
        type View<'a> = (Vec<(&'a [u8], &'a [u8])>, Vec<(f64, i64)>, usize);
        fn view<'a>(r: &Request<'a>) -> View<'a> {
            (r.labels.clone(), r.samples.clone(), r.series.len())
        }
        let first = Request::walk(&raw).unwrap().unwrap();
        let seen = view(&first);
        assert_eq!((seen.0.len(), seen.1.len(), seen.2), (4000, 2000, 2000));
        drop(first);
        for _ in 0..3 {
            let again = Request::walk(&raw).unwrap().unwrap();
            assert_eq!(view(&again), seen);
        }
    }

    #[test]
    fn walk_agrees_with_prost() {
        let req = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "reqs_total"), label("job", "a"), label("empty", "")],
                    samples: vec![Sample { value: 1.5, timestamp: 1000 }, Sample { value: f64::NAN, timestamp: 2000 }],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![label("job", "nameless")],
                    samples: vec![Sample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![label("__name__", "old")],
                    samples: vec![Sample { value: 1.0, timestamp: i64::MIN }],
                    ..Default::default()
                },
            ],
            metadata: vec![MetricMetadata {
                r#type: 1,
                metric_family_name: "reqs".into(),
                help: "h".into(),
                unit: "u".into(),
            }],
        };
        let mut with_unknown = req.encode_to_vec();
        with_unknown.extend_from_slice(b"\x10\x07\x2a\x02hi\x3b\x08\x01\x3c"); // fields 2 (varint), 5 (bytes), group 7
        let mut with_exemplar = req.clone();
        with_exemplar.timeseries[0].exemplars = vec![Default::default()];
        for raw in [req.encode_to_vec(), with_unknown, with_exemplar.encode_to_vec()] {
            let a = decode_message(&raw, NOW, &limits(), &MetadataCache::new()).expect("walk");
            let b = decode_message_with_prost(&raw, NOW, &limits(), &MetadataCache::new()).expect("prost");
            assert!(a.same_as(&b), "{a:?}\n{b:?}");
            assert_eq!(a.samples[0].kind, MetricKind::Counter);
        }
        // A label value that is not UTF-8 is refused by both.
        let mut bad = req.encode_to_vec();
        let at = bad.windows(3).position(|w| w == b"old").expect("value bytes");
        bad[at] = 0xff;
        assert!(decode_message(&bad, NOW, &limits(), &MetadataCache::new()).is_err());
        assert!(decode_message_with_prost(&bad, NOW, &limits(), &MetadataCache::new()).is_err());
    }

    #[test]
    fn bad_input_names_what_failed() {
        let cache = MetadataCache::new();
        let e = decode(b"\xff\xff\xff\xff\xff\x01garbage", NOW, &limits(), &cache).expect_err("bad snappy");
        assert!(e.to_string().starts_with("invalid snappy block"), "{e}");
        let junk = snap::raw::Encoder::new().compress_vec(b"\x0a\xff\xff\xff").expect("compress");
        let e = decode(&junk, NOW, &limits(), &cache).expect_err("bad protobuf");
        assert!(e.to_string().contains("prometheus.WriteRequest"), "{e}");
        let big = snap::raw::Encoder::new().compress_vec(&vec![0u8; 2 << 20]).expect("compress");
        let e = decode(&big, NOW, &limits(), &cache).expect_err("too large");
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
        let pipeline = crate::codecs::limits::DecodeLimits::for_pipeline_defaults();
        let d = decode(&compress(&req), NOW, &DecodeLimits::new(1 << 20, std::sync::Arc::new(pipeline)), &cache)
            .expect("decodes");
        assert_eq!((d.samples.len(), d.refused.get(crate::telemetry::DropReason::TooManyLabels)), (0, 1));
        assert!(d.errors[0].contains("max_labels"), "{:?}", d.errors);
        let small = DecodeLimits::new(
            1 << 20,
            std::sync::Arc::new(crate::codecs::limits::DecodeLimits { max_samples: 1, ..Default::default() }),
        );
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "m")],
                samples: vec![Sample { value: 1.0, timestamp: 1 }; 2],
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(decode(&compress(&req), NOW, &small, &cache).expect_err("too many").is_too_large());
    }
}
