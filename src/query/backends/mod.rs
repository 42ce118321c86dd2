//! Drivers: the only backend-specific code of the read side (DESIGN §7).
//!
//! A driver is three things, one per backend folder (`backends/<name>/`):
//! a **capability table** ([`Capabilities`]), a **compiler** ([`Driver::compile`]:
//! pure, no I/O, deterministic — same plan and grid, same [`Compiled`], byte for
//! byte) and a **client** ([`Driver::execute`]: runs a [`Compiled`] against the
//! backend and returns a [`RawResult`]).
//!
//! # Division of labour
//!
//! The neutral layer ([`crate::query::render`]) does, in this order:
//! 1. validation against the registry ([`crate::query::validate`]) → [`SeriesPlan`];
//! 2. the generic capability check ([`Capabilities::check`]) → 422 before any I/O;
//! 3. [`Driver::compile`] → 422 ([`Unsupported`]) for anything backend-specific
//!    the table can't say (e.g. no RRD archive serves the step) — still before I/O;
//! 4. [`Driver::execute`] under the query timeout (504 when it runs out);
//! 5. normalization ([`crate::query::normalize`]) of the [`RawResult`] according
//!    to its [`RawForm`]: per-bucket function over raw samples (`Samples`), then
//!    `across` over the `group_by` labels unless the server did it (`Grouped`),
//!    placing every value on the grid, `null` for every grid point without a
//!    value, `scale`, legend, sorting series by labels.
//!
//! A driver therefore never fills gaps, never sorts, never scales, never formats
//! legends. What it must get exactly right is the *bucket*: a value it reports at
//! grid point `t` must be the function over `(t − step, t]` as defined on
//! [`Function`] — `rate`/`increase` from the samples in `[t − step, t]`, resets
//! contributing the new value, never negative, no extrapolation — whatever the
//! backend's own convention (Prometheus evaluates at `t` over a look-back window;
//! InfluxQL labels `GROUP BY time()` buckets by their start and includes it; RRD
//! labels a consolidated row by its end). Where a backend cannot reproduce this
//! exactly for a request, the driver refuses it ([`Unsupported`]) instead of
//! returning something close; where its *storage* loses information (RRD's
//! heartbeat), the capability table says so in `notes`.
//!
//! # Label discovery
//!
//! A driver with `label_discovery` also answers [`Driver::series`],
//! [`Driver::label_names`] and [`Driver::label_values`] for a [`LabelQuery`]
//! (the `match[]` selectors of the Prometheus API, time bounds, a limit), asking
//! the backend itself (see [`discovery`]): label names are the neutral ones a
//! render's series carry, `__name__` is the registry's metric name.

pub mod discovery;
pub mod influxdb;
pub mod prometheus;
pub mod rrdcached;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use self::discovery::no_discovery;
pub use self::discovery::{ApiRequest, ApiResponse, Discovered, LabelQuery, SeriesLabels};
use super::grid::TimeGrid;
use super::model::{Across, Function};
use super::plan::SeriesPlan;
use crate::registry::MetricRegistry;
use crate::sinks::SinkConfig;

/// What a driver can do; published at `GET /api/v1/backends`.
///
/// [`Capabilities::check`] refuses, before compiling, every request that uses a
/// feature outside the table. Anything finer (a step no archive serves) is the
/// compiler's to refuse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capabilities {
    /// Driver name (`prometheus`, `influxdb`, `rrdcached`).
    pub driver: &'static str,
    /// Per-bucket functions the driver computes exactly.
    pub functions: Vec<Function>,
    /// `across` combinations the driver (or the server) performs itself. The neutral
    /// layer combines the others from per-series results, so they are all served;
    /// this list is informative.
    pub across_on_server: Vec<Across>,
    /// Whether the server groups by label (`sum by (...)`) or only returns one
    /// result per stored series.
    pub group_by_on_server: bool,
    /// `=~` / `!~` filters.
    pub regex_filters: bool,
    /// `!=` filters.
    pub negative_filters: bool,
    /// Steps the driver serves exactly.
    pub steps: StepSupport,
    /// `raw` on a counter returns the stored counter value (false: the backend
    /// stores a rate, e.g. RRD DERIVE, and `raw` on counters is refused).
    pub raw_counter_values: bool,
    /// The driver lists series, label names and label values
    /// ([`Driver::series`], [`Driver::label_names`], [`Driver::label_values`]).
    pub label_discovery: bool,
    /// Declared deviations that remain inside served requests (e.g. where storage
    /// loses a bucket at the edge of a hole), in one sentence each.
    pub notes: Vec<String>,
}

/// Which steps a driver serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepSupport {
    /// Any whole number of seconds ≥ `min_ms`.
    Any { min_ms: i64 },
    /// Multiples of `multiple_of_ms` (e.g. an RRD file's base step); whether an
    /// archive exists for a given multiple is decided by the compiler.
    MultipleOf { multiple_of_ms: i64 },
}

