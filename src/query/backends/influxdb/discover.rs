//! Label discovery over InfluxQL: which metrics are stored where, and the
//! series, tag keys and tag values of each.
//!
//! # Names
//!
//! The sink writes a metric to measurement = its name and field = the sink's
//! `field`, unless the registry's `backends.influxdb` says otherwise
//! ([`NameMap::target`]). Discovery reads that backwards ([`NameMap::stored_in`]):
//! a measurement holds the registry metrics mapped to it, and — when no
//! registry entry claims the name for somewhere else — the unregistered metric
//! of the same name in the sink's field. A metric counts as stored when its
//! field exists in its measurement (`SHOW FIELD KEYS`).
//!
//! # Statements
//!
//! - metrics: `SHOW MEASUREMENTS` (skipped when every `match[]` names its
//!   metric), then `SHOW FIELD KEYS FROM ...`;
//! - series: `SELECT last(<field>) FROM <m> WHERE <matchers> [AND time ...]
//!   GROUP BY * SLIMIT n` — the series that hold the metric's field within the
//!   time bounds, as Prometheus' `/api/v1/series` means them;
//! - label names: `SHOW TAG KEYS FROM <m> WHERE <matchers> LIMIT n`;
//! - label values: `SHOW TAG VALUES FROM <m> WITH KEY = "<name>" WHERE <matchers> LIMIT n`.
//!
//! Matchers become tag conditions (`"label"::tag = 'v'`, `=~ /^(?:re)$/`; one
//! `match[]` per parenthesized conjunction, joined by `OR`). InfluxDB's index
//! has no time, so label names and values ignore `start`/`end`, and tag keys and
//! values are those of the whole measurement (a measurement shared by several
//! metrics' fields shows the tags of all of them); both are capability notes.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use futures::stream::{self, StreamExt, TryStreamExt};

use super::InfluxdbDriver;
use super::influxql::{self, Unquotable};
use super::response;
use crate::model::METRIC_NAME_LABEL;
use crate::query::backends::discovery::{Discovered, LabelQuery, SeriesLabels};
use crate::query::backends::{BackendError, Unsupported};
use crate::query::model::{MatchOp, Matcher};
use crate::registry::{MetricRegistry, is_valid_metric_name};

/// Measurements `SHOW MEASUREMENTS` lists at most for one discovery; beyond,
/// the answer says it considered only these (a warning).
pub const MAX_MEASUREMENTS: usize = 100_000;
/// Measurements named in one `SHOW FIELD KEYS` statement.
const FIELD_KEYS_CHUNK: usize = 100;
/// Statements of one discovery in flight at once.
const CONCURRENCY: usize = 4;

/// Where one metric is stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stored {
    pub name: String,
    pub measurement: String,
    pub field: String,
}

/// Metric names ↔ (measurement, field), as the sink maps them.
#[derive(Debug, Clone, Default)]
pub struct NameMap {
    /// Registry entries: name → (measurement, field).
    targets: HashMap<String, (String, String)>,
    /// measurement → registry entries stored there.
    by_measurement: HashMap<String, Vec<Stored>>,
    default_field: String,
}

impl NameMap {
    pub fn new(registry: &MetricRegistry, default_field: &str) -> NameMap {
        let mut map = NameMap { default_field: default_field.to_string(), ..NameMap::default() };
        for e in registry.entries() {
            let o = e.influxdb();
            let measurement = o.and_then(|o| o.measurement.clone()).unwrap_or_else(|| e.name.clone());
            let field = o.and_then(|o| o.field.clone()).unwrap_or_else(|| default_field.to_string());
            map.by_measurement.entry(measurement.clone()).or_default().push(Stored {
                name: e.name.clone(),
                measurement: measurement.clone(),
                field: field.clone(),
            });
            map.targets.insert(e.name.clone(), (measurement, field));
        }
        map
    }

    /// Where the sink writes metric `name`.
    pub fn target(&self, name: &str) -> Stored {
        let (measurement, field) =
            self.targets.get(name).cloned().unwrap_or_else(|| (name.to_string(), self.default_field.clone()));
        Stored { name: name.to_string(), measurement, field }
    }

    /// The metrics the sink may have written into `measurement`.
    pub fn stored_in(&self, measurement: &str) -> Vec<Stored> {
        let mut out = self.by_measurement.get(measurement).cloned().unwrap_or_default();
        if !self.targets.contains_key(measurement) && is_valid_metric_name(measurement) {
            out.push(Stored {
                name: measurement.to_string(),
                measurement: measurement.to_string(),
                field: self.default_field.clone(),
            });
        }
        out
    }
}

