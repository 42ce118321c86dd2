//! `type = "prometheus_remote_write"`: Prometheus remote-write 1.0 and 2.0.
//!
//! [`config`] the settings, [`encode`] batch → 1.0 snappy protobuf (by hand,
//! for speed), [`encode_v2`] batch → 2.0, [`protocol`] which one is sent
//! (`protocol = "1.0" | "2.0" | "auto"`), [`service`] one HTTP attempt and its
//! answer. Retry, timeout and concurrency come from [`crate::sinks::common`].

pub mod config;
pub mod encode;
pub mod encode_v2;
pub mod protocol;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use config::RemoteWriteSinkConfig;
pub use encode::{MetadataProvider, MetadataSettings, MetricInfo, RemoteWriteEncoder};
pub use service::RemoteWriteService;

use super::common::http::{self, HttpSetupError};
use super::common::{self as shared, HttpTarget, NetworkSink, SinkContext, Stack};

/// One lane of the sink.
pub type RemoteWriteLane = NetworkSink<protocol::ProtocolEncoder, Stack<RemoteWriteService>>;

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
    let headers_v2 = http::request_headers(&config.request, &service::protocol_headers_v2())?;
    let negotiated = protocol::Negotiated::default();
    let service = RemoteWriteService::new(
        HttpTarget::new(client.clone(), url.clone(), headers),
        HttpTarget::new(client, url, headers_v2),
        config.protocol,
        negotiated.clone(),
    );
    let stack = shared::stack(service, &config.request, retry_forever, context);
    let settings =
        MetadataSettings { enabled: config.send_metadata, interval: config.metadata_interval, provider: metadata };
    let version = config.protocol;
    Ok(shared::network_lanes(
        &config.request,
        move || protocol::ProtocolEncoder::new(RemoteWriteEncoder::new(settings.clone()), version, negotiated.clone()),
        stack,
        context,
    ))
}
