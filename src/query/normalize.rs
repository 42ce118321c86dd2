//! The neutral half of every render: from a driver's [`RawResult`] to the
//! normalized result of DESIGN §7.1 (dense grid, `null` for empty buckets,
//! series sorted by labels). The per-bucket functions here are the reference
//! definition every driver is tested against.

use std::collections::BTreeMap;

use super::backends::{RawForm, RawResult, RawSeries};
use super::grid::TimeGrid;
use super::model::{Across, Function};
use super::plan::SeriesPlan;
use super::result::ResultSeries;

/// A driver returned something that breaks the [`RawForm`] contract (HTTP 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("series {labels} has a point at {t} ms, which is not on the grid (start {start}, step {step} ms)")]
    OffGrid { labels: String, t: i64, start: i64, step: i64 },
    #[error("two series have the same labels {labels}")]
    Duplicate { labels: String },
}

/// Computes `function` over each bucket `(t − step, t]` of `grid` from raw
/// samples (ascending by time; NaN and infinite samples are not values and are
/// ignored: JSON has no spelling for them and the result is never NaN). See [`Function`] for
/// the definitions; `increase`/`rate` read the closed window `[t − step, t]`.
pub fn bucket_function(samples: &[(i64, f64)], function: Function, grid: &TimeGrid) -> Vec<Option<f64>> {
    let step = grid.step_ms;
    let mut out = Vec::with_capacity(grid.len());
    // `lo`: first sample with ts > t − step; `edge`: first with ts ≥ t − step; `hi`: first with ts > t.
    let (mut lo, mut edge, mut hi) = (0usize, 0usize, 0usize);
    let samples: Vec<(i64, f64)> = samples.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    for t in grid.points() {
        while edge < samples.len() && samples[edge].0 < t - step {
            edge += 1;
        }
        lo = lo.max(edge);
        while lo < samples.len() && samples[lo].0 <= t - step {
            lo += 1;
        }
        hi = hi.max(lo);
        while hi < samples.len() && samples[hi].0 <= t {
            hi += 1;
        }
        let bucket = &samples[lo..hi];
        let values = || bucket.iter().map(|&(_, v)| v);
        let value = match function {
            Function::Increase | Function::Rate => {
                let window = &samples[edge..hi];
                (window.len() >= 2).then(|| {
                    let inc: f64 = window.windows(2).map(|w| counter_delta(w[0].1, w[1].1)).sum();
                    if function == Function::Rate { inc / grid.step_seconds() } else { inc }
                })
            }
            _ if bucket.is_empty() => None,
            Function::Raw | Function::Last => bucket.last().map(|&(_, v)| v),
            Function::Avg => Some(values().sum::<f64>() / bucket.len() as f64),
            Function::Min => values().reduce(f64::min),
            Function::Max => values().reduce(f64::max),
            Function::Sum => Some(values().sum()),
            Function::Count => Some(bucket.len() as f64),
        };
        // a sum or average that overflows f64 has no JSON spelling: no value
        out.push(value.filter(|v| v.is_finite()));
    }
    out
}

/// The growth of a counter from `prev` to `next`: a decrease is a reset and the
/// counter restarted from zero, so the growth is `next` (never negative).
pub fn counter_delta(prev: f64, next: f64) -> f64 {
    if next >= prev { next - prev } else { next.max(0.0) }
}

/// Places points that are already per bucket onto the grid.
pub fn place_on_grid(series: &RawSeries, grid: &TimeGrid) -> Result<Vec<Option<f64>>, NormalizeError> {
    let mut out = vec![None; grid.len()];
    for &(t, v) in &series.points {
        let k = grid.index_of_point(t).ok_or_else(|| NormalizeError::OffGrid {
            labels: format_labels(&series.labels),
            t,
            start: grid.start_ms,
            step: grid.step_ms,
        })?;
        out[k] = v.is_finite().then_some(v);
    }
    Ok(out)
}

/// Combines per-point values of several series.
pub fn combine(across: Across, inputs: &[Vec<Option<f64>>], len: usize) -> Vec<Option<f64>> {
    (0..len)
        .map(|k| {
            let mut present = inputs.iter().filter_map(|s| s[k]);
            let first = present.next()?;
            let (mut n, mut sum, mut min, mut max) = (1usize, first, first, first);
            for v in present {
                n += 1;
                sum += v;
                min = min.min(v);
                max = max.max(v);
            }
            let v = match across {
                Across::Sum => sum,
                Across::Avg => sum / n as f64,
                Across::Min => min,
                Across::Max => max,
                Across::Count => n as f64,
            };
            v.is_finite().then_some(v)
        })
        .collect()
}

