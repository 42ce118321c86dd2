//! NDJSON ingest (`POST /api/v1/ingest`): one JSON object a line,
//! `{"name": "...", "labels": {"k": "v"}, "value": 1.5, "timestamp": 1700000000000, "type": "counter"}`.
//!
//! `labels`, `timestamp` (integer milliseconds or an RFC 3339 string) and `type` (`counter`,
//! `gauge`, `value` = gauge, `histogram`, `summary`) are optional; `null` counts as absent.
//! Unknown keys are rejected so that a misspelt `timestamp` cannot silently become "now".
//! The answer and accounting are the same as for line protocol ([`DecodeSummary`],
//! [`LineErrors`]).

use std::borrow::Cow;
use std::fmt;

use memchr::memchr;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::limits::{Checker, DecodeLimits, LimitError};
use super::line_protocol::Position;
pub use super::line_protocol::{DecodeSummary, LineErrors, MAX_REPORTED_ERRORS, ReportedError};
use super::report::Progress;
use super::stream::PieceDecoder;
use crate::model::{LabelStr, Labels, METRIC_NAME_LABEL, MetricKind, Sample};

/// One valid line.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub name: LabelStr,
    /// The `labels` object, in the order given, without `__name__`.
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the Unix epoch; `None` when the line had none.
    pub timestamp_ms: Option<i64>,
    pub kind: MetricKind,
}

impl Record {
    /// The record as a sample, with `default_time_ms` for a missing timestamp.
    pub fn into_sample(self, default_time_ms: i64) -> Sample {
        let mut labels = self.labels;
        labels.push(METRIC_NAME_LABEL, &self.name);
        Sample {
            labels,
            value: self.value,
            timestamp_ms: self.timestamp_ms.unwrap_or(default_time_ms),
            kind: self.kind,
        }
    }
}

/// Why a line was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {problem}")]
pub struct NdjsonError {
    pub position: Position,
    pub problem: Problem,
}

impl NdjsonError {
    pub fn line(&self) -> usize {
        self.position.line
    }
}

/// What kind of JSON value was found, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Null => "null",
            JsonKind::Bool => "a boolean",
            JsonKind::Number => "a number",
            JsonKind::String => "a string",
            JsonKind::Array => "an array",
            JsonKind::Object => "an object",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("expected a JSON object, found {0}")]
    NotAnObject(JsonKind),
    #[error("unknown key {0:?} (expected name, labels, value, timestamp, type)")]
    UnknownKey(String),
    #[error("key {0:?} appears more than once")]
    DuplicateKey(String),
    #[error("missing \"name\"")]
    MissingName,
    #[error("\"name\" must be a non-empty string, found {0}")]
    InvalidName(JsonKind),
    #[error("\"name\" is empty")]
    EmptyName,
    #[error("missing \"value\"")]
    MissingValue,
    #[error("\"value\" must be a number, found {0}")]
    NonNumericValue(JsonKind),
    #[error("\"labels\" must be an object of strings, found {0}")]
    LabelsNotAnObject(JsonKind),
    #[error("label {name:?} must be a string, found {found}")]
    LabelNotAString { name: String, found: JsonKind },
    #[error("label {0:?} appears more than once")]
    DuplicateLabel(String),
    #[error("label {0:?} is not allowed in \"labels\": the metric name comes from \"name\"")]
    ReservedLabel(String),
    #[error("\"timestamp\" must be integer milliseconds or an RFC 3339 string, found {0}")]
    InvalidTimestampType(JsonKind),
    #[error("\"timestamp\" {0} is not a whole number of milliseconds in range")]
    InvalidTimestampNumber(String),
    #[error("\"timestamp\" {0:?} is not an RFC 3339 time (e.g. 2023-11-14T22:13:20.5Z)")]
    InvalidTimestampText(String),
    #[error("\"type\" must be one of counter, gauge, value, histogram, summary, found {0:?}")]
    UnknownType(String),
    #[error("\"type\" must be a string, found {0}")]
    InvalidTypeType(JsonKind),
}

// ---------------------------------------------------------------------------------------------
// Deserialization: a borrowing visitor that never fails for semantic reasons (it records the
// first problem and keeps consuming, so the JSON syntax is still checked to the end).
// ---------------------------------------------------------------------------------------------

