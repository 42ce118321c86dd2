//! Field values and timestamps: integers, unsigned integers, floats and booleans.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NumberError {
    Syntax,
    Range,
}

pub(super) fn parse_u64(digits: &[u8]) -> Result<u64, NumberError> {
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
pub(super) fn eight_digits(chunk: [u8; 8]) -> Result<u32, NumberError> {
    eight_digits_word(u64::from_le_bytes(chunk))
}

/// [`eight_digits`] of the bytes of a little-endian word.
#[inline(always)]
fn eight_digits_word(word: u64) -> Result<u32, NumberError> {
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

pub(super) fn parse_i64(text: &[u8]) -> Result<i64, NumberError> {
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
pub(super) const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a decimal float: `-? digits? (. digits?)? ([eE] [+-]? digits)?` with at least one
/// mantissa digit. Non-finite results are out of range.
pub(super) fn parse_f64(text: &[u8]) -> Result<f64, NumberError> {
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

const ONES: u64 = 0x0101_0101_0101_0101;
/// Eight ASCII '0's.
const ZEROS: u64 = ONES * b'0' as u64;

/// 10^0 to 10^19 (every power of ten a u64 holds).
const POWERS_OF_TEN_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut i = 1;
    while i < 20 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

/// The value of the ASCII digits `bytes[start..end]` (1 to 19 of them), read a word at a
/// time from words that end at `end` (the bytes before `start` are read but ignored, so
/// `end` must be at least 8 and, past 16 digits, `end - 16` too). `None` when the run is
/// empty, longer, holds a non-digit, or is too close to the start of `bytes`: then
/// [`parse_u64`] decides (over the same digits, it gives the same value).
#[inline(always)]
pub(super) fn digits_before(bytes: &[u8], start: usize, end: usize) -> Option<u64> {
    let len = end.checked_sub(start)?;
    match len {
        1..=8 => up_to_eight_before(bytes, end, len).map(u64::from),
        9..=16 => {
            let high = up_to_eight_before(bytes, end - 8, len - 8)?;
            let low = up_to_eight_before(bytes, end, 8)?;
            Some(u64::from(high) * 100_000_000 + u64::from(low))
        }
        17..=19 => {
            let high = up_to_eight_before(bytes, end - 16, len - 16)?;
            let middle = up_to_eight_before(bytes, end - 8, 8)?;
            let low = up_to_eight_before(bytes, end, 8)?;
            Some(u64::from(high) * 10_000_000_000_000_000 + u64::from(middle) * 100_000_000 + u64::from(low))
        }
        _ => None,
    }
}

/// The value of the `len` (1 to 8) digits just before `end`: the word ending at `end` with
/// the bytes before the digits read as '0'.
#[inline(always)]
fn up_to_eight_before(bytes: &[u8], end: usize, len: usize) -> Option<u32> {
    let word = bytes.get(end.checked_sub(8)?..end)?.first_chunk::<8>()?;
    // The digits are the top `len` bytes of the little-endian word.
    let keep = u64::MAX << (8 * (8 - len));
    let word = (u64::from_le_bytes(*word) & keep) | (ZEROS & !keep);
    eight_digits_word(word).ok()
}

/// [`parse_f64`] of `bytes[start..end]` when it has the common shape `-?digits(.digits)?`
/// with at most 19 digits in all and a mantissa of at most 2^53, read as by
/// [`digits_before`]: the same one correctly rounded operation as [`parse_f64`], so the same
/// bits. `None` for anything else (then [`parse_f64`] decides).
#[inline(always)]
pub(super) fn plain_f64_before(bytes: &[u8], start: usize, end: usize) -> Option<f64> {
    let negative = bytes.get(start) == Some(&b'-');
    let start = start + usize::from(negative);
    let len = end.checked_sub(start)?;
    let (mantissa, fraction) = if (1..=8).contains(&len) {
        // One word: the number's bytes are its top `len` bytes. A dot is taken out by moving
        // the bytes below it up one place; the bytes below the number read as '0'.
        let word = u64::from_le_bytes(*bytes.get(end.checked_sub(8)?..end)?.first_chunk::<8>()?);
        let keep = u64::MAX << (8 * (8 - len));
        let number = word & keep;
        let dots = number ^ (ONES * u64::from(b'.'));
        // Exact zero-byte test: top bit set in the bytes equal to '.'.
        let dots = !(((dots & (ONES * 0x7f)) + ONES * 0x7f) | dots) & keep & (ONES * 0x80);
        if dots == 0 {
            let word = number | (ZEROS & !keep);
            (u64::from(eight_digits_word(word).ok()?), 0)
        } else if len == 1 {
            // A dot alone: no digit.
            return None;
        } else {
            let dot = dots.trailing_zeros() / 8;
            let below = (1u64 << (8 * dot)) - 1;
            let above = !below << 8;
            // Above the dot stays, below it moves up over the dot, and a '0' comes in.
            let joined = (number & above) | ((number & below & keep) << 8);
            let keep = keep << 8;
            let word = joined | (ZEROS & !keep);
            (u64::from(eight_digits_word(word).ok()?), 7 - dot as usize)
        }
    } else {
        let number = bytes.get(start..end)?;
        match number.iter().position(|&c| c == b'.') {
            None => {
                if number.len() > 19 {
                    return None;
                }
                (digits_before(bytes, start, end)?, 0)
            }
            Some(dot) => {
                let dot = start + dot;
                let (whole, fraction) = (dot - start, end - dot - 1);
                if whole + fraction > 19 {
                    return None;
                }
                let whole = if whole == 0 { 0 } else { digits_before(bytes, start, dot)? };
                let tail = if fraction == 0 { 0 } else { digits_before(bytes, dot + 1, end)? };
                (whole * POWERS_OF_TEN_U64[fraction] + tail, fraction)
            }
        }
    };
    if mantissa > 1 << 53 {
        return None;
    }
    let v = if fraction == 0 {
        mantissa as f64 * EXACT_POWERS_OF_TEN[0]
    } else {
        mantissa as f64 / EXACT_POWERS_OF_TEN[fraction]
    };
    Some(if negative { -v } else { v })
}

pub(super) fn parse_bool(text: &[u8]) -> Option<bool> {
    match text {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
