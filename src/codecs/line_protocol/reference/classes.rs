//! Which bytes may appear where in a line, as one lookup table.

/// Bytes that may appear unescaped in a measurement name.
pub(super) const MEASUREMENT: u8 = 1;
/// Bytes that may appear unescaped in a tag key, tag value or field key.
pub(super) const KEY: u8 = 1 << 1;
/// Bytes a non-string field value is taken from (it ends at ',', space, CR or LF).
pub(super) const FIELD_VALUE: u8 = 1 << 2;
/// Bytes allowed in a comment line.
pub(super) const COMMENT: u8 = 1 << 3;
/// Bytes a timestamp is taken from.
pub(super) const TIMESTAMP: u8 = 1 << 4;
/// Bytes that a backslash escapes in a measurement name.
pub(super) const MEASUREMENT_ESCAPABLE: u8 = 1 << 5;
/// Bytes that a backslash escapes in tag keys, tag values and field keys.
pub(super) const KEY_ESCAPABLE: u8 = 1 << 6;

pub(super) const fn byte_classes() -> [u8; 256] {
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
        if c == b' ' || c == b',' {
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
pub(super) fn is(class: u8, c: u8) -> bool {
    CLASSES[c as usize] & class != 0
}

/// Where a run of `CLASS` bytes starting at `from` ends: the first byte at or after `from`
/// outside the class, or the end of `bytes`. Sixteen bytes are tested per step (SSE2), then
/// eight (one word), and the last few bytes of the body by the table. `CLASS` is one of
/// [`MEASUREMENT`], [`KEY`], [`FIELD_VALUE`], or [`TIMESTAMP`], for which the run stops at
/// every non-digit (see [`timestamp_end`]).
#[inline(always)]
pub(super) fn run_end<const CLASS: u8>(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
        let flags = vector_stops::<CLASS>(chunk);
        if flags != 0 {
            return i + flags.trailing_zeros() as usize;
        }
        i += 16;
    }
    while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let flags = word_stops::<CLASS>(u64::from_le_bytes(*chunk));
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < bytes.len() && is(CLASS, bytes[i]) {
        i += 1;
    }
    i
}

/// The bytes of a 16-byte chunk that end a run of `CLASS` (see [`run_end`]), one bit each.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn vector_stops<const CLASS: u8>(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of the x86_64 baseline, so its instructions are always there; the
    // one load reads exactly the 16 bytes of `chunk` (unaligned).
    unsafe {
        let x = _mm_loadu_si128(chunk.as_ptr().cast());
        let equal = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
        // Control bytes and space: x ≤ 0x20, unsigned.
        let low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x20)), x);
        let measurement = || _mm_or_si128(_mm_or_si128(low, equal(0x7f)), _mm_or_si128(equal(b','), equal(b'\\')));
        let stops = match CLASS {
            MEASUREMENT => measurement(),
            KEY => _mm_or_si128(measurement(), equal(b'=')),
            FIELD_VALUE => {
                _mm_or_si128(_mm_or_si128(equal(b','), equal(b' ')), _mm_or_si128(equal(b'\r'), equal(b'\n')))
            }
            _ => {
                // Non-digits: x - '0' above 9, unsigned.
                let d = _mm_sub_epi8(x, _mm_set1_epi8(b'0' as i8));
                let digits = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
                return !(_mm_movemask_epi8(digits) as u32) & 0xffff;
            }
        };
        _mm_movemask_epi8(stops) as u32
    }
}

/// The bytes of a word that end a run of `CLASS` (see [`run_end`]), by the top bit of each.
#[inline(always)]
const fn word_stops<const CLASS: u8>(word: u64) -> u64 {
    match CLASS {
        MEASUREMENT => measurement_stops(word),
        KEY => key_stops(word),
        FIELD_VALUE => field_value_stops(word),
        _ => digit_stops(word),
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = ONES * 0x80;

// The word tests below flag a byte by setting its top bit. Each is exact for the lowest
// flagged byte (a borrow only runs from a flagged byte into the bytes above it), so the
// lowest flag of their union is the first byte that stops a token.

/// Flags the bytes below `n` (`n` ≤ 0x80; bytes ≥ 0x80 are never flagged).
#[inline(always)]
const fn below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * n as u64) & !word & HIGHS
}

/// Flags the bytes equal to `c`.
#[inline(always)]
const fn equal(word: u64, c: u8) -> u64 {
    below(word ^ (ONES * c as u64), 1)
}

/// The bytes of a word that end a measurement name: control bytes, space, comma, backslash
/// (the complement of [`MEASUREMENT`]).
#[inline(always)]
const fn measurement_stops(word: u64) -> u64 {
    below(word, 0x21) | equal(word, 0x7f) | equal(word, b',') | equal(word, b'\\')
}

/// The bytes of a word that end a tag key, tag value or field key: those of
/// [`measurement_stops`] and `=` (the complement of [`KEY`]).
#[inline(always)]
const fn key_stops(word: u64) -> u64 {
    measurement_stops(word) | equal(word, b'=')
}

/// The bytes of a word that end a non-string field value: comma, space, CR, LF (the
/// complement of [`FIELD_VALUE`]).
#[inline(always)]
const fn field_value_stops(word: u64) -> u64 {
    equal(word, b',') | equal(word, b' ') | equal(word, b'\r') | equal(word, b'\n')
}

/// Where the run of [`TIMESTAMP`] bytes starting at `from` ends: digits a word at a time; a
/// minus sign (the reference decoder takes one anywhere into the token) continues the run.
#[inline(always)]
pub(super) fn timestamp_end(bytes: &[u8], from: usize) -> usize {
    let mut end = from;
    loop {
        end = run_end::<TIMESTAMP>(bytes, end);
        if bytes.get(end) != Some(&b'-') {
            return end;
        }
        end += 1;
    }
}

/// The bytes of a word that are not ASCII digits. A timestamp is a run of digits and minus
/// signs: the word test stops at a minus sign, the caller steps over it ([`TIMESTAMP`] is
/// the table class for the last bytes).
#[inline(always)]
const fn digit_stops(word: u64) -> u64 {
    // Below '0' sets the top bit when '0' is subtracted, above '9' when 0x46 is added (bytes
    // from 0x80 by one or the other); carries and borrows start only at flagged bytes.
    (word.wrapping_sub(ONES * b'0' as u64) | word.wrapping_add(ONES * 0x46)) & HIGHS
}

/// What a backslash followed by `c` stands for inside a string field value, if anything.
#[inline]
pub(super) fn string_escape(c: u8) -> Option<u8> {
    match c {
        b'\\' => Some(b'\\'),
        b'"' => Some(b'"'),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        _ => None,
    }
}
