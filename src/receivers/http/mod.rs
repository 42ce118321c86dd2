//! The HTTP receiver: line protocol, NDJSON, Prometheus remote-write and
//! OTLP/HTTP metrics in (DESIGN §4).

mod answer;
mod body;
mod config;
mod decode;
mod otlp;
mod remote_write;

mod server;

pub use config::HttpReceiverConfig;
pub use server::{open_paths, router, serve};
