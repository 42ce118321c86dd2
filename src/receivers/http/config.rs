use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::listener::{TimeoutsConfig, defaults as listener_defaults};
use crate::receivers::submit::{AckMode, defaults as submit_defaults};
use crate::tls::TlsConfig;

/// `type = "http"`: InfluxDB line protocol (`/write`, `/api/v2/write`) and
/// NDJSON (`/api/v1/ingest`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpReceiverConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Largest request body, after gunzip too; larger bodies get `413`.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// How long a request may wait for room in a full ingest queue before `503`.
    #[serde(default = "submit_defaults::max_wait_ms")]
    pub max_wait_ms: u64,
    /// Answer when accepted (default) or when delivered.
    #[serde(default)]
    pub ack: AckMode,
    /// With `ack = "delivered"`: how long to wait before `504`.
    #[serde(default = "submit_defaults::ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Requests handled at once; more wait up to `max_wait_ms` for a turn,
    /// then get `503` / `RESOURCE_EXHAUSTED`. Each may hold a whole body
    /// (counted in the start-up memory budget).
    #[serde(default = "listener_defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Open connections at once; beyond it new ones wait in the accept backlog.
    #[serde(default = "listener_defaults::max_connections")]
    pub max_connections: usize,
    /// Header, body, idle, request and HTTP/2 keep-alive timeouts, connection age.
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// TLS (and with `client_ca_file` mutual TLS) on this listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How OTLP metrics become series (`[receivers.<name>.otlp]`, docs/otlp.md).
    #[serde(default)]
    pub otlp: crate::codecs::otlp::OtlpConfig,
}

pub mod defaults {
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8186))
    }
    pub fn max_body_bytes() -> usize {
        32 * 1024 * 1024
    }
}
