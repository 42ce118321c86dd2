//! The settings every listener shares (HTTP and gRPC receivers, admin, query):
//! connection bounds and timeouts. Every default is in [`defaults`].

use std::time::Duration;

use serde::Deserialize;

/// `timeouts = { ... }` on a listener. A client that sends one byte a second
/// runs into `header_read` (headers), `body_read` (a body) or `idle` (nothing
/// at all) and is cut; it never holds a worker, only a connection slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// HTTP/1 request headers, and the TLS handshake, must be complete
    /// within this; otherwise the connection is closed.
    #[serde(default = "defaults::header_read", with = "humantime_serde")]
    pub header_read: Duration,
    /// A request body (HTTP/1 or HTTP/2, but not a gRPC stream) must be read
    /// within this from the end of its headers; otherwise `408`.
    #[serde(default = "defaults::body_read", with = "humantime_serde")]
    pub body_read: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP keep-alive, idle HTTP/2 and gRPC channels).
    #[serde(default = "defaults::idle", with = "humantime_serde")]
    pub idle: Duration,
    /// A request must be answered within this (body read and handling;
    /// for a gRPC stream, until its response starts): otherwise `503`
    /// with `Retry-After` / gRPC `DEADLINE_EXCEEDED`. Keep it above
    /// `body_read` + `max_wait_ms` (+ `ack_timeout` with `ack = "delivered"`).
    #[serde(default = "defaults::request", with = "humantime_serde")]
    pub request: Duration,
    /// HTTP/2 (gRPC) keep-alive: a PING is sent after this much silence...
    #[serde(default = "defaults::keepalive_interval", with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// ...and the connection is closed when its answer takes longer than this.
    #[serde(default = "defaults::keepalive_timeout", with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// A connection older than this is asked to close (HTTP/2 GOAWAY, HTTP/1
    /// `Connection: close` after the request in flight), so that clients
    /// spread over new replicas. `0s` = never.
    #[serde(default = "defaults::max_connection_age", with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// How long a closing connection (age, idle, shutdown) may finish the
    /// requests and streams it has before it is cut.
    #[serde(default = "defaults::close_grace", with = "humantime_serde")]
    pub close_grace: Duration,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            header_read: defaults::header_read(),
            body_read: defaults::body_read(),
            idle: defaults::idle(),
            request: defaults::request(),
            keepalive_interval: defaults::keepalive_interval(),
            keepalive_timeout: defaults::keepalive_timeout(),
            max_connection_age: defaults::max_connection_age(),
            close_grace: defaults::close_grace(),
        }
    }
}

impl TimeoutsConfig {
    /// Checks the values a listener cannot work with.
    pub fn check(&self) -> Result<(), String> {
        for (key, v) in [
            ("header_read", self.header_read),
            ("body_read", self.body_read),
            ("idle", self.idle),
            ("request", self.request),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
        ] {
            if v.is_zero() {
                return Err(format!("timeouts.{key} must be above 0s"));
            }
        }
        Ok(())
    }
}

/// The defaults of every listener setting, in one place.
pub mod defaults {
    use std::time::Duration;

    /// Go's and nginx's usual bound for headers; generous for any real client.
    pub fn header_read() -> Duration {
        Duration::from_secs(10)
    }
    /// A 32 MiB body (the default `max_body_bytes`) at 1 MiB/s.
    pub fn body_read() -> Duration {
        Duration::from_secs(30)
    }
    pub fn idle() -> Duration {
        Duration::from_secs(120)
    }
    /// Above `body_read` + `max_wait_ms` + the default `ack_timeout` (30 s).
    pub fn request() -> Duration {
        Duration::from_secs(90)
    }
    pub fn keepalive_interval() -> Duration {
        Duration::from_secs(30)
    }
    pub fn keepalive_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn max_connection_age() -> Duration {
        Duration::from_secs(30 * 60)
    }
    pub fn close_grace() -> Duration {
        Duration::from_secs(30)
    }
    /// Open connections per listener; beyond it, new ones wait in the
    /// kernel's accept backlog until one closes.
    pub fn max_connections() -> usize {
        1024
    }
    /// Requests handled at once per receiver. Each may hold a body of
    /// `max_body_bytes`, counted in the memory budget; two keep a core busy
    /// while the next body arrives.
    pub fn max_concurrent_requests() -> usize {
        2
    }
}
