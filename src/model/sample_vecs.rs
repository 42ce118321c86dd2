//! Sample vectors kept between requests: the vector a decoder fills with a
//! whole request's samples (400 KB for 10,000 samples) lives only until the
//! ingest split moves its samples into parts of their own, and, allocated
//! fresh each time, was one of the page-faulting mappings of every request
//! (`limits::KeptVecs`). Decoders take one here; the split hands it back.

use super::Sample;
use crate::limits::{KeptVecs, MMAP_THRESHOLD};

/// Bytes of idle sample vectors the process keeps, all of them together (in
/// the start-up memory budget).
pub const KEPT_SAMPLE_VEC_BYTES: usize = 2 << 20;

static POOL: KeptVecs<Sample> = KeptVecs::new(KEPT_SAMPLE_VEC_BYTES);

/// An empty vector with room for at least `capacity` samples: a kept one when
/// it is large enough to be worth keeping, else a new one of that size.
pub fn take(capacity: usize) -> Vec<Sample> {
    if !worth_keeping(capacity) {
        return Vec::with_capacity(capacity);
    }
    let mut v = POOL.take(capacity);
    v.clear();
    v
}

/// Vectors below the allocator's mmap threshold come from the heap, which
/// recycles them cheaply: the pool's bytes are kept for the others.
fn worth_keeping(capacity: usize) -> bool {
    capacity.saturating_mul(std::mem::size_of::<Sample>()) >= MMAP_THRESHOLD
}

/// Hands a vector back once its samples are gone (any left are dropped).
pub fn give_back(mut v: Vec<Sample>) {
    if !worth_keeping(v.capacity()) {
        return;
    }
    v.clear();
    POOL.give_back(v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_large_vectors_are_kept_and_they_come_back_empty() {
        let large = (MMAP_THRESHOLD / std::mem::size_of::<Sample>()) + 1;
        assert!(!worth_keeping(16) && worth_keeping(large));
        let mut v = take(large);
        v.push(Sample::new([("__name__", "m")].into_iter().collect(), 1.0, 0));
        let ptr = v.as_ptr();
        give_back(v);
        give_back(Vec::with_capacity(16));
        let again = take(large);
        assert!(again.is_empty() && again.capacity() >= large);
        // Tests run in parallel on one process-wide pool: another test may have taken it.
        if again.as_ptr() == ptr {
            assert_eq!(again.capacity(), large);
        }
    }
}
