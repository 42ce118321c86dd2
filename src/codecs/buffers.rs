//! Byte buffers kept between requests, for the bodies receivers read and the
//! bytes decoders unpack (remote-write's snappy).
//!
//! A buffer of a few hundred kilobytes, allocated and freed for every
//! request, is above the allocator's mmap threshold (`limits::allocator`): it
//! was mapped, faulted in page by page (the kernel zeroing each page) and
//! unmapped every time, 6-10 % of the daemon's CPU in the kernel under load
//! (BENCHMARKS.md, fourteenth session). A kept buffer is already resident. The
//! whole process keeps at most [`KEPT_BUFFER_BYTES`] of them: larger bodies
//! (a 200,000-line request) still get a buffer of their own, freed after use.

use crate::limits::KeptVecs;

/// Bytes of idle buffers the process keeps, all of them together (in the
/// start-up memory budget of any configuration with an HTTP receiver).
pub const KEPT_BUFFER_BYTES: usize = 6 << 20;

static POOL: KeptVecs<u8> = KeptVecs::new(KEPT_BUFFER_BYTES);

/// An empty buffer of at least `capacity` bytes.
pub fn take_empty(capacity: usize) -> Vec<u8> {
    let mut buf = POOL.take(capacity);
    buf.clear();
    buf
}

/// A buffer of exactly `len` initialized bytes, of unspecified content (only the
/// part beyond what its last user wrote is zeroed), for a caller that overwrites it.
pub fn take_len(len: usize) -> Vec<u8> {
    let mut buf = POOL.take(len);
    buf.resize(len, 0);
    buf
}

/// Hands a buffer back for later requests (freed if the pool is full).
pub fn give_back(buf: Vec<u8>) {
    POOL.give_back(buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_len_and_take_empty_give_what_they_say() {
        let mut b = take_len(3_000);
        b.iter_mut().for_each(|x| *x = 1);
        give_back(b);
        assert_eq!(take_len(100).len(), 100);
        assert!(take_empty(100).is_empty());
    }
}
