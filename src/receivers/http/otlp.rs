//! `POST /v1/metrics`: OTLP/HTTP metrics, protobuf (`application/x-protobuf`)
//! or JSON (`application/json`), gzip or not. The answer is an
//! `ExportMetricsServiceResponse` in the request's encoding, with
//! `partial_success` when points were refused; `400` (a `google.rpc.Status`)
//! when the body cannot be read, `415` for another content type, `413` over
//! the size limits, `503` with `Retry-After` under backpressure.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;

use super::HttpReceiverConfig;
use super::answer::submit_error;
use crate::auth::{Principal, rate_limited_response};
use crate::codecs::otlp::{self, Translator};
use crate::proto::opentelemetry::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use crate::receivers::submit::Submitter;

struct OtlpState {
    submitter: Submitter,
    translator: Translator,
    max_body_bytes: usize,
}

pub fn routes(config: &HttpReceiverConfig, submitter: Submitter) -> Router {
    let state = Arc::new(OtlpState {
        translator: Translator::new(config.otlp.clone(), submitter.limits.clone()),
        submitter,
        max_body_bytes: config.max_body_bytes,
    });
    Router::new()
        .route("/v1/metrics", post(export))
        // Bodies are read by `read_whole` under max_body_bytes (gunzip is checked separately).
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn reply(encoding: Encoding, status: StatusCode, body: Vec<u8>) -> Response {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn failure(encoding: Encoding, status: StatusCode, message: String) -> Response {
    // gRPC's INVALID_ARGUMENT, as OTLP/HTTP asks.
    let body = match encoding {
        Encoding::Protobuf => RpcStatus { code: 3, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({"code": 3, "message": message}).to_string().into_bytes(),
    };
    reply(encoding, status, body)
}

async fn export(
    State(state): State<Arc<OtlpState>>,
    key: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let encoding = match ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "application/x-protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        _ => {
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type {ct:?}: OTLP/HTTP takes application/x-protobuf or application/json"),
            )
                .into_response();
        }
    };
    let body = match super::body::read_whole(body, &headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return failure(encoding, e.status(), e.to_string()),
    };
    let body = match super::server::unpack(&headers, body, state.max_body_bytes) {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let request = match encoding {
        Encoding::Protobuf => otlp::decode_protobuf(&body),
        Encoding::Json => otlp::decode_json(&body),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return failure(encoding, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let translated = match state.translator.translate(&request, crate::model::now_ms()) {
        Ok(t) => t,
        Err(e) => return failure(encoding, StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
    };
    drop(request);
    let accepted = translated.samples.len() as u64;
    // The key's sample bucket (auth): all of the request or none of it enters.
    if let Some(Extension(k)) = &key
        && let Err(limited) = k.check_samples(accepted)
    {
        return rate_limited_response(&limited);
    }
    translated.count_drops(&state.submitter.metrics);
    let partial = (translated.rejected_points > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: translated.rejected_points as i64,
        error_message: translated.error_message(),
    });
    if let Err(e) = state.submitter.submit(translated.samples).await {
        return submit_error(e, state.submitter.max_wait);
    }
    if let Some(Extension(k)) = &key {
        k.received(accepted);
    }
    let body = match encoding {
        Encoding::Protobuf => ExportMetricsServiceResponse { partial_success: partial }.encode_to_vec(),
        Encoding::Json => match partial {
            Some(p) => serde_json::json!({"partialSuccess": {
                "rejectedDataPoints": p.rejected_data_points.to_string(),
                "errorMessage": p.error_message,
            }}),
            None => serde_json::json!({}),
        }
        .to_string()
        .into_bytes(),
    };
    reply(encoding, StatusCode::OK, body)
}
