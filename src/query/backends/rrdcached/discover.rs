//! Label discovery over rrdcached: a series is an RRD file. Files are found with
//! `LIST RECURSIVE` under the fixed directory of each path template, matched
//! against the templates the sink writes with (the registry's
//! `backends.rrdcached.path` per metric, else the sink's `path_template`) and
//! turned back into labels ([`super::template`]). A file two metrics' templates
//! both match is given to the one whose data source it holds (`INFO`).
//!
//! What a path cannot say stays unsaid: only the template's labels, with the
//! values as the sink sanitized them; a file has no time, so `start`/`end` are
//! not applied (capability notes).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::RrdcachedDriver;
use super::fetch::client_error;
use super::reply;
use super::template::{Inversion, PathPattern, sanitize_value};
use crate::model::METRIC_NAME_LABEL;
use crate::query::backends::BackendError;
use crate::query::backends::discovery::{Discovered, LabelQuery, SeriesLabels, names_of};
use crate::registry::{MetricRegistry, is_valid_metric_name};
use crate::sinks::rrdcached::RrdcachedSinkConfig;
use crate::sinks::rrdcached::client::{Connection, Reply};
use crate::sinks::rrdcached::encode::{PathTemplate, valid_ds_name};

/// `INFO` commands sent in one write.
const INFOS_PER_PIPELINE: usize = 64;

/// A registry metric with a path template of its own.
#[derive(Debug, Clone)]
struct OwnTemplate {
    name: String,
    pattern: PathPattern,
    ds: String,
}

/// The path templates of one sink, prepared for reading paths back.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    own: Vec<OwnTemplate>,
    /// The sink's `path_template`, for every other metric.
    shared: Option<PathPattern>,
    /// Registry metrics written with the shared template: sanitized name → (name, data source).
    shared_names: BTreeMap<String, (String, String)>,
    /// Registry metrics whose own template puts them elsewhere (never read from the shared one).
    elsewhere: BTreeSet<String>,
    default_ds: String,
    /// Templates that cannot be read back (adjacent labels), as warnings.
    problems: Vec<String>,
}

/// One file attributed to a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub path: String,
    pub metric: String,
    pub ds: String,
    /// Labels from the path, `__name__` not included.
    pub labels: BTreeMap<String, String>,
}

fn pattern(text: &str) -> Result<PathPattern, String> {
    let t = PathTemplate::parse(text).map_err(|e| format!("path template {text:?}: {e}"))?;
    PathPattern::new(&t, text).map_err(|e| e.to_string())
}

impl Templates {
    pub fn new(config: &RrdcachedSinkConfig, registry: &MetricRegistry) -> Templates {
        let mut t = Templates { default_ds: config.ds.clone(), ..Templates::default() };
        match pattern(&config.path_template) {
            Ok(p) => t.shared = Some(p),
            Err(e) => t.problems.push(e),
        }
        for e in registry.entries() {
            let o = e.rrdcached();
            let ds = o.and_then(|o| o.ds.clone()).filter(|d| valid_ds_name(d)).unwrap_or_else(|| config.ds.clone());
            match o.and_then(|o| o.path.as_deref()) {
                Some(path) => {
                    t.elsewhere.insert(sanitize_value(&e.name));
                    match pattern(path) {
                        Ok(p) => t.own.push(OwnTemplate { name: e.name.clone(), pattern: p, ds }),
                        Err(err) => t.problems.push(format!("metric {}: {err}", e.name)),
                    }
                }
                None => {
                    t.shared_names.insert(sanitize_value(&e.name), (e.name.clone(), ds));
                }
            }
        }
        t
    }

    /// The directories to list for `query`: each template's fixed leading
    /// components (with `__name__` filled in where the query names its metrics),
    /// without those inside another listed one.
    pub fn directories(&self, query: &LabelQuery) -> Vec<String> {
        let exact = query.exact_names();
        let mut dirs = BTreeSet::new();
        for o in &self.own {
            if query.may_select_metric(&o.name) {
                dirs.insert(o.pattern.directory(&[(METRIC_NAME_LABEL, sanitize_value(&o.name))]));
            }
        }
        if let Some(shared) = &self.shared {
            match &exact {
                Some(names) => {
                    for n in names.iter().map(|n| sanitize_value(n)).filter(|n| !self.elsewhere.contains(n)) {
                        dirs.insert(shared.directory(&[(METRIC_NAME_LABEL, n)]));
                    }
                }
                None => {
                    dirs.insert(shared.directory(&[]));
                }
            }
        }
        let all: Vec<String> = dirs.into_iter().collect();
        all.iter()
            .filter(|d| !all.iter().any(|o| o != *d && (o.is_empty() || d.starts_with(&format!("{o}/")))))
            .cloned()
            .collect()
    }

