//! The HTTP receiver: line protocol and NDJSON in (DESIGN §4).

mod config;
mod decode;

mod server;

pub use config::HttpReceiverConfig;
pub use server::{open_paths, router, serve};
