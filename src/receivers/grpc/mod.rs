//! The gRPC receiver: `tsrelay.v1.Ingest` (DESIGN §4) and OTLP metrics
//! (`MetricsService/Export`).

mod config;
mod otlp;
mod raw;

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

pub use crate::codecs::protobuf::{Decoded, decode_bytes, decode_request, decode_request_limited};
pub use config::GrpcReceiverConfig;
pub use raw::RawWriteRequest;

use super::submit::{SubmitError, Submitter};
use crate::auth::{Principal, rate_limited_status};
use crate::listener::{Admission, ListenerOptions};
use crate::proto::v1::WriteResponse;
use crate::proto::v1::ingest_server::{Ingest, IngestServer};

struct IngestService {
    submitter: Submitter,
}

impl IngestService {
    async fn handle(
        &self,
        req: RawWriteRequest,
        blocking: bool,
        key: Option<&Principal>,
    ) -> Result<WriteResponse, Status> {
        let id = req.id;
        let limits = &self.submitter.limits;
        let decoded = decode_bytes(&req.series, crate::model::now_ms(), limits)
            .map_err(|e| Status::invalid_argument(format!("request {id}: not a tsrelay.v1.WriteRequest: {e}")))?;
        if decoded.over_sample_limit {
            return Err(Status::invalid_argument(format!(
                "request {id} holds more than {} samples (validate.max_samples_per_request of pipeline {}); \
                 nothing was accepted: send smaller requests",
                limits.max_samples,
                self.submitter.input.pipeline()
            )));
        }
        let accepted = decoded.samples.len() as u64;
        // The key's sample bucket: all of the request or none of it enters.
        if let Some(k) = key {
            k.check_samples(accepted).map_err(|limited| rate_limited_status(&limited))?;
        }
        let m = &self.submitter.metrics;
        for (reason, n) in decoded.refused.iter() {
            m.dropped(reason, n);
        }
        let rejected = decoded.refused.total();
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
            Ok(_) => {
                if let Some(k) = key {
                    k.received(accepted);
                }
                Ok(WriteResponse { id, accepted, rejected, errors: decoded.errors })
            }
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
    async fn write(&self, request: Request<RawWriteRequest>) -> Result<Response<WriteResponse>, Status> {
        let key = request.extensions().get::<Principal>().cloned();
        self.handle(request.into_inner(), false, key.as_ref()).await.map(Response::new)
    }

    type WriteStreamStream = ResponseStream;

    async fn write_stream(
        &self,
        request: Request<Streaming<RawWriteRequest>>,
    ) -> Result<Response<Self::WriteStreamStream>, Status> {
        let key = request.extensions().get::<Principal>().cloned();
        let mut inbound = request.into_inner();
        // Small: a client that stops reading answers stops our reading requests.
        let (tx, rx) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            while let Some(next) = inbound.next().await {
                let answer = match next {
                    Ok(req) => service.handle(req, true, key.as_ref()).await,
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
/// readiness and port errors are known before anything else starts. The
/// service runs on the shared listener layer (timeouts, keep-alive,
/// connection age and bounds, TLS), with admission control in front:
/// memory pressure and `max_concurrent_requests` (a stream holds its turn
/// while open) are checked before a message is read.
pub async fn serve(
    listener: TcpListener,
    config: GrpcReceiverConfig,
    submitter: Submitter,
    options: ListenerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admission = Admission::new(
        config.max_concurrent_requests,
        submitter.max_wait,
        submitter.pressure.clone(),
        submitter.metrics.clone(),
    );
    let app = routes(&config, submitter)
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(admission, Admission::layer));
    crate::listener::serve(listener, app, options, shutdown).await
}

/// Every gRPC service of this receiver; further services are added here.
pub fn routes(config: &GrpcReceiverConfig, submitter: Submitter) -> tonic::service::Routes {
    let otlp =
        crate::proto::opentelemetry::proto::collector::metrics::v1::metrics_service_server::MetricsServiceServer::new(
            otlp::OtlpMetricsService {
                submitter: submitter.clone(),
                translator: crate::codecs::otlp::Translator::new(config.otlp.clone(), submitter.limits.clone()),
            },
        )
        .max_decoding_message_size(config.max_message_bytes)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let service = std::sync::Arc::new(IngestService { submitter });
    let ingest = IngestServer::new(service)
        .max_decoding_message_size(config.max_message_bytes)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tonic::service::Routes::new(ingest).add_service(otlp)
}
