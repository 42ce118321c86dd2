//! InfluxDB line protocol, as accepted by `POST /write` and `POST /api/v2/write`.
//!
//! Two layers:
//! 1. [`LineParser`] / [`parse_line`]: a typed parser that borrows from the body wherever a
//!    token has no escapes. It decides validity exactly as the InfluxData reference decoder
//!    does (the conformance corpus in `shared/conformance/` is the judge).
//! 2. [`decode_body`]: turns the points of a body into [`Sample`]s (one per numeric field),
//!    collecting per-line errors for the partial-write answer.
//!
//! The shared result types of both HTTP decoders ([`DecodeSummary`], [`LineErrors`],
//! [`ReportedError`]) live here too, so that the NDJSON decoder reports the same way.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use memchr::{memchr, memchr2};

use crate::model::{LabelStr, Labels, METRIC_NAME_LABEL, MetricKind, Sample};

/// How many error messages a decode keeps for the answer; every rejected line is still counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// Longest excerpt of offending input quoted in an error message, in bytes.
const MAX_EXCERPT_BYTES: usize = 48;

// ---------------------------------------------------------------------------------------------
// Precision
// ---------------------------------------------------------------------------------------------

/// The unit of the timestamps in a body (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    #[default]
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
}

/// A `precision` value that is none of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: expected one of n, ns, u, us, µs, ms, s, m, h")]
pub struct UnknownPrecision(pub String);

impl Precision {
    /// Nanoseconds in one unit of this precision.
    pub const fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanosecond => 1,
            Precision::Microsecond => 1_000,
            Precision::Millisecond => 1_000_000,
            Precision::Second => 1_000_000_000,
            Precision::Minute => 60_000_000_000,
            Precision::Hour => 3_600_000_000_000,
        }
    }

    /// A timestamp in this precision as nanoseconds, or `None` if that overflows an `i64`.
    pub fn to_nanos(self, timestamp: i64) -> Option<i64> {
        timestamp.checked_mul(self.nanos_per_unit())
    }

    /// Rounds `nanos` down to a whole number of units. A line without a timestamp gets the
    /// default time truncated this way, as the reference decoder does.
    pub fn truncate(self, nanos: i64) -> i64 {
        nanos - nanos.rem_euclid(self.nanos_per_unit())
    }
}

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "n" | "ns" => Precision::Nanosecond,
            "u" | "us" | "µs" => Precision::Microsecond,
            "ms" => Precision::Millisecond,
            "s" => Precision::Second,
            "m" => Precision::Minute,
            "h" => Precision::Hour,
            other => return Err(UnknownPrecision(other.to_owned())),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The typed point
// ---------------------------------------------------------------------------------------------

/// One entry of a body. Strings borrow from the body unless they contained escapes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Point<'a> {
    pub measurement: Cow<'a, str>,
    /// In the order given; keys are unique (a duplicate key rejects the line).
    pub tags: Vec<Tag<'a>>,
    /// In the order given; at least one. Keys may repeat, as in the reference decoder.
    pub fields: Vec<Field<'a>>,
    /// Nanoseconds since the Unix epoch (the body's precision already applied), or `None`
    /// when the line had no timestamp.
    pub timestamp_ns: Option<i64>,
}

impl Point<'_> {
    /// Empties the point, keeping the capacity of its vectors for the next line.
    pub fn clear(&mut self) {
        self.measurement = Cow::Borrowed("");
        self.tags.clear();
        self.fields.clear();
        self.timestamp_ns = None;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    pub key: Cow<'a, str>,
    pub value: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field<'a> {
    pub key: Cow<'a, str>,
    pub value: FieldValue<'a>,
}

/// A typed field value. Floats are always finite.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    String(Cow<'a, str>),
    Bool(bool),
}

impl FieldValue<'_> {
    /// The value as a sample value; `None` for strings, which are not samples.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Int(v) => Some(v as f64),
            FieldValue::UInt(v) => Some(v as f64),
            FieldValue::Bool(v) => Some(if v { 1.0 } else { 0.0 }),
            FieldValue::String(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a line was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {problem}")]
pub struct LineError {
    pub position: Position,
    pub problem: Problem,
}

impl LineError {
    /// The 1-based line of the body the problem is on.
    pub fn line(&self) -> usize {
        self.position.line
    }
}

/// A place in a body: 1-based line and, where one applies, 1-based byte column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "line {}, column {column}", self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// The byte found where something else was expected, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found(pub Option<u8>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(b'\n') => f.write_str("end of line"),
            Some(b'\r') => f.write_str("a carriage return"),
            Some(b' ') => f.write_str("a space"),
            Some(b'\t') => f.write_str("a tab"),
            Some(c) if c.is_ascii_graphic() => write!(f, "'{}'", c as char),
            Some(c) => write!(f, "byte 0x{c:02x}"),
        }
    }
}

/// Which part of a line a token is, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Measurement,
    TagKey,
    TagValue,
    FieldKey,
    StringValue,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Measurement => "measurement name",
            Part::TagKey => "tag key",
            Part::TagValue => "tag value",
            Part::FieldKey => "field key",
            Part::StringValue => "string field value",
        })
    }
}

/// The type a field value was written as, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Float,
    Integer,
    Unsigned,
    Boolean,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Float => "float",
            ValueType::Integer => "integer",
            ValueType::Unsigned => "unsigned integer",
            ValueType::Boolean => "boolean",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("no measurement name found")]
    MissingMeasurement,
    #[error("invalid character {0} at the start of the measurement name")]
    MeasurementStart(Found),
    #[error("invalid character {0} in a comment line (comments may hold printable characters only)")]
    CommentCharacter(Found),
    #[error("a carriage return must be followed by a line feed")]
    LoneCarriageReturn,
    #[error("expected ',' and tags or a space and fields after the {after}, found {found}")]
    ExpectedTagsOrFields { after: Part, found: Found },
    #[error("expected a tag key after ',', found {0}")]
    ExpectedTagKey(Found),
    #[error("expected '=' after tag key {key:?}, found {found}")]
    ExpectedTagEquals { key: String, found: Found },
    #[error("expected a value after tag key {key:?}, found {found}")]
    EmptyTagValue { key: String, found: Found },
    #[error("tag key {0:?} appears more than once")]
    DuplicateTag(String),
    #[error("tag key {0:?} is reserved for the metric name")]
    ReservedTagKey(String),
    #[error("expected a field key, found {0}")]
    ExpectedFieldKey(Found),
    #[error("expected '=' after field key {key:?}, found {found}")]
    ExpectedFieldEquals { key: String, found: Found },
    #[error("expected a value for field {key:?}, found {found}")]
    MissingFieldValue { key: String, found: Found },
    #[error(
        "the value of field {key:?} has an unrecognized type: it starts with {found} \
         (expected a number, t/true/f/false or a double-quoted string)"
    )]
    UnknownFieldType { key: String, found: Found },
    #[error("invalid {kind} value {text:?} for field {key:?}")]
    InvalidFieldValue { key: String, kind: ValueType, text: String },
    #[error("{kind} value {text:?} for field {key:?} is out of range")]
    FieldValueOutOfRange { key: String, kind: ValueType, text: String },
    #[error("string value of field {key:?} has no closing '\"'")]
    UnterminatedString { key: String },
    #[error("unexpected {found} after the value of field {key:?} (expected ',', a space or end of line)")]
    AfterField { key: String, found: Found },
    #[error("invalid timestamp {0:?} (expected an integer)")]
    InvalidTimestamp(String),
    #[error("timestamp {text:?} does not fit in 64-bit nanoseconds at precision {precision:?}")]
    TimestampOutOfRange { text: String, precision: Precision },
    #[error("unexpected text after the timestamp: {0:?}")]
    AfterTimestamp(String),
    #[error("invalid UTF-8 in the {0}")]
    InvalidUtf8(Part),
    #[error("unexpected data after the end of the line")]
    TrailingData,
}

