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
pub use retry::{Retry, RetryBudget, RetryLayer, RetryPolicy, run_with_retries};
pub use timeout::{Timeout, TimeoutLayer};

use super::{Delivery, Sink, SinkBatch, SinkError};
use crate::telemetry::{SinkHealth, SinkMetrics};
use log_throttle::LogThrottle;

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

    /// Splits a request the backend found too large ([`SendError::TooLarge`])
    /// into two halves that together carry its samples, each with its sample
    /// count. `None` (the default) when the format cannot be split or the
    /// request holds a single sample: then its samples count as rejected.
    fn split(&mut self, _request: &Self::Request) -> Option<[(Self::Request, usize); 2]> {
        None
    }
}

/// What a successful answer says about the samples of its request. Most
/// backends write all or nothing (`()`); some write part of a request and
/// refuse the rest (InfluxDB's partial write).
pub trait Written: Send + 'static {
    /// How many samples the backend refused although it answered success, and its message.
    fn refused(&self) -> Option<(usize, &str)>;
}

impl Written for () {
    fn refused(&self) -> Option<(usize, &str)> {
        None
    }
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

/// Encoders shared by the lanes of one sink. Encoding is synchronous, so no
/// more encoders exist than requests were ever encoded at the same time (at
/// most one per runtime thread), not one per lane: each holds request-sized
/// buffers (a few MiB for a 10,000-sample remote-write request), and a sink
/// has up to `max_concurrency` lanes.
struct EncoderPool<E> {
    idle: parking_lot::Mutex<Vec<E>>,
    new_encoder: Box<dyn Fn() -> E + Send + Sync>,
}

impl<E> EncoderPool<E> {
    /// Runs `f` with an idle encoder (a new one if none is idle), then keeps it for the next call.
    fn with<T>(&self, f: impl FnOnce(&mut E) -> T) -> T {
        let idle = self.idle.lock().pop();
        let mut encoder = idle.unwrap_or_else(|| (self.new_encoder)());
        let out = f(&mut encoder);
        self.idle.lock().push(encoder);
        out
    }
}

/// One lane of a network sink: a clone of the shared stack; encoders come
/// from the sink's shared pool.
pub struct NetworkSink<E, S> {
    encoders: Arc<EncoderPool<E>>,
    service: S,
    context: SinkContext,
    /// For refusals not reported as the batch's main failure (the worker logs that one).
    refusal_log: Arc<LogThrottle>,
}

/// How the samples of one batch ended, over the pieces a 413 split it into.
#[derive(Default)]
struct Outcomes {
    written: usize,
    rejected: usize,
    rejection: Option<String>,
    exhausted: usize,
    failure: Option<String>,
}

/// The lanes of a network sink, `request.max_in_flight()` of them, each with
/// a clone of `service` (usually a [`Stack`]), sharing encoders made by `new_encoder`.
pub fn network_lanes<E, S>(
    request: &RequestConfig,
    new_encoder: impl Fn() -> E + Send + Sync + 'static,
    service: S,
    context: &SinkContext,
) -> Vec<NetworkSink<E, S>>
where
    S: Clone,
{
    let refusal_log = Arc::new(LogThrottle::default());
    let encoders =
        Arc::new(EncoderPool { idle: parking_lot::Mutex::new(Vec::new()), new_encoder: Box::new(new_encoder) });
    (0..request.max_in_flight())
        .map(|_| NetworkSink {
            encoders: encoders.clone(),
            service: service.clone(),
            context: context.clone(),
            refusal_log: refusal_log.clone(),
        })
        .collect()
}

impl<E, S> NetworkSink<E, S>
where
    E: Encode,
    S: Service<E::Request, Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Written,
{
    async fn send(&mut self, request: E::Request) -> Result<S::Response, SendError> {
        let mut service = self.service.clone();
        std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
        service.call(request).await
    }

    /// Sends `request` (`samples` of them), and the halves of any piece the
    /// backend finds too large, first half first, one at a time.
    async fn send_pieces(&mut self, request: E::Request, samples: usize) -> Outcomes {
        let mut outcomes = Outcomes::default();
        let mut pending = vec![(request, samples)];
        while let Some((request, n)) = pending.pop() {
            match self.send(request.clone()).await {
                Ok(written) => {
                    let refused = written.refused().map(|(k, message)| (k.min(n), message.to_string()));
                    let refused_count = refused.as_ref().map_or(0, |r| r.0);
                    outcomes.written += n - refused_count;
                    if let Some((k, message)) = refused {
                        // The backend answered: it is up, only this data is refused.
                        self.context.health.succeeded();
                        outcomes.reject(k, message);
                    }
                }
                Err(SendError::TooLarge { message }) => match self.encoders.with(|e| e.split(&request)) {
                    Some([first, second]) => {
                        tracing::debug!(sink = %self.context.name, samples = n, "request too large: sending it in halves");
                        pending.push(second);
                        pending.push(first);
                    }
                    None => {
                        let e = SendError::Rejected { status: Some(413), message };
                        self.context.health.failed(&e.to_string());
                        outcomes.reject(n, e.to_string());
                    }
                },
                Err(e @ SendError::Rejected { .. }) => {
                    if e.is_configuration_problem() {
                        self.context.health.failed(&e.to_string());
                    } else {
                        // The backend answered: it is up, only this data is refused.
                        self.context.health.succeeded();
                    }
                    outcomes.reject(n, e.to_string());
                }
                Err(e) => {
                    outcomes.exhausted += n;
                    outcomes.failure = Some(e.to_string());
                }
            }
        }
        outcomes
    }
}

impl Outcomes {
    fn reject(&mut self, n: usize, message: String) {
        if n > 0 {
            self.rejected += n;
            self.rejection = Some(message);
        }
    }
}

impl<E, S> Sink for NetworkSink<E, S>
where
    E: Encode,
    S: Service<E::Request, Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Written,
{
    async fn deliver(&mut self, batch: &SinkBatch) -> Delivery {
        let total = batch.len();
        let sink = self.context.name.to_string();
        let Encoded { request, unrepresentable, problem } = self.encoders.with(|e| e.encode(batch));
        let unrepresentable = if request.is_some() { unrepresentable.min(total) } else { total };
        let outcomes = match request {
            Some(request) => self.send_pieces(request, total - unrepresentable).await,
            None => Outcomes::default(),
        };
        // The worker logs and counts the first failure; the others are counted by reason.
        let mut failures: Vec<(usize, SinkError)> = Vec::new();
        if outcomes.exhausted > 0 {
            let message = outcomes.failure.unwrap_or_default();
            failures.push((outcomes.exhausted, SinkError::RetryExhausted { sink: sink.clone(), message }));
        }
        if outcomes.rejected > 0 {
            let message = outcomes.rejection.unwrap_or_default();
            failures.push((outcomes.rejected, SinkError::Rejected { sink: sink.clone(), message }));
        }
        if unrepresentable > 0 {
            let message = problem.unwrap_or_else(|| "not representable in this backend's format".into());
            failures.push((unrepresentable, SinkError::Unrepresentable { sink, count: unrepresentable, message }));
        }
        let mut failures = failures.into_iter();
        let mut delivery = Delivery::all(outcomes.written);
        delivery.failed = failures.next();
        for (count, error) in failures {
            if matches!(error, SinkError::Rejected { .. })
                && let Some(suppressed) = self.refusal_log.check()
            {
                tracing::warn!(
                    sink = %self.context.name, samples = count, similar_messages_suppressed = suppressed,
                    %error, "samples refused by the backend"
                );
            }
            delivery.dropped.push((count, error.reason()));
        }
        delivery
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use futures::future::BoxFuture;
    use parking_lot::Mutex;

    use super::*;
    use crate::model::{Batch, Labels, Sample};
    use crate::telemetry::{DropReason, Health};

    /// Requests are ranges of sample indexes; splitting halves the range.
    struct RangeEncoder;

    impl Encode for RangeEncoder {
        type Request = Range<usize>;

        fn encode(&mut self, batch: &SinkBatch) -> Encoded<Range<usize>> {
            Encoded { request: Some(0..batch.len()), unrepresentable: 0, problem: None }
        }

        fn split(&mut self, r: &Range<usize>) -> Option<[(Range<usize>, usize); 2]> {
            let mid = r.start + r.len() / 2;
            (r.len() > 1).then(|| [(r.start..mid, mid - r.start), (mid..r.end, r.end - mid)])
        }
    }

    /// The requests a service saw, in order.
    type Seen = Arc<Mutex<Vec<Range<usize>>>>;

    /// Refuses requests above `max` samples as too large; a partial write refuses sample 0.
    #[derive(Clone)]
    struct SizeLimited {
        max: usize,
        seen: Seen,
    }

    struct Refused(usize);

    impl Written for Refused {
        fn refused(&self) -> Option<(usize, &str)> {
            (self.0 > 0).then_some((self.0, "sample 0 refused"))
        }
    }

    impl Service<Range<usize>> for SizeLimited {
        type Response = Refused;
        type Error = SendError;
        type Future = BoxFuture<'static, Result<Refused, SendError>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, r: Range<usize>) -> Self::Future {
            self.seen.lock().push(r.clone());
            let answer = if r.len() > self.max {
                Err(SendError::TooLarge { message: "HTTP 413".into() })
            } else {
                Ok(Refused(usize::from(r.start == 0)))
            };
            Box::pin(async move { answer })
        }
    }

    fn batch(n: usize) -> SinkBatch {
        let samples = (0..n)
            .map(|i| Sample::new([("__name__", "m")].into_iter().collect::<Labels>(), i as f64, 1_700_000_000_000))
            .collect();
        SinkBatch::from_batch(Arc::new(Batch::new(samples)))
    }

    fn lane(max: usize) -> (NetworkSink<RangeEncoder, SizeLimited>, Seen) {
        let health = Health::default().register_sink("split-test", Duration::from_secs(60));
        let context = SinkContext::new("split-test", crate::telemetry::SinkMetrics::new("split-test"), health);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let request = RequestConfig { concurrency: Concurrency::Fixed(1), ..RequestConfig::default() };
        let service = SizeLimited { max, seen: seen.clone() };
        let mut lanes = network_lanes(&request, || RangeEncoder, service, &context);
        (lanes.remove(0), seen)
    }

    #[tokio::test]
    async fn too_large_requests_are_split_in_halves_first_half_first() {
        let (mut sink, seen) = lane(2);
        let delivery = sink.deliver(&batch(7)).await;
        assert_eq!(*seen.lock(), vec![0..7, 0..3, 0..1, 1..3, 3..7, 3..5, 5..7]);
        // Sample 0 was refused by a partial write; the rest went out.
        assert_eq!(delivery.delivered, 6);
        assert!(matches!(delivery.failed, Some((1, SinkError::Rejected { .. }))));
        assert_eq!(delivery.total(), 7);
    }

    #[tokio::test]
    async fn a_single_sample_too_large_is_rejected() {
        let (mut sink, _) = lane(0);
        let delivery = sink.deliver(&batch(2)).await;
        assert_eq!(delivery.delivered, 0);
        assert!(matches!(delivery.failed, Some((2, SinkError::Rejected { .. }))), "{delivery:?}");
        assert_eq!(delivery.failed.as_ref().map(|f| f.1.reason()), Some(DropReason::Rejected));
    }
}
