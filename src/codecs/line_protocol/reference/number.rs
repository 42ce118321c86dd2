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

pub(super) fn parse_bool(text: &[u8]) -> Option<bool> {
    match text {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Some(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Some(false),
        _ => None,
    }
}