/// Quotes a piece of input in a message: lossy UTF-8, cut to a bounded length.
fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push('…');
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Byte classes
// ---------------------------------------------------------------------------------------------

/// Bytes that may appear unescaped in a measurement name.
const MEASUREMENT: u8 = 1;
/// Bytes that may appear unescaped in a tag key, tag value or field key.
const KEY: u8 = 1 << 1;
/// Bytes a non-string field value is taken from (it ends at ',', space, CR or LF).
const FIELD_VALUE: u8 = 1 << 2;
/// Bytes allowed in a comment line.
const COMMENT: u8 = 1 << 3;
/// Bytes a timestamp is taken from.
const TIMESTAMP: u8 = 1 << 4;
/// Bytes that a backslash escapes in a measurement name.
const MEASUREMENT_ESCAPABLE: u8 = 1 << 5;
/// Bytes that a backslash escapes in tag keys, tag values and field keys.
const KEY_ESCAPABLE: u8 = 1 << 6;

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let control = c < 0x20 || c == 0x7f;
        let mut class = 0;
        // The backslash is left out of the token classes so that the fast scan stops at it.
        if !control && c != b',' && c != b' ' && c != b'\\' {
            class |= MEASUREMENT;
            if c != b'=' {
                class |= KEY;
            }
        }
        if c != b',' && c != b' ' && c != b'\r' && c != b'\n' {
            class |= FIELD_VALUE;
        }
        if !control {
            class |= COMMENT;
        }
        if c == b'-' || c.is_ascii_digit() {
            class |= TIMESTAMP;
        }
        // `\\` is one backslash (InfluxDB 2.x), so a name may end in a backslash before a
        // separator; the sinks' encoder writes it that way (found by fuzzing the round trip).
        if c == b' ' || c == b',' || c == b'\\' {
            class |= MEASUREMENT_ESCAPABLE | KEY_ESCAPABLE;
        }
        if c == b'=' {
            class |= KEY_ESCAPABLE;
        }
        table[i] = class;
        i += 1;
    }
    table
}

static CLASSES: [u8; 256] = byte_classes();

#[inline(always)]
fn is(class: u8, c: u8) -> bool {
    CLASSES[c as usize] & class != 0
}

/// What a backslash followed by `c` stands for inside a string field value, if anything.
#[inline]
fn string_escape(c: u8) -> Option<u8> {
    match c {
        b'\\' => Some(b'\\'),
        b'"' => Some(b'"'),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberError {
    Syntax,
    Range,
}

fn parse_u64(digits: &[u8]) -> Result<u64, NumberError> {
    if digits.is_empty() {
        return Err(NumberError::Syntax);
    }
    // Up to 19 decimal digits always fit in a u64: no overflow checks on the common path,
    // and eight digits at a time (nanosecond timestamps have 19).
    if digits.len() <= 19 {
        let mut value: u64 = 0;
        let mut rest = digits;
        while let Some((chunk, tail)) = rest.split_first_chunk::<8>() {
            value = value * 100_000_000 + u64::from(eight_digits(*chunk)?);
            rest = tail;
        }
        for &c in rest {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Err(NumberError::Syntax);
            }
            value = value * 10 + u64::from(d);
        }
        return Ok(value);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumberError::Syntax);
        }
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow { Err(NumberError::Range) } else { Ok(value) }
}

/// The value of eight ASCII digits, checked and combined in a few word operations.
#[inline(always)]
fn eight_digits(chunk: [u8; 8]) -> Result<u32, NumberError> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let word = u64::from_le_bytes(chunk);
    // A byte below '0' sets its top bit when '0' is subtracted; a byte above '9' sets it when
    // 0x46 is added (0x3a + 0x46 = 0x80); bytes ≥ 0x80 set it in the sum as well.
    let below = word.wrapping_sub(ONES * u64::from(b'0'));
    let above = word.wrapping_add(ONES * 0x46);
    if (below | above) & (ONES * 0x80) != 0 {
        return Err(NumberError::Syntax);
    }
    // Pairwise combine digits into 2-, 4- and then 8-digit numbers (first byte is the most
    // significant digit).
    let pairs = (below.wrapping_mul(10) + (below >> 8)) & 0x00ff_00ff_00ff_00ff;
    let quads = (pairs.wrapping_mul(100) + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Ok(((quads.wrapping_mul(10_000) + (quads >> 32)) & 0xffff_ffff) as u32)
}

fn parse_i64(text: &[u8]) -> Result<i64, NumberError> {
    match text.split_first() {
        Some((b'-', digits)) => {
            let magnitude = parse_u64(digits)?;
            if magnitude > i64::MAX as u64 + 1 {
                return Err(NumberError::Range);
            }
            Ok((magnitude as i64).wrapping_neg())
        }
        _ => i64::try_from(parse_u64(text)?).map_err(|_| NumberError::Range),
    }
}

