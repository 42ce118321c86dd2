//! Where the next byte that may end a token is: the fast path's only scan of the body.
//!
//! The body is classified 64 bytes at a time into a bitmask of "stop" bytes (one bit per
//! byte); the mask of the current window is kept between calls, so finding the next token
//! boundary usually costs a shift and a trailing-zero count, and every byte of the body is
//! classified once.

/// Whether the fast path stops at `c`: the token separators (space, comma, `=`), the end of a
/// line, and the bytes that make it leave a line to the general parser wherever they are
/// (control bytes, DEL, backslash). All are ASCII, so a stop is always on a character
/// boundary. (A double quote needs no stop: a string field value starts with one, which the
/// fast path does not take, and anywhere else it is an ordinary byte or spoils a number.)
#[inline(always)]
pub(super) const fn is_stop(c: u8) -> bool {
    c <= b' ' || matches!(c, b',' | b'=' | b'\\' | 0x7f)
}

/// The stops of one 64-byte window of the body, aligned on a multiple of 64, taken in order.
#[derive(Clone, Copy)]
pub(super) struct Stops {
    /// Offset of the window's first byte.
    base: usize,
    /// Bit `i` set when the byte at `base + i` is a stop not yet taken; bits past the
    /// body's end are clear.
    mask: u64,
    /// The window holds every stop from here on: one past the last stop taken, or later
    /// (see [`Self::taken_to`]).
    taken_to: usize,
    /// Whether the CPU has AVX2 (32 bytes per step instead of 16).
    wide: bool,
}

impl Stops {
    pub(super) fn new(bytes: &[u8]) -> Self {
        let wide = has_avx2();
        Stops { base: 0, mask: window(bytes, 0, wide), taken_to: 0, wide }
    }

    /// Positions the scanner at `from`: [`Self::take`] then returns the stops from there on.
    /// `bytes` must be the body the scanner was made for (here and in `take`).
    #[inline(always)]
    pub(super) fn seek(&mut self, bytes: &[u8], from: usize) {
        let offset = from.wrapping_sub(self.base);
        if offset >= 64 || from < self.taken_to {
            // Outside the window (ahead of it, or behind it after the general parser ran),
            // or before stops already taken.
            self.base = from & !63;
            self.mask = window(bytes, self.base, self.wide);
        }
        // `from - base` is below 64 now.
        self.mask &= u64::MAX << (from - self.base);
        self.taken_to = from;
    }

    /// Takes the next stop: its offset and byte, or `(bytes.len(), 0)` when there is none.
    #[inline(always)]
    pub(super) fn take(&mut self, bytes: &[u8]) -> (usize, u8) {
        while self.mask == 0 {
            self.base += 64;
            if self.base >= bytes.len() {
                // Stay on the last window (empty).
                self.base -= 64;
                return (bytes.len(), 0);
            }
            self.mask = window(bytes, self.base, self.wide);
        }
        let at = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        (at, bytes.get(at).copied().unwrap_or(0))
    }

    /// Records where the stops taken since the last [`Self::seek`] end: `to` must be past
    /// every one of them (`None`: unknown, the next seek reclassifies its window).
    #[inline(always)]
    pub(super) fn taken_to(&mut self, to: Option<usize>) {
        self.taken_to = to.unwrap_or(usize::MAX);
    }
}

/// The stop mask of the 64 bytes from `base` (fewer at the end of the body).
#[inline(never)]
fn window(bytes: &[u8], base: usize, wide: bool) -> u64 {
    match bytes.get(base..).and_then(|rest| rest.first_chunk::<64>()) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `wide` is only set when the CPU has AVX2 (see `has_avx2`).
        Some(chunk) if wide => unsafe { chunk_mask_avx2(chunk) },
        Some(chunk) => chunk_mask(chunk),
        None => {
            let rest = bytes.get(base..).unwrap_or_default();
            rest.iter().enumerate().fold(0, |mask, (i, &c)| mask | (u64::from(is_stop(c)) << i))
        }
    }
}

fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The stop mask of 64 bytes: two 32-byte AVX2 tests.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_mask_avx2(chunk: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    for (i, part) in chunk.chunks_exact(32).enumerate() {
        // SAFETY: the caller guarantees AVX2; the load reads the 32 bytes of `part`
        // (unaligned).
        let bits = unsafe {
            let x = _mm256_loadu_si256(part.as_ptr().cast());
            let equal = |c: u8| _mm256_cmpeq_epi8(x, _mm256_set1_epi8(c as i8));
            // Control bytes and space: x ≤ 0x20, unsigned.
            let low = _mm256_cmpeq_epi8(_mm256_min_epu8(x, _mm256_set1_epi8(0x20)), x);
            let stops = _mm256_or_si256(
                _mm256_or_si256(low, equal(b',')),
                _mm256_or_si256(equal(b'='), _mm256_or_si256(equal(b'\\'), equal(0x7f))),
            );
            _mm256_movemask_epi8(stops) as u32 as u64
        };
        mask |= bits << (32 * i);
    }
    mask
}

