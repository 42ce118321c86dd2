//! `GET`/form `POST` `/prom/<backend>/api/v1/query` and `.../query_range`: a
//! backend whose driver speaks the Prometheus API itself
//! ([`crate::query::backends::Driver::forward_prometheus_api`]) gets the request
//! unchanged; for the others the PromQL subset is mapped onto the graph model
//! ([`super::promql`]) and rendered by the neutral path ([`super::eval`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{envelope, eval, params};
use crate::query::backends::discovery::ApiRequest;
use crate::query::service::{QueryError, QueryService, now_ms};
use crate::telemetry::query_request;

/// The routes, merged into the query listener's router.
pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/prom/{backend}/api/v1/query", get(query).post(query))
        .route("/prom/{backend}/api/v1/query_range", get(query_range).post(query_range))
}

/// One API call: what both handlers share.
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
        let request = ApiRequest {
            post: self.form.is_some(),
            path: path.to_string(),
            query: self.query.clone(),
            form: self.form.clone().unwrap_or_default(),
        };
        let future = driver.forward_prometheus_api(&request)?;
        Some(self.service.bounded(&self.backend, future).await.map(|a| {
            let mut response =
                (StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY), a.body).into_response();
            if let Some(ct) = a.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                response.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            response
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
