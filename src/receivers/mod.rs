//! Receivers turn what senders push into the neutral model and hand it to
//! their pipeline; nothing downstream knows which receiver a sample came from.

pub mod grpc;
pub mod http;
pub mod influx_tcp;
pub mod influx_udp;
pub mod kafka;
pub mod submit;

use serde::Deserialize;

/// `[receivers.<name>]`, selected by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReceiverConfig {
    Http(http::HttpReceiverConfig),
    Grpc(grpc::GrpcReceiverConfig),
    Kafka(kafka::KafkaReceiverConfig),
    InfluxTcp(influx_tcp::InfluxTcpReceiverConfig),
    InfluxUdp(influx_udp::InfluxUdpReceiverConfig),
}

impl ReceiverConfig {
    /// The `auth` setting of an HTTP or gRPC receiver; `None` for receivers
    /// whose protocol carries no credentials (Kafka, line protocol over TCP/UDP).
    pub fn auth(&self) -> Option<Option<crate::auth::AuthMode>> {
        match self {
            ReceiverConfig::Http(c) => Some(c.auth),
            ReceiverConfig::Grpc(c) => Some(c.auth),
            ReceiverConfig::Kafka(_) | ReceiverConfig::InfluxTcp(_) | ReceiverConfig::InfluxUdp(_) => None,
        }
    }

    /// For a receiver whose transport carries no key (line protocol over TCP
    /// or UDP): refuses `auth = "required"`, and, once `[auth] keys_file` is
    /// set, an `auth` left unset: such a receiver is open to anyone who can
    /// reach it, so the config must say so (`auth = "none"`).
    pub(crate) fn check_unauthenticated(&self, keys_configured: bool) -> Result<(), String> {
        let (kind, mode) = match self {
            ReceiverConfig::InfluxTcp(c) => ("influx_tcp", c.auth),
            ReceiverConfig::InfluxUdp(c) => ("influx_udp", c.auth),
            ReceiverConfig::Http(_) | ReceiverConfig::Grpc(_) | ReceiverConfig::Kafka(_) => return Ok(()),
        };
        match mode {
            Some(crate::auth::AuthMode::Required) => Err(format!(
                "auth = \"required\" is impossible on an {kind} receiver: line protocol over a socket carries \
                 no API key; set auth = \"none\" and restrict who can connect (mutual TLS on influx_tcp, the network)"
            )),
            None if keys_configured => Err(format!(
                "[auth] keys_file is set, but an {kind} receiver cannot check keys (its transport carries none): \
                 set auth = \"none\" on it to accept unauthenticated writes explicitly, or remove it"
            )),
            _ => Ok(()),
        }
    }

    /// The bodies of the requests a network receiver handles at once, for the
    /// start-up memory budget (`max_concurrent_requests` × the largest body).
    /// What a body decodes into is bounded by the decoders' per-request
    /// limits, and the RSS high-water mark guards the rest at run time.
    pub fn requests_in_progress_bytes(&self) -> Option<(String, u64)> {
        let (n, max, key) = match self {
            ReceiverConfig::Http(c) => (c.max_concurrent_requests, c.max_body_bytes, "max_body_bytes"),
            ReceiverConfig::Grpc(c) => (c.max_concurrent_requests, c.max_message_bytes, "max_message_bytes"),
            ReceiverConfig::Kafka(_) | ReceiverConfig::InfluxTcp(_) | ReceiverConfig::InfluxUdp(_) => return None,
        };
        let what = format!("requests in progress ({n} × {key} {max})");
        Some((what, (n as u64).saturating_mul(max as u64)))
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            ReceiverConfig::Http(c) if c.max_body_bytes == 0 => Err("max_body_bytes must be at least 1".into()),
            ReceiverConfig::Grpc(c) if c.max_message_bytes == 0 => Err("max_message_bytes must be at least 1".into()),
            ReceiverConfig::Http(c) if c.max_connections == 0 || c.max_concurrent_requests == 0 => {
                Err("max_connections and max_concurrent_requests must be at least 1".into())
            }
            ReceiverConfig::Grpc(c) if c.max_connections == 0 || c.max_concurrent_requests == 0 => {
                Err("max_connections and max_concurrent_requests must be at least 1".into())
            }
            ReceiverConfig::Http(c) => c.timeouts.check(),
            ReceiverConfig::Grpc(c) => c.timeouts.check(),
            ReceiverConfig::Kafka(c) => c.check(),
            ReceiverConfig::InfluxTcp(c) => c.check(),
            ReceiverConfig::InfluxUdp(c) => c.check(),
        }
    }
}
