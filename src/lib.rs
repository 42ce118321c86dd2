//! tsrelay: a streaming ingestion daemon in front of several time-series databases.
//! See DESIGN.md (shared) for the architecture; module map:
//! receivers → pipeline → queue → sinks, with config, model and telemetry beside them.

pub mod model;
pub mod receivers;
