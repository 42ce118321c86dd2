//! The HTTP side of network sinks: one `reqwest` client per sink (rustls,
//! connection pool, no redirects) and a target that posts a body with the
//! configured credentials and headers, and classifies the answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode, Url};

use super::classify::{MAX_ERROR_BODY, SendError, classify_status, classify_transport};
use super::config::{AuthConfig, RequestConfig, TENANT_HEADER};

/// `User-Agent` of every request tsrelay sends.
pub const USER_AGENT_VALUE: &str = concat!("tsrelay/", env!("CARGO_PKG_VERSION"));

/// Longest connect phase, whatever `request.timeout` is: a backend that does
/// not accept connections is retried sooner.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a success body is read so the connection can be reused.
const MAX_DRAINED_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("invalid url {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("cannot read {what} {path}: {source}")]
    ReadFile { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("invalid {what} in {path}: {source}")]
    Pem { what: &'static str, path: PathBuf, source: reqwest::Error },
    #[error("invalid header {name:?}: {message}")]
    Header { name: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

/// Checks that `url` is an absolute http(s) URL.
pub fn parse_url(url: &str) -> Result<Url, HttpSetupError> {
    let parsed = Url::parse(url).map_err(|e| HttpSetupError::Url { url: url.to_string(), message: e.to_string() })?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        _ => {
            Err(HttpSetupError::Url { url: url.to_string(), message: "expected http:// or https:// and a host".into() })
        }
    }
}

/// Builds the client of one sink; `resolve` turns config-relative paths into real ones.
pub fn build_client(
    config: &RequestConfig,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<reqwest::Client, HttpSetupError> {
    let read = |what: &'static str, p: &Path| {
        let path = resolve(p);
        std::fs::read(&path).map(|bytes| (bytes, path.clone())).map_err(|source| HttpSetupError::ReadFile {
            what,
            path,
            source,
        })
    };
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(USER_AGENT_VALUE)
        .connect_timeout(config.timeout.min(MAX_CONNECT_TIMEOUT))
        .pool_max_idle_per_host(config.max_in_flight())
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &config.tls.ca_file {
        let (pem, path) = read("CA file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| HttpSetupError::Pem {
            what: "CA certificates",
            path,
            source,
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&config.tls.cert_file, &config.tls.key_file) {
        let (mut pem, path) = read("client certificate", cert)?;
        let (key_pem, _) = read("client key", key)?;
        pem.push(b'\n');
        pem.extend_from_slice(&key_pem);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|source| HttpSetupError::Pem {
            what: "client certificate or key",
            path,
            source,
        })?;
        builder = builder.identity(identity);
    }
    if config.tls.insecure_skip_verify {
        tracing::warn!("request.tls.insecure_skip_verify is set: server certificates are not checked");
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(HttpSetupError::Client)
}

/// The headers of every request: the extra ones first, then credentials and
/// tenant, then the protocol's own, each replacing what came before — so
/// nothing configured can override what the protocol needs.
pub fn request_headers(
    config: &RequestConfig,
    protocol: &[(HeaderName, HeaderValue)],
) -> Result<HeaderMap, HttpSetupError> {
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let header_error = |message: String| HttpSetupError::Header { name: name.clone(), message };
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| header_error(e.to_string()))?;
        let v = HeaderValue::from_str(value).map_err(|e| header_error(e.to_string()))?;
        headers.insert(n, v);
    }
    if let Some(auth) = &config.auth {
        let credentials = match auth {
            AuthConfig::Basic { username, password } => basic_credentials(username, password),
            AuthConfig::Bearer { token } => format!("Bearer {token}"),
        };
        let mut v = HeaderValue::from_str(&credentials).map_err(|_| HttpSetupError::Header {
            name: "authorization".into(),
            message: "credentials contain characters not allowed in a header".into(),
        })?;
        v.set_sensitive(true);
        headers.insert(AUTHORIZATION, v);
    }
    if let Some(tenant) = &config.tenant {
        let v = HeaderValue::from_str(tenant)
            .map_err(|e| HttpSetupError::Header { name: TENANT_HEADER.into(), message: e.to_string() })?;
        headers.insert(HeaderName::from_static(TENANT_HEADER), v);
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    for (name, value) in protocol {
        headers.insert(name.clone(), value.clone());
    }
    Ok(headers)
}

/// Where a sink posts: client, URL and the full header set. Cheap to clone.
#[derive(Clone)]
pub struct HttpTarget {
    inner: Arc<TargetInner>,
}

struct TargetInner {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
}

impl HttpTarget {
    pub fn new(client: reqwest::Client, url: Url, headers: HeaderMap) -> Self {
        HttpTarget { inner: Arc::new(TargetInner { client, url, headers }) }
    }

    pub fn url(&self) -> &Url {
        &self.inner.url
    }

    /// One attempt: POST `body`; any 2xx is success, the rest is classified
    /// by the shared rules.
    pub fn post(&self, body: Bytes) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
        let answer = self.send(body, MAX_ERROR_BODY);
        async move {
            let answer = answer.await?;
            if answer.status.is_success() {
                return Ok(());
            }
            Err(classify_status(answer.status, &answer.headers, &answer.body, SystemTime::now()))
        }
    }

    /// One attempt: POST `body` and return whatever the backend answered, for
    /// sinks whose protocol reads more into an answer than the shared rules
    /// do. The body is kept up to `keep_body` bytes (more of a success body is
    /// read, so the connection can be reused). Only a transport failure is an
    /// error, classified by the shared rules.
    pub fn send(
        &self,
        body: Bytes,
        keep_body: usize,
    ) -> impl Future<Output = Result<HttpAnswer, SendError>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut request = reqwest::Request::new(Method::POST, inner.url.clone());
            *request.headers_mut() = inner.headers.clone();
            *request.body_mut() = Some(body.into());
            // The URL may carry credentials (InfluxDB's `u`/`p`): keep it out of messages.
            let mut response = inner.client.execute(request).await.map_err(|e| classify_transport(&e.without_url()))?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            let mut kept = Vec::new();
            let mut read = 0;
            let limit = if status.is_success() { MAX_DRAINED_BODY.max(keep_body) } else { keep_body };
            while read < limit {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        read += chunk.len();
                        let room = keep_body.saturating_sub(kept.len());
                        kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    }
                    _ => break,
                }
            }
            Ok(HttpAnswer { status, headers, body: kept })
        }
    }
}

