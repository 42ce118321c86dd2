//! Labels decoded once per series key (issue #17 item 1).
//!
//! A sender repeats a series' measurement and tags in every line, and the
//! labels a line decodes to depend on those bytes (and the field key)
//! alone. So the labels are built the first time a key is seen and kept,
//! shared: every later sample of the series gets a reference to them
//! instead of building and allocating its own copy. The stored copy is
//! also the only copy of the labels that samples in flight hold, however
//! many of them there are.
//!
//! The key is a 128-bit xxh3 digest of the line's raw series key (the bytes
//! from the measurement to the end of the last tag, escapes included, since
//! they decide the decoded labels) seeded per process at random, so a
//! sender cannot aim for another series' entry; the low half picks the
//! entry and the high half checks it. A line whose measurement or last tag
//! value had escapes has no borrowed raw key and is decoded as before.
//!
//! What is stored depends on the line's numeric fields, as without the
//! table: one field, the sample's whole label set (name and tags); several,
//! the tags the line's samples share (each sample still owns its name).
//!
//! The table is bounded in entries and bytes ([`INTERN_MAX_SERIES`],
//! [`INTERN_MAX_BYTES`]), in [`INTERN_SHARDS`] independently locked parts;
//! a full part is emptied and fills again from the lines that follow.
//!
//! A key is stored only after its line parsed whole and passed every check,
//! and the digest also covers the limits the key alone is checked against
//! (label count, names and values, static labels: their fingerprint). So a
//! later line whose key is in the table needs neither its tags parsed nor
//! those checks repeated: the decoder then parses only its fields and
//! timestamp, and checks only what depends on them (field count, metric
//! names, timestamp window).

use std::hash::BuildHasher;
use std::sync::OnceLock;

use parking_lot::RwLock;

use crate::model::SeriesMap;
use crate::model::{Labels, SharedPart};

/// Most series keys the table holds (for the whole process), at [`INTERN_MAX_BYTES`].
pub const INTERN_MAX_SERIES: usize = 1 << 18;
/// Most bytes the table holds, entries and labels (for the whole process), however large
/// `limits.memory_bytes` is; in the start-up memory budget when a receiver takes line protocol.
pub const INTERN_MAX_BYTES: u64 = 40 << 20;
/// The table takes at most this fraction (1/N) of `limits.memory_bytes`, so a small
/// budget that fitted before the table existed still fits (256 MiB → 16 MiB).
pub const INTERN_MEMORY_SHARE: u64 = 16;

/// The table's bounds under `limits.memory_bytes = memory_bytes`: (series, bytes).
pub fn intern_bounds(memory_bytes: u64) -> (usize, u64) {
    let bytes = INTERN_MAX_BYTES.min(memory_bytes / INTERN_MEMORY_SHARE);
    let series = (INTERN_MAX_SERIES as u64).saturating_mul(bytes) / INTERN_MAX_BYTES;
    (series as usize, bytes)
}

/// The `limits.memory_bytes` the global table is sized from (set once at start-up,
/// before the first line is decoded; [`INTERN_MAX_BYTES`] when never set).
static SIZED_FROM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);
/// Independently locked parts.
const INTERN_SHARDS: usize = 32;
/// Bytes an entry's slot costs at most, besides its shared labels (see
/// [`SharedPart::heap_bytes`]): 8 key bytes, 8 check bytes, a pointer and a
/// control byte, in a just-grown table (7 of 16 buckets in use).
const ENTRY_OVERHEAD: usize = (25 * 16usize).div_ceil(7);

struct Entry {
    check: u64,
    /// The labels, packed (see [`Labels::shared_whole`]).
    labels: SharedPart,
}

struct Shard {
    entries: SeriesMap<Entry>,
    bytes: usize,
}

/// The process's table of decoded series keys (see the module docs).
pub struct SeriesInterner {
    shards: Box<[RwLock<Shard>]>,
    seed: u64,
    max_entries: usize,
    max_bytes: usize,
}

/// Where in the table a line's labels are: the digest of its raw series key
/// (and, for a one-field line, of its field key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InternKey {
    key: u64,
    check: u64,
}

impl SeriesInterner {
    fn new(max_entries: usize, max_bytes: usize) -> Self {
        SeriesInterner {
            shards: (0..INTERN_SHARDS)
                .map(|_| RwLock::new(Shard { entries: SeriesMap::default(), bytes: 0 }))
                .collect(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x7473_7265_6c61_7931u64),
            max_entries: max_entries.div_ceil(INTERN_SHARDS),
            max_bytes: max_bytes.div_ceil(INTERN_SHARDS),
        }
    }

