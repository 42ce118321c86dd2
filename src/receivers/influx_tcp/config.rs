use std::net::SocketAddr;

use serde::Deserialize;

use crate::codecs::line_protocol::{Precision, UnknownPrecision};

/// `type = "influx_tcp"`: InfluxDB line protocol over plain TCP, one point a
/// line (as Telegraf's `socket_writer` and InfluxDB's own TCP listeners take it).
///
/// ```toml
/// [receivers.lp_tcp]
/// type = "influx_tcp"
/// listen = "127.0.0.1:8094"
/// precision = "ns"
/// tls = { cert_file = "server.pem", key_file = "server.key" }
/// auth = "none"   # required once [auth] keys_file is set: this transport carries no key
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxTcpReceiverConfig {
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Unit of timestamps: `ns` (default), `us`, `ms`, `s`, `m`, `h`.
    #[serde(default = "defaults::precision")]
    pub precision: String,
    /// Longest line; a longer one is skipped up to its newline (`parse_error`).
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: usize,
    /// Most connections served at once; more wait in the kernel's backlog.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// TLS (and with `client_ca_file` mutual TLS: only holders of a
    /// certificate signed by that CA may connect) on this listener.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// Plain line protocol carries no API key: this receiver is
    /// unauthenticated. Once `[auth] keys_file` is set it must be opted in
    /// with `auth = "none"` (the config is refused otherwise); `"required"`
    /// is refused. Restrict who may connect with mutual TLS or the network.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthMode>,
}

pub mod defaults {
    use std::net::SocketAddr;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8094))
    }
    pub fn precision() -> String {
        "ns".into()
    }
    pub fn max_line_bytes() -> usize {
        64 * 1024
    }
    pub fn max_connections() -> usize {
        256
    }
}

impl InfluxTcpReceiverConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        self.precision()?;
        if self.max_line_bytes == 0 || self.max_connections == 0 {
            return Err("max_line_bytes and max_connections must be at least 1".into());
        }
        Ok(())
    }

    pub fn precision(&self) -> Result<Precision, String> {
        self.precision.parse().map_err(|e: UnknownPrecision| format!("precision: {e}"))
    }
}
