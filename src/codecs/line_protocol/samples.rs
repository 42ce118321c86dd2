//! Points → samples: one sample per numeric field, named `<measurement>_<field>`.

use std::borrow::Cow;

use super::error::{LineError, Position, Problem};
use super::known::{KnownLine, Lookahead, Stop};
use super::parser::{LineParser, Parsed};
use super::point::{Point, Tag};
use super::precision::Precision;
use crate::codecs::intern::SeriesInterner;
use crate::codecs::limits::{Checker, DecodeLimits, LimitError};
use crate::codecs::report::{DecodeSummary, LineErrors, Progress};
use crate::codecs::stream::PieceDecoder;
use crate::model::{LabelStr, Labels, METRIC_NAME_LABEL, MetricKind, Sample};

/// Decodes a line-protocol body into samples appended to `out`, without limits (see
/// [`decode_body_limited`]).
pub fn decode_body(
    body: &[u8],
    precision: Precision,
    default_time_ns: i64,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) -> DecodeSummary {
    let limits = DecodeLimits::unlimited();
    decode_body_limited(body, precision, default_time_ns, &limits, out, errors)
}

/// Once this many samples are decoded, the rest of the body's sample count is estimated
/// from the bytes they took, and `out` is grown once to hold it.
const PROBE_SAMPLES: u64 = 256;

/// Decodes a line-protocol body into samples appended to `out`.
///
/// Each integer, unsigned, float or boolean field becomes a sample named
/// `<measurement>_<field>` (field `value`: just `<measurement>`), labelled with the tags;
/// booleans are 0/1. String fields are counted in [`DecodeSummary::non_numeric`]. A line
/// without a timestamp gets `default_time_ns` (truncated to the precision). Bad lines are
/// recorded in `errors` and skipped; the other lines are kept (partial write).
///
/// `limits` are checked on each parsed line before any of its samples is built: a line over
/// one is refused with its reason (its numeric fields counted in
/// [`DecodeSummary::refused`]). Decoding stops as soon as the body holds more than
/// `limits.max_samples` samples ([`DecodeSummary::over_sample_limit`]).
pub fn decode_body_limited(
    body: &[u8],
    precision: Precision,
    default_time_ns: i64,
    limits: &DecodeLimits,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) -> DecodeSummary {
    let mut progress = Progress::new(body.len());
    decode_lines(body, &mut progress, &Pieces { precision, default_time_ns, limits }, out, errors);
    progress.summary
}

/// What every piece of one line-protocol body is decoded with: the body's
/// [`PieceDecoder`] for [`crate::codecs::stream::LineStream`].
pub struct Pieces<'l> {
    pub precision: Precision,
    /// For lines without a timestamp (nanoseconds; truncated to the precision).
    pub default_time_ns: i64,
    pub limits: &'l DecodeLimits,
}

impl PieceDecoder for Pieces<'_> {
    // A string field value may hold a raw line feed.
    const QUOTES_SPAN_LINES: bool = true;

    fn decode(&self, lines: &[u8], progress: &mut Progress, out: &mut Vec<Sample>, errors: &mut LineErrors) {
        decode_lines(lines, progress, self, out, errors);
    }
}

