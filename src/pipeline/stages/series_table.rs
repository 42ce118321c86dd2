//! The table behind a shard's series ([`super::series::ShardSeries`]): open
//! addressing keyed by the series hash, linear probing, backward-shift
//! deletion, one flat array of `(hash, state)` buckets.
//!
//! Why not a `HashMap`: memory. A series costs one bucket here (32 bytes
//! with the shard's state), and the table grows by half at 4/5 full, so it
//! sits between 53 % and 80 % full. A `HashMap` doubles at 7/8, so right
//! after growing it is 44 % full: at 1,000,000 series on two shards it held
//! 84 bytes per series, and during the growth the old and the new table
//! both (BENCHMARKS.md, eleventh session). A bucket's place is also known
//! from the hash alone, so a caller can ask for it ahead ([`Self::prefetch`]).
//!
//! The series hash is the key as it is (it is already a good hash). The low
//! 32 bits pick the home bucket: the high bits picked the shard, so within
//! one shard they are not spread over the whole range.

/// The key of an empty bucket. A series whose hash is 0 is kept under 1, as
/// a collision of the two hashes (callers take series as equal when their
/// 64-bit hashes are).
const EMPTY: u64 = 0;
/// Fewest buckets of a table that holds anything.
const MIN_BUCKETS: usize = 64;

#[derive(Clone, Copy)]
struct Bucket<V> {
    key: u64,
    value: V,
}

/// Series state `V` by series hash (see the module docs).
pub struct SeriesTable<V> {
    buckets: Box<[Bucket<V>]>,
    len: usize,
}

impl<V: Copy + Default> Default for SeriesTable<V> {
    fn default() -> Self {
        SeriesTable { buckets: Box::default(), len: 0 }
    }
}

/// The key series `hash` is kept under (what [`SeriesTable::retain`] and
/// [`SeriesTable::keys`] hand back for it).
#[inline(always)]
pub fn key_of(hash: u64) -> u64 {
    if hash == EMPTY { 1 } else { hash }
}

#[inline(always)]
fn home(key: u64, buckets: usize) -> usize {
    ((u64::from(key as u32) * buckets as u64) >> 32) as usize
}

