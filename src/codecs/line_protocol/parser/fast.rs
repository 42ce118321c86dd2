//! The fast path: an entry in the common shape, parsed from the stop scanner's boundaries
//! with no per-byte work. Anything else (control bytes, CR without LF, repeated spaces,
//! duplicate tags, invalid or out-of-range values, strings with escapes or line feeds, a body
//! that is not UTF-8) makes it give up, and the general parser decides the entry from its
//! start: so what it accepts is exactly what the general parser accepts, and every error
//! comes from the general parser.

use std::borrow::Cow;

use memchr::memchr3;

use super::super::classes::{KEY_ESCAPABLE, MEASUREMENT_ESCAPABLE, is};
use super::super::error::Part;
use super::super::number::{digits_before, parse_bool, parse_f64, parse_i64, parse_u64, plain_f64_before};
use super::super::point::{Field, FieldValue, Point, Tag};
use super::super::stops::Stops;
use super::{LineParser, duplicate_tag_key};

impl<'a> LineParser<'a> {
    /// Parses the entry at `pos` into `point` (which must be empty) if it has the common
    /// shape: `measurement[,key=value…] key=value[,key=value…][ timestamp]` and a line end,
    /// single separators, tokens without control bytes, numeric or boolean field values or
    /// strings without escapes on one line. On success the line is consumed; on `false` only
    /// `point` has changed.
    #[inline(always)]
    pub(super) fn fast_entry(&mut self, point: &mut Point<'a>) -> bool {
        // The scanner is worked on as a local (kept in registers) and stored back once.
        let mut stops = self.stops;
        let parsed = self.fast_entry_with(&mut stops, point);
        // Every stop taken is before the next entry; after a failure the general parser
        // decides where that is.
        stops.taken_to(parsed.then_some(self.pos));
        self.stops = stops;
        parsed
    }

    /// Like [`Self::fast_entry`], but the series key (measurement and tags) is only found,
    /// not parsed: the entry at `pos` must have a key without escapes, control bytes or
    /// spaces, then the common shape's fields and timestamp, which are parsed into `point`
    /// (its measurement and tags stay empty). Returns the key's range and where its
    /// measurement ends; the line is consumed. The key is not checked at all: the caller
    /// must know it from a line that parsed whole, or parse this one again whole
    /// ([`LineParser::reparse`]). On `None` nothing is consumed and only `point` changed.
    #[inline(always)]
    pub(super) fn fast_keyed_entry(&mut self, point: &mut Point<'a>) -> Option<(std::ops::Range<usize>, usize)> {
        let mut stops = self.stops;
        let start = self.pos;
        let keyed = self.text.is_some_and(|text| text.is_char_boundary(start)).then(|| {
            let bytes = self.bytes;
            stops.seek(bytes, start);
            let mut measurement_end = None;
            let key_end = loop {
                let (at, stop) = stops.take(bytes);
                match stop {
                    b',' => _ = *measurement_end.get_or_insert(at),
                    b'=' => {}
                    b' ' => break at,
                    _ => return None,
                }
            };
            if key_end == start {
                return None;
            }
            let measurement_end = measurement_end.unwrap_or(key_end);
            self.fast_fields_with(&mut stops, key_end, point).then_some((start..key_end, measurement_end))
        });
        let keyed = keyed.flatten();
        stops.taken_to(keyed.is_some().then_some(self.pos));
        self.stops = stops;
        keyed
    }