/// One line before formatting: its labels and one value per grid point.
type Line = (BTreeMap<String, String>, Vec<Option<f64>>);

/// One series of a driver's answer with one value per grid point, before
/// anything is combined: its labels exactly as the driver gave them.
pub type RawLine = (BTreeMap<String, String>, Vec<Option<f64>>);

/// The whole neutral pipeline for one graph series: [`raw_lines`], then [`finish`].
pub fn normalize(
    plan: &SeriesPlan,
    grid: &TimeGrid,
    raw: &RawResult,
    unit: Option<&str>,
) -> Result<Vec<ResultSeries>, NormalizeError> {
    finish(plan, grid, raw.form, raw_lines(plan, grid, raw)?, unit)
}

/// Step 1: one value per grid point per series (the per-bucket function over
/// samples, or the driver's points placed on the grid), sorted by the driver's
/// labels so that what `across` combines is summed in one order whatever order
/// the backend answered in (the query cache assembles lines in that order too).
pub fn raw_lines(plan: &SeriesPlan, grid: &TimeGrid, raw: &RawResult) -> Result<Vec<RawLine>, NormalizeError> {
    let mut out: Vec<RawLine> = Vec::with_capacity(raw.series.len());
    for s in &raw.series {
        let values = match raw.form {
            RawForm::Samples => bucket_function(&s.points, plan.function, grid),
            RawForm::PerSeries | RawForm::Grouped => place_on_grid(s, grid)?,
        };
        out.push((s.labels.clone(), values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Steps 2 and 3: `across` over the `group_by` labels (unless the server did it:
/// `form` is [`RawForm::Grouped`]), then scale, legend, sorting, duplicates.
/// `lines` must be sorted by their labels ([`raw_lines`] sorts them).
pub fn finish(
    plan: &SeriesPlan,
    grid: &TimeGrid,
    form: RawForm,
    lines: Vec<RawLine>,
    unit: Option<&str>,
) -> Result<Vec<ResultSeries>, NormalizeError> {
    let per_series: Vec<Line> = lines
        .into_iter()
        .map(|(mut labels, values)| {
            labels.remove(crate::model::METRIC_NAME_LABEL);
            labels.retain(|_, v| !v.is_empty());
            (labels, values)
        })
        .collect();
    // 2. across
    let lines: Vec<Line> = match (&plan.group_by, form) {
        (Some(group_by), RawForm::Samples | RawForm::PerSeries) => {
            let mut groups: BTreeMap<BTreeMap<String, String>, Vec<Vec<Option<f64>>>> = BTreeMap::new();
            for (labels, values) in per_series {
                groups.entry(project(&labels, group_by)).or_default().push(values);
            }
            groups.into_iter().map(|(labels, inputs)| (labels, combine(plan.across, &inputs, grid.len()))).collect()
        }
        (Some(group_by), RawForm::Grouped) => {
            per_series.into_iter().map(|(labels, values)| (project(&labels, group_by), values)).collect()
        }
        (None, _) => per_series,
    };
    // 3. scale, legend, sort, duplicates
    let mut out: Vec<ResultSeries> = lines
        .into_iter()
        .map(|(labels, values)| ResultSeries {
            metric: plan.entry.key.clone(),
            legend: legend(plan, &labels),
            unit: unit.map(str::to_string),
            points: grid
                .points()
                .zip(values)
                .map(|(t, v)| (t, v.map(|v| v * plan.scale).filter(|v| v.is_finite())))
                .collect(),
            labels,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    if let Some(w) = out.windows(2).find(|w| w[0].labels == w[1].labels) {
        return Err(NormalizeError::Duplicate { labels: format_labels(&w[0].labels) });
    }
    Ok(out)
}

fn project(labels: &BTreeMap<String, String>, keep: &[String]) -> BTreeMap<String, String> {
    keep.iter().filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

/// `{name="value", ...}`.
pub fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// The legend of a line: the template with `{label}` replaced (a missing label
/// becomes empty), or `metric{labels}` without a template.
pub fn legend(plan: &SeriesPlan, labels: &BTreeMap<String, String>) -> String {
    match &plan.legend {
        None if labels.is_empty() => plan.entry.key.clone(),
        None => format!("{}{}", plan.entry.key, format_labels(labels)),
        Some(template) => {
            let mut out = String::with_capacity(template.len());
            let mut rest = template.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                match after.find('}') {
                    Some(close) => {
                        out.push_str(labels.get(&after[..close]).map(String::as_str).unwrap_or(""));
                        rest = &after[close + 1..];
                    }
                    None => {
                        out.push_str(&rest[open..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            out
        }
    }
}

#[cfg(test)]
mod tests;
