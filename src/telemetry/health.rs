//! Readiness: receivers listening, sinks not failing for too long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    Healthy,
    Retrying,
}

#[derive(Debug)]
struct SinkEntry {
    state: SinkState,
    failing_since: Option<Instant>,
    /// The same moment on the wall clock, for the report.
    failing_since_wall: Option<SystemTime>,
    last_error: Option<String>,
    unhealthy_after: Duration,
    /// The sink's storage (disk queue) cannot make data durable: unhealthy at once.
    storage_error: Option<String>,
}

/// Shared health registry; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<HealthInner>>,
}

#[derive(Debug, Default)]
struct HealthInner {
    receivers: BTreeMap<String, bool>,
    sinks: BTreeMap<String, SinkEntry>,
    /// A task panicked: the daemon is draining and will exit non-zero.
    panic: Option<String>,
}

/// A sink's handle on its own health entry.
#[derive(Debug, Clone)]
pub struct SinkHealth {
    health: Health,
    name: Arc<str>,
}

#[derive(Serialize)]
pub struct SinkReport {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_for_seconds: Option<f64>,
    /// When the current run of failures began (HTTP date, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_error: Option<String>,
}

#[derive(Serialize)]
pub struct HealthReport {
    ready: bool,
    pub receivers: BTreeMap<String, &'static str>,
    pub sinks: BTreeMap<String, SinkReport>,
    /// Set once any task panicked (the daemon then drains and exits non-zero).
    #[serde(skip_serializing_if = "Option::is_none")]
    panic: Option<String>,
}

impl HealthReport {
    pub fn ready(&self) -> bool {
        self.ready
    }
}

impl Health {
    pub fn register_receiver(&self, name: &str) {
        self.inner.lock().receivers.insert(name.to_string(), false);
    }

    pub fn receiver_listening(&self, name: &str) {
        self.inner.lock().receivers.insert(name.to_string(), true);
    }

    pub fn register_sink(&self, name: &str, unhealthy_after: Duration) -> SinkHealth {
        self.inner.lock().sinks.insert(
            name.to_string(),
            SinkEntry {
                state: SinkState::Healthy,
                failing_since: None,
                failing_since_wall: None,
                last_error: None,
                unhealthy_after,
                storage_error: None,
            },
        );
        SinkHealth { health: self.clone(), name: name.into() }
    }

    pub fn report(&self) -> HealthReport {
        let inner = self.inner.lock();
        let now = Instant::now();
        let mut ready = inner.panic.is_none();
        let receivers = inner
            .receivers
            .iter()
            .map(|(n, &up)| {
                ready &= up;
                (n.clone(), if up { "listening" } else { "starting" })
            })
            .collect();
        let sinks = inner
            .sinks
            .iter()
            .map(|(n, e)| {
                let failing_for = e.failing_since.map(|t| now.duration_since(t));
                let unhealthy = failing_for.is_some_and(|d| d >= e.unhealthy_after) || e.storage_error.is_some();
                ready &= !unhealthy;
                let state = match (e.state, unhealthy) {
                    (_, true) => "failing",
                    (SinkState::Retrying, false) => "retrying",
                    (SinkState::Healthy, false) => "healthy",
                };
                let report = SinkReport {
                    state,
                    failing_for_seconds: failing_for.map(|d| d.as_secs_f64()),
                    failing_since: e.failing_since_wall.map(httpdate::fmt_http_date),
                    last_error: e.last_error.clone(),
                    storage_error: e.storage_error.clone(),
                };
                (n.clone(), report)
            })
            .collect();
        HealthReport { ready, receivers, sinks, panic: inner.panic.clone() }
    }

    /// A task panicked: not ready from now on (the first message is kept).
    pub fn panicked(&self, message: &str) {
        self.inner.lock().panic.get_or_insert_with(|| message.to_string());
    }

    /// The first panic seen, if any.
    pub fn panic(&self) -> Option<String> {
        self.inner.lock().panic.clone()
    }
}

impl SinkHealth {
    pub fn succeeded(&self) {
        let mut inner = self.health.inner.lock();
        if let Some(e) = inner.sinks.get_mut(&*self.name) {
            e.state = SinkState::Healthy;
            e.failing_since = None;
            e.failing_since_wall = None;
            e.last_error = None;
        }
    }

    /// The sink's queue cannot make data durable (an fsync failed).
    pub fn storage_failed(&self, error: &str) {
        let mut inner = self.health.inner.lock();
        if let Some(e) = inner.sinks.get_mut(&*self.name) {
            e.storage_error = Some(error.to_string());
        }
    }

    /// The sink's queue synced again.
    pub fn storage_recovered(&self) {
        let mut inner = self.health.inner.lock();
        if let Some(e) = inner.sinks.get_mut(&*self.name) {
            e.storage_error = None;
        }
    }

    pub fn failed(&self, error: &str) {
        let mut inner = self.health.inner.lock();
        if let Some(e) = inner.sinks.get_mut(&*self.name) {
            e.state = SinkState::Retrying;
            if e.failing_since.is_none() {
                e.failing_since = Some(Instant::now());
                e.failing_since_wall = Some(SystemTime::now());
            }
            e.last_error = Some(error.to_string());
        }
    }
}
