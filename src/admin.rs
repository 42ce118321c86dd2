//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`,
//! the discovery API (`/api/v1/...`, see [`crate::query::discovery`]) and
//! `/api/v1/status` ([`crate::status`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::query::discovery::Discovery;
use crate::telemetry::Health;

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    health: Health,
}

pub fn router(prometheus: PrometheusHandle, health: Health, discovery: Arc<Discovery>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { prometheus, health: health.clone() })
        .merge(crate::query::discovery::router(discovery))
        .merge(crate::status::router(health))
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], s.prometheus.render())
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let report = s.health.report();
    let status = if report.ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report))
}

pub async fn serve(
    listener: TcpListener,
    prometheus: PrometheusHandle,
    health: Health,
    discovery: Arc<Discovery>,
    options: crate::listener::ListenerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(listener, router(prometheus, health, discovery), options, shutdown).await
}
