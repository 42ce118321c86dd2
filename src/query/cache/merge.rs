//! The pure half of the query cache: which buckets are missing, how one
//! backend answer for a span of buckets splits into cached buckets, and how
//! cached and fetched buckets make the lines of a whole grid again. Fuzzed
//! (`fuzz/fuzz_targets/query_cache_merge.rs`): assembling the buckets of any
//! split of a grid gives the lines [`raw_lines`] gives for the whole grid.
//!
//! # Why buckets hold per-series values, not raw samples
//!
//! A bucket holds, for every series the backend answered with, the value of
//! the plan's function over that bucket (step 1 of normalization), before
//! anything is combined. A value there depends on that bucket's data only, so a
//! bucket fetched with any span is the bucket of any window. Raw samples would
//! not split like this: `rate`/`increase` ([`RawForm::Samples`]) read one step
//! before the bucket, and drivers that compute the function on the server
//! answer with one value per point anyway. `across`, `scale`, legends and
//! sorting run after the cache, on every render, exactly as without it.
//!
//! # Which series a window has
//!
//! Without the cache a line exists for every series in the backend's answer,
//! even one without a value in the window (all `null`). A bucket therefore
//! also records which series are *present* for it, so that the union over a
//! window's buckets is the answer's series set:
//! - drivers whose answers list series with points only (Prometheus, InfluxDB):
//!   a series is present in the bucket at `t` when it has a point at `t`
//!   (per-bucket forms) or a sample in `[t − 2·step, t]` ([`RawForm::Samples`]:
//!   the backend is asked for `[start − step, end]`, whose union over a window's
//!   points `t` is exactly that);
//! - drivers that list every stored series ([`crate::query::Driver::lists_series_without_points`],
//!   rrdcached's files): every series of the answer is present in every bucket
//!   of the span it was fetched with.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::query::backends::{RawForm, RawResult};
use crate::query::grid::TimeGrid;
use crate::query::normalize::{NormalizeError, RawLine, bucket_function, format_labels, place_on_grid};
use crate::query::plan::SeriesPlan;

pub type Labels = BTreeMap<String, String>;

/// Bytes counted for one cache entry besides its series: the key, moka's own
/// bookkeeping and the allocation of the bucket (an estimate on the high side).
pub const ENTRY_OVERHEAD_BYTES: usize = 160;
/// Bytes counted per label pair besides its text (a B-tree node's share).
pub const LABEL_OVERHEAD_BYTES: usize = 64;

/// One bucket of one query: every series present in it (see the module doc),
/// sorted by labels, with its value (`None`: present, no value).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bucket {
    pub series: Vec<(Arc<Labels>, Option<f64>)>,
}

impl Bucket {
    /// The bytes the cache counts for it: an upper bound — labels shared by the
    /// buckets of one answer are counted in each of them.
    pub fn weight(&self) -> usize {
        ENTRY_OVERHEAD_BYTES
            + self
                .series
                .iter()
                .map(|(labels, _)| {
                    std::mem::size_of::<(Arc<Labels>, Option<f64>)>()
                        + labels.iter().map(|(k, v)| k.len() + v.len() + LABEL_OVERHEAD_BYTES).sum::<usize>()
                })
                .sum::<usize>()
    }
}

/// Runs of consecutive missing points, `(first, last)` inclusive, ascending.
pub fn missing_spans(present: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut run: Option<usize> = None;
    for (k, &p) in present.iter().enumerate() {
        match (p, run) {
            (false, None) => run = Some(k),
            (true, Some(first)) => {
                out.push((first, k - 1));
                run = None;
            }
            _ => {}
        }
    }
    if let Some(first) = run {
        out.push((first, present.len() - 1));
    }
    out
}

/// The grid of points `first ..= last` of `grid` (same step).
pub fn span_grid(grid: &TimeGrid, first: usize, last: usize) -> TimeGrid {
    TimeGrid { start_ms: grid.point(first) - grid.step_ms, end_ms: grid.point(last), step_ms: grid.step_ms }
}

/// One series of a span's answer: labels, one value per point, present per point.
type SpanLine<'a> = (&'a Labels, Vec<Option<f64>>, Vec<bool>);

/// One backend answer for `span` → one bucket per point of `span`.
/// `lists_all`: the driver lists series without points (see the module doc).
pub fn split(
    plan: &SeriesPlan,
    span: &TimeGrid,
    raw: &RawResult,
    lists_all: bool,
) -> Result<Vec<Bucket>, NormalizeError> {
    let len = span.len();
    let step = span.step_ms;
    let mut series: Vec<SpanLine> = Vec::with_capacity(raw.series.len());
    for s in &raw.series {
        let (values, present) = match raw.form {
            RawForm::Samples => {
                let values = bucket_function(&s.points, plan.function, span);
                // A sample in [t − 2·step, t] for each point t (points ascend).
                let mut present = vec![lists_all; len];
                if !lists_all {
                    let mut i = 0;
                    for (k, t) in span.points().enumerate() {
                        while i < s.points.len() && s.points[i].0 < t - 2 * step {
                            i += 1;
                        }
                        present[k] = s.points.get(i).is_some_and(|&(ts, _)| ts <= t);
                    }
                }
                (values, present)
            }
            RawForm::PerSeries | RawForm::Grouped => {
                let values = place_on_grid(s, span)?;
                let mut present = vec![lists_all; len];
                for &(t, _) in &s.points {
                    if let Some(k) = span.index_of_point(t) {
                        present[k] = true;
                    }
                }
                (values, present)
            }
        };
        series.push((&s.labels, values, present));
    }
    series.sort_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = series.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(NormalizeError::Duplicate { labels: format_labels(w[0].0) });
    }
    let shared: Vec<Arc<Labels>> = series.iter().map(|(l, _, _)| Arc::new((*l).clone())).collect();
    Ok((0..len)
        .map(|k| Bucket {
            series: series
                .iter()
                .zip(&shared)
                .filter(|((_, _, present), _)| present[k])
                .map(|((_, values, _), labels)| (labels.clone(), values[k]))
                .collect(),
        })
        .collect())
}

/// The lines of a whole grid from one bucket per point, sorted by labels as
/// [`crate::query::normalize::raw_lines`] sorts them.
pub fn assemble(buckets: &[Arc<Bucket>]) -> Vec<RawLine> {
    let len = buckets.len();
    let mut lines: BTreeMap<&Labels, Vec<Option<f64>>> = BTreeMap::new();
    for (k, bucket) in buckets.iter().enumerate() {
        for (labels, value) in &bucket.series {
            lines.entry(labels.as_ref()).or_insert_with(|| vec![None; len])[k] = *value;
        }
    }
    lines.into_iter().map(|(labels, values)| (labels.clone(), values)).collect()
}

#[cfg(test)]
mod tests;