/// Decodes `body`, a run of whole lines (the whole body, or a piece of it that ends
/// with a line feed), continuing `progress`.
fn decode_lines(
    body: &[u8],
    progress: &mut Progress,
    settings: &Pieces<'_>,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) {
    let Pieces { precision, default_time_ns, limits } = *settings;
    let default_ns = precision.truncate(default_time_ns);
    let checker = limits.checker(default_time_ns.div_euclid(1_000_000));
    let mut parser = LineParser::starting_at_line(body, precision, progress.line);
    let interner = SeriesInterner::global();
    let mut point = Point::default();
    let Progress { summary, estimated, .. } = progress;
    let reach = Reach { before: progress.offset, body_len: progress.body_len.max(progress.offset + body.len()) };
    let salt = limits.key_checks_fingerprint();
    let mut ahead = Lookahead::new(body);
    loop {
        ahead.prefetch_from(body, parser.offset(), interner, salt);
        let next = if ahead.looks_new(parser.offset()) {
            parser.next_into(&mut point).map(|(line, parsed)| (line, parsed.map(|()| Parsed::Whole)))
        } else {
            parser.next_keyed(&mut point)
        };
        let Some((line, parsed)) = next else { break };
        let result = match parsed {
            Ok(Parsed::Keyed { key, measurement_end }) => {
                // The keyed path only runs on a UTF-8 body, and a measurement ends at an ASCII
                // byte: the text is always there (without it, the line is parsed whole).
                let known = parser.text(key.start..measurement_end).map(|measurement| KnownLine {
                    body,
                    raw_key: key.clone(),
                    measurement,
                });
                let decoded = known.and_then(|known| {
                    known.decode(&point, &mut ahead, salt, default_ns, &checker, limits, summary, out)
                });
                match decoded {
                    Some(Ok(())) => {
                        reserve_estimate(estimated, &parser, reach, limits, summary, out);
                        continue;
                    }
                    Some(Err(Stop::OverSampleLimit)) => break,
                    Some(Err(Stop::Refused(refusal))) => {
                        errors.record(line, || format!("line {line}: {}", refusal.message()));
                        continue;
                    }
                    None => parser.reparse(&mut point),
                }
            }
            Ok(Parsed::Whole) => Ok(()),
            Err(error) => Err(error),
        };
        let outcome = result.and_then(|()| {
            if let Some(tag) = point.tags.iter().find(|t| t.key == METRIC_NAME_LABEL) {
                let problem = Problem::ReservedTagKey(tag.key.to_string());
                return Err(LineError { position: Position { line, column: None }, problem });
            }
            Ok(())
        });
        if let Err(error) = outcome {
            summary.rejected_lines += 1;
            errors.record(error.line(), || error.to_string());
            continue;
        }
        let timestamp_ms = point.timestamp_ns.unwrap_or(default_ns).div_euclid(1_000_000);
        let numeric = point.fields.iter().filter(|f| f.value.as_f64().is_some()).count() as u64;
        if let Err(refusal) = check_point(&point, timestamp_ms, &checker) {
            summary.rejected_lines += 1;
            summary.refused_lines += 1;
            summary.refused.add(refusal.reason(), numeric);
            errors.record(line, || format!("line {line}: {}", refusal.message()));
            continue;
        }
        if summary.accepted_samples + numeric > limits.max_samples as u64 {
            summary.over_sample_limit = true;
            break;
        }
        summary.accepted_lines += 1;
        summary.non_numeric += point.fields.len() as u64 - numeric;
        let raw_key = raw_series_key(body, &point);
        if numeric > 1 && !point.tags.is_empty() {
            // Several samples from one line share its tags: encoded once (or found in
            // the table), each sample owning only its name.
            let tags = match raw_key.map(|raw| interner.key(raw, None, salt)) {
                Some(key) => interner.get(key).unwrap_or_else(|| interner.insert(key, tag_labels(&point))),
                None => tag_labels(&point).share(),
            };
            for field in &point.fields {
                let Some(value) = field.value.as_f64() else { continue };
                let labels = name_label(&point.measurement, &field.key).then_shared(&tags);
                out.push(Sample { labels, value, timestamp_ms, kind: MetricKind::Unspecified });
            }
        } else {
            for field in &point.fields {
                let Some(value) = field.value.as_f64() else { continue };
                // A line of several fields without tags: each label set is just a name.
                let raw_key = raw_key.filter(|_| numeric == 1);
                let labels = match raw_key.map(|raw| interner.key(raw, Some(field.key.as_bytes()), salt)) {
                    Some(key) => {
                        interner.get(key).unwrap_or_else(|| interner.insert(key, labels_for(&point, &field.key)))
                    }
                    None => labels_for(&point, &field.key),
                };
                out.push(Sample { labels, value, timestamp_ms, kind: MetricKind::Unspecified });
            }
        }
        summary.accepted_samples += numeric;
        reserve_estimate(estimated, &parser, reach, limits, summary, out);
    }
    progress.line = parser.line();
    progress.offset += body.len();
}

