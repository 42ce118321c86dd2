//! The series one shard tracks, shared by the stateful stages of that shard
//! and read by the discovery API ([`crate::query::discovery`]).
//!
//! One table keyed by series hash ([`SeriesTable`]) holds everything per
//! series in one 32-byte bucket: the hash, when it was last seen and its
//! label set id (cardinality), and its clock (monotonic). One table instead
//! of one per stage halves the cache misses on a large series set and stores
//! the key once. The offset `counter_reset = "adjust"` adds after a reset is
//! kept aside, for the few series that ever reset, and flagged in the bucket.
//!
//! Label sets are kept for discovery as lists of interned `(name, value)`
//! pair ids, packed in one array per shard (no allocation per series, which
//! would fragment the heap the samples live on): a series costs 4 bytes a
//! label plus 4, and each distinct pair is stored once per shard however
//! many series carry it. Interned
//! pairs are bounded (`max_label_pairs`); beyond, new series keep only the
//! pairs already known (and are marked partial) — their `__name__` always.

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use parking_lot::Mutex;

use super::series_table::{self, SeriesTable};
use super::{SeriesHasher, SeriesMap};
use crate::model::{LabelStr, Labels, METRIC_NAME_LABEL};

/// A shard's series, locked once per batch by each stateful stage.
pub type SharedShard = Arc<Mutex<ShardSeries>>;

/// What one tracked series holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesState {
    /// Seconds since the pipeline started when its last sample arrived.
    pub seen: u32,
    /// Where its label set starts in the shard's index; the top bits are
    /// [`PARTIAL`] and [`OFFSET`].
    set: u32,
    /// Last timestamp passed on; `i64::MIN` before the first.
    pub last_ts: i64,
    /// Last counter value as received; NaN until one is seen.
    pub last_raw: f64,
}

/// Bytes of one bucket (key and value) in the series table.
pub const SLOT_SIZE: usize = std::mem::size_of::<(u64, SeriesState)>();
const _: () = assert!(SLOT_SIZE == 32);

/// The series' label set is partial (see the module docs).
const PARTIAL: u32 = 1 << 31;
/// The series has an offset in [`ShardSeries::offsets`].
const OFFSET: u32 = 1 << 30;
const FLAGS: u32 = PARTIAL | OFFSET;

impl SeriesState {
    fn set_id(&self) -> usize {
        (self.set & !FLAGS) as usize
    }
}

/// A series' clock for the monotonic stage: its state, and its offset.
pub struct Clock<'a> {
    pub state: &'a mut SeriesState,
    offsets: &'a mut SeriesMap<f64>,
    hash: u64,
}

impl Clock<'_> {
    /// Sum of the counter values before each reset (`counter_reset = "adjust"`).
    #[inline]
    pub fn offset(&self) -> f64 {
        if self.state.set & OFFSET == 0 { 0.0 } else { self.offsets.get(&self.hash).copied().unwrap_or(0.0) }
    }

    pub fn add_offset(&mut self, by: f64) {
        *self.offsets.entry(self.hash).or_insert(0.0) += by;
        self.state.set |= OFFSET;
    }
}

/// The series of one shard and their label sets.
#[derive(Default)]
pub struct ShardSeries {
    table: SeriesTable<SeriesState>,
    /// Offsets of the series flagged [`OFFSET`], by series hash.
    offsets: SeriesMap<f64>,
    index: LabelIndex,
}

impl ShardSeries {
    pub fn new(max_label_pairs: usize) -> Self {
        ShardSeries {
            table: SeriesTable::default(),
            offsets: SeriesMap::default(),
            index: LabelIndex { max_pairs: max_label_pairs, ..Default::default() },
        }
    }

