//! Discovery API on the admin port, answered from the series the cardinality
//! stage tracks (no copy of its own) and from the metric registry:
//!
//! - `GET /api/v1/labels`, `GET /api/v1/label/<name>/values`,
//!   `GET /api/v1/series?match[]=<selector>`: the Prometheus HTTP API's
//!   request parameters (`match[]`, `limit`) and response format; selectors
//!   take `=`, `!=`, `=~` and `!~` matchers. `pipeline=<name>` narrows to one pipeline.
//! - `GET /api/v1/metrics`: the registry (key, name, type, unit, help) with
//!   each metric's live series count, as JSON.
//!
//! Answers are bounded by `limit` (default [`DEFAULT_LIMIT`]); a truncated
//! answer says so in `warnings`, as does one that includes series whose label
//! set was only partly kept (`cardinality.max_label_pairs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

pub use crate::model::selector::{Selector, SelectorError};
use crate::pipeline::stages::CardinalityShared;
use crate::registry::MetricRegistry;

/// Most entries an answer holds unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 10_000;

/// The live series of every pipeline, and the registry.
pub struct Discovery {
    pipelines: Vec<Arc<CardinalityShared>>,
    registry: Arc<MetricRegistry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("no match[] parameter provided")]
    NoMatch,
    #[error("invalid parameter {name}: {value:?}")]
    Parameter { name: String, value: String },
    #[error("unknown pipeline {0:?}")]
    UnknownPipeline(String),
}

/// One registry entry with its live series count.
#[derive(Debug, Serialize)]
pub struct MetricInfo {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub metric_type: &'static str,
    pub unit: Option<String>,
    pub help: Option<String>,
    pub series: u64,
}

/// A bounded answer.
#[derive(Debug, Default)]
pub struct Answer<T> {
    pub data: T,
    pub warnings: Vec<String>,
}

impl Discovery {
    pub fn new(registry: Arc<MetricRegistry>) -> Self {
        Discovery { pipelines: Vec::new(), registry }
    }

    /// Serves the series of one more pipeline.
    pub fn add(&mut self, series: Arc<CardinalityShared>) {
        self.pipelines.push(series);
    }

    fn pipelines(&self, only: Option<&str>) -> Result<Vec<&Arc<CardinalityShared>>, DiscoveryError> {
        let chosen: Vec<_> = self.pipelines.iter().filter(|p| only.is_none_or(|o| p.pipeline() == o)).collect();
        match only {
            Some(o) if chosen.is_empty() => Err(DiscoveryError::UnknownPipeline(o.to_string())),
            _ => Ok(chosen),
        }
    }

