//! `POST /api/v1/write`: Prometheus remote-write 1.0 and 2.0 in.
//!
//! The version comes from `Content-Type` (`application/x-protobuf`, with
//! `proto=io.prometheus.write.v2.Request` for 2.0; no `proto` or
//! `proto=prometheus.WriteRequest` is 1.0); anything else is `415`. The answers
//! follow the specification: `204` when everything was written, `400` for a
//! request that can never succeed (senders do not retry it), `413` over the
//! size limits, `503` with `Retry-After` when the ingest queue stays full. 2.0
//! answers carry the `X-Prometheus-Remote-Write-*-Written` counts.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::HttpReceiverConfig;
use super::answer::submit_error;
use crate::auth::{Principal, rate_limited_response};
use crate::codecs::remote_write::{DecodeLimits, Decoded, MetadataCache, v1, v2};
use crate::receivers::submit::Submitter;
use crate::telemetry::DropReason;

use super::body::read_whole;

const SAMPLES_WRITTEN: HeaderName = HeaderName::from_static("x-prometheus-remote-write-samples-written");
const HISTOGRAMS_WRITTEN: HeaderName = HeaderName::from_static("x-prometheus-remote-write-histograms-written");
const EXEMPLARS_WRITTEN: HeaderName = HeaderName::from_static("x-prometheus-remote-write-exemplars-written");

struct RemoteWriteState {
    submitter: Submitter,
    limits: DecodeLimits,
    metadata: MetadataCache,
    max_body_bytes: usize,
}

/// The remote-write route, with its own state and the receiver's body limit.
pub fn routes(config: &HttpReceiverConfig, submitter: Submitter) -> Router {
    let state = Arc::new(RemoteWriteState {
        limits: DecodeLimits::new(config.max_body_bytes, submitter.limits.clone()),
        submitter,
        metadata: MetadataCache::new(),
        max_body_bytes: config.max_body_bytes,
    });
    Router::new()
        .route("/api/v1/write", post(write))
        // Bodies are read by `read_whole` under max_body_bytes.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The protocol version named by `Content-Type`, or the `415` message.
fn version(headers: &HeaderMap) -> Result<Version, String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(Version::V1) };
    let text = value.to_str().map_err(|_| "Content-Type is not ASCII".to_string())?;
    let mut parts = text.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(format!(
            "unsupported Content-Type {text:?}: remote-write needs application/x-protobuf \
             (proto={} or {})",
            v1::MESSAGE,
            v2::MESSAGE
        ));
    }
    for param in parts {
        if let Some((key, value)) = param.split_once('=')
            && key.trim().eq_ignore_ascii_case("proto")
        {
            return match value.trim().trim_matches('"') {
                v1::MESSAGE => Ok(Version::V1),
                v2::MESSAGE => Ok(Version::V2),
                other => Err(format!(
                    "unsupported remote-write message proto={other:?}; this receiver speaks {} and {}",
                    v1::MESSAGE,
                    v2::MESSAGE
                )),
            };
        }
    }
    Ok(Version::V1)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn write(
    State(state): State<Arc<RemoteWriteState>>,
    key: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let version = match version(&headers) {
        Ok(v) => v,
        Err(message) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
    };
    let body = match read_whole(body, &headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return text(e.status(), e.to_string()),
    };
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or("?").trim();
        if !encoding.eq_ignore_ascii_case("snappy") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {encoding:?}: remote-write bodies are snappy"),
            );
        }
    }
    let decoded = match version {
        Version::V1 => v1::decode(&body, crate::model::now_ms(), &state.limits, &state.metadata),
        Version::V2 => v2::decode(&body, crate::model::now_ms(), &state.limits, &state.metadata),
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(e) if e.is_too_large() => return text(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Decoded { samples, histograms, exemplars, .. } = &decoded;
    let (histograms, exemplars) = (*histograms, *exemplars);
    let written = samples.len() as u64;
    // The key's sample bucket (auth): all of the request or none of it enters.
    if let Some(Extension(k)) = &key
        && let Err(limited) = k.check_samples(written)
    {
        return rate_limited_response(&limited);
    }
    let m = &state.submitter.metrics;
    for (reason, n) in decoded.refused.iter() {
        m.dropped(reason, n);
    }
    m.dropped(DropReason::UnsupportedHistogram, histograms);
    m.dropped(DropReason::Exemplar, exemplars);
    let rejected = decoded.rejected();
    let errors = decoded.errors.join("; ");
    if let Err(e) = state.submitter.submit(decoded.samples).await {
        return submit_error(e, state.submitter.max_wait);
    }
    if let Some(Extension(k)) = &key {
        k.received(written);
    }
    let mut resp = if rejected == 0 {
        StatusCode::NO_CONTENT.into_response()
    } else {
        text(StatusCode::BAD_REQUEST, format!("{written} samples written, {rejected} refused: {errors}"))
    };
    if version == Version::V2 {
        let h = resp.headers_mut();
        h.insert(SAMPLES_WRITTEN, HeaderValue::from(written));
        h.insert(HISTOGRAMS_WRITTEN, HeaderValue::from(0u64));
        h.insert(EXEMPLARS_WRITTEN, HeaderValue::from(0u64));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn content_type_picks_the_version() {
        assert_eq!(version(&HeaderMap::new()), Ok(Version::V1));
        assert_eq!(version(&with_type("application/x-protobuf")), Ok(Version::V1));
        assert_eq!(version(&with_type("application/x-protobuf;proto=prometheus.WriteRequest")), Ok(Version::V1));
        assert_eq!(
            version(&with_type("application/x-protobuf; proto=io.prometheus.write.v2.Request")),
            Ok(Version::V2)
        );
        assert!(version(&with_type("application/x-protobuf;proto=io.prometheus.write.v3.Request")).is_err());
        assert!(version(&with_type("application/json")).is_err());
    }
}
