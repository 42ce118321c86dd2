//! `type = "prometheus_remote_write"`: Prometheus remote-write 1.0.
//!
//! [`config`] the settings, [`encode`] batch → snappy protobuf (by hand, for
//! speed), [`service`] one HTTP attempt and its answer. Retry, timeout and
//! concurrency come from [`crate::sinks::common`].

pub mod config;
pub mod encode;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::RemoteWriteSinkConfig;
pub use encode::{MetadataProvider, MetadataSettings, MetricInfo, RemoteWriteEncoder};
pub use service::RemoteWriteService;

use super::common::http::{self, HttpSetupError};
use super::common::{self as shared, HttpTarget, NetworkSink, SinkContext, Stack};

/// One lane of the sink.
pub type RemoteWriteLane = NetworkSink<RemoteWriteEncoder, Stack<RemoteWriteService>>;

/// Builds the sink's lanes. `retry_forever` is set when the queue is durable;
/// `metadata` supplies help and unit (the metric registry), if any.
pub fn lanes(
    config: &RemoteWriteSinkConfig,
    context: &SinkContext,
    resolve: &dyn Fn(&Path) -> PathBuf,
    retry_forever: bool,
    metadata: Option<Arc<dyn MetadataProvider>>,
) -> Result<Vec<RemoteWriteLane>, HttpSetupError> {
    let url = http::parse_url(&config.url)?;
    let client = http::build_client(&config.request, resolve)?;
    let headers = http::request_headers(&config.request, &service::protocol_headers())?;
    let service = RemoteWriteService::new(HttpTarget::new(client, url, headers));
    let stack = shared::stack(service, &config.request, retry_forever, context);
    let settings =
        MetadataSettings { enabled: config.send_metadata, interval: config.metadata_interval, provider: metadata };
    Ok(shared::network_lanes(&config.request, move || RemoteWriteEncoder::new(settings.clone()), stack, context))
}
