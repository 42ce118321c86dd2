//! The accept loop and the life of one connection: a bound on open
//! connections, back-off on accept errors, TLS, HTTP/1 and HTTP/2 (gRPC) with
//! their timeouts, idle and age limits, and a graceful close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::ListenerOptions;
use super::body::{DeadlineBody, WithGuard};
use super::conn::{ConnInfo, timeout_response};
use crate::telemetry::{ListenerMetrics, TimeoutKind};

/// First and longest pause after a failed `accept()`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often an open connection checks its idle time.
const IDLE_CHECK_EVERY: Duration = Duration::from_millis(250);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish within `timeouts.close_grace` and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = match options.auth.clone() {
        // Outermost: a refused request reaches neither admission nor a handler.
        Some(guard) => router.layer(axum::middleware::from_fn_with_state(guard, crate::auth::Guard::layer)),
        None => router,
    };
    let metrics = ListenerMetrics::new(&options.name);
    metrics.max_connections.set(options.max_connections as f64);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let closing = CancellationToken::new();
    let tracker = TaskTracker::new();
    let builder = Arc::new(connection_builder(&options));
    let options = Arc::new(options);
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        // A slot first: beyond max_connections new clients wait in the
        // kernel's backlog and cost nothing here.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                a
            }
            Err(e) if is_per_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: accepting again at once
                // would fail again and spin a core. Pause, doubling each time.
                metrics.accept_errors.increment(1);
                backoff = (backoff * 2).clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                if backoff == ACCEPT_BACKOFF_MIN || backoff == ACCEPT_BACKOFF_MAX {
                    tracing::warn!(listener = %options.name, error = %e, pause = ?backoff, "accept failed; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        metrics.accepted.increment(1);
        let conn = Connection {
            options: options.clone(),
            builder: builder.clone(),
            router: router.clone(),
            metrics: metrics.clone(),
            closing: closing.clone(),
        };
        tracker.spawn(async move {
            let _slot = slot;
            let open = conn.metrics.connections.clone();
            open.increment(1.0);
            conn.run(stream, peer).await;
            open.decrement(1.0);
        });
    }
    drop(listener);
    closing.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// Errors of one connection that `accept()` reports; the listener is fine.
fn is_per_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock)
}

fn connection_builder(options: &ListenerOptions) -> auto::Builder<TokioExecutor> {
    let t = &options.timeouts;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header_read)
        .keep_alive(true)
        .max_buf_size(super::H1_READ_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(t.keepalive_interval)
        .keep_alive_timeout(t.keepalive_timeout)
        .max_concurrent_streams(options.max_concurrent_streams)
        .initial_stream_window_size(super::H2_STREAM_WINDOW_BYTES)
        .initial_connection_window_size(super::h2_connection_window_bytes(options.max_concurrent_streams));
    builder
}

/// What one connection needs; cloned per accepted socket.
struct Connection {
    options: Arc<ListenerOptions>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    metrics: ListenerMetrics,
    closing: CancellationToken,
}

/// Requests in flight on one connection and when the last one ended, for
/// the idle timeout.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since the connection opened.
    last_ms: AtomicU64,
}

