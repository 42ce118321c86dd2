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
