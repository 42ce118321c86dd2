use std::fmt;
use std::hash::{Hash, Hasher};

use compact_str::CompactString;
use thin_vec::ThinVec;

/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// An owned label name or value: short strings are stored inline (up to 24
/// bytes). Used where labels are built or rewritten one by one (relabel rules,
/// static labels); samples carry their labels packed, see [`Labels`].
pub type LabelStr = CompactString;

/// One owned label, for code that rewrites label sets (see [`Labels::to_vec`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: LabelStr,
    pub value: LabelStr,
}

impl Label {
    pub fn new(name: impl Into<LabelStr>, value: impl Into<LabelStr>) -> Self {
        Label { name: name.into(), value: value.into() }
    }

    pub fn as_ref(&self) -> LabelRef<'_> {
        LabelRef { name: &self.name, value: &self.value }
    }
}

/// One label of a [`Labels`] set, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelRef<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

impl LabelRef<'_> {
    pub fn to_owned(self) -> Label {
        Label::new(self.name, self.value)
    }
}

/// Protobuf tags of `repeated Label labels = 1` and of `Label`'s `name = 1`
/// and `value = 2` (wire type 2, length-delimited).
const LABELS_FIELD: u8 = (1 << 3) | 2;
const NAME_FIELD: u8 = (1 << 3) | 2;
const VALUE_FIELD: u8 = (2 << 3) | 2;

/// The identity of a series: its labels, packed into one buffer in their
/// protobuf wire form, the encoding of `repeated Label labels = 1` as in
/// `tsrelay.v1.Series` (and Prometheus remote-write's `TimeSeries`):
/// per label `0x0A len 0x0A name_len name 0x12 value_len value`.
///
/// One allocation per label set instead of one per set plus one per long
/// string: a sample is built, read by every stage, moved through five queues
/// and freed on another thread, so its size and allocation count are what the
/// daemon's throughput and peak memory follow (BENCHMARKS.md). Lengths make
/// walking the labels cost per label, not per byte; the wire form makes
/// encoding them a copy; and the buffer is the series hash's input as is.
///
/// Receivers may hand over labels in any order; the pipeline sorts them (see
/// [`Labels::sort`]) before anything hashes them.
///
/// A set is stored in two parts, read as one: its own bytes, then bytes it
/// shares with other sets (refcounted, never written). Sets that repeat the
/// same labels share them instead of copying: every sample of a gRPC or
/// remote-write series shares the series' labels (see [`Labels::share`]), and
/// the samples of a line-protocol line with several fields share the line's
/// tags, each owning only its `__name__` (see [`Labels::then_shared`]). A set
/// that is changed copies the shared part into its own first (copy on write).
/// Which part holds what is not part of its value: equality, the series hash
/// and the wire form are those of the labels in order.
#[derive(Clone, Default)]
pub struct Labels {
    /// Only ever extended by [`Labels::push`] (whole `&str`s with their
    /// framing), so every name and value in it is valid UTF-8 and every
    /// length is right.
    own: ThinVec<u8>,
    /// Labels after `own`, packed the same way and shared with other sets
    /// (a thin pointer, so a `Sample` stays small). Never empty when `Some`.
    shared: Option<SharedPart>,
}

/// The shared part of a [`Labels`] set: packed labels, never written once
/// shared, with their series hash worked out once (see
/// [`Labels::series_hash`]): a series' samples share its labels, so the hash
/// of a set that is all shared costs nothing per sample. (The 128-bit
/// [`Labels::digest128`] is not kept: only a stage's first look at a series
/// needs it, and 16 bytes per series is a tenth of a series' memory.)
///
/// One allocation holds the reference count, the series hash, a note, the
/// length and the bytes, behind a thin pointer: a sample's labels are then one cache miss
/// away, not two (reference count, then a separate buffer), which is what a
/// table of 200,000 series or an encoder walking them pays for.
#[derive(Clone)]
pub struct SharedPart(triomphe::ThinArc<SharedHeader, u8>);

