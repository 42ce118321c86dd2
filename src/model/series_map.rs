//! Tables keyed by a series hash or digest, which is already uniform
//! (xxh3): the hasher spreads the key, it does not hash it again.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Per-series tables are keyed by the series hash, which is already an
/// xxh3 digest: the hasher only spreads it, it does not hash again.
#[derive(Default, Clone, Copy)]
pub struct SeriesHasher(u64);

impl Hasher for SeriesHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are ever hashed; stay correct for anything else.
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        // The shard split used the high bits, so within a shard they are
        // nearly constant; an odd multiply mixes every bit into the high ones
        // the table uses for its tag bytes, and keeps it a bijection.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A table keyed by series hash.
pub type SeriesMap<V> = HashMap<u64, V, BuildHasherDefault<SeriesHasher>>;