    /// Asks for the cache line of series `hash` (see [`SeriesTable::prefetch`]).
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        self.table.prefetch(hash);
    }

    /// The clock of series `hash`, if it is tracked.
    #[inline]
    pub fn clock(&mut self, hash: u64) -> Option<Clock<'_>> {
        let state = self.table.get_mut(hash)?;
        // Offsets go by the key the table keeps, which its sweep hands back.
        Some(Clock { state, offsets: &mut self.offsets, hash: series_table::key_of(hash) })
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get_mut(&mut self, hash: u64) -> Option<&mut SeriesState> {
        self.table.get_mut(hash)
    }

    /// Starts tracking a series (the caller checked limits and that it is new).
    pub fn insert(&mut self, hash: u64, labels: &Labels, now: u32) {
        let set = self.index.insert(labels);
        let state = SeriesState { seen: now, set, last_ts: i64::MIN, last_raw: f64::NAN };
        if let Some(old) = self.table.insert(hash, state) {
            // Only if the caller broke its promise; keep the index consistent.
            self.index.remove(old.set & !OFFSET);
            self.offsets.remove(&series_table::key_of(hash));
        }
    }

    /// Forgets series idle for `idle` seconds or more; returns how many per metric name.
    pub fn sweep(&mut self, now: u32, idle: u32) -> Vec<(LabelStr, u32)> {
        let mut forgotten: HashMap<u32, u32, BuildHasherDefault<SeriesHasher>> = HashMap::default();
        let mut released = Vec::new();
        let offsets = &mut self.offsets;
        self.table.retain(|hash, s| {
            let keep = now.saturating_sub(s.seen) < idle;
            if !keep {
                released.push(s.set & !OFFSET);
                if s.set & OFFSET != 0 {
                    offsets.remove(&hash);
                }
            }
            keep
        });
        for set in released {
            if let Some(name_pair) = self.index.name_pair((set & !PARTIAL) as usize) {
                *forgotten.entry(name_pair).or_default() += 1;
            }
            self.index.remove(set);
        }
        // Counted before removal: a name pair may disappear with its last series.
        let mut out: Vec<(LabelStr, u32)> = Vec::with_capacity(forgotten.len());
        for (pair, n) in forgotten {
            out.push((self.index.last_name_of(pair), n));
        }
        self.index.forget_names();
        self.index.compact(&mut self.table);
        self.table.shrink_if_sparse();
        super::shrink_if_sparse(&mut self.offsets);
        out
    }

    /// Calls `f` with the labels of each tracked series (and whether the set
    /// is partial) until it returns `false`.
    pub fn for_each_series(&self, mut f: impl FnMut(&[(&str, &str)], bool) -> bool) {
        let mut labels: Vec<(&str, &str)> = Vec::new();
        for state in self.table.values() {
            labels.clear();
            labels.extend(self.index.labels(state.set_id()));
            if !f(&labels, state.set & PARTIAL != 0) {
                return;
            }
        }
    }

    /// Appends the hash of every tracked series to `out` (a snapshot a
    /// reader can walk in short locked steps with [`Self::visit`]).
    pub fn hashes(&self, out: &mut Vec<u64>) {
        out.extend(self.table.keys());
    }

    /// Calls `f` with the labels of series `hash` (and whether the set is
    /// partial), if it is still tracked.
    pub fn visit<R>(&self, hash: u64, f: impl FnOnce(&[(&str, &str)], bool) -> R) -> Option<R> {
        let state = self.table.get(hash)?;
        let labels: Vec<(&str, &str)> = self.index.labels(state.set_id()).collect();
        Some(f(&labels, state.set & PARTIAL != 0))
    }

    /// Distinct `(name, value)` pairs interned (live or not): the range
    /// [`Self::label_names_in`] and [`Self::label_values_in`] walk.
    pub fn pair_slots(&self) -> usize {
        self.index.pairs.len()
    }

    /// Adds the label names in use among pair slots `range` to `out`.
    pub fn label_names_in(&self, range: std::ops::Range<usize>, out: &mut BTreeSet<String>) {
        let range = range.start.min(self.index.pairs.len())..range.end.min(self.index.pairs.len());
        for p in self.index.pairs[range].iter().filter(|p| p.refs > 0) {
            if !out.contains(p.name.as_str()) {
                out.insert(p.name.to_string());
            }
        }
    }

    /// Adds the values of label `name` in use among pair slots `range` to `out`.
    pub fn label_values_in(&self, name: &str, range: std::ops::Range<usize>, out: &mut BTreeSet<String>) {
        let range = range.start.min(self.index.pairs.len())..range.end.min(self.index.pairs.len());
        for p in self.index.pairs[range].iter().filter(|p| p.refs > 0 && p.name == name) {
            if !out.contains(p.value.as_str()) {
                out.insert(p.value.to_string());
            }
        }
    }

    /// Adds the label names in use to `out`.
    pub fn label_names(&self, out: &mut BTreeSet<String>) {
        for p in self.index.pairs.iter().filter(|p| p.refs > 0) {
            if !out.contains(p.name.as_str()) {
                out.insert(p.name.to_string());
            }
        }
    }

    /// Adds the values in use of label `name` to `out`.
    pub fn label_values(&self, name: &str, out: &mut BTreeSet<String>) {
        for p in self.index.pairs.iter().filter(|p| p.refs > 0 && p.name == name) {
            if !out.contains(p.value.as_str()) {
                out.insert(p.value.to_string());
            }
        }
    }

    /// Series whose label set lacks pairs because the pair bound was reached.
    pub fn partial_series(&self) -> usize {
        self.index.partial
    }
}

