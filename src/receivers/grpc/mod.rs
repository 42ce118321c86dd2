//! The gRPC receiver: `tsrelay.v1.Ingest` (DESIGN §4).

mod config;

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub use crate::codecs::protobuf::{Decoded, decode_request};
pub use config::GrpcReceiverConfig;

use super::submit::{SubmitError, Submitter};
use crate::proto::v1::ingest_server::{Ingest, IngestServer};
use crate::proto::v1::{WriteRequest, WriteResponse};
use crate::telemetry::DropReason;

struct IngestService {
    submitter: Submitter,
}

impl IngestService {
    async fn handle(&self, req: WriteRequest, blocking: bool) -> Result<WriteResponse, Status> {
        let id = req.id;
        let decoded = decode_request(req, crate::model::now_ms());
        let m = &self.submitter.metrics;
        m.dropped(DropReason::InvalidName, decoded.rejected_invalid_name);
        m.dropped(DropReason::TimestampOutOfWindow, decoded.rejected_timestamp);
        let rejected = decoded.rejected_invalid_name + decoded.rejected_timestamp;
        let accepted = decoded.samples.len() as u64;
        if accepted == 0 && rejected > 0 {
            return Err(Status::invalid_argument(format!(
                "request {id}: no usable series ({rejected} samples rejected): {}",
                decoded.errors.join("; ")
            )));
        }
        let submitted = if blocking {
            self.submitter.submit_blocking(decoded.samples).await
        } else {
            self.submitter.submit(decoded.samples).await
        };
        match submitted {
            Ok(_) => Ok(WriteResponse { id, accepted, rejected, errors: decoded.errors }),
            Err(e @ (SubmitError::Full { .. } | SubmitError::MemoryPressure)) => {
                let mut status = Status::resource_exhausted(e.to_string());
                let retry_ms = self.submitter.max_wait.as_millis().max(100).to_string();
                if let Ok(v) = retry_ms.parse() {
                    status.metadata_mut().insert("retry-after-ms", v);
                }
                Err(status)
            }
            Err(e @ (SubmitError::ShuttingDown { .. } | SubmitError::Undelivered { .. })) => {
                Err(Status::unavailable(e.to_string()))
            }
            Err(e @ SubmitError::AckTimeout(_)) => Err(Status::deadline_exceeded(e.to_string())),
        }
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<WriteResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for std::sync::Arc<IngestService> {
    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteResponse>, Status> {
        self.handle(request.into_inner(), false).await.map(Response::new)
    }

    type WriteStreamStream = ResponseStream;

    async fn write_stream(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<Self::WriteStreamStream>, Status> {
        let mut inbound = request.into_inner();
        // Small: a client that stops reading answers stops our reading requests.
        let (tx, rx) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            while let Some(next) = inbound.next().await {
                let answer = match next {
                    Ok(req) => service.handle(req, true).await,
                    Err(status) => Err(status),
                };
                let stop = answer.is_err();
                if tx.send(answer).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream_from(rx))))
    }
}

fn tokio_stream_from<T: Send + 'static>(mut rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Serves until `shutdown` resolves. `listener` is bound by the caller so
/// readiness and port errors are known before anything else starts.
pub async fn serve(
    listener: TcpListener,
    config: GrpcReceiverConfig,
    submitter: Submitter,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = std::sync::Arc::new(IngestService { submitter });
    let server = IngestServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(server)
        .serve_with_incoming_shutdown(tokio_stream_listener(listener), shutdown)
        .await
}

fn tokio_stream_listener(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static {
    futures::stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((next, l))
    })
}