/// The stop mask of 64 bytes: four 16-byte SSE2 tests.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn chunk_mask(chunk: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut mask = 0u64;
    for (i, part) in chunk.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline; the load reads the 16 bytes of `part`
        // (unaligned).
        let bits = unsafe {
            let x = _mm_loadu_si128(part.as_ptr().cast());
            let equal = |c: u8| _mm_cmpeq_epi8(x, _mm_set1_epi8(c as i8));
            // Control bytes and space: x ≤ 0x20, unsigned.
            let low = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x20)), x);
            let stops = _mm_or_si128(
                _mm_or_si128(low, equal(b',')),
                _mm_or_si128(equal(b'='), _mm_or_si128(equal(b'\\'), equal(0x7f))),
            );
            _mm_movemask_epi8(stops) as u32 as u64
        };
        mask |= bits << (16 * i);
    }
    mask
}

/// The stop mask of 64 bytes: eight exact word tests.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn chunk_mask(chunk: &[u8; 64]) -> u64 {
    let mut mask = 0u64;
    for (i, word) in chunk.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        mask |= word_mask(word) << (8 * i);
    }
    mask
}

/// One bit per byte of `word` (lowest byte first) that is a stop. Exact for every byte (no
/// carries cross bytes), unlike the first-stop tests in `classes`.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn word_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = ONES * 0x7f;
    const HIGHS: u64 = ONES * 0x80;
    // Top bit set in bytes whose low seven bits are at least `n`: no carry leaves a byte.
    let at_least = |n: u8| (word & LOW7) + ONES * (0x80 - n as u64);
    let equal = |c: u8| {
        let x = word ^ (ONES * c as u64);
        // Top bit clear exactly in the zero bytes.
        !(((x & LOW7) + LOW7) | x) & HIGHS
    };
    // Bytes ≤ 0x20: below 0x21 in their low seven bits, and top bit clear.
    let low = !(at_least(0x21) | word) & HIGHS;
    let flags = low | equal(b',') | equal(b'=') | equal(b'\\') | equal(0x7f);
    // Gather the eight top bits into the low byte.
    ((flags >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_mask(bytes: &[u8]) -> u64 {
        bytes.iter().enumerate().fold(0, |mask, (i, &c)| mask | (u64::from(is_stop(c)) << i))
    }

    #[test]
    fn chunk_and_word_masks_agree_with_the_byte_test_for_every_byte_at_every_position() {
        for c in 0..=255u8 {
            for at in 0..64 {
                for filler in [b'a', 0x80, 0xff, 0x21, b'!', 0x7e, 0xa0, b' ', b'='] {
                    let mut chunk = [filler; 64];
                    chunk[at] = c;
                    assert_eq!(chunk_mask(&chunk), scalar_mask(&chunk), "{c:#x} at {at} in {filler:#x}");
                    #[cfg(target_arch = "x86_64")]
                    if has_avx2() {
                        // SAFETY: the CPU has AVX2.
                        let wide = unsafe { chunk_mask_avx2(&chunk) };
                        assert_eq!(wide, scalar_mask(&chunk), "{c:#x} at {at} in {filler:#x}");
                    }
                    let word = &chunk[at / 8 * 8..at / 8 * 8 + 8];
                    let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
                    assert_eq!(word_mask(word), scalar_mask(&chunk[at / 8 * 8..at / 8 * 8 + 8]), "{c:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn next_finds_every_stop_in_order_from_anywhere() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b"aZ09=, \\\"\r\n\t\x00\x1f\x7f\x80\xc3\xff-.#";
        for _ in 0..2_000 {
            let len = (next() % 300) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 6 == 0 { ALPHABET[(r >> 8) as usize % ALPHABET.len()] } else { b'a' + (r >> 8) as u8 % 26 }
                })
                .collect();
            let expected = |from: usize| (from..len).find(|&i| is_stop(body[i])).unwrap_or(len);
            let mut stops = Stops::new(&body);
            // Every stop in order from the start, then a few from random places (backward
            // and forward, as after the general parser ran).
            let mut from = 0;
            while from < len {
                let (at, byte) = stops.take(&body);
                assert_eq!(at, expected(from), "{body:?} from {from}");
                assert_eq!(byte, body.get(at).copied().unwrap_or(0));
                from = at + 1;
            }
            assert_eq!(stops.take(&body), (len, 0));
            stops.taken_to(Some(len));
            for _ in 0..20 {
                let from = (next() as usize) % (len + 1);
                stops.seek(&body, from);
                let mut expect_from = from;
                for _ in 0..((next() % 5) as usize) {
                    let (at, _) = stops.take(&body);
                    assert_eq!(at, expected(expect_from), "{body:?} from {from}");
                    expect_from = (at + 1).min(len);
                }
                stops.taken_to(if next() % 2 == 0 { Some(expect_from) } else { None });
            }
        }
    }
}
