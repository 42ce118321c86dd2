//! A validated series: the only input a driver's compiler ever sees.

use serde::Serialize;

use super::model::{Across, Function, Matcher};
use crate::registry::MetricEntry;

/// One series of a graph after validation against the registry
/// ([`crate::query::validate`]). Everything here is checked: the metric exists,
/// `function` fits its type, every label in `group_by` and `matchers` is one the
/// entry allows, regexes compile.
#[derive(Debug, Clone)]
pub struct SeriesPlan {
    /// The graph's id (inline graphs too) and this series' index in it, for messages.
    pub graph: String,
    pub index: usize,
    /// The registry entry (its `name` is the `__name__`; `backends` holds the
    /// per-backend naming a driver needs to find the data).
    pub entry: MetricEntry,
    pub function: Function,
    /// `None`: keep every label, combine nothing. `Some(labels)`: sorted,
    /// de-duplicated; series sharing them are combined with `across`.
    pub group_by: Option<Vec<String>>,
    pub across: Across,
    /// Sorted by label, then operator.
    pub matchers: Vec<Matcher>,
    /// Applied by the neutral layer after `across`.
    pub scale: f64,
    /// Applied by the neutral layer.
    pub legend: Option<String>,
}

impl SeriesPlan {
    /// The metric name (`__name__`) the data is stored under.
    pub fn metric_name(&self) -> &str {
        &self.entry.name
    }

    /// Whether series are combined (`group_by` present).
    pub fn combines(&self) -> bool {
        self.group_by.is_some()
    }

    /// Where this series is in its graph, for error messages: `graph "g" series[1]`.
    pub fn location(&self) -> String {
        format!("graph {:?} series[{}]", self.graph, self.index)
    }
}

/// A summary of a plan for JSON answers (compile endpoint, warnings).
#[derive(Debug, Clone, Serialize)]
pub struct PlanSummary {
    pub metric: String,
    pub function: Function,
    pub group_by: Option<Vec<String>>,
    pub across: Across,
}
