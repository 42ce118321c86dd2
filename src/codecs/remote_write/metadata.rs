//! Metric types learnt from remote-write metadata.
//!
//! Prometheus sends metadata (type, help, unit per metric family) in its own
//! requests, apart from the samples, so the types are remembered here and
//! given to the samples of later requests; the validate stage then checks
//! them like any other sender's types. Bounded: past [`MAX_FAMILIES`] the
//! table starts over (types are sent again every minute).

use std::collections::HashMap;

use compact_str::CompactString;
use parking_lot::RwLock;

use crate::model::MetricKind;

/// Most metric families remembered (about 64 bytes each).
pub const MAX_FAMILIES: usize = 100_000;

/// Suffixes a series adds to its family's name (counters, histograms, summaries, info).
const SUFFIXES: [&str; 6] = ["_total", "_bucket", "_count", "_sum", "_created", "_info"];

#[derive(Default)]
pub struct MetadataCache {
    kinds: RwLock<HashMap<CompactString, MetricKind>>,
}

impl MetadataCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers the types of `families` (name, kind); unknown types are skipped.
    pub fn learn<'a>(&self, families: impl IntoIterator<Item = (&'a str, MetricKind)>) {
        let mut kinds = self.kinds.write();
        for (name, kind) in families {
            if kind == MetricKind::Unspecified || name.is_empty() {
                continue;
            }
            if kinds.len() >= MAX_FAMILIES && !kinds.contains_key(name) {
                kinds.clear();
            }
            kinds.insert(name.into(), kind);
        }
    }

    /// A view for one request: one lock for all its series.
    pub fn reader(&self) -> MetadataReader<'_> {
        MetadataReader { kinds: self.kinds.read() }
    }
}

pub struct MetadataReader<'a> {
    kinds: parking_lot::RwLockReadGuard<'a, HashMap<CompactString, MetricKind>>,
}

impl MetadataReader<'_> {
    /// The type of the series named `name`: its own family, or the family it
    /// is a `_total`/`_bucket`/`_count`/`_sum`/… series of.
    pub fn kind_of(&self, name: &str) -> MetricKind {
        if self.kinds.is_empty() {
            return MetricKind::Unspecified;
        }
        if let Some(k) = self.kinds.get(name) {
            return *k;
        }
        for suffix in SUFFIXES {
            if let Some(family) = name.strip_suffix(suffix)
                && let Some(k) = self.kinds.get(family)
            {
                return *k;
            }
        }
        MetricKind::Unspecified
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_their_series() {
        let c = MetadataCache::new();
        c.learn([
            ("http_requests", MetricKind::Counter),
            ("latency", MetricKind::Histogram),
            ("x", MetricKind::Unspecified),
        ]);
        let r = c.reader();
        assert_eq!(r.kind_of("http_requests_total"), MetricKind::Counter);
        assert_eq!(r.kind_of("http_requests"), MetricKind::Counter);
        assert_eq!(r.kind_of("latency_bucket"), MetricKind::Histogram);
        assert_eq!(r.kind_of("latency_sum"), MetricKind::Histogram);
        assert_eq!(r.kind_of("x"), MetricKind::Unspecified);
        assert_eq!(r.kind_of("other_total"), MetricKind::Unspecified);
    }
}