/// One matcher as a tag condition.
fn tag_condition(m: &Matcher, out: &mut String) -> Result<(), Unquotable> {
    influxql::ident(&m.label, out)?;
    out.push_str("::tag");
    match m.op {
        MatchOp::Equal | MatchOp::NotEqual => {
            if m.value.contains(['\0', '\r']) {
                out.push_str(if m.op == MatchOp::Equal { " =~ " } else { " !~ " });
                influxql::literal_regex(&m.value, out);
            } else {
                out.push_str(if m.op == MatchOp::Equal { " = " } else { " != " });
                influxql::string(&m.value, out)?;
            }
        }
        MatchOp::Regex | MatchOp::NotRegex => {
            out.push_str(if m.op == MatchOp::Regex { " =~ " } else { " !~ " });
            influxql::regex(&m.value, out);
        }
    }
    Ok(())
}

/// `(a AND b) OR (c)` of the selectors' non-name matchers; `None` when one
/// selector has none (it selects every series of the metric).
pub fn condition(selectors: &[Vec<&Matcher>]) -> Result<Option<String>, Unquotable> {
    if selectors.iter().any(Vec::is_empty) {
        return Ok(None);
    }
    let mut out = String::new();
    for (i, s) in selectors.iter().enumerate() {
        if i > 0 {
            out.push_str(" OR ");
        }
        out.push('(');
        for (j, m) in s.iter().enumerate() {
            if j > 0 {
                out.push_str(" AND ");
            }
            tag_condition(m, &mut out)?;
        }
        out.push(')');
    }
    Ok(Some(out))
}

impl InfluxdbDriver {
    fn quoting(&self, e: Unquotable) -> BackendError {
        BackendError::Unsupported(Unsupported {
            backend: self.backend.clone(),
            feature: "influxql_quoting".into(),
            message: format!("match[]: {e}"),
        })
    }

    /// `["rp".]"measurement"`.
    fn source(&self, measurement: &str, out: &mut String) -> Result<(), BackendError> {
        if let Some(rp) = &self.retention_policy {
            influxql::ident(rp, out).map_err(|e| self.quoting(e))?;
            out.push('.');
        }
        influxql::ident(measurement, out).map_err(|e| self.quoting(e))
    }

    fn from(&self, measurement: &str, out: &mut String) -> Result<(), BackendError> {
        out.push_str(" FROM ");
        self.source(measurement, out)
    }

    /// Runs a `SHOW` statement.
    async fn tables(&self, statement: &str, warnings: &mut Vec<String>) -> Result<Vec<response::Table>, BackendError> {
        let body = self.client.query(statement).await?;
        response::parse_tables(&body, warnings).map_err(|e| BackendError::BadResponse {
            backend: self.backend.clone(),
            message: format!("{e} (query: {statement})"),
        })
    }