/// A JSON value as far as a record cares.
enum Scalar<'de> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(Cow<'de, str>),
    Other(JsonKind),
}

impl Scalar<'_> {
    fn kind(&self) -> JsonKind {
        match self {
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => JsonKind::Number,
            Scalar::Text(_) => JsonKind::String,
            Scalar::Other(kind) => *kind,
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonKind::Bool))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Other(JsonKind::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other(JsonKind::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other(JsonKind::Object))
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// An object key, borrowed unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(ScalarVisitor)? {
            Scalar::Text(text) => Ok(Key(text)),
            other => Err(de::Error::custom(format_args!("expected a string key, found {}", other.kind()))),
        }
    }
}

/// Reads the `labels` object into `labels`, recording the first problem in `problem`.
struct LabelsSeed<'p> {
    labels: &'p mut Labels,
    problem: &'p mut Option<Problem>,
    /// Labels beyond this many are counted but not kept (the record is refused anyway).
    keep_at_most: usize,
    /// Labels in the object (with a string value, `__name__` aside).
    count: &'p mut usize,
}

impl<'de> DeserializeSeed<'de> for LabelsSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LabelsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of string labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(name)) = map.next_key::<Key<'de>>()? {
            let value = map.next_value::<Scalar<'de>>()?;
            if self.problem.is_some() {
                continue;
            }
            let Scalar::Text(value) = value else {
                let found = value.kind();
                *self.problem = Some(Problem::LabelNotAString { name: name.into_owned(), found });
                continue;
            };
            if name == METRIC_NAME_LABEL {
                *self.problem = Some(Problem::ReservedLabel(name.into_owned()));
                continue;
            }
            *self.count += 1;
            if *self.count <= self.keep_at_most {
                self.labels.push(&*name, &*value);
            }
        }
        // Repeated names are looked for once the object is read: per label, that costs a
        // scan of the few labels a record has, or a sort of many (never quadratic).
        if self.problem.is_none()
            && let Some(name) = duplicate_name(self.labels)
        {
            *self.problem = Some(Problem::DuplicateLabel(name.to_owned()));
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.not_an_object(JsonKind::Bool)
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        self.not_an_object(JsonKind::Number)
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        self.not_an_object(JsonKind::String)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object(JsonKind::Array)
    }
}

/// The first label name (in sort order when there are many) that appears twice, if any.
fn duplicate_name(labels: &Labels) -> Option<&str> {
    const SCAN_LIMIT: usize = 16;
    let mut names: Vec<&str> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if i < SCAN_LIMIT && names.contains(&l.name) {
            return Some(l.name);
        }
        names.push(l.name);
    }
    if names.len() <= SCAN_LIMIT {
        return None;
    }
    names.sort_unstable();
    names.windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0])
}

impl LabelsSeed<'_> {
    fn not_an_object<E>(self, found: JsonKind) -> Result<(), E> {
        self.problem.get_or_insert(Problem::LabelsNotAnObject(found));
        Ok(())
    }
}

/// The top-level object, checked field by field.
struct RecordVisitor<'c> {
    problem: Option<Problem>,
    keep_labels: usize,
    label_count: &'c mut usize,
}

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = Result<Record, Problem>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut name: Option<LabelStr> = None;
        let mut value: Option<f64> = None;
        let mut timestamp_ms: Option<i64> = None;
        let mut kind = MetricKind::Unspecified;
        let mut labels = Labels::new();
        let mut seen = [false; 5];
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = match key.as_ref() {
                "name" => 0,
                "labels" => 1,
                "value" => 2,
                "timestamp" => 3,
                "type" => 4,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    self.problem.get_or_insert(Problem::UnknownKey(key.into_owned()));
                    continue;
                }
            };
            if std::mem::replace(&mut seen[slot], true) {
                map.next_value::<IgnoredAny>()?;
                self.problem.get_or_insert(Problem::DuplicateKey(key.into_owned()));
                continue;
            }
            if slot == 1 {
                map.next_value_seed(LabelsSeed {
                    labels: &mut labels,
                    problem: &mut self.problem,
                    keep_at_most: self.keep_labels,
                    count: self.label_count,
                })?;
                continue;
            }
            let scalar = map.next_value::<Scalar<'de>>()?;
            if self.problem.is_some() {
                continue;
            }
            let checked = match slot {
                0 => check_name(scalar).map(|n| name = Some(n)),
                2 => check_value(scalar).map(|v| value = Some(v)),
                3 => check_timestamp(scalar).map(|t| timestamp_ms = t),
                _ => check_type(scalar).map(|k| kind = k),
            };
            if let Err(problem) = checked {
                self.problem = Some(problem);
            }
        }
        if let Some(problem) = self.problem {
            return Ok(Err(problem));
        }
        let Some(name) = name else {
            return Ok(Err(Problem::MissingName));
        };
        let Some(value) = value else {
            return Ok(Err(Problem::MissingValue));
        };
        Ok(Ok(Record { name, labels, value, timestamp_ms, kind }))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::Bool)))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::Number)))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::Number)))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::Number)))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::String)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(Problem::NotAnObject(JsonKind::Null)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(Problem::NotAnObject(JsonKind::Array)))
    }
}

