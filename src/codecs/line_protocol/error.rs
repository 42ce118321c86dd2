//! Why a line was rejected, and where: the messages a sender reads in the partial-write answer.

use std::fmt;

use super::Precision;

/// Longest excerpt of offending input quoted in an error message, in bytes.
const MAX_EXCERPT_BYTES: usize = 48;

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
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        text.push('…');
    }
    text
}
