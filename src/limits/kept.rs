//! Vectors kept between requests, in a pool bounded in bytes.
//!
//! A vector of a few hundred kilobytes, allocated and freed for every request,
//! is above the allocator's mmap threshold ([`MMAP_THRESHOLD`](super::MMAP_THRESHOLD)):
//! it is mapped, faulted in page by page (the kernel zeroing each page) and
//! unmapped every time. A kept vector is already resident. Request bodies
//! (`codecs::buffers`) and the vectors of protobuf request walks
//! (`codecs::walk_vecs`) have pools; they are items of the start-up memory
//! budget.

use parking_lot::Mutex;

/// Idle vectors, at most `max_bytes` of capacity in all.
pub struct KeptVecs<T> {
    inner: Mutex<Idle<T>>,
    max_bytes: usize,
}

struct Idle<T> {
    vecs: Vec<Vec<T>>,
    bytes: usize,
}

impl<T> Idle<T> {
    /// Takes idle vector `i` out, and its bytes out of the count.
    fn remove(&mut self, i: usize) -> Vec<T> {
        let v = self.vecs.swap_remove(i);
        self.bytes -= KeptVecs::bytes_of(&v);
        v
    }
}

impl<T> KeptVecs<T> {
    pub const fn new(max_bytes: usize) -> Self {
        KeptVecs { inner: Mutex::new(Idle { vecs: Vec::new(), bytes: 0 }), max_bytes }
    }

    fn bytes_of(v: &Vec<T>) -> usize {
        v.capacity().saturating_mul(std::mem::size_of::<T>())
    }

    /// A vector of at least `capacity` elements: the smallest idle one that is
    /// large enough, else a new (empty) one. An idle vector keeps what its last
    /// user left in it; callers that need it empty clear it.
    pub fn take(&self, capacity: usize) -> Vec<T> {
        let mut idle = self.inner.lock();
        let best = (idle.vecs.iter().enumerate())
            .filter(|(_, v)| v.capacity() >= capacity)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => idle.remove(i),
            None => {
                drop(idle);
                Vec::with_capacity(capacity)
            }
        }
    }

    /// The largest idle vector, else a new empty one: for a caller that cannot
    /// tell beforehand how much it will push.
    pub fn take_largest(&self) -> Vec<T> {
        let mut idle = self.inner.lock();
        let largest = (idle.vecs.iter().enumerate()).max_by_key(|(_, v)| v.capacity()).map(|(i, _)| i);
        largest.map_or_else(Vec::new, |i| idle.remove(i))
    }

    /// Keeps `v` for a later request if there is room for it, else frees it.
    pub fn give_back(&self, v: Vec<T>) {
        let bytes = Self::bytes_of(&v);
        if bytes == 0 {
            return;
        }
        let mut idle = self.inner.lock();
        if idle.bytes + bytes <= self.max_bytes {
            idle.bytes += bytes;
            idle.vecs.push(v);
        }
    }

    /// Bytes of capacity kept idle right now.
    pub fn idle_bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_hands_out_the_smallest_vector_that_fits_and_keeps_its_bound() {
        let pool = KeptVecs::<u8>::new(10_000);
        pool.give_back(Vec::with_capacity(8_000));
        pool.give_back(vec![7; 1_000]);
        // Over the bound with the two above: freed, not kept.
        pool.give_back(Vec::with_capacity(2_000));
        assert_eq!(pool.idle_bytes(), 9_000);
        // The small one, with what its last user left in it.
        let small = pool.take(500);
        assert_eq!((small.capacity(), small.len(), small[999]), (1_000, 1_000, 7));
        assert_eq!(pool.take(5_000).capacity(), 8_000);
        assert_eq!(pool.idle_bytes(), 0);
        // Nothing idle fits: a new vector.
        assert!(pool.take(20_000).capacity() >= 20_000);
    }

    #[test]
    fn the_bound_counts_bytes_not_elements() {
        let pool = KeptVecs::<u64>::new(1_000);
        pool.give_back(Vec::with_capacity(100)); // 800 bytes
        pool.give_back(Vec::with_capacity(100)); // would be 1,600: freed
        assert_eq!(pool.idle_bytes(), 800);
        pool.give_back(Vec::with_capacity(10)); // 80 more: kept
        assert_eq!(pool.take_largest().capacity(), 100);
        assert_eq!(pool.take_largest().capacity(), 10);
        assert_eq!(pool.take_largest().capacity(), 0);
    }
}
