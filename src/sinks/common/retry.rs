//! The retry layer: exponential backoff with full jitter (ceilings from
//! `backon`), `Retry-After` honoured up to a cap, and a time budget that ends
//! in `retry_exhausted` — or no budget at all for sinks behind a disk queue.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::future::BoxFuture;
use tokio::time::Instant;
use tower::{Layer, Service};

use super::SinkContext;
use super::classify::SendError;
use super::config::RetryConfig;
use super::log_throttle::LogThrottle;

/// How long one request may keep being retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryBudget {
    /// Give up after this long (memory queues): the samples count as `retry_exhausted`.
    Bounded(Duration),
    /// Never give up (disk queues keep the data; losing it to a timer would defeat them).
    Unbounded,
}

/// The retry rules of one sink, from its [`RetryConfig`].
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub max_retry_after: Duration,
    pub budget: RetryBudget,
}

impl RetryPolicy {
    /// `retry_forever` is for sinks whose queue is durable (`queue.type = "disk"`):
    /// then `max_retry_duration` does not apply.
    pub fn new(config: &RetryConfig, retry_forever: bool) -> Self {
        RetryPolicy {
            initial: config.initial,
            max: config.max,
            multiplier: config.multiplier,
            max_retry_after: config.max_retry_after,
            budget: if retry_forever {
                RetryBudget::Unbounded
            } else {
                RetryBudget::Bounded(config.max_retry_duration)
            },
        }
    }

    /// The waits before each retry of one request.
    pub fn backoff(&self) -> Backoff {
        let ceilings = ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(self.multiplier as f32)
            .without_max_times()
            .build();
        Backoff { ceilings, max: self.max, rng: Rng::seeded() }
    }

    /// The wait before the next attempt: the backoff, or longer if the backend
    /// asked for it (capped at `max_retry_after`).
    pub fn delay(&self, backoff: Duration, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => backoff.max(asked.min(self.max_retry_after)),
            None => backoff,
        }
    }
}

/// Full jitter: each wait is uniform in `[0, ceiling]`, the ceiling growing
/// exponentially (`backon` would only add jitter on top of the ceiling).
pub struct Backoff {
    ceilings: backon::ExponentialBackoff,
    max: Duration,
    rng: Rng,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let ceiling = self.ceilings.next().unwrap_or(self.max);
        Some(ceiling.mul_f64(self.rng.unit()))
    }
}

/// xorshift64*: jitter needs spread, not cryptographic quality.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Rng(seed | 1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wraps a service in [`Retry`].
#[derive(Clone)]
pub struct RetryLayer {
    policy: Arc<RetryPolicy>,
    context: SinkContext,
    log: Arc<LogThrottle>,
}

impl RetryLayer {
    pub fn new(policy: RetryPolicy, context: SinkContext) -> Self {
        RetryLayer { policy: Arc::new(policy), context, log: Arc::new(LogThrottle::default()) }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner, policy: self.policy.clone(), context: self.context.clone(), log: self.log.clone() }
    }
}

/// Retries [`SendError::Retryable`] answers; passes rejections through; ends
/// in [`SendError::Exhausted`] once the budget is spent. Counts
/// `tsrelay_sink_retries_total` and keeps the sink's health up to date.
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
    context: SinkContext,
    log: Arc<LogThrottle>,
}

impl<S, R> Service<R> for Retry<S>
where
    S: Service<R, Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    R: Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = SendError;
    type Future = BoxFuture<'static, Result<S::Response, SendError>>;

    // Readiness is awaited before every attempt instead: a retry must not
    // hold the inner service's capacity while it sleeps.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        let context = self.context.clone();
        let log = self.log.clone();
        Box::pin(async move {
            run_with_retries(&policy, &context, &log, move || {
                let mut attempt_service = inner.clone();
                let attempt = request.clone();
                async move {
                    std::future::poll_fn(|cx| attempt_service.poll_ready(cx)).await?;
                    attempt_service.call(attempt).await
                }
            })
            .await
        })
    }
}

