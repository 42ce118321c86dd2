//! Labels decoded once per series key (issue #17 item 1), for every decoder
//! whose series arrive as bytes that alone decide their labels: line protocol
//! (the measurement and tags of a line) and remote-write 1.0 (the `labels`
//! fields of a `TimeSeries`; see `codecs::remote_write::v1`).
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
//! sender cannot aim for another series' entry; its top bits pick the part,
//! its low 32 bits the entry, and 48 more of its bits check it (see [`Slot`]). A line whose measurement or last tag
//! value had escapes has no borrowed raw key and is decoded as before.
//!
//! What is stored depends on the line's numeric fields, as without the
//! table: one field, the sample's whole label set (name and tags); several,
//! the tags the line's samples share (each sample still owns its name).
//!
//! The table is bounded in entries and bytes ([`INTERN_MAX_SERIES`],
//! [`INTERN_MAX_BYTES`]), in [`INTERN_SHARDS`] independently locked parts.
//! A full part makes room for a new key by evicting the entry near its home
//! slot that was looked up least recently (a series that stopped), so under
//! series churn the live series keep their entries: emptying the whole part
//! instead would make every live series of it new again at once.
//!
//! A key is stored only after its line parsed whole and passed every check,
//! and the digest also covers the limits the key alone is checked against
//! (label count, names and values, static labels: their fingerprint). So a
//! later line whose key is in the table needs neither its tags parsed nor
//! those checks repeated: the decoder then parses only its fields and
//! timestamp, and checks only what depends on them (field count, metric
//! names, timestamp window).

use std::ffi::c_void;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use parking_lot::RwLock;

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
/// Bytes of slots per entry the table can hold: two slots of 16 bytes (key
/// bits and generation, check, pointer), since at most half the slots hold an entry. A part's slots
/// are allocated whole, so they count against its byte bound from the start;
/// the labels it holds (see [`SharedPart::heap_bytes`]) get the rest.
const ENTRY_OVERHEAD: usize = SLOTS_PER_ENTRY * std::mem::size_of::<Slot>();
/// Slots per entry a part has: at most half are in use, so a lookup mostly
/// reads its home slot and the next, in one cache line.
const SLOTS_PER_ENTRY: usize = 2;
/// Slots a lookup or an insert looks at from the home slot on; an insert
/// that finds none free (or a full part) evicts the least recently seen
/// entry among them (decoded again if its series comes back).
const MAX_PROBE: usize = 8;
/// A part's generation (its clock for "least recently seen") advances every
/// 1/N of its entries inserted: a lookup stamps its entry with the current
/// one, so an entry that nobody looked up for many generations belongs to a
/// series that stopped. Without inserts the clock stands still, and so does
/// every stamp (a lookup writes only when the generation moved on).
const GENERATIONS_PER_FILL: usize = 32;
/// An entry not looked up for this many generations (a quarter of the part
/// inserted since) is taken for a stopped series and evicted at once; else
/// the stalest of the slots swept goes. A new entry starts one generation
/// old, so a series seen once goes before one seen again.
const STALE_GENERATIONS: u16 = 8;
/// Slots a full part's clock hand passes over to find the entry to evict:
/// about 32 entries, so the stalest of them is almost always a stopped series
/// while any is left in the part.
const SWEEP: usize = 64;

/// How many series ahead [`SeriesInterner::prefetch_ahead`] asks for a slot…
const SLOT_LOOKAHEAD: usize = 8;
/// …and for the labels a slot points to.
const LABELS_LOOKAHEAD: usize = 4;

