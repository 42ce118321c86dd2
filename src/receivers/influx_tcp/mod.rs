//! Line protocol over TCP (`type = "influx_tcp"`): newline-delimited points on
//! a plain connection, decoded by [`crate::codecs::line_protocol`].
//!
//! Backpressure: a connection's complete lines are handed to the pipeline
//! with a blocking submit, and nothing more is read from that connection
//! until they are taken, so a full ingest queue fills the socket buffers and
//! TCP flow control slows the sender; nothing is dropped. Bad lines are
//! counted (`parse_error`) and logged; there is no answer channel.

mod config;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub use config::InfluxTcpReceiverConfig;

use super::submit::Submitter;
use crate::codecs::line_protocol::{self, LineErrors, Precision};
use crate::telemetry::DropReason;

/// How much is read from a connection at a time.
const READ_CHUNK: usize = 256 * 1024;

pub async fn serve(
    listener: TcpListener,
    config: InfluxTcpReceiverConfig,
    submitter: Submitter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let precision = config.precision().map_err(std::io::Error::other)?;
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
        tokio::spawn(async move {
            if let Err(e) = connection(stream, precision, max_line, &submitter).await {
                tracing::debug!(%peer, error = %e, "influx_tcp: connection ended");
            }
            drop(permit);
        });
    }
}

/// Reads one connection to its end.
async fn connection(
    mut stream: TcpStream,
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
    let summary = line_protocol::decode_body(chunk, precision, now_ns, &mut samples, &mut errors);
    let m = &submitter.metrics;
    m.dropped(DropReason::ParseError, summary.rejected_lines);
    m.dropped(DropReason::NonNumeric, summary.non_numeric);
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
