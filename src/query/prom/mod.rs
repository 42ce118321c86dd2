//! The Prometheus HTTP API over any readable backend (DESIGN §7.2):
//! `/prom/<backend>/api/v1/...` on the query listener.
//!
//! - [`labels`]: `series`, `labels`, `label/<name>/values` (label discovery);
//! - [`query`]: `query` and `query_range` (docs/prometheus-api.md): passthrough
//!   to a backend that speaks the API, else the PromQL subset through
//!   [`promql`] (parse and map onto the graph model) and [`eval`] (render,
//!   answer as `vector`/`matrix`/`scalar`), parameters read by [`params`],
//!   answers shaped by [`envelope`].

pub mod envelope;
pub mod eval;
pub mod labels;
pub mod params;
pub mod promql;
pub mod query;
