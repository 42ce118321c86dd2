//! The admin endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::telemetry::Health;

#[derive(Clone)]
struct AdminState {
    prometheus: PrometheusHandle,
    health: Health,
}

pub fn router(prometheus: PrometheusHandle, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { prometheus, health })
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
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(prometheus, health)).with_graceful_shutdown(shutdown).await
}
