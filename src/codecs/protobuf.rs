//! `tsrelay.v1.WriteRequest` → samples, refusing what the model cannot hold.
//!
//! The gRPC receiver and the Kafka receiver hand over the request's bytes,
//! walked in place ([`decode_bytes`]): labels are read as borrowed `&str` and
//! packed once per series, with no `String` per label and no `Series` tree in
//! between. [`decode_request`] takes a request prost built (tests, the
//! reference the `grpc_write_request` fuzz target compares the walk with);
//! both run the same builder.

use super::intern::{InternKey, SeriesInterner};
#[cfg(test)]
use super::limits::MAX_ABS_TIMESTAMP_MS;
use super::limits::{Checker, DecodeLimits, LimitError, RefusedSamples};
use super::walk_vecs;
use super::wire::{Fields, WireError, WireType};
use crate::limits::KeptVecs;
use crate::model::{Labels, METRIC_NAME_LABEL, MetricKind, Sample};
use crate::proto::v1::{MetricType, WriteRequest};
use crate::telemetry::DropReason;

/// Mixed into a series' key in the series-key table, apart from other formats'.
const KEY_DOMAIN: &[u8] = b"\0tsrelay.v1.Series.labels";

/// Errors reported back to the sender; later ones are only counted.
pub const MAX_REPORTED_ERRORS: usize = 10;

#[derive(Debug, Default)]
pub struct Decoded {
    /// The request's `id`, echoed in the answer.
    pub id: u64,
    pub samples: Vec<Sample>,
    /// Samples refused, per drop reason: series without a usable name (`invalid_name`),
    /// timestamps beyond what the model holds or outside the window
    /// (`timestamp_out_of_window`), and the pipeline's other limits.
    pub refused: RefusedSamples,
    pub errors: Vec<String>,
    /// The request holds more than `max_samples` samples: nothing was decoded, and the
    /// request is refused whole.
    pub over_sample_limit: bool,
    /// How many samples the request carries (accepted, refused, or all of them
    /// refused with the request when `over_sample_limit`).
    pub total: usize,
}

impl Decoded {
    fn reject(&mut self, series: usize, message: impl FnOnce() -> String) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(format!("series {series}: {}", message()));
        }
    }

    /// Whether two decodings are the same, NaN values compared by their bits
    /// (how the fuzz target compares the walk with the generated decoder).
    pub fn same_as(&self, other: &Decoded) -> bool {
        self.samples.len() == other.samples.len()
            && self.samples.iter().zip(&other.samples).all(|(a, b)| a.identical(b))
            && (self.id, self.total, self.over_sample_limit) == (other.id, other.total, other.over_sample_limit)
            && self.refused == other.refused
            && self.errors == other.errors
    }
}

/// Decodes one serialized request in place; `now_ms` stands in for timestamp
/// 0. Bytes that are not a `tsrelay.v1.WriteRequest` are refused with what is
/// wrong (exactly the bodies prost refuses).
pub fn decode_bytes(raw: &[u8], now_ms: i64, limits: &DecodeLimits) -> Result<Decoded, WireError> {
    Ok(Walked::walk(raw)?.decode(now_ms, limits))
}

/// Decodes one request without limits (see [`decode_request_limited`]).
pub fn decode_request(req: WriteRequest, now_ms: i64) -> Decoded {
    decode_request_limited(req, now_ms, &DecodeLimits::unlimited())
}

/// Decodes one request prost built; `now_ms` stands in for timestamp 0. A
/// series over one of `limits` is refused whole with its reason, before any of
/// its samples is built.
pub fn decode_request_limited(req: WriteRequest, now_ms: i64, limits: &DecodeLimits) -> Decoded {
    Walked::from_generated(&req).decode(now_ms, limits)
}

/// A request as borrowed slices: every series' labels and samples in two flat
/// lists, ranges per series.
#[derive(Default)]
struct Walked<'a> {
    id: u64,
    series: Vec<SeriesParts<'a>>,
    labels: Vec<(&'a str, &'a str)>,
    samples: Vec<(f64, i64)>,
}

/// Series entries of walks, kept between requests ([`walk_vecs`]).
static KEPT_SERIES: KeptVecs<SeriesParts<'static>> = KeptVecs::new(walk_vecs::SERIES_BYTES);

impl Drop for Walked<'_> {
    /// The vectors go back to their pools for the next request ([`walk_vecs`]).
    fn drop(&mut self) {
        KEPT_SERIES.give_back(walk_vecs::recycle(std::mem::take(&mut self.series)));
        walk_vecs::LABELS.give_back(walk_vecs::recycle(std::mem::take(&mut self.labels)));
        walk_vecs::give_back_samples(std::mem::take(&mut self.samples));
    }
}

