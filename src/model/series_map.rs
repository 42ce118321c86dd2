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

/// A hint to load `address` into the cache; no effect where unsupported. For
/// per-series tables and the data they point to, which are out of cache at
/// 200,000 series: asked for ahead of use, the miss overlaps other work.
#[inline(always)]
pub fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and never reads into
    // the program, whatever the address (SSE is part of every x86_64 CPU).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}
