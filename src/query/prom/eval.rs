//! `query` and `query_range` over a backend without PromQL: the mapped query
//! ([`super::promql`]) rendered as an inline graph by the [`QueryService`],
//! its dense grid turned into Prometheus' `vector` / `matrix` / `scalar`.
//!
//! Evaluation points: a range query's `start` and `end` are aligned down to a
//! multiple of `step` (from the epoch); the points are `start, start + step,
//! …, end`, the point at `t` is the bucket `(t − step, t]`. An instant query at
//! `time` is one bucket: the range of its function (`rate(x[5m])` → 5 min; a
//! bare selector or a number: [`INSTANT_LOOKBACK_MS`]), ending at `time`
//! aligned down to that width. Empty buckets are absent points; a series
//! without any point is left out.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::envelope::point;
use super::params::Params;
use super::promql::{MapError, Mapped, VectorQuery, map_query};
use crate::model::METRIC_NAME_LABEL;
use crate::query::backends::BackendError;
use crate::query::grid::TimeGrid;
use crate::query::model::GraphDef;
use crate::query::request::{FieldError, RenderRequest};
use crate::query::service::{QueryError, QueryService};

/// The bucket of an instant query without a range (a bare selector, a number):
/// Prometheus' default look-back, 5 minutes.
pub const INSTANT_LOOKBACK_MS: i64 = 5 * 60_000;

/// The inline graph's id in messages.
const GRAPH_ID: &str = "promql";

/// `data` and `warnings` of a successful answer.
pub struct Answer {
    pub data: Value,
    pub warnings: Vec<String>,
}

fn bad(field: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadRequest(FieldError { field: field.to_string(), message: message.into() })
}

fn mapped(params: &Params, service: &QueryService) -> Result<Mapped, QueryError> {
    let query = params.required("query").map_err(QueryError::BadRequest)?;
    map_query(query, service.registry()).map_err(|e: MapError| bad("query", e.to_string()))
}

/// `GET/POST /prom/<backend>/api/v1/query`.
pub async fn instant(
    service: &QueryService,
    backend: &str,
    params: &Params,
    now_ms: i64,
) -> Result<Answer, QueryError> {
    let time = params.time("time", Some(now_ms)).map_err(QueryError::BadRequest)?;
    let timeout = params.timeout().map_err(QueryError::BadRequest)?;
    let query = mapped(params, service)?;
    let width = match &query {
        Mapped::Vector(v) => v.range_ms.unwrap_or(INSTANT_LOOKBACK_MS),
        _ => INSTANT_LOOKBACK_MS,
    };
    let grid = grid(time - width, time, width)?;
    match query {
        Mapped::Scalar(v) => {
            Ok(Answer { data: json!({"resultType": "scalar", "result": point(grid.end_ms, v)}), warnings: vec![] })
        }
        Mapped::Unknown { metric } => Ok(unknown(&metric, "vector")),
        Mapped::Vector(q) => {
            let (lines, warnings) = render(service, backend, &q, &grid, timeout).await?;
            let result: Vec<Value> = lines
                .into_iter()
                .filter_map(|(metric, points)| {
                    points.last().map(|&(t, v)| json!({"metric": metric, "value": point(t, v)}))
                })
                .collect();
            Ok(Answer { data: json!({"resultType": "vector", "result": result}), warnings })
        }
    }
}

