//! `opentelemetry.proto.collector.metrics.v1.MetricsService/Export` on the
//! gRPC receiver's server. Refused points are reported in `partial_success`;
//! a full ingest queue answers `UNAVAILABLE` (OTLP's retryable code) with a
//! retry hint.

use tonic::{Request, Response, Status};

use crate::auth::{Principal, rate_limited_status};
use crate::codecs::otlp::Translator;
use crate::proto::opentelemetry::proto::collector::metrics::v1::metrics_service_server::MetricsService;
use crate::proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use crate::receivers::submit::{SubmitError, Submitter};

pub struct OtlpMetricsService {
    pub submitter: Submitter,
    pub translator: Translator,
}

#[tonic::async_trait]
impl MetricsService for OtlpMetricsService {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let key = request.extensions().get::<Principal>().cloned();
        let request = request.into_inner();
        let translated = self
            .translator
            .translate(&request, crate::model::now_ms())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        drop(request);
        let accepted = translated.samples.len() as u64;
        // The key's sample bucket (auth): all of the request or none of it enters.
        if let Some(k) = &key {
            k.check_samples(accepted).map_err(|limited| rate_limited_status(&limited))?;
        }
        translated.count_drops(&self.submitter.metrics);
        let partial_success = (translated.rejected_points > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: translated.rejected_points as i64,
            error_message: translated.error_message(),
        });
        match self.submitter.submit(translated.samples).await {
            Ok(_) => {
                if let Some(k) = &key {
                    k.received(accepted);
                }
                Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
            }
            Err(
                e @ (SubmitError::Full { .. }
                | SubmitError::MemoryPressure
                | SubmitError::ShuttingDown { .. }
                | SubmitError::Undelivered { .. }),
            ) => {
                let mut status = Status::unavailable(e.to_string());
                if let Ok(v) = self.submitter.max_wait.as_millis().max(100).to_string().parse() {
                    status.metadata_mut().insert("retry-after-ms", v);
                }
                Err(status)
            }
            Err(e @ SubmitError::AckTimeout(_)) => Err(Status::deadline_exceeded(e.to_string())),
        }
    }
}
