//! The property the cache's merge must keep, as a function the unit tests and
//! the fuzz target (`fuzz/fuzz_targets/query_cache_merge.rs`) share: for any
//! backend answer and any cut of the grid into spans, assembling the buckets
//! of every span's answer gives the lines of the whole window's answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::merge::{Bucket, assemble, span_grid, split};
use crate::query::backends::{RawForm, RawResult, RawSeries};
use crate::query::grid::TimeGrid;
use crate::query::model::{Across, Function};
use crate::query::normalize::raw_lines;
use crate::query::plan::SeriesPlan;

/// A stored series: labels and `(t ms, value)`.
pub type StoredSeries = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// One case: a grid, what the backend stores, and where the grid is cut.
#[derive(Debug, Clone)]
pub struct MergeCase {
    pub function: Function,
    pub form: RawForm,
    /// The driver lists series without points (rrdcached).
    pub lists_all: bool,
    pub grid: TimeGrid,
    /// Stored series: labels and `(t ms, value)`, any order, any times.
    pub series: Vec<StoredSeries>,
    /// Indices of points where a new span starts (0 is implied).
    pub cuts: Vec<usize>,
}

/// What a backend keeping the [`RawForm`] contract answers for `window`:
/// samples in `[start − step, end]` (`Samples`) or grid points of the window
/// (per-bucket forms), ascending, de-duplicated by time; a series without any
/// unless `lists_all`.
pub fn answer(case: &MergeCase, window: &TimeGrid) -> RawResult {
    let mut series = Vec::new();
    for (labels, points) in &case.series {
        let mut kept: BTreeMap<i64, f64> = BTreeMap::new();
        for &(t, v) in points {
            let inside = match case.form {
                RawForm::Samples => t >= window.start_ms - window.step_ms && t <= window.end_ms,
                RawForm::PerSeries | RawForm::Grouped => window.index_of_point(t).is_some(),
            };
            if inside {
                kept.insert(t, v);
            }
        }
        if kept.is_empty() && !case.lists_all {
            continue;
        }
        series.push(RawSeries { labels: labels.clone(), points: kept.into_iter().collect() });
    }
    RawResult { form: case.form, series, warnings: Vec::new() }
}

/// A plan over a gauge `m` with `function`, nothing else set.
pub fn tests_plan(function: Function) -> SeriesPlan {
    let entry = serde_json::from_value(serde_json::json!({"key": "m", "name": "m", "type": "gauge"}))
        .expect("a literal registry entry");
    SeriesPlan {
        graph: "g".into(),
        index: 0,
        entry,
        function,
        group_by: None,
        across: Across::Sum,
        matchers: Vec::new(),
        scale: 1.0,
        legend: None,
    }
}

/// Checks the property; `Err` says how it broke.
pub fn check(case: &MergeCase) -> Result<(), String> {
    let mut labels: Vec<&BTreeMap<String, String>> = case.series.iter().map(|(l, _)| l).collect();
    labels.sort();
    if labels.windows(2).any(|w| w[0] == w[1]) {
        // Two series with one label set: a broken backend (both ways end in an error).
        return Ok(());
    }
    let plan = tests_plan(case.function);
    let grid = case.grid;
    let whole = raw_lines(&plan, &grid, &answer(case, &grid)).map_err(|e| format!("whole window: {e}"))?;
    let mut starts: Vec<usize> = case.cuts.iter().copied().filter(|&c| c > 0 && c < grid.len()).collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    let mut buckets: Vec<Arc<Bucket>> = Vec::with_capacity(grid.len());
    for (i, &first) in starts.iter().enumerate() {
        let last = starts.get(i + 1).map_or(grid.len() - 1, |next| next - 1);
        let span = span_grid(&grid, first, last);
        let b = split(&plan, &span, &answer(case, &span), case.lists_all)
            .map_err(|e| format!("span {first}..={last}: {e}"))?;
        if b.len() != span.len() {
            return Err(format!("span {first}..={last}: {} buckets for {} points", b.len(), span.len()));
        }
        buckets.extend(b.into_iter().map(Arc::new));
    }
    let merged = assemble(&buckets);
    if merged != whole {
        return Err(format!("assembled {merged:?}\n   whole {whole:?}"));
    }
    Ok(())
}
