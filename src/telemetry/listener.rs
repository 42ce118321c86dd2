//! Typed handles for listeners (connections, timeouts, TLS) and for the
//! admission control in front of receivers.

use metrics::{Counter, Gauge, counter, gauge};

use super::names::*;

/// Why a listener cut a connection or a request short: the `kind` label of
/// `tsrelay_listener_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Request headers (HTTP/1) not complete within `timeouts.header_read`.
    HeaderRead,
    /// A request body not complete within `timeouts.body_read`.
    BodyRead,
    /// No answer within `timeouts.request`.
    Request,
    /// No request on the connection for `timeouts.idle`.
    Idle,
    /// The TLS handshake not complete within `timeouts.header_read`.
    TlsHandshake,
    /// A closing connection (age, idle, shutdown) still busy after `timeouts.close_grace`.
    CloseGrace,
}

impl TimeoutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutKind::HeaderRead => "header_read",
            TimeoutKind::BodyRead => "body_read",
            TimeoutKind::Request => "request",
            TimeoutKind::Idle => "idle",
            TimeoutKind::TlsHandshake => "tls_handshake",
            TimeoutKind::CloseGrace => "close_grace",
        }
    }
}

/// Handles one listener (`listener` = the receiver's name, `admin`, `query`) updates.
#[derive(Clone)]
pub struct ListenerMetrics {
    pub name: std::sync::Arc<str>,
    /// Connections open now.
    pub connections: Gauge,
    pub max_connections: Gauge,
    pub accepted: Counter,
    /// `accept()` failures (EMFILE, ENFILE, ENOBUFS...): the listener backs off.
    pub accept_errors: Counter,
    /// Connections closed because they reached `timeouts.max_connection_age`.
    pub closed_by_age: Counter,
    pub tls_handshake_failures: Counter,
    timeouts: [Counter; 6],
}

impl ListenerMetrics {
    pub fn new(listener: &str) -> Self {
        let l = || listener.to_string();
        let t = |kind: TimeoutKind| counter!(LISTENER_TIMEOUTS_TOTAL, "listener" => l(), "kind" => kind.as_str());
        ListenerMetrics {
            name: listener.into(),
            connections: gauge!(LISTENER_CONNECTIONS, "listener" => l()),
            max_connections: gauge!(LISTENER_MAX_CONNECTIONS, "listener" => l()),
            accepted: counter!(LISTENER_ACCEPTED_CONNECTIONS_TOTAL, "listener" => l()),
            accept_errors: counter!(LISTENER_ACCEPT_ERRORS_TOTAL, "listener" => l()),
            closed_by_age: counter!(LISTENER_CLOSED_CONNECTIONS_TOTAL, "listener" => l(), "reason" => "max_connection_age"),
            tls_handshake_failures: counter!(LISTENER_TLS_HANDSHAKE_FAILURES_TOTAL, "listener" => l()),
            timeouts: [
                t(TimeoutKind::HeaderRead),
                t(TimeoutKind::BodyRead),
                t(TimeoutKind::Request),
                t(TimeoutKind::Idle),
                t(TimeoutKind::TlsHandshake),
                t(TimeoutKind::CloseGrace),
            ],
        }
    }

    pub fn timeout(&self, kind: TimeoutKind) -> &Counter {
        &self.timeouts[kind as usize]
    }
}

/// `tsrelay_listener_tls_reloads_total{listener, result}`.
pub fn tls_reloads(listener: &str, ok: bool) -> Counter {
    counter!(LISTENER_TLS_RELOADS_TOTAL, "listener" => listener.to_string(), "result" => if ok { "ok" } else { "error" })
}

/// Admission in front of a receiver: `max_concurrent_requests` and the
/// memory-pressure check made before a body is read.
#[derive(Clone)]
pub struct AdmissionMetrics {
    pub in_flight: Gauge,
    /// Requests refused because `max_concurrent_requests` stayed taken for `max_wait_ms`.
    pub busy_rejections: Counter,
}

impl AdmissionMetrics {
    pub fn new(receiver: &str) -> Self {
        AdmissionMetrics {
            in_flight: gauge!(RECEIVER_REQUESTS_IN_FLIGHT, "receiver" => receiver.to_string()),
            busy_rejections: counter!(RECEIVER_BUSY_REJECTIONS_TOTAL, "receiver" => receiver.to_string()),
        }
    }
}