#[derive(Debug, Default)]
struct Pair {
    name: LabelStr,
    value: LabelStr,
    /// Label sets using this pair; 0 = free slot.
    refs: u32,
}

/// Interned pairs and the label sets built from them.
#[derive(Default)]
struct LabelIndex {
    pairs: Vec<Pair>,
    free_pairs: Vec<u32>,
    /// Pair hash → pair id; a (vanishingly rare) collision moves to the next
    /// key, and removal shifts such followers back (no tombstones).
    pair_ids: HashMap<u64, u32, BuildHasherDefault<SeriesHasher>>,
    live_pairs: usize,
    max_pairs: usize,
    /// Label sets, each `[length, pair ids...]`, named by their offset.
    /// Removed sets leave garbage until the sweep that removed them compacts.
    sets: Vec<u32>,
    garbage: usize,
    partial: usize,
    /// Names of pairs freed during a sweep, kept until the sweep has reported them.
    freed_names: HashMap<u32, LabelStr, BuildHasherDefault<SeriesHasher>>,
}

fn pair_hash(name: &str, value: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(name.as_bytes());
    h.update(&[0xff]);
    h.update(value.as_bytes());
    h.digest()
}

impl LabelIndex {
    fn find(&self, name: &str, value: &str) -> Option<u32> {
        let mut key = pair_hash(name, value);
        while let Some(&id) = self.pair_ids.get(&key) {
            let p = &self.pairs[id as usize];
            if p.name == name && p.value == value {
                return Some(id);
            }
            key = key.wrapping_add(1);
        }
        None
    }

    /// The id of the pair, interned if needed and allowed; one more reference.
    fn acquire(&mut self, name: &str, value: &str, always: bool) -> Option<u32> {
        if let Some(id) = self.find(name, value) {
            self.pairs[id as usize].refs += 1;
            return Some(id);
        }
        if !always && self.live_pairs >= self.max_pairs {
            return None;
        }
        let pair = Pair { name: name.into(), value: value.into(), refs: 1 };
        let id = match self.free_pairs.pop() {
            Some(id) => {
                self.pairs[id as usize] = pair;
                id
            }
            None => {
                self.pairs.push(pair);
                (self.pairs.len() - 1) as u32
            }
        };
        let mut key = pair_hash(name, value);
        while self.pair_ids.contains_key(&key) {
            key = key.wrapping_add(1);
        }
        self.pair_ids.insert(key, id);
        self.live_pairs += 1;
        Some(id)
    }

    fn release(&mut self, id: u32) {
        let p = &mut self.pairs[id as usize];
        p.refs -= 1;
        if p.refs > 0 {
            return;
        }
        let (name, value) = (std::mem::take(&mut p.name), std::mem::take(&mut p.value));
        let mut key = pair_hash(&name, &value);
        while self.pair_ids.get(&key) != Some(&id) {
            key = key.wrapping_add(1);
        }
        let pairs = &self.pairs;
        remove_shifting(&mut self.pair_ids, key, |f| {
            let f = &pairs[f as usize];
            pair_hash(&f.name, &f.value)
        });
        if name == METRIC_NAME_LABEL {
            self.freed_names.insert(id, value);
        }
        self.free_pairs.push(id);
        self.live_pairs -= 1;
    }

