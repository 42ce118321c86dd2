//! A [`SeriesPlan`] on a [`TimeGrid`] → what to ask rrdcached: which files
//! (a path template and the labels fixed by filters), which data source, which
//! consolidation function, which time window, and how to turn rows into grid
//! points. Pure: no I/O, no clock.
//!
//! # What RRD can answer exactly
//!
//! A file keeps consolidated data points, not samples. A data source of type
//! DERIVE/COUNTER/DCOUNTER/DDERIVE/ABSOLUTE keeps a per-second *rate* (how the
//! sink stores counters), so it serves `rate` and `increase` and nothing that
//! needs the counter's values (`raw`, `last`, `avg`, ...). A GAUGE keeps values:
//! `raw`/`last` read the LAST archive, `avg` AVERAGE, `min` MIN, `max` MAX; a
//! counter stored as GAUGE gets `rate`/`increase` computed by the model's rule
//! from its rows. `count` and `sum` need the samples themselves: never served.
//!
//! The step must be a multiple of an archive's resolution for that function
//! (an archive with one data point per row serves every function). rrdcached's
//! `FETCH` takes no resolution: it answers from the finest archive that reaches
//! back to `start`, and the driver consolidates its rows to the step with the
//! same function, or refuses when that archive's resolution does not divide it.

use crate::query::backends::RawForm;
use crate::query::grid::TimeGrid;
use crate::query::model::{Function, MatchOp, Matcher};
use crate::query::plan::SeriesPlan;
use crate::registry::RrdDsType;
use crate::sinks::rrdcached::RrdcachedSinkConfig;
use crate::sinks::rrdcached::encode::{PathTemplate, valid_ds_name};

use super::consolidate::How;
use super::template::{PathPattern, sanitize_value};

/// The label a template uses for the metric name.
const NAME_LABEL: &str = crate::model::METRIC_NAME_LABEL;

/// Everything `execute` needs, decided before any I/O.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    pub pattern: PathPattern,
    /// Where to list: relative to the base directory, `""` for the base.
    pub directory: String,
    /// The sanitized metric name, which `{__name__}` must read back as.
    pub metric_value: String,
    pub ds: String,
    /// Whether the data source stores a rate (DERIVE and friends) rather than values.
    pub stores_rate: bool,
    pub cf: &'static str,
    /// `None`: rows go to the neutral layer as samples ([`RawForm::Samples`]).
    pub how: Option<How>,
    pub form: RawForm,
    /// `FETCH` window, seconds (rrdcached answers rows `t` with `start < t ≤ end`).
    pub fetch_start_s: i64,
    pub fetch_end_s: i64,
    /// Rows kept: `keep_from_ms ≤ t ≤ grid end` (Samples), `t > grid start` (per bucket).
    pub keep_from_ms: i64,
    pub matchers: Vec<Matcher>,
    pub step_s: i64,
}

impl FetchPlan {
    /// The commands as the compile endpoint shows them (files are found by `LIST`).
    pub fn commands(&self) -> Vec<String> {
        vec![
            format!("LIST RECURSIVE /{}", self.directory),
            format!("INFO <each listed file matching {}>", self.pattern.source()),
            format!(
                "FETCH <each listed file matching {}> {} {} {} {}",
                self.pattern.source(),
                self.cf,
                self.fetch_start_s,
                self.fetch_end_s,
                self.ds
            ),
        ]
    }
}

/// Why a plan cannot be served: `(feature, message)`.
pub type Refusal = (String, String);

/// The sink's archives as `(cf, resolution in seconds)`.
pub fn archives(config: &RrdcachedSinkConfig) -> Vec<(String, i64)> {
    let base = config.step_secs() as i64;
    config
        .rras()
        .iter()
        .filter_map(|r| {
            let mut parts = r.split(':');
            let cf = parts.next()?.to_string();
            let steps: i64 = parts.nth(1)?.parse().ok()?;
            Some((cf, steps.max(1).saturating_mul(base)))
        })
        .collect()
}