impl<V: Copy + Default> SeriesTable<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the bucket array.
    #[cfg(test)]
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.buckets)
    }

    /// Where `key` is (`Ok`), or the empty bucket that ends its probe (`Err`).
    #[inline]
    fn find(&self, key: u64) -> Result<usize, usize> {
        let n = self.buckets.len();
        if n == 0 {
            return Err(0);
        }
        let mut at = home(key, n);
        loop {
            match self.buckets[at].key {
                k if k == key => return Ok(at),
                EMPTY => return Err(at),
                _ => at = if at + 1 == n { 0 } else { at + 1 },
            }
        }
    }

    #[inline]
    pub fn get(&self, hash: u64) -> Option<&V> {
        self.find(key_of(hash)).ok().map(|at| &self.buckets[at].value)
    }

    #[inline]
    pub fn get_mut(&mut self, hash: u64) -> Option<&mut V> {
        self.find(key_of(hash)).ok().map(|at| &mut self.buckets[at].value)
    }

    /// Asks for the cache line of `hash`'s home bucket (a hint; a series a
    /// few buckets further on costs the next line at most).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        let n = self.buckets.len();
        if n > 0 {
            crate::model::prefetch(&self.buckets[home(key_of(hash), n)] as *const Bucket<V> as *const u8);
        }
    }

    /// Stores `value` under `hash`; returns the value it replaces.
    pub fn insert(&mut self, hash: u64, value: V) -> Option<V> {
        let key = key_of(hash);
        if (self.len + 1) * 5 > self.buckets.len() * 4 {
            self.resize((self.buckets.len() + self.buckets.len() / 2).max(MIN_BUCKETS));
        }
        match self.find(key) {
            Ok(at) => Some(std::mem::replace(&mut self.buckets[at].value, value)),
            Err(at) => {
                self.buckets[at] = Bucket { key, value };
                self.len += 1;
                None
            }
        }
    }

    /// Keeps the entries for which `keep` returns true (it may change them).
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut V) -> bool) {
        let n = self.buckets.len();
        if self.len == 0 {
            return;
        }
        // Start after an empty bucket: no run of full buckets wraps past it, so
        // a removal only ever moves buckets not yet visited into the one being
        // visited, and every entry is seen exactly once.
        let Some(empty) = self.buckets.iter().position(|b| b.key == EMPTY) else { return };
        let mut at = if empty + 1 == n { 0 } else { empty + 1 };
        while at != empty {
            let bucket = &mut self.buckets[at];
            if bucket.key == EMPTY || keep(bucket.key, &mut bucket.value) {
                at = if at + 1 == n { 0 } else { at + 1 };
            } else {
                self.remove_at(at);
            }
        }
    }

    /// Empties bucket `at`, moving later buckets of its run back so every
    /// entry stays reachable from its home without tombstones.
    fn remove_at(&mut self, at: usize) {
        let n = self.buckets.len();
        let mut hole = at;
        let mut next = if at + 1 == n { 0 } else { at + 1 };
        loop {
            let key = self.buckets[next].key;
            if key == EMPTY {
                break;
            }
            // The entry at `next` may fill the hole when the hole lies between
            // its home and where it is now.
            let from_home = (next + n - home(key, n)) % n;
            let from_hole = (next + n - hole) % n;
            if from_home >= from_hole {
                self.buckets[hole] = self.buckets[next];
                hole = next;
            }
            next = if next + 1 == n { 0 } else { next + 1 };
        }
        self.buckets[hole] = Bucket { key: EMPTY, value: V::default() };
        self.len -= 1;
    }

    /// Gives back memory after many series were forgotten, so a burst of
    /// series does not pin its peak for ever.
    pub fn shrink_if_sparse(&mut self) {
        if self.buckets.len() > 1024 && self.len < self.buckets.len() / 4 {
            self.resize((self.len * 2).max(MIN_BUCKETS));
        }
    }

    fn resize(&mut self, buckets: usize) {
        let empty = Bucket { key: EMPTY, value: V::default() };
        let old = std::mem::replace(&mut self.buckets, vec![empty; buckets].into_boxed_slice());
        for b in old.iter().filter(|b| b.key != EMPTY) {
            if let Err(at) = self.find(b.key) {
                self.buckets[at] = *b;
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.buckets.iter().filter(|b| b.key != EMPTY).map(|b| b.key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.buckets.iter().filter(|b| b.key != EMPTY).map(|b| &b.value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.buckets.iter_mut().filter(|b| b.key != EMPTY).map(|b| &mut b.value)
    }
}

/// Worst-case bytes one series costs in a table of `bucket`-byte buckets:
/// right after growing, 8 of 15 buckets are in use.
pub const fn worst_bytes_per_entry(bucket: usize) -> u64 {
    (bucket as u64 * 15).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::test_rng::Rng;

    /// Random inserts, replacements, lookups and removals (through `retain`),
    /// checked against a `HashMap` after every step; keys are drawn from a
    /// small range of homes so runs are long and wrap around the end.
    #[test]
    fn behaves_like_a_map_through_growth_removal_and_shrinking() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut table: SeriesTable<u64> = SeriesTable::default();
        let mut model: HashMap<u64, u64> = HashMap::new();
        for round in 0..40u32 {
            for _ in 0..500 {
                // Low bits from two narrow ranges, at the start and at the end of the
                // table: many keys share a home, and runs wrap around the end.
                let low = match rng.next() % 2 {
                    0 => (rng.next() % 512) | (u64::from(round) << 12),
                    _ => 0xffff_ffff - ((rng.next() % 512) | (u64::from(round) << 12)),
                };
                let key = (rng.next() & !0xffff_ffff) | low;
                let value = rng.next();
                assert_eq!(table.insert(key, value), model.insert(key_of(key), value), "insert {key:#x}");
            }
            let cut = rng.next();
            table.retain(|k, v| {
                *v = v.wrapping_add(1);
                !(k ^ cut).is_multiple_of(3)
            });
            model.retain(|k, _| !(k ^ cut).is_multiple_of(3));
            for v in model.values_mut() {
                *v = v.wrapping_add(1);
            }
            assert_eq!(table.len(), model.len(), "round {round}");
            for (k, v) in &model {
                assert_eq!(table.get(*k), Some(v), "round {round}: key {k:#x}");
            }
            let mut keys: Vec<u64> = table.keys().collect();
            keys.sort_unstable();
            let mut expected: Vec<u64> = model.keys().copied().collect();
            expected.sort_unstable();
            assert_eq!(keys, expected, "round {round}");
            assert!(table.len * 5 <= table.buckets.len() * 4, "over 4/5 full");
        }
        // Forget nearly everything: the table gives memory back.
        let before = table.heap_bytes();
        table.retain(|k, _| k.is_multiple_of(50));
        model.retain(|k, _| k.is_multiple_of(50));
        table.shrink_if_sparse();
        assert!(table.heap_bytes() < before / 4, "{} of {before} bytes kept", table.heap_bytes());
        for (k, v) in &model {
            assert_eq!(table.get(*k), Some(v));
        }
        assert_eq!(table.len(), model.len());
    }

    #[test]
    fn hash_zero_is_a_series_too() {
        let mut table: SeriesTable<u32> = SeriesTable::default();
        assert_eq!(table.insert(0, 7), None);
        assert_eq!(table.get(0), Some(&7));
        assert_eq!(table.len(), 1);
        table.retain(|_, _| false);
        assert!(table.is_empty());
        assert_eq!(table.get(0), None);
    }

    #[test]
    fn an_empty_table_holds_no_memory_and_finds_nothing() {
        let mut table: SeriesTable<u32> = SeriesTable::default();
        assert_eq!(table.heap_bytes(), 0);
        assert_eq!(table.get(42), None);
        assert_eq!(table.get_mut(42), None);
        table.prefetch(42);
        table.retain(|_, _| true);
        table.shrink_if_sparse();
        assert!(table.is_empty());
    }
}