    /// Interns a label set; returns its id (top bit set when partial).
    fn insert(&mut self, labels: &Labels) -> u32 {
        // Grow by a quarter, not double: this array is most of the index.
        let needed = labels.len() + 1;
        if self.sets.capacity() - self.sets.len() < needed {
            self.sets.reserve_exact(needed.max(self.sets.capacity() / 4));
        }
        let at = self.sets.len();
        self.sets.push(0);
        let mut partial = false;
        for l in labels.iter() {
            match self.acquire(l.name, l.value, l.name == METRIC_NAME_LABEL) {
                Some(id) => self.sets.push(id),
                None => partial = true,
            }
        }
        self.sets[at] = (self.sets.len() - at - 1) as u32;
        if partial {
            self.partial += 1;
            at as u32 | PARTIAL
        } else {
            at as u32
        }
    }

    fn set(&self, at: usize) -> &[u32] {
        let len = self.sets[at] as usize;
        &self.sets[at + 1..at + 1 + len]
    }

    /// Releases a set (its id as [`insert`](Self::insert) returned it).
    fn remove(&mut self, set: u32) {
        if set & PARTIAL != 0 {
            self.partial -= 1;
        }
        let at = (set & !PARTIAL) as usize;
        let len = self.sets[at] as usize;
        for i in at + 1..at + 1 + len {
            self.release(self.sets[i]);
        }
        self.garbage += len + 1;
    }

    /// Rewrites the sets without garbage once it is a quarter of them,
    /// updating where each series finds its set.
    fn compact(&mut self, table: &mut SeriesTable<SeriesState>) {
        if self.garbage == 0 || self.garbage * 4 < self.sets.len() {
            return;
        }
        let mut packed = Vec::with_capacity(self.sets.len() - self.garbage);
        for state in table.values_mut() {
            let at = state.set_id();
            let new_at = packed.len() as u32;
            packed.extend_from_slice(&self.sets[at..at + 1 + self.sets[at] as usize]);
            state.set = new_at | (state.set & FLAGS);
        }
        self.sets = packed;
        self.garbage = 0;
    }

    /// The `__name__` pair of a set.
    fn name_pair(&self, set: usize) -> Option<u32> {
        self.set(set).iter().copied().find(|&id| self.pairs[id as usize].name == METRIC_NAME_LABEL)
    }

    /// The metric name of a `__name__` pair, even if it was freed in this sweep.
    fn last_name_of(&self, pair: u32) -> LabelStr {
        match self.freed_names.get(&pair) {
            Some(name) => name.clone(),
            None => self.pairs[pair as usize].value.clone(),
        }
    }

    fn forget_names(&mut self) {
        self.freed_names.clear();
    }

    fn labels(&self, set: usize) -> impl Iterator<Item = (&str, &str)> {
        self.set(set).iter().map(|&id| {
            let p = &self.pairs[id as usize];
            (p.name.as_str(), p.value.as_str())
        })
    }
}

