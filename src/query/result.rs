//! The normalized result (DESIGN §7.1): one shape, whatever the backend.

use std::collections::BTreeMap;

use serde::Serialize;

/// `data` of `POST /api/v1/graph/render`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RenderResult {
    /// The sink name the data was read from.
    pub backend: String,
    /// Aligned grid (ms since the epoch).
    pub start: i64,
    pub end: i64,
    pub step_ms: i64,
    /// Every series of every graph series, each sorted by its labels within
    /// its graph series, graph series in definition order.
    pub series: Vec<ResultSeries>,
    pub warnings: Vec<String>,
}

/// One line of a rendered graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResultSeries {
    /// The registry key of the metric.
    pub metric: String,
    /// The labels that identify this line: the `group_by` labels (all present,
    /// `""` for a series without the label is left out), or every label but
    /// `__name__` when nothing is combined.
    pub labels: BTreeMap<String, String>,
    pub legend: String,
    pub unit: Option<String>,
    /// Exactly one point per grid timestamp, ascending; `None` (JSON `null`) for an empty bucket.
    pub points: Vec<(i64, Option<f64>)>,
}
