//! tsrelay: a streaming ingestion daemon in front of several time-series databases.
//!
//! Data flows one way: [`receivers`] → [`pipeline`] → [`queue`] → [`sinks`].
//! [`config`] assembles the components' settings, [`model`] is the neutral
//! data they exchange, [`telemetry`] holds every metric name, [`daemon`] wires it all.

pub mod admin;
pub mod auth;
pub mod codecs;
pub mod config;
pub mod console;
pub mod daemon;
pub mod librdkafka;
pub mod limits;
pub mod listener;
pub mod model;
pub mod pipeline;
pub mod proto;
pub mod query;
pub mod queue;
pub mod receivers;
pub mod registry;
pub mod sinks;
pub mod status;
pub mod telemetry;
#[cfg(test)]
mod test_rng;
pub mod tls;
pub mod top;
