//! The fast path: an entry in the common shape, parsed from the stop scanner's boundaries
//! with no per-byte work. Anything else (escapes, string fields, control bytes, CR without
//! LF, repeated spaces, duplicate tags, invalid or out-of-range values, a body that is not
//! UTF-8) makes it give up, and the general parser decides the entry from its start: so
//! what it accepts is exactly what the general parser accepts, and every error comes from
//! the general parser.

use std::borrow::Cow;

use super::super::number::{digits_before, parse_bool, parse_f64, parse_i64, parse_u64, plain_f64_before};
use super::super::point::{Field, FieldValue, Point, Tag};
use super::super::stops::Stops;
use super::{LineParser, duplicate_tag_key};

impl<'a> LineParser<'a> {
    /// Parses the entry at `pos` into `point` (which must be empty) if it has the common
    /// shape: `measurement[,key=value…] key=value[,key=value…][ timestamp]` and a line end,
    /// single separators, tokens without escapes, quotes or control bytes, numeric or boolean
    /// field values. On success the line is consumed; on `false` only `point` has changed.
    #[inline(always)]
    pub(super) fn fast_entry(&mut self, point: &mut Point<'a>) -> bool {
        // The scanner is worked on as a local (kept in registers) and stored back once.
        let mut stops = self.stops;
        let parsed = self.fast_entry_with(&mut stops, point);
        self.stops = stops;
        parsed
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
        // `start` (a character boundary, checked above) or one past a stop, and ends at a stop
        // or the end of the body. Stops are ASCII bytes, so both ends are character boundaries
        // and the range is in bounds (`start ≤ end ≤ len`, as stops are taken in order).
        let token = |from: usize, to: usize| -> Cow<'a, str> { Cow::Borrowed(unsafe { text.get_unchecked(from..to) }) };

        // Measurement: up to ',' or ' ' ('=' is allowed in it).
        stops.seek(bytes, start);
        let (mut at, mut stop) = stops.take(bytes);
        while stop == b'=' {
            (at, stop) = stops.take(bytes);
        }
        if at == start {
            return false;
        }
        point.measurement = token(start, at);
        if stop == b',' {
            // One bit per tag key (a hash of its length and first byte): only when two keys
            // share a bit are the keys compared.
            let mut seen = 0u64;
            let mut maybe_duplicate = false;
            loop {
                let key = at + 1;
                (at, stop) = stops.take(bytes);
                if at == key || stop != b'=' {
                    return false;
                }
                let equals = at;
                (at, stop) = stops.take(bytes);
                if at == equals + 1 {
                    return false;
                }
                let bit = key_bit(equals - key, bytes[key]);
                maybe_duplicate |= seen & bit != 0;
                seen |= bit;
                point.tags.push(Tag { key: token(key, equals), value: token(equals + 1, at) });
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

        // Fields, after exactly one space.
        loop {
            let key = at + 1;
            (at, stop) = stops.take(bytes);
            if at == key || stop != b'=' {
                return false;
            }
            let equals = at;
            (at, stop) = stops.take(bytes);
            let Some(value) = field_value(bytes, equals + 1, at) else { return false };
            point.fields.push(Field { key: token(key, equals), value });
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

/// [`parse_i64`] of `bytes[start..end]`, a word at a time for short digit runs.
#[inline(always)]
fn integer(bytes: &[u8], start: usize, end: usize) -> Option<i64> {
    let negative = bytes.get(start) == Some(&b'-');
    // Up to 18 digits are below 2^63.
    match digits_before(bytes, start + usize::from(negative), end) {
        Some(magnitude) if end - start <= 18 + usize::from(negative) => {
            let magnitude = magnitude as i64;
            Some(if negative { magnitude.wrapping_neg() } else { magnitude })
        }
        _ => parse_i64(bytes.get(start..end)?).ok(),
    }
}