/// Where the bytes being parsed sit in their body.
#[derive(Debug, Clone, Copy)]
struct Reach {
    /// Bytes of the body before this piece.
    before: usize,
    /// The whole body's (expected) length.
    body_len: usize,
}

/// Once [`PROBE_SAMPLES`] are decoded, grows `out` once for the rest of the body, estimated
/// from the bytes they took: instead of doubling (every doubling copies the samples and
/// faults in fresh pages) and instead of one slot per newline up front (a body of blank
/// lines would reserve for samples it never holds).
#[inline]
fn reserve_estimate(
    estimated: &mut bool,
    parser: &LineParser<'_>,
    reach: Reach,
    limits: &DecodeLimits,
    summary: &DecodeSummary,
    out: &mut Vec<Sample>,
) {
    if *estimated || summary.accepted_samples < PROBE_SAMPLES {
        return;
    }
    *estimated = true;
    let consumed = (reach.before + parser.offset()).max(1) as u128;
    let rest = (reach.body_len as u128).saturating_sub(consumed);
    let expected = rest * u128::from(summary.accepted_samples) / consumed;
    let room = (limits.max_samples as u64).saturating_sub(summary.accepted_samples);
    out.reserve((expected + expected / 16).min(u128::from(room)) as usize);
}

/// The raw bytes of a line's series key, from its measurement to the end of its last tag,
/// escapes included: what its labels are decoded from (see [`SeriesInterner`]). `None`
/// when the measurement or the last tag value had escapes (they are then not slices of
/// the body) or the point does not come from `body`.
fn raw_series_key<'b>(body: &'b [u8], point: &Point<'_>) -> Option<&'b [u8]> {
    let Cow::Borrowed(measurement) = &point.measurement else { return None };
    let end = match point.tags.last() {
        None => measurement.as_bytes().as_ptr_range().end,
        Some(Tag { value: Cow::Borrowed(value), .. }) => value.as_bytes().as_ptr_range().end,
        Some(_) => return None,
    };
    let base = body.as_ptr() as usize;
    let start = (measurement.as_ptr() as usize).checked_sub(base)?;
    let end = (end as usize).checked_sub(base)?;
    body.get(start..end)
}

/// The limits that one line can break, checked on the parsed point (nothing copied yet).
fn check_point(point: &Point<'_>, timestamp_ms: i64, checker: &Checker<'_>) -> Result<(), LimitError> {
    checker.field_count(point.fields.len())?;
    let sent_static = point.tags.iter().filter(|t| checker.is_static(&t.key)).count();
    checker.label_count(point.tags.len(), sent_static)?;
    for tag in &point.tags {
        checker.label(&tag.key, &tag.value)?;
    }
    check_names_and_time(&point.measurement, point, timestamp_ms, checker)
}

/// [`check_point`] for a line of a known series key: the checks of the key alone are not
/// repeated (see [`KnownLine`]).
#[inline]
pub(super) fn check_fields(
    measurement: &str,
    point: &Point<'_>,
    timestamp_ms: i64,
    checker: &Checker<'_>,
) -> Result<(), LimitError> {
    checker.field_count(point.fields.len())?;
    check_names_and_time(measurement, point, timestamp_ms, checker)
}

/// The metric names a line's numeric fields make, then its timestamp.
#[inline]
fn check_names_and_time(
    measurement: &str,
    point: &Point<'_>,
    timestamp_ms: i64,
    checker: &Checker<'_>,
) -> Result<(), LimitError> {
    // Each numeric field's name is checked, unless even the longest one possible
    // (`<measurement>_<longest key>`) is within the length limit and names are not validated.
    let limits = checker.limits();
    let longest_key = point.fields.iter().map(|f| f.key.len()).max().unwrap_or(0);
    let longest_name = measurement.len().saturating_add(1).saturating_add(longest_key);
    if limits.reject_invalid_names || longest_name > limits.max_name_length {
        for field in &point.fields {
            if field.value.as_f64().is_some() {
                checker.metric_name(&metric_name_parts(measurement, &field.key))?;
            }
        }
    }
    checker.timestamp(timestamp_ms)
}

