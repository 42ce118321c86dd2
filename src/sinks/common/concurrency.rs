//! The concurrency layer: how many attempts may be in flight at once, fixed
//! or adaptive (AIMD), and the per-attempt instruments
//! (`tsrelay_sink_in_flight_requests`, `tsrelay_sink_request_duration_seconds`)
//! because this is the one place that sees every attempt start and end.
//!
//! Adaptive mode starts at one request in flight. Once per observation window
//! (about one round trip) it compares the window's mean latency with the
//! long-run mean: if any answer asked for a retry, or latency rose by more than
//! half, the limit shrinks by 10 % (at least by one); if every permit was in
//! use and latency held, it grows by one. The backend's queueing shows up as
//! latency before it shows up as errors, so the limit settles just below the
//! point where the backend starts to queue.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tower::{Layer, Service};

use super::SinkContext;
use super::classify::SendError;
use super::config::Concurrency;

/// Shortest observation window, so very fast backends still average a few answers.
const MIN_WINDOW: Duration = Duration::from_millis(20);
/// Latency this much above the long-run mean counts as the backend queueing.
const LATENCY_TOLERANCE: f64 = 1.5;
const DECREASE_RATIO: f64 = 0.9;
/// Weight of the newest window in the long-run mean.
const EWMA_WEIGHT: f64 = 0.2;

/// The limiter's time source (a manual one in tests).
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A shared limit on attempts in flight; one per sink.
pub struct Limiter {
    clock: Clock,
    adaptive: bool,
    max: usize,
    state: Mutex<LimitState>,
    freed: Notify,
    context: SinkContext,
}

struct LimitState {
    limit: usize,
    in_flight: usize,
    window: Window,
    /// Long-run mean latency of successful attempts, in seconds.
    past_rtt: Option<f64>,
}

struct Window {
    started: Instant,
    rtt_sum: f64,
    answers: u32,
    retryable: bool,
    saturated: bool,
}

impl Window {
    fn new(started: Instant, saturated: bool) -> Self {
        Window { started, rtt_sum: 0.0, answers: 0, retryable: false, saturated }
    }
}

impl Limiter {
    pub fn new(concurrency: Concurrency, max_concurrency: usize, context: SinkContext) -> Arc<Self> {
        Self::with_clock(concurrency, max_concurrency, context, Arc::new(Instant::now))
    }

    pub fn with_clock(
        concurrency: Concurrency,
        max_concurrency: usize,
        context: SinkContext,
        clock: Clock,
    ) -> Arc<Self> {
        let (adaptive, start, max) = match concurrency {
            Concurrency::Fixed(n) => (false, n.max(1), n.max(1)),
            Concurrency::Adaptive => (true, 1, max_concurrency.max(1)),
        };
        context.metrics.concurrency_limit.set(start as f64);
        let window = Window::new(clock(), false);
        Arc::new(Limiter {
            clock,
            adaptive,
            max,
            state: Mutex::new(LimitState { limit: start, in_flight: 0, window, past_rtt: None }),
            freed: Notify::new(),
            context,
        })
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().limit
    }

    /// Waits for a free slot. Cancel-safe: a dropped wait takes nothing.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut st = self.state.lock();
                if st.in_flight < st.limit {
                    st.in_flight += 1;
                    if st.in_flight >= st.limit {
                        st.window.saturated = true;
                    }
                    drop(st);
                    self.context.metrics.in_flight_requests.increment(1.0);
                    return Permit { limiter: self.clone(), started: (self.clock)(), answered: false };
                }
            }
            freed.await;
        }
    }

    fn release(&self, rtt: Option<(Duration, bool)>) {
        self.context.metrics.in_flight_requests.decrement(1.0);
        let mut st = self.state.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        if self.adaptive
            && let Some((rtt, retryable)) = rtt
        {
            if retryable {
                st.window.retryable = true;
            } else {
                st.window.rtt_sum += rtt.as_secs_f64();
                st.window.answers += 1;
            }
            self.maybe_adjust(&mut st);
        }
        drop(st);
        // Wake everyone: the limit may have grown by more than the one slot freed.
        self.freed.notify_waiters();
    }

    fn maybe_adjust(&self, st: &mut LimitState) {
        let now = (self.clock)();
        let period = st.past_rtt.map_or(MIN_WINDOW, |p| Duration::from_secs_f64(p).max(MIN_WINDOW));
        if now.saturating_duration_since(st.window.started) < period {
            return;
        }
        let mean = (st.window.answers > 0).then(|| st.window.rtt_sum / st.window.answers as f64);
        let slower = matches!((mean, st.past_rtt), (Some(m), Some(p)) if m > p * LATENCY_TOLERANCE);
        let before = st.limit;
        if st.window.retryable || slower {
            let shrunk = (st.limit as f64 * DECREASE_RATIO).floor() as usize;
            st.limit = shrunk.min(st.limit.saturating_sub(1)).max(1);
        } else if st.window.saturated {
            st.limit = (st.limit + 1).min(self.max);
        }
        if let Some(m) = mean {
            st.past_rtt = Some(st.past_rtt.map_or(m, |p| p * (1.0 - EWMA_WEIGHT) + m * EWMA_WEIGHT));
        }
        if st.limit != before {
            self.context.metrics.concurrency_limit.set(st.limit as f64);
            tracing::debug!(sink = %self.context.name, from = before, to = st.limit, "adaptive concurrency changed");
        }
        st.window = Window::new(now, st.in_flight >= st.limit);
    }
}