/// One place in a part: open addressing with linear probing, the entry
/// inline, so a lookup costs one cache miss, not two (control bytes, then
/// the entry), and its address is known from the key alone (see
/// [`SeriesInterner::prefetch`]). Its words are atomic, written only under the
/// part's write lock, so that [`SeriesInterner::prefetch_labels`] may read
/// them without the lock: what it reads there is only a hint.
///
/// 16 bytes, four to a cache line. A slot keeps 48 bits of the key's 128-bit
/// digest ([`key_tag`] and `check`); with the home slot and the part the
/// digest also chose, about 67 bits tell keys apart.
#[derive(Default)]
struct Slot {
    /// [`key_tag`] in the high half; the part's generation when the entry was
    /// last stored or looked up in the low half.
    tag: AtomicU32,
    /// [`InternKey::check`]'s low half.
    check: AtomicU32,
    /// The labels, packed ([`SharedPart::into_raw`]: the slot holds a
    /// reference); null: free.
    labels: AtomicPtr<c_void>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 16);

/// Bits 32–47 of the key, in the high half of a [`Slot::tag`]: its low half
/// chose the home slot and its top bits the part, so these add to them.
#[inline(always)]
fn key_tag(key: InternKey) -> u32 {
    ((key.key >> 32) as u32) << 16
}

impl Slot {
    #[inline(always)]
    fn holds(&self, key: InternKey) -> bool {
        self.tag.load(Ordering::Relaxed) & 0xffff_0000 == key_tag(key)
            && self.check.load(Ordering::Relaxed) == key.check as u32
            && !self.is_free()
    }

    /// The part's generation when the entry was last stored or looked up.
    #[inline(always)]
    fn seen(&self) -> u16 {
        self.tag.load(Ordering::Relaxed) as u16
    }

    /// Stamps the entry as looked up in `generation` (under the part's read lock:
    /// every reader that stamps writes the same word).
    #[inline(always)]
    fn stamp(&self, generation: u16) {
        let tag = self.tag.load(Ordering::Relaxed);
        if tag as u16 != generation {
            self.tag.store(tag & 0xffff_0000 | u32::from(generation), Ordering::Relaxed);
        }
    }

    #[inline(always)]
    fn is_free(&self) -> bool {
        self.labels.load(Ordering::Relaxed).is_null()
    }

    /// A new reference to the slot's labels. Only under the part's lock (read or
    /// write), which keeps the slot's own reference from being dropped meanwhile.
    #[inline(always)]
    fn labels(&self) -> Option<SharedPart> {
        let ptr = self.labels.load(Ordering::Relaxed);
        // SAFETY: a non-null pointer came from `SharedPart::into_raw` and the slot holds its
        // reference until `take` under the write lock, which the caller's lock excludes.
        (!ptr.is_null()).then(|| unsafe { SharedPart::clone_raw(ptr) })
    }

    /// Empties the slot, handing back its reference. Only under the part's write lock.
    fn take(&self) -> Option<SharedPart> {
        let ptr = self.labels.swap(std::ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: as in `labels`; the reference moves out of the slot.
        (!ptr.is_null()).then(|| unsafe { SharedPart::from_raw(ptr) })
    }

    /// Stores an entry in the free slot. Only under the part's write lock.
    fn fill(&self, key: InternKey, seen: u16, labels: SharedPart) {
        self.tag.store(key_tag(key) | u32::from(seen), Ordering::Relaxed);
        self.check.store(key.check as u32, Ordering::Relaxed);
        let old = self.labels.swap(labels.into_raw().cast_mut(), Ordering::Relaxed);
        debug_assert!(old.is_null(), "a slot is filled only when free");
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.take());
    }
}

struct Shard {
    /// Allocated at the first insert, never resized or freed while the table
    /// lives, so its address can be published for reading without the lock
    /// (only ever shared, never borrowed mutably: see [`Slot`]).
    slots: std::sync::Arc<[Slot]>,
    len: usize,
    bytes: usize,
    /// See [`GENERATIONS_PER_FILL`].
    generation: u16,
    /// Inserts since the generation last advanced.
    inserts: usize,
    /// The clock hand: the slot the next eviction to make room starts at.
    hand: usize,
}

impl Shard {
    /// The slots a key with home slot `home` may be in, in probe order.
    fn window(&self, home: usize) -> impl Iterator<Item = usize> + use<> {
        let len = self.slots.len();
        (0..MAX_PROBE.min(len)).map(move |step| (home + step) % len)
    }

