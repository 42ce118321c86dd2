//! OTLP metrics (`opentelemetry.proto.collector.metrics.v1`) → samples, for
//! the gRPC `MetricsService/Export` and `POST /v1/metrics` (protobuf or JSON).
//! Decoding is here; the translation to Prometheus-style series is in
//! [`translate`], with its settings in [`config`].

pub mod config;
pub mod json;
pub mod names;
pub mod translate;

pub use config::{DeltaPolicy, OtlpConfig};
pub use translate::{TooManySamples, Translated, Translator};

use prost::Message;

use crate::proto::opentelemetry::proto::collector::metrics::v1::ExportMetricsServiceRequest;

pub const MESSAGE: &str = "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest";

/// Why a request body cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("invalid {MESSAGE} protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid {MESSAGE} JSON: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn decode_protobuf(body: &[u8]) -> Result<ExportMetricsServiceRequest, DecodeError> {
    Ok(ExportMetricsServiceRequest::decode(body)?)
}

pub fn decode_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, DecodeError> {
    Ok(serde_json::from_slice(body)?)
}
