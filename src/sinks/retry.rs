//! Retrying one request of a network sink: exponential backoff with jitter
//! (`backon`), `Retry-After` honoured up to a cap, bounded by a total time.
//!
//! Interim: the shared network-sink layers (`src/sinks/common/`) replace this
//! once they land; the influxdb and rrdcached sinks call only [`with_retries`]
//! and [`parse_retry_after`], so the swap touches one call site per sink.

use std::future::Future;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Deserialize;

use crate::telemetry::{SinkHealth, SinkMetrics};

/// `retry = { initial_backoff = "100ms", max_backoff = "10s", max_retry_duration = "5m", max_retry_after = "60s" }`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait after a failed attempt; doubles (with jitter) up to `max_backoff`.
    #[serde(default = "defaults::initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts chosen by the backoff.
    #[serde(default = "defaults::max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long one batch may be retried before it is counted as `retry_exhausted`.
    #[serde(default = "defaults::max_retry_duration", with = "humantime_serde")]
    pub max_retry_duration: Duration,
    /// Longest `Retry-After` honoured; a longer one is cut to this.
    #[serde(default = "defaults::max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: defaults::initial_backoff(),
            max_backoff: defaults::max_backoff(),
            max_retry_duration: defaults::max_retry_duration(),
            max_retry_after: defaults::max_retry_after(),
        }
    }
}

impl RetryConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.initial_backoff.is_zero() {
            return Err("retry.initial_backoff must be above zero".into());
        }
        if self.max_backoff < self.initial_backoff {
            return Err("retry.max_backoff must not be below retry.initial_backoff".into());
        }
        Ok(())
    }
}

pub mod defaults {
    use std::time::Duration;

    pub fn initial_backoff() -> Duration {
        Duration::from_millis(100)
    }
    pub fn max_backoff() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_retry_duration() -> Duration {
        Duration::from_secs(300)
    }
    pub fn max_retry_after() -> Duration {
        Duration::from_secs(60)
    }
}

/// The outcome of one attempt, as the sink classified it.
#[derive(Debug)]
pub enum Attempt<T> {
    /// Final: success or a refusal that retrying cannot change.
    Done(T),
    /// Transient: try again, after `after` when the backend said so.
    Retry { after: Option<Duration>, message: String },
}

/// Runs `attempt` until it is `Done` or `max_retry_duration` is spent; then
/// `Err` with the last failure. Every retry is counted and marks the sink
/// as failing in `/readyz` (the worker marks it healthy again on success).
pub async fn with_retries<T, F, Fut>(
    config: &RetryConfig,
    metrics: &SinkMetrics,
    health: &SinkHealth,
    mut attempt: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = ExponentialBuilder::new()
        .with_min_delay(config.initial_backoff)
        .with_max_delay(config.max_backoff)
        .with_jitter()
        .without_max_times()
        .build();
    let mut logged = false;
    loop {
        let (after, message) = match attempt().await {
            Attempt::Done(v) => return Ok(v),
            Attempt::Retry { after, message } => (after, message),
        };
        health.failed(&message);
        let backoff_wait = backoff.next().unwrap_or(config.max_backoff);
        let wait = after.map_or(backoff_wait, |a| a.min(config.max_retry_after));
        if started.elapsed() + wait > config.max_retry_duration {
            return Err(message);
        }
        if !logged {
            // Once per batch: a failing backend must not flood the log.
            tracing::warn!(sink = &*metrics.name, error = %message, wait_ms = wait.as_millis() as u64, "retrying");
            logged = true;
        }
        metrics.retries.increment(1);
        tokio::time::sleep(wait).await;
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = parse_retry_after(&soon).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30), "{d:?}");
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[tokio::test]
    async fn gives_up_after_the_time_budget() {
        let config = RetryConfig {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_retry_duration: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(60),
        };
        let metrics = SinkMetrics::new("retry_test");
        let health = crate::telemetry::Health::default().register_sink("retry_test", Duration::from_secs(1));
        let mut calls = 0;
        let r: Result<(), String> = with_retries(&config, &metrics, &health, || {
            calls += 1;
            async { Attempt::Retry { after: None, message: "down".into() } }
        })
        .await;
        assert_eq!(r, Err("down".into()));
        assert!(calls > 3, "{calls}");

        let mut calls = 0;
        let r = with_retries(&config, &metrics, &health, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Attempt::Retry { after: Some(Duration::from_millis(10)), message: "busy".into() }
                } else {
                    Attempt::Done(n)
                }
            }
        })
        .await;
        assert_eq!(r, Ok(3));
    }
}
