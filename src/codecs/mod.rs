//! Decoders of outside bytes, shared by every receiver that carries the format.
//!
//! A receiver owns only its transport (HTTP, gRPC, Kafka, …); turning a body or a
//! message into samples happens here, once, so the same limits and the same error
//! messages apply whichever way the bytes arrived.

pub mod buffers;
pub mod intern;
pub mod limits;
pub mod line_protocol;
pub mod ndjson;
pub mod otlp;
pub mod protobuf;
pub mod remote_write;
pub mod report;
pub mod stream;
pub mod walk_vecs;
pub mod wire;
