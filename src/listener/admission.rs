//! Admission in front of a receiver, before its body is read: refuse while
//! memory is above the high-water mark, and bound the requests handled at
//! once (`max_concurrent_requests`), each of which may hold a whole body.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::body::WithGuard;
use super::conn::is_grpc;
use crate::limits::MemoryPressure;
use crate::telemetry::{AdmissionMetrics, ReceiverMetrics};

/// One receiver's admission control; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    max: usize,
    /// How long a request may wait for a permit (the receiver's `max_wait_ms`).
    wait: Duration,
    pressure: MemoryPressure,
    receiver: ReceiverMetrics,
    metrics: AdmissionMetrics,
}

/// Why a request was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("tsrelay is above its memory high-water mark (limits.memory_bytes); retry later")]
    MemoryPressure,
    #[error("{max} requests already in progress (max_concurrent_requests) for {waited:?}; retry later")]
    Busy { max: usize, waited: Duration },
}

/// Held while a request is handled; its answer's body keeps it.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    metrics: AdmissionMetrics,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
    }
}

impl Admission {
    pub fn new(
        max_concurrent_requests: usize,
        wait: Duration,
        pressure: MemoryPressure,
        receiver: ReceiverMetrics,
    ) -> Self {
        let max = max_concurrent_requests.max(1);
        let metrics = AdmissionMetrics::new(&receiver.name);
        Admission {
            inner: Arc::new(Inner { permits: Arc::new(Semaphore::new(max)), max, wait, pressure, receiver, metrics }),
        }
    }

    /// Admits one request or says why not; nothing of its body is read yet.
    pub async fn admit(&self) -> Result<Admitted, Refusal> {
        let i = &self.inner;
        if i.pressure.is_high() {
            i.receiver.requests_rejected_memory.increment(1);
            return Err(Refusal::MemoryPressure);
        }
        let permit = match i.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout(i.wait, i.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    i.metrics.busy_rejections.increment(1);
                    return Err(Refusal::Busy { max: i.max, waited: i.wait });
                }
            },
        };
        i.metrics.in_flight.increment(1.0);
        Ok(Admitted { _permit: permit, metrics: i.metrics.clone() })
    }

    /// Seconds a refused sender should wait.
    fn retry_after(&self) -> u64 {
        self.inner.wait.as_secs().max(1)
    }

    /// The refusal as an answer: `503` with `Retry-After`, or gRPC
    /// `RESOURCE_EXHAUSTED` with a `retry-after-ms` hint.
    pub fn refusal_response(&self, refusal: &Refusal, grpc: bool) -> Response {
        if grpc {
            let mut status = tonic::Status::resource_exhausted(refusal.to_string());
            let ms = self.inner.wait.as_millis().max(100).to_string();
            if let Ok(v) = ms.parse() {
                status.metadata_mut().insert("retry-after-ms", v);
            }
            return status.into_http::<Body>();
        }
        let mut resp =
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": refusal.to_string() })))
                .into_response();
        if let Ok(v) = HeaderValue::from_str(&self.retry_after().to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// The middleware: `router.layer(axum::middleware::from_fn_with_state(admission, Admission::layer))`.
    /// The permit is held until the answer is sent (for a gRPC stream, until it ends).
    pub async fn layer(
        axum::extract::State(admission): axum::extract::State<Admission>,
        req: Request,
        next: Next,
    ) -> Response {
        let grpc = is_grpc(req.headers());
        match admission.admit().await {
            Ok(admitted) => next.run(req).await.map(|b| Body::new(WithGuard::new(b, admitted))),
            Err(refusal) => admission.refusal_response(&refusal, grpc),
        }
    }
}