/// The feature a request uses that a backend does not serve exactly
/// (HTTP 422, `errorType = "unsupported"`, with `backend` and `feature`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("backend {backend:?} does not support {feature}: {message}")]
pub struct Unsupported {
    /// The sink name.
    pub backend: String,
    /// Machine-readable feature, e.g. `function:raw_counter`, `across:avg`, `regex_filter`, `step`.
    pub feature: String,
    /// What exactly was asked and, where it helps, what would be served.
    pub message: String,
}

/// A backend failed while executing (HTTP 502, or 504 for [`BackendError::Timeout`],
/// 422 for [`BackendError::Unsupported`]). Every message names the backend (sink
/// name) and what it answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend {backend:?}: cannot reach {target}: {message}")]
    Unreachable { backend: String, target: String, message: String },
    #[error("backend {backend:?}: no answer within {}", humantime::format_duration(*after))]
    Timeout { backend: String, after: Duration },
    #[error("backend {backend:?} answered HTTP {status}: {body}")]
    Status { backend: String, status: u16, body: String },
    #[error("backend {backend:?} answered something unusable: {message}")]
    BadResponse { backend: String, message: String },
    /// What only the backend's answer can show cannot be served exactly (HTTP 422,
    /// like a refusal before I/O). rrdcached: `FETCH` takes no resolution and
    /// answers from the finest archive that still reaches back to `start`, which
    /// depends on the file's last update — not something a pure compiler can know.
    #[error("{0}")]
    Unsupported(Unsupported),
}

impl BackendError {
    pub fn backend(&self) -> &str {
        match self {
            BackendError::Unreachable { backend, .. }
            | BackendError::Timeout { backend, .. }
            | BackendError::Status { backend, .. }
            | BackendError::BadResponse { backend, .. } => backend,
            BackendError::Unsupported(u) => &u.backend,
        }
    }

    /// HTTP status of the query API for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            BackendError::Timeout { .. } => 504,
            BackendError::Unsupported(_) => 422,
            _ => 502,
        }
    }
}

/// What a compiler produced for one [`SeriesPlan`] on one [`TimeGrid`].
#[derive(Clone)]
pub struct Compiled {
    /// Human-readable queries or commands, in the order `execute` runs them
    /// (`POST /api/v1/graph/compile` returns them). Deterministic.
    pub queries: Vec<String>,
    /// What `execute` will return, so the neutral layer knows what is left to do.
    pub form: RawForm,
    /// Driver-private data `execute` needs beyond `queries` (downcast by the driver).
    pub payload: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("queries", &self.queries).field("form", &self.form).finish_non_exhaustive()
    }
}

/// How far a driver's answer is already computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawForm {
    /// Stored samples, per stored series, any timestamps within
    /// `[start − step, end]` (one step before the grid, so `rate`/`increase` of
    /// the first bucket see their starting value). The neutral layer applies
    /// `function` per bucket, then `across`.
    Samples,
    /// One value per grid point per stored series, `function` already applied;
    /// every timestamp is a grid point `t` (a point off the grid is a driver bug,
    /// reported as 502). Missing points are empty buckets. The neutral layer
    /// applies `across` when the plan has `group_by`.
    PerSeries,
    /// `function` and `across` applied by the server: one series per distinct
    /// `group_by` value, labelled by exactly those labels; points as in `PerSeries`.
    Grouped,
}

/// One series of a [`RawResult`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawSeries {
    /// The series' labels, without `__name__` (drivers map their storage back to
    /// the neutral label names: tags, path-template placeholders, ...).
    pub labels: BTreeMap<String, String>,
    /// `(timestamp_ms, value)`, ascending by time, no duplicates. NaN and ±Inf
    /// mean no value (the neutral layer treats them as absent).
    pub points: Vec<(i64, f64)>,
}

/// What [`Driver::execute`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResult {
    pub form: RawForm,
    pub series: Vec<RawSeries>,
    /// Non-fatal remarks for the answer's `warnings` (e.g. the server's own warnings).
    pub warnings: Vec<String>,
}

