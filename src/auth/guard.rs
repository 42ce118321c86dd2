//! The check in front of a listener: a key (or a mapped client certificate),
//! its scope and pipeline, its request rate; and the answers when it fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::credentials::presented_key;
use super::keys::Scope;
use super::store::{KeyStore, Principal, RateLimited};
use crate::listener::{ConnInfo, is_grpc};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    #[error("no API key: send Authorization: Bearer <key> (or Token, basic auth, u/p)")]
    Missing,
    #[error("invalid Authorization: {0}")]
    Malformed(&'static str),
    #[error("unknown or revoked API key")]
    Invalid,
    #[error("key {key} lacks the {scope} scope")]
    Scope { key: String, scope: &'static str },
    #[error("key {key} may not feed pipeline {pipeline}")]
    Pipeline { key: String, pipeline: String },
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
}

impl Denied {
    fn reason(&self) -> &'static str {
        match self {
            Denied::Missing => "missing",
            Denied::Malformed(_) => "malformed",
            Denied::Invalid => "invalid",
            Denied::Scope { .. } => "scope",
            Denied::Pipeline { .. } => "pipeline",
            Denied::RateLimited(_) => "rate_limited",
        }
    }

    /// 401 / `UNAUTHENTICATED`, 403 / `PERMISSION_DENIED`, 429 / `RESOURCE_EXHAUSTED`.
    pub fn response(&self, grpc: bool) -> Response {
        match self {
            Denied::RateLimited(r) => {
                if grpc {
                    rate_limited_status(r).into_http::<Body>()
                } else {
                    rate_limited_response(r)
                }
            }
            Denied::Missing | Denied::Malformed(_) | Denied::Invalid => {
                if grpc {
                    return tonic::Status::unauthenticated(self.to_string()).into_http::<Body>();
                }
                let mut resp = json_error(StatusCode::UNAUTHORIZED, self.to_string());
                let h = resp.headers_mut();
                h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tsrelay\""));
                h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"tsrelay\""));
                resp
            }
            Denied::Scope { .. } | Denied::Pipeline { .. } => {
                if grpc {
                    return tonic::Status::permission_denied(self.to_string()).into_http::<Body>();
                }
                json_error(StatusCode::FORBIDDEN, self.to_string())
            }
        }
    }
}

fn json_error(code: StatusCode, message: String) -> Response {
    (code, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// A key over its rate: `429` with `Retry-After` (whole seconds, at least 1);
/// a request larger than the key's burst: `413`.
pub fn rate_limited_response(r: &RateLimited) -> Response {
    match r {
        RateLimited::Wait { retry_after, .. } => {
            let mut resp = json_error(StatusCode::TOO_MANY_REQUESTS, r.to_string());
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        RateLimited::TooLarge { .. } => json_error(StatusCode::PAYLOAD_TOO_LARGE, r.to_string()),
    }
}

/// The gRPC form: `RESOURCE_EXHAUSTED`, with `retry-after-ms` when waiting helps.
pub fn rate_limited_status(r: &RateLimited) -> tonic::Status {
    let mut status = tonic::Status::resource_exhausted(r.to_string());
    if let RateLimited::Wait { retry_after, .. } = r
        && let Ok(v) = retry_after.as_millis().max(1).to_string().parse()
    {
        status.metadata_mut().insert("retry-after-ms", v);
    }
    status
}

/// One listener's check; cheap to clone.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<KeyStore>,
    client_certs: BTreeMap<String, String>,
    listener: String,
    scope: Scope,
    /// The pipeline a receiver feeds; `None` for admin and query.
    pipeline: Option<String>,
    /// Paths served without a key (`/healthz`, `/ping`...).
    open_paths: Vec<String>,
}

impl Guard {
    pub fn new(
        store: Arc<KeyStore>,
        client_certs: BTreeMap<String, String>,
        listener: &str,
        scope: Scope,
        pipeline: Option<String>,
        open_paths: Vec<String>,
    ) -> Guard {
        Guard {
            inner: Arc::new(Inner { store, client_certs, listener: listener.to_string(), scope, pipeline, open_paths }),
        }
    }

    /// Who the request is, and whether it may go on.
    pub fn check(&self, req: &Request) -> Result<Principal, Denied> {
        let i = &self.inner;
        let principal = match presented_key(req.headers(), req.uri().query()).map_err(Denied::Malformed)? {
            Some(key) => i.store.lookup(&key).ok_or(Denied::Invalid)?,
            None => {
                let cn = req
                    .extensions()
                    .get::<ConnInfo>()
                    .and_then(|c| c.client.as_ref())
                    .and_then(|c| c.common_name.as_deref());
                let name = cn.and_then(|cn| i.client_certs.get(cn)).ok_or(Denied::Missing)?;
                i.store.by_name(name).ok_or(Denied::Invalid)?
            }
        };
        if !principal.has_scope(i.scope) {
            return Err(Denied::Scope { key: principal.name.to_string(), scope: i.scope.as_str() });
        }
        if let Some(p) = &i.pipeline
            && !principal.may_feed(p)
        {
            return Err(Denied::Pipeline { key: principal.name.to_string(), pipeline: p.clone() });
        }
        principal.check_request()?;
        Ok(principal)
    }

    /// The middleware: `router.layer(axum::middleware::from_fn_with_state(guard, Guard::layer))`.
    pub async fn layer(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
        if guard.inner.open_paths.iter().any(|p| p == req.uri().path()) {
            return next.run(req).await;
        }
        match guard.check(&req) {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                next.run(req).await
            }
            Err(denied) => {
                if !matches!(denied, Denied::RateLimited(_)) {
                    crate::telemetry::auth_failures(&guard.inner.listener, denied.reason()).increment(1);
                }
                tracing::debug!(listener = %guard.inner.listener, reason = denied.reason(), "request refused: {denied}");
                let mut resp = denied.response(is_grpc(req.headers()));
                if from_script(req.headers()) {
                    // A page's own fetch (the console): a Basic challenge would make the
                    // browser open its password prompt instead of letting the page ask.
                    let unauthorized = resp.status() == StatusCode::UNAUTHORIZED;
                    let h = resp.headers_mut();
                    h.remove(header::WWW_AUTHENTICATE);
                    if unauthorized {
                        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tsrelay\""));
                    }
                }
                resp
            }
        }
    }
}

/// `X-Requested-With: XMLHttpRequest`: the request comes from a script that asks
/// for the key itself (the web console), not from a browser navigating.
fn from_script(headers: &axum::http::HeaderMap) -> bool {
    headers.get("x-requested-with").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"))
}
