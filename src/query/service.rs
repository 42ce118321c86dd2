//! The render service: the neutral orchestration of one request, shared by the
//! HTTP API and `tsrelay graph render`. Order of work (DESIGN §7.1): parse →
//! backend → graph → grid → limits → capability check and compile (no I/O yet;
//! every 4xx is decided here) → execute under the timeout → normalize.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::try_join_all;
use serde::Serialize;
use tokio::sync::Semaphore;

use super::backends::{BackendError, Capabilities, Compiled, Driver, Unsupported, driver_for};
use super::config::QueryConfig;
use super::graphs::{GraphStore, GraphsError};
use super::grid::TimeGrid;
use super::model::Function;
use super::normalize::normalize;
use super::request::{FieldError, GraphRef, RenderRequest};
use super::result::RenderResult;
use super::validate::{ValidatedGraph, validate_graph};
use crate::config::LoadedConfig;
use crate::registry::MetricRegistry;

/// Everything a request can fail with, and how the API answers it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// 400 `bad_data`, naming the field.
    #[error("{0}")]
    BadRequest(FieldError),
    /// 404 `not_found`.
    #[error("unknown {what} {name:?}")]
    NotFound { what: &'static str, name: String },
    /// 422 `unsupported`.
    #[error("{0}")]
    Unsupported(Unsupported),
    /// 422 `limit`: the answer would exceed `[query] max_series`.
    #[error("{field}: {message}")]
    Limit { field: &'static str, message: String },
    /// 502 / 504.
    #[error("{0}")]
    Backend(BackendError),
    /// 503 `unavailable`: no render slot freed up within the timeout.
    #[error("every render slot stayed busy for {}", humantime::format_duration(*waited))]
    Busy { waited: Duration },
}

impl QueryError {
    pub fn status(&self) -> u16 {
        match self {
            QueryError::BadRequest(_) => 400,
            QueryError::NotFound { .. } => 404,
            QueryError::Unsupported(_) | QueryError::Limit { .. } => 422,
            QueryError::Backend(e) => e.http_status(),
            QueryError::Busy { .. } => 503,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadRequest(_) => "bad_data",
            QueryError::NotFound { .. } => "not_found",
            QueryError::Unsupported(_) => "unsupported",
            QueryError::Limit { .. } => "limit",
            QueryError::Backend(BackendError::Timeout { .. }) => "timeout",
            QueryError::Backend(_) => "backend",
            QueryError::Busy { .. } => "unavailable",
        }
    }

    /// The error envelope: `{"status":"error","errorType","error", ...}` plus
    /// `backend`/`feature` for 422, `field` for 400, `backend` for 502/504.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type(),
            "error": self.to_string(),
        });
        match self {
            QueryError::BadRequest(f) => body["field"] = f.field.clone().into(),
            QueryError::Unsupported(u) => {
                body["backend"] = u.backend.clone().into();
                body["feature"] = u.feature.clone().into();
            }
            QueryError::Limit { field, .. } => body["field"] = (*field).into(),
            QueryError::Backend(e) => body["backend"] = e.backend().into(),
            QueryError::NotFound { .. } | QueryError::Busy { .. } => {}
        }
        body
    }

    fn bad(field: &str, message: impl Into<String>) -> QueryError {
        QueryError::BadRequest(FieldError { field: field.to_string(), message: message.into() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueryBuildError {
    #[error(transparent)]
    Graphs(#[from] GraphsError),
    #[error(transparent)]
    Driver(#[from] super::backends::DriverConfigError),
}

/// A request checked and compiled, before any backend I/O.
pub struct Prepared {
    pub driver: Arc<dyn Driver>,
    pub grid: TimeGrid,
    pub graph: ValidatedGraph,
    pub compiled: Vec<Compiled>,
}

/// `data` of `POST /api/v1/graph/compile`.
#[derive(Debug, Clone, Serialize)]
pub struct CompileResult {
    pub backend: String,
    pub start: i64,
    pub end: i64,
    pub step_ms: i64,
    pub queries: Vec<String>,
}

/// One entry of `GET /api/v1/backends`.
#[derive(Debug, Clone, Serialize)]
pub struct BackendInfo {
    pub name: String,
    pub readable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub struct QueryService {
    registry: Arc<MetricRegistry>,
    graphs: GraphStore,
    drivers: BTreeMap<String, Arc<dyn Driver>>,
    /// Sinks without a driver: name → why.
    unreadable: BTreeMap<String, String>,
    config: QueryConfig,
    slots: Arc<Semaphore>,
}

impl QueryService {
    /// Builds drivers for every sink and loads `graphs_dir`.
    pub fn from_config(loaded: &LoadedConfig, config: &QueryConfig) -> Result<QueryService, QueryBuildError> {
        let graphs = GraphStore::load_dir(&loaded.resolve(&config.graphs_dir), &loaded.registry)?;
        let mut drivers = BTreeMap::new();
        let mut unreadable = BTreeMap::new();
        for (name, sink) in &loaded.config.sinks {
            match driver_for(name, sink, &loaded.registry, &loaded.base_dir) {
                Some(d) => {
                    drivers.insert(name.clone(), d?);
                }
                None => {
                    unreadable.insert(name.clone(), "this sink type has no read driver".to_string());
                }
            }
        }
        Ok(QueryService::new(loaded.registry.clone(), graphs, drivers, unreadable, config.clone()))
    }

    pub fn new(
        registry: Arc<MetricRegistry>,
        graphs: GraphStore,
        drivers: BTreeMap<String, Arc<dyn Driver>>,
        unreadable: BTreeMap<String, String>,
        config: QueryConfig,
    ) -> QueryService {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_renders));
        QueryService { registry, graphs, drivers, unreadable, config, slots }
    }

    pub fn graphs(&self) -> &GraphStore {
        &self.graphs
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    pub fn backends(&self) -> Vec<BackendInfo> {
        let mut out: Vec<BackendInfo> = self
            .drivers
            .iter()
            .map(|(name, d)| BackendInfo {
                name: name.clone(),
                readable: true,
                capabilities: Some(d.capabilities().clone()),
                reason: None,
            })
            .chain(self.unreadable.iter().map(|(name, why)| BackendInfo {
                name: name.clone(),
                readable: false,
                capabilities: None,
                reason: Some(why.clone()),
            }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Everything up to, not including, backend I/O.
    pub fn prepare(&self, req: &RenderRequest, now_ms: i64) -> Result<Prepared, QueryError> {
        let (start, end, step) = req.times(now_ms).map_err(QueryError::BadRequest)?;
        let driver = match self.drivers.get(&req.backend) {
            Some(d) => d.clone(),
            None if self.unreadable.contains_key(&req.backend) => {
                return Err(QueryError::Unsupported(Unsupported {
                    backend: req.backend.clone(),
                    feature: "read".into(),
                    message: self.unreadable[&req.backend].clone(),
                }));
            }
            None => return Err(QueryError::NotFound { what: "backend", name: req.backend.clone() }),
        };
        let graph = match req.graph_ref().map_err(QueryError::BadRequest)? {
            GraphRef::Id(id) => {
                self.graphs.get(&id).cloned().ok_or(QueryError::NotFound { what: "graph", name: id })?
            }
            GraphRef::Inline(def) => validate_graph(&def, &self.registry)
                .map_err(|e| QueryError::bad(&format!("graph.{}", e.field()), e.to_string()))?,
        };
        let grid = TimeGrid::new(start, end, step).map_err(|e| {
            let field = if matches!(e, super::grid::GridError::Empty { .. }) { "end" } else { "step" };
            QueryError::bad(field, e.to_string())
        })?;
        if grid.len() > self.config.max_points {
            return Err(QueryError::bad(
                "step",
                format!(
                    "{} points per series exceed query.max_points {}: use a larger step",
                    grid.len(),
                    self.config.max_points
                ),
            ));
        }
        let mut compiled = Vec::with_capacity(graph.series.len());
        for plan in &graph.series {
            driver.capabilities().check(driver.backend(), plan, &grid).map_err(QueryError::Unsupported)?;
            compiled.push(driver.compile(plan, &grid).map_err(QueryError::Unsupported)?);
        }
        Ok(Prepared { driver, grid, graph, compiled })
    }

    pub fn compile(&self, req: &RenderRequest, now_ms: i64) -> Result<CompileResult, QueryError> {
        let p = self.prepare(req, now_ms)?;
        Ok(CompileResult {
            backend: p.driver.backend().to_string(),
            start: p.grid.start_ms,
            end: p.grid.end_ms,
            step_ms: p.grid.step_ms,
            queries: p.compiled.into_iter().flat_map(|c| c.queries).collect(),
        })
    }

    pub async fn render(&self, req: &RenderRequest, now_ms: i64) -> Result<RenderResult, QueryError> {
        let p = self.prepare(req, now_ms)?;
        let timeout = self.config.timeout;
        let started = tokio::time::Instant::now();
        let _slot = tokio::time::timeout(timeout, self.slots.acquire())
            .await
            .map_err(|_| QueryError::Busy { waited: timeout })?
            .map_err(|_| QueryError::Busy { waited: Duration::ZERO })?;
        let backend = p.driver.backend().to_string();
        let runs = p.graph.series.iter().zip(&p.compiled).map(|(plan, c)| p.driver.execute(c, plan, &p.grid));
        let raws = tokio::time::timeout(timeout.saturating_sub(started.elapsed()), try_join_all(runs))
            .await
            .map_err(|_| QueryError::Backend(BackendError::Timeout { backend: backend.clone(), after: timeout }))?
            .map_err(QueryError::Backend)?;
        let mut series = Vec::new();
        let mut warnings = Vec::new();
        for (plan, raw) in p.graph.series.iter().zip(&raws) {
            let unit = p.graph.def.unit.clone().or_else(|| {
                plan.entry
                    .unit
                    .as_ref()
                    .map(|u| if plan.function == Function::Rate { format!("{u}/s") } else { u.clone() })
            });
            let lines = normalize(plan, &p.grid, raw, unit.as_deref()).map_err(|e| {
                QueryError::Backend(BackendError::BadResponse {
                    backend: backend.clone(),
                    message: format!("{}: {e}", plan.location()),
                })
            })?;
            series.extend(lines);
            warnings.extend(raw.warnings.iter().map(|w| format!("{backend}: {w}")));
            if series.len() > self.config.max_series {
                return Err(QueryError::Limit {
                    field: "graph",
                    message: format!(
                        "more than query.max_series {} lines; narrow the filter or group_by",
                        self.config.max_series
                    ),
                });
            }
        }
        Ok(RenderResult {
            backend,
            start: p.grid.start_ms,
            end: p.grid.end_ms,
            step_ms: p.grid.step_ms,
            series,
            warnings,
        })
    }
}

/// What label discovery and the catalog need from the service (DESIGN §7.2).
impl QueryService {
    pub fn registry(&self) -> &Arc<MetricRegistry> {
        &self.registry
    }

    /// Every readable backend's driver, by sink name.
    pub fn drivers(&self) -> &BTreeMap<String, Arc<dyn Driver>> {
        &self.drivers
    }

    /// Sinks without a driver, with the reason.
    pub fn unreadable(&self) -> &BTreeMap<String, String> {
        &self.unreadable
    }

    /// The driver of `backend`: 404 for an unknown name, 422 `read` for a sink
    /// without a read driver.
    pub fn driver(&self, backend: &str) -> Result<Arc<dyn Driver>, QueryError> {
        if let Some(d) = self.drivers.get(backend) {
            return Ok(d.clone());
        }
        match self.unreadable.get(backend) {
            Some(why) => Err(QueryError::Unsupported(Unsupported {
                backend: backend.to_string(),
                feature: "read".into(),
                message: why.clone(),
            })),
            None => Err(QueryError::NotFound { what: "backend", name: backend.to_string() }),
        }
    }

    /// Runs backend I/O other than a render (discovery, forwarding) in a render
    /// slot and under `[query] timeout`, like a render.
    pub async fn bounded<T>(
        &self,
        backend: &str,
        work: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, QueryError> {
        let timeout = self.config.timeout;
        let started = tokio::time::Instant::now();
        let _slot = tokio::time::timeout(timeout, self.slots.acquire())
            .await
            .map_err(|_| QueryError::Busy { waited: timeout })?
            .map_err(|_| QueryError::Busy { waited: Duration::ZERO })?;
        tokio::time::timeout(timeout.saturating_sub(started.elapsed()), work)
            .await
            .map_err(|_| QueryError::Backend(BackendError::Timeout { backend: backend.to_string(), after: timeout }))?
            .map_err(QueryError::Backend)
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::query::backends::{RawForm, RawResult, RawSeries, StepSupport};
    use crate::query::model::Across;
    use crate::query::plan::SeriesPlan;

    /// A driver that serves only `avg`/`max`, no regexes, no raw counters, steps of
    /// whole minutes, counts what reaches it, and answers after `delay`.
    struct Counting {
        caps: Capabilities,
        compiles: AtomicUsize,
        executes: AtomicUsize,
        delay: Duration,
        lines: usize,
    }

    impl Driver for Counting {
        fn backend(&self) -> &str {
            "fake"
        }
        fn capabilities(&self) -> &Capabilities {
            &self.caps
        }
        fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported> {
            self.compiles.fetch_add(1, Ordering::SeqCst);
            Ok(Compiled {
                queries: vec![format!("{} {}", plan.metric_name(), grid.step_ms)],
                form: RawForm::PerSeries,
                payload: None,
            })
        }
        fn execute<'a>(
            &'a self,
            _: &'a Compiled,
            _: &'a SeriesPlan,
            grid: &'a TimeGrid,
        ) -> futures::future::BoxFuture<'a, Result<RawResult, BackendError>> {
            Box::pin(async move {
                self.executes.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let series = (0..self.lines)
                    .map(|i| RawSeries {
                        labels: [("host".to_string(), format!("h{i}"))].into(),
                        points: vec![(grid.point(0), 1.0)],
                    })
                    .collect();
                Ok(RawResult { form: RawForm::PerSeries, series, warnings: vec!["fake warning".into()] })
            })
        }
    }

    fn service(delay: Duration, lines: usize, config: QueryConfig) -> (QueryService, Arc<Counting>) {
        let registry = Arc::new(
            MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.yaml")).unwrap(),
        );
        let driver = Arc::new(Counting {
            caps: Capabilities {
                driver: "fake",
                functions: vec![Function::Avg, Function::Max, Function::Raw],
                across_on_server: vec![Across::Sum],
                group_by_on_server: false,
                regex_filters: false,
                negative_filters: false,
                steps: StepSupport::MultipleOf { multiple_of_ms: 60_000 },
                raw_counter_values: false,
                label_discovery: false,
                notes: vec![],
            },
            compiles: AtomicUsize::new(0),
            executes: AtomicUsize::new(0),
            delay,
            lines,
        });
        let drivers: BTreeMap<String, Arc<dyn Driver>> =
            [("fake".to_string(), driver.clone() as Arc<dyn Driver>)].into();
        let s = QueryService::new(registry, GraphStore::default(), drivers, BTreeMap::new(), config);
        (s, driver)
    }

    fn request(series: serde_json::Value, step: &str) -> RenderRequest {
        serde_json::from_value(serde_json::json!({
            "graph": {"id": "t", "series": [series]}, "backend": "fake",
            "start": 0, "end": 3_600_000, "step": step,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn unsupported_is_refused_before_any_backend_io() {
        let (s, d) = service(Duration::ZERO, 1, QueryConfig::default());
        let cases = [
            (serde_json::json!({"metric": "golden.load", "function": "min"}), "1m", "function:min"),
            (serde_json::json!({"metric": "golden.port.octets", "function": "rate"}), "1m", "function:rate"),
            (serde_json::json!({"metric": "golden.port.octets"}), "1m", "raw_counter_values"),
            (
                serde_json::json!({"metric": "golden.load", "function": "avg", "filter": {"host": "=~h.*"}}),
                "1m",
                "regex_filter",
            ),
            (
                serde_json::json!({"metric": "golden.load", "function": "avg", "filter": {"host": "!=h1"}}),
                "1m",
                "negative_filter",
            ),
            (serde_json::json!({"metric": "golden.load", "function": "avg"}), "90s", "step"),
        ];
        for (series, step, feature) in cases {
            match s.render(&request(series.clone(), step), 0).await {
                Err(QueryError::Unsupported(u)) => {
                    assert_eq!((u.backend.as_str(), u.feature.as_str()), ("fake", feature), "{series}");
                    let e = QueryError::Unsupported(u);
                    assert_eq!((e.status(), e.body()["errorType"].as_str()), (422, Some("unsupported")));
                }
                other => panic!("{series}: {other:?}"),
            }
        }
        assert_eq!(d.compiles.load(Ordering::SeqCst), 0, "the table refuses before the compiler");
        assert_eq!(d.executes.load(Ordering::SeqCst), 0, "no backend I/O");
    }

    #[tokio::test]
    async fn renders_limits_and_timeout() {
        let (s, d) = service(Duration::ZERO, 3, QueryConfig::default());
        let r =
            s.render(&request(serde_json::json!({"metric": "golden.load", "function": "avg"}), "1m"), 0).await.unwrap();
        assert_eq!(r.series.len(), 3);
        assert_eq!(r.series[0].points.len(), 60);
        assert_eq!(r.series[0].points[0], (60_000, Some(1.0)));
        assert_eq!(r.series[0].points[1], (120_000, None));
        assert_eq!(r.warnings, ["fake: fake warning"]);
        assert_eq!(d.executes.load(Ordering::SeqCst), 1);

        let small = QueryConfig { max_series: 2, max_points: 30, ..QueryConfig::default() };
        let (s, _) = service(Duration::ZERO, 3, small);
        let e = s.render(&request(serde_json::json!({"metric": "golden.load", "function": "avg"}), "2m"), 0).await;
        assert!(matches!(&e, Err(QueryError::Limit { .. })), "{e:?}");
        let e = s.render(&request(serde_json::json!({"metric": "golden.load", "function": "avg"}), "1m"), 0).await;
        match e {
            Err(QueryError::BadRequest(f)) => assert!(f.field == "step" && f.message.contains("max_points"), "{f}"),
            other => panic!("{other:?}"),
        }

        let quick = QueryConfig { timeout: Duration::from_millis(50), ..QueryConfig::default() };
        let (s, _) = service(Duration::from_secs(5), 1, quick);
        let e = s.render(&request(serde_json::json!({"metric": "golden.load", "function": "avg"}), "1m"), 0).await;
        match e {
            Err(e @ QueryError::Backend(BackendError::Timeout { .. })) => assert_eq!(e.status(), 504),
            other => panic!("{other:?}"),
        }
    }
}
