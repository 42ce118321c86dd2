//! Lines whose series key the table already knows (issue #17 item 1): only their fields
//! and timestamp are parsed, and the table slots of the lines ahead are asked for while the
//! parser works.

use std::collections::VecDeque;
use std::ops::Range;

use super::point::Point;
use super::samples::{check_fields, name_label};
use super::stops::Stops;
use crate::codecs::intern::{InternKey, SeriesInterner};
use crate::codecs::limits::{Checker, DecodeLimits, LimitError};
use crate::codecs::report::DecodeSummary;
use crate::model::{MetricKind, Sample};

#[cfg(test)]
thread_local! {
    /// Lines this thread decoded from a known series key (the tests check the path ran).
    pub(super) static KNOWN_LINES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How far ahead of the parser the table slots of lines are asked for: about 25 of the
/// usual lines, time enough for a slot to arrive from memory before its line needs it.
pub(super) const LOOKAHEAD_BYTES: usize = 2048;
/// How far ahead of the parser the labels of a line whose slot was asked for are asked
/// for in turn: by then the slot is in cache, and it says where they are.
pub(super) const LABELS_LOOKAHEAD_BYTES: usize = 1024;

/// Asks for the table slots of the lines ahead of the parser (see
/// [`SeriesInterner::prefetch`]). At 200,000 series the table is out of cache and a
/// lookup that waits for its slot costs a miss per line; asked for ahead, the misses of
/// several lines overlap. The key of a line is guessed from its first separators (a line
/// with escapes or strings may be guessed wrong, which only wastes the hint) and kept, so
/// the parser, once there, takes it instead of hashing again if it is the key it needs:
/// the same raw series key and field key, compared byte for byte.
pub(super) struct Lookahead {
    /// The lookahead's own walk over the body's separators (see [`Stops`]).
    stops: Stops,
    /// Start of the first line not yet looked at.
    next_line: usize,
    /// Keys of the lines looked at and not yet reached by the parser, in order.
    keys: VecDeque<GuessedKey>,
    /// How many of `keys`, from the front, had their labels asked for too.
    labels_asked: usize,
}

struct GuessedKey {
    /// Whether the table seemed not to hold the key when its labels were asked for
    /// (see [`Lookahead::looks_new`]).
    absent: bool,
    /// The raw series key's range in the body.
    raw: Range<usize>,
    /// The field key's range, for a line that looked like one field.
    field: Option<Range<usize>>,
    key: InternKey,
}

impl Lookahead {
    pub(super) fn new(body: &[u8]) -> Self {
        Lookahead { stops: Stops::new(body), next_line: 0, keys: VecDeque::new(), labels_asked: 0 }
    }

    /// Asks for the table slots of the lines that start before `parsed +`
    /// [`LOOKAHEAD_BYTES`], and for the labels of those before `parsed +`
    /// [`LABELS_LOOKAHEAD_BYTES`].
    #[inline]
    pub(super) fn prefetch_from(&mut self, body: &[u8], parsed: usize, interner: &SeriesInterner, salt: u64) {
        let labels_until = parsed.saturating_add(LABELS_LOOKAHEAD_BYTES);
        while let Some(guessed) = self.keys.get_mut(self.labels_asked)
            && guessed.raw.start < labels_until
        {
            guessed.absent = !interner.prefetch_labels(guessed.key);
            self.labels_asked += 1;
        }
        let until = parsed.saturating_add(LOOKAHEAD_BYTES).min(body.len());
        while self.next_line < until {
            let start = self.next_line;
            // The series key: up to the first space.
            let mut tagged = false;
            let (mut at, mut stop) = loop {
                match self.stops.take(body) {
                    (_, b',') => tagged = true,
                    (_, b'=') => {}
                    other => break other,
                }
            };
            let mut guess = None;
            if stop == b' ' && at > start {
                let raw = start..at;
                // The first field's key, and whether another field follows its value.
                let (equals, after_key) = self.stops.take(body);
                (at, stop) = (equals, after_key);
                if after_key == b'=' {
                    (at, stop) = self.stops.take(body);
                    guess = match stop {
                        b',' if tagged => Some((raw, None)),
                        b',' => None,
                        _ => Some((raw.clone(), Some(raw.end + 1..equals))),
                    };
                }
            }
            // On to the end of the line.
            while stop != b'\n' && at < body.len() {
                (at, stop) = self.stops.take(body);
            }
            self.next_line = at + 1;
            if let Some((raw, field)) = guess {
                let key = interner.key(&body[raw.clone()], field.clone().map(|f| &body[f]), salt);
                interner.prefetch(key);
                self.keys.push_back(GuessedKey { absent: false, raw, field, key });
            }
        }
    }

    /// Whether the line starting at `at` looks like one of a series key the table does not
    /// hold (its slot, read ahead, held another key): such a line is better parsed whole at
    /// once than parsed from its fields on, looked up, and parsed again. Only a guess; both
    /// ways decode a line the same.
    #[inline]
    pub(super) fn looks_new(&mut self, at: usize) -> bool {
        self.pass_lines_before(at);
        self.keys.front().is_some_and(|k| k.raw.start == at && k.absent)
    }

    /// Forgets the keys of lines that start before `at` (the parser is past them).
    #[inline]
    fn pass_lines_before(&mut self, at: usize) {
        while self.keys.front().is_some_and(|k| k.raw.start < at) {
            self.forget_front();
        }
    }

    #[inline]
    fn forget_front(&mut self) {
        self.keys.pop_front();
        self.labels_asked = self.labels_asked.saturating_sub(1);
    }

    /// The table key of the raw series key `body[raw]` with `field`: the one worked out
    /// ahead if it was guessed right, else worked out now.
    #[inline]
    fn key(
        &mut self,
        body: &[u8],
        raw: Range<usize>,
        field: Option<&[u8]>,
        interner: &SeriesInterner,
        salt: u64,
    ) -> InternKey {
        self.pass_lines_before(raw.start);
        if let Some(guessed) = self.keys.front()
            && guessed.raw == raw
            && guessed.field.clone().map(|f| &body[f]) == field
        {
            let key = guessed.key;
            self.forget_front();
            return key;
        }
        interner.key(&body[raw], field, salt)
    }
}

/// Why a line of a known series key was not accepted.
pub(super) enum Stop {
    /// The body holds more samples than the request may: decoding stops.
    OverSampleLimit,
    /// The line breaks a limit (already counted in the summary).
    Refused(LimitError),
}

/// A line parsed only from its fields on ([`Parsed::Keyed`](super::parser::Parsed::Keyed)), whose series key the table
/// may know (issue #17 item 1: on a hit, only values and the timestamp are parsed).
///
/// The table holds a key only after a line with it parsed whole and passed every check,
/// under limits with the same [`DecodeLimits::key_checks_fingerprint`] (it is part of the
/// key). What those checks decided from the key alone — that it parses, has no `__name__`
/// tag, and its tags are within the label limits — therefore holds for every line with the
/// key; what depends on the rest of the line is checked here, in `check_point`'s order.
pub(super) struct KnownLine<'b> {
    pub(super) body: &'b [u8],
    /// The series key's range in `body`.
    pub(super) raw_key: Range<usize>,
    pub(super) measurement: &'b str,
}