fn check_name(scalar: Scalar<'_>) -> Result<LabelStr, Problem> {
    match scalar {
        Scalar::Text(name) if name.is_empty() => Err(Problem::EmptyName),
        Scalar::Text(name) => Ok(LabelStr::from(name)),
        other => Err(Problem::InvalidName(other.kind())),
    }
}

fn check_value(scalar: Scalar<'_>) -> Result<f64, Problem> {
    match scalar {
        Scalar::Int(v) => Ok(v as f64),
        Scalar::UInt(v) => Ok(v as f64),
        Scalar::Float(v) => Ok(v),
        other => Err(Problem::NonNumericValue(other.kind())),
    }
}

fn check_timestamp(scalar: Scalar<'_>) -> Result<Option<i64>, Problem> {
    // 2^63 as an f64: every f64 below it in magnitude converts to i64 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match scalar {
        Scalar::Int(ms) => Ok(Some(ms)),
        Scalar::UInt(ms) => i64::try_from(ms).map(Some).map_err(|_| Problem::InvalidTimestampNumber(ms.to_string())),
        Scalar::Float(ms) if ms.fract() == 0.0 && ms.abs() < LIMIT => Ok(Some(ms as i64)),
        Scalar::Float(ms) => Err(Problem::InvalidTimestampNumber(ms.to_string())),
        Scalar::Text(text) => parse_rfc3339_ms(&text)
            .map(Some)
            .ok_or_else(|| Problem::InvalidTimestampText(text.chars().take(64).collect())),
        Scalar::Other(JsonKind::Null) => Ok(None),
        Scalar::Other(kind) => Err(Problem::InvalidTimestampType(kind)),
    }
}

fn check_type(scalar: Scalar<'_>) -> Result<MetricKind, Problem> {
    match scalar {
        Scalar::Text(text) => {
            let is = |name: &str| text.eq_ignore_ascii_case(name);
            if is("counter") {
                Ok(MetricKind::Counter)
            } else if is("gauge") || is("value") {
                Ok(MetricKind::Gauge)
            } else if is("histogram") {
                Ok(MetricKind::Histogram)
            } else if is("summary") {
                Ok(MetricKind::Summary)
            } else {
                Err(Problem::UnknownType(text.chars().take(64).collect()))
            }
        }
        Scalar::Other(JsonKind::Null) => Ok(MetricKind::Unspecified),
        other => Err(Problem::InvalidTypeType(other.kind())),
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 3339
// ---------------------------------------------------------------------------------------------

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    // Count from March so that the leap day is the last day of the counting year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` (`T` may be `t` or a space, `Z` may be
/// `z`) into milliseconds since the epoch, rounding a finer fraction down. A leap second
/// (`:60`) counts as the first instant of the next minute.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = i64::from(number(0..4)?);
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..3 {
            millis *= 10;
        }
    }
    let offset_seconds = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let hours = number(i + 1..i + 3)?;
            let minutes = number(i + 4..i + 6)?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' { -seconds } else { seconds }
        }
        _ => return None,
    };
    let seconds =
        days_since_epoch(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_seconds;
    Some(seconds * 1000 + millis)
}

// ---------------------------------------------------------------------------------------------
// Lines and bodies
// ---------------------------------------------------------------------------------------------

