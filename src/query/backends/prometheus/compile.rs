//! PromQL compiler: pure, deterministic.
//!
//! Prometheus evaluates an expression at each `t = start + k·step` over a
//! look-back window; in 2.x a range selector `x[d]` holds the samples in the
//! closed interval `[t − d, t]`. The bucket `(t − step, t]` of DESIGN §7.1 is
//! therefore `x[<step − 1>ms]` (timestamps are integer milliseconds), and the
//! per-bucket functions map to the `*_over_time` family evaluated by
//! `/api/v1/query_range` at the grid points.
//!
//! `rate` and `increase` are the exception: PromQL's `rate`/`increase`
//! extrapolate a window's growth to its edges, which is not the neutral
//! definition (no extrapolation). They are compiled to an instant query of the
//! raw samples over `[start − step, end]` (`x[<end − start + step>ms]` at `end`),
//! and tsrelay computes the buckets itself — exact for any sample timing.

use std::fmt::Write;

use super::super::{Compiled, RawForm};
use crate::query::grid::TimeGrid;
use crate::query::model::Function;
use crate::query::plan::SeriesPlan;

/// What `execute` sends: one HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromRequest {
    /// `GET /api/v1/query_range?query=&start=&end=&step=` (seconds, decimal).
    Range { query: String, start_ms: i64, end_ms: i64, step_ms: i64 },
    /// `GET /api/v1/query?query=&time=` returning a matrix of raw samples.
    Instant { query: String, time_ms: i64 },
}

impl PromRequest {
    /// The request as text, for `POST /api/v1/graph/compile`.
    pub fn describe(&self) -> String {
        match self {
            PromRequest::Range { query, start_ms, end_ms, step_ms } => format!(
                "query_range query={query} start={} end={} step={}",
                seconds(*start_ms),
                seconds(*end_ms),
                seconds(*step_ms)
            ),
            PromRequest::Instant { query, time_ms } => format!("query query={query} time={}", seconds(*time_ms)),
        }
    }

    /// URL query parameters.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        match self {
            PromRequest::Range { query, start_ms, end_ms, step_ms } => vec![
                ("query", query.clone()),
                ("start", seconds(*start_ms)),
                ("end", seconds(*end_ms)),
                ("step", seconds(*step_ms)),
            ],
            PromRequest::Instant { query, time_ms } => vec![("query", query.clone()), ("time", seconds(*time_ms))],
        }
    }
}

/// Milliseconds as decimal seconds, exactly (`1700000000.5`).
pub fn seconds(ms: i64) -> String {
    if ms < 0 {
        return format!("-{}", seconds(ms.unsigned_abs().min(i64::MAX as u64) as i64));
    }
    let (s, frac) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    if frac == 0 { s.to_string() } else { format!("{s}.{frac:03}") }
}

/// A PromQL string literal (double quotes, backslash escapes).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `metric{label="v",...}`: the metric name as `__name__` matcher, then the
/// filters in the plan's order (sorted by label).
pub fn selector(plan: &SeriesPlan) -> String {
    let mut s = format!("{{__name__={}", quote(plan.metric_name()));
    for m in &plan.matchers {
        let _ = write!(s, ",{}{}{}", m.label, m.op.promql(), quote(&m.value));
    }
    s.push('}');
    s
}

/// Compiles one plan for one grid. Every function and `across` is served.
pub fn compile(plan: &SeriesPlan, grid: &TimeGrid) -> (Compiled, PromRequest) {
    let sel = selector(plan);
    let (request, form) = match plan.function {
        Function::Rate | Function::Increase => {
            let window = grid.end_ms - grid.start_ms + grid.step_ms;
            (PromRequest::Instant { query: format!("{sel}[{window}ms]"), time_ms: grid.end_ms }, RawForm::Samples)
        }
        f => {
            let inner = match f {
                Function::Raw | Function::Last => "last_over_time",
                Function::Avg => "avg_over_time",
                Function::Min => "min_over_time",
                Function::Max => "max_over_time",
                Function::Sum => "sum_over_time",
                Function::Count => "count_over_time",
                Function::Rate | Function::Increase => unreachable!("handled above"),
            };
            let expr = format!("{inner}({sel}[{}ms])", grid.step_ms - 1);
            let (query, form) = match &plan.group_by {
                None => (expr, RawForm::PerSeries),
                Some(labels) => {
                    (format!("{} by ({}) ({expr})", plan.across.as_str(), labels.join(",")), RawForm::Grouped)
                }
            };
            let request = PromRequest::Range {
                query,
                start_ms: grid.start_ms + grid.step_ms,
                end_ms: grid.end_ms,
                step_ms: grid.step_ms,
            };
            (request, form)
        }
    };
    let compiled = Compiled { queries: vec![request.describe()], form, payload: None };
    (compiled, request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::model::{Across, Matcher};
    use crate::registry::MetricEntry;

    fn plan(function: Function, group_by: Option<Vec<&str>>) -> SeriesPlan {
        let entry: MetricEntry = serde_norway::from_str("key: net.in\nname: net_in_total\ntype: counter\n").unwrap();
        SeriesPlan {
            graph: "g".into(),
            index: 0,
            entry,
            function,
            group_by: group_by.map(|g| g.into_iter().map(String::from).collect()),
            across: Across::Max,
            matchers: vec![Matcher::parse("device", "sw\"1").unwrap(), Matcher::parse("port", "=~ge-\\d+").unwrap()],
            scale: 1.0,
            legend: None,
        }
    }

    #[test]
    fn gauge_functions_use_the_bucket_window() {
        let grid = TimeGrid::new(1_700_000_000_000, 1_700_003_600_000, 60_000).unwrap();
        let (c, r) = compile(&plan(Function::Avg, Some(vec!["device"])), &grid);
        assert_eq!(c.form, RawForm::Grouped);
        assert_eq!(
            r,
            PromRequest::Range {
                query: r#"max by (device) (avg_over_time({__name__="net_in_total",device="sw\"1",port=~"ge-\\d+"}[59999ms]))"#
                    .into(),
                start_ms: 1_699_999_980_000 + 60_000,
                end_ms: 1_700_003_580_000,
                step_ms: 60_000,
            }
        );
        assert_eq!(
            c.queries[0],
            format!(
                "query_range query={} start=1700000040 end=1700003580 step=60",
                match &r {
                    PromRequest::Range { query, .. } => query,
                    _ => unreachable!(),
                }
            )
        );
        let (c, _) = compile(&plan(Function::Raw, None), &grid);
        assert_eq!(c.form, RawForm::PerSeries);
        assert!(c.queries[0].contains("last_over_time("), "{:?}", c.queries);
    }

    #[test]
    fn counters_fetch_raw_samples_from_one_step_before() {
        let grid = TimeGrid::new(0, 300_000, 60_000).unwrap();
        let (c, r) = compile(&plan(Function::Rate, Some(vec![])), &grid);
        assert_eq!(c.form, RawForm::Samples);
        assert_eq!(
            r,
            PromRequest::Instant {
                query: r#"{__name__="net_in_total",device="sw\"1",port=~"ge-\\d+"}[360000ms]"#.into(),
                time_ms: 300_000
            }
        );
        assert_eq!(seconds(1500), "1.500");
        assert_eq!(seconds(-1500), "-1.500");
    }

    #[test]
    fn deterministic() {
        let grid = TimeGrid::new(0, 3_600_000, 300_000).unwrap();
        for f in Function::ALL {
            assert_eq!(
                compile(&plan(f, Some(vec!["device"])), &grid).1,
                compile(&plan(f, Some(vec!["device"])), &grid).1
            );
        }
    }
}
