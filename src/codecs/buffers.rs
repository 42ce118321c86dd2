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

use parking_lot::Mutex;

/// Bytes of idle buffers the process keeps, all of them together (in the
/// start-up memory budget of any configuration with an HTTP receiver).
pub const KEPT_BUFFER_BYTES: usize = 8 << 20;

/// Idle buffers, at most `max_bytes` of capacity in all.
struct BufferPool {
    inner: Mutex<Idle>,
    max_bytes: usize,
}

struct Idle {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: BufferPool = BufferPool::new(KEPT_BUFFER_BYTES);

impl BufferPool {
    const fn new(max_bytes: usize) -> Self {
        BufferPool { inner: Mutex::new(Idle { buffers: Vec::new(), bytes: 0 }), max_bytes }
    }

    /// A buffer of at least `capacity` bytes: the smallest idle one that is large
    /// enough, else a new one. An idle buffer keeps the length (and the bytes) of
    /// its last use, so that a caller that overwrites it need not zero it again.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut idle = self.inner.lock();
        let best = (idle.buffers.iter().enumerate())
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let buf = idle.buffers.swap_remove(i);
                idle.bytes -= buf.capacity();
                buf
            }
            None => {
                drop(idle);
                Vec::with_capacity(capacity)
            }
        }
    }

    /// Keeps `buf` for a later request if there is room for it, else frees it.
    fn give_back(&self, buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        let mut idle = self.inner.lock();
        if idle.bytes + buf.capacity() <= self.max_bytes {
            idle.bytes += buf.capacity();
            idle.buffers.push(buf);
        }
    }
}

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
    fn the_pool_hands_out_the_smallest_buffer_that_fits_and_keeps_its_bound() {
        let pool = BufferPool::new(10_000);
        pool.give_back(Vec::with_capacity(8_000));
        pool.give_back(vec![7; 1_000]);
        // Over the bound with the two above: freed, not kept.
        pool.give_back(Vec::with_capacity(2_000));
        assert_eq!(pool.inner.lock().bytes, 9_000);
        // The small one, with what its last user left in it.
        let small = pool.take(500);
        assert_eq!((small.capacity(), small.len(), small[999]), (1_000, 1_000, 7));
        assert_eq!(pool.take(5_000).capacity(), 8_000);
        assert_eq!(pool.inner.lock().bytes, 0);
        // Nothing idle fits: a new buffer.
        assert!(pool.take(20_000).capacity() >= 20_000);
    }

    #[test]
    fn take_len_and_take_empty_give_what_they_say() {
        let mut b = take_len(3_000);
        b.iter_mut().for_each(|x| *x = 1);
        give_back(b);
        assert_eq!(take_len(100).len(), 100);
        assert!(take_empty(100).is_empty());
    }
}
