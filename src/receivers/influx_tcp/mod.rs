//! Line protocol over TCP (`type = "influx_tcp"`): newline-delimited points on
//! a plain connection, decoded by [`crate::codecs::line_protocol`].
//!
//! Backpressure: a connection's complete lines are handed to the pipeline
//! with a blocking submit, and nothing more is read from that connection
//! until they are taken, so a full ingest queue fills the socket buffers and
//! TCP flow control slows the sender; nothing is dropped. Bad lines are
//! counted (`parse_error`) and logged; there is no answer channel.
//!
//! With `tls` the connection is TLS (rustls, as on every listener; with
//! `client_ca_file` only clients holding a certificate signed by it get in).
//! Line protocol carries no API key: this receiver never checks keys, and
//! with `[auth]` configured it must be opted in with `auth = "none"`.

mod config;

use std::sync::Arc;

use bytes::BytesMut;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::InfluxTcpReceiverConfig;

use super::submit::Submitter;
use crate::codecs::line_protocol::{self, LineErrors, Precision};
use crate::telemetry::{DropReason, ListenerMetrics, TimeoutKind};
use crate::tls::TlsAcceptor;

/// How much is read from a connection at a time.
const READ_CHUNK: usize = 256 * 1024;

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` resolves; with `tls` every connection starts with
/// a TLS handshake (failures and timeouts are counted in the listener metrics).
pub async fn serve(
    listener: TcpListener,
    config: InfluxTcpReceiverConfig,
    submitter: Submitter,
    tls: Option<Arc<TlsAcceptor>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let precision = config.precision().map_err(std::io::Error::other)?;
    let listener_metrics = ListenerMetrics::new(&submitter.metrics.name);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "influx_tcp: accept failed");
                    continue;
                }
            },
        };
        let submitter = submitter.clone();
        let max_line = config.max_line_bytes;
        let tls = tls.clone();
        let listener_metrics = listener_metrics.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let ended = match tls {
                None => connection(stream, precision, max_line, &submitter).await,
                Some(tls) => match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok((stream, _client))) => connection(stream, precision, max_line, &submitter).await,
                    Ok(Err(e)) => {
                        listener_metrics.tls_handshake_failures.increment(1);
                        tracing::debug!(%peer, error = %e, "influx_tcp: TLS handshake failed");
                        Ok(())
                    }
                    Err(_) => {
                        listener_metrics.timeout(TimeoutKind::TlsHandshake).increment(1);
                        Ok(())
                    }
                },
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "influx_tcp: connection ended");
            }
            drop(permit);
        });
    }
}

/// Reads one connection to its end.
async fn connection(
    mut stream: impl AsyncRead + Unpin,
    precision: Precision,
    max_line: usize,
    submitter: &Submitter,
) -> std::io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Inside an over-long line: discard up to the next newline.
    let mut skipping = false;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = stream.read_buf(&mut buf).await?;
        let eof = n == 0;
        if skipping {
            match memchr::memchr(b'\n', &buf) {
                Some(pos) => {
                    let _ = buf.split_to(pos + 1);
                    skipping = false;
                }
                None => {
                    buf.clear();
                    if eof {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        let complete = if eof { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |p| p + 1) };
        if complete > 0 {
            let chunk = buf.split_to(complete);
            if !take(&chunk, precision, submitter).await {
                return Ok(());
            }
        }
        if eof {
            return Ok(());
        }
        if buf.len() > max_line {
            submitter.metrics.dropped(DropReason::ParseError, 1);
            tracing::warn!(max_line_bytes = max_line, "influx_tcp: line longer than max_line_bytes skipped");
            buf.clear();
            skipping = true;
        }
    }
}

/// Decodes complete lines and hands them on; false when the pipeline is gone.
async fn take(chunk: &[u8], precision: Precision, submitter: &Submitter) -> bool {
    let mut samples = Vec::new();
    let mut errors = LineErrors::new();
    let now_ns = crate::model::now_ms().saturating_mul(1_000_000);
    let summary =
        line_protocol::decode_body_limited(chunk, precision, now_ns, &submitter.limits, &mut samples, &mut errors);
    let m = &submitter.metrics;
    for (reason, n) in summary.drops(samples.len()) {
        m.dropped(reason, n);
    }
    if summary.over_sample_limit {
        tracing::warn!(
            receiver = %m.name,
            max_samples_per_request = submitter.limits.max_samples,
            "influx_tcp: a read holds more samples than validate.max_samples_per_request; dropped"
        );
        samples.clear();
    }
    if let Some(first) = errors.reported().first() {
        tracing::warn!(
            receiver = %m.name,
            rejected = summary.rejected_lines,
            line = first.line,
            message = %first.message,
            "influx_tcp: lines refused"
        );
    }
    // Waits as long as it takes: meanwhile this connection is not read.
    submitter.submit_blocking(samples).await.is_ok()
}
