//! Line protocol over UDP (`type = "influx_udp"`): each datagram holds whole
//! lines, decoded by [`crate::codecs::line_protocol`].
//!
//! UDP has no way to push back or answer: what cannot be taken is counted.
//! A datagram over `max_datagram_bytes` is dropped whole and bad lines are
//! dropped (`parse_error`); a batch the ingest queue cannot take within
//! `max_wait_ms` is dropped (`queue_full`). Datagrams already waiting are
//! decoded together into one batch.

mod config;

use tokio::net::UdpSocket;

pub use config::InfluxUdpReceiverConfig;

use super::submit::{SubmitError, Submitter};
use crate::codecs::line_protocol::{self, LineErrors};
use crate::telemetry::DropReason;

pub async fn serve(
    socket: UdpSocket,
    config: InfluxUdpReceiverConfig,
    submitter: Submitter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let precision = config.precision().map_err(std::io::Error::other)?;
    let max = config.max_datagram_bytes;
    // One byte more than allowed, so an oversized datagram is seen as such
    // (the kernel truncates silently to the buffer).
    let mut buf = vec![0u8; max + 1];
    let m = submitter.metrics.clone();
    tokio::pin!(shutdown);
    loop {
        let n = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = socket.recv(&mut buf) => r?,
        };
        let mut samples = Vec::new();
        let mut errors = LineErrors::new();
        let now_ns = crate::model::now_ms().saturating_mul(1_000_000);
        let mut datagram = Some(n);
        let mut taken = 0;
        while let Some(len) = datagram {
            taken += 1;
            if len > max {
                m.dropped(DropReason::ParseError, 1);
                tracing::warn!(max_datagram_bytes = max, "influx_udp: oversized datagram dropped");
            } else {
                let summary = line_protocol::decode_body(&buf[..len], precision, now_ns, &mut samples, &mut errors);
                m.dropped(DropReason::ParseError, summary.rejected_lines);
                m.dropped(DropReason::NonNumeric, summary.non_numeric);
            }
            datagram = if taken < config.max_batch_datagrams { socket.try_recv(&mut buf).ok() } else { None };
        }
        if let Some(first) = errors.reported().first() {
            tracing::warn!(receiver = %m.name, rejected = errors.rejected(), message = %first.message, "influx_udp: lines refused");
        }
        let count = samples.len() as u64;
        match submitter.submit(samples).await {
            Ok(_) => {}
            Err(SubmitError::ShuttingDown { .. }) => return Ok(()),
            Err(e) => {
                m.dropped(DropReason::QueueFull, count);
                tracing::warn!(receiver = %m.name, samples = count, error = %e, "influx_udp: batch dropped");
            }
        }
    }
}