/// serde_json appends " at line L column C" to its messages; the line is always 1 here and
/// the column is reported separately.
fn syntax_message(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rsplit_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => message,
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r'))
}

/// Parses one line (without its line feed). A blank line gives `Ok(None)`. `line_number`
/// only labels errors.
pub fn parse_line(line: &[u8], line_number: usize) -> Result<Option<Record>, NdjsonError> {
    parse_line_bounded(line, line_number, usize::MAX).map(|r| r.map(|(record, _)| record))
}

/// [`parse_line`] keeping at most `keep_labels` labels; also returns how many the line had.
fn parse_line_bounded(
    line: &[u8],
    line_number: usize,
    keep_labels: usize,
) -> Result<Option<(Record, usize)>, NdjsonError> {
    if is_blank(line) {
        return Ok(None);
    }
    let mut label_count = 0;
    let mut deserializer = serde_json::Deserializer::from_slice(line);
    let visitor = RecordVisitor { problem: None, keep_labels, label_count: &mut label_count };
    let parsed = deserializer.deserialize_any(visitor).and_then(|parsed| {
        deserializer.end()?;
        Ok(parsed)
    });
    match parsed {
        Ok(Ok(record)) => Ok(Some((record, label_count))),
        Ok(Err(problem)) => Err(NdjsonError { position: Position { line: line_number, column: None }, problem }),
        Err(error) => Err(NdjsonError {
            position: Position { line: line_number, column: Some(error.column().max(1)) },
            problem: Problem::Syntax(syntax_message(&error)),
        }),
    }
}

/// Decodes an NDJSON body into samples appended to `out`, without limits (see
/// [`decode_body_limited`]).
pub fn decode_body(body: &[u8], default_time_ms: i64, out: &mut Vec<Sample>, errors: &mut LineErrors) -> DecodeSummary {
    decode_body_limited(body, default_time_ms, &DecodeLimits::unlimited(), out, errors)
}

/// Decodes an NDJSON body into samples appended to `out`, one per valid line; a line without
/// a timestamp gets `default_time_ms`. Bad lines are recorded in `errors` and skipped.
///
/// `limits` are checked on each record before its sample is built (a record over one is
/// refused with its reason, counted in [`DecodeSummary::refused`]); decoding stops once the
/// body holds more than `limits.max_samples` samples ([`DecodeSummary::over_sample_limit`]).
pub fn decode_body_limited(
    body: &[u8],
    default_time_ms: i64,
    limits: &DecodeLimits,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) -> DecodeSummary {
    let mut progress = Progress::new(body.len());
    decode_lines(body, &mut progress, default_time_ms, limits, out, errors);
    progress.summary
}

/// What every piece of one NDJSON body is decoded with: the body's [`PieceDecoder`]
/// for [`crate::codecs::stream::LineStream`].
pub struct Pieces<'l> {
    /// For records without a timestamp.
    pub default_time_ms: i64,
    pub limits: &'l DecodeLimits,
}

impl PieceDecoder for Pieces<'_> {
    // A record is one line: a line feed inside a string is an error of that line.
    const QUOTES_SPAN_LINES: bool = false;

    fn decode(&self, lines: &[u8], progress: &mut Progress, out: &mut Vec<Sample>, errors: &mut LineErrors) {
        decode_lines(lines, progress, self.default_time_ms, self.limits, out, errors);
    }
}

