//! What every network sink shares (DESIGN §2, §5): request settings
//! ([`config`]), the answer rules ([`classify`]), the HTTP client ([`http`]),
//! and a tower stack written once —
//!
//! ```text
//! NetworkSink (one per lane: encode once) → Retry (backon, full jitter, Retry-After, budget)
//!   → ConcurrencyLimit (fixed | adaptive AIMD; in-flight + duration metrics) → Timeout → the sink's service
//! ```
//!
//! A sink provides two things: an [`Encode`] (batch → request value, reusing
//! its buffers) and a `tower::Service<Request, Response = (), Error = SendError>`
//! that sends one attempt and classifies the answer. [`network_lanes`] turns
//! them into the lanes [`crate::sinks::run_worker`] drives: the worker shards
//! samples over lanes by series hash, and each lane sends one request at a
//! time, so no two requests in flight carry the same series and per-series
//! order survives concurrency and retries.

pub mod classify;
pub mod concurrency;
pub mod config;
pub mod http;
pub mod log_throttle;
pub mod retry;
pub mod timeout;

use std::sync::Arc;

use tower::{Layer, Service};

pub use classify::SendError;
pub use concurrency::{ConcurrencyLayer, ConcurrencyLimit, Limiter};
pub use config::{AuthConfig, Concurrency, RequestConfig, RetryConfig, TlsConfig};
pub use http::{HttpSetupError, HttpTarget, USER_AGENT_VALUE};
pub use retry::{Retry, RetryBudget, RetryLayer, RetryPolicy};
pub use timeout::{Timeout, TimeoutLayer};

use super::{Delivery, Sink, SinkBatch, SinkError};
use crate::telemetry::{SinkHealth, SinkMetrics};

/// What the layers of one sink report to: its name, metrics and health entry.
#[derive(Clone)]
pub struct SinkContext {
    pub name: Arc<str>,
    pub metrics: SinkMetrics,
    pub health: SinkHealth,
}

impl SinkContext {
    pub fn new(name: &str, metrics: SinkMetrics, health: SinkHealth) -> Self {
        SinkContext { name: name.into(), metrics, health }
    }
}

/// Turns a batch into one request. Called once per batch: retries reuse the
/// result, so `Request` should be cheap to clone (`bytes::Bytes`).
pub trait Encode: Send + 'static {
    type Request: Clone + Send + 'static;

    fn encode(&mut self, batch: &SinkBatch) -> Encoded<Self::Request>;
}

/// An encoded batch: the request (`None` when no sample could be encoded)
/// and how many samples the backend's format cannot hold, and why.
#[derive(Debug)]
pub struct Encoded<R> {
    pub request: Option<R>,
    pub unrepresentable: usize,
    pub problem: Option<String>,
}

/// The shared layers around a sink's service.
pub type Stack<S> = Retry<ConcurrencyLimit<Timeout<S>>>;

/// Wraps `service` in retry · concurrency · timeout per `request`.
/// `retry_forever` lifts `max_retry_duration` (set it for disk queues).
/// Clones of the result share one concurrency limit.
pub fn stack<S>(service: S, request: &RequestConfig, retry_forever: bool, context: &SinkContext) -> Stack<S> {
    let limiter = Limiter::new(request.concurrency, request.max_concurrency, context.clone());
    let retry = RetryLayer::new(RetryPolicy::new(&request.retry, retry_forever), context.clone());
    retry.layer(ConcurrencyLayer::new(limiter).layer(TimeoutLayer::new(request.timeout).layer(service)))
}

/// One lane of a network sink: its own encoder (and buffers), a clone of the shared stack.
pub struct NetworkSink<E, S> {
    encoder: E,
    service: S,
    context: SinkContext,
}

/// The lanes of a network sink, `request.max_in_flight()` of them, each with
/// an encoder from `new_encoder` and a clone of `service` (usually a [`Stack`]).
pub fn network_lanes<E, S>(
    request: &RequestConfig,
    mut new_encoder: impl FnMut() -> E,
    service: S,
    context: &SinkContext,
) -> Vec<NetworkSink<E, S>>
where
    S: Clone,
{
    (0..request.max_in_flight())
        .map(|_| NetworkSink { encoder: new_encoder(), service: service.clone(), context: context.clone() })
        .collect()
}

impl<E, S> Sink for NetworkSink<E, S>
where
    E: Encode,
    S: Service<E::Request, Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
{
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        let total = batch.len();
        let sink = self.context.name.to_string();
        let Encoded { request, unrepresentable, problem } = self.encoder.encode(batch);
        let unrepresentable_error = |count| SinkError::Unrepresentable {
            sink: sink.clone(),
            count,
            message: problem.clone().unwrap_or_else(|| "not representable in this backend's format".into()),
        };
        let Some(request) = request else {
            return Delivery::none(total, unrepresentable_error(total));
        };
        let mut service = self.service.clone();
        let result = async {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        }
        .await;
        match result {
            Ok(_) if unrepresentable == 0 => Delivery::all(total),
            Ok(_) => {
                Delivery::partial(total - unrepresentable, unrepresentable, unrepresentable_error(unrepresentable))
            }
            Err(e @ SendError::Rejected { .. }) => {
                if e.is_configuration_problem() {
                    self.context.health.failed(&e.to_string());
                } else {
                    // The backend answered: it is up, only this data is refused.
                    self.context.health.succeeded();
                }
                Delivery::none(total, SinkError::Rejected { sink, message: e.to_string() })
            }
            Err(e) => Delivery::none(total, SinkError::RetryExhausted { sink, message: e.to_string() }),
        }
    }
}