    /// Calls `f` with every tracked series some selector selects (every series
    /// without selectors), until it returns false; returns whether any was partial.
    fn each_series(
        &self,
        only: Option<&str>,
        selectors: &[Selector],
        mut f: impl FnMut(&[(&str, &str)]) -> bool,
    ) -> Result<bool, DiscoveryError> {
        // The shard's lock is what its stateful stages take for every batch:
        // hold it only for a copy of the series hashes (8 bytes a series) and
        // then for steps of LOCK_STEP lookups, never for a whole walk with
        // regex matching and string copies. Series added meanwhile are not
        // seen, series forgotten meanwhile are skipped.
        let mut partial_seen = false;
        let mut hashes = Vec::new();
        'pipelines: for pipeline in self.pipelines(only)? {
            for shard in pipeline.shards() {
                hashes.clear();
                shard.lock().hashes(&mut hashes);
                for step in hashes.chunks(LOCK_STEP) {
                    let guard = shard.lock();
                    for &h in step {
                        let go_on = guard.visit(h, |labels, partial| {
                            if selectors.is_empty() || selectors.iter().any(|s| s.matches(labels)) {
                                partial_seen |= partial;
                                f(labels)
                            } else {
                                true
                            }
                        });
                        if go_on == Some(false) {
                            break 'pipelines;
                        }
                    }
                    // A fair unlock hands the lock to an ingesting batch that
                    // waits for it; a plain one lets this loop take it straight
                    // back, and the batch could wait for the whole walk.
                    parking_lot::MutexGuard::unlock_fair(guard);
                }
            }
        }
        Ok(partial_seen)
    }

    fn bounded(set: BTreeSet<String>, limit: usize, partial: bool, what: &str) -> Answer<Vec<String>> {
        let mut warnings = Vec::new();
        if set.len() > limit {
            warnings.push(format!("results truncated to {limit} {what}: pass a larger limit"));
        }
        if partial {
            warnings.push(PARTIAL_WARNING.to_string());
        }
        Answer { data: set.into_iter().take(limit).collect(), warnings }
    }

    /// Label names in use (by the selected series, if any selector).
    pub fn labels(
        &self,
        only: Option<&str>,
        selectors: &[Selector],
        limit: usize,
    ) -> Result<Answer<Vec<String>>, DiscoveryError> {
        let mut names = BTreeSet::new();
        let mut partial = false;
        if selectors.is_empty() {
            for pipeline in self.pipelines(only)? {
                for shard in pipeline.shards() {
                    let (slots, p) = {
                        let g = shard.lock();
                        (g.pair_slots(), g.partial_series())
                    };
                    partial |= p > 0;
                    for from in (0..slots).step_by(LOCK_STEP) {
                        let guard = shard.lock();
                        guard.label_names_in(from..from + LOCK_STEP, &mut names);
                        parking_lot::MutexGuard::unlock_fair(guard);
                    }
                }
            }
        } else {
            partial = self.each_series(only, selectors, |labels| {
                for (n, _) in labels {
                    if !names.contains(*n) {
                        names.insert(n.to_string());
                    }
                }
                true
            })?;
        }
        Ok(Self::bounded(names, limit, partial, "names"))
    }

    /// Values of label `name` in use (by the selected series, if any selector).
    pub fn label_values(
        &self,
        name: &str,
        only: Option<&str>,
        selectors: &[Selector],
        limit: usize,
    ) -> Result<Answer<Vec<String>>, DiscoveryError> {
        let mut values = BTreeSet::new();
        let mut partial = false;
        if selectors.is_empty() {
            for pipeline in self.pipelines(only)? {
                for shard in pipeline.shards() {
                    let (slots, p) = {
                        let g = shard.lock();
                        (g.pair_slots(), g.partial_series())
                    };
                    partial |= p > 0;
                    for from in (0..slots).step_by(LOCK_STEP) {
                        let guard = shard.lock();
                        guard.label_values_in(name, from..from + LOCK_STEP, &mut values);
                        parking_lot::MutexGuard::unlock_fair(guard);
                    }
                }
            }
        } else {
            partial = self.each_series(only, selectors, |labels| {
                if let Some((_, v)) = labels.iter().find(|(n, _)| *n == name)
                    && !values.contains(*v)
                {
                    values.insert(v.to_string());
                }
                true
            })?;
        }
        Ok(Self::bounded(values, limit, partial, "values"))
    }

    /// The label sets of the selected series, at most `limit`.
    pub fn series(
        &self,
        only: Option<&str>,
        selectors: &[Selector],
        limit: usize,
    ) -> Result<Answer<Vec<BTreeMap<String, String>>>, DiscoveryError> {
        if selectors.is_empty() {
            return Err(DiscoveryError::NoMatch);
        }
        let mut out = Vec::new();
        let mut truncated = false;
        let partial = self.each_series(only, selectors, |labels| {
            if out.len() == limit {
                truncated = true;
                return false;
            }
            out.push(labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect());
            true
        })?;
        let mut warnings = Vec::new();
        if truncated {
            warnings.push(format!("results truncated to {limit} series: pass a larger limit"));
        }
        if partial {
            warnings.push(PARTIAL_WARNING.to_string());
        }
        Ok(Answer { data: out, warnings })
    }

    /// The registry's entries and how many live series each has now.
    pub fn metrics(&self) -> Vec<MetricInfo> {
        self.registry
            .entries()
            .iter()
            .map(|e| MetricInfo {
                key: e.key.clone(),
                name: e.name.clone(),
                metric_type: e.metric_type.as_str(),
                unit: e.unit.clone(),
                help: e.help.clone(),
                series: self.pipelines.iter().map(|p| p.series_of(&e.name) as u64).sum(),
            })
            .collect()
    }
}

