//! One remote-write attempt: POST the encoded body with its version's
//! headers, and read the answer. Remote-write says a receiver answers 2xx on
//! success, 5xx (and 429) when a retry may succeed, and other 4xx when the
//! data itself is refused (Prometheus: out of order, duplicate, out of
//! bounds) — exactly the shared rules of [`crate::sinks::common::classify`].
//! A 2.0 answer also says how many samples were written
//! (`X-Prometheus-Remote-Write-Samples-Written`); fewer than sent counts the
//! rest as refused. With `protocol = "auto"` a receiver that does not speak
//! 2.0 gets the same request again as 1.0 (see [`super::protocol`]).

use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};

use super::encode_v2::to_v1;
use super::protocol::{Negotiated, Protocol, RwRequest};
use crate::sinks::common::classify::{MAX_ERROR_BODY, classify_status};
use crate::sinks::common::{HttpTarget, SendError, USER_AGENT_VALUE, Written};

/// The remote-write protocol versions this sink speaks.
pub const PROTOCOL_VERSION: &str = "0.1.0";
pub const PROTOCOL_VERSION_V2: &str = "2.0.0";
const VERSION_HEADER: &str = "x-prometheus-remote-write-version";
const SAMPLES_WRITTEN: &str = "x-prometheus-remote-write-samples-written";
const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// Headers the protocol fixes; `request.headers` cannot override them.
pub const PROTOCOL_HEADER_NAMES: [&str; 4] = ["content-encoding", "content-type", VERSION_HEADER, "user-agent"];

/// The headers every remote-write 1.0 request carries.
pub fn protocol_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        (CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf")),
        (HeaderName::from_static(VERSION_HEADER), HeaderValue::from_static(PROTOCOL_VERSION)),
        (USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE)),
    ]
}

/// The headers every remote-write 2.0 request carries.
pub fn protocol_headers_v2() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        (CONTENT_TYPE, HeaderValue::from_static(V2_CONTENT_TYPE)),
        (HeaderName::from_static(VERSION_HEADER), HeaderValue::from_static(PROTOCOL_VERSION_V2)),
        (USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE)),
    ]
}

/// What the receiver said it wrote.
#[derive(Debug, Default)]
pub struct WriteOutcome {
    pub refused: usize,
    pub message: String,
}

impl Written for WriteOutcome {
    fn refused(&self) -> Option<(usize, &str)> {
        (self.refused > 0).then_some((self.refused, self.message.as_str()))
    }
}

/// The innermost service of the sink's stack.
#[derive(Clone)]
pub struct RemoteWriteService {
    v1: HttpTarget,
    v2: HttpTarget,
    protocol: Protocol,
    negotiated: Negotiated,
}

impl RemoteWriteService {
    pub fn new(v1: HttpTarget, v2: HttpTarget, protocol: Protocol, negotiated: Negotiated) -> Self {
        RemoteWriteService { v1, v2, protocol, negotiated }
    }
}

impl tower::Service<RwRequest> for RemoteWriteService {
    type Response = WriteOutcome;
    type Error = SendError;
    type Future = BoxFuture<'static, Result<WriteOutcome, SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: RwRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if !request.v2 {
                return this.v1.post(request.body).await.map(|()| WriteOutcome::default());
            }
            let auto = this.protocol == Protocol::Auto;
            let answer = this.v2.send(request.body.clone(), MAX_ERROR_BODY).await?;
            let written = answer
                .headers
                .get(SAMPLES_WRITTEN)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            let speaks_v2 = match (answer.status.is_success(), written) {
                (_, _) if answer.status == StatusCode::UNSUPPORTED_MEDIA_TYPE => false,
                (true, None) => false,
                _ => true,
            };
            if auto && !speaks_v2 {
                this.negotiated.fall_back();
                let body = to_v1(&request.body).map_err(|e| SendError::Rejected {
                    status: None,
                    message: format!("cannot re-encode the 2.0 request as 1.0: {e}"),
                })?;
                return this.v1.post(Bytes::from(body)).await.map(|()| WriteOutcome::default());
            }
            if !answer.status.is_success() {
                return Err(classify_status(answer.status, &answer.headers, &answer.body, SystemTime::now()));
            }
            match written {
                Some(w) if w < request.samples => Ok(WriteOutcome {
                    refused: request.samples - w,
                    message: format!(
                        "receiver wrote {w} of {} samples: {}",
                        request.samples,
                        String::from_utf8_lossy(&answer.body)
                    ),
                }),
                // protocol = "2.0" against a receiver that gives no count: taken as written.
                Some(_) | None => Ok(WriteOutcome::default()),
            }
        })
    }
}