    /// The one table every line-protocol decoder of the process uses.
    pub fn global() -> &'static SeriesInterner {
        static TABLE: OnceLock<SeriesInterner> = OnceLock::new();
        TABLE.get_or_init(|| {
            let (series, bytes) = intern_bounds(SIZED_FROM.load(std::sync::atomic::Ordering::Relaxed));
            SeriesInterner::new(series, bytes as usize)
        })
    }

    /// Sizes the global table from `limits.memory_bytes` (see [`intern_bounds`]). Only the
    /// first call before the table's first use counts: a reloaded configuration keeps the
    /// size the process started with.
    pub fn size_global_from(memory_bytes: u64) {
        let _ = SIZED_FROM.compare_exchange(
            u64::MAX,
            memory_bytes,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// The key of a line's tags (`field` `None`, for a line with several
    /// numeric fields) or of one field's whole label set, decoded under limits
    /// whose [`DecodeLimits::key_checks_fingerprint`] is `checks`: an entry
    /// stands for labels that passed those limits' checks (see the module docs).
    ///
    /// [`DecodeLimits::key_checks_fingerprint`]: crate::codecs::limits::DecodeLimits::key_checks_fingerprint
    #[inline]
    pub fn key(&self, raw_series_key: &[u8], field: Option<&str>, checks: u64) -> InternKey {
        let seed = self.seed ^ checks;
        let seed = match field {
            None => seed,
            Some(field) => seed ^ xxhash_rust::xxh3::xxh3_64(field.as_bytes()).rotate_left(1) ^ 1,
        };
        let d = xxhash_rust::xxh3::xxh3_128_with_seed(raw_series_key, seed);
        InternKey { key: d as u64, check: (d >> 64) as u64 }
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        &self.shards[(key >> 59) as usize % INTERN_SHARDS]
    }

    /// The stored labels of `key` (a reference, no copy).
    #[inline]
    pub fn get(&self, key: InternKey) -> Option<Labels> {
        let shard = self.shard(key.key).read();
        shard
            .entries
            .get(&key.key)
            .filter(|e| e.check == key.check)
            .map(|e| Labels::from_shared_whole(e.labels.clone()))
    }

    /// Stores `labels` under `key` and returns them shared (clones are
    /// references to the stored copy).
    pub fn insert(&self, key: InternKey, labels: Labels) -> Labels {
        let labels = labels.share();
        let Some(packed) = labels.shared_whole().cloned() else { return labels };
        let cost = ENTRY_OVERHEAD + packed.heap_bytes();
        let mut shard = self.shard(key.key).write();
        let shard = &mut *shard;
        if shard.entries.len() >= self.max_entries || shard.bytes + cost > self.max_bytes {
            shard.entries.clear();
            shard.bytes = 0;
        }
        let entry = Entry { check: key.check, labels: packed };
        match shard.entries.insert(key.key, entry) {
            Some(old) => shard.bytes = shard.bytes + cost - (ENTRY_OVERHEAD + old.labels.heap_bytes()),
            None => shard.bytes += cost,
        }
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l = Labels::new();
        for (n, v) in pairs {
            l.push(n, v);
        }
        l
    }

    #[test]
    fn the_table_takes_a_sixteenth_of_the_memory_limit_up_to_its_cap() {
        assert_eq!(intern_bounds(256 << 20), (104_857, 16 << 20));
        assert_eq!(intern_bounds(1 << 30), (INTERN_MAX_SERIES, INTERN_MAX_BYTES));
        assert_eq!(intern_bounds(u64::MAX), (INTERN_MAX_SERIES, INTERN_MAX_BYTES));
        assert_eq!(intern_bounds(0), (0, 0));
    }

    #[test]
    fn a_stored_key_returns_its_labels_shared() {
        let table = SeriesInterner::new(1024, 1 << 20);
        let key = table.key(b"cpu,host=a", Some("usage"), 0);
        assert_eq!(table.get(key), None);
        let stored = table.insert(key, labels(&[("__name__", "cpu_usage"), ("host", "a")]));
        let again = table.get(key).expect("stored");
        assert_eq!(again, stored);
        assert!(again.shares_storage_with(&stored));
    }

    #[test]
    fn the_field_and_the_tags_keys_differ() {
        let table = SeriesInterner::new(1024, 1 << 20);
        let tags = table.key(b"cpu,host=a", None, 0);
        assert_ne!(tags, table.key(b"cpu,host=a", Some("usage"), 0));
        assert_ne!(table.key(b"cpu,host=a", Some("a"), 0), table.key(b"cpu,host=a", Some("b"), 0));
        assert_ne!(tags, table.key(b"cpu,host=b", None, 0));
        // Other limits key the same bytes differently.
        assert_ne!(tags, table.key(b"cpu,host=a", None, 1));
        // Another process (another seed) keys the same bytes differently.
        assert_ne!(tags, SeriesInterner::new(1024, 1 << 20).key(b"cpu,host=a", None, 0));
    }

    #[test]
    fn a_full_part_is_emptied_and_the_table_stays_bounded() {
        let (entries, bytes) = (INTERN_SHARDS * 4, INTERN_SHARDS * 8 * (ENTRY_OVERHEAD + 40));
        let table = SeriesInterner::new(entries, bytes);
        for i in 0..10_000 {
            let key = table.key(format!("m,i={i}").as_bytes(), None, 0);
            table.insert(key, labels(&[("i", &i.to_string())]));
            assert_eq!(table.get(key).as_ref().and_then(|l| l.get("i")), Some(i.to_string().as_str()));
        }
        for shard in table.shards.iter() {
            let shard = shard.read();
            assert!(shard.entries.len() <= 4, "{} entries in a part", shard.entries.len());
            assert!(shard.bytes <= bytes / INTERN_SHARDS);
        }
    }
}
