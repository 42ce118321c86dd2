//! The serving layer under every tsrelay listener (HTTP and gRPC receivers,
//! admin, query): one accept loop with a bound on open connections and
//! back-off on accept errors, optional TLS ([`crate::tls`]), HTTP/1 and HTTP/2
//! with header, body, idle and request timeouts, HTTP/2 keep-alive, a maximum
//! connection age and a graceful close. A listener serves an [`axum::Router`];
//! a gRPC service becomes one with `tonic::service::Routes::into_axum_router`,
//! so new routes and services plug in without touching this layer.
//!
//! [`admission`] is the receivers' part: `max_concurrent_requests` and the
//! memory-pressure check, both before a body is read.

pub mod admission;
mod body;
mod config;
mod conn;
mod serve;

use std::sync::Arc;

pub use admission::Admission;
pub use config::{TimeoutsConfig, defaults};
pub use conn::{ConnInfo, is_grpc};
pub use serve::serve;

use crate::tls::TlsAcceptor;

/// How one listener runs; built from its config section.
#[derive(Clone)]
pub struct ListenerOptions {
    /// The `listener` label of its metrics: the receiver's name, `admin`, `query`.
    pub name: String,
    pub max_connections: usize,
    /// HTTP/2 streams a connection may have open at once.
    pub max_concurrent_streams: u32,
    pub timeouts: TimeoutsConfig,
    pub tls: Option<Arc<TlsAcceptor>>,
    /// The key check, run before anything else of a request.
    pub auth: Option<crate::auth::Guard>,
}

impl ListenerOptions {
    pub fn new(name: &str, max_connections: usize, timeouts: TimeoutsConfig) -> Self {
        ListenerOptions {
            name: name.to_string(),
            max_connections,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            timeouts,
            tls: None,
            auth: None,
        }
    }

    pub fn with_auth(mut self, auth: Option<crate::auth::Guard>) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_tls(mut self, tls: Option<Arc<TlsAcceptor>>) -> Self {
        self.tls = tls;
        self
    }
}

/// Streams one HTTP/2 connection may have open; a client queues the rest on
/// its side. Receivers bound the work itself with `max_concurrent_requests`.
const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 16;

/// Largest read buffer of an HTTP/1 connection (hyper's default is about 408 KiB).
/// hyper grows it while a large body streams in and hands the body out in
/// pieces of it, so a new buffer is allocated whenever the pieces still hold
/// the last one. Kept under the allocator's mmap threshold
/// (`limits::allocator`), that buffer comes from the heap and its memory is
/// used again; above it, every one was mapped, faulted in page by page and
/// unmapped (perf: 1.5 % of the daemon's CPU in the kernel on the bench-e2e
/// load). Headers must fit in it too: 128 KiB is far above any header limit.
pub(crate) const H1_READ_BUFFER_BYTES: usize = 128 * 1024;

/// Bytes a client may send on one HTTP/2 stream before the server reads them.
pub(crate) const H2_STREAM_WINDOW_BYTES: u32 = 128 * 1024;

/// Bytes a client may send on one HTTP/2 connection before the server reads
/// them: room for every stream's full window at once. A smaller connection
/// window deadlocks admission: streams waiting for a `max_concurrent_requests`
/// turn are not read, their bodies fill the shared window, and the admitted
/// streams can no longer receive theirs until a waiter times out with 503
/// (measured: one refusal a second in bench-auth's TLS runs, where reqwest
/// multiplexes four senders over one connection). Per connection this buffers
/// at most 16 × 128 KiB = 2 MiB (hyper's default connection window is 1 MiB).
/// 128 KiB a stream keeps one stream at ~2.6 MB/s over a 50 ms round trip;
/// 16 streams is eight times the default `max_concurrent_requests`.
pub(crate) fn h2_connection_window_bytes(max_concurrent_streams: u32) -> u32 {
    H2_STREAM_WINDOW_BYTES.saturating_mul(max_concurrent_streams.max(1))
}

/// A plain or TLS socket.
type MaybeTls =
    tokio_util::either::Either<tokio::net::TcpStream, Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>;