impl KnownLine<'_> {
    /// Appends the line's samples (counted in `summary`) built from the stored labels;
    /// `None`, with nothing changed, when the table does not know the key (the caller parses
    /// the line whole).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode(
        &self,
        point: &Point<'_>,
        ahead: &mut Lookahead,
        salt: u64,
        default_ns: i64,
        checker: &Checker<'_>,
        limits: &DecodeLimits,
        summary: &mut DecodeSummary,
        out: &mut Vec<Sample>,
    ) -> Option<Result<(), Stop>> {
        let interner = SeriesInterner::global();
        let numeric = point.fields.iter().filter(|f| f.value.as_f64().is_some()).count() as u64;
        let tagged = self.measurement.len() < self.raw_key.len();
        let raw = self.raw_key.clone();
        // The table holds whole label sets of one-field lines and the shared tags of tagged
        // lines with several; any other line is built whole, as `decode_body_limited` does.
        let stored = match numeric {
            1 => {
                let field = point.fields.iter().find(|f| f.value.as_f64().is_some())?;
                interner.get(ahead.key(self.body, raw, Some(field.key.as_bytes()), interner, salt))?
            }
            2.. if tagged => interner.get(ahead.key(self.body, raw, None, interner, salt))?,
            _ => return None,
        };
        let measurement = self.measurement;
        let timestamp_ms = point.timestamp_ns.unwrap_or(default_ns).div_euclid(1_000_000);
        if let Err(refusal) = check_fields(measurement, point, timestamp_ms, checker) {
            summary.rejected_lines += 1;
            summary.refused_lines += 1;
            summary.refused.add(refusal.reason(), numeric);
            return Some(Err(Stop::Refused(refusal)));
        }
        if summary.accepted_samples + numeric > limits.max_samples as u64 {
            summary.over_sample_limit = true;
            return Some(Err(Stop::OverSampleLimit));
        }
        summary.accepted_lines += 1;
        summary.non_numeric += point.fields.len() as u64 - numeric;
        summary.accepted_samples += numeric;
        #[cfg(test)]
        KNOWN_LINES.with(|n| n.set(n.get() + 1));
        let numeric_fields = point.fields.iter().filter_map(|f| Some((&f.key, f.value.as_f64()?)));
        if numeric == 1 {
            for (_, value) in numeric_fields {
                out.push(Sample { labels: stored.clone(), value, timestamp_ms, kind: MetricKind::Unspecified });
            }
        } else {
            for (field, value) in numeric_fields {
                let labels = name_label(measurement, field).then_shared(&stored);
                out.push(Sample { labels, value, timestamp_ms, kind: MetricKind::Unspecified });
            }
        }
        Some(Ok(()))
    }
}