/// Series (or label pairs) a discovery query looks at per hold of a shard's
/// lock: a few hundred microseconds at most, so ingestion never stalls.
const LOCK_STEP: usize = 1024;

const PARTIAL_WARNING: &str =
    "some series are listed with only part of their labels: cardinality.max_label_pairs was reached";

/// The parameters of a discovery request (its query string).
#[derive(Debug, Default)]
pub struct Params {
    pub selectors: Vec<Selector>,
    pub limit: usize,
    pub pipeline: Option<String>,
}

impl Params {
    pub fn parse(query: Option<&str>) -> Result<Params, DiscoveryError> {
        let mut params = Params { limit: DEFAULT_LIMIT, ..Default::default() };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (percent_decode(key), percent_decode(value));
            match key.as_str() {
                "match[]" => params.selectors.push(Selector::parse(&value)?),
                "limit" => {
                    params.limit = match value.parse::<usize>() {
                        Ok(0) => usize::MAX,
                        Ok(n) => n,
                        Err(_) => return Err(DiscoveryError::Parameter { name: key, value }),
                    }
                }
                "pipeline" => params.pipeline = Some(value),
                // Prometheus clients send time bounds; live series have no history to bound.
                _ => {}
            }
        }
        Ok(params)
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Serialize)]
struct Success<T: Serialize> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct Failure {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: String,
}

fn answer<T: Serialize>(result: Result<Answer<T>, DiscoveryError>) -> Response {
    match result {
        Ok(a) => axum::Json(Success { status: "success", data: a.data, warnings: a.warnings }).into_response(),
        Err(e) => {
            let status = if matches!(e, DiscoveryError::UnknownPipeline(_)) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            (status, axum::Json(Failure { status: "error", error_type: "bad_data", error: e.to_string() }))
                .into_response()
        }
    }
}

