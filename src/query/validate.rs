//! Validation of graph definitions against the metric registry (DESIGN §7.1),
//! before anything is compiled. Every error names the graph, the series index and
//! the field.

use std::collections::BTreeSet;

use super::model::{GraphDef, Matcher, SeriesDef};
use super::plan::SeriesPlan;
use crate::model::METRIC_NAME_LABEL;
use crate::registry::{MetricRegistry, MetricType, is_valid_label_name};

/// An invalid graph definition (HTTP 400; `tsrelay validate` exits non-zero).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("graph {graph:?}: {field}: {message}")]
    Graph { graph: String, field: String, message: String },
    #[error("graph {graph:?} series[{index}]: {field}: {message}")]
    Series { graph: String, index: usize, field: String, message: String },
}

impl DefinitionError {
    /// The offending field, e.g. `series[1].function`.
    pub fn field(&self) -> String {
        match self {
            DefinitionError::Graph { field, .. } => field.clone(),
            DefinitionError::Series { index, field, .. } => format!("series[{index}].{field}"),
        }
    }
}

/// A graph whose every series is validated.
#[derive(Debug, Clone)]
pub struct ValidatedGraph {
    pub def: GraphDef,
    pub series: Vec<SeriesPlan>,
}

/// Graph ids: `[a-z0-9_.-]+`.
pub fn is_valid_graph_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'))
}

/// Checks `def` against `registry` and builds one [`SeriesPlan`] per series.
pub fn validate_graph(def: &GraphDef, registry: &MetricRegistry) -> Result<ValidatedGraph, DefinitionError> {
    let graph_err = |field: &str, message: String| DefinitionError::Graph {
        graph: def.id.clone(),
        field: field.to_string(),
        message,
    };
    if !is_valid_graph_id(&def.id) {
        return Err(graph_err("id", "must be one or more of [a-z0-9_.-]".into()));
    }
    if def.series.is_empty() {
        return Err(graph_err("series", "is empty; a graph needs at least one series".into()));
    }
    let series = def
        .series
        .iter()
        .enumerate()
        .map(|(index, s)| validate_series(&def.id, index, s, registry))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ValidatedGraph { def: def.clone(), series })
}

fn validate_series(
    graph: &str,
    index: usize,
    s: &SeriesDef,
    registry: &MetricRegistry,
) -> Result<SeriesPlan, DefinitionError> {
    let err = |field: &str, message: String| DefinitionError::Series {
        graph: graph.to_string(),
        index,
        field: field.to_string(),
        message,
    };
    let entry = registry.get_by_key(&s.metric).or_else(|| registry.get(&s.metric)).ok_or_else(|| {
        err("metric", format!("unknown metric {:?}: neither a registry key nor a registered name", s.metric))
    })?;
    if s.function.needs_counter() && entry.metric_type != MetricType::Counter {
        return Err(err(
            "function",
            format!(
                "{} needs a counter, but {:?} ({}) is a {}",
                s.function,
                entry.key,
                entry.name,
                entry.metric_type.as_str()
            ),
        ));
    }
    let check_label = |field: &str, label: &str| -> Result<(), DefinitionError> {
        if label == METRIC_NAME_LABEL {
            return Err(err(field, format!("{METRIC_NAME_LABEL} is the metric itself; name it in `metric`")));
        }
        if !is_valid_label_name(label) {
            return Err(err(field, format!("{label:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)")));
        }
        if !entry.allows_label(label) {
            let allowed = entry.labels.as_deref().unwrap_or_default().join(", ");
            return Err(err(field, format!("label {label:?} is not allowed on {:?} (allowed: {allowed})", entry.key)));
        }
        Ok(())
    };
    let group_by = match &s.group_by {
        None => None,
        Some(labels) => {
            let mut set = BTreeSet::new();
            for (i, l) in labels.iter().enumerate() {
                check_label(&format!("group_by[{i}]"), l)?;
                if !set.insert(l.clone()) {
                    return Err(err(&format!("group_by[{i}]"), format!("label {l:?} is listed twice")));
                }
            }
            Some(set.into_iter().collect::<Vec<_>>())
        }
    };
    let mut matchers = Vec::with_capacity(s.filter.len());
    for (label, spec) in &s.filter {
        let field = format!("filter.{label}");
        check_label(&field, label)?;
        matchers.push(Matcher::parse(label, spec).map_err(|m| err(&field, m))?);
    }
    let scale = s.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        return Err(err("scale", format!("{scale} must be a finite, non-zero number")));
    }
    if let Some(legend) = &s.legend {
        for placeholder in legend_placeholders(legend).map_err(|m| err("legend", m))? {
            let known = match &group_by {
                Some(g) => g.iter().any(|l| l == placeholder),
                None => entry.allows_label(placeholder) && placeholder != METRIC_NAME_LABEL,
            };
            if !known {
                return Err(err(
                    "legend",
                    format!(
                        "placeholder {{{placeholder}}} is not a label of the result (group_by keeps {:?})",
                        group_by
                    ),
                ));
            }
        }
    }
    Ok(SeriesPlan {
        graph: graph.to_string(),
        index,
        entry: entry.clone(),
        function: s.function,
        group_by,
        across: s.across,
        matchers,
        scale,
        legend: s.legend.clone(),
    })
}