#[derive(Default)]
struct SeriesParts<'a> {
    /// The series' bytes from its start to the end of its last label: what
    /// decides its labels, so its key in the series-key table. Empty when
    /// prost decoded the request.
    key: &'a [u8],
    labels: std::ops::Range<usize>,
    samples: std::ops::Range<usize>,
    /// `MetricType` as sent (unknown numbers read as unspecified).
    kind: i32,
}

impl<'a> Walked<'a> {
    fn from_generated(req: &'a WriteRequest) -> Self {
        let mut out = Walked::default();
        out.id = req.id;
        for series in &req.series {
            let (labels_from, samples_from) = (out.labels.len(), out.samples.len());
            out.labels.extend(series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
            out.samples.extend(series.samples.iter().map(|s| (s.value, s.timestamp)));
            out.series.push(SeriesParts {
                key: &[],
                labels: labels_from..out.labels.len(),
                samples: samples_from..out.samples.len(),
                kind: series.r#type,
            });
        }
        out
    }

    /// Walks the whole body; every wire error comes out before anything is built.
    fn walk(raw: &'a [u8]) -> Result<Walked<'a>, WireError> {
        let mut out = Walked {
            id: 0,
            series: KEPT_SERIES.take_largest(),
            // Kept as byte slices: the same layout as these `&str` pairs.
            labels: walk_vecs::recycle(walk_vecs::LABELS.take_largest()),
            samples: walk_vecs::SAMPLES.take_largest(),
        };
        let mut fields = Fields::new(raw);
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    let series = fields.message()?;
                    out.series(series)?;
                }
                2 => {
                    wire_type.must_be(WireType::Varint)?;
                    out.id = fields.varint()?;
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        Ok(out)
    }

    fn series(&mut self, mut fields: Fields<'a>) -> Result<(), WireError> {
        let (labels_from, samples_from) = (self.labels.len(), self.samples.len());
        let whole = fields.remaining();
        let mut key_len = 0;
        let mut kind = 0;
        while let Some((tag, wire_type)) = fields.next_key()? {
            match tag {
                1 | 2 => {
                    fields.label_or_sample(tag, wire_type, &mut self.labels, &mut self.samples)?;
                    if tag == 1 {
                        key_len = whole.len() - fields.remaining().len();
                    }
                }
                3 => {
                    wire_type.must_be(WireType::Varint)?;
                    kind = fields.varint()? as i32;
                }
                4 => {
                    wire_type.must_be(WireType::LengthDelimited)?;
                    fields.str()?;
                }
                _ => fields.skip(tag, wire_type)?,
            }
        }
        self.series.push(SeriesParts {
            key: &whole[..key_len],
            labels: labels_from..self.labels.len(),
            samples: samples_from..self.samples.len(),
            kind,
        });
        Ok(())
    }

    fn decode(&self, now_ms: i64, limits: &DecodeLimits) -> Decoded {
        let total = self.samples.len();
        if total > limits.max_samples {
            return Decoded { id: self.id, over_sample_limit: true, total, ..Default::default() };
        }
        let checker = limits.checker(now_ms);
        let mut out = Decoded { id: self.id, samples: Vec::with_capacity(total), total, ..Default::default() };
        let interner = SeriesInterner::global();
        let checks = limits.key_checks_fingerprint();
        // The key covers the limits the labels are checked against, and a domain
        // of its own (a line-protocol key could not be these bytes anyway: they
        // start with a field tag, a newline in line protocol).
        let keys: Vec<Option<InternKey>> = self
            .series
            .iter()
            .map(|s| (!s.key.is_empty()).then(|| interner.key(s.key, Some(KEY_DOMAIN), checks)))
            .collect();
        for (i, series) in self.series.iter().enumerate() {
            interner.prefetch_ahead(&keys, i);
            let pairs = &self.labels[series.labels.clone()];
            let samples = &self.samples[series.samples.clone()];
            let n = samples.len() as u64;
            let labels = interner.get_or_build(keys[i], || {
                if let Some(problem) = label_problem(pairs) {
                    return Err((DropReason::InvalidName, problem));
                }
                check_series(pairs, &checker).map_err(|refusal| (refusal.reason(), refusal.message()))?;
                let text: usize = pairs.iter().map(|(name, value)| name.len() + value.len()).sum();
                let mut labels = Labels::with_capacity(pairs.len(), text);
                for (name, value) in pairs {
                    labels.push(name, value);
                }
                Ok(labels)
            });
            let labels = match labels {
                Ok(labels) => labels,
                Err((reason, message)) => {
                    out.refused.add(reason, n);
                    out.reject(i, || message);
                    continue;
                }
            };
            let kind = match MetricType::try_from(series.kind).unwrap_or(MetricType::Unspecified) {
                MetricType::Unspecified => MetricKind::Unspecified,
                MetricType::Counter => MetricKind::Counter,
                MetricType::Gauge => MetricKind::Gauge,
                MetricType::Histogram => MetricKind::Histogram,
                MetricType::Summary => MetricKind::Summary,
            };
            let values = samples.iter().map(|&(value, ts)| (value, if ts == 0 { now_ms } else { ts }));
            if let Some(refused) = checker.push_series(&mut out.samples, labels, kind, values) {
                out.refused.add(DropReason::TimestampOutOfWindow, refused.count);
                out.reject(i, || refused.message());
            }
        }
        out
    }
}

/// The limits a series' labels can break.
fn check_series(labels: &[(&str, &str)], checker: &Checker<'_>) -> Result<(), LimitError> {
    // Labels with an empty value are removed by the pipeline: they count for nothing.
    let others = || labels.iter().filter(|(name, value)| *name != METRIC_NAME_LABEL && !value.is_empty());
    let sent_static = others().filter(|(name, _)| checker.is_static(name)).count();
    checker.label_count(others().count(), sent_static)?;
    for &(name, value) in labels {
        if name == METRIC_NAME_LABEL {
            checker.metric_name(&[value])?;
        } else if !value.is_empty() {
            checker.label(name, value)?;
        }
    }
    Ok(())
}

fn label_problem(labels: &[(&str, &str)]) -> Option<String> {
    if labels.iter().any(|(name, _)| name.is_empty()) {
        return Some("a label has an empty name".into());
    }
    match labels.iter().find(|(name, _)| *name == METRIC_NAME_LABEL) {
        None => Some(format!("no {METRIC_NAME_LABEL} label")),
        Some((_, "")) => Some(format!("empty {METRIC_NAME_LABEL}")),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v1::{Label, Sample as PbSample, Series};

    fn label(n: &str, v: &str) -> Label {
        Label { name: n.into(), value: v.into() }
    }

    #[test]
    fn rejects_bad_series_keeps_good_ones() {
        let req = WriteRequest {
            id: 7,
            series: vec![
                Series {
                    labels: vec![label("__name__", "up"), label("job", "a")],
                    samples: vec![PbSample { value: 1.0, timestamp: 0 }, PbSample { value: 2.0, timestamp: 5 }],
                    r#type: MetricType::Counter as i32,
                    unit: String::new(),
                },
                Series {
                    labels: vec![label("job", "a")],
                    samples: vec![PbSample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                Series {
                    labels: vec![label("__name__", "x"), label("", "v")],
                    samples: vec![PbSample { value: 1.0, timestamp: 1 }],
                    ..Default::default()
                },
                Series {
                    labels: vec![label("__name__", "x")],
                    samples: vec![PbSample { value: 1.0, timestamp: i64::MAX }],
                    ..Default::default()
                },
            ],
        };
        let d = decode_request(req, 1000);
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[0].timestamp_ms, 1000);
        assert_eq!(d.samples[0].kind, MetricKind::Counter);
        assert_eq!(d.refused.get(DropReason::InvalidName), 2);
        assert_eq!(d.refused.get(DropReason::TimestampOutOfWindow), 1);
        assert_eq!(d.errors.len(), 3);
        assert!(d.errors[0].contains("series 1") && d.errors[0].contains("__name__"), "{:?}", d.errors);
    }

    /// A series seen before takes its labels from the series-key table (the
    /// stored copy), but only under the limits they were checked against:
    /// the same bytes under stricter limits are refused with the reason.
    #[test]
    fn known_series_come_from_the_table_under_the_same_limits_only() {
        use prost::Message;

        use crate::model::SharedPart;
        let series = Series {
            // A job of its own: no other test shares the entry.
            labels: vec![label("__name__", "interned_total"), label("job", "grpc-table-a"), label("zone", "z1")],
            samples: vec![PbSample { value: 1.0, timestamp: 5 }],
            ..Default::default()
        };
        let body = WriteRequest { id: 1, series: vec![series.clone(), series] }.encode_to_vec();
        let lenient = DecodeLimits::unlimited();
        let first = decode_bytes(&body, 1000, &lenient).expect("decodes");
        let second = decode_bytes(&body, 1000, &lenient).expect("decodes");
        assert_eq!((first.samples.len(), second.samples.len()), (2, 2));
        let stored =
            |d: &Decoded, i: usize| d.samples[i].labels.shared_whole().cloned().expect("labels from the table");
        assert!(SharedPart::ptr_eq(&stored(&first, 0), &stored(&second, 1)), "the second request built its own labels");
        assert!(second.same_as(&decode_request_limited(
            WriteRequest::decode(&body[..]).expect("valid"),
            1000,
            &lenient
        )));

        let strict = DecodeLimits { max_labels: 1, ..DecodeLimits::unlimited() };
        let refused = decode_bytes(&body, 1000, &strict).expect("decodes");
        assert_eq!(refused.samples.len(), 0);
        assert_eq!(refused.refused.get(DropReason::TooManyLabels), 2, "{:?}", refused.errors);
    }

    proptest::proptest! {
        /// Whatever arrives, every sample is either accepted or counted as rejected.
        #[test]
        fn every_sample_is_accounted_for(
            series in proptest::collection::vec(
                (
                    proptest::collection::vec(("(__name__|[a-z]{0,3})", ".{0,4}"), 0..4),
                    proptest::collection::vec((proptest::num::f64::ANY, proptest::num::i64::ANY), 0..4),
                ),
                0..6,
            )
        ) {
            let total: usize = series.iter().map(|s| s.1.len()).sum();
            let req = WriteRequest {
                id: 1,
                series: series
                    .into_iter()
                    .map(|(labels, samples)| Series {
                        labels: labels.into_iter().map(|(n, v)| label(&n, &v)).collect(),
                        samples: samples.into_iter().map(|(value, timestamp)| PbSample { value, timestamp }).collect(),
                        ..Default::default()
                    })
                    .collect(),
            };
            let d = decode_request(req, 1);
            proptest::prop_assert_eq!(d.samples.len() as u64 + d.refused.total(), total as u64);
            proptest::prop_assert!(d.errors.len() <= MAX_REPORTED_ERRORS);
        }
    }

    #[test]
    fn extreme_timestamps_are_refused_not_overflowed() {
        let req = WriteRequest {
            id: 1,
            series: vec![Series {
                labels: vec![label("__name__", "m")],
                samples: [i64::MIN, i64::MIN + 1, i64::MAX, -MAX_ABS_TIMESTAMP_MS, 5]
                    .into_iter()
                    .map(|timestamp| PbSample { value: 1.0, timestamp })
                    .collect(),
                ..Default::default()
            }],
        };
        let d = decode_request(req.clone(), 1);
        assert_eq!(d.samples.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(), [-MAX_ABS_TIMESTAMP_MS, 5]);
        assert_eq!(d.refused.get(DropReason::TimestampOutOfWindow), 3);
        let limits = DecodeLimits { max_past_ms: 10, max_future_ms: 10, ..DecodeLimits::unlimited() };
        let d = decode_request_limited(req, 1, &limits);
        assert_eq!(d.samples.len(), 1);
        assert_eq!(d.refused.get(DropReason::TimestampOutOfWindow), 4);
    }

    #[test]
    fn limits_refuse_a_series_whole_and_too_many_samples_the_request() {
        let series = |labels: Vec<Label>| Series {
            labels,
            samples: vec![PbSample { value: 1.0, timestamp: 0 }, PbSample { value: 2.0, timestamp: 0 }],
            ..Default::default()
        };
        let req = WriteRequest {
            id: 1,
            series: vec![
                series(vec![label("__name__", "m"), label("a", "1")]),
                series(vec![label("__name__", "m"), label("a", "1"), label("b", "2"), label("c", "")]),
                series(vec![label("__name__", "m"), label("a", "toolong")]),
            ],
        };
        let limits = DecodeLimits { max_labels: 1, max_label_value_length: 3, ..DecodeLimits::unlimited() };
        let d = decode_request_limited(req.clone(), 1, &limits);
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.refused.get(DropReason::TooManyLabels), 2);
        assert_eq!(d.refused.get(DropReason::LabelValueTooLong), 2);
        assert!(d.errors[0].starts_with("series 1: 2 labels"), "{:?}", d.errors);
        let d = decode_request_limited(req, 1, &DecodeLimits { max_samples: 5, ..DecodeLimits::unlimited() });
        assert!(d.over_sample_limit && d.samples.is_empty());
    }
}