/// What a shared part keeps besides its bytes (see [`SharedPart`]).
struct SharedHeader {
    /// [`Labels::series_hash`] of the bytes.
    series_hash: u64,
    /// See [`SharedPart::note`].
    note: std::sync::atomic::AtomicU64,
}

impl SharedPart {
    fn new(bytes: &[u8]) -> SharedPart {
        let header =
            SharedHeader { series_hash: xxhash_rust::xxh3::xxh3_64(bytes), note: std::sync::atomic::AtomicU64::new(0) };
        SharedPart(triomphe::ThinArc::from_header_and_slice(header, bytes))
    }

    #[inline(always)]
    pub fn bytes(&self) -> &[u8] {
        &self.0.slice
    }

    /// A word a pipeline stage may keep with the series these labels are
    /// (0 until one is set): it sits in the cache line the stage reads anyway,
    /// where a table of its own would cost a cache miss per sample. Its
    /// meaning is the writer's; a writer must tell its words from another's.
    #[inline(always)]
    pub fn note(&self) -> u64 {
        self.0.header.header.note.load(std::sync::atomic::Ordering::Acquire) & !Self::KEPT
    }

    /// The note word's top bit: [`Self::mark_kept`]. Not part of a note.
    const KEPT: u64 = 1 << 63;

    /// Marks the part as held by a table that hands the same part out again
    /// for the same series (a decoder's series-key table): a note written
    /// into it is then seen by the series' later samples, so a stage need
    /// not keep the same verdict in a table of its own.
    #[inline]
    pub fn mark_kept(&self) {
        self.0.header.header.note.fetch_or(Self::KEPT, std::sync::atomic::Ordering::Release);
    }

    /// See [`Self::mark_kept`].
    #[inline(always)]
    pub fn is_kept(&self) -> bool {
        self.0.header.header.note.load(std::sync::atomic::Ordering::Relaxed) & Self::KEPT != 0
    }

    /// [`Labels::series_hash`] of a set that is all this part.
    #[inline(always)]
    pub fn series_hash(&self) -> u64 {
        self.0.header.header.series_hash
    }

    /// Sets [`Self::note`].
    #[inline]
    pub fn set_note(&self, note: u64) {
        let word = &self.0.header.header.note;
        // The kept mark is set before the part is handed out, so it is never lost here.
        let kept = word.load(std::sync::atomic::Ordering::Relaxed) & Self::KEPT;
        word.store(note & !Self::KEPT | kept, std::sync::atomic::Ordering::Release);
    }

    /// The part as a pointer that keeps its reference (for a table that stores parts in
    /// atomic words); [`Self::from_raw`] takes the reference back.
    #[inline]
    pub fn into_raw(self) -> *const std::ffi::c_void {
        triomphe::ThinArc::into_raw(self.0)
    }

    /// The part [`Self::into_raw`] turned into `ptr`, its reference taken back.
    ///
    /// # Safety
    /// `ptr` came from [`Self::into_raw`], and its reference was not taken back yet.
    #[inline]
    pub unsafe fn from_raw(ptr: *const std::ffi::c_void) -> SharedPart {
        // SAFETY: the caller's contract is `ThinArc::from_raw`'s.
        SharedPart(unsafe { triomphe::ThinArc::from_raw(ptr) })
    }

    /// A new reference to the part at `ptr`, which keeps its own.
    ///
    /// # Safety
    /// `ptr` came from [`Self::into_raw`], and its reference is held for the whole call.
    #[inline]
    pub unsafe fn clone_raw(ptr: *const std::ffi::c_void) -> SharedPart {
        // SAFETY: the reference `ptr` holds keeps the part alive; it is not taken back
        // (ManuallyDrop), only cloned.
        SharedPart::clone(&std::mem::ManuallyDrop::new(unsafe { Self::from_raw(ptr) }))
    }

    /// Whether `a` and `b` are the same part (not copies).
    #[inline]
    pub fn ptr_eq(a: &SharedPart, b: &SharedPart) -> bool {
        a.0.ptr() == b.0.ptr()
    }

    /// Bytes of heap the part holds: its bytes and its header (reference count,
    /// series hash, note, length).
    pub fn heap_bytes(&self) -> usize {
        self.0.slice.len() + 32
    }
}