/// A backend driver. Object-safe: the query service holds `Arc<dyn Driver>` per readable sink.
pub trait Driver: Send + Sync + 'static {
    /// The sink name it reads (`backend` in requests).
    fn backend(&self) -> &str;

    /// The capability table; constant for the driver's lifetime.
    fn capabilities(&self) -> &Capabilities;

    /// Pure translation of one series for one grid: no I/O, no clock, no randomness.
    /// Refuses with [`Unsupported`] what it cannot serve exactly.
    fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported>;

    /// Runs what `compile` produced. Must not panic on any answer; every failure
    /// is a [`BackendError`] naming the backend. The caller bounds it with the
    /// query timeout; a driver may also time out its own requests.
    fn execute<'a>(
        &'a self,
        compiled: &'a Compiled,
        plan: &'a SeriesPlan,
        grid: &'a TimeGrid,
    ) -> BoxFuture<'a, Result<RawResult, BackendError>>;

    /// Label discovery: the label sets (`__name__` included) of the series the
    /// query selects, at most `query.limit`. Drivers with `label_discovery` in
    /// their table implement it; the default refuses (422 `label_discovery`).
    fn series<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<SeriesLabels>, BackendError>> {
        let _ = query;
        let refusal = no_discovery(self.backend(), self.capabilities().driver);
        Box::pin(async move { Err(refusal) })
    }

    /// The label names of the selected series (every series without selectors),
    /// `__name__` included, at most `query.limit`.
    fn label_names<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        let _ = query;
        let refusal = no_discovery(self.backend(), self.capabilities().driver);
        Box::pin(async move { Err(refusal) })
    }

    /// The values label `name` has in the selected series, at most `query.limit`.
    fn label_values<'a>(
        &'a self,
        name: &'a str,
        query: &'a LabelQuery,
    ) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        let _ = (name, query);
        let refusal = no_discovery(self.backend(), self.capabilities().driver);
        Box::pin(async move { Err(refusal) })
    }

    /// Forwards a Prometheus HTTP API request unchanged, for a backend that
    /// speaks that API itself; `None` (the default) for every other backend,
    /// whose requests the neutral layer answers through the model.
    fn forward_prometheus_api<'a>(
        &'a self,
        request: &'a ApiRequest,
    ) -> Option<BoxFuture<'a, Result<ApiResponse, BackendError>>> {
        let _ = request;
        None
    }
}

impl Capabilities {
    /// The checks every driver shares, run before compiling: function, raw counter
    /// values, regex and negative filters, step. `backend` is the sink name.
    pub fn check(&self, backend: &str, plan: &SeriesPlan, grid: &TimeGrid) -> Result<(), Unsupported> {
        let refuse = |feature: String, message: String| Unsupported {
            backend: backend.to_string(),
            feature,
            message: format!("{}: {message}", plan.location()),
        };
        if !self.functions.contains(&plan.function) {
            return Err(refuse(
                format!("function:{}", plan.function),
                format!("function {} is not computed exactly by the {} driver", plan.function, self.driver),
            ));
        }
        if plan.function == Function::Raw
            && plan.entry.metric_type == crate::registry::MetricType::Counter
            && !self.raw_counter_values
        {
            return Err(refuse(
                "raw_counter_values".into(),
                format!("{} stores no raw counter values (use rate or increase)", self.driver),
            ));
        }
        for m in &plan.matchers {
            if m.op.is_regex() && !self.regex_filters {
                return Err(refuse("regex_filter".into(), format!("filter on {:?} uses a regex", m.label)));
            }
            if m.op == super::model::MatchOp::NotEqual && !self.negative_filters {
                return Err(refuse("negative_filter".into(), format!("filter on {:?} uses !=", m.label)));
            }
        }
        match self.steps {
            StepSupport::Any { min_ms } if grid.step_ms < min_ms => {
                Err(refuse("step".into(), format!("step {} ms is below the minimum {min_ms} ms", grid.step_ms)))
            }
            StepSupport::MultipleOf { multiple_of_ms } if grid.step_ms % multiple_of_ms != 0 => {
                Err(refuse("step".into(), format!("step {} ms is not a multiple of {multiple_of_ms} ms", grid.step_ms)))
            }
            _ => Ok(()),
        }
    }
}

/// Why a readable sink's driver could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("query backend {backend:?}: {message}")]
pub struct DriverConfigError {
    pub backend: String,
    pub message: String,
}

/// The driver of a sink, or `None` when its type has no read side (a request
/// naming it gets 422 `feature = "read"`). The one place that maps sink types to drivers.
///
/// `base_dir` is the config file's directory (relative paths in sink settings).
pub fn driver_for(
    name: &str,
    sink: &SinkConfig,
    registry: &Arc<MetricRegistry>,
    base_dir: &Path,
) -> Option<Result<Arc<dyn Driver>, DriverConfigError>> {
    match sink {
        SinkConfig::PrometheusRemoteWrite(c) => {
            Some(prometheus::PrometheusDriver::from_sink(name, c, base_dir).map(|d| Arc::new(d) as Arc<dyn Driver>))
        }
        SinkConfig::Influxdb(c) => influxdb::InfluxdbDriver::for_sink(name, c, registry, base_dir),
        SinkConfig::Rrdcached(c) => Some(rrdcached::RrdcachedDriver::for_sink(name, c, registry)),
        _ => None,
    }
}
