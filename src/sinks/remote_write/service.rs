//! One remote-write attempt: POST the encoded body with the protocol's
//! headers, and read the answer. Remote-write 1.0 says a receiver answers 2xx
//! on success, 5xx (and 429) when a retry may succeed, and other 4xx when the
//! data itself is refused (Prometheus: out of order, duplicate, out of
//! bounds) — exactly the shared rules of [`crate::sinks::common::classify`].

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};

use crate::sinks::common::{HttpTarget, SendError, USER_AGENT_VALUE};

/// The remote-write protocol version this sink speaks.
pub const PROTOCOL_VERSION: &str = "0.1.0";
const VERSION_HEADER: &str = "x-prometheus-remote-write-version";

/// Headers the protocol fixes; `request.headers` cannot override them.
pub const PROTOCOL_HEADER_NAMES: [&str; 4] = ["content-encoding", "content-type", VERSION_HEADER, "user-agent"];

/// The headers every remote-write request carries.
pub fn protocol_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (CONTENT_ENCODING, HeaderValue::from_static("snappy")),
        (CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf")),
        (HeaderName::from_static(VERSION_HEADER), HeaderValue::from_static(PROTOCOL_VERSION)),
        (USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE)),
    ]
}

/// The innermost service of the sink's stack.
#[derive(Clone)]
pub struct RemoteWriteService {
    target: HttpTarget,
}

impl RemoteWriteService {
    pub fn new(target: HttpTarget) -> Self {
        RemoteWriteService { target }
    }
}

impl tower::Service<Bytes> for RemoteWriteService {
    type Response = ();
    type Error = SendError;
    type Future = BoxFuture<'static, Result<(), SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, body: Bytes) -> Self::Future {
        Box::pin(self.target.post(body))
    }
}