/// Decodes `body`, whole lines (the whole body, or a piece of it that ends with a line
/// feed), continuing `progress`.
fn decode_lines(
    body: &[u8],
    progress: &mut Progress,
    default_time_ms: i64,
    limits: &DecodeLimits,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) {
    let checker = limits.checker(default_time_ms);
    // Enough to tell "over the limit" from "within it" whatever the static labels are.
    let keep_labels = limits.max_labels.saturating_add(limits.static_labels.len()).saturating_add(1);
    let summary = &mut progress.summary;
    let mut rest = body;
    let mut line_number = progress.line - 1;
    while !rest.is_empty() {
        line_number += 1;
        let (line, next) = match memchr(b'\n', rest) {
            Some(end) => (&rest[..end], &rest[end + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        match parse_line_bounded(line, line_number, keep_labels) {
            Ok(None) => {}
            Ok(Some((record, label_count))) => {
                if let Err(refusal) = check_record(&record, label_count, default_time_ms, &checker) {
                    summary.rejected_lines += 1;
                    summary.refused_lines += 1;
                    summary.refused.add(refusal.reason(), 1);
                    errors.record(line_number, || format!("line {line_number}: {}", refusal.message()));
                    continue;
                }
                if summary.accepted_samples >= limits.max_samples as u64 {
                    summary.over_sample_limit = true;
                    break;
                }
                out.push(record.into_sample(default_time_ms));
                summary.accepted_lines += 1;
                summary.accepted_samples += 1;
            }
            Err(error) => {
                summary.rejected_lines += 1;
                errors.record(error.line(), || error.to_string());
            }
        }
    }
    progress.line = line_number + 1;
    progress.offset += body.len();
}

/// The limits one record can break, checked before its sample is built. `label_count`
/// is how many labels the line had (`record.labels` may keep fewer).
fn check_record(
    record: &Record,
    label_count: usize,
    default_time_ms: i64,
    checker: &Checker<'_>,
) -> Result<(), LimitError> {
    checker.metric_name(&[&record.name])?;
    let kept = record.labels.iter().count();
    // Labels with an empty value are removed by the pipeline: they count for nothing.
    let (mut sent, mut sent_static) = (label_count - kept, 0);
    for l in record.labels.iter().filter(|l| !l.value.is_empty()) {
        sent += 1;
        sent_static += usize::from(checker.is_static(l.name));
    }
    checker.label_count(sent, sent_static)?;
    for l in record.labels.iter().filter(|l| !l.value.is_empty()) {
        checker.label(l.name, l.value)?;
    }
    checker.timestamp(record.timestamp_ms.unwrap_or(default_time_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::DropReason;
    use proptest::prelude::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn record(line: &str) -> Record {
        match parse_line(line.as_bytes(), 1) {
            Ok(Some(record)) => record,
            other => panic!("expected a record from {line:?}, got {other:?}"),
        }
    }

    fn problem(line: &str) -> Problem {
        match parse_line(line.as_bytes(), 1) {
            Err(error) => error.problem,
            other => panic!("expected {line:?} to be rejected, got {other:?}"),
        }
    }

    fn decode(body: &str) -> (Vec<Sample>, DecodeSummary, LineErrors) {
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let summary = decode_body(body.as_bytes(), NOW_MS, &mut out, &mut errors);
        (out, summary, errors)
    }

    #[test]
    fn a_full_record() {
        let r = record(
            r#"{"name": "http_requests_total", "labels": {"code": "200", "path": "/a\"b"}, "value": 1.5, "timestamp": 1700000000123, "type": "counter"}"#,
        );
        assert_eq!(r.name, "http_requests_total");
        assert_eq!(r.labels.to_string(), "{code=\"200\",path=\"/a\\\"b\"}");
        assert_eq!(r.value, 1.5);
        assert_eq!(r.timestamp_ms, Some(1_700_000_000_123));
        assert_eq!(r.kind, MetricKind::Counter);
        let sample = r.into_sample(NOW_MS);
        assert_eq!(sample.name(), "http_requests_total");
        assert_eq!(sample.timestamp_ms, 1_700_000_000_123);
        assert_eq!(sample.labels.len(), 3);
    }

    #[test]
    fn optional_keys_default_and_null_means_absent() {
        let r = record(r#"{"value": 3, "name": "up"}"#);
        assert_eq!((r.labels.len(), r.timestamp_ms, r.kind), (0, None, MetricKind::Unspecified));
        assert_eq!(r.into_sample(NOW_MS).timestamp_ms, NOW_MS);
        let r = record(r#"{"name": "up", "value": -2, "labels": null, "timestamp": null, "type": null}"#);
        assert_eq!((r.value, r.timestamp_ms), (-2.0, None));
    }

    #[test]
    fn types() {
        for (text, kind) in [
            ("counter", MetricKind::Counter),
            ("gauge", MetricKind::Gauge),
            ("value", MetricKind::Gauge),
            ("Gauge", MetricKind::Gauge),
            ("histogram", MetricKind::Histogram),
            ("summary", MetricKind::Summary),
        ] {
            let line = format!(r#"{{"name": "m", "value": 1, "type": "{text}"}}"#);
            assert_eq!(record(&line).kind, kind, "{text}");
        }
        assert_eq!(problem(r#"{"name": "m", "value": 1, "type": "meter"}"#), Problem::UnknownType("meter".into()));
        assert_eq!(problem(r#"{"name": "m", "value": 1, "type": 1}"#), Problem::InvalidTypeType(JsonKind::Number));
    }

    #[test]
    fn timestamps_in_milliseconds_or_rfc3339() {
        let at = |ts: &str| record(&format!(r#"{{"name": "m", "value": 1, "timestamp": {ts}}}"#)).timestamp_ms;
        assert_eq!(at("-5"), Some(-5));
        assert_eq!(at("1.7e12"), Some(1_700_000_000_000));
        assert_eq!(at(r#""2023-11-14T22:13:20.5Z""#), Some(1_700_000_000_500));
        assert_eq!(at(r#""2023-11-15T00:13:20+02:00""#), Some(1_700_000_000_000));
        let bad = |ts: &str| problem(&format!(r#"{{"name": "m", "value": 1, "timestamp": {ts}}}"#));
        assert!(matches!(bad("1.5"), Problem::InvalidTimestampNumber(_)));
        assert!(matches!(bad("9223372036854775808"), Problem::InvalidTimestampNumber(_)));
        assert!(matches!(bad(r#""yesterday""#), Problem::InvalidTimestampText(_)));
        assert!(matches!(bad("true"), Problem::InvalidTimestampType(JsonKind::Bool)));
    }

    #[test]
    fn rfc3339_forms() {
        let ok = [
            ("1970-01-01T00:00:00Z", 0),
            ("2023-11-14T22:13:20Z", 1_700_000_000_000),
            ("2023-11-14t22:13:20z", 1_700_000_000_000),
            ("2023-11-14 22:13:20Z", 1_700_000_000_000),
            ("2023-11-14T22:13:20.123456789Z", 1_700_000_000_123),
            ("2023-11-14T22:13:20.1Z", 1_700_000_000_100),
            ("2023-11-14T17:13:20-05:00", 1_700_000_000_000),
            ("1969-12-31T23:59:59.5Z", -500),
            ("2024-02-29T00:00:00Z", 1_709_164_800_000),
            ("2000-03-01T00:00:00Z", 951_868_800_000),
            ("1900-01-01T00:00:00Z", -2_208_988_800_000),
            ("2016-12-31T23:59:60Z", 1_483_228_800_000),
        ];
        for (text, ms) in ok {
            assert_eq!(parse_rfc3339_ms(text), Some(ms), "{text}");
        }
        for text in [
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "23-11-14T22:13:20Z",
            "",
        ] {
            assert_eq!(parse_rfc3339_ms(text), None, "{text}");
        }
    }

    #[test]
    fn days_since_epoch_matches_counting_day_by_day() {
        let mut days = 0i64;
        for year in 1970..2200 {
            for month in 1..=12 {
                assert_eq!(days_since_epoch(year, month, 1), days, "{year}-{month}");
                days += i64::from(days_in_month(year, month));
            }
        }
        let mut days = 0i64;
        for year in (1600..1970).rev() {
            for month in (1..=12).rev() {
                days -= i64::from(days_in_month(year, month));
                assert_eq!(days_since_epoch(year, month, 1), days, "{year}-{month}");
            }
        }
    }

    #[test]
    fn rejected_records() {
        assert_eq!(problem("[1, 2]"), Problem::NotAnObject(JsonKind::Array));
        assert_eq!(problem("42"), Problem::NotAnObject(JsonKind::Number));
        assert_eq!(problem(r#""text""#), Problem::NotAnObject(JsonKind::String));
        assert_eq!(problem(r#"{"value": 1}"#), Problem::MissingName);
        assert_eq!(problem(r#"{"name": "m"}"#), Problem::MissingValue);
        assert_eq!(problem(r#"{"name": "", "value": 1}"#), Problem::EmptyName);
        assert_eq!(problem(r#"{"name": 7, "value": 1}"#), Problem::InvalidName(JsonKind::Number));
        assert_eq!(problem(r#"{"name": "m", "value": "1.5"}"#), Problem::NonNumericValue(JsonKind::String));
        assert_eq!(problem(r#"{"name": "m", "value": null}"#), Problem::NonNumericValue(JsonKind::Null));
        assert_eq!(problem(r#"{"name": "m", "value": 1, "timestmp": 5}"#), Problem::UnknownKey("timestmp".into()));
        assert_eq!(problem(r#"{"name": "m", "value": 1, "value": 2}"#), Problem::DuplicateKey("value".into()));
        assert_eq!(
            problem(r#"{"name": "m", "value": 1, "labels": {"a": 1}}"#),
            Problem::LabelNotAString { name: "a".into(), found: JsonKind::Number }
        );
        assert_eq!(
            problem(r#"{"name": "m", "value": 1, "labels": {"a": "x", "a": "y"}}"#),
            Problem::DuplicateLabel("a".into())
        );
        assert_eq!(
            problem(r#"{"name": "m", "value": 1, "labels": {"__name__": "x"}}"#),
            Problem::ReservedLabel("__name__".into())
        );
        assert_eq!(
            problem(r#"{"name": "m", "value": 1, "labels": ["a"]}"#),
            Problem::LabelsNotAnObject(JsonKind::Array)
        );
    }

    #[test]
    fn syntax_errors_name_the_column() {
        let error = parse_line(br#"{"name": "m" "value": 1}"#, 7).unwrap_err();
        assert_eq!(error.position, Position { line: 7, column: Some(14) });
        assert_eq!(error.to_string(), "line 7, column 14: invalid JSON: expected `,` or `}`");
        let error = parse_line(br#"{"name": "m", "value": 1} {}"#, 1).unwrap_err();
        assert!(matches!(error.problem, Problem::Syntax(_)), "{error}");
        let error = parse_line(b"{\"name\": \"\xff\", \"value\": 1}", 1).unwrap_err();
        assert!(matches!(error.problem, Problem::Syntax(_)), "{error}");
    }

    #[test]
    fn a_body_with_blank_crlf_and_bad_lines_is_a_partial_write() {
        let body = "{\"name\": \"a\", \"value\": 1}\r\n\
                    \n\
                    \t \r\n\
                    not json\n\
                    {\"name\": \"b\", \"value\": 2, \"labels\": {\"k\": \"v\"}}\n\
                    {\"name\": \"c\"}";
        let (samples, summary, errors) = decode(body);
        assert_eq!(
            summary,
            DecodeSummary {
                accepted_lines: 2,
                accepted_samples: 2,
                rejected_lines: 2,
                non_numeric: 0,
                ..Default::default()
            }
        );
        let names: Vec<_> = samples.iter().map(|s| s.labels.to_string()).collect();
        assert_eq!(names, ["a{}", "b{k=\"v\"}"]);
        assert!(samples.iter().all(|s| s.timestamp_ms == NOW_MS));
        let reported: Vec<_> = errors.reported().iter().map(|e| (e.line, e.message.as_str())).collect();
        assert_eq!(reported, [(4, "line 4, column 2: invalid JSON: expected ident"), (6, "line 6: missing \"value\"")]);
    }

    fn label_text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', 'Z', '_', '0', ' ', '"', '\\', '\n', '\t', 'é', '✓', '\u{1}']),
            1..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
            let mut out = Vec::new();
            let mut errors = LineErrors::new();
            let summary = decode_body(&body, 0, &mut out, &mut errors);
            prop_assert_eq!(summary.rejected_lines, errors.rejected());
            prop_assert_eq!(summary.accepted_samples as usize, out.len());
        }

        #[test]
        fn json_shaped_bytes_never_panic(
            body in prop::collection::vec(
                prop::sample::select(b"{}[]\":,0123456789.-eE ntrufalsmvyp\\\n\xff".to_vec()),
                0..400,
            )
        ) {
            let mut out = Vec::new();
            let mut errors = LineErrors::new();
            decode_body(&body, 0, &mut out, &mut errors);
        }

        #[test]
        fn rfc3339_text_never_panics(text in "[0-9T:.+Zz -]{0,40}") {
            let _ = parse_rfc3339_ms(&text);
        }

        #[test]
        fn generated_records_round_trip(
            name in label_text(),
            labels in prop::collection::btree_map(label_text(), label_text(), 0..5),
            value in any::<f64>().prop_filter("JSON numbers are finite", |v| v.is_finite()),
            timestamp in prop::option::of(any::<i64>()),
        ) {
            let mut object = serde_json::json!({"name": name, "labels": labels, "value": value});
            if let Some(ts) = timestamp {
                object["timestamp"] = ts.into();
            }
            let line = serde_json::to_string(&object).unwrap();
            let parsed = parse_line(line.as_bytes(), 1);
            let record = match parsed {
                Ok(Some(record)) => record,
                other => return Err(TestCaseError::fail(format!("{line}: {other:?}"))),
            };
            prop_assert_eq!(record.name.as_str(), name.as_str());
            let got: Vec<(String, String)> =
                record.labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
            let want: Vec<(String, String)> = labels.into_iter().collect();
            prop_assert_eq!(got, want);
            // Exact, subnormals included (serde_json's `float_roundtrip`).
            prop_assert_eq!(record.value.to_bits(), value.to_bits());
            prop_assert_eq!(record.timestamp_ms, timestamp);
        }
    }

    #[test]
    fn repeated_labels_are_found_among_many_without_a_quadratic_scan() {
        let labels: String = (0..50_000).map(|i| format!("\"l{i}\": \"v\", ")).collect();
        let line = format!(r#"{{"name": "m", "value": 1, "labels": {{{labels}"l49999": "again"}}}}"#);
        assert_eq!(problem(&line), Problem::DuplicateLabel("l49999".into()));
        let line = format!(r#"{{"name": "m", "value": 1, "labels": {{{labels}"last": "x"}}}}"#);
        assert_eq!(record(&line).labels.len(), 50_001);
    }

    proptest! {
        #[test]
        fn duplicate_names_match_a_naive_scan(names in proptest::collection::vec("[a-c]{1,2}", 0..40)) {
            let labels: Labels = names.iter().map(|n| (n.as_str(), "v")).collect();
            let naive = names.iter().enumerate().any(|(i, n)| names[..i].contains(n));
            prop_assert_eq!(duplicate_name(&labels).is_some(), naive);
        }
    }

    #[test]
    fn limits_refuse_records_with_their_reason() {
        let limits = DecodeLimits {
            max_samples: 3,
            max_fields_per_line: 1,
            max_labels: 2,
            max_name_length: 8,
            max_label_value_length: 3,
            max_past_ms: 1_000,
            max_future_ms: 1_000,
            reject_invalid_names: false,
            static_labels: Vec::new().into(),
        };
        let body = concat!(
            r#"{"name": "ok", "labels": {"a": "1", "b": "2", "empty": ""}, "value": 1}"#,
            "\n",
            r#"{"name": "m", "labels": {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}, "value": 1}"#,
            "\n",
            r#"{"name": "m", "labels": {"a": "1234"}, "value": 1}"#,
            "\n",
            r#"{"name": "much_too_long", "value": 1}"#,
            "\n",
            r#"{"name": "m", "value": 1, "timestamp": -9223372036854775808}"#,
            "\n",
            r#"{"name": "m", "value": 1, "timestamp": 1700000000500}"#,
            "\n",
        );
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let s = decode_body_limited(body.as_bytes(), NOW_MS, &limits, &mut out, &mut errors);
        assert_eq!(out.len(), 2);
        assert_eq!((s.rejected_lines, s.refused_lines, s.unparsable_lines()), (4, 4, 0));
        assert_eq!(s.refused.get(DropReason::TooManyLabels), 1);
        assert_eq!(s.refused.get(DropReason::LabelValueTooLong), 1);
        assert_eq!(s.refused.get(DropReason::InvalidName), 1);
        assert_eq!(s.refused.get(DropReason::TimestampOutOfWindow), 1);
        assert!(errors.reported()[0].message.starts_with("line 2: 5 labels"), "{:?}", errors.reported());
        let many: String = (0..5).map(|_| "{\"name\": \"m\", \"value\": 1}\n").collect();
        let s = decode_body_limited(many.as_bytes(), NOW_MS, &limits, &mut Vec::new(), &mut LineErrors::new());
        assert!(s.over_sample_limit);
    }
}