pub fn compile(plan: &SeriesPlan, grid: &TimeGrid, config: &RrdcachedSinkConfig) -> Result<FetchPlan, Refusal> {
    let o = plan.entry.rrdcached();
    let template_text = o.and_then(|o| o.path.clone()).unwrap_or_else(|| config.path_template.clone());
    let template = PathTemplate::parse(&template_text)
        .map_err(|e| ("path_template".to_string(), format!("path template {template_text:?}: {e}")))?;
    let pattern =
        PathPattern::new(&template, &template_text).map_err(|e| ("path_template".to_string(), e.to_string()))?;
    let in_template = pattern.labels();
    for label in plan.group_by.iter().flatten().chain(plan.matchers.iter().map(|m| &m.label)) {
        if !in_template.contains(&label.as_str()) {
            return Err((
                format!("label:{label}"),
                format!(
                    "label {label:?} is not part of the path template {template_text:?}, so RRD files do not keep it"
                ),
            ));
        }
    }
    let ds = o.and_then(|o| o.ds.clone()).filter(|d| valid_ds_name(d)).unwrap_or_else(|| config.ds.clone());
    let is_counter = plan.entry.metric_type == crate::registry::MetricType::Counter;
    let ds_type = o.and_then(|o| o.ds_type).unwrap_or(if is_counter { RrdDsType::Derive } else { RrdDsType::Gauge });
    let stores_rate = ds_type != RrdDsType::Gauge;
    let (cf, how) = match (stores_rate, plan.function) {
        (true, Function::Rate) => ("AVERAGE", Some(How::Rate)),
        (true, Function::Increase) => ("AVERAGE", Some(How::Increase)),
        (true, f) => {
            return Err((
                "raw_counter_values".into(),
                format!(
                    "function {f} needs stored values; data source {ds:?} is {} and stores a rate",
                    ds_type.as_str()
                ),
            ));
        }
        (false, Function::Raw | Function::Last) => ("LAST", Some(How::Last)),
        (false, Function::Avg) => ("AVERAGE", Some(How::Mean)),
        (false, Function::Min) => ("MIN", Some(How::Min)),
        (false, Function::Max) => ("MAX", Some(How::Max)),
        (false, Function::Rate | Function::Increase) => ("LAST", None),
        (false, f @ (Function::Count | Function::Sum)) => {
            return Err((format!("function:{f}"), format!("RRD keeps consolidated data points, not samples: no {f}")));
        }
    };
    let step_s = grid.step_ms / 1000;
    let served: Vec<i64> = archives(config)
        .into_iter()
        .filter(|(c, res)| c == cf || *res == config.step_secs() as i64)
        .map(|(_, r)| r)
        .collect();
    let Some(finest) = served.iter().copied().filter(|res| step_s % res == 0).min() else {
        let mut list = served.clone();
        list.sort_unstable();
        list.dedup();
        return Err((
            "step".into(),
            format!("step {step_s}s: no {cf} archive has a resolution that divides it (archives: {list:?} s)"),
        ));
    };
    let mut known: Vec<(&str, String)> = vec![(NAME_LABEL, sanitize_value(&plan.entry.name))];
    for m in &plan.matchers {
        if m.op == MatchOp::Equal {
            known.push((&m.label, sanitize_value(&m.value)));
        }
    }
    let directory = pattern.directory(&known);
    let (form, fetch_start_s, keep_from_ms) = match how {
        Some(_) => (RawForm::PerSeries, grid.start_ms / 1000, grid.start_ms + 1),
        // The row at `start − step` starts the first bucket's window.
        None => (RawForm::Samples, (grid.start_ms - grid.step_ms) / 1000 - finest, grid.start_ms - grid.step_ms),
    };
    Ok(FetchPlan {
        metric_value: sanitize_value(&plan.entry.name),
        pattern,
        directory,
        ds,
        stores_rate,
        cf,
        how,
        form,
        fetch_start_s,
        fetch_end_s: grid.end_ms / 1000,
        keep_from_ms,
        matchers: plan.matchers.clone(),
        step_s,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::query::model::GraphDef;
    use crate::query::validate::validate_graph;
    use crate::registry::MetricRegistry;

    const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    labels: [device, port, ifalias]
    backends:
      rrdcached: { path: "{device}/port-{port}.rrd", ds: in, ds_type: DERIVE }
  - key: load
    name: node_load1
    type: gauge
    backends:
      rrdcached: { path: "{host}/load.rrd", ds: load1 }
  - key: req
    name: http_requests_total
    type: counter
  - key: gauge.counter
    name: odd_total
    type: counter
    backends:
      rrdcached: { ds_type: GAUGE }
"#;

    fn plan(series_yaml: &str) -> SeriesPlan {
        let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
        let def: GraphDef = serde_norway::from_str(&format!("id: g\nseries:\n  - {series_yaml}")).unwrap();
        validate_graph(&def, &registry).unwrap().series.remove(0)
    }

    fn sink() -> RrdcachedSinkConfig {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(
            "address = \"unix:/tmp/s\"\npath_template = \"{__name__}/{host}.rrd\"",
        ))
        .extract()
        .unwrap()
    }

    fn grid(step_s: i64) -> TimeGrid {
        TimeGrid::new(1_764_806_400_000, 1_764_828_000_000, step_s * 1000).unwrap()
    }

    fn compiled(series_yaml: &str, step_s: i64) -> Result<FetchPlan, Refusal> {
        compile(&plan(series_yaml), &grid(step_s), &sink())
    }

    #[test]
    fn counters_stored_as_derive_serve_rate_from_average_rows() {
        let p = compiled("{ metric: port.in, function: rate, filter: { device: sw1 } }", 300).unwrap();
        assert_eq!((p.cf, p.how, p.form), ("AVERAGE", Some(How::Rate), RawForm::PerSeries));
        assert_eq!((p.ds.as_str(), p.stores_rate), ("in", true));
        assert_eq!(p.directory, "sw1");
        assert_eq!((p.fetch_start_s, p.fetch_end_s), (1_764_806_400, 1_764_828_000));
        assert_eq!(
            p.commands(),
            vec![
                "LIST RECURSIVE /sw1".to_string(),
                "INFO <each listed file matching {device}/port-{port}.rrd>".to_string(),
                "FETCH <each listed file matching {device}/port-{port}.rrd> AVERAGE 1764806400 1764828000 in"
                    .to_string(),
            ]
        );
        let inc = compiled("{ metric: http_requests_total, function: increase }", 60).unwrap();
        assert_eq!(
            (inc.how, inc.ds.as_str(), inc.directory.as_str()),
            (Some(How::Increase), "value", "http_requests_total")
        );
    }

    #[test]
    fn counters_stored_as_a_rate_have_no_values() {
        for f in ["raw", "last", "avg", "max"] {
            let e = compiled(&format!("{{ metric: port.in, function: {f} }}"), 60).unwrap_err();
            assert_eq!(e.0, "raw_counter_values", "{f}");
        }
    }

    #[test]
    fn gauges_pick_the_archive_of_their_function() {
        for (f, cf, how) in [
            ("raw", "LAST", How::Last),
            ("last", "LAST", How::Last),
            ("avg", "AVERAGE", How::Mean),
            ("min", "MIN", How::Min),
            ("max", "MAX", How::Max),
        ] {
            let p = compiled(&format!("{{ metric: node_load1, function: {f}, filter: {{ host: \"=~h.*\" }} }}"), 3600)
                .unwrap();
            assert_eq!((p.cf, p.how, p.ds.as_str()), (cf, Some(how), "load1"), "{f}");
            assert_eq!(p.directory, "");
        }
        for f in ["count", "sum"] {
            assert_eq!(
                compiled(&format!("{{ metric: node_load1, function: {f} }}"), 60).unwrap_err().0,
                format!("function:{f}")
            );
        }
    }

    #[test]
    fn a_counter_stored_as_gauge_goes_to_the_neutral_layer_as_samples() {
        let p = compiled("{ metric: odd_total, function: rate }", 300).unwrap();
        assert_eq!((p.cf, p.how, p.form, p.stores_rate), ("LAST", None, RawForm::Samples, false));
        // One step and one row before the grid, so the first window has its start.
        assert_eq!(p.fetch_start_s, 1_764_806_400 - 300 - 60);
        assert_eq!(p.keep_from_ms, 1_764_806_100_000);
    }

    #[test]
    fn labels_outside_the_path_and_unserved_steps_are_refused() {
        let e = compiled("{ metric: port.in, function: rate, group_by: [ifalias] }", 60).unwrap_err();
        assert_eq!(e.0, "label:ifalias");
        let e = compiled("{ metric: port.in, function: rate, filter: { ifalias: x } }", 60).unwrap_err();
        assert_eq!(e.0, "label:ifalias");
        let e = compiled("{ metric: port.in, function: rate }", 90).unwrap_err();
        assert_eq!(e.0, "step");
        assert!(e.1.contains("[60, 300, 3600, 86400]"), "{}", e.1);
    }

    #[test]
    fn deterministic() {
        let a = compiled("{ metric: port.in, function: rate, group_by: [device] }", 60).unwrap();
        let b = compiled("{ metric: port.in, function: rate, group_by: [device] }", 60).unwrap();
        assert_eq!(a.commands(), b.commands());
    }
}