/// Removes `key` from a map where each entry lives at its home key (from
/// `home_of`) or, after collisions, at the next free key; followers are
/// shifted back so that lookups, which stop at the first free key, reach them.
fn remove_shifting<H>(map: &mut HashMap<u64, u32, H>, key: u64, home_of: impl Fn(u32) -> u64)
where
    H: std::hash::BuildHasher,
{
    map.remove(&key);
    let mut hole = key;
    let mut next = key.wrapping_add(1);
    while let Some(&follower) = map.get(&next) {
        // It may move into the hole unless its home lies after the hole.
        if next.wrapping_sub(home_of(follower)) >= next.wrapping_sub(hole) {
            map.remove(&next);
            map.insert(hole, follower);
            hole = next;
        }
        next = next.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs.iter().copied().collect();
        l.sort();
        l
    }

    fn all_series(s: &ShardSeries) -> Vec<Vec<(String, String)>> {
        let mut out = Vec::new();
        s.for_each_series(|l, _| {
            out.push(l.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
            true
        });
        out.sort();
        out
    }

    #[test]
    fn label_sets_round_trip_and_pairs_are_shared() {
        let mut s = ShardSeries::new(100);
        s.insert(1, &labels(&[("__name__", "up"), ("job", "a")]), 0);
        s.insert(2, &labels(&[("__name__", "up"), ("job", "b")]), 0);
        s.insert(3, &labels(&[("__name__", "down"), ("job", "a")]), 5);
        assert_eq!(s.index.live_pairs, 4);
        assert_eq!(all_series(&s).len(), 3);
        let mut names = BTreeSet::new();
        s.label_names(&mut names);
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["__name__", "job"]);
        let mut jobs = BTreeSet::new();
        s.label_values("job", &mut jobs);
        assert_eq!(jobs.into_iter().collect::<Vec<_>>(), vec!["a", "b"]);

        let forgotten = s.sweep(10, 8);
        assert_eq!(forgotten.len(), 1);
        assert_eq!(forgotten[0], (LabelStr::from("up"), 2));
        assert_eq!(all_series(&s), vec![vec![("__name__".into(), "down".into()), ("job".into(), "a".into())]]);
        assert_eq!(s.index.live_pairs, 2, "pairs of forgotten series are freed");
        // Freed pair slots are reused; the sets were compacted.
        assert_eq!(s.index.sets.len(), 3);
        s.insert(4, &labels(&[("__name__", "up"), ("job", "c")]), 10);
        assert_eq!(s.index.pairs.len(), 4);
        assert_eq!(all_series(&s).len(), 2);
    }

    /// An adjusted counter's offset lives beside the table: flagged in its
    /// bucket, kept through compaction, and forgotten with the series.
    #[test]
    fn offsets_follow_their_series() {
        let mut s = ShardSeries::new(100);
        // Hash 0 is kept under another key by the table (1's, so no series 1 here): its
        // offset must go with it too.
        for h in (0..=40u64).filter(|&h| h != 1) {
            s.insert(h, &labels(&[("__name__", "c"), ("i", &h.to_string())]), (h % 2) as u32 * 10);
        }
        for h in [0u64, 2, 3, 4] {
            let mut clock = s.clock(h).expect("tracked");
            assert_eq!(clock.offset(), 0.0);
            clock.add_offset(5.0);
            clock.add_offset(h as f64);
        }
        assert_eq!(s.clock(4).expect("tracked").offset(), 9.0);
        assert_eq!(s.clock(5).expect("tracked").offset(), 0.0);
        // The even series were last seen at 0: forgotten (with 0's, 2's and 4's offsets), and
        // the label sets compacted under the odd ones.
        s.sweep(20, 15);
        assert_eq!(s.len(), 19);
        assert_eq!(s.offsets.len(), 1, "only series 3 keeps an offset");
        assert!(s.clock(0).is_none());
        assert_eq!(s.clock(3).expect("tracked").offset(), 8.0);
        let got = s.visit(3, |l, partial| (l.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>(), partial));
        assert_eq!(got, Some((vec!["__name__=c".to_string(), "i=3".into()], false)), "the flag is not in the set id");
        s.insert(2, &labels(&[("__name__", "c"), ("i", "2")]), 20);
        assert_eq!(s.clock(2).expect("tracked").offset(), 0.0, "a series that comes back starts afresh");
    }

    #[test]
    fn pair_bound_makes_sets_partial_but_keeps_names() {
        let mut s = ShardSeries::new(2);
        s.insert(1, &labels(&[("__name__", "m"), ("a", "1")]), 0);
        s.insert(2, &labels(&[("__name__", "n"), ("a", "2")]), 0);
        assert_eq!(s.partial_series(), 1);
        let mut partial = Vec::new();
        s.for_each_series(|l, p| {
            partial.push((l.len(), p));
            true
        });
        partial.sort();
        assert_eq!(partial, vec![(1, true), (2, false)]);
        let forgotten = s.sweep(100, 1);
        assert_eq!(forgotten.len(), 2);
        assert_eq!(s.partial_series(), 0);
    }

    #[test]
    fn removal_shifts_colliding_keys_back() {
        // Entries by key: 10 → a (home 10), 11 → b (home 10), 12 → c (home 12), 13 → d (home 11).
        let homes = [10u64, 10, 12, 11];
        let mut map: HashMap<u64, u32, BuildHasherDefault<SeriesHasher>> = HashMap::default();
        for (key, id) in [(10, 0), (11, 1), (12, 2), (13, 3)] {
            map.insert(key, id);
        }
        remove_shifting(&mut map, 10, |id| homes[id as usize]);
        let mut left: Vec<(u64, u32)> = map.into_iter().collect();
        left.sort();
        // b moves home, c stays at its home, d moves next to its home.
        assert_eq!(left, vec![(10, 1), (11, 3), (12, 2)]);
    }
}
