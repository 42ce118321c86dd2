use std::fmt;

use compact_str::CompactString;
use xxhash_rust::xxh3::Xxh3;

/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Label names and values: short strings are stored inline (up to 24 bytes),
/// which covers almost every real label without a heap allocation.
pub type LabelStr = CompactString;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: LabelStr,
    pub value: LabelStr,
}

impl Label {
    pub fn new(name: impl Into<LabelStr>, value: impl Into<LabelStr>) -> Self {
        Label { name: name.into(), value: value.into() }
    }
}

/// The identity of a series. Receivers may hand over labels in any order;
/// the pipeline sorts them (see [`Labels::sort`]) before anything hashes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(pub Vec<Label>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Self {
        Labels(Vec::with_capacity(n))
    }

    pub fn push(&mut self, name: impl Into<LabelStr>, value: impl Into<LabelStr>) {
        self.0.push(Label::new(name, value));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }

    pub fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME_LABEL)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by name (then value, so the order is total).
    pub fn sort(&mut self) {
        if !self.names_strictly_increasing() && !self.0.is_sorted() {
            self.0.sort_unstable();
        }
    }

    /// Names in strictly increasing order: sorted, and no name twice. The
    /// usual case once the normalize stage ran, checked on the first byte of
    /// each name where that decides (it almost always does).
    pub fn names_strictly_increasing(&self) -> bool {
        self.0.windows(2).all(|w| name_before(w[0].name.as_bytes(), w[1].name.as_bytes()))
    }

    /// A stable 64-bit hash of the series identity, independent of process
    /// and machine (it keys Kafka partitions and shards). Labels must be sorted.
    pub fn series_hash(&self) -> u64 {
        // One-shot xxh3 over a stack buffer: the streaming hasher's per-update
        // overhead was 10% of the daemon's CPU (perf, BENCHMARKS.md).
        let mut buf = [0u8; 512];
        let mut len = 0;
        for l in &self.0 {
            let (n, v) = (l.name.as_bytes(), l.value.as_bytes());
            if len + n.len() + v.len() + 2 > buf.len() {
                return self.series_hash_streaming();
            }
            copy_bytes(&mut buf[len..len + n.len()], n);
            len += n.len();
            buf[len] = 0xff;
            copy_bytes(&mut buf[len + 1..len + 1 + v.len()], v);
            len += v.len() + 1;
            buf[len] = 0xfe;
            len += 1;
        }
        xxhash_rust::xxh3::xxh3_64(&buf[..len])
    }

    fn series_hash_streaming(&self) -> u64 {
        let mut h = Xxh3::new();
        for l in &self.0 {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xfe]);
        }
        h.digest()
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
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value.as_str())?;
        }
        f.write_str("}")
    }
}

impl<N: Into<LabelStr>, V: Into<LabelStr>> FromIterator<(N, V)> for Labels {
    fn from_iter<T: IntoIterator<Item = (N, V)>>(iter: T) -> Self {
        Labels(iter.into_iter().map(|(n, v)| Label::new(n, v)).collect())
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

    #[test]
    fn long_label_sets_hash_like_short_ones() {
        let long: Labels = (0..40).map(|i| (format!("label_{i}"), "v".repeat(20))).collect();
        assert_eq!(long.series_hash(), long.series_hash_streaming());
        let short: Labels = [("a", "b")].into_iter().collect();
        assert_eq!(short.series_hash(), short.series_hash_streaming());
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
            let mut full = fast.clone();
            fast.sort();
            full.0.sort_unstable();
            assert_eq!(fast, full, "{pairs:?}");
        }
        let unique: Labels = [("a", "1"), ("b", "1")].into_iter().collect();
        assert!(unique.names_strictly_increasing());
        let repeated: Labels = [("a", "1"), ("a", "2")].into_iter().collect();
        assert!(!repeated.names_strictly_increasing());
    }
}