/// Ends one request's share of [`Activity`] when dropped (with the response body).
struct InFlight {
    activity: Arc<Activity>,
    opened: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let t = self.options.timeouts;
        let (io, client) = match &self.options.tls {
            None => (super::MaybeTls::Left(stream), None),
            Some(tls) => match tokio::time::timeout(t.header_read, tls.accept(stream)).await {
                Ok(Ok((s, client))) => (super::MaybeTls::Right(Box::new(s)), client),
                Ok(Err(e)) => {
                    self.metrics.tls_handshake_failures.increment(1);
                    tracing::debug!(listener = %self.options.name, %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    self.metrics.timeout(TimeoutKind::TlsHandshake).increment(1);
                    return;
                }
            },
        };
        let info = ConnInfo { peer, client };
        let opened = Instant::now();
        let activity = Arc::new(Activity::default());
        let service = {
            let activity = activity.clone();
            let router = self.router.clone();
            let metrics = self.metrics.clone();
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                activity.in_flight.fetch_add(1, Ordering::Relaxed);
                let in_flight = InFlight { activity: activity.clone(), opened };
                handle(req, router.clone(), info.clone(), t, metrics.clone(), in_flight)
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let age = if t.max_connection_age.is_zero() { Duration::MAX } else { t.max_connection_age };
        let age_deadline = tokio::time::Instant::now().checked_add(age);
        let age_sleep = async {
            match age_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(age_sleep);
        let mut idle_tick = tokio::time::interval(IDLE_CHECK_EVERY);
        idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut grace_deadline: Option<tokio::time::Instant> = None;
        loop {
            let grace = async {
                match grace_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        self.note_error(&*e, peer);
                    }
                    return;
                }
                _ = self.closing.cancelled(), if grace_deadline.is_none() => {}
                _ = &mut age_sleep, if grace_deadline.is_none() => {
                    self.metrics.closed_by_age.increment(1);
                }
                _ = idle_tick.tick(), if grace_deadline.is_none() => {
                    let busy = activity.in_flight.load(Ordering::Relaxed) > 0;
                    let last = Duration::from_millis(activity.last_ms.load(Ordering::Relaxed));
                    if busy || opened.elapsed().saturating_sub(last) < t.idle {
                        continue;
                    }
                    self.metrics.timeout(TimeoutKind::Idle).increment(1);
                }
                _ = grace => {
                    self.metrics.timeout(TimeoutKind::CloseGrace).increment(1);
                    return;
                }
            }
            // Closing: no new requests; those in flight get close_grace.
            conn.as_mut().graceful_shutdown();
            grace_deadline = Some(tokio::time::Instant::now() + t.close_grace);
        }
    }

    fn note_error(&self, e: &(dyn std::error::Error + 'static), peer: SocketAddr) {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(h) = err.downcast_ref::<hyper::Error>()
                && h.is_timeout()
            {
                self.metrics.timeout(TimeoutKind::HeaderRead).increment(1);
                tracing::debug!(listener = %self.options.name, %peer, "request headers not read in time; closed");
                return;
            }
            source = err.source();
        }
        tracing::debug!(listener = %self.options.name, %peer, error = %e, "connection ended with an error");
    }
}

/// One request: the connection's identity in its extensions, the body read
/// deadline, the request timeout, and the in-flight mark held until the
/// response body ends (a gRPC stream counts as busy for its whole life).
async fn handle(
    req: hyper::Request<Incoming>,
    router: Router,
    info: ConnInfo,
    t: super::TimeoutsConfig,
    metrics: ListenerMetrics,
    in_flight: InFlight,
) -> Result<hyper::Response<Body>, std::convert::Infallible> {
    let grpc = super::conn::is_grpc(req.headers());
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(info);
    // A gRPC body is a stream of messages that may rightly last for hours:
    // it is bounded by `request` (unary) and `max_connection_age` instead.
    let (body, expired) = if grpc {
        (Body::new(body), None)
    } else {
        let (b, expired) = DeadlineBody::new(body, t.body_read);
        (Body::new(b), Some(expired))
    };
    let req = axum::http::Request::from_parts(parts, body);
    let answer = tokio::time::timeout(t.request, router.oneshot(req)).await;
    let response = match answer {
        Ok(Ok(resp)) if expired.as_ref().is_some_and(|e| e.fired()) => {
            drop(resp);
            metrics.timeout(TimeoutKind::BodyRead).increment(1);
            timeout_response(TimeoutKind::BodyRead, t.body_read, grpc)
        }
        Ok(Ok(resp)) => resp,
        Ok(Err(never)) => match never {},
        Err(_) => {
            metrics.timeout(TimeoutKind::Request).increment(1);
            timeout_response(TimeoutKind::Request, t.request, grpc)
        }
    };
    Ok(response.map(|b| Body::new(WithGuard::new(b, in_flight))))
}