    /// The occupied slot of the window from `home` seen least recently.
    fn stalest(&self, home: usize) -> Option<usize> {
        self.window(home)
            .filter(|&at| !self.slots[at].is_free())
            .max_by_key(|&at| self.generation.wrapping_sub(self.slots[at].seen()))
    }

    /// Evicts the stalest entry of the [`SWEEP`] slots from the clock hand on (the first
    /// one [`STALE_GENERATIONS`] old, if any); `false` when the part holds none to evict.
    fn evict_stale(&mut self) -> bool {
        let len = self.slots.len();
        let mut stalest: Option<(u16, usize)> = None;
        for _ in 0..SWEEP.min(len) {
            let at = self.hand;
            self.hand = if at + 1 == len { 0 } else { at + 1 };
            if self.slots[at].is_free() {
                continue;
            }
            let age = self.generation.wrapping_sub(self.slots[at].seen());
            if age >= STALE_GENERATIONS {
                self.evict(at);
                return true;
            }
            if stalest.is_none_or(|(oldest, _)| age > oldest) {
                stalest = Some((age, at));
            }
        }
        match stalest {
            Some((_, at)) => self.evict(at),
            None if self.len > 0 => return self.evict_any(),
            None => return false,
        }
        true
    }

    /// Evicts the first entry from the hand on (a part whose entries are far apart).
    fn evict_any(&mut self) -> bool {
        let len = self.slots.len();
        match (0..len).map(|step| (self.hand + step) % len).find(|&at| !self.slots[at].is_free()) {
            Some(at) => {
                self.evict(at);
                true
            }
            None => false,
        }
    }

    /// Frees slot `at` (its labels live on in the samples that hold them).
    fn evict(&mut self, at: usize) {
        if let Some(old) = self.slots[at].take() {
            self.len -= 1;
            self.bytes -= old.heap_bytes();
        }
    }
}