/// Powers of ten that an f64 holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a decimal float: `-? digits? (. digits?)? ([eE] [+-]? digits)?` with at least one
/// mantissa digit. Non-finite results are out of range.
fn parse_f64(text: &[u8]) -> Result<f64, NumberError> {
    let len = text.len();
    let mut i = 0;
    let negative = text.first() == Some(&b'-');
    if negative {
        i = 1;
    }
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    while i < len && text[i].is_ascii_digit() {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(text[i] - b'0'));
        digits += 1;
        i += 1;
    }
    let mut fraction_digits = 0usize;
    if i < len && text[i] == b'.' {
        i += 1;
        while i < len && text[i].is_ascii_digit() {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(text[i] - b'0'));
            fraction_digits += 1;
            i += 1;
        }
    }
    if digits + fraction_digits == 0 {
        return Err(NumberError::Syntax);
    }
    let mut exponent: i64 = 0;
    if i < len && (text[i] | 0x20) == b'e' {
        i += 1;
        let exponent_negative = match text.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < len && text[i].is_ascii_digit() {
            if exponent < 1_000_000 {
                exponent = exponent * 10 + i64::from(text[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err(NumberError::Syntax);
        }
        if exponent_negative {
            exponent = -exponent;
        }
    }
    if i != len {
        return Err(NumberError::Syntax);
    }
    // Exact mantissa and an exact power of ten: one correctly rounded operation (Clinger).
    let scale = exponent - fraction_digits as i64;
    if digits + fraction_digits <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&scale) {
        let m = mantissa as f64;
        let v = if scale >= 0 {
            m * EXACT_POWERS_OF_TEN[scale as usize]
        } else {
            m / EXACT_POWERS_OF_TEN[(-scale) as usize]
        };
        return Ok(if negative { -v } else { v });
    }
    let ascii = std::str::from_utf8(text).map_err(|_| NumberError::Syntax)?;
    let v: f64 = ascii.parse().map_err(|_| NumberError::Syntax)?;
    if v.is_finite() { Ok(v) } else { Err(NumberError::Range) }
}

fn parse_bool(text: &[u8]) -> Option<bool> {
    match text {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------------------------------

/// Parses the entries of a body one after the other. After a bad entry it resumes at the next
/// line, so one call site sees every line's outcome.
///
/// As an [`Iterator`] it yields `(line, result)` with owned vectors per point; the hot path
/// is [`LineParser::next_into`], which refills one [`Point`] and so allocates nothing for
/// lines without escapes.
pub struct LineParser<'a> {
    bytes: &'a [u8],
    /// The whole body as text when it is valid UTF-8: tokens are then sliced from it without
    /// validating them again.
    text: Option<&'a str>,
    precision: Precision,
    pos: usize,
    /// 1-based line number at `pos`.
    line: usize,
    /// Offset of the first byte of the line `pos` is on.
    line_start: usize,
}

impl<'a> LineParser<'a> {
    pub fn new(body: &'a [u8], precision: Precision) -> Self {
        LineParser { bytes: body, text: std::str::from_utf8(body).ok(), precision, pos: 0, line: 1, line_start: 0 }
    }

    /// Parses the next entry into `point`. Returns `None` when the body is exhausted, else
    /// the 1-based line the entry starts on and whether it was valid (on error, `point`
    /// holds whatever had been parsed and must not be used).
    pub fn next_into(&mut self, point: &mut Point<'a>) -> Option<(usize, Result<(), LineError>)> {
        point.clear();
        match self.skip_blank_lines() {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                self.skip_rest_of_line();
                return Some((error.line(), Err(error)));
            }
        }
        let line = self.line;
        match self.parse_entry(point) {
            Ok(()) => Some((line, Ok(()))),
            Err(error) => {
                self.skip_rest_of_line();
                Some((line, Err(error)))
            }
        }
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error_at(&self, at: usize, problem: Problem) -> LineError {
        LineError {
            position: Position { line: self.line, column: Some(at.saturating_sub(self.line_start) + 1) },
            problem,
        }
    }

    fn found(&self) -> Found {
        Found(self.peek())
    }

    fn new_line_at(&mut self, next_line_start: usize) {
        self.line += 1;
        self.line_start = next_line_start;
    }

    /// Error recovery: drop everything up to and including the next line feed.
    fn skip_rest_of_line(&mut self) {
        match memchr(b'\n', &self.bytes[self.pos.min(self.bytes.len())..]) {
            Some(offset) => {
                self.pos += offset + 1;
                self.new_line_at(self.pos);
            }
            None => self.pos = self.bytes.len(),
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    /// Consumes an end of line (LF, CR LF, or a CR that ends the input) or recognizes the end
    /// of input. Returns false, consuming nothing, when neither is next.
    fn take_end_of_line(&mut self) -> bool {
        match self.peek() {
            None => true,
            Some(b'\n') => {
                self.pos += 1;
                self.new_line_at(self.pos);
                true
            }
            Some(b'\r') => match self.bytes.get(self.pos + 1) {
                None => {
                    self.pos += 1;
                    true
                }
                Some(b'\n') => {
                    self.pos += 2;
                    self.new_line_at(self.pos);
                    true
                }
                Some(_) => false,
            },
            Some(_) => false,
        }
    }

    /// Skips blank lines, leading spaces and comment lines. Ok(true) when an entry starts at
    /// `pos`, Ok(false) at the end of the body.
    fn skip_blank_lines(&mut self) -> Result<bool, LineError> {
        loop {
            self.skip_spaces();
            match self.peek() {
                None => return Ok(false),
                Some(b'\n' | b'\r') => {
                    if !self.take_end_of_line() {
                        return Err(self.error_at(self.pos, Problem::LoneCarriageReturn));
                    }
                }
                Some(b'#') => {
                    self.pos += 1;
                    while self.pos < self.bytes.len() && is(COMMENT, self.bytes[self.pos]) {
                        self.pos += 1;
                    }
                    if !self.take_end_of_line() {
                        return Err(self.error_at(self.pos, Problem::CommentCharacter(self.found())));
                    }
                }
                Some(_) => return Ok(true),
            }
        }
    }

    /// Takes a run of bytes in `class`, where a backslash before a byte in `escapable` makes
    /// that byte part of the token and any other backslash stands for itself. Returns the
    /// raw range and whether it contains escapes.
    #[inline(always)]
    fn scan_escaped(&mut self, class: u8, escapable: u8) -> (usize, usize, bool) {
        let bytes = self.bytes;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            while i < bytes.len() && is(class, bytes[i]) {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b'\\' {
                if i + 1 < bytes.len() && is(escapable, bytes[i + 1]) {
                    escaped = true;
                    i += 2;
                } else {
                    i += 1;
                }
                continue;
            }
            break;
        }
        self.pos = i;
        (start, i, escaped)
    }

    /// The text of `start..end` without re-validating UTF-8 when the body is known valid.
    #[inline(always)]
    fn slice_str(&self, start: usize, end: usize) -> Option<&'a str> {
        match self.text {
            Some(text) => text.get(start..end),
            None => std::str::from_utf8(&self.bytes[start..end]).ok(),
        }
    }

    /// The token `start..end`, borrowed when it has no escapes, else unescaped into a String.
    #[inline(always)]
    fn token(
        &self,
        start: usize,
        end: usize,
        escaped: bool,
        escapable: u8,
        part: Part,
    ) -> Result<Cow<'a, str>, LineError> {
        if !escaped && let Some(text) = self.slice_str(start, end) {
            return Ok(Cow::Borrowed(text));
        }
        self.unescaped_token(start, end, escaped, escapable, part)
    }

    /// The uncommon half of [`Self::token`]: unescaping, or reporting invalid UTF-8.
    #[cold]
    #[inline(never)]
    fn unescaped_token(
        &self,
        start: usize,
        end: usize,
        escaped: bool,
        escapable: u8,
        part: Part,
    ) -> Result<Cow<'a, str>, LineError> {
        let invalid = || self.error_at(start, Problem::InvalidUtf8(part));
        let raw = &self.bytes[start..end];
        if !escaped {
            return Err(invalid());
        }
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let c = raw[i];
            if c == b'\\' && i + 1 < raw.len() && is(escapable, raw[i + 1]) {
                out.push(raw[i + 1]);
                i += 2;
            } else {
                out.push(c);
                i += 1;
            }
        }
        String::from_utf8(out).map(Cow::Owned).map_err(|_| invalid())
    }

    fn parse_entry(&mut self, point: &mut Point<'a>) -> Result<(), LineError> {
        let (start, end, escaped) = self.scan_escaped(MEASUREMENT, MEASUREMENT_ESCAPABLE);
        if start == end {
            let problem = match self.peek() {
                None => Problem::MissingMeasurement,
                Some(c) => Problem::MeasurementStart(Found(Some(c))),
            };
            return Err(self.error_at(start, problem));
        }
        point.measurement = self.token(start, end, escaped, MEASUREMENT_ESCAPABLE, Part::Measurement)?;
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.parse_tags(point)?;
            }
            Some(b' ') => {}
            found => {
                return Err(self.error_at(
                    self.pos,
                    Problem::ExpectedTagsOrFields { after: Part::Measurement, found: Found(found) },
                ));
            }
        }
        self.skip_spaces();
        if self.parse_fields(point)? {
            self.parse_timestamp(point)?;
        }
        Ok(())
    }

    /// Parses `key=value` pairs after a comma, up to the space before the fields.
    fn parse_tags(&mut self, point: &mut Point<'a>) -> Result<(), LineError> {
        loop {
            // A comma must be followed by a tag key, not by white space or the end.
            if matches!(self.peek(), None | Some(b' ' | b'\r' | b'\n')) {
                return Err(self.error_at(self.pos, Problem::ExpectedTagKey(self.found())));
            }
            let (start, end, escaped) = self.scan_escaped(KEY, KEY_ESCAPABLE);
            if start == end {
                return Err(self.error_at(start, Problem::ExpectedTagKey(self.found())));
            }
            let key = self.token(start, end, escaped, KEY_ESCAPABLE, Part::TagKey)?;
            if self.peek() != Some(b'=') {
                let problem = Problem::ExpectedTagEquals { key: key.into_owned(), found: self.found() };
                return Err(self.error_at(self.pos, problem));
            }
            self.pos += 1;
            let (start, end, escaped) = self.scan_escaped(KEY, KEY_ESCAPABLE);
            if start == end {
                let problem = Problem::EmptyTagValue { key: key.into_owned(), found: self.found() };
                return Err(self.error_at(start, problem));
            }
            let value = self.token(start, end, escaped, KEY_ESCAPABLE, Part::TagValue)?;
            point.tags.push(Tag { key, value });
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b' ') => break,
                found => {
                    return Err(self.error_at(
                        self.pos,
                        Problem::ExpectedTagsOrFields { after: Part::TagValue, found: Found(found) },
                    ));
                }
            }
        }
        if let Some(key) = duplicate_tag_key(&point.tags) {
            return Err(self.error_at(self.pos, Problem::DuplicateTag(key.to_owned())));
        }
        Ok(())
    }

    /// Parses the fields. Returns true when a timestamp may follow, false when the entry has
    /// ended (its end of line consumed).
    fn parse_fields(&mut self, point: &mut Point<'a>) -> Result<bool, LineError> {
        loop {
            let (start, end, escaped) = self.scan_escaped(KEY, KEY_ESCAPABLE);
            if start == end {
                return Err(self.error_at(start, Problem::ExpectedFieldKey(self.found())));
            }
            let key = self.token(start, end, escaped, KEY_ESCAPABLE, Part::FieldKey)?;
            if self.peek() != Some(b'=') {
                let problem = Problem::ExpectedFieldEquals { key: key.into_owned(), found: self.found() };
                return Err(self.error_at(self.pos, problem));
            }
            self.pos += 1;
            let value = self.parse_field_value(&key)?;
            match self.peek() {
                None => {
                    point.fields.push(Field { key, value });
                    return Ok(false);
                }
                Some(b',') => self.pos += 1,
                Some(b' ' | b'\r' | b'\n') => {
                    self.skip_spaces();
                    point.fields.push(Field { key, value });
                    return Ok(!self.take_end_of_line());
                }
                found => {
                    let problem = Problem::AfterField { key: key.into_owned(), found: Found(found) };
                    return Err(self.error_at(self.pos, problem));
                }
            }
            point.fields.push(Field { key, value });
        }
    }

    fn parse_field_value(&mut self, key: &str) -> Result<FieldValue<'a>, LineError> {
        let start = self.pos;
        let kind = match self.peek() {
            found @ (None | Some(b' ' | b',' | b'\r' | b'\n')) => {
                let problem = Problem::MissingFieldValue { key: key.to_owned(), found: Found(found) };
                return Err(self.error_at(start, problem));
            }
            Some(b'"') => return self.parse_string_value(key),
            Some(b't' | b'T' | b'f' | b'F') => ValueType::Boolean,
            Some(b'-' | b'.' | b'0'..=b'9') => ValueType::Float,
            Some(c) => {
                let problem = Problem::UnknownFieldType { key: key.to_owned(), found: Found(Some(c)) };
                return Err(self.error_at(start, problem));
            }
        };
        let bytes = self.bytes;
        let mut end = start;
        while end < bytes.len() && is(FIELD_VALUE, bytes[end]) {
            end += 1;
        }
        self.pos = end;
        let text = &bytes[start..end];
        let (kind, result) = match (kind, text.last()) {
            (ValueType::Boolean, _) => (kind, parse_bool(text).map(FieldValue::Bool).ok_or(NumberError::Syntax)),
            (_, Some(b'i')) => (ValueType::Integer, parse_i64(&text[..text.len() - 1]).map(FieldValue::Int)),
            (_, Some(b'u')) => (ValueType::Unsigned, parse_u64(&text[..text.len() - 1]).map(FieldValue::UInt)),
            _ => (ValueType::Float, parse_f64(text).map(FieldValue::Float)),
        };
        result.map_err(|error| {
            let key = key.to_owned();
            let text = excerpt(text);
            let problem = match error {
                NumberError::Syntax => Problem::InvalidFieldValue { key, kind, text },
                NumberError::Range => Problem::FieldValueOutOfRange { key, kind, text },
            };
            self.error_at(start, problem)
        })
    }

    /// A double-quoted string value; it may span lines.
    fn parse_string_value(&mut self, key: &str) -> Result<FieldValue<'a>, LineError> {
        let quote = self.pos;
        let bytes = self.bytes;
        let start = quote + 1;
        let mut i = start;
        let mut escaped = false;
        let end = loop {
            match memchr2(b'"', b'\\', &bytes[i..]) {
                None => {
                    // Resume after the opening quote, so the lines after it still count.
                    self.pos = start;
                    let problem = Problem::UnterminatedString { key: key.to_owned() };
                    return Err(self.error_at(quote, problem));
                }
                Some(offset) => {
                    let at = i + offset;
                    if bytes[at] == b'"' {
                        break at;
                    }
                    if at + 1 < bytes.len() && string_escape(bytes[at + 1]).is_some() {
                        escaped = true;
                        i = at + 2;
                    } else {
                        i = at + 1;
                    }
                }
            }
        };
        let invalid_utf8 = self.error_at(start, Problem::InvalidUtf8(Part::StringValue));
        self.pos = end + 1;
        let raw = &bytes[start..end];
        if let Some(last_newline) = memchr::memrchr(b'\n', raw) {
            self.line += memchr::memchr_iter(b'\n', raw).count();
            self.line_start = start + last_newline + 1;
        }
        let value = if escaped {
            let mut out = Vec::with_capacity(raw.len());
            let mut j = 0;
            while j < raw.len() {
                match (raw[j], raw.get(j + 1).copied().and_then(string_escape)) {
                    (b'\\', Some(unescaped)) => {
                        out.push(unescaped);
                        j += 2;
                    }
                    (c, _) => {
                        out.push(c);
                        j += 1;
                    }
                }
            }
            Cow::Owned(String::from_utf8(out).map_err(|_| invalid_utf8)?)
        } else {
            Cow::Borrowed(self.slice_str(start, end).ok_or(invalid_utf8)?)
        };
        Ok(FieldValue::String(value))
    }

    /// The optional timestamp and the end of the line; `pos` is just after the fields' spaces.
    fn parse_timestamp(&mut self, point: &mut Point<'a>) -> Result<(), LineError> {
        let bytes = self.bytes;
        let start = self.pos;
        let mut end = start;
        while end < bytes.len() && is(TIMESTAMP, bytes[end]) {
            end += 1;
        }
        self.pos = end;
        if !matches!(self.peek(), None | Some(b' ' | b'\r' | b'\n')) {
            let line_end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |k| start + k);
            let problem = Problem::InvalidTimestamp(excerpt(&bytes[start..line_end]));
            return Err(self.error_at(start, problem));
        }
        if start < end {
            let text = &bytes[start..end];
            let nanos = match parse_i64(text) {
                Ok(timestamp) => self.precision.to_nanos(timestamp),
                Err(NumberError::Range) => None,
                Err(NumberError::Syntax) => {
                    return Err(self.error_at(start, Problem::InvalidTimestamp(excerpt(text))));
                }
            };
            match nanos {
                Some(nanos) => point.timestamp_ns = Some(nanos),
                None => {
                    let problem = Problem::TimestampOutOfRange { text: excerpt(text), precision: self.precision };
                    return Err(self.error_at(start, problem));
                }
            }
        }
        self.skip_spaces();
        if !self.take_end_of_line() {
            let rest = self.pos;
            if self.peek() == Some(b'\r') {
                return Err(self.error_at(rest, Problem::LoneCarriageReturn));
            }
            let line_end = memchr(b'\n', &bytes[rest..]).map_or(bytes.len(), |k| rest + k);
            let problem = Problem::AfterTimestamp(excerpt(&bytes[rest..line_end]));
            return Err(self.error_at(rest, problem));
        }
        Ok(())
    }
}