/// `GET/POST /prom/<backend>/api/v1/query_range`.
pub async fn range(service: &QueryService, backend: &str, params: &Params) -> Result<Answer, QueryError> {
    let start = params.time("start", None).map_err(QueryError::BadRequest)?;
    let end = params.time("end", None).map_err(QueryError::BadRequest)?;
    let step = params.duration("step").map_err(QueryError::BadRequest)?.ok_or_else(|| bad("step", "missing"))?;
    let timeout = params.timeout().map_err(QueryError::BadRequest)?;
    if end < start {
        return Err(bad("end", "end timestamp must not be before start time"));
    }
    let query = mapped(params, service)?;
    // points start, start + step, …, end: the grid begins one step earlier
    let grid = grid(start - step, end, step)?;
    if grid.len() > service.config().max_points {
        return Err(bad(
            "step",
            format!(
                "{} points per series exceed query.max_points {}: use a larger step",
                grid.len(),
                service.config().max_points
            ),
        ));
    }
    match query {
        Mapped::Scalar(v) => {
            let values: Vec<Value> = grid.points().map(|t| point(t, v)).collect();
            Ok(Answer {
                data: json!({"resultType": "matrix", "result": [{"metric": {}, "values": values}]}),
                warnings: vec![],
            })
        }
        Mapped::Unknown { metric } => Ok(unknown(&metric, "matrix")),
        Mapped::Vector(q) => {
            if let Some(r) = q.range_ms.filter(|&r| r != step) {
                return Err(bad(
                    "query",
                    format!(
                        "the range [{}] of {} must equal the step ({}): each point is the function over \
                         exactly one step bucket, nothing else is served without approximation",
                        humantime::format_duration(Duration::from_millis(r.unsigned_abs())),
                        q.series.function,
                        humantime::format_duration(Duration::from_millis(step.unsigned_abs())),
                    ),
                ));
            }
            let (lines, warnings) = render(service, backend, &q, &grid, timeout).await?;
            let result: Vec<Value> = lines
                .into_iter()
                .map(|(metric, points)| {
                    let values: Vec<Value> = points.into_iter().map(|(t, v)| point(t, v)).collect();
                    json!({"metric": metric, "values": values})
                })
                .collect();
            Ok(Answer { data: json!({"resultType": "matrix", "result": result}), warnings })
        }
    }
}

fn grid(start: i64, end: i64, step: i64) -> Result<TimeGrid, QueryError> {
    if step % 1000 != 0 {
        return Err(bad("step", format!("{step} ms is not a whole number of seconds")));
    }
    TimeGrid::new(start, end, step).map_err(|e| bad("step", e.to_string()))
}

fn unknown(metric: &str, result_type: &str) -> Answer {
    Answer {
        data: json!({"resultType": result_type, "result": []}),
        warnings: vec![format!("metric {metric:?} is not in the metric registry: no backend holds it")],
    }
}

/// One answer line: its labels and its non-empty points.
type Line = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// Renders `q` on `grid` through the neutral path; lines without any point are left out.
async fn render(
    service: &QueryService,
    backend: &str,
    q: &VectorQuery,
    grid: &TimeGrid,
    timeout: Option<Duration>,
) -> Result<(Vec<Line>, Vec<String>), QueryError> {
    let def = GraphDef { id: GRAPH_ID.into(), title: None, unit: None, series: vec![q.series.clone()] };
    let request = RenderRequest {
        graph: serde_json::to_value(&def).map_err(|e| bad("query", e.to_string()))?,
        backend: backend.to_string(),
        start: grid.start_ms.into(),
        end: Some(grid.end_ms.into()),
        step: Some((grid.step_ms / 1000).into()),
        max_points: None,
    };
    let render = service.render(&request, crate::query::service::now_ms());
    let result = match timeout.filter(|t| *t < service.config().timeout) {
        Some(t) => tokio::time::timeout(t, render)
            .await
            .map_err(|_| QueryError::Backend(BackendError::Timeout { backend: backend.to_string(), after: t }))?,
        None => render.await,
    }?;
    let lines = result
        .series
        .into_iter()
        .filter_map(|s| {
            let points: Vec<(i64, f64)> = s.points.into_iter().filter_map(|(t, v)| v.map(|v| (t, v))).collect();
            if points.is_empty() {
                return None;
            }
            let mut labels = s.labels;
            if q.keep_name {
                labels.insert(METRIC_NAME_LABEL.to_string(), q.metric.clone());
            }
            Some((labels, points))
        })
        .collect();
    Ok((lines, result.warnings))
}