/// `<measurement>_<field>`, or `<measurement>` for the field `value`.
pub fn metric_name(measurement: &str, field: &str) -> LabelStr {
    metric_name_parts(measurement, field).concat().into()
}

/// The pieces [`metric_name`] joins.
fn metric_name_parts<'a>(measurement: &'a str, field: &'a str) -> [&'a str; 3] {
    if field == "value" { [measurement, "", ""] } else { [measurement, "_", field] }
}

/// `__name__` (see [`metric_name`]) first, then the tags sorted (see [`sorted_tags`]);
/// sized exactly, so a sample's labels are one allocation.
fn labels_for(point: &Point<'_>, field: &str) -> Labels {
    let name = metric_name_parts(&point.measurement, field);
    let name_len: usize = name.iter().map(|p| p.len()).sum();
    let tag_bytes: usize = point.tags.iter().map(|t| t.key.len() + t.value.len()).sum();
    let mut labels = Labels::with_capacity(point.tags.len() + 1, METRIC_NAME_LABEL.len() + name_len + tag_bytes);
    labels.push_with(METRIC_NAME_LABEL, &name);
    for tag in sorted_tags(point).iter() {
        labels.push(&*tag.key, &*tag.value);
    }
    labels
}

/// The line's tags by name (then value), as sent when they already are (the usual case).
/// Decoded in that order, the labels of a sender that orders its tags otherwise are
/// still final as decoded whenever `__name__` sorts first (tag names from `a` on), so
/// the resolve stage can note their verdict instead of looking it up per sample (see
/// `pipeline::stages::resolve`). The order within a set is only its form: every stage
/// after the decoder sorts.
fn sorted_tags<'p, 'b>(point: &'p Point<'b>) -> Cow<'p, [Tag<'b>]> {
    let in_order = |a: &Tag<'_>, b: &Tag<'_>| (&*a.key, &*a.value) <= (&*b.key, &*b.value);
    if point.tags.is_sorted_by(in_order) {
        return Cow::Borrowed(&point.tags);
    }
    let mut tags = point.tags.clone();
    tags.sort_by(|a, b| (&*a.key, &*a.value).cmp(&(&*b.key, &*b.value)));
    Cow::Owned(tags)
}

/// The `__name__` label alone (see [`metric_name`]), for a line whose tags are shared.
pub(super) fn name_label(measurement: &str, field: &str) -> Labels {
    let name = metric_name_parts(measurement, field);
    let name_len: usize = name.iter().map(|p| p.len()).sum();
    let mut labels = Labels::with_capacity(1, METRIC_NAME_LABEL.len() + name_len);
    labels.push_with(METRIC_NAME_LABEL, &name);
    labels
}

