//! `type = "prometheus_remote_write"`: settings, defaults in [`defaults`].

use std::time::Duration;

use serde::Deserialize;

use super::service::PROTOCOL_HEADER_NAMES;
use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;
use crate::sinks::common::RequestConfig;
use crate::sinks::common::http::parse_url;

/// ```toml
/// [sinks.prom]
/// type = "prometheus_remote_write"
/// url = "http://127.0.0.1:9090/api/v1/write"
/// queue = { type = "memory", max_samples = 1000000, when_full = "block" }
/// batch = { max_samples = 10000, max_age_ms = 20 }
/// [sinks.prom.request]
/// concurrency = "adaptive"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteSinkConfig {
    /// The receiver's write endpoint (Prometheus: `/api/v1/write` with
    /// `--web.enable-remote-write-receiver`).
    pub url: String,
    /// Where the read side (`[query]`, DESIGN §7) finds this backend's Prometheus
    /// HTTP API (`<query_url>/api/v1/query_range`). Default: the origin of `url`
    /// (scheme, host and port), which is right for Prometheus and VictoriaMetrics
    /// single-node.
    #[serde(default)]
    pub query_url: Option<String>,
    /// Timeout, concurrency, retry, credentials, tenant, headers, TLS.
    #[serde(default)]
    pub request: RequestConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long the backend may fail before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
    /// Send each metric family's type (and help and unit, from the registry)
    /// in the request's metadata field.
    #[serde(default = "defaults::send_metadata")]
    pub send_metadata: bool,
    /// How often a family's metadata is sent again.
    #[serde(default = "defaults::metadata_interval", with = "humantime_serde")]
    pub metadata_interval: Duration,
    /// Remote-write version sent: `"1.0"` (default), `"2.0"`, or `"auto"`
    /// (2.0, falling back to 1.0 for good when the receiver does not speak it).
    #[serde(default)]
    pub protocol: super::protocol::Protocol,
}

impl RemoteWriteSinkConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        parse_url(&self.url).map_err(|e| format!("url: {e}"))?;
        if let Some(q) = &self.query_url {
            parse_url(q).map_err(|e| format!("query_url: {e}"))?;
        }
        self.request.check(&PROTOCOL_HEADER_NAMES)
    }
}

pub mod defaults {
    use std::time::Duration;

    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
    pub fn send_metadata() -> bool {
        true
    }
    pub fn metadata_interval() -> Duration {
        Duration::from_secs(60)
    }
}
