//! `type = "influxdb"`: line protocol to InfluxDB 1.x (`/write`) or the 2.x
//! write API (`/api/v2/write`).
//!
//! [`config`] the settings (the shared `request` ones embedded), [`encode`]
//! batch → lines once, gzipped per request and split by lines when the server
//! answers 413, [`service`] one write attempt and its answer (partial writes,
//! `CREATE DATABASE`). Retry, timeout, concurrency and HTTP come from
//! [`crate::sinks::common`]; the lanes are series-sharded, so each series'
//! samples still arrive in order.

pub mod config;
pub mod encode;
pub mod service;

use std::path::{Path, PathBuf};

pub use config::InfluxdbSinkConfig;
pub use encode::{InfluxdbEncoder, InfluxdbOverride, InfluxdbRequest, OverrideLookup};
pub use service::InfluxdbService;

use super::common::http::HttpSetupError;
use super::common::{self as shared, NetworkSink, SinkContext, Stack};

/// One lane of the sink.
pub type InfluxdbLane = NetworkSink<InfluxdbEncoder, Stack<InfluxdbService>>;

/// Builds the sink's lanes. `retry_forever` is set when the queue is durable;
/// `overrides` are the registry's per-metric measurement and field.
pub fn lanes(
    config: &InfluxdbSinkConfig,
    context: &SinkContext,
    resolve: &dyn Fn(&Path) -> PathBuf,
    retry_forever: bool,
    overrides: Option<OverrideLookup>,
) -> Result<Vec<InfluxdbLane>, HttpSetupError> {
    let service = InfluxdbService::new(config, resolve)?;
    let stack = shared::stack(service, &config.request, retry_forever, context);
    let (field, gzip) = (config.field.clone(), config.gzip);
    let new_encoder = move || InfluxdbEncoder::new(field.clone(), overrides.clone(), gzip);
    Ok(shared::network_lanes(&config.request, new_encoder, stack, context))
}
