//! The typed point a line parses to; strings borrow from the body unless they held escapes.

use std::borrow::Cow;

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