/// A backend's answer to one request, its body cut to what the caller kept.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `Basic <base64(user:password)>`, the value of an `Authorization` header.
pub fn basic_credentials(username: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{username}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648), for basic credentials.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn protocol_headers_win_and_shared_ones_are_set() {
        let config = RequestConfig {
            auth: Some(AuthConfig::Basic { username: "user".into(), password: "pass".into() }),
            tenant: Some("team-a".into()),
            headers: [
                ("X-Env".to_string(), "prod".to_string()),
                ("Content-Type".to_string(), "text/plain".to_string()),
            ]
            .into_iter()
            .collect(),
            ..RequestConfig::default()
        };
        let protocol = [(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"))];
        let h = request_headers(&config, &protocol).unwrap();
        assert_eq!(h.get_all("content-type").iter().collect::<Vec<_>>(), vec!["application/x-protobuf"]);
        assert_eq!(h["authorization"], "Basic dXNlcjpwYXNz");
        assert_eq!(h["x-scope-orgid"], "team-a");
        assert_eq!(h["x-env"], "prod");
        assert_eq!(h["user-agent"], USER_AGENT_VALUE);
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(parse_url("http://127.0.0.1:9090/api/v1/write").is_ok());
        assert!(parse_url("https://prom.example/api/v1/write").is_ok());
        assert!(parse_url("127.0.0.1:9090/api/v1/write").is_err());
        assert!(parse_url("ftp://x/y").is_err());
    }
}