    /// Every metric that may have written `path`, with the labels it gives.
    pub fn claims(&self, path: &str, warnings: &mut Vec<String>) -> Vec<Claim> {
        let mut out = Vec::new();
        let mut labels_of = |p: &PathPattern| -> Option<Vec<(String, String)>> {
            match p.invert(path) {
                Inversion::NoMatch => None,
                Inversion::Labels(l) => Some(l),
                Inversion::Ambiguous(a, b) => {
                    warnings.push(format!(
                        "file {path} matches path template {:?} in more than one way ({a:?} or {b:?}); left out",
                        p.source()
                    ));
                    None
                }
            }
        };
        let split = |found: Vec<(String, String)>| {
            let mut name = None;
            let mut labels = BTreeMap::new();
            for (k, v) in found {
                if k == METRIC_NAME_LABEL {
                    name = Some(v);
                } else {
                    labels.insert(k, v);
                }
            }
            (name, labels)
        };
        for o in &self.own {
            if let Some(found) = labels_of(&o.pattern) {
                let (name, labels) = split(found);
                if name.is_none_or(|n| n == sanitize_value(&o.name)) {
                    out.push(Claim { path: path.to_string(), metric: o.name.clone(), ds: o.ds.clone(), labels });
                }
            }
        }
        if let Some(shared) = &self.shared
            && let Some(found) = labels_of(shared)
        {
            let (name, labels) = split(found);
            match name {
                Some(n) => {
                    if let Some((metric, ds)) = self.shared_names.get(&n) {
                        out.push(Claim { path: path.to_string(), metric: metric.clone(), ds: ds.clone(), labels });
                    } else if !self.elsewhere.contains(&n) && is_valid_metric_name(&n) {
                        // An unregistered metric (its name as the sink sanitized it).
                        out.push(Claim { path: path.to_string(), metric: n, ds: self.default_ds.clone(), labels });
                    }
                }
                // No name in the template: every registry metric written with it may own the file.
                None => {
                    for (metric, ds) in self.shared_names.values() {
                        out.push(Claim {
                            path: path.to_string(),
                            metric: metric.clone(),
                            ds: ds.clone(),
                            labels: labels.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

impl RrdcachedDriver {
    /// The selected series: one per file, labels from its path.
    pub(super) async fn discover(&self, query: &LabelQuery) -> Result<Discovered<SeriesLabels>, BackendError> {
        let backend = self.backend.as_str();
        let timeout = self.timeout;
        let mut warnings: Vec<String> = self.templates.problems.clone();
        let mut conn = Connection::connect(&self.address, timeout).await.map_err(|e| client_error(backend, e))?;
        let dirs = self.templates.directories(query);
        let commands: Vec<String> = dirs.iter().map(|d| format!("LIST RECURSIVE /{d}")).collect();
        self.requests.increment(commands.len() as u64);
        let replies = conn.pipeline(&commands, timeout).await.map_err(|e| client_error(backend, e))?;
        if replies.len() != commands.len() {
            return Err(bad(backend, format!("{} replies to {} LIST commands", replies.len(), commands.len())));
        }
        let mut paths = BTreeSet::new();
        for ((dir, command), listed) in dirs.iter().zip(&commands).zip(&replies) {
            if listed.code < 0 {
                if listed.message.contains("No such file or directory") {
                    continue;
                }
                return Err(bad(backend, format!("{command}: {}", listed.message)));
            }
            paths.extend(reply::parse_list(dir, &listed.lines).map_err(|e| bad(backend, e.to_string()))?);
        }

        // Claims that pass the query; a path more than one metric claims (whether
        // or not the query selects them all) is settled by INFO.
        let mut by_path: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
        let mut contested: Vec<&String> = Vec::new();
        for path in &paths {
            let claims = self.templates.claims(path, &mut warnings);
            let several = claims.len() > 1;
            let selected: Vec<Claim> = claims
                .into_iter()
                .filter(|c| query.may_select_metric(&c.metric) && query.selects(&series_labels(c)))
                .collect();
            if !selected.is_empty() {
                if several {
                    contested.push(path);
                }
                by_path.insert(path.clone(), selected);
            }
        }
        let mut sources: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in contested.chunks(INFOS_PER_PIPELINE) {
            let commands: Vec<String> = chunk.iter().map(|p| format!("INFO {p}")).collect();
            self.requests.increment(commands.len() as u64);
            let replies: Vec<Reply> = conn.pipeline(&commands, timeout).await.map_err(|e| client_error(backend, e))?;
            if replies.len() != commands.len() {
                return Err(bad(backend, format!("{} replies to {} INFO commands", replies.len(), commands.len())));
            }
            for (path, info) in chunk.iter().zip(replies) {
                if info.code < 0 {
                    // Gone since the listing: no series.
                    sources.insert((*path).clone(), Vec::new());
                    continue;
                }
                let parsed = reply::parse_info(&info.lines).map_err(|e| bad(backend, format!("{path}: {e}")))?;
                sources.insert((*path).clone(), parsed.sources.into_iter().map(|(n, _)| n).collect());
            }
        }
        let mut series = Vec::new();
        for (path, claims) in by_path {
            let held = sources.get(&path);
            for c in claims {
                if held.is_none_or(|ds| ds.contains(&c.ds)) {
                    series.push(series_labels(&c));
                }
            }
        }
        Ok(Discovered::bounded(series, query.limit, warnings))
    }

    pub(super) async fn discover_label_names(&self, query: &LabelQuery) -> Result<Discovered<String>, BackendError> {
        let all = LabelQuery { limit: usize::MAX, ..query.clone() };
        let d = self.discover(&all).await?;
        Ok(Discovered::bounded(names_of(&d.items), query.limit, d.warnings))
    }

    pub(super) async fn discover_label_values(
        &self,
        name: &str,
        query: &LabelQuery,
    ) -> Result<Discovered<String>, BackendError> {
        let all = LabelQuery { limit: usize::MAX, ..query.clone() };
        let d = self.discover(&all).await?;
        let values = d.items.iter().filter_map(|s| s.get(name).cloned()).filter(|v| !v.is_empty());
        Ok(Discovered::bounded(values, query.limit, d.warnings))
    }
}

fn bad(backend: &str, message: String) -> BackendError {
    BackendError::BadResponse { backend: backend.to_string(), message }
}

fn series_labels(c: &Claim) -> SeriesLabels {
    let mut l = c.labels.clone();
    l.insert(METRIC_NAME_LABEL.to_string(), c.metric.clone());
    l
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::query::model::{MatchOp, Matcher};

    const REGISTRY: &str = r#"
metrics:
  - key: octets
    name: golden_octets_total
    type: counter
    backends:
      rrdcached: { path: "golden/{device}/{port}.rrd", ds: octets }
  - key: load
    name: golden_load
    type: gauge
    backends:
      rrdcached: { path: "golden/load/{host}.rrd", ds: load }
  - key: up
    name: up
    type: gauge
"#;

    fn templates(shared: &str) -> Templates {
        use figment::providers::Format;
        let config: RrdcachedSinkConfig = figment::Figment::from(figment::providers::Toml::string(&format!(
            "address = \"unix:/tmp/s\"\npath_template = \"{shared}\""
        )))
        .extract()
        .unwrap();
        Templates::new(&config, &MetricRegistry::parse(REGISTRY, Path::new("m.yaml")).unwrap())
    }

    fn name_is(n: &str) -> Vec<Matcher> {
        vec![Matcher::new("__name__", MatchOp::Equal, n).unwrap()]
    }

    #[test]
    fn directories_follow_the_templates() {
        let t = templates("{__name__}/{host}.rrd");
        let all = LabelQuery { limit: 10, ..Default::default() };
        assert_eq!(t.directories(&all), vec![String::new()]);
        let load = LabelQuery { selectors: vec![name_is("golden_load")], limit: 10, ..Default::default() };
        assert_eq!(t.directories(&load), vec!["golden/load".to_string()]);
        let up = LabelQuery { selectors: vec![name_is("up"), name_is("golden_load")], limit: 10, ..Default::default() };
        assert_eq!(t.directories(&up), vec!["golden/load".to_string(), "up".to_string()]);
        let re = LabelQuery {
            selectors: vec![vec![Matcher::new("__name__", MatchOp::Regex, "golden_.*").unwrap()]],
            limit: 10,
            ..Default::default()
        };
        assert_eq!(t.directories(&re), vec![String::new()], "the shared template may hold golden_x too");
    }

    #[test]
    fn paths_are_claimed_by_every_template_they_fit() {
        let t = templates("{__name__}/{host}.rrd");
        let mut w = Vec::new();
        let claims = t.claims("golden/load/h1.rrd", &mut w);
        let metrics: Vec<&str> = claims.iter().map(|c| c.metric.as_str()).collect();
        // The octets template fits too (device=load, port=h1): INFO decides.
        assert_eq!(metrics, ["golden_octets_total", "golden_load"]);
        assert_eq!(claims[1].labels, [("host".to_string(), "h1".to_string())].into());
        let claims = t.claims("up/web-1.rrd", &mut w);
        assert_eq!(claims.len(), 1);
        assert_eq!((claims[0].metric.as_str(), claims[0].ds.as_str()), ("up", "value"));
        let claims = t.claims("node_load1/web-1.rrd", &mut w);
        assert_eq!(claims[0].metric, "node_load1", "an unregistered metric");
        // A registry metric written elsewhere is not read from the shared template.
        assert!(t.claims("golden_load/x.rrd", &mut w).is_empty());
        assert!(t.claims("x.rrd", &mut w).is_empty());
        assert!(w.is_empty());
        let nameless = templates("{host}.rrd");
        let claims = nameless.claims("web-1.rrd", &mut w);
        assert_eq!(claims.iter().map(|c| c.metric.as_str()).collect::<Vec<_>>(), ["up"]);
    }
}
