//! The Prometheus HTTP API over any readable backend (DESIGN §7.2):
//! `/prom/<backend>/api/v1/...` on the query listener.
//!
//! - [`labels`]: `series`, `labels`, `label/<name>/values` (label discovery).

pub mod labels;
