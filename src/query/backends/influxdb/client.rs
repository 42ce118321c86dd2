//! One InfluxQL statement over HTTP: `POST /query` with `db`, `epoch=ms` and
//! the statement as a form body, the sink's credentials and TLS settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::query::backends::BackendError;
use crate::sinks::common::http::{HttpSetupError, build_client, parse_url, request_headers};
use crate::sinks::influxdb::InfluxdbSinkConfig;
use crate::sinks::influxdb::config::V1Auth;

/// Largest answer read; a bigger one fails the render (ask for fewer points).
pub const MAX_ANSWER_BYTES: usize = 256 * 1024 * 1024;
/// How much of an error answer is quoted in the message.
const MAX_QUOTED_BYTES: usize = 512;

/// The HTTP side of the InfluxDB driver.
#[derive(Clone)]
pub struct QueryClient {
    backend: String,
    client: reqwest::Client,
    url: Url,
    /// `db`, `epoch`, and `u`/`p` when the sink sends credentials as parameters.
    params: Vec<(String, String)>,
    headers: HeaderMap,
    timeout: Duration,
    /// `tsrelay_query_backend_requests_total{backend}`.
    requests: metrics::Counter,
}

impl QueryClient {
    /// `base_dir`: where relative paths of the sink's settings (TLS files) start.
    pub fn new(backend: &str, config: &InfluxdbSinkConfig, base_dir: &Path) -> Result<QueryClient, HttpSetupError> {
        let mut url = parse_url(&config.url)?;
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| HttpSetupError::Url { url: config.url.clone(), message: "cannot be a base".into() })?;
            segments.pop_if_empty().push("query");
        }
        let resolve = |p: &Path| -> PathBuf { if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) } };
        let client = build_client(&config.request, &resolve)?;
        let mut headers = request_headers(&config.request, &[])?;
        if let Some(credentials) = config.authorization() {
            let mut v = HeaderValue::from_str(&credentials).map_err(|_| HttpSetupError::Header {
                name: "authorization".into(),
                message: "credentials contain characters not allowed in a header".into(),
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let mut params = vec![("epoch".to_string(), "ms".to_string())];
        if let Some(db) = &config.database {
            params.push(("db".into(), db.clone()));
        }
        if let (V1Auth::Query, Some(u), Some(p)) = (config.auth, &config.username, &config.password) {
            params.push(("u".into(), u.clone()));
            params.push(("p".into(), p.clone()));
        }
        Ok(QueryClient {
            backend: backend.to_string(),
            client,
            url,
            params,
            headers,
            timeout: config.request.timeout,
            requests: crate::telemetry::query_backend_requests(backend),
        })
    }

    /// `scheme://host:port/query`, for messages (no credentials).
    pub fn target(&self) -> String {
        self.url.to_string()
    }

    /// Runs `statement`; returns the answer's body (status 200).
    pub async fn query(&self, statement: &str) -> Result<Vec<u8>, BackendError> {
        let backend = &self.backend;
        let mut form: Vec<(&str, &str)> = self.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        form.push(("q", statement));
        self.requests.increment(1);
        let send = self.client.post(self.url.clone()).headers(self.headers.clone()).form(&form).send();
        let mut response = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(BackendError::Timeout { backend: backend.clone(), after: self.timeout }),
            Ok(Err(e)) if e.is_timeout() => {
                return Err(BackendError::Timeout { backend: backend.clone(), after: self.timeout });
            }
            Ok(Err(e)) => {
                return Err(BackendError::Unreachable {
                    backend: backend.clone(),
                    target: self.target(),
                    message: error_chain(&e.without_url()),
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let mut body = Vec::new();
        let read = async {
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Ok::<bool, reqwest::Error>(false);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(true)
        };
        match tokio::time::timeout(self.timeout, read).await {
            Err(_) => return Err(BackendError::Timeout { backend: backend.clone(), after: self.timeout }),
            Ok(Err(e)) => {
                return Err(BackendError::BadResponse {
                    backend: backend.clone(),
                    message: format!("reading the answer: {}", error_chain(&e.without_url())),
                });
            }
            Ok(Ok(false)) => {
                return Err(BackendError::BadResponse {
                    backend: backend.clone(),
                    message: format!("the answer is over {MAX_ANSWER_BYTES} bytes; ask for fewer series or points"),
                });
            }
            Ok(Ok(true)) => {}
        }
        // InfluxDB answers 400 with a JSON error for a statement it cannot parse
        // and 200 with a per-statement error otherwise; both are read by the parser.
        if status == StatusCode::OK || (status == StatusCode::BAD_REQUEST && body.starts_with(b"{")) {
            return Ok(body);
        }
        Err(BackendError::Status { backend: backend.clone(), status: status.as_u16(), body: quote(&body) })
    }
}

/// The start of a body, as text, for an error message.
pub fn quote(body: &[u8]) -> String {
    let cut = body.len().min(MAX_QUOTED_BYTES);
    let mut text = String::from_utf8_lossy(&body[..cut]).trim().to_string();
    if body.len() > cut {
        text.push('…');
    }
    text
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