fn varint_len(v: usize) -> usize {
    prost::encoding::encoded_len_varint(v as u64)
}

fn put_varint(out: &mut ThinVec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at` of a buffer [`Labels::push`] wrote.
#[inline(always)]
fn read_varint(bytes: &[u8], at: &mut usize) -> usize {
    let first = bytes[*at];
    *at += 1;
    if first < 0x80 {
        return first as usize;
    }
    let mut v = (first & 0x7f) as usize;
    let mut shift = 7;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= ((b & 0x7f) as usize) << shift;
        if b < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// Length of one `Label` message with both fields.
#[inline]
fn label_message_len(name: usize, value: usize) -> usize {
    2 + varint_len(name) + name + varint_len(value) + value
}

impl Labels {
    pub fn new() -> Self {
        Labels { own: ThinVec::new(), shared: None }
    }

    /// Room for `bytes` of label text (names plus values, without framing)
    /// in `count` labels, so that building the set allocates once.
    pub fn with_capacity(count: usize, bytes: usize) -> Self {
        Labels { own: ThinVec::with_capacity(bytes + 6 * count), shared: None }
    }

    /// Builds a set from labels in the given order.
    pub fn from_refs<'a>(labels: impl IntoIterator<Item = LabelRef<'a>>) -> Self {
        let mut out = Labels::new();
        for l in labels {
            out.push(l.name, l.value);
        }
        out
    }

    /// Appends a label (order is not checked; see [`Labels::sort`]).
    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let value = value.as_ref();
        self.push_with(name.as_ref(), &[value]);
    }

    /// Appends a label whose value is the concatenation of `value_parts`.
    pub fn push_with(&mut self, name: &str, value_parts: &[&str]) {
        let value_len: usize = value_parts.iter().map(|p| p.len()).sum();
        let message = label_message_len(name.len(), value_len);
        let packed = self.own_mut();
        if message < 0x80 {
            // Every length fits one byte: write the label in place with short
            // copies (receivers build every sample's labels through here).
            let start = packed.len();
            packed.resize(start + 2 + message, 0);
            let out = &mut packed[start..];
            out[..4].copy_from_slice(&[LABELS_FIELD, message as u8, NAME_FIELD, name.len() as u8]);
            let mut at = 4 + name.len();
            copy_bytes(&mut out[4..at], name.as_bytes());
            out[at..at + 2].copy_from_slice(&[VALUE_FIELD, value_len as u8]);
            at += 2;
            for part in value_parts {
                copy_bytes(&mut out[at..at + part.len()], part.as_bytes());
                at += part.len();
            }
            return;
        }
        packed.reserve(1 + varint_len(message) + message);
        packed.push(LABELS_FIELD);
        put_varint(packed, message);
        packed.push(NAME_FIELD);
        put_varint(packed, name.len());
        packed.extend_from_slice(name.as_bytes());
        packed.push(VALUE_FIELD);
        put_varint(packed, value_len);
        for part in value_parts {
            packed.extend_from_slice(part.as_bytes());
        }
    }

    /// Removes the first label called `name`; says whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let packed = self.own_mut();
        let mut iter = Iter { rest: packed, next: &[] };
        loop {
            let start = packed.len() - iter.rest.len();
            match iter.next() {
                None => return false,
                Some(l) if l.name == name => {
                    let end = packed.len() - iter.rest.len();
                    packed.drain(start..end);
                    return true;
                }
                Some(_) => {}
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|l| l.name == name).map(|l| l.value)
    }

    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: &self.own, next: self.shared.as_ref().map_or(&[], |s| s.bytes()) }
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn is_empty(&self) -> bool {
        self.own.is_empty() && self.shared.is_none()
    }

    /// The packed form, the protobuf encoding of `repeated Label labels = 1`,
    /// in two parts to be written one after the other (the second is often
    /// empty, see [`Labels`]).
    #[inline]
    pub fn packed_parts(&self) -> [&[u8]; 2] {
        [&self.own, self.shared.as_ref().map_or(&[], |s| s.bytes())]
    }

    /// Where this set's bytes are, found without reading the shared part (for
    /// prefetching it): the own part, and the start of the shared part's
    /// allocation (its header, then its bytes).
    #[inline(always)]
    pub fn storage(&self) -> (&[u8], Option<*const u8>) {
        (&self.own, self.shared.as_ref().map(|s| s.0.ptr().cast::<u8>()))
    }

    /// Length of the packed form (both parts of [`Labels::packed_parts`]).
    #[inline]
    pub fn packed_len(&self) -> usize {
        self.own.len() + self.shared.as_ref().map_or(0, |s| s.bytes().len())
    }

    /// Bytes of heap this set holds: its own, plus its share of the shared
    /// part (divided among the sets that hold it).
    pub fn heap_bytes(&self) -> usize {
        let shared = self.shared.as_ref().map_or(0, |s| s.heap_bytes() / triomphe::ThinArc::strong_count(&s.0));
        self.own.capacity() + shared
    }

    /// Whether this set and `other` hold the same shared part (not a copy of
    /// it): what sharing a line's tags or a series' labels means.
    pub fn shares_storage_with(&self, other: &Labels) -> bool {
        matches!((&self.shared, &other.shared), (Some(a), Some(b)) if SharedPart::ptr_eq(a, b))
    }

    /// The same labels, all in the shared part: clones of the result share
    /// them instead of copying (one copy-free move; for a series with several
    /// samples).
    pub fn share(mut self) -> Labels {
        if self.own.is_empty() {
            return self;
        }
        if let Some(shared) = self.shared.take() {
            self.own.extend_from_slice(shared.bytes());
        }
        Labels { own: ThinVec::new(), shared: Some(SharedPart::new(&self.own)) }
    }

    /// The shared part when it holds the whole set (see [`Labels::share`]):
    /// what a table of shared sets keeps.
    pub fn shared_whole(&self) -> Option<&SharedPart> {
        self.shared.as_ref().filter(|_| self.own.is_empty())
    }

    /// The set whose labels are all in `shared`, a part taken from
    /// [`Labels::shared_whole`] (a reference, not a copy).
    pub fn from_shared_whole(shared: SharedPart) -> Labels {
        if shared.bytes().is_empty() {
            return Labels::new();
        }
        Labels { own: ThinVec::new(), shared: Some(shared) }
    }

    /// This set followed by the labels of `rest`, sharing them when `rest`
    /// holds only shared labels (see [`Labels::share`]) and this set none;
    /// copying them otherwise.
    pub fn then_shared(mut self, rest: &Labels) -> Labels {
        if self.shared.is_none() && rest.own.is_empty() {
            self.shared = rest.shared.clone();
        } else {
            for part in rest.packed_parts() {
                self.own_mut().extend_from_slice(part);
            }
        }
        self
    }

    /// The own part, to write to; the shared part is copied into it first
    /// (copy on write).
    #[inline]
    fn own_mut(&mut self) -> &mut ThinVec<u8> {
        if self.shared.is_some() {
            self.unshare();
        }
        &mut self.own
    }

    #[cold]
    fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            self.own.extend_from_slice(shared.bytes());
        }
    }

    /// The labels as owned values, for code that rewrites them; see [`Labels::from`].
    pub fn to_vec(&self) -> Vec<Label> {
        self.iter().map(LabelRef::to_owned).collect()
    }

    /// Sorts by name (then value, so the order is total).
    pub fn sort(&mut self) {
        if self.names_strictly_increasing() {
            return;
        }
        let mut labels: Vec<LabelRef<'_>> = self.iter().collect();
        if labels.is_sorted() {
            return;
        }
        labels.sort_unstable();
        let sorted = Labels::from_refs(labels);
        *self = sorted;
    }

    /// Names in strictly increasing order: sorted, and no name twice. The
    /// usual case once the normalize stage ran, checked on the first byte of
    /// each name where that decides (it almost always does).
    pub fn names_strictly_increasing(&self) -> bool {
        let mut labels = self.iter();
        let Some(mut previous) = labels.next() else { return true };
        for l in labels {
            if !name_before(previous.name.as_bytes(), l.name.as_bytes()) {
                return false;
            }
            previous = l;
        }
        true
    }

    /// A stable 64-bit hash of the series identity, independent of process,
    /// machine and version (it keys Kafka partitions and shards). Labels must
    /// be sorted.
    pub fn series_hash(&self) -> u64 {
        match &self.shared {
            None => xxhash_rust::xxh3::xxh3_64(&self.own),
            Some(shared) if self.own.is_empty() => shared.0.header.header.series_hash,
            // The streaming form gives the one-shot digest of the concatenation.
            Some(shared) => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&self.own);
                h.update(shared.bytes());
                h.digest()
            }
        }
    }

    /// 128 bits of xxh3 over the packed form (both parts, in order), for
    /// tables keyed by the labels as they are (not sorted first). Worked out
    /// on each call (see [`SharedPart`]).
    #[inline]
    pub fn digest128(&self) -> u128 {
        match (&self.shared, self.own.is_empty()) {
            (None, _) => xxhash_rust::xxh3::xxh3_128(&self.own),
            (Some(shared), true) => xxhash_rust::xxh3::xxh3_128(shared.bytes()),
            (Some(shared), false) => {
                let mut h = xxhash_rust::xxh3::Xxh3::new();
                h.update(&self.own);
                h.update(shared.bytes());
                h.digest128()
            }
        }
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        match (&self.shared, &other.shared) {
            (None, None) => self.own == other.own,
            (Some(a), Some(b)) if SharedPart::ptr_eq(a, b) => self.own == other.own,
            _ => {
                let ([a0, a1], [b0, b1]) = (self.packed_parts(), other.packed_parts());
                a0.len() + a1.len() == b0.len() + b1.len() && a0.iter().chain(a1).eq(b0.iter().chain(b1))
            }
        }
    }
}

impl Eq for Labels {}

/// Consistent with equality whichever part holds which label: the hash of
/// the labels' packed form.
impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.series_hash());
    }
}

/// The labels of a [`Labels`] set, in their order.
#[derive(Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
    /// The shared part, once `rest` (the own part) is done.
    next: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = LabelRef<'a>;

    #[inline(always)]
    fn next(&mut self) -> Option<LabelRef<'a>> {
        let mut rest = self.rest;
        if rest.is_empty() {
            if self.next.is_empty() {
                return None;
            }
            rest = std::mem::take(&mut self.next);
        }
        // `0x0A len 0x0A name_len`: with short labels (every length below
        // 128, the usual case) each length is one byte at a fixed place.
        let (name_at, name_len, message_end) = match rest {
            [_, message, _, name_len, ..] if *message < 0x80 && *name_len < 0x80 => {
                (4, *name_len as usize, 2 + *message as usize)
            }
            _ => {
                let mut at = 1;
                let message = read_varint(rest, &mut at);
                let message_end = at + message;
                at += 1;
                let name_len = read_varint(rest, &mut at);
                (at, name_len, message_end)
            }
        };
        let mut at = name_at + name_len + 1;
        let value_len = read_varint(rest, &mut at);
        let (name, value) = (&rest[name_at..name_at + name_len], &rest[at..message_end]);
        debug_assert_eq!(value.len(), value_len);
        self.rest = &rest[message_end..];
        // SAFETY: `Labels::own` (and the shared part, a former `own`) is only written by `push_with`, which copies
        // whole `&str`s and frames them with their exact lengths, so `name`
        // and `value` are exactly strings that were pushed.
        unsafe {
            Some(LabelRef { name: std::str::from_utf8_unchecked(name), value: std::str::from_utf8_unchecked(value) })
        }
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = LabelRef<'a>;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl From<Vec<Label>> for Labels {
    fn from(labels: Vec<Label>) -> Self {
        Labels::from(labels.as_slice())
    }
}

impl From<&[Label]> for Labels {
    fn from(labels: &[Label]) -> Self {
        let bytes = labels.iter().map(|l| l.name.len() + l.value.len()).sum();
        let mut out = Labels::with_capacity(labels.len(), bytes);
        for l in labels {
            out.push(&l.name, &l.value);
        }
        out
    }
}

/// `dst.copy_from_slice(src)` for the short strings labels are made of,
/// without a call to `memcpy`: two overlapping fixed-size copies cover any
/// length up to twice their width. `dst` and `src` have the same length.
#[inline(always)]
pub fn copy_bytes(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if (17..=32).contains(&n) {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..]);
    } else if n < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// `a < b` for label names, deciding on the first byte when it differs.
#[inline]
pub fn name_before(a: &[u8], b: &[u8]) -> bool {
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x < y,
        _ => a < b,
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name().unwrap_or("");
        f.write_str(name)?;
        f.write_str("{")?;
        let mut first = true;
        for l in self.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter().map(|l| (l.name, l.value))).finish()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        let mut out = Labels::new();
        for (n, v) in iter {
            out.push(n, v);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_boundaries_not_just_bytes() {
        let a: Labels = [("a", "bc")].into_iter().collect();
        let b: Labels = [("ab", "c")].into_iter().collect();
        assert_ne!(a.series_hash(), b.series_hash());
    }

    /// Kafka partitions and shard choices follow the hash: it must not change
    /// between versions unnoticed.
    #[test]
    fn the_hash_of_a_known_series_is_pinned() {
        let labels: Labels = [("__name__", "up"), ("job", "node")].into_iter().collect();
        assert_eq!(labels.series_hash(), PINNED_HASH, "{:#x}", labels.series_hash());
    }

    const PINNED_HASH: u64 = 0xcea1_5715_d363_446f;

    #[test]
    fn the_packed_form_is_the_protobuf_encoding_of_repeated_labels() {
        use prost::Message;
        let long = "v".repeat(300);
        let pairs = [("__name__", "up"), ("empty", ""), ("long", long.as_str()), ("ü", "ø")];
        let labels: Labels = pairs.iter().copied().collect();
        let series =
            crate::proto::v1::Series::decode(labels.packed_parts().concat().as_slice()).expect("valid protobuf");
        let decoded: Vec<(&str, &str)> = series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())).collect();
        assert_eq!(decoded, pairs);
        let remote = crate::proto::prometheus::TimeSeries::decode(labels.packed_parts().concat().as_slice())
            .expect("valid protobuf");
        assert_eq!(remote.labels.len(), 4);
    }

    #[test]
    fn sorted_labels_hash_equal_regardless_of_input_order() {
        let mut a: Labels = [("__name__", "up"), ("job", "x"), ("a", "1")].into_iter().collect();
        let mut b: Labels = [("a", "1"), ("job", "x"), ("__name__", "up")].into_iter().collect();
        a.sort();
        b.sort();
        assert_eq!(a.series_hash(), b.series_hash());
        assert_eq!(a.to_string(), "up{a=\"1\",job=\"x\"}");
    }

    #[test]
    fn packing_round_trips_every_label_including_empty_and_unicode_ones() {
        let pairs = [("__name__", "ü_metric"), ("", "empty name"), ("empty_value", ""), ("k", "v\u{1F600}")];
        let labels: Labels = pairs.iter().copied().collect();
        let back: Vec<(&str, &str)> = labels.iter().map(|l| (l.name, l.value)).collect();
        assert_eq!(back, pairs);
        assert_eq!(labels.len(), 4);
        assert_eq!(labels.get("empty_value"), Some(""));
        assert_eq!(labels.get("missing"), None);
        assert_eq!(Labels::from(labels.to_vec()), labels);
        assert!(Labels::new().is_empty() && Labels::new().iter().next().is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_labels_round_trip_and_decode_as_protobuf(
            pairs in proptest::collection::vec(("\\PC{0,140}", "\\PC{0,200}"), 0..8),
        ) {
            use prost::Message;
            let labels: Labels = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let back: Vec<(String, String)> = labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
            proptest::prop_assert_eq!(&back, &pairs);
            proptest::prop_assert_eq!(labels.len(), pairs.len());
            let series = crate::proto::v1::Series::decode(labels.packed_parts().concat().as_slice()).expect("valid protobuf");
            let decoded: Vec<(String, String)> = series.labels.into_iter().map(|l| (l.name, l.value)).collect();
            proptest::prop_assert_eq!(decoded, pairs);
        }
    }

    /// The same labels split differently between the own and the shared part.
    fn split_forms() -> (Labels, Labels, Labels) {
        let pairs = [("__name__", "cpu_user"), ("host", "a"), ("long", "v".repeat(200).leak())];
        let whole: Labels = pairs.iter().copied().collect();
        let all_shared = whole.clone().share();
        let tags: Labels = pairs[1..].iter().copied().collect();
        let name: Labels = pairs[..1].iter().copied().collect();
        let split = name.then_shared(&tags.share());
        (whole, all_shared, split)
    }

    #[test]
    fn where_labels_are_stored_does_not_change_their_value() {
        let (whole, all_shared, split) = split_forms();
        for other in [&all_shared, &split] {
            assert_eq!(other, &whole);
            assert_eq!(&whole, other);
            assert_eq!(other.series_hash(), whole.series_hash());
            assert_eq!(other.to_vec(), whole.to_vec());
            assert_eq!(other.len(), 3);
            assert_eq!(other.packed_len(), whole.packed_len());
            assert_eq!(other.packed_parts().concat(), whole.packed_parts().concat());
            assert_eq!(other.get("long"), whole.get("long"));
            assert_eq!(other.to_string(), whole.to_string());
            let mut h = std::collections::HashSet::new();
            h.insert(whole.clone());
            assert!(h.contains(other));
        }
        assert_ne!(split, [("__name__", "cpu_user"), ("host", "a")].into_iter().collect::<Labels>());
        assert!(split.names_strictly_increasing());
    }

    #[test]
    fn clones_share_and_writes_copy_first() {
        let (whole, all_shared, split) = split_forms();
        let copy = all_shared.clone();
        assert!(copy.shares_storage_with(&all_shared) && !whole.shares_storage_with(&whole.clone()));
        assert_eq!(copy.packed_parts()[1].as_ptr(), all_shared.packed_parts()[1].as_ptr());
        let mut written = split.clone();
        written.push("zone", "z1");
        assert!(!written.shares_storage_with(&split));
        assert_eq!(split, whole, "the set written to copied the shared labels, the others kept them");
        assert_eq!(written.get("zone"), Some("z1"));
        assert_eq!(written.len(), 4);
        let mut removed = split.clone();
        assert!(removed.remove("host"));
        assert_eq!(removed.to_vec(), [whole.to_vec()[0].clone(), whole.to_vec()[2].clone()]);
        assert_eq!(split.len(), 3);
        let mut unsorted = [("b", "1")].into_iter().collect::<Labels>().then_shared(&whole.clone().share());
        unsorted.sort();
        assert_eq!(unsorted.iter().map(|l| l.name).collect::<Vec<_>>(), ["__name__", "b", "host", "long"]);
    }

    #[test]
    fn short_copies_copy_every_length() {
        let src: Vec<u8> = (0..80).collect();
        for n in 0..=80 {
            let mut dst = vec![0xaa; n];
            copy_bytes(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n]);
        }
    }

    #[test]
    fn sorting_matches_a_full_sort_whatever_the_order() {
        let cases: [&[(&str, &str)]; 5] = [
            &[("__name__", "up"), ("a", "1"), ("job", "x")],
            &[("b", "1"), ("a", "2")],
            &[("a", "2"), ("a", "1")],
            &[("ab", "1"), ("aa", "1"), ("a", "1")],
            &[("a", "1"), ("a", "1")],
        ];
        for pairs in cases {
            let mut fast: Labels = pairs.iter().copied().collect();
            fast.sort();
            let mut full = pairs.to_vec();
            full.sort_unstable();
            assert_eq!(fast, full.into_iter().collect::<Labels>(), "{pairs:?}");
        }
        let unique: Labels = [("a", "1"), ("b", "1")].into_iter().collect();
        assert!(unique.names_strictly_increasing());
        let repeated: Labels = [("a", "1"), ("a", "2")].into_iter().collect();
        assert!(!repeated.names_strictly_increasing());
    }
}
