//! The read side (DESIGN §7): graphs defined once against the metric registry,
//! rendered from any readable backend with the same result.
//!
//! Layout (arrows point downstream, nothing backend-specific above `backends/`):
//! - [`model`]: graph definitions as written (YAML/JSON), functions, matchers;
//! - [`grid`]: the aligned time grid of a render;
//! - [`plan`]: a series validated against the registry — what drivers compile;
//! - [`result`]: the normalized answer (dense grid, `null` for empty buckets);
//! - [`validate`]: definitions checked against the registry → plans;
//! - [`normalize`]: raw driver output → the normalized answer (reference semantics);
//! - [`request`], [`service`], [`api`]: the render request, its orchestration
//!   (every 4xx decided before backend I/O) and the HTTP API of `[query] listen`;
//! - [`graphs`], [`config`]: stored graphs (`graphs_dir`) and `[query]`;
//! - [`prom`]: the Prometheus HTTP API over any backend (`/prom/<backend>/...`);
//! - [`catalog`]: `GET /api/v1/catalog`, the registry with what each backend holds;
//! - [`backends`]: the driver contract ([`backends::Driver`], capabilities,
//!   [`backends::RawResult`]) and one folder per backend.

pub mod api;
pub mod backends;
pub mod catalog;
pub mod config;
pub mod discovery;
pub mod format;
pub mod graphs;
pub mod grid;
pub mod model;
pub mod normalize;
pub mod plan;
pub mod prom;
pub mod request;
pub mod result;
pub mod service;
pub mod validate;

pub use backends::{BackendError, Capabilities, Compiled, Driver, RawForm, RawResult, RawSeries, Unsupported};
pub use grid::TimeGrid;
pub use model::{Across, Function, GraphDef, GraphFile, MatchOp, Matcher, SeriesDef};
pub use plan::SeriesPlan;
pub use result::{RenderResult, ResultSeries};
pub use service::{QueryError, QueryService};
