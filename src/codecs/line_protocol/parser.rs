//! The typed parser: borrows from the body wherever a token has no escapes, and decides
//! validity exactly as the InfluxData reference decoder does.

use std::borrow::Cow;

use memchr::{memchr, memchr2};

use super::classes::*;
use super::error::{Found, LineError, Part, Position, Problem, ValueType, excerpt};
use super::number::{NumberError, parse_bool, parse_f64, parse_i64, parse_u64};
use super::point::{Field, FieldValue, Point, Tag};
use super::precision::Precision;
use super::stops::Stops;

mod fast;

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
    /// Where the fast path's token boundaries are (see [`Self::fast_entry`]).
    stops: Stops,
    /// Where the entry [`Self::next_keyed`] returned last starts, for [`Self::reparse`].
    entry: Entry,
}

/// A position in the body: the parser's, at the start of an entry.
#[derive(Clone, Copy, Default)]
struct Entry {
    pos: usize,
    line: usize,
    line_start: usize,
}

/// How much of an entry [`LineParser::next_keyed`] parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// All of it, into the point.
    Whole,
    /// Its fields and timestamp only (the point's measurement and tags are empty). Its series
    /// key — measurement and tags, as sent — is `body[key]`, the measurement
    /// `body[key.start..measurement_end]`; the key holds no escapes, control bytes or spaces,
    /// and has not been checked.
    Keyed { key: std::ops::Range<usize>, measurement_end: usize },
}

impl<'a> LineParser<'a> {
    pub fn new(body: &'a [u8], precision: Precision) -> Self {
        Self::starting_at_line(body, precision, 1)
    }

    /// A parser of a piece of a body that starts at the beginning of line `line` (1-based):
    /// its errors give the lines' numbers in the whole body.
    pub fn starting_at_line(body: &'a [u8], precision: Precision, line: usize) -> Self {
        LineParser {
            bytes: body,
            text: std::str::from_utf8(body).ok(),
            precision,
            pos: 0,
            line,
            line_start: 0,
            stops: Stops::new(body),
            entry: Entry::default(),
        }
    }

    /// Parses the next entry into `point`. Returns `None` when the body is exhausted, else
    /// the 1-based line the entry starts on and whether it was valid (on error, `point`
    /// holds whatever had been parsed and must not be used).
    pub fn next_into(&mut self, point: &mut Point<'a>) -> Option<(usize, Result<(), LineError>)> {
        let line = match self.next_entry(point)? {
            Ok(line) => line,
            Err(error) => return Some((error.line(), Err(error))),
        };
        Some((line, self.whole_entry(point)))
    }

    /// Like [`Self::next_into`], but an entry whose series key has no escapes, control bytes
    /// or spaces and whose fields and timestamp have the common shape is parsed only from its
    /// fields on ([`Parsed::Keyed`]): for a caller that knows most keys already and keeps
    /// what it needs per key. For a key it does not know, it calls [`Self::reparse`] before
    /// the next entry.
    #[inline]
    pub fn next_keyed(&mut self, point: &mut Point<'a>) -> Option<(usize, Result<Parsed, LineError>)> {
        let line = match self.next_entry(point)? {
            Ok(line) => line,
            Err(error) => return Some((error.line(), Err(error))),
        };
        self.entry = Entry { pos: self.pos, line, line_start: self.line_start };
        if let Some((key, measurement_end)) = self.fast_keyed_entry(point) {
            return Some((line, Ok(Parsed::Keyed { key, measurement_end })));
        }
        point.clear();
        Some((line, self.whole_entry(point).map(|()| Parsed::Whole)))
    }

    /// Empties `point` and moves past blank lines and comments: the line the next entry
    /// starts on, the error of a bad line on the way (skipped), or `None` at the end.
    #[inline(always)]
    fn next_entry(&mut self, point: &mut Point<'a>) -> Option<Result<usize, LineError>> {
        point.clear();
        match self.skip_blank_lines() {
            Ok(true) => Some(Ok(self.line)),
            Ok(false) => None,
            Err(error) => {
                self.skip_rest_of_line();
                Some(Err(error))
            }
        }
    }

    /// Parses the entry [`Self::next_keyed`] returned last as [`Parsed::Keyed`] again, whole,
    /// into `point`: the same outcome [`Self::next_into`] would have had for it.
    pub fn reparse(&mut self, point: &mut Point<'a>) -> Result<(), LineError> {
        let Entry { pos, line, line_start } = self.entry;
        (self.pos, self.line, self.line_start) = (pos, line, line_start);
        point.clear();
        self.whole_entry(point)
    }

    /// The entry at `pos` (past any blank lines), whole: the fast path, else the general
    /// parser, which decides every error; after one, it resumes at the next line.
    #[inline(always)]
    fn whole_entry(&mut self, point: &mut Point<'a>) -> Result<(), LineError> {
        if self.fast_entry(point) {
            return Ok(());
        }
        point.clear();
        self.parse_entry(point).inspect_err(|_| self.skip_rest_of_line())
    }

    /// The body's bytes in `range` as text, if the body is UTF-8 and the range is on
    /// character boundaries (tokens of a [`Parsed::Keyed`] entry are).
    #[inline]
    pub fn text(&self, range: std::ops::Range<usize>) -> Option<&'a str> {
        self.text?.get(range)
    }

    /// Bytes of the body consumed so far.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// The 1-based number of the line the parser is on: once the input is exhausted, one
    /// more than the line feeds it held.
    pub fn line(&self) -> usize {
        self.line
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
    fn scan_escaped<const CLASS: u8>(&mut self, escapable: u8) -> (usize, usize, bool) {
        let bytes = self.bytes;
        let start = self.pos;
        let mut i = start;
        let mut escaped = false;
        loop {
            i = run_end::<CLASS>(bytes, i);
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
        let (start, end, escaped) = self.scan_escaped::<MEASUREMENT>(MEASUREMENT_ESCAPABLE);
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
            let (start, end, escaped) = self.scan_escaped::<KEY>(KEY_ESCAPABLE);
            if start == end {
                return Err(self.error_at(start, Problem::ExpectedTagKey(self.found())));
            }
            let key = self.token(start, end, escaped, KEY_ESCAPABLE, Part::TagKey)?;
            if self.peek() != Some(b'=') {
                let problem = Problem::ExpectedTagEquals { key: key.into_owned(), found: self.found() };
                return Err(self.error_at(self.pos, problem));
            }
            self.pos += 1;
            let (start, end, escaped) = self.scan_escaped::<KEY>(KEY_ESCAPABLE);
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
            let (start, end, escaped) = self.scan_escaped::<KEY>(KEY_ESCAPABLE);
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
        let end = run_end::<FIELD_VALUE>(bytes, start);
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
        let end = timestamp_end(bytes, start);
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