/// The tags of a line, sorted (see [`sorted_tags`]), without `__name__`.
fn tag_labels(point: &Point<'_>) -> Labels {
    let tag_bytes: usize = point.tags.iter().map(|t| t.key.len() + t.value.len()).sum();
    let mut labels = Labels::with_capacity(point.tags.len(), tag_bytes);
    for tag in sorted_tags(point).iter() {
        labels.push(&*tag.key, &*tag.value);
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codecs::report::MAX_REPORTED_ERRORS;
    use crate::telemetry::DropReason;

    fn decode(body: &str, default_ns: i64) -> (Vec<Sample>, DecodeSummary, LineErrors) {
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let summary = decode_body(body.as_bytes(), Precision::Nanosecond, default_ns, &mut out, &mut errors);
        (out, summary, errors)
    }
    #[test]
    fn an_unterminated_string_costs_only_its_own_line() {
        let body = "m s=\"open\nm f=1\nm f=2\n";
        let (samples, summary, errors) = decode(body, 0);
        assert_eq!(summary.rejected_lines, 1);
        assert_eq!(summary.accepted_samples, 2);
        assert_eq!(samples.len(), 2);
        assert_eq!(errors.reported()[0].line, 1);
    }

    #[test]
    fn decode_body_names_labels_values_and_times() {
        let body = "cpu,host=a value=1.5,user=2i,n=3u,up=true,down=F,note=\"hi\" 1500000000\n\
                    mem free=7 \n\
                    neg v=1 -1\n";
        let (samples, summary, errors) = decode(body, 42_999_999);
        assert!(errors.is_empty());
        assert_eq!(
            summary,
            DecodeSummary {
                accepted_lines: 3,
                accepted_samples: 7,
                rejected_lines: 0,
                non_numeric: 1,
                ..Default::default()
            }
        );
        let got: Vec<(String, f64, i64)> =
            samples.iter().map(|s| (s.labels.to_string(), s.value, s.timestamp_ms)).collect();
        assert_eq!(
            got,
            [
                ("cpu{host=\"a\"}".to_string(), 1.5, 1500),
                ("cpu_user{host=\"a\"}".to_string(), 2.0, 1500),
                ("cpu_n{host=\"a\"}".to_string(), 3.0, 1500),
                ("cpu_up{host=\"a\"}".to_string(), 1.0, 1500),
                ("cpu_down{host=\"a\"}".to_string(), 0.0, 1500),
                ("mem_free{}".to_string(), 7.0, 42),
                // -1 ns floors to -1 ms.
                ("neg_v{}".to_string(), 1.0, -1),
            ]
        );
        assert!(samples.iter().all(|s| s.kind == MetricKind::Unspecified));
        assert_eq!(samples[0].labels.get(METRIC_NAME_LABEL), Some("cpu"));
    }

    #[test]
    fn tags_are_decoded_sorted_after_the_name_on_every_path() {
        let body = "m,z=1,b=2,a=3 f=1\nm,z=1,b=2,a=3 f=1,g=2\nm,z=1,b=2,a=3 f=1\nm,z=1,b=2,a=3 f=1,g=2\n";
        let (samples, summary, errors) = decode(body, 0);
        assert!(errors.is_empty());
        assert_eq!(summary.accepted_samples, 6);
        for s in &samples {
            let names: Vec<&str> = s.labels.iter().map(|l| l.name).collect();
            assert_eq!(names, ["__name__", "a", "b", "z"], "{}", s.labels);
        }
        // The second time, each key is known and its stored labels are taken as they are.
        assert_eq!(samples[3].labels, samples[0].labels);
        assert_eq!((&samples[4].labels, &samples[5].labels), (&samples[1].labels, &samples[2].labels));
    }

    #[test]
    fn default_time_is_truncated_to_the_precision() {
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        decode_body(b"m f=1", Precision::Second, 1_700_000_000_987_654_321, &mut out, &mut errors);
        assert_eq!(out[0].timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn a_name_tag_is_rejected_because_it_would_replace_the_metric_name() {
        let (samples, summary, errors) = decode("m,__name__=x f=1\nm f=2\n", 0);
        assert_eq!(summary.rejected_lines, 1);
        assert_eq!(samples.len(), 1);
        assert_eq!(errors.reported()[0].message, "line 1: tag key \"__name__\" is reserved for the metric name");
    }

    #[test]
    fn partial_write_counts_every_bad_line_and_reports_the_first_ones() {
        let mut body = String::new();
        for i in 0..(MAX_REPORTED_ERRORS + 15) {
            body.push_str(&format!("good f={i}\nbad f=\n"));
        }
        let (samples, summary, errors) = decode(&body, 0);
        let lines = (MAX_REPORTED_ERRORS + 15) as u64;
        assert_eq!(summary.accepted_lines, lines);
        assert_eq!(summary.rejected_lines, lines);
        assert_eq!(samples.len() as u64, lines);
        assert_eq!(errors.rejected(), lines);
        assert_eq!(errors.reported().len(), MAX_REPORTED_ERRORS);
        assert_eq!(errors.reported()[0].line, 2);
        assert_eq!(errors.reported()[1].line, 4);
        let json = serde_json::to_string(&errors.reported()[0]).unwrap();
        assert_eq!(
            json,
            r#"{"line":2,"message":"line 2, column 7: expected a value for field \"f\", found end of line"}"#
        );
    }

    #[test]
    fn metric_names() {
        assert_eq!(metric_name("cpu", "value"), "cpu");
        assert_eq!(metric_name("cpu", "usage_idle"), "cpu_usage_idle");
    }

    fn strict() -> DecodeLimits {
        DecodeLimits {
            max_samples: 100,
            max_fields_per_line: 3,
            max_labels: 2,
            max_name_length: 12,
            max_label_value_length: 4,
            max_past_ms: 60_000,
            max_future_ms: 60_000,
            reject_invalid_names: false,
            static_labels: Vec::new().into(),
        }
    }

    const NOW_NS: i64 = 1_700_000_000_000_000_000;

    fn decode_limited(body: &str, limits: &DecodeLimits) -> (Vec<Sample>, DecodeSummary, LineErrors) {
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let summary =
            decode_body_limited(body.as_bytes(), Precision::Nanosecond, NOW_NS, limits, &mut out, &mut errors);
        (out, summary, errors)
    }

    #[test]
    fn a_line_over_a_limit_is_refused_with_its_reason_and_the_rest_accepted() {
        let body = "ok,a=1,b=2 f=1,g=2\n\
                    labels,a=1,b=2,c=3 f=1,g=2\n\
                    fields f=1,g=2,h=3,i=4\n\
                    value,a=12345 f=1\n\
                    key,abcdefghijklm=1 f=1\n\
                    name f_is_long_enough=1\n\
                    old f=1 1600000000000000000\n\
                    strings,a=1 s=\"x\",f=1\n";
        let (samples, summary, errors) = decode_limited(body, &strict());
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!((summary.accepted_lines, summary.rejected_lines, summary.refused_lines), (2, 6, 6));
        assert_eq!(summary.unparsable_lines(), 0);
        assert_eq!(summary.non_numeric, 1);
        let r = &summary.refused;
        assert_eq!(r.get(DropReason::TooManyLabels), 2);
        assert_eq!(r.get(DropReason::ParseError), 4);
        assert_eq!(r.get(DropReason::LabelValueTooLong), 1);
        assert_eq!(r.get(DropReason::InvalidName), 2);
        assert_eq!(r.get(DropReason::TimestampOutOfWindow), 1);
        let reported: Vec<(usize, &str)> = errors.reported().iter().map(|e| (e.line, e.message.as_str())).collect();
        let expect = [
            (2, "too_many_labels"),
            (3, "parse_error"),
            (4, "label_value_too_long"),
            (5, "invalid_name"),
            (6, "invalid_name"),
            (7, "timestamp_out_of_window"),
        ];
        for ((line, message), (want_line, reason)) in reported.iter().zip(expect) {
            assert_eq!(*line, want_line);
            assert!(message.starts_with(&format!("line {want_line}: ")), "{message}");
            assert!(message.ends_with(&format!("({reason})")), "{message}");
        }
    }

    #[test]
    fn static_labels_count_and_strict_names_refuse() {
        let limits = DecodeLimits { static_labels: vec!["cluster".to_string()].into(), ..strict() };
        let (samples, summary, _) = decode_limited("m,a=1,b=2 f=1\nm,a=1,cluster=x f=1\nm,a=1 f=1\n", &limits);
        assert_eq!((samples.len(), summary.refused.get(DropReason::TooManyLabels)), (2, 1));
        let limits = DecodeLimits { reject_invalid_names: true, ..strict() };
        let (samples, summary, _) = decode_limited("m,a-b=1 f=1\nm.x f=1\nm,a=1 f=1\n", &limits);
        assert_eq!((samples.len(), summary.refused.get(DropReason::InvalidName)), (1, 2));
    }

    #[test]
    fn a_line_with_a_hundred_thousand_tags_and_fields_is_refused_before_any_sample_is_built() {
        let mut line = String::from("m");
        for i in 0..100_000 {
            line.push_str(&format!(",t{i}=v"));
        }
        for i in 0..100_000 {
            line.push_str(if i == 0 { " " } else { "," });
            line.push_str(&format!("f{i}=1"));
        }
        let (samples, summary, errors) =
            decode_limited(&format!("{line}\nm f=1\n"), &DecodeLimits::for_pipeline_defaults());
        assert_eq!(samples.len(), 1);
        assert_eq!(summary.refused.get(DropReason::ParseError), 100_000, "too many fields, checked first");
        assert!(errors.reported()[0].message.contains("max_fields_per_line"), "{:?}", errors.reported());
    }

    #[test]
    fn decoding_stops_at_the_sample_limit() {
        let limits = DecodeLimits { max_samples: 5, ..strict() };
        let (samples, summary, _) = decode_limited("m f=1,g=2\nm f=1,g=2\nm f=1,g=2\nm f=1\n", &limits);
        assert!(summary.over_sample_limit);
        assert_eq!(samples.len(), 4);
        let (samples, summary, _) = decode_limited("m f=1,g=2\nm f=1,g=2\nm f=1\n", &limits);
        assert!(!summary.over_sample_limit);
        assert_eq!(samples.len(), 5);
    }

    #[test]
    fn blank_lines_reserve_nothing_and_real_lines_grow_once() {
        let body = "\n".repeat(1_000_000);
        let (samples, summary, _) = decode_limited(&body, &DecodeLimits::unlimited());
        assert_eq!((samples.len(), samples.capacity(), summary.accepted_lines), (0, 0, 0));
        let body: String = (0..10_000).map(|i| format!("m,host=h{i} v={i}\n")).collect();
        let (samples, _, _) = decode_limited(&body, &DecodeLimits::unlimited());
        assert_eq!(samples.len(), 10_000);
        assert!(samples.capacity() < 10_000 * 5 / 4, "estimated capacity {}", samples.capacity());
    }

    #[test]
    fn the_most_negative_timestamp_is_refused_by_the_window_and_never_overflows() {
        let body = "m f=1 -9223372036854775808\nm f=2\n";
        let (samples, summary, errors) = decode_limited(body, &strict());
        assert_eq!(samples.len(), 1);
        assert_eq!(summary.refused.get(DropReason::TimestampOutOfWindow), 1);
        assert!(errors.reported()[0].message.contains("-9223372036855"), "{:?}", errors.reported());
        let (samples, _, _) = decode_limited(body, &DecodeLimits::unlimited());
        assert_eq!(samples[0].timestamp_ms, i64::MIN.div_euclid(1_000_000));
        let mut out = Vec::new();
        decode_body(b"m f=1", Precision::Second, i64::MIN, &mut out, &mut LineErrors::new());
        assert_eq!(out.len(), 1);
    }

    use super::super::known::KNOWN_LINES;

    /// Every sample, summary and error of a body, in a form two decodes can be compared by.
    fn outcome(body: &str, limits: &DecodeLimits) -> (Vec<String>, DecodeSummary, Vec<String>) {
        let (samples, summary, errors) = decode_limited(body, limits);
        let samples = samples
            .iter()
            .map(|s| format!("{:?} {:x} {} {:?}", s.labels, s.value.to_bits(), s.timestamp_ms, s.kind))
            .collect();
        let errors = errors.reported().iter().map(|e| format!("{} {}", e.line, e.message)).collect();
        (samples, summary, errors)
    }

    /// The lookahead guesses a line's key from its first separators; a string with a space
    /// makes it guess the wrong field. The key it hands on must then not be taken: the
    /// sample keeps its own name.
    #[test]
    fn a_wrongly_guessed_key_is_not_taken() {
        let body = "guess,a=1 s=1\nguess,a=1 s=\"x y\",f=2\nguess,a=1 s=\"x,y\",f=3\n";
        for _ in 0..3 {
            let (samples, summary, errors) = decode_limited(body, &DecodeLimits::unlimited());
            assert!(errors.is_empty(), "{:?}", errors.reported());
            assert_eq!(summary.accepted_samples, 3);
            let named: Vec<(String, f64)> =
                samples.iter().map(|s| (s.labels.name().unwrap_or("").to_string(), s.value)).collect();
            assert_eq!(
                named,
                [("guess_s".to_string(), 1.0), ("guess_f".to_string(), 2.0), ("guess_f".to_string(), 3.0)]
            );
        }
    }

    /// The second time a series key is seen only its fields and timestamp are parsed
    /// (issue #17 item 1): the outcome must be exactly the first time's, under every limit.
    #[test]
    fn a_known_series_key_decodes_exactly_as_the_first_time() {
        let now_ns = NOW_NS.to_string();
        let body = "known,a=1,b=2 f=1 NOW\n\
                    known,a=1,b=2 f=1,g=2i,s=\"x\" NOW\n\
                    known,a=1,b=2 s=\"only a string\" NOW\n\
                    known,a=1,b=2 f=1,g=2,h=3,i=4 NOW\n\
                    known,a=1,b=2 f=1 1\n\
                    known,a=1,b=2 value=7u\n\
                    known,a=1,b=2 f_is_a_long_field=1 NOW\n\
                    known,a=1,b=2 f=oops NOW\n\
                    known,a=1,b=2  f=1 NOW\n\
                    known,a=12345 f=1 NOW\n\
                    known,a=1,b=2,c=3 f=1 NOW\n\
                    known,__name__=x f=1 NOW\n\
                    known,a=1,a=2 f=1 NOW\n\
                    known,a=1, f=1 NOW\n\
                    known,a=\\ b f=1 NOW\n\
                    known f=1,g=2 NOW\n\
                    known f=3 NOW\n\
                    kn=own,a=1 f=1 NOW\n\
                    known,a=1,b=2 f=T,g=-1.5e3 NOW\r\n"
            .replace("NOW", &now_ns);
        let limits = [
            DecodeLimits::unlimited(),
            strict(),
            DecodeLimits { static_labels: vec!["b".to_string()].into(), ..strict() },
            DecodeLimits { reject_invalid_names: true, ..strict() },
            DecodeLimits { max_samples: 6, ..strict() },
        ];
        // Each set of limits after the others: keys the table holds from one must not let a
        // line past the next one's checks.
        for round in 0..2 {
            for l in &limits {
                let first = outcome(&body, l);
                let known_before = KNOWN_LINES.with(|n| n.get());
                let again = outcome(&body, l);
                let known = KNOWN_LINES.with(|n| n.get()) - known_before;
                assert_eq!(first, again, "round {round}, limits {l:?}");
                assert!(known >= 3, "round {round}, limits {l:?}: only {known} lines decoded from a known key");
                assert!(first.0.len() >= 3, "{first:?}");
            }
        }
        let strict_outcome = outcome(&body, &strict());
        assert!(strict_outcome.1.refused_lines >= 3, "{strict_outcome:?}");
        // The same body line by line (nothing known within one body) decides the same.
        let unlimited = DecodeLimits::unlimited();
        let mut by_line = (Vec::new(), DecodeSummary::default());
        for line in body.split_inclusive('\n') {
            let (samples, summary, _) = outcome(line, &unlimited);
            by_line.0.extend(samples);
            by_line.1.accepted_samples += summary.accepted_samples;
            by_line.1.rejected_lines += summary.rejected_lines;
        }
        let whole = outcome(&body, &unlimited);
        assert_eq!(by_line.0, whole.0);
        assert_eq!(
            (by_line.1.accepted_samples, by_line.1.rejected_lines),
            (whole.1.accepted_samples, whole.1.rejected_lines)
        );
    }
}