/// The process's table of decoded series keys (see the module docs).
pub struct SeriesInterner {
    shards: Box<[RwLock<Shard>]>,
    /// Each part's slots' address once allocated (0 before), read without the lock to
    /// prefetch a slot (a prefetch never faults; a stale address only wastes the hint).
    bases: Box<[AtomicUsize]>,
    seed: u64,
    max_entries: usize,
    max_bytes: usize,
    /// Slots of a part: [`SLOTS_PER_ENTRY`] per entry.
    slots_per_shard: usize,
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
        let max_entries = max_entries.div_ceil(INTERN_SHARDS);
        SeriesInterner {
            shards: (0..INTERN_SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        slots: std::sync::Arc::default(),
                        len: 0,
                        bytes: 0,
                        generation: 0,
                        inserts: 0,
                        hand: 0,
                    })
                })
                .collect(),
            bases: (0..INTERN_SHARDS).map(|_| AtomicUsize::new(0)).collect(),
            seed: std::collections::hash_map::RandomState::new().hash_one(0x7473_7265_6c61_7931u64),
            max_entries,
            // What the labels of a part may take: its bound less its slots.
            max_bytes: max_bytes.div_ceil(INTERN_SHARDS).saturating_sub(max_entries * ENTRY_OVERHEAD),
            slots_per_shard: max_entries * SLOTS_PER_ENTRY,
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
    pub fn key(&self, raw_series_key: &[u8], field: Option<&[u8]>, checks: u64) -> InternKey {
        let seed = self.seed ^ checks;
        let seed = match field {
            None => seed,
            Some(field) => seed ^ xxhash_rust::xxh3::xxh3_64(field).rotate_left(1) ^ 1,
        };
        let d = xxhash_rust::xxh3::xxh3_128_with_seed(raw_series_key, seed);
        InternKey { key: d as u64, check: (d >> 64) as u64 }
    }

    /// The part of `key`: its high bits (see [`Self::home`]).
    fn shard_index(key: u64) -> usize {
        (key >> 59) as usize % INTERN_SHARDS
    }

    /// The home slot of `key` among `slots` slots: multiply-shift (any count works) of the
    /// key's low half, since its high bits pick the part and so are alike within one.
    #[inline(always)]
    fn home(key: u64, slots: usize) -> usize {
        ((u64::from(key as u32) * slots as u64) >> 32) as usize
    }

    /// Asks for the slot of `key` ahead of [`Self::get`], without the lock.
    #[inline]
    pub fn prefetch(&self, key: InternKey) {
        let base = self.bases[Self::shard_index(key.key)].load(Ordering::Relaxed);
        if base != 0 {
            let at = base.wrapping_add(Self::home(key.key, self.slots_per_shard) * std::mem::size_of::<Slot>());
            crate::model::prefetch(at as *const u8);
        }
    }

    /// Asks for the labels of `key` ahead of [`Self::get`], without the lock, once its slot
    /// is in cache (some time after [`Self::prefetch`]): the labels are a cache line of
    /// their own, and [`Self::get`] writes to it (a new reference), so it would wait for it.
    /// Says whether the key looked present: only a guess (the slots are read without the
    /// lock, and only the first two of the window), for a caller choosing between two
    /// ways to the same outcome.
    #[inline]
    pub fn prefetch_labels(&self, key: InternKey) -> bool {
        let base = self.bases[Self::shard_index(key.key)].load(Ordering::Relaxed) as *const Slot;
        if base.is_null() {
            return false;
        }
        let len = self.slots_per_shard;
        let mut at = Self::home(key.key, len);
        for _ in 0..2.min(len) {
            // SAFETY: `base` is the address of a part's slots, `len` of them, published once
            // they were allocated; they are never freed or moved while the table lives (and
            // `&self` keeps it alive), and only ever accessed through shared references.
            let slot = unsafe { &*base.add(at) };
            // Read without the lock, the words may be torn across an insert: a wrong
            // address only wastes the hint (a prefetch never faults).
            if slot.tag.load(Ordering::Relaxed) & 0xffff_0000 == key_tag(key) {
                crate::model::prefetch(slot.labels.load(Ordering::Relaxed) as *const u8);
                return true;
            }
            at = if at + 1 == len { 0 } else { at + 1 };
        }
        false
    }

    /// The stored labels of `key` (a reference, no copy).
    #[inline]
    pub fn get(&self, key: InternKey) -> Option<Labels> {
        let shard = self.shards[Self::shard_index(key.key)].read();
        let slots = &shard.slots;
        if slots.is_empty() {
            return None;
        }
        // Every slot of the window is looked at: an eviction may have freed one before the
        // key's own.
        let mut at = Self::home(key.key, slots.len());
        for _ in 0..MAX_PROBE.min(slots.len()) {
            let slot = &slots[at];
            if slot.holds(key) {
                slot.stamp(shard.generation);
                return slot.labels().map(Labels::from_shared_whole);
            }
            at = if at + 1 == slots.len() { 0 } else { at + 1 };
        }
        None
    }

    /// The labels of the series keyed `key`: the stored ones, else what
    /// `build` makes of it (checking it), stored if it passed. No key (a
    /// series the decoder has no raw key for): `build` alone.
    #[inline]
    pub fn get_or_build<E>(
        &self,
        key: Option<InternKey>,
        build: impl FnOnce() -> Result<Labels, E>,
    ) -> Result<Labels, E> {
        let Some(key) = key else { return build() };
        match self.get(key) {
            Some(known) => Ok(known),
            None => build().map(|labels| self.insert(key, labels)),
        }
    }

    /// For decoders that key every series of a request first: asks for the
    /// slot of the series [`SLOT_LOOKAHEAD`] after the `i`th and for the
    /// labels of the one [`LABELS_LOOKAHEAD`] after it (its slot should be
    /// in cache by then), so that [`Self::get`] rarely waits for memory.
    #[inline]
    pub fn prefetch_ahead(&self, keys: &[Option<InternKey>], i: usize) {
        if let Some(Some(ahead)) = keys.get(i + SLOT_LOOKAHEAD) {
            self.prefetch(*ahead);
        }
        if let Some(Some(ahead)) = keys.get(i + LABELS_LOOKAHEAD) {
            self.prefetch_labels(*ahead);
        }
    }

    /// Stores `labels` under `key` and returns them shared (clones are
    /// references to the stored copy).
    pub fn insert(&self, key: InternKey, labels: Labels) -> Labels {
        let labels = labels.share();
        let Some(packed) = labels.shared_whole().cloned() else { return labels };
        if self.slots_per_shard == 0 {
            return labels;
        }
        let cost = packed.heap_bytes();
        let index = Self::shard_index(key.key);
        let mut shard = self.shards[index].write();
        let shard = &mut *shard;
        if shard.slots.is_empty() {
            shard.slots = (0..self.slots_per_shard).map(|_| Slot::default()).collect();
            self.bases[index].store(shard.slots.as_ptr() as usize, Ordering::Relaxed);
        }
        let home = Self::home(key.key, shard.slots.len());
        // The key's own entry is replaced (another line of the same key decoded meanwhile).
        if let Some(at) = shard.window(home).find(|&at| shard.slots[at].holds(key)) {
            shard.evict(at);
        }
        if cost > self.max_bytes {
            return labels;
        }
        // Room within the bounds, from stale entries anywhere in the part.
        while shard.len >= self.max_entries || shard.bytes + cost > self.max_bytes {
            if !shard.evict_stale() {
                return labels;
            }
        }
        let at = match shard.window(home).find(|&at| shard.slots[at].is_free()) {
            Some(at) => at,
            None => {
                let at = shard.stalest(home).unwrap_or(home);
                shard.evict(at);
                at
            }
        };
        // A new entry starts a generation old: a series seen once ranks below one seen
        // again since the generation began.
        packed.mark_kept();
        shard.slots[at].fill(key, shard.generation.wrapping_sub(1), packed);
        shard.len += 1;
        shard.bytes += cost;
        shard.inserts += 1;
        if shard.inserts >= (self.max_entries / GENERATIONS_PER_FILL).max(1) {
            shard.inserts = 0;
            shard.generation = shard.generation.wrapping_add(1);
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
        let key = table.key(b"cpu,host=a", Some(b"usage".as_slice()), 0);
        assert_eq!(table.get(key), None);
        let stored = table.insert(key, labels(&[("__name__", "cpu_usage"), ("host", "a")]));
        let again = table.get(key).expect("stored");
        assert_eq!(again, stored);
        assert!(again.shares_storage_with(&stored));
        // Marked as kept: a stage may note its verdict there instead of in a table of its own.
        assert!(stored.shared_whole().is_some_and(crate::model::SharedPart::is_kept));
    }

    #[test]
    fn the_field_and_the_tags_keys_differ() {
        let table = SeriesInterner::new(1024, 1 << 20);
        let tags = table.key(b"cpu,host=a", None, 0);
        assert_ne!(tags, table.key(b"cpu,host=a", Some(b"usage".as_slice()), 0));
        assert_ne!(
            table.key(b"cpu,host=a", Some(b"a".as_slice()), 0),
            table.key(b"cpu,host=a", Some(b"b".as_slice()), 0)
        );
        assert_ne!(tags, table.key(b"cpu,host=b", None, 0));
        // Other limits key the same bytes differently.
        assert_ne!(tags, table.key(b"cpu,host=a", None, 1));
        // Another process (another seed) keys the same bytes differently.
        assert_ne!(tags, SeriesInterner::new(1024, 1 << 20).key(b"cpu,host=a", None, 0));
    }

    /// Many keys on few slots (long probe runs, homes taken over): a lookup finds a
    /// key's own labels or nothing, never another key's.
    #[test]
    fn a_crowded_table_returns_a_keys_own_labels_or_none() {
        let table = SeriesInterner::new(INTERN_SHARDS * 16, 1 << 30);
        let keys: Vec<InternKey> = (0..5_000).map(|i| table.key(format!("m,i={i}").as_bytes(), None, 0)).collect();
        for (i, key) in keys.iter().enumerate() {
            table.insert(*key, labels(&[("i", &i.to_string())]));
        }
        let mut found = 0;
        for (i, key) in keys.iter().enumerate() {
            if let Some(l) = table.get(*key) {
                assert_eq!(l.get("i"), Some(i.to_string().as_str()));
                found += 1;
            }
        }
        assert!(found > 0 && found <= INTERN_SHARDS * 16, "{found} found");
        // The last key inserted is always there.
        assert!(table.get(keys[keys.len() - 1]).is_some());
        // Keys spread over a part's slots: a table with room for every key holds every key.
        let roomy = SeriesInterner::new(INTERN_SHARDS * 1024, 1 << 30);
        for (i, key) in keys.iter().enumerate() {
            roomy.insert(*key, labels(&[("i", &i.to_string())]));
        }
        let held = keys.iter().filter(|k| roomy.get(**k).is_some()).count();
        assert!(held >= keys.len() * 99 / 100, "{held} of {} held", keys.len());
    }

    #[test]
    fn a_full_part_evicts_and_the_table_stays_bounded() {
        let (entries, bytes) = (INTERN_SHARDS * 4, INTERN_SHARDS * 8 * (ENTRY_OVERHEAD + 40));
        let table = SeriesInterner::new(entries, bytes);
        for i in 0..10_000 {
            let key = table.key(format!("m,i={i}").as_bytes(), None, 0);
            table.insert(key, labels(&[("i", &i.to_string())]));
            assert_eq!(table.get(key).as_ref().and_then(|l| l.get("i")), Some(i.to_string().as_str()));
        }
        for shard in table.shards.iter() {
            let shard = shard.read();
            let held = shard.slots.iter().filter(|s| !s.is_free()).count();
            assert_eq!(held, shard.len);
            assert!(shard.len <= 4, "{} entries in a part", shard.len);
            assert!(shard.bytes <= bytes / INTERN_SHARDS);
        }
    }

    /// Series churn: live series looked up in every round keep their entries (all but a
    /// stray one, see the end) while series seen once come and go through a full table
    /// (a part emptied whole would make every live series of it new again).
    #[test]
    fn under_churn_the_live_series_keep_their_entries() {
        let per_part = 256;
        let table = SeriesInterner::new(INTERN_SHARDS * per_part, 1 << 30);
        let key = |name: String| table.key(name.as_bytes(), None, 0);
        let live: Vec<InternKey> = (0..INTERN_SHARDS * per_part / 2).map(|i| key(format!("live,i={i}"))).collect();
        for (i, k) in live.iter().enumerate() {
            table.insert(*k, labels(&[("i", &i.to_string())]));
        }
        let mut gone = 0;
        for round in 0..100 {
            // A 40th of the table's capacity in new series per round: it turns over 2.5 times.
            for j in 0..INTERN_SHARDS * per_part / 40 {
                let k = key(format!("churn,r={round},j={j}"));
                table.insert(k, labels(&[("j", &j.to_string())]));
            }
            gone = 0;
            for (i, k) in live.iter().enumerate() {
                match table.get(*k) {
                    Some(l) => assert_eq!(l.get("i"), Some(i.to_string().as_str())),
                    None => {
                        gone += 1;
                        table.insert(*k, labels(&[("i", &i.to_string())]));
                    }
                }
            }
            for shard in table.shards.iter() {
                let shard = shard.read();
                assert!(shard.len <= per_part, "{} entries in a part", shard.len);
            }
        }
        // A live series can still lose its entry when every slot of its probe window
        // (or of a sweep) holds an entry as fresh as its own; with a random seed per
        // table that happens to about one in 4096 now and then, never to more.
        assert!(gone <= live.len() / 400, "{gone} of {} live series lost their entry in the last round", live.len());
    }
}