    /// The metrics the query may select that are stored in this database.
    async fn stored_metrics(
        &self,
        query: &LabelQuery,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<Stored>, BackendError> {
        let candidates: BTreeSet<Stored> = match query.exact_names() {
            Some(names) => {
                names.into_iter().filter(|n| query.may_select_metric(n)).map(|n| self.names.target(n)).collect()
            }
            None => {
                let statement = format!("SHOW MEASUREMENTS LIMIT {}", MAX_MEASUREMENTS + 1);
                let tables = self.tables(&statement, warnings).await?;
                let mut measurements = Vec::new();
                for t in &tables {
                    measurements.extend(t.column("name").map_err(|e| self.bad(&statement, e))?.map(str::to_string));
                }
                if measurements.len() > MAX_MEASUREMENTS {
                    measurements.truncate(MAX_MEASUREMENTS);
                    warnings.push(format!(
                        "only the first {MAX_MEASUREMENTS} measurements were considered (influxdb MAX_MEASUREMENTS)"
                    ));
                }
                measurements
                    .iter()
                    .flat_map(|m| self.names.stored_in(m))
                    .filter(|s| query.may_select_metric(&s.name))
                    .collect()
            }
        };
        let measurements: BTreeSet<&str> = candidates.iter().map(|c| c.measurement.as_str()).collect();
        let measurements: Vec<&str> = measurements.into_iter().collect();
        let mut fields: HashMap<String, BTreeSet<String>> = HashMap::new();
        for chunk in measurements.chunks(FIELD_KEYS_CHUNK) {
            let mut statement = String::from("SHOW FIELD KEYS FROM ");
            for (i, m) in chunk.iter().enumerate() {
                if i > 0 {
                    statement.push(',');
                }
                self.source(m, &mut statement)?;
            }
            for t in self.tables(&statement, warnings).await? {
                let keys = t.column("fieldKey").map_err(|e| self.bad(&statement, e))?.map(str::to_string);
                fields.entry(t.name.clone()).or_default().extend(keys);
            }
        }
        Ok(candidates
            .into_iter()
            .filter(|c| fields.get(&c.measurement).is_some_and(|f| f.contains(&c.field)))
            .collect())
    }

    fn bad(&self, statement: &str, e: response::ResponseError) -> BackendError {
        BackendError::BadResponse { backend: self.backend.clone(), message: format!("{e} (query: {statement})") }
    }

    /// The tag condition of the selectors that may select `metric`.
    fn condition_for(&self, query: &LabelQuery, metric: &str) -> Result<Option<String>, BackendError> {
        let selectors = query.for_metric(metric).unwrap_or_default();
        condition(&selectors).map_err(|e| self.quoting(e))
    }

    /// The series of one stored metric.
    async fn series_of(
        &self,
        s: &Stored,
        query: &LabelQuery,
    ) -> Result<(Vec<SeriesLabels>, Vec<String>), BackendError> {
        let mut statement = String::from("SELECT last(");
        influxql::ident(&s.field, &mut statement).map_err(|e| self.quoting(e))?;
        statement.push(')');
        self.from(&s.measurement, &mut statement)?;
        let mut conditions = Vec::new();
        if let Some(c) = self.condition_for(query, &s.name)? {
            conditions.push(format!("({c})"));
        }
        if let Some(t) = query.start_ms {
            let mut c = String::from("time >= ");
            influxql::time_ms(t, &mut c);
            conditions.push(c);
        }
        if let Some(t) = query.end_ms {
            let mut c = String::from("time <= ");
            influxql::time_ms(t, &mut c);
            conditions.push(c);
        }
        if !conditions.is_empty() {
            statement.push_str(" WHERE ");
            statement.push_str(&conditions.join(" AND "));
        }
        let _ = write!(statement, " GROUP BY * SLIMIT {}", query.limit.saturating_add(1));
        let body = self.client.query(&statement).await?;
        let mut warnings = Vec::new();
        let parsed = response::parse(&body, &mut warnings).map_err(|e| self.bad(&statement, e))?;
        let series = parsed
            .into_iter()
            .map(|p| {
                let mut labels = p.tags;
                labels.insert(METRIC_NAME_LABEL.to_string(), s.name.clone());
                labels
            })
            .collect();
        Ok((series, warnings))
    }

    /// Whether any series of the stored metric matches the query (its field
    /// exists, so without tag conditions it has series).
    async fn has_series(&self, s: &Stored, query: &LabelQuery) -> Result<(bool, Vec<String>), BackendError> {
        let Some(c) = self.condition_for(query, &s.name)? else { return Ok((true, Vec::new())) };
        let mut statement = String::from("SHOW SERIES");
        self.from(&s.measurement, &mut statement)?;
        let _ = write!(statement, " WHERE {c} LIMIT 1");
        let mut warnings = Vec::new();
        let tables = self.tables(&statement, &mut warnings).await?;
        Ok((tables.iter().any(|t| !t.rows.is_empty()), warnings))
    }

    /// `SHOW TAG KEYS` or `SHOW TAG VALUES` of one stored metric; the values of `column`.
    async fn show_tags(
        &self,
        s: &Stored,
        query: &LabelQuery,
        key: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>), BackendError> {
        let mut statement = String::from(if key.is_some() { "SHOW TAG VALUES" } else { "SHOW TAG KEYS" });
        self.from(&s.measurement, &mut statement)?;
        if let Some(k) = key {
            statement.push_str(" WITH KEY = ");
            influxql::ident(k, &mut statement).map_err(|e| self.quoting(e))?;
        }
        if let Some(c) = self.condition_for(query, &s.name)? {
            let _ = write!(statement, " WHERE {c}");
        }
        let _ = write!(statement, " LIMIT {}", query.limit.saturating_add(1));
        let mut warnings = Vec::new();
        let column = if key.is_some() { "value" } else { "tagKey" };
        let mut out = Vec::new();
        for t in self.tables(&statement, &mut warnings).await? {
            out.extend(t.column(column).map_err(|e| self.bad(&statement, e))?.map(str::to_string));
        }
        Ok((out, warnings))
    }

    pub(super) async fn discover_series(&self, query: &LabelQuery) -> Result<Discovered<SeriesLabels>, BackendError> {
        let mut warnings = Vec::new();
        let stored = self.stored_metrics(query, &mut warnings).await?;
        let parts: Vec<(Vec<SeriesLabels>, Vec<String>)> =
            stream::iter(stored.into_iter().map(|s| async move { self.series_of(&s, query).await }))
                .buffered(CONCURRENCY)
                .try_collect()
                .await?;
        let mut all = Vec::new();
        for (series, w) in parts {
            all.extend(series);
            warnings.extend(w);
        }
        Ok(Discovered::bounded(all, query.limit, warnings))
    }

    pub(super) async fn discover_label_names(&self, query: &LabelQuery) -> Result<Discovered<String>, BackendError> {
        let mut warnings = Vec::new();
        let stored = self.stored_metrics(query, &mut warnings).await?;
        let parts: Vec<(Vec<String>, bool, Vec<String>)> = stream::iter(stored.into_iter().map(|s| async move {
            let (keys, mut w) = self.show_tags(&s, query, None).await?;
            // Tag keys come from matching series; a metric whose matching series have
            // no tags still has `__name__`.
            let exists = if keys.is_empty() {
                let (e, w2) = self.has_series(&s, query).await?;
                w.extend(w2);
                e
            } else {
                true
            };
            Ok::<_, BackendError>((keys, exists, w))
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
        let mut names = Vec::new();
        for (keys, exists, w) in parts {
            if exists {
                names.push(METRIC_NAME_LABEL.to_string());
            }
            names.extend(keys);
            warnings.extend(w);
        }
        Ok(Discovered::bounded(names, query.limit, warnings))
    }

    pub(super) async fn discover_label_values(
        &self,
        name: &str,
        query: &LabelQuery,
    ) -> Result<Discovered<String>, BackendError> {
        let mut warnings = Vec::new();
        let stored = self.stored_metrics(query, &mut warnings).await?;
        let parts: Vec<(Vec<String>, Vec<String>)> = stream::iter(stored.into_iter().map(|s| async move {
            if name == METRIC_NAME_LABEL {
                let (exists, w) = self.has_series(&s, query).await?;
                Ok((if exists { vec![s.name.clone()] } else { Vec::new() }, w))
            } else {
                self.show_tags(&s, query, Some(name)).await
            }
        }))
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
        let mut values = Vec::new();
        for (v, w) in parts {
            values.extend(v);
            warnings.extend(w);
        }
        Ok(Discovered::bounded(values.into_iter().filter(|v| !v.is_empty()), query.limit, warnings))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    backends:
      influxdb: { measurement: port, field: in_octets }
  - key: port.out
    name: port_out_octets_total
    type: counter
    backends:
      influxdb: { measurement: port, field: out_octets }
  - key: load
    name: node_load1
    type: gauge
  - key: moved
    name: moved
    type: gauge
    backends:
      influxdb: { measurement: elsewhere }
"#;

    fn names() -> NameMap {
        NameMap::new(&MetricRegistry::parse(REGISTRY, Path::new("m.yaml")).unwrap(), "value")
    }

    fn stored(name: &str, m: &str, f: &str) -> Stored {
        Stored { name: name.into(), measurement: m.into(), field: f.into() }
    }

    #[test]
    fn names_map_both_ways() {
        let n = names();
        assert_eq!(n.target("port_in_octets_total"), stored("port_in_octets_total", "port", "in_octets"));
        assert_eq!(n.target("node_load1"), stored("node_load1", "node_load1", "value"));
        assert_eq!(n.target("unregistered"), stored("unregistered", "unregistered", "value"));
        let mut port = n.stored_in("port");
        port.sort();
        assert_eq!(
            port,
            vec![
                stored("port", "port", "value"),
                stored("port_in_octets_total", "port", "in_octets"),
                stored("port_out_octets_total", "port", "out_octets"),
            ]
        );
        assert_eq!(n.stored_in("node_load1"), vec![stored("node_load1", "node_load1", "value")]);
        // `moved` is written elsewhere, so a measurement `moved` is not that metric.
        assert_eq!(n.stored_in("moved"), vec![]);
        assert_eq!(
            n.stored_in("elsewhere"),
            vec![stored("moved", "elsewhere", "value"), stored("elsewhere", "elsewhere", "value")]
        );
        assert_eq!(n.stored_in("not a name"), vec![]);
    }

    #[test]
    fn conditions_or_the_selectors() {
        let a = Matcher::new("device", MatchOp::Equal, "it's").unwrap();
        let b = Matcher::new("port", MatchOp::NotRegex, "ge-.*").unwrap();
        let c = Matcher::new("x", MatchOp::NotEqual, "a\rb").unwrap();
        assert_eq!(
            condition(&[vec![&a, &b], vec![&c]]).unwrap().unwrap(),
            r#"("device"::tag = 'it\'s' AND "port"::tag !~ /^(?:ge-.*)$/) OR ("x"::tag !~ /^(?:a\rb)$/)"#
        );
        assert_eq!(condition(&[vec![&a], vec![]]).unwrap(), None);
        let bad = Matcher::new("a\rb", MatchOp::Equal, "x").unwrap();
        assert!(condition(&[vec![&bad]]).is_err());
    }
}
