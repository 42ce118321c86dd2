//! The HTTP service: routes, body limits, gzip, and the answers of DESIGN §3–4.

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::HttpReceiverConfig;
use super::body::{BodyError, Encoding, WholeBody, plain_length_hint, read_streaming};
use super::decode::{BodyFormat, DecodedBody};
use crate::auth::{Principal, rate_limited_response};
use crate::codecs::stream::{LineStream, PieceDecoder, StreamedBody};
use crate::listener::{Admission, ListenerOptions};
use crate::pipeline::INGEST_BATCH_MAX_SAMPLES;
use crate::receivers::submit::{SubmitError, Submitter};
use crate::telemetry::DropReason;

struct AppState {
    submitter: Submitter,
    max_body_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct WriteParams {
    precision: Option<String>,
}

#[derive(Serialize)]
struct LineErrorBody {
    line: usize,
    message: String,
}

#[derive(Serialize)]
struct PartialWriteBody {
    accepted: u64,
    rejected: u64,
    errors: Vec<LineErrorBody>,
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody { error: message.into() })).into_response()
}

pub fn router(config: &HttpReceiverConfig, submitter: Submitter) -> Router {
    let remote_write = super::remote_write::routes(config, submitter.clone());
    let otlp = super::otlp::routes(config, submitter.clone());
    let state = Arc::new(AppState { submitter, max_body_bytes: config.max_body_bytes });
    Router::new()
        .route("/write", post(write_line_protocol))
        .route("/api/v2/write", post(write_line_protocol))
        .route("/api/v1/ingest", post(write_ndjson))
        // InfluxDB clients (the 1.x CLI, Telegraf) ping before they write.
        .route("/ping", axum::routing::get(ping).head(ping))
        // Bodies are read as they arrive by `read_streaming`, under max_body_bytes on the wire and after gunzip.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
        .merge(remote_write)
        .merge(otlp)
}

/// Serves until `shutdown` resolves, through the shared listener layer
/// (timeouts, connection bounds, TLS) with admission control in front of
/// every route: memory pressure and `max_concurrent_requests` are checked
/// before a body is read.
pub async fn serve(
    listener: TcpListener,
    config: HttpReceiverConfig,
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
    let app = router(&config, submitter).layer(axum::middleware::from_fn_with_state(admission, Admission::layer));
    crate::listener::serve(listener, app, options, shutdown).await
}

/// Paths of this receiver served without a key: InfluxDB's `/ping` carries none.
pub fn open_paths() -> Vec<String> {
    vec!["/ping".into()]
}

async fn ping() -> Response {
    (StatusCode::NO_CONTENT, [("x-influxdb-version", "1.8-compatible (tsrelay)")]).into_response()
}

async fn write_line_protocol(
    State(state): State<Arc<AppState>>,
    Query(params): Query<WriteParams>,
    key: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let format = match BodyFormat::line_protocol(params.precision.as_deref()) {
        Ok(f) => f,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    handle(&state, format, key.map(|k| k.0), &headers, body).await
}

async fn write_ndjson(
    State(state): State<Arc<AppState>>,
    key: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&state, BodyFormat::Ndjson, key.map(|k| k.0), &headers, body).await
}

async fn handle(
    state: &AppState,
    format: BodyFormat,
    key: Option<Principal>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let limits = &state.submitter.limits;
    // Decoded as it arrives, in parts of the pipeline's batch size: the text is never held
    // whole (see `LineStream`). The declared length of a body that is not gzipped sizes
    // the first part.
    let declared = plain_length_hint(headers, state.max_body_bytes);
    let (part, max) = (INGEST_BATCH_MAX_SAMPLES, state.max_body_bytes);
    let now_ms = crate::model::now_ms();
    let streamed = match format {
        BodyFormat::LineProtocol(precision) => {
            let now_ns = now_ms.saturating_mul(1_000_000);
            read_lines(body, headers, max, LineStream::line_protocol(precision, now_ns, limits, part, declared)).await
        }
        BodyFormat::Ndjson => read_lines(body, headers, max, LineStream::ndjson(now_ms, limits, part, declared)).await,
    };
    let decoded = match streamed {
        Ok(StreamedBody { parts, summary, errors }) => DecodedBody::new(parts, summary, &errors),
        Err(e) => return error(e.status(), e.to_string()),
    };
    let DecodedBody { parts, rejected_lines, unparsable_lines, refused, non_numeric, over_sample_limit, errors } =
        decoded;
    if over_sample_limit {
        let message = format!(
            "body holds more than {} samples (validate.max_samples_per_request of pipeline {}); \
             nothing was accepted: send it in smaller bodies",
            limits.max_samples,
            state.submitter.input.pipeline()
        );
        return error(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let accepted = parts.iter().map(|p| p.len() as u64).sum();
    // The key's sample bucket: all of the request or none of it enters.
    if let Some(k) = &key
        && let Err(limited) = k.check_samples(accepted)
    {
        return rate_limited_response(&limited);
    }
    let m = &state.submitter.metrics;
    m.dropped(DropReason::ParseError, unparsable_lines);
    m.dropped(DropReason::NonNumeric, non_numeric);
    for (reason, n) in refused.iter() {
        m.dropped(reason, n);
    }
    match state.submitter.submit_parts(parts).await {
        Ok(_) => {
            if let Some(k) = &key {
                k.received(accepted);
            }
        }
        Err(e @ (SubmitError::Full { .. } | SubmitError::MemoryPressure)) => {
            let retry_secs = state.submitter.max_wait.as_secs().max(1).to_string();
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            if let Ok(v) = HeaderValue::from_str(&retry_secs) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Err(e @ (SubmitError::ShuttingDown { .. } | SubmitError::Undelivered { .. })) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        Err(e @ SubmitError::AckTimeout(_)) => {
            return error(StatusCode::GATEWAY_TIMEOUT, e.to_string());
        }
    }
    if rejected_lines == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let body = PartialWriteBody {
        accepted,
        rejected: rejected_lines,
        errors: errors.into_iter().map(|(line, message)| LineErrorBody { line, message }).collect(),
    };
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

/// Reads a body of lines into `lines` as it arrives.
async fn read_lines<D: PieceDecoder>(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    mut lines: LineStream<D>,
) -> Result<StreamedBody, BodyError> {
    read_streaming(body, headers, max, |bytes| lines.push(bytes)).await?;
    Ok(lines.finish())
}

/// Applies `Content-Encoding`, keeping the size limit after decompression.
#[allow(clippy::result_large_err)]
pub(super) fn unpack(headers: &HeaderMap, body: WholeBody, max: usize) -> Result<WholeBody, Response> {
    match Encoding::of(headers) {
        Err(e) => Err(error(e.status(), e.to_string())),
        Ok(Encoding::Identity) => Ok(body),
        Ok(Encoding::Gzip) => {
            let mut out = WholeBody::buffer((body.len() * 4).min(max));
            let mut reader = flate2::read::MultiGzDecoder::new(&body[..]).take(max as u64 + 1);
            if let Err(e) = reader.read_to_end(&mut out) {
                return Err(error(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")));
            }
            if out.len() > max {
                return Err(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body exceeds max_body_bytes ({max} bytes) after gunzip"),
                ));
            }
            Ok(WholeBody::Pooled(out))
        }
    }
}
