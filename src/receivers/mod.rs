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
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            ReceiverConfig::Http(c) if c.max_body_bytes == 0 => Err("max_body_bytes must be at least 1".into()),
            ReceiverConfig::Grpc(c) if c.max_message_bytes == 0 => Err("max_message_bytes must be at least 1".into()),
            ReceiverConfig::Kafka(c) => c.check(),
            ReceiverConfig::InfluxTcp(c) => c.check(),
            ReceiverConfig::InfluxUdp(c) => c.check(),
            _ => Ok(()),
        }
    }
}
