//! The query listener's HTTP API (DESIGN §7.2): Prometheus-style JSON envelopes.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use tokio::net::TcpListener;

use super::request::{FieldError, RenderRequest};
use super::service::{QueryError, QueryService, now_ms};
use crate::telemetry::query_request;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(service: Arc<QueryService>) -> Router {
    Router::new()
        .route("/api/v1/graph/render", post(render))
        .route("/api/v1/graph/compile", post(compile))
        .route("/api/v1/graphs", get(graphs))
        .route("/api/v1/graphs/{id}", get(graph))
        .route("/api/v1/backends", get(backends))
        .route("/api/v1/catalog", get(catalog))
        .merge(super::prom::labels::routes())
        .merge(super::prom::query::routes())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

/// Serves on the shared listener layer: timeouts, connection bounds, and
/// the TLS and `read`-scope key check `options` carry. `extra` holds the
/// routes the daemon adds beside the query API (status, console).
pub async fn serve(
    listener: TcpListener,
    service: Arc<QueryService>,
    extra: Router,
    options: crate::listener::ListenerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(listener, router(service).merge(extra), options, shutdown).await
}

pub(crate) fn success(data: impl Serialize) -> Response {
    (StatusCode::OK, axum::Json(serde_json::json!({"status": "success", "data": data}))).into_response()
}

fn failure(e: &QueryError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(e.body())).into_response()
}

pub(crate) fn finish(endpoint: &'static str, started: Instant, answer: Result<Response, QueryError>) -> Response {
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            if e.status() >= 500 {
                tracing::warn!(endpoint, error = %e, "query failed");
            }
            failure(&e)
        }
    };
    query_request(endpoint, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

fn parse_body(body: &Bytes) -> Result<RenderRequest, QueryError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde names the field for unknown and missing ones; else it is the body as a whole.
        QueryError::BadRequest(FieldError { field: "body".into(), message: format!("invalid JSON request: {e}") })
    })
}

async fn render(State(s): State<Arc<QueryService>>, body: Bytes) -> Response {
    let started = Instant::now();
    let answer = async {
        let req = parse_body(&body)?;
        s.render(&req, now_ms()).await.map(success)
    }
    .await;
    finish("render", started, answer)
}

async fn compile(State(s): State<Arc<QueryService>>, body: Bytes) -> Response {
    let started = Instant::now();
    let answer = parse_body(&body).and_then(|req| s.compile(&req, now_ms())).map(success);
    finish("compile", started, answer)
}

async fn graphs(State(s): State<Arc<QueryService>>) -> Response {
    let started = Instant::now();
    let defs: Vec<_> = s.graphs().iter().map(|g| &g.def).collect();
    finish("graphs", started, Ok(success(defs)))
}

async fn graph(State(s): State<Arc<QueryService>>, Path(id): Path<String>) -> Response {
    let started = Instant::now();
    let answer = s.graphs().get(&id).map(|g| success(&g.def)).ok_or(QueryError::NotFound { what: "graph", name: id });
    finish("graphs", started, answer)
}

async fn backends(State(s): State<Arc<QueryService>>) -> Response {
    let started = Instant::now();
    finish("backends", started, Ok(success(s.backends())))
}

async fn catalog(State(s): State<Arc<QueryService>>) -> Response {
    let started = Instant::now();
    let answer = super::catalog::catalog(&s).await;
    finish("catalog", started, Ok(success(answer)))
}