impl<'a> Iterator for LineParser<'a> {
    type Item = (usize, Result<Point<'a>, LineError>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut point = Point::default();
        let (line, result) = self.next_into(&mut point)?;
        Some((line, result.map(|()| point)))
    }
}

/// The first tag key that appears twice, if any.
fn duplicate_tag_key<'t>(tags: &'t [Tag<'_>]) -> Option<&'t str> {
    // Lines have few tags: a quadratic scan beats sorting and needs no allocation.
    const QUADRATIC_LIMIT: usize = 32;
    if tags.len() <= QUADRATIC_LIMIT {
        for (i, tag) in tags.iter().enumerate() {
            if tags[..i].iter().any(|earlier| earlier.key == tag.key) {
                return Some(&tag.key);
            }
        }
        return None;
    }
    let mut keys: Vec<&str> = tags.iter().map(|t| t.key.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).find(|pair| pair[0] == pair[1]).map(|pair| pair[0])
}

/// Parses a single line (one entry, optionally followed by its line ending). Blank and
/// comment lines give `Ok(None)`.
pub fn parse_line(line: &[u8], precision: Precision) -> Result<Option<Point<'_>>, LineError> {
    let mut parser = LineParser::new(line, precision);
    let mut point = Point::default();
    match parser.next_into(&mut point) {
        None => Ok(None),
        Some((_, Err(error))) => Err(error),
        Some((_, Ok(()))) => match parser.skip_blank_lines() {
            Ok(false) => Ok(Some(point)),
            Ok(true) | Err(_) => Err(parser.error_at(parser.pos, Problem::TrailingData)),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Conversion to samples, and the report shared with the NDJSON decoder
// ---------------------------------------------------------------------------------------------

/// What one body decoded to, for the receiver's accounting and its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeSummary {
    /// Lines that were valid (their samples, if any, were appended).
    pub accepted_lines: u64,
    /// Samples appended to the output.
    pub accepted_samples: u64,
    /// Lines rejected with an error.
    pub rejected_lines: u64,
    /// Values of accepted lines that are not numbers (line-protocol string fields); they are
    /// dropped with reason `non_numeric`.
    pub non_numeric: u64,
}

/// One error as reported to the sender: `{"line": L, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportedError {
    pub line: usize,
    pub message: String,
}

/// The rejected lines of one request: all are counted, the first [`MAX_REPORTED_ERRORS`]
/// keep their message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineErrors {
    rejected: u64,
    reported: Vec<ReportedError>,
}