/// The loop of [`Retry`], for sinks whose attempts are not a tower service
/// (rrdcached's persistent connection): runs `attempt` until it succeeds,
/// fails for good, or `policy`'s budget is spent ([`SendError::Exhausted`]).
/// Waits per the backoff (or `Retry-After`), counts
/// `tsrelay_sink_retries_total`, keeps the sink's health up to date and logs
/// through `log`.
pub async fn run_with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    context: &SinkContext,
    log: &LogThrottle,
    mut attempt: F,
) -> Result<T, SendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SendError>>,
{
    let started = Instant::now();
    let mut backoff = policy.backoff();
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let (message, retry_after) = match attempt().await {
            Ok(response) => {
                if attempts > 1 {
                    tracing::info!(sink = %context.name, attempts, "request delivered after retrying");
                }
                context.health.succeeded();
                return Ok(response);
            }
            Err(SendError::Retryable { message, retry_after }) => (message, retry_after),
            Err(other) => return Err(other),
        };
        context.health.failed(&message);
        let delay = policy.delay(backoff.next().unwrap_or(policy.max), retry_after);
        if let RetryBudget::Bounded(limit) = policy.budget
            && started.elapsed() + delay > limit
        {
            return Err(SendError::Exhausted { attempts, elapsed: started.elapsed(), last: message });
        }
        context.metrics.retries.increment(1);
        if let Some(suppressed) = log.check() {
            tracing::warn!(
                sink = %context.name, attempt = attempts, retry_in = ?delay,
                similar_messages_suppressed = suppressed, error = %message, "request failed; retrying"
            );
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(
            &RetryConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                multiplier: 2.0,
                max_retry_duration: Duration::from_secs(60),
                max_retry_after: Duration::from_secs(10),
            },
            false,
        )
    }

    #[test]
    fn full_jitter_stays_below_a_growing_capped_ceiling() {
        let p = policy();
        let mut b = p.backoff();
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ceiling in ceilings {
            let d = b.next().unwrap();
            assert!(d <= Duration::from_millis(ceiling), "{d:?} above {ceiling} ms");
        }
        // Spread, not a constant: 200 draws below a 2 s ceiling cover most of it.
        let draws: Vec<Duration> = (0..200).map(|_| b.next().unwrap()).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(300)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(1700)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.delay(Duration::from_millis(50), Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(p.delay(Duration::from_millis(50), Some(Duration::from_secs(3600))), Duration::from_secs(10));
        assert_eq!(p.delay(Duration::from_millis(50), Some(Duration::ZERO)), Duration::from_millis(50));
        assert_eq!(p.delay(Duration::from_millis(50), None), Duration::from_millis(50));
    }

    #[test]
    fn disk_queues_retry_without_budget() {
        assert_eq!(RetryPolicy::new(&RetryConfig::default(), true).budget, RetryBudget::Unbounded);
        assert_eq!(
            RetryPolicy::new(&RetryConfig::default(), false).budget,
            RetryBudget::Bounded(super::super::config::defaults::max_retry_duration())
        );
    }

    #[tokio::test]
    async fn run_with_retries_retries_until_success_or_budget() {
        let health = crate::telemetry::Health::default().register_sink("retry-test", Duration::from_secs(60));
        let context = SinkContext::new("retry-test", crate::telemetry::SinkMetrics::new("retry-test"), health);
        let log = LogThrottle::default();
        let config = RetryConfig {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            multiplier: 2.0,
            max_retry_duration: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(1),
        };
        let bounded = RetryPolicy::new(&config, false);
        let mut calls = 0;
        let r = run_with_retries(&bounded, &context, &log, || {
            calls += 1;
            let n = calls;
            async move { if n < 3 { Err(SendError::retryable("busy")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r, Ok(3));
        let r: Result<(), SendError> =
            run_with_retries(&bounded, &context, &log, || async { Err(SendError::retryable("down")) }).await;
        assert!(matches!(r, Err(SendError::Exhausted { attempts, .. }) if attempts > 3), "{r:?}");
        let r: Result<(), SendError> = run_with_retries(&bounded, &context, &log, || async {
            Err(SendError::Rejected { status: Some(400), message: "bad".into() })
        })
        .await;
        assert!(matches!(r, Err(SendError::Rejected { .. })), "refusals are not retried");
    }
}