/// The discovery routes, to merge into the admin router.
pub fn router(discovery: Arc<Discovery>) -> Router {
    Router::new()
        .route("/api/v1/labels", get(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/series", get(series))
        .route("/api/v1/metrics", get(metrics))
        .with_state(discovery)
}

async fn labels(State(d): State<Arc<Discovery>>, RawQuery(q): RawQuery) -> Response {
    answer(Params::parse(q.as_deref()).and_then(|p| d.labels(p.pipeline.as_deref(), &p.selectors, p.limit)))
}

async fn label_values(State(d): State<Arc<Discovery>>, Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    answer(
        Params::parse(q.as_deref()).and_then(|p| d.label_values(&name, p.pipeline.as_deref(), &p.selectors, p.limit)),
    )
}

async fn series(State(d): State<Arc<Discovery>>, RawQuery(q): RawQuery) -> Response {
    answer(Params::parse(q.as_deref()).and_then(|p| d.series(p.pipeline.as_deref(), &p.selectors, p.limit)))
}

async fn metrics(State(d): State<Arc<Discovery>>) -> Response {
    answer(Ok(Answer { data: d.metrics(), warnings: Vec::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Labels, Sample};
    use crate::pipeline::stages::{Cardinality, CardinalityConfig};
    use crate::pipeline::{DropTally, StatefulStage};

    fn selector(s: &str) -> Selector {
        Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn pairs<'a>(p: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        p.to_vec()
    }

    #[test]
    fn selectors_parse_and_match() {
        let up = pairs(&[("__name__", "up"), ("job", "node"), ("zone", "eu-1")]);
        assert!(selector("up").matches(&up));
        assert!(!selector("down").matches(&up));
        assert!(selector("{job=\"node\"}").matches(&up));
        assert!(selector("up{job=~\"no.*\", zone!=\"us\"}").matches(&up));
        assert!(!selector("up{job=~\"no\"}").matches(&up), "regexes are anchored");
        assert!(selector("up{job!~\"x|y\",}").matches(&up));
        assert!(selector("{__name__=~\"u.\", missing=\"\"}").matches(&up), "a missing label reads as empty");
        assert!(selector(" up { job = 'node' } ").matches(&up));
        assert!(selector("{job=\"a\\\"b\"}").matches(&pairs(&[("job", "a\"b")])));
    }

    #[test]
    fn invalid_selectors_are_explained() {
        for (bad, why) in [
            ("{job=\"a\"", "expected , or }"),
            ("{job~\"a\"}", "expected =, !=, =~ or !~"),
            ("{job=a}", "quoted"),
            ("{job=~\"(\"}", "invalid regex"),
            // Over the compile bound of src/model/regex.rs.
            ("{job=~\"(\\\\w{100}){100}\"}", "size limit"),
            ("{job=\"\"}", "does not match the empty string"),
            ("up extra", "unexpected text"),
            ("{job=\"a}", "unterminated"),
        ] {
            let e = Selector::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn query_parameters() {
        let p =
            Params::parse(Some("match[]=up%7Bjob%3D%22a+b%22%7D&match[]=down&limit=2&pipeline=main&start=1")).unwrap();
        assert_eq!(p.selectors.len(), 2);
        assert!(p.selectors[0].matches(&pairs(&[("__name__", "up"), ("job", "a b")])));
        assert_eq!((p.limit, p.pipeline.as_deref()), (2, Some("main")));
        assert!(Params::parse(Some("limit=x")).is_err());
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    fn discovery() -> Discovery {
        let registry = MetricRegistry::parse(
            "metrics:\n  - key: up\n    name: up\n    type: gauge\n    help: Target up.\n",
            std::path::Path::new("test.yaml"),
        )
        .unwrap();
        let shared = CardinalityShared::new("main", &CardinalityConfig::default(), 2);
        let mut shards = [shared.new_shard(), shared.new_shard()].map(|s| Cardinality::new(shared.clone(), s));
        for (i, (name, job)) in [("up", "a"), ("up", "b"), ("load", "a"), ("up", "c")].into_iter().enumerate() {
            let mut labels: Labels = [("__name__", name), ("job", job)].into_iter().collect();
            labels.sort();
            let hash = labels.series_hash();
            shards[i % 2].process(&mut vec![Sample::new(labels, 1.0, 1)], &mut vec![hash], &mut DropTally::default());
        }
        let mut d = Discovery::new(Arc::new(registry));
        d.add(shared);
        d
    }

    /// A discovery walk over a large shard holds the shard's lock in steps of
    /// LOCK_STEP series, so the stateful stage that ingests into the same shard
    /// waits for one step at most, never for the whole walk. Measured as a
    /// ratio on the same machine (a walk under one hold against the longest
    /// wait of the ingesting side), so a loaded machine slows both alike.
    #[test]
    fn a_discovery_walk_never_holds_the_shard_for_the_whole_walk() {
        let series = 150_000usize;
        let config = CardinalityConfig {
            max_series: series as u64 * 2,
            max_series_per_metric: series as u32 * 2,
            max_label_pairs: series * 4,
            detect_id_labels: false,
            ..CardinalityConfig::default()
        };
        let shared = CardinalityShared::new("main", &config, 1);
        let mut shard = Cardinality::new(shared.clone(), shared.new_shard());
        let batch = |from: usize, n: usize, ts: i64| {
            let mut samples = Vec::with_capacity(n);
            let mut hashes = Vec::with_capacity(n);
            for i in from..from + n {
                let mut labels: Labels =
                    [("__name__", "if_octets"), ("device", &format!("sw{}", i % 97)), ("port", &format!("p{i}"))]
                        .into_iter()
                        .collect();
                labels.sort();
                hashes.push(labels.series_hash());
                samples.push(Sample::new(labels, 1.0, ts));
            }
            (samples, hashes)
        };
        for from in (0..series).step_by(10_000) {
            let (mut samples, mut hashes) = batch(from, 10_000, 1);
            shard.process(&mut samples, &mut hashes, &mut DropTally::default());
        }
        let registry = MetricRegistry::parse("metrics: []\n", std::path::Path::new("test.yaml")).unwrap();
        let mut d = Discovery::new(Arc::new(registry));
        d.add(shared.clone());
        let d = Arc::new(d);
        let walk = || d.series(None, &[selector("if_octets{port=~\"p.*9\", device!~\"sw1.\"}")], usize::MAX).unwrap();
        let expected = walk().data.len();
        assert!(expected > 1_000, "{expected}");

        // A wait is timed on the wall clock, so a loaded machine that preempts
        // the ingesting thread mid-batch can make one attempt look like a long
        // hold: up to three attempts, each measured afresh; a walk that really
        // held the lock throughout fails all of them.
        let mut attempts = Vec::new();
        for _ in 0..3 {
            // How long the same walk takes when nothing else wants the lock: what
            // one ingesting batch would wait if the walk held the lock throughout.
            let started = std::time::Instant::now();
            assert_eq!(walk().data.len(), expected);
            let whole_walk = started.elapsed();

            // The walker walks three times; ingestion goes on meanwhile (bounded
            // in rounds), timing every batch.
            let walks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let walker = {
                let (d, walks) = (d.clone(), walks.clone());
                std::thread::spawn(move || {
                    for _ in 0..3 {
                        d.series(None, &[selector("if_octets{port=~\"p.*9\"}")], usize::MAX).unwrap();
                        walks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                })
            };
            let mut longest = std::time::Duration::ZERO;
            let mut rounds = 0;
            while walks.load(std::sync::atomic::Ordering::Relaxed) < 3 && rounds < 100_000 {
                let (mut samples, mut hashes) = batch(rounds % 50, 10, 2 + rounds as i64);
                let started = std::time::Instant::now();
                shard.process(&mut samples, &mut hashes, &mut DropTally::default());
                longest = longest.max(started.elapsed());
                rounds += 1;
            }
            walker.join().unwrap();
            assert!(rounds > 10, "ingestion ran alongside the walks ({rounds} batches)");
            attempts.push((longest, whole_walk));
            if longest * 4 < whole_walk {
                return;
            }
        }
        panic!(
            "an ingesting batch waited as long as a quarter of a whole walk in every attempt (longest wait, whole walk): {attempts:?}"
        );
    }

    #[test]
    fn answers_from_live_series() {
        let d = discovery();
        assert_eq!(d.labels(None, &[], 100).unwrap().data, vec!["__name__", "job"]);
        assert_eq!(d.label_values("job", None, &[], 100).unwrap().data, vec!["a", "b", "c"]);
        assert_eq!(d.label_values("job", None, &[selector("load")], 100).unwrap().data, vec!["a"]);
        assert_eq!(d.label_values("__name__", None, &[], 100).unwrap().data, vec!["load", "up"]);
        let mut series = d.series(None, &[selector("up{job!=\"b\"}")], 100).unwrap().data;
        series.sort();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].get("job").map(String::as_str), Some("a"));
        let limited = d.series(None, &[selector("up")], 1).unwrap();
        assert_eq!(limited.data.len(), 1);
        assert!(limited.warnings[0].contains("truncated"));
        assert_eq!(d.series(None, &[], 10).unwrap_err(), DiscoveryError::NoMatch);
        assert!(matches!(d.labels(Some("other"), &[], 10), Err(DiscoveryError::UnknownPipeline(_))));
        let metrics = d.metrics();
        assert_eq!(metrics.len(), 1);
        assert_eq!((metrics[0].name.as_str(), metrics[0].series, metrics[0].metric_type), ("up", 3, "gauge"));
    }
}
