//! rrdcached through its own protocol on the sink's `address`, reading the
//! files an `rrdcached` sink wrote: found with `LIST RECURSIVE`, mapped back to
//! labels through the sink's `path_template` (or the registry's
//! `backends.rrdcached.path`), checked with `INFO`, read with `FETCH` (which
//! flushes the file's pending updates first, so what the sink sent is seen).
//!
//! [`compile`] plan → files, function and archive (pure), [`template`] paths →
//! labels, [`reply`] rrdcached's answers (fuzzed), [`consolidate`] rows → grid
//! points, [`fetch`] the exchanges.

pub mod compile;
pub mod consolidate;
pub mod discover;
pub mod fetch;
pub mod reply;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use self::compile::FetchPlan;
use super::{
    BackendError, Capabilities, Compiled, Discovered, Driver, DriverConfigError, LabelQuery, RawResult, SeriesLabels,
    StepSupport, Unsupported,
};
use crate::query::grid::TimeGrid;
use crate::query::model::Function;
use crate::query::plan::SeriesPlan;
use crate::registry::MetricRegistry;
use crate::sinks::rrdcached::RrdcachedSinkConfig;
use crate::sinks::rrdcached::client::Address;

/// The driver of one `rrdcached` sink.
pub struct RrdcachedDriver {
    backend: String,
    config: RrdcachedSinkConfig,
    address: Address,
    timeout: Duration,
    capabilities: Capabilities,
    /// `tsrelay_query_backend_requests_total{backend}`: one per command sent.
    requests: metrics::Counter,
    /// The sink's path templates read backwards, for label discovery.
    templates: discover::Templates,
}

/// What this driver serves for a sink whose files have base step `step_s`.
pub fn capabilities(step_s: u64) -> Capabilities {
    Capabilities {
        driver: "rrdcached",
        functions: vec![
            Function::Raw,
            Function::Rate,
            Function::Increase,
            Function::Avg,
            Function::Min,
            Function::Max,
            Function::Last,
        ],
        across_on_server: Vec::new(),
        group_by_on_server: false,
        regex_filters: true,
        negative_filters: true,
        steps: StepSupport::MultipleOf { multiple_of_ms: step_s as i64 * 1000 },
        raw_counter_values: false,
        label_discovery: true,
        notes: vec![
            "counters are stored as DERIVE (a per-second rate): rate and increase only, no raw counter values".into(),
            "a value is RRD's consolidated data point: the time-weighted mean over each base step; it equals \
             the model when samples arrive once per base step, on its boundaries"
                .into(),
            "heartbeat: a sample arriving more than `heartbeat` after the previous one makes the whole gap \
             unknown, including the base step that ends with it, so the first bucket after a hole is null"
                .into(),
            "labels are read back from file paths: only the labels of the path template, with the values as \
             the sink sanitized them ([^A-Za-z0-9._-] → _)"
                .into(),
            "files are read from the finest archive that reaches back to `start`; a step that archive's \
             resolution does not divide is refused"
                .into(),
            "label discovery: a series is a file found through the path templates (LIST, and INFO where two \
             metrics' templates fit one path); files have no time, so start and end are not applied"
                .into(),
        ],
    }
}

impl RrdcachedDriver {
    pub fn for_sink(
        name: &str,
        config: &RrdcachedSinkConfig,
        registry: &MetricRegistry,
    ) -> Result<Arc<dyn Driver>, DriverConfigError> {
        let address = Address::parse(&config.address)
            .map_err(|message| DriverConfigError { backend: name.to_string(), message })?;
        Ok(Arc::new(RrdcachedDriver {
            backend: name.to_string(),
            address,
            timeout: config.timeout,
            capabilities: capabilities(config.step_secs()),
            requests: crate::telemetry::query_backend_requests(name),
            templates: discover::Templates::new(config, registry),
            config: config.clone(),
        }))
    }

    fn plan(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<FetchPlan, Unsupported> {
        compile::compile(plan, grid, &self.config).map_err(|(feature, message)| Unsupported {
            backend: self.backend.clone(),
            feature,
            message: format!("{}: {message}", plan.location()),
        })
    }
}

impl Driver for RrdcachedDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported> {
        let fetch = self.plan(plan, grid)?;
        Ok(Compiled { queries: fetch.commands(), form: fetch.form, payload: Some(Arc::new(fetch)) })
    }

    fn execute<'a>(
        &'a self,
        compiled: &'a Compiled,
        plan: &'a SeriesPlan,
        grid: &'a TimeGrid,
    ) -> BoxFuture<'a, Result<RawResult, BackendError>> {
        Box::pin(async move {
            let fetch_plan = match compiled.payload.as_ref().and_then(|p| p.downcast_ref::<FetchPlan>()) {
                Some(p) => p.clone(),
                None => self
                    .plan(plan, grid)
                    .map_err(|e| BackendError::BadResponse { backend: self.backend.clone(), message: e.to_string() })?,
            };
            fetch::run(&self.backend, &self.address, self.timeout, &self.requests, &fetch_plan, grid).await
        })
    }

    fn series<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<SeriesLabels>, BackendError>> {
        Box::pin(self.discover(query))
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
