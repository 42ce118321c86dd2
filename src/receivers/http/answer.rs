//! Answers shared by the HTTP routes of remote-write and OTLP.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::receivers::submit::SubmitError;

/// A refused submission as the sender sees it (DESIGN §3): `503` with
/// `Retry-After` for backpressure, `503` while shutting down or when a copy
/// was not delivered (`ack = "delivered"`), `504` when a
/// delivery acknowledgement timed out.
pub fn submit_error(e: SubmitError, max_wait: Duration) -> Response {
    match e {
        SubmitError::Full { .. } | SubmitError::MemoryPressure => {
            let mut resp = (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
            let retry_secs = max_wait.as_secs().max(1);
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_secs));
            resp
        }
        SubmitError::ShuttingDown { .. } | SubmitError::Undelivered { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
        SubmitError::AckTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, e.to_string()).into_response(),
    }
}
