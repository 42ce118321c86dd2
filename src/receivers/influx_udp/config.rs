use std::net::SocketAddr;

use serde::Deserialize;

use crate::codecs::line_protocol::{Precision, UnknownPrecision};

/// `type = "influx_udp"`: InfluxDB line protocol in UDP datagrams (collectd's
/// `write_influxdb_udp`, Telegraf's `socket_writer` over UDP).
///
/// ```toml
/// [receivers.lp_udp]
/// type = "influx_udp"
/// listen = "127.0.0.1:8089"
/// precision = "ms"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxUdpReceiverConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Unit of timestamps: `ns` (default), `us`, `ms`, `s`, `m`, `h`.
    #[serde(default = "defaults::precision")]
    pub precision: String,
    /// Largest datagram taken; a larger one is dropped whole (`parse_error`).
    #[serde(default = "defaults::max_datagram_bytes")]
    pub max_datagram_bytes: usize,
    /// Datagrams decoded into one batch at most (those already waiting).
    #[serde(default = "defaults::max_batch_datagrams")]
    pub max_batch_datagrams: usize,
    /// How long a batch may wait for room in a full ingest queue before its
    /// samples are dropped (`queue_full`): UDP cannot push back.
    #[serde(default = "defaults::max_wait_ms")]
    pub max_wait_ms: u64,
    /// UDP datagrams carry no API key and no TLS: this receiver is
    /// unauthenticated. Once `[auth] keys_file` is set it must be opted in
    /// with `auth = "none"` (the config is refused otherwise); `"required"`
    /// is refused. Restrict who may send with the network.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthMode>,
}

pub mod defaults {
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8089))
    }
    pub fn precision() -> String {
        "ns".into()
    }
    pub fn max_datagram_bytes() -> usize {
        65_507
    }
    pub fn max_batch_datagrams() -> usize {
        256
    }
    pub fn max_wait_ms() -> u64 {
        50
    }
}

impl InfluxUdpReceiverConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        self.precision()?;
        if self.max_datagram_bytes == 0 || self.max_datagram_bytes > 65_535 {
            return Err("max_datagram_bytes must be between 1 and 65535".into());
        }
        if self.max_batch_datagrams == 0 {
            return Err("max_batch_datagrams must be at least 1".into());
        }
        Ok(())
    }

    pub fn precision(&self) -> Result<Precision, String> {
        self.precision.parse().map_err(|e: UnknownPrecision| format!("precision: {e}"))
    }
}