impl LineErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts a rejected line; the message is only built while there is room for it.
    pub fn record(&mut self, line: usize, message: impl FnOnce() -> String) {
        self.rejected += 1;
        if self.reported.len() < MAX_REPORTED_ERRORS {
            self.reported.push(ReportedError { line, message: message() });
        }
    }

    /// Every rejected line, reported or not.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The first errors, in body order.
    pub fn reported(&self) -> &[ReportedError] {
        &self.reported
    }

    pub fn is_empty(&self) -> bool {
        self.rejected == 0
    }

    pub fn clear(&mut self) {
        self.rejected = 0;
        self.reported.clear();
    }
}

/// Decodes a line-protocol body into samples appended to `out`.
///
/// Each integer, unsigned, float or boolean field becomes a sample named
/// `<measurement>_<field>` (field `value`: just `<measurement>`), labelled with the tags;
/// booleans are 0/1. String fields are counted in [`DecodeSummary::non_numeric`]. A line
/// without a timestamp gets `default_time_ns` (truncated to the precision). Bad lines are
/// recorded in `errors` and skipped; the other lines are kept (partial write).
pub fn decode_body(
    body: &[u8],
    precision: Precision,
    default_time_ns: i64,
    out: &mut Vec<Sample>,
    errors: &mut LineErrors,
) -> DecodeSummary {
    let default_ns = precision.truncate(default_time_ns);
    let mut parser = LineParser::new(body, precision);
    let mut point = Point::default();
    let mut summary = DecodeSummary::default();
    // One sample a line is the usual case: reserving for it spares the
    // vector's regrowth, which copied every sample and faulted in fresh pages.
    out.reserve(memchr::memchr_iter(b'\n', body).count() + 1);
    while let Some((line, result)) = parser.next_into(&mut point) {
        let outcome = result.and_then(|()| {
            if let Some(tag) = point.tags.iter().find(|t| t.key == METRIC_NAME_LABEL) {
                let problem = Problem::ReservedTagKey(tag.key.to_string());
                return Err(LineError { position: Position { line, column: None }, problem });
            }
            Ok(())
        });
        match outcome {
            Ok(()) => {
                summary.accepted_lines += 1;
                let timestamp_ms = point.timestamp_ns.unwrap_or(default_ns).div_euclid(1_000_000);
                for field in &point.fields {
                    let Some(value) = field.value.as_f64() else {
                        summary.non_numeric += 1;
                        continue;
                    };
                    out.push(Sample {
                        labels: labels_for(&point, &field.key),
                        value,
                        timestamp_ms,
                        kind: MetricKind::Unspecified,
                    });
                    summary.accepted_samples += 1;
                }
            }
            Err(error) => {
                summary.rejected_lines += 1;
                errors.record(error.line(), || error.to_string());
            }
        }
    }
    summary
}

/// `<measurement>_<field>`, or `<measurement>` for the field `value`.
pub fn metric_name(measurement: &str, field: &str) -> LabelStr {
    metric_name_parts(measurement, field).concat().into()
}

/// The pieces [`metric_name`] joins.
fn metric_name_parts<'a>(measurement: &'a str, field: &'a str) -> [&'a str; 3] {
    if field == "value" { [measurement, "", ""] } else { [measurement, "_", field] }
}

