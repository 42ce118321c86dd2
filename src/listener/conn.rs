//! What a handler may learn about its connection, and the answers the
//! listener itself gives.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::telemetry::TimeoutKind;
use crate::tls::ClientCert;

/// Inserted into every request's extensions by the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The verified client certificate under mutual TLS.
    pub client: Option<Arc<ClientCert>>,
}

/// Whether a request is gRPC (its answers are gRPC statuses, not HTTP codes).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The answer when the listener cut a request short.
pub fn timeout_response(kind: TimeoutKind, limit: Duration, grpc: bool) -> Response {
    let key = kind.as_str();
    if grpc {
        let status = tonic::Status::deadline_exceeded(format!("not answered within {limit:?} (timeouts.{key})"));
        return status.into_http::<Body>();
    }
    let (code, message) = match kind {
        TimeoutKind::BodyRead => {
            (StatusCode::REQUEST_TIMEOUT, format!("request body not received within {limit:?} (timeouts.{key})"))
        }
        _ => (StatusCode::SERVICE_UNAVAILABLE, format!("request not answered within {limit:?} (timeouts.{key})")),
    };
    let mut resp = (code, axum::Json(serde_json::json!({ "error": message }))).into_response();
    // The rest of a half-read body is not worth reading: close.
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    if code == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}
