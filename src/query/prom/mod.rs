//! The Prometheus HTTP API over every readable backend (DESIGN §7.2,
//! docs/prometheus-api.md): `/prom/<backend>/api/v1/...` on the query listener.
//!
//! A backend whose driver speaks the Prometheus API itself
//! ([`crate::query::backends::Driver::forward_prometheus`]) gets every request
//! unchanged; for the others a PromQL subset is mapped onto the graph model
//! ([`promql`]) and rendered by the neutral path ([`eval`]).
//!
//! - [`params`]: `query`, `time`, `start`, `end`, `step`, `timeout` in Prometheus' formats;
//! - [`envelope`]: the success and error envelopes, values as strings;
//! - [`promql`]: parse (`promql-parser`) and map the subset;
//! - [`eval`]: `query` and `query_range` through [`QueryService`].

pub mod envelope;
pub mod eval;
pub mod params;
pub mod promql;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::query::backends::{BackendError, ForwardRequest};
use crate::query::service::{QueryError, QueryService, now_ms};
use crate::telemetry::query_request;

/// The routes, for [`crate::query::api::router`] to merge.
pub fn router(service: Arc<QueryService>) -> Router {
    Router::new()
        .route("/prom/{backend}/api/v1/query", get(query).post(query))
        .route("/prom/{backend}/api/v1/query_range", get(query_range).post(query_range))
        .layer(axum::extract::DefaultBodyLimit::max(super::api::MAX_BODY_BYTES))
        .with_state(service)
}

/// One API call of a request: what the handlers share.
struct Call {
    service: Arc<QueryService>,
    backend: String,
    query: Option<String>,
    /// The form body of a `POST`.
    form: Option<Bytes>,
}

impl Call {
    fn params(&self) -> params::Params {
        params::Params::parse(self.query.as_deref(), self.form.as_deref())
    }

    /// Passes the request through when the backend speaks the Prometheus API.
    async fn forward(&self, path: &str) -> Option<Result<Response, QueryError>> {
        let driver = match self.service.driver(&self.backend) {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        let request = ForwardRequest { path: path.to_string(), query: self.query.clone(), form: self.form.clone() };
        let future = driver.forward_prometheus(&request)?;
        let timeout = self.service.config().timeout;
        let answer = match tokio::time::timeout(timeout, future).await {
            Err(_) => Err(QueryError::Backend(BackendError::Timeout { backend: self.backend.clone(), after: timeout })),
            Ok(r) => r.map_err(QueryError::Backend),
        };
        Some(answer.map(|a| {
            let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let content_type = a.content_type.unwrap_or_else(|| "application/json".into());
            (status, [(header::CONTENT_TYPE, content_type)], a.body).into_response()
        }))
    }
}

fn call(service: Arc<QueryService>, backend: String, method: &Method, query: Option<String>, body: Bytes) -> Call {
    Call { service, backend, query, form: (method == Method::POST).then_some(body) }
}

fn finish(endpoint: &'static str, started: Instant, answer: Result<Response, QueryError>) -> Response {
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            if envelope::status_and_type(&e).0 >= 500 {
                tracing::warn!(endpoint, error = %e, "prometheus api query failed");
            }
            envelope::failure(&e)
        }
    };
    query_request(endpoint, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn query(
    State(service): State<Arc<QueryService>>,
    Path(backend): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let c = call(service, backend, &method, q, body);
    let answer = match c.forward("/api/v1/query").await {
        Some(r) => r,
        None => eval::instant(&c.service, &c.backend, &c.params(), now_ms())
            .await
            .map(|a| envelope::success(a.data, a.warnings)),
    };
    finish("prom_query", started, answer)
}

async fn query_range(
    State(service): State<Arc<QueryService>>,
    Path(backend): Path<String>,
    method: Method,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let c = call(service, backend, &method, q, body);
    let answer = match c.forward("/api/v1/query_range").await {
        Some(r) => r,
        None => eval::range(&c.service, &c.backend, &c.params()).await.map(|a| envelope::success(a.data, a.warnings)),
    };
    finish("prom_query_range", started, answer)
}