/// `__name__` (see [`metric_name`]) first, then the tags in their order;
/// sized exactly, so a sample's labels are one allocation.
fn labels_for(point: &Point<'_>, field: &str) -> Labels {
    let name = metric_name_parts(&point.measurement, field);
    let name_len: usize = name.iter().map(|p| p.len()).sum();
    let tag_bytes: usize = point.tags.iter().map(|t| t.key.len() + t.value.len()).sum();
    let mut labels = Labels::with_capacity(point.tags.len() + 1, METRIC_NAME_LABEL.len() + name_len + tag_bytes);
    labels.push_with(METRIC_NAME_LABEL, &name);
    for tag in &point.tags {
        labels.push(&*tag.key, &*tag.value);
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(body: &[u8]) -> Vec<(usize, Result<Point<'_>, LineError>)> {
        LineParser::new(body, Precision::Nanosecond).collect()
    }

    fn one(line: &str) -> Point<'_> {
        match parse_line(line.as_bytes(), Precision::Nanosecond) {
            Ok(Some(point)) => point,
            other => panic!("expected one point from {line:?}, got {other:?}"),
        }
    }

    fn problem(line: &str) -> Problem {
        match parse_line(line.as_bytes(), Precision::Nanosecond) {
            Err(error) => error.problem,
            other => panic!("expected {line:?} to be rejected, got {other:?}"),
        }
    }

    fn decode(body: &str, default_ns: i64) -> (Vec<Sample>, DecodeSummary, LineErrors) {
        let mut out = Vec::new();
        let mut errors = LineErrors::new();
        let summary = decode_body(body.as_bytes(), Precision::Nanosecond, default_ns, &mut out, &mut errors);
        (out, summary, errors)
    }

    #[test]
    fn a_plain_line_borrows_every_token() {
        let p = one("cpu,host=a,region=eu usage=1.5,count=3i,big=7u,ok=true,s=\"x y\" 1700000000000000000");
        assert!(matches!(p.measurement, Cow::Borrowed("cpu")));
        let tags: Vec<_> = p.tags.iter().map(|t| (t.key.as_ref(), t.value.as_ref())).collect();
        assert_eq!(tags, [("host", "a"), ("region", "eu")]);
        assert!(p.tags.iter().all(|t| matches!((&t.key, &t.value), (Cow::Borrowed(_), Cow::Borrowed(_)))));
        let fields: Vec<_> = p.fields.iter().map(|f| (f.key.as_ref(), f.value.clone())).collect();
        assert_eq!(
            fields,
            [
                ("usage", FieldValue::Float(1.5)),
                ("count", FieldValue::Int(3)),
                ("big", FieldValue::UInt(7)),
                ("ok", FieldValue::Bool(true)),
                ("s", FieldValue::String(Cow::Borrowed("x y"))),
            ]
        );
        assert_eq!(p.timestamp_ns, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn escapes_are_undone_per_part() {
        let p = one(r#"my\ cpu\,x,ta\=g\ k=v\,a\=l\ ue f\ i\,e\=ld="q\"b\\s\n\t\r" 1"#);
        assert_eq!(p.measurement, "my cpu,x");
        assert_eq!((p.tags[0].key.as_ref(), p.tags[0].value.as_ref()), ("ta=g k", "v,a=l ue"));
        assert_eq!(p.fields[0].key, "f i,e=ld");
        assert_eq!(p.fields[0].value, FieldValue::String(Cow::Owned("q\"b\\s\n\t\r".into())));
        assert!(matches!(p.measurement, Cow::Owned(_)));
    }

    /// Regression (fuzz/regressions/line_protocol/): two backslashes are one, as InfluxDB
    /// 2.x reads them, so a backslash can end a name or a tag before its separator.
    #[test]
    fn two_backslashes_are_one() {
        let p = one(r"a\\,t=x\\\,y\\ f\\=1 1");
        assert_eq!(p.measurement, r"a\");
        assert_eq!((p.tags[0].key.as_ref(), p.tags[0].value.as_ref()), ("t", r"x\,y\"));
        assert_eq!(p.fields[0].key, r"f\");
        assert_eq!(one(r"m,p=C:\temp\\\b f=1").tags[0].value, r"C:\temp\\b");
    }

    #[test]
    fn a_backslash_before_an_ordinary_byte_stands_for_itself() {
        let p = one(r#"c\pu,t=a\b f="a\b" 1"#);
        assert_eq!(p.measurement, r"c\pu");
        assert_eq!(p.tags[0].value, r"a\b");
        assert_eq!(p.fields[0].value, FieldValue::String(r"a\b".into()));
        // '=' is not escapable in a measurement name, so the backslash stays.
        assert_eq!(one(r"a\=b f=1").measurement, r"a\=b");
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_skipped_with_correct_line_numbers() {
        let body = b"# header\r\n\r\n   \ncpu f=1 1\r\n  # indented comment\n\nmem f=2\r\n";
        let points = parse_all(body);
        let lines: Vec<usize> = points.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [4, 7]);
        assert!(points.iter().all(|(_, r)| r.is_ok()));
    }

    #[test]
    fn a_comment_with_a_control_character_is_an_error_but_invalid_utf8_in_it_is_not() {
        assert!(matches!(problem("# tab\there"), Problem::CommentCharacter(Found(Some(b'\t')))));
        let body = b"# \xff\xfe not utf-8\ncpu f=1\n";
        let points = parse_all(body);
        assert_eq!(points.len(), 1);
        assert!(points[0].1.is_ok());
    }

    #[test]
    fn invalid_utf8_in_a_token_rejects_the_line() {
        let body = b"cpu,host=\xff f=1\ncpu f=2\n";
        let points = parse_all(body);
        assert!(matches!(points[0].1, Err(LineError { problem: Problem::InvalidUtf8(Part::TagValue), .. })));
        assert!(points[1].1.is_ok());
    }

    #[test]
    fn every_boolean_spelling() {
        for (text, value) in [
            ("t", true),
            ("T", true),
            ("true", true),
            ("True", true),
            ("TRUE", true),
            ("f", false),
            ("F", false),
            ("false", false),
            ("False", false),
            ("FALSE", false),
        ] {
            assert_eq!(one(&format!("m b={text}")).fields[0].value, FieldValue::Bool(value), "{text}");
        }
        for bad in ["tru", "tRUE", "fals", "yes"] {
            assert!(parse_line(format!("m b={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
        }
    }

    #[test]
    fn integer_and_unsigned_ranges() {
        assert_eq!(one("m v=9223372036854775807i").fields[0].value, FieldValue::Int(i64::MAX));
        assert_eq!(one("m v=-9223372036854775808i").fields[0].value, FieldValue::Int(i64::MIN));
        assert_eq!(one("m v=18446744073709551615u").fields[0].value, FieldValue::UInt(u64::MAX));
        assert_eq!(one("m v=007i").fields[0].value, FieldValue::Int(7));
        assert!(matches!(problem("m v=9223372036854775808i"), Problem::FieldValueOutOfRange { .. }));
        assert!(matches!(problem("m v=18446744073709551616u"), Problem::FieldValueOutOfRange { .. }));
        for bad in ["-1u", "1.5i", "-i", "--1i", "1e3i", "+1i"] {
            assert!(parse_line(format!("m v={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
        }
    }

    #[test]
    fn eight_digit_chunks_match_the_plain_loop() {
        for text in ["00000000", "12345678", "99999999", "1234567890123456789", "000000000000000001"] {
            let plain = text.bytes().fold(0u64, |acc, c| acc * 10 + u64::from(c - b'0'));
            assert_eq!(parse_u64(text.as_bytes()), Ok(plain), "{text}");
        }
        for bad in ["1234567/", "1234567:", "12345\x00678", "1234 678", "123456789012345678\u{e9}"] {
            assert_eq!(parse_u64(bad.as_bytes()), Err(NumberError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn float_forms() {
        for (text, value) in [
            ("1", 1.0),
            ("-1.5", -1.5),
            (".5", 0.5),
            ("-.5", -0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("1.e2", 100.0),
            ("2.5e+2", 250.0),
            ("1.7976931348623157e308", f64::MAX),
            ("1e-400", 0.0),
            ("123456789012345678901234567890", 1.2345678901234568e29),
        ] {
            assert_eq!(one(&format!("m v={text}")).fields[0].value, FieldValue::Float(value), "{text}");
        }
        for bad in [".", "-", "1e", "1e+", "1.2.3", "1_000", "0x1p3", "-inf", "1e400", "1,", "1\t"] {
            assert!(parse_line(format!("m v={bad}").as_bytes(), Precision::Nanosecond).is_err(), "{bad}");
        }
        assert!(matches!(problem("m v=inf"), Problem::UnknownFieldType { .. }));
        assert!(matches!(problem("m v=1e400"), Problem::FieldValueOutOfRange { .. }));
    }

    #[test]
    fn precision_spellings_scaling_and_truncation() {
        for (text, precision) in [
            ("n", Precision::Nanosecond),
            ("ns", Precision::Nanosecond),
            ("u", Precision::Microsecond),
            ("us", Precision::Microsecond),
            ("µs", Precision::Microsecond),
            ("ms", Precision::Millisecond),
            ("s", Precision::Second),
            ("m", Precision::Minute),
            ("h", Precision::Hour),
        ] {
            assert_eq!(text.parse::<Precision>(), Ok(precision));
        }
        let error = "minutes".parse::<Precision>().unwrap_err();
        assert_eq!(error.to_string(), "unknown precision \"minutes\": expected one of n, ns, u, us, µs, ms, s, m, h");

        let at = |precision| parse_line(b"m f=1 3", precision).map(|p| p.map(|p| p.timestamp_ns));
        assert_eq!(at(Precision::Nanosecond), Ok(Some(Some(3))));
        assert_eq!(at(Precision::Microsecond), Ok(Some(Some(3_000))));
        assert_eq!(at(Precision::Millisecond), Ok(Some(Some(3_000_000))));
        assert_eq!(at(Precision::Second), Ok(Some(Some(3_000_000_000))));
        assert_eq!(at(Precision::Minute), Ok(Some(Some(180_000_000_000))));
        assert_eq!(at(Precision::Hour), Ok(Some(Some(10_800_000_000_000))));
        let overflow = parse_line(b"m f=1 9223372036854775807", Precision::Hour);
        assert!(matches!(overflow, Err(LineError { problem: Problem::TimestampOutOfRange { .. }, .. })));

        assert_eq!(Precision::Second.truncate(1_999_999_999), 1_000_000_000);
        assert_eq!(Precision::Second.truncate(-1), -1_000_000_000);
        assert_eq!(Precision::Nanosecond.truncate(-7), -7);
    }

    #[test]
    fn timestamps_and_trailing_text() {
        assert_eq!(one("m f=1").timestamp_ns, None);
        assert_eq!(one("m f=1   ").timestamp_ns, None);
        assert_eq!(one("m f=1 -5  ").timestamp_ns, Some(-5));
        assert_eq!(one("m f=1  12\r\n").timestamp_ns, Some(12));
        assert!(matches!(problem("m f=1 12x"), Problem::InvalidTimestamp(_)));
        assert!(matches!(problem("m f=1 1-2"), Problem::InvalidTimestamp(_)));
        assert!(matches!(problem("m f=1 -"), Problem::InvalidTimestamp(_)));
        assert!(matches!(problem("m f=1 12 13"), Problem::AfterTimestamp(_)));
        assert!(matches!(problem("m f=1 9223372036854775808"), Problem::TimestampOutOfRange { .. }));
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(problem("cpu"), Problem::ExpectedTagsOrFields { found: Found(None), .. }));
        assert!(matches!(problem(",t=1 f=1"), Problem::MeasurementStart(Found(Some(b',')))));
        assert!(matches!(problem("cpu, f=1"), Problem::ExpectedTagKey(Found(Some(b' ')))));
        assert!(matches!(problem("cpu,t f=1"), Problem::ExpectedTagEquals { .. }));
        assert!(matches!(problem("cpu,t= f=1"), Problem::EmptyTagValue { .. }));
        assert!(matches!(problem("cpu,t=1"), Problem::ExpectedTagsOrFields { found: Found(None), .. }));
        assert!(matches!(problem("cpu,t=1,t=2 f=1"), Problem::DuplicateTag(key) if key == "t"));
        assert!(matches!(problem("cpu "), Problem::ExpectedFieldKey(Found(None))));
        assert!(matches!(problem("cpu f"), Problem::ExpectedFieldEquals { .. }));
        assert!(matches!(problem("cpu f="), Problem::MissingFieldValue { .. }));
        assert!(matches!(problem("cpu f=1,"), Problem::ExpectedFieldKey(Found(None))));
        assert!(matches!(problem("cpu f=abc"), Problem::UnknownFieldType { .. }));
        assert!(matches!(problem("cpu f=\"abc"), Problem::UnterminatedString { .. }));
        assert!(matches!(problem("cpu f=\"a\"b"), Problem::AfterField { .. }));
        assert!(matches!(problem("cpu f=1\rx"), Problem::LoneCarriageReturn));
        assert!(matches!(problem("cpu f=1 12\rx"), Problem::LoneCarriageReturn));
        assert!(matches!(problem("cpu f= 1"), Problem::MissingFieldValue { found: Found(Some(b' ')), .. }));
        assert!(matches!(problem("\rcpu f=1"), Problem::LoneCarriageReturn));
        // Duplicate field keys are allowed, as in the reference decoder.
        assert_eq!(one("cpu f=1,f=2").fields.len(), 2);
    }

    #[test]
    fn messages_name_line_column_and_input() {
        let body = "cpu f=1\n# comment\ncpu,az=eu,host value=1\n";
        let points = parse_all(body.as_bytes());
        let Err(error) = &points[1].1 else { panic!("line 3 should fail: {points:?}") };
        assert_eq!(error.to_string(), "line 3, column 15: expected '=' after tag key \"host\", found a space");
        let error = parse_line(b"m v=12.5.1", Precision::Nanosecond).unwrap_err();
        assert_eq!(error.to_string(), "line 1, column 5: invalid float value \"12.5.1\" for field \"v\"");
    }

    #[test]
    fn parse_line_takes_exactly_one_entry() {
        assert_eq!(parse_line(b"", Precision::Nanosecond), Ok(None));
        assert_eq!(parse_line(b"  # just a comment\n", Precision::Nanosecond), Ok(None));
        assert!(parse_line(b"m f=1\n", Precision::Nanosecond).is_ok_and(|p| p.is_some()));
        assert!(matches!(
            parse_line(b"m f=1\nm f=2", Precision::Nanosecond),
            Err(LineError { problem: Problem::TrailingData, .. })
        ));
    }

    #[test]
    fn strings_spanning_lines_keep_later_line_numbers_right() {
        let body = "m s=\"one\ntwo\nthree\" 1\nm f=1\nm f=x\n";
        let points = parse_all(body.as_bytes());
        assert_eq!(points.len(), 3);
        assert_eq!(
            points[0].1.as_ref().map(|p| p.fields[0].value.clone()),
            Ok(FieldValue::String("one\ntwo\nthree".into()))
        );
        assert_eq!(points[1].0, 4);
        let Err(error) = &points[2].1 else { panic!("line 5 should fail") };
        assert_eq!(error.position, Position { line: 5, column: Some(5) });
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
            DecodeSummary { accepted_lines: 3, accepted_samples: 7, rejected_lines: 0, non_numeric: 1 }
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

    // ---- properties ----

    /// Characters for names: the separators that need escapes, non-ASCII, no backslash
    /// (a trailing backslash before a separator cannot be written unambiguously) and no
    /// control characters (line protocol cannot carry them in names).
    fn name_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', 'z', 'Q', '0', '9', '_', '-', '.', ' ', ',', '=', '"', '#', 'é', '✓', '𝄞']),
            1..8,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn string_value_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!['a', ' ', ',', '=', '"', '\\', '\n', '\r', '\t', 'é', '#', '}']),
            0..10,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    #[derive(Debug, Clone)]
    enum OwnedValue {
        Float(f64, bool),
        Int(i64),
        UInt(u64),
        Bool(bool),
        Str(String, bool),
    }

    fn value_strategy() -> impl Strategy<Value = OwnedValue> {
        prop_oneof![
            (any::<f64>().prop_filter("finite", |v| v.is_finite()), any::<bool>())
                .prop_map(|(v, exp)| OwnedValue::Float(v, exp)),
            any::<i64>().prop_map(OwnedValue::Int),
            any::<u64>().prop_map(OwnedValue::UInt),
            any::<bool>().prop_map(OwnedValue::Bool),
            (string_value_strategy(), any::<bool>()).prop_map(|(s, raw)| OwnedValue::Str(s, raw)),
        ]
    }

    #[derive(Debug, Clone)]
    struct OwnedPoint {
        measurement: String,
        tags: Vec<(String, String)>,
        fields: Vec<(String, OwnedValue)>,
        timestamp: Option<i64>,
    }

    fn point_strategy() -> impl Strategy<Value = OwnedPoint> {
        (
            name_strategy().prop_filter("a leading '#' makes a comment", |m| !m.starts_with('#')),
            prop::collection::btree_map(name_strategy(), name_strategy(), 0..4),
            prop::collection::vec((name_strategy(), value_strategy()), 1..4),
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(measurement, tags, fields, timestamp)| OwnedPoint {
                measurement,
                tags: tags.into_iter().collect(),
                fields,
                timestamp,
            })
    }

    fn escape(text: &str, escaped: &[char], out: &mut String) {
        for c in text.chars() {
            if escaped.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
    }

    fn encode(point: &OwnedPoint, out: &mut String) {
        escape(&point.measurement, &[' ', ','], out);
        for (key, value) in &point.tags {
            out.push(',');
            escape(key, &[' ', ',', '='], out);
            out.push('=');
            escape(value, &[' ', ',', '='], out);
        }
        for (i, (key, value)) in point.fields.iter().enumerate() {
            out.push(if i == 0 { ' ' } else { ',' });
            escape(key, &[' ', ',', '='], out);
            out.push('=');
            match value {
                OwnedValue::Float(v, true) => out.push_str(&format!("{v:e}")),
                OwnedValue::Float(v, false) => out.push_str(&format!("{v}")),
                OwnedValue::Int(v) => out.push_str(&format!("{v}i")),
                OwnedValue::UInt(v) => out.push_str(&format!("{v}u")),
                OwnedValue::Bool(v) => out.push_str(if *v { "true" } else { "F" }),
                OwnedValue::Str(s, raw_newlines) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            '\n' if !raw_newlines => out.push_str("\\n"),
                            '\t' if !raw_newlines => out.push_str("\\t"),
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
            }
        }
        if let Some(ts) = point.timestamp {
            out.push_str(&format!(" {ts}"));
        }
    }

    fn same(parsed: &Point<'_>, expected: &OwnedPoint) -> bool {
        parsed.measurement == expected.measurement
            && parsed.tags.len() == expected.tags.len()
            && parsed.tags.iter().zip(&expected.tags).all(|(t, (k, v))| t.key == *k && t.value == *v)
            && parsed.fields.len() == expected.fields.len()
            && parsed.fields.iter().zip(&expected.fields).all(|(f, (k, v))| {
                f.key == *k
                    && match (&f.value, v) {
                        (FieldValue::Float(a), OwnedValue::Float(b, _)) => a == b,
                        (FieldValue::Int(a), OwnedValue::Int(b)) => a == b,
                        (FieldValue::UInt(a), OwnedValue::UInt(b)) => a == b,
                        (FieldValue::Bool(a), OwnedValue::Bool(b)) => a == b,
                        (FieldValue::String(a), OwnedValue::Str(b, _)) => a == b,
                        _ => false,
                    }
            })
            && parsed.timestamp_ns == expected.timestamp
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
            for _ in LineParser::new(&body, Precision::Second) {}
            let mut out = Vec::new();
            let mut errors = LineErrors::new();
            let summary = decode_body(&body, Precision::Nanosecond, 0, &mut out, &mut errors);
            prop_assert_eq!(summary.rejected_lines, errors.rejected());
            prop_assert_eq!(summary.accepted_samples as usize, out.len());
        }

        #[test]
        fn line_protocol_shaped_bytes_never_panic(
            body in prop::collection::vec(
                prop::sample::select(b"ab,= \"\\\n\r#tTfFiu0123456789.-eE\t\xff\xc3\xa9".to_vec()),
                0..400,
            )
        ) {
            let mut lines = 0usize;
            for (line, result) in LineParser::new(&body, Precision::Hour) {
                prop_assert!(line >= 1);
                if let Err(error) = result {
                    prop_assert!(error.line() >= line);
                    prop_assert!(!error.to_string().is_empty());
                }
                lines += 1;
                prop_assert!(lines <= body.len() + 1);
            }
        }

        #[test]
        fn encoded_points_parse_back_to_themselves(
            points in prop::collection::vec(point_strategy(), 1..5),
            crlf in any::<bool>(),
        ) {
            let mut body = String::new();
            for point in &points {
                encode(point, &mut body);
                body.push_str(if crlf { "\r\n" } else { "\n" });
            }
            let parsed = parse_all(body.as_bytes());
            prop_assert_eq!(parsed.len(), points.len(), "body: {:?}", body);
            for ((_, result), expected) in parsed.iter().zip(&points) {
                match result {
                    Ok(point) => prop_assert!(same(point, expected), "parsed {:?}\nexpected {:?}\nbody {:?}", point, expected, body),
                    Err(error) => prop_assert!(false, "{} in {:?}", error, body),
                }
            }
        }
    }
}