/// The `{label}` placeholders of a legend template.
pub fn legend_placeholders(legend: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = legend;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| "has a `{` without a closing `}`".to_string())?;
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::query::model::{Function, GraphFile};

    pub(crate) fn registry() -> MetricRegistry {
        MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/metrics.yaml")).unwrap()
    }

    fn check(yaml: &str) -> Result<ValidatedGraph, DefinitionError> {
        let f: GraphFile = serde_norway::from_str(yaml).unwrap();
        validate_graph(&f.graphs[0], &registry())
    }

    #[test]
    fn valid_graph_becomes_plans() {
        let g = check(
            "graphs:\n- id: port.traffic\n  series:\n  - metric: network.port.octets.in\n    function: rate\n    group_by: [port, device]\n    filter: { device: sw1, port: \"=~ge-.*\" }\n    scale: 8\n    legend: \"{device} {port}\"\n  - metric: node_load1\n",
        )
        .unwrap();
        let p = &g.series[0];
        assert_eq!(p.metric_name(), "network_port_in_octets_total");
        assert_eq!(p.group_by.as_deref().unwrap(), ["device", "port"]);
        assert_eq!(p.matchers.len(), 2);
        assert_eq!(p.scale, 8.0);
        assert_eq!(g.series[1].function, Function::Raw);
        assert_eq!(g.series[1].entry.key, "host.load.1m");
    }

    #[test]
    fn errors_name_graph_series_and_field() {
        let e = check("graphs:\n- id: g\n  series:\n  - metric: node_load1\n  - metric: nope\n").unwrap_err();
        assert_eq!(e.field(), "series[1].metric");
        assert!(e.to_string().contains("graph \"g\" series[1]: metric: unknown metric \"nope\""), "{e}");

        let e = check("graphs:\n- id: g\n  series:\n  - metric: node_load1\n    function: rate\n").unwrap_err();
        assert_eq!(e.field(), "series[0].function");
        assert!(e.to_string().contains("needs a counter"), "{e}");

        let e = check("graphs:\n- id: g\n  series:\n  - metric: network.port.octets.in\n    group_by: [vlan]\n")
            .unwrap_err();
        assert_eq!(e.field(), "series[0].group_by[0]");
        assert!(e.to_string().contains("not allowed"), "{e}");

        let e = check("graphs:\n- id: g\n  series:\n  - metric: network.port.octets.in\n    filter: { vlan: x }\n")
            .unwrap_err();
        assert_eq!(e.field(), "series[0].filter.vlan");

        let e =
            check("graphs:\n- id: g\n  series:\n  - metric: network.port.octets.in\n    filter: { port: \"=~(\" }\n")
                .unwrap_err();
        assert!(e.to_string().contains("invalid regex"), "{e}");

        let e = check("graphs:\n- id: G!\n  series:\n  - metric: node_load1\n").unwrap_err();
        assert_eq!(e.field(), "id");

        let e = check("graphs:\n- id: g\n  series: []\n").unwrap_err();
        assert_eq!(e.field(), "series");

        let e = check("graphs:\n- id: g\n  series:\n  - metric: node_load1\n    scale: 0\n").unwrap_err();
        assert_eq!(e.field(), "series[0].scale");

        let e = check(
            "graphs:\n- id: g\n  series:\n  - metric: network.port.octets.in\n    function: rate\n    group_by: [device]\n    legend: \"{port}\"\n",
        )
        .unwrap_err();
        assert_eq!(e.field(), "series[0].legend");
    }
}