    #[inline(always)]
    fn fast_entry_with(&mut self, stops: &mut Stops, point: &mut Point<'a>) -> bool {
        let Some(text) = self.text else { return false };
        let bytes = text.as_bytes();
        let start = self.pos;
        if !text.is_char_boundary(start) {
            return false;
        }
        // SAFETY (every `token` below): `text` is the whole body, and each range starts at
        // `start` (a character boundary, checked above) or one past a stop or a quote, and ends
        // at a stop, a quote or the end of the body. Stops and quotes are ASCII bytes, so both
        // ends are character boundaries, and the range is in bounds (`start ≤ end ≤ len`: stops
        // are taken in order, and a string's closing quote is found after its opening one).
        let token = |from: usize, to: usize| -> Cow<'a, str> { Cow::Borrowed(unsafe { text.get_unchecked(from..to) }) };

        // Measurement: up to ',' or ' ' ('=' is allowed in it).
        stops.seek(bytes, start);
        let (mut at, mut stop, escaped) = token_end(stops, bytes, MEASUREMENT_ESCAPABLE, false);
        if at == start {
            return false;
        }
        if escaped {
            match self.unescaped_token(start, at, true, MEASUREMENT_ESCAPABLE, Part::Measurement) {
                Ok(measurement) => point.measurement = measurement,
                Err(_) => return false,
            }
        } else {
            point.measurement = token(start, at);
        }
        if stop == b',' {
            // One bit per tag key (a hash of its length and first byte): only when two keys
            // share a bit (or one has escapes) are the keys compared.
            let mut seen = 0u64;
            let mut maybe_duplicate = false;
            loop {
                let key = at + 1;
                let key_escaped;
                (at, stop, key_escaped) = token_end(stops, bytes, KEY_ESCAPABLE, true);
                if at == key || stop != b'=' {
                    return false;
                }
                let equals = at;
                let value_escaped;
                (at, stop, value_escaped) = token_end(stops, bytes, KEY_ESCAPABLE, true);
                if at == equals + 1 {
                    return false;
                }
                let bit = key_bit(equals - key, bytes[key]);
                maybe_duplicate |= seen & bit != 0 || key_escaped;
                seen |= bit;
                if key_escaped || value_escaped {
                    if !self.push_escaped_tag(point, [key, equals, at], key_escaped, value_escaped) {
                        return false;
                    }
                } else {
                    point.tags.push(Tag { key: token(key, equals), value: token(equals + 1, at) });
                }
                match stop {
                    b',' => {}
                    b' ' => break,
                    _ => return false,
                }
            }
            if maybe_duplicate && duplicate_tag_key(&point.tags).is_some() {
                return false;
            }
        } else if stop != b' ' {
            return false;
        }
        self.fast_fields_with(stops, at, point)
    }

    /// The fields and timestamp of a common-shape entry whose series key ends with the space
    /// at `at` (the stop last taken), into `point`; the line is consumed on success.
    #[inline(always)]
    fn fast_fields_with(&mut self, stops: &mut Stops, mut at: usize, point: &mut Point<'a>) -> bool {
        let Some(text) = self.text else { return false };
        let bytes = text.as_bytes();
        // SAFETY: as in `fast_entry_with` (ranges from one past a stop or a quote to a stop,
        // a quote or the end of the body).
        let token = |from: usize, to: usize| -> Cow<'a, str> { Cow::Borrowed(unsafe { text.get_unchecked(from..to) }) };
        let mut stop;

        // Fields, after exactly one space.
        loop {
            let key = at + 1;
            let key_escaped;
            (at, stop, key_escaped) = token_end(stops, bytes, KEY_ESCAPABLE, true);
            if at == key || stop != b'=' {
                return false;
            }
            let equals = at;
            let value = if bytes.get(equals + 1) == Some(&b'"') {
                // A string up to the next quote, without escapes or line feeds; the scanner
                // resumes after it.
                let content = equals + 2;
                let Some(close) = bytes.get(content..).and_then(|rest| memchr3(b'"', b'\\', b'\n', rest)) else {
                    return false;
                };
                let close = content + close;
                if bytes[close] != b'"' {
                    return false;
                }
                stops.seek(bytes, close + 1);
                (at, stop) = stops.take(bytes);
                if at != close + 1 {
                    return false;
                }
                FieldValue::String(token(content, close))
            } else {
                (at, stop) = stops.take(bytes);
                match field_value(bytes, equals + 1, at) {
                    Some(value) => value,
                    None => return false,
                }
            };
            if key_escaped {
                match self.unescaped_token(key, equals, true, KEY_ESCAPABLE, Part::FieldKey) {
                    Ok(key) => point.fields.push(Field { key, value }),
                    Err(_) => return false,
                }
            } else {
                point.fields.push(Field { key: token(key, equals), value });
            }
            match stop {
                b',' => {}
                b' ' => break,
                _ => return self.end_line(at, stop),
            }
        }

        // Timestamp, after exactly one space, then the line end.
        let digits = at + 1;
        (at, stop) = stops.take(bytes);
        let Some(timestamp) = integer(bytes, digits, at) else { return false };
        let Some(nanos) = self.precision.to_nanos(timestamp) else { return false };
        if !self.end_line(at, stop) {
            return false;
        }
        point.timestamp_ns = Some(nanos);
        true
    }