/// One attempt's slot. Dropping it without [`Permit::answered`] (a cancelled
/// attempt) frees the slot but teaches the limiter nothing.
pub struct Permit {
    limiter: Arc<Limiter>,
    started: Instant,
    answered: bool,
}

impl Permit {
    /// Records the attempt's outcome and frees the slot.
    pub fn answered(mut self, retryable: bool) {
        self.answered = true;
        let rtt = (self.limiter.clock)().saturating_duration_since(self.started);
        self.limiter.context.metrics.request_duration.record(rtt.as_secs_f64());
        self.limiter.release(Some((rtt, retryable)));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.answered {
            self.limiter.release(None);
        }
    }
}

/// Wraps a service in [`ConcurrencyLimit`].
#[derive(Clone)]
pub struct ConcurrencyLayer {
    limiter: Arc<Limiter>,
}

impl ConcurrencyLayer {
    pub fn new(limiter: Arc<Limiter>) -> Self {
        ConcurrencyLayer { limiter }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit { inner, limiter: self.limiter.clone() }
    }
}

/// Holds a [`Limiter`] slot for the length of each attempt.
#[derive(Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

impl<S, R> Service<R> for ConcurrencyLimit<S>
where
    S: Service<R, Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = SendError;
    type Future = BoxFuture<'static, Result<S::Response, SendError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        // The inner service was made ready by `poll_ready`; keep that one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = self.limiter.clone();
        Box::pin(async move {
            let permit = limiter.acquire().await;
            let result = inner.call(request).await;
            permit.answered(matches!(result, Err(SendError::Retryable { .. })));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{Health, SinkMetrics};

    fn context() -> SinkContext {
        let health = Health::default().register_sink("limiter-test", Duration::from_secs(60));
        SinkContext::new("limiter-test", SinkMetrics::new("limiter-test"), health)
    }

    /// A limiter on a manual clock, and the hand that moves it.
    fn manual(concurrency: Concurrency, max: usize) -> (Arc<Limiter>, impl Fn(Duration)) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let read = now.clone();
        let limiter = Limiter::with_clock(concurrency, max, context(), Arc::new(move || *read.lock()));
        (limiter, move |d| *now.lock() += d)
    }

    /// One round: fill every slot, wait `rtt`, answer them all.
    async fn round(limiter: &Arc<Limiter>, advance: &impl Fn(Duration), rtt: Duration, retryable: bool) {
        let mut permits = Vec::new();
        for _ in 0..limiter.limit() {
            permits.push(limiter.acquire().await);
        }
        advance(rtt);
        for p in permits {
            p.answered(retryable);
        }
    }

    #[tokio::test]
    async fn fixed_limit_never_exceeded() {
        let limiter = Limiter::new(Concurrency::Fixed(2), 8, context());
        let a = limiter.acquire().await;
        let _b = limiter.acquire().await;
        let third = tokio::time::timeout(Duration::from_millis(20), limiter.acquire()).await;
        assert!(third.is_err(), "a third permit was granted under a limit of 2");
        a.answered(false);
        let _c = tokio::time::timeout(Duration::from_secs(5), limiter.acquire()).await.expect("slot freed");
        assert_eq!(limiter.limit(), 2);
    }

    #[tokio::test]
    async fn adaptive_grows_when_saturated_and_shrinks_on_retryable_answers() {
        let (limiter, advance) = manual(Concurrency::Adaptive, 4);
        assert_eq!(limiter.limit(), 1);
        for _ in 0..50 {
            round(&limiter, &advance, Duration::from_millis(25), false).await;
        }
        assert_eq!(limiter.limit(), 4, "steady latency and full use should reach the maximum");
        for _ in 0..10 {
            let p = limiter.acquire().await;
            advance(Duration::from_millis(25));
            p.answered(true);
        }
        assert_eq!(limiter.limit(), 1, "retryable answers should shrink the limit to 1");
    }

    #[tokio::test]
    async fn adaptive_shrinks_when_latency_rises() {
        let (limiter, advance) = manual(Concurrency::Adaptive, 8);
        for _ in 0..40 {
            round(&limiter, &advance, Duration::from_millis(25), false).await;
        }
        assert_eq!(limiter.limit(), 8);
        let p = limiter.acquire().await;
        advance(Duration::from_millis(200));
        p.answered(false);
        assert!(limiter.limit() < 8, "an 8x slower answer should shrink the limit");
    }

    #[tokio::test]
    async fn cancelled_attempt_frees_its_slot() {
        let limiter = Limiter::new(Concurrency::Fixed(1), 1, context());
        drop(limiter.acquire().await);
        let again = tokio::time::timeout(Duration::from_secs(5), limiter.acquire()).await;
        assert!(again.is_ok());
    }
}
