//! Which remote-write version the sink sends (`protocol = "1.0" | "2.0" |
//! "auto"`), and the request that carries its version along.
//!
//! `auto` sends 2.0 until the receiver shows it does not speak it — it
//! answers `415`, or it answers success without the
//! `X-Prometheus-Remote-Write-Samples-Written` header every 2.0 receiver sends
//! (a 1.0 receiver such as Prometheus 2.x ignores the content type and reads
//! a 2.0 body as an empty 1.0 request) — then resends that request as 1.0 and
//! sends 1.0 from then on (remembered by every lane of the sink).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use serde::Deserialize;

use super::encode::RemoteWriteEncoder;
use super::encode_v2::V2Encoder;
use crate::sinks::SinkBatch;
use crate::sinks::common::{Encode, Encoded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "1.0")]
    V1,
    #[serde(rename = "2.0")]
    V2,
    #[serde(rename = "auto")]
    Auto,
}

/// Shared by a sink's encoders and services: has `auto` fallen back to 1.0?
#[derive(Debug, Clone, Default)]
pub struct Negotiated(Arc<AtomicBool>);

impl Negotiated {
    pub fn fell_back(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn fall_back(&self) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::warn!("remote-write receiver does not speak 2.0: sending 1.0 from now on (protocol = \"auto\")");
        }
    }
}

/// One encoded request and what the service needs to check its answer.
#[derive(Debug, Clone)]
pub struct RwRequest {
    pub body: Bytes,
    pub v2: bool,
    pub samples: usize,
}

/// The sink's encoder: 1.0 (hand-written, fast) or 2.0, as negotiated.
pub struct ProtocolEncoder {
    v1: RemoteWriteEncoder,
    v2: V2Encoder,
    protocol: Protocol,
    negotiated: Negotiated,
}

impl ProtocolEncoder {
    pub fn new(v1: RemoteWriteEncoder, protocol: Protocol, negotiated: Negotiated) -> Self {
        ProtocolEncoder { v1, v2: V2Encoder, protocol, negotiated }
    }

    fn sends_v2(&self) -> bool {
        match self.protocol {
            Protocol::V1 => false,
            Protocol::V2 => true,
            Protocol::Auto => !self.negotiated.fell_back(),
        }
    }
}

impl Encode for ProtocolEncoder {
    type Request = RwRequest;

    fn encode(&mut self, batch: &SinkBatch) -> Encoded<RwRequest> {
        if !self.sends_v2() {
            let encoded = match self.v1.encode_body(batch.samples_with_hash(), Instant::now()) {
                Ok((body, summary)) => Ok((body, summary.samples, summary.unrepresentable)),
                Err(e) => Err(e),
            };
            return finish(encoded, batch.len(), false);
        }
        let encoded =
            self.v2.encode(batch.samples_with_hash()).map(|(b, s)| (Bytes::from(b), s.samples, s.unrepresentable));
        finish(encoded, batch.len(), true)
    }
}

fn finish(encoded: Result<(Bytes, usize, usize), snap::Error>, len: usize, v2: bool) -> Encoded<RwRequest> {
    match encoded {
        Ok((body, samples, unrepresentable)) => Encoded {
            request: (samples > 0).then_some(RwRequest { body, v2, samples }),
            unrepresentable,
            problem: (unrepresentable > 0).then(|| "series with a repeated label name or without labels".to_string()),
        },
        Err(e) => Encoded {
            request: None,
            unrepresentable: len,
            problem: Some(format!("cannot compress a {len}-sample request: {e}")),
        },
    }
}