    /// Pushes the tag `key=value` of `[key, equals, end]` (offsets of its key, its '=' and
    /// the stop after its value) where the key or the value has escapes; false when it is not
    /// valid UTF-8 once unescaped.
    #[cold]
    #[inline(never)]
    fn push_escaped_tag(
        &self,
        point: &mut Point<'a>,
        [key, equals, end]: [usize; 3],
        key_escaped: bool,
        value_escaped: bool,
    ) -> bool {
        let key = self.token(key, equals, key_escaped, KEY_ESCAPABLE, Part::TagKey);
        let value = self.token(equals + 1, end, value_escaped, KEY_ESCAPABLE, Part::TagValue);
        match (key, value) {
            (Ok(key), Ok(value)) => {
                point.tags.push(Tag { key, value });
                true
            }
            _ => false,
        }
    }

    /// Consumes the line end at `at`, where the stop byte `stop` is (LF, CR LF, or the end of
    /// the body) and returns true; false, consuming nothing, when something else is there.
    #[inline(always)]
    fn end_line(&mut self, at: usize, stop: u8) -> bool {
        let next = match stop {
            b'\n' => at + 1,
            0 if at == self.bytes.len() => {
                self.pos = at;
                return true;
            }
            b'\r' if self.bytes.get(at + 1) == Some(&b'\n') => at + 2,
            _ => return false,
        };
        self.pos = next;
        self.new_line_at(next);
        true
    }
}

/// Takes stops up to the end of a token (the first stop that is not part of it), stepping
/// over escapes as the general parser does: a backslash before a byte in `escapable` makes
/// that byte part of the token (and the token "escaped"), any other backslash stands for
/// itself. `equals_ends`: whether '=' ends the token (not in a measurement name).
#[inline(always)]
fn token_end(stops: &mut Stops, bytes: &[u8], escapable: u8, equals_ends: bool) -> (usize, u8, bool) {
    let mut escaped = false;
    loop {
        let (at, stop) = stops.take(bytes);
        match stop {
            b'\\' => {
                if bytes.get(at + 1).is_some_and(|&c| is(escapable, c)) {
                    // The escaped byte (space, comma or '=') is a stop itself: taken with it.
                    stops.take(bytes);
                    escaped = true;
                }
            }
            b'=' if !equals_ends => {}
            _ => return (at, stop, escaped),
        }
    }
}

/// One of 64 bits for a tag key of `len` bytes starting with `first`: equal keys get the
/// same bit.
#[inline(always)]
fn key_bit(len: usize, first: u8) -> u64 {
    1 << ((usize::from(first) + len * 8) & 63)
}

/// The non-string field value `bytes[start..end]` as the general parser reads it, or `None`
/// when it would reject it (or it is not one the fast path takes).
#[inline(always)]
fn field_value<'a>(bytes: &[u8], start: usize, end: usize) -> Option<FieldValue<'a>> {
    let text = bytes.get(start..end)?;
    let (&first, _) = text.split_first()?;
    match first {
        b'-' | b'.' | b'0'..=b'9' => match text {
            [.., b'i'] => integer(bytes, start, end - 1).map(FieldValue::Int),
            [digits @ .., b'u'] => {
                let value = digits_before(bytes, start, end - 1).or_else(|| parse_u64(digits).ok());
                value.map(FieldValue::UInt)
            }
            _ => {
                let value = plain_f64_before(bytes, start, end).or_else(|| parse_f64(text).ok());
                value.map(FieldValue::Float)
            }
        },
        b't' | b'T' | b'f' | b'F' => parse_bool(text).map(FieldValue::Bool),
        _ => None,
    }
}

/// [`parse_i64`] of `bytes[start..end]`, a word at a time for digit runs of up to 19.
#[inline(always)]
fn integer(bytes: &[u8], start: usize, end: usize) -> Option<i64> {
    let negative = bytes.get(start) == Some(&b'-');
    match digits_before(bytes, start + usize::from(negative), end) {
        Some(magnitude) if negative => {
            // Down to -2^63.
            (magnitude <= i64::MAX as u64 + 1).then(|| (magnitude as i64).wrapping_neg())
        }
        Some(magnitude) => i64::try_from(magnitude).ok(),
        None => parse_i64(bytes.get(start..end)?).ok(),
    }
}
