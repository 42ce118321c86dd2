//! InfluxDB 1.x through InfluxQL on `/query` (`epoch=ms`), reading what an
//! `influxdb` sink with `api = "v1"` wrote: its `url`, `database`, `rp`,
//! credentials and TLS settings, and the registry's `backends.influxdb`
//! (measurement, field) — the same mapping the sink's encoder uses.
//!
//! [`compile`] plan → statement (pure), [`client`] one HTTP exchange,
//! [`response`] the JSON answer → series (fuzzed), [`influxql`] quoting.

pub mod client;
pub mod compile;
pub mod discover;
pub mod influxql;
pub mod response;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

use self::client::QueryClient;
use self::compile::{Statement, Target};
use super::{
    BackendError, Capabilities, Compiled, Discovered, Driver, DriverConfigError, LabelQuery, RawResult, RawSeries,
    SeriesLabels, StepSupport, Unsupported,
};
use crate::query::grid::TimeGrid;
use crate::query::model::{Across, Function};
use crate::query::plan::SeriesPlan;
use crate::registry::MetricRegistry;
use crate::sinks::influxdb::InfluxdbSinkConfig;
use crate::sinks::influxdb::config::ApiVersion;

/// The driver of one `influxdb` sink.
pub struct InfluxdbDriver {
    backend: String,
    field: String,
    retention_policy: Option<String>,
    client: QueryClient,
    capabilities: Capabilities,
    /// Metric names ↔ (measurement, field), for label discovery.
    names: discover::NameMap,
}

/// What this driver serves; the same for every InfluxDB 1.x sink.
pub fn capabilities() -> Capabilities {
    Capabilities {
        driver: "influxdb",
        functions: Function::ALL.to_vec(),
        across_on_server: Across::ALL.to_vec(),
        group_by_on_server: true,
        regex_filters: true,
        negative_filters: true,
        steps: StepSupport::Any { min_ms: 1000 },
        raw_counter_values: true,
        label_discovery: true,
        notes: vec![
            "rate and increase are computed by tsrelay from the stored samples: InfluxQL's \
             non_negative_derivative spans empty buckets and drops counter resets, which the model does not"
                .into(),
            "label discovery: series hold the metric's field within start/end (SELECT last ... GROUP BY *); label \
             names and values come from InfluxDB's index (SHOW TAG KEYS/VALUES), which ignores start/end and \
             lists the tags of the whole measurement, also of series written for other metrics' fields there"
                .into(),
        ],
    }
}

impl InfluxdbDriver {
    /// `None` for a v2 sink: InfluxQL reads need the v1 API.
    /// `base_dir`: where relative paths of the sink's settings (TLS files) start.
    pub fn for_sink(
        name: &str,
        config: &InfluxdbSinkConfig,
        registry: &MetricRegistry,
        base_dir: &Path,
    ) -> Option<Result<Arc<dyn Driver>, DriverConfigError>> {
        if config.api != ApiVersion::V1 {
            return None;
        }
        let built = QueryClient::new(name, config, base_dir)
            .map(|client| {
                Arc::new(InfluxdbDriver {
                    backend: name.to_string(),
                    field: config.field.clone(),
                    retention_policy: config.rp.clone(),
                    client,
                    capabilities: capabilities(),
                    names: discover::NameMap::new(registry, &config.field),
                }) as Arc<dyn Driver>
            })
            .map_err(|e| DriverConfigError { backend: name.to_string(), message: e.to_string() });
        Some(built)
    }

    fn statement(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Statement, Unsupported> {
        let target = Target::for_plan(plan, &self.field, self.retention_policy.as_deref());
        compile::compile(plan, grid, &target).map_err(|e| Unsupported {
            backend: self.backend.clone(),
            feature: "influxql_quoting".into(),
            message: format!("{}: {e}", plan.location()),
        })
    }
}

impl Driver for InfluxdbDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported> {
        let statement = self.statement(plan, grid)?;
        Ok(Compiled { queries: vec![statement.text.clone()], form: statement.form, payload: Some(Arc::new(statement)) })
    }

    fn execute<'a>(
        &'a self,
        compiled: &'a Compiled,
        plan: &'a SeriesPlan,
        grid: &'a TimeGrid,
    ) -> BoxFuture<'a, Result<RawResult, BackendError>> {
        Box::pin(async move {
            let statement = match compiled.payload.as_ref().and_then(|p| p.downcast_ref::<Statement>()) {
                Some(s) => s.clone(),
                None => self
                    .statement(plan, grid)
                    .map_err(|e| BackendError::BadResponse { backend: self.backend.clone(), message: e.to_string() })?,
            };
            let body = self.client.query(&statement.text).await?;
            let mut warnings = Vec::new();
            let parsed = response::parse(&body, &mut warnings).map_err(|e| BackendError::BadResponse {
                backend: self.backend.clone(),
                message: format!("{e} (query: {})", statement.text),
            })?;
            let series = parsed
                .into_iter()
                .map(|s| RawSeries {
                    labels: s.tags,
                    points: s.points.into_iter().map(|(t, v)| (t.saturating_add(statement.time_shift_ms), v)).collect(),
                })
                .collect();
            Ok(RawResult { form: statement.form, series, warnings })
        })
    }

    fn series<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<SeriesLabels>, BackendError>> {
        Box::pin(self.discover_series(query))
    }

    fn label_names<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        Box::pin(self.discover_label_names(query))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        query: &'a LabelQuery,
    ) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        Box::pin(self.discover_label_values(name, query))
    }
}
