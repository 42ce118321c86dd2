//! One InfluxDB write request: built from the config, sent, and its answer
//! classified as written / rejected / database missing / too large / retry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url};

use super::config::{ApiVersion, InfluxdbSinkConfig, V1Auth};
use crate::sinks::retry::{Attempt, parse_retry_after};
use crate::telemetry::SinkMetrics;

/// The most of a server's error body kept for the log.
const MAX_LOGGED_BODY: usize = 512;

/// A final answer to one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: every line was written.
    Written,
    /// 400 partial write: the server wrote all but `dropped` lines.
    PartlyWritten { dropped: usize, message: String },
    /// Refused for good (400, 401, 403, other 4xx): resending cannot help.
    Rejected(String),
    /// v1 `404 database not found`.
    DatabaseNotFound(String),
    /// 413: the body is over the server's limit.
    TooLarge,
}

/// Builds and sends requests for one sink.
pub struct InfluxdbService {
    client: Client,
    write_url: Url,
    /// v1 only: where `CREATE DATABASE` goes.
    query_url: Url,
    database: Option<String>,
    basic_auth: Option<(String, String)>,
    /// v2: `Token <token>`.
    authorization: Option<String>,
    gzip: bool,
    api: ApiVersion,
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceBuildError {
    #[error("url {url:?} is not a valid URL: {message}")]
    Url { url: String, message: String },
    #[error("cannot read tls.ca_file {path}: {source}")]
    CaFile { path: String, source: std::io::Error },
    #[error("tls.ca_file {path} holds no usable PEM certificate: {source}")]
    CaPem { path: String, source: reqwest::Error },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
}

impl InfluxdbService {
    /// `ca_file` is `tls.ca_file` already resolved against the config file.
    pub fn new(config: &InfluxdbSinkConfig, ca_file: Option<std::path::PathBuf>) -> Result<Self, ServiceBuildError> {
        let base = config.url.trim_end_matches('/');
        let parse = |path: &str| {
            Url::parse(&format!("{base}{path}"))
                .map_err(|e| ServiceBuildError::Url { url: config.url.clone(), message: e.to_string() })
        };
        let mut write_url = match config.api {
            ApiVersion::V1 => parse("/write")?,
            ApiVersion::V2 => parse("/api/v2/write")?,
        };
        let query_url = parse("/query")?;
        let mut authorization = None;
        let mut basic = None;
        {
            let mut q = write_url.query_pairs_mut();
            match config.api {
                ApiVersion::V1 => {
                    q.append_pair("db", config.database.as_deref().unwrap_or_default());
                    if let Some(rp) = &config.rp {
                        q.append_pair("rp", rp);
                    }
                    if let (Some(u), Some(p)) = (&config.username, &config.password) {
                        match config.auth {
                            V1Auth::Query => {
                                q.append_pair("u", u);
                                q.append_pair("p", p);
                            }
                            V1Auth::Basic => basic = Some((u.clone(), p.clone())),
                        }
                    }
                }
                ApiVersion::V2 => {
                    q.append_pair("org", config.org.as_deref().unwrap_or_default());
                    q.append_pair("bucket", config.bucket.as_deref().unwrap_or_default());
                    authorization = config.token.as_ref().map(|t| format!("Token {t}"));
                }
            }
            q.append_pair("precision", "ns");
        }
        let mut builder =
            Client::builder().timeout(config.timeout).connect_timeout(config.timeout.min(Duration::from_secs(10)));
        if let Some(path) = ca_file {
            let pem = std::fs::read(&path)
                .map_err(|source| ServiceBuildError::CaFile { path: path.display().to_string(), source })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|source| ServiceBuildError::CaPem { path: path.display().to_string(), source })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        if config.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(ServiceBuildError::Client)?;
        Ok(InfluxdbService {
            client,
            write_url,
            query_url,
            database: config.database.clone(),
            basic_auth: basic,
            authorization,
            gzip: config.gzip,
            api: config.api,
        })
    }

    pub fn write_url(&self) -> &Url {
        &self.write_url
    }

    /// One attempt at writing `body` (already gzipped when `gzip` is on).
    pub async fn write(&self, body: Bytes, metrics: &SinkMetrics) -> Attempt<Answer> {
        let mut req = self.client.post(self.write_url.clone()).header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if self.gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        if let Some(a) = &self.authorization {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some((u, p)) = &self.basic_auth {
            req = req.basic_auth(u, Some(p));
        }
        let started = Instant::now();
        metrics.in_flight_requests.increment(1.0);
        let result = req.body(body).send().await;
        let answer = match result {
            Err(e) => {
                Attempt::Retry { after: None, message: format!("POST {}: {}", self.redacted_url(), error_chain(&e)) }
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body = resp.text().await.unwrap_or_default();
                classify(self.api, status, retry_after.as_deref(), &body)
            }
        };
        metrics.in_flight_requests.decrement(1.0);
        metrics.request_duration.record(started.elapsed().as_secs_f64());
        answer
    }

    /// v1: `CREATE DATABASE` (idempotent on the server).
    pub async fn create_database(&self) -> Attempt<Result<(), String>> {
        let db = self.database.as_deref().unwrap_or_default();
        let q = format!("CREATE DATABASE \"{}\"", db.replace('\\', "\\\\").replace('"', "\\\""));
        let mut req = self.client.post(self.query_url.clone()).query(&[("q", q.as_str())]);
        if let Some((u, p)) = &self.basic_auth {
            req = req.basic_auth(u, Some(p));
        }
        // Credentials in the query string go along too (auth = "query").
        for (k, v) in self.write_url.query_pairs() {
            if k == "u" || k == "p" {
                req = req.query(&[(k.as_ref(), v.as_ref())]);
            }
        }
        match req.send().await {
            Err(e) => Attempt::Retry { after: None, message: format!("CREATE DATABASE {db:?}: {}", error_chain(&e)) },
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                if status.is_success() && !body.contains("\"error\"") {
                    Attempt::Done(Ok(()))
                } else if status.is_server_error() {
                    Attempt::Retry {
                        after: None,
                        message: format!("CREATE DATABASE {db:?}: {status}: {}", clip(&body)),
                    }
                } else {
                    Attempt::Done(Err(format!("CREATE DATABASE {db:?}: {status}: {}", clip(&body))))
                }
            }
        }
    }

    /// The write URL without credentials, for logs.
    fn redacted_url(&self) -> String {
        let mut u = self.write_url.clone();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| (k.to_string(), if k == "p" { "***".to_string() } else { v.to_string() }))
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    }
}

/// Sorts an answer into final or transient (DESIGN §2: retry connection
/// errors, timeouts, 408, 429 and 5xx except 501; never other 4xx).
pub fn classify(api: ApiVersion, status: StatusCode, retry_after: Option<&str>, body: &str) -> Attempt<Answer> {
    let code = status.as_u16();
    let message = || format!("{status}: {}", clip(body));
    match code {
        200..=299 => Attempt::Done(Answer::Written),
        400 => match partial_write_dropped(body) {
            Some(dropped) => Attempt::Done(Answer::PartlyWritten { dropped, message: message() }),
            None => Attempt::Done(Answer::Rejected(message())),
        },
        404 if api == ApiVersion::V1 && body.contains("database not found") => {
            Attempt::Done(Answer::DatabaseNotFound(message()))
        }
        413 => Attempt::Done(Answer::TooLarge),
        408 | 429 | 500 | 502..=599 => {
            Attempt::Retry { after: retry_after.and_then(parse_retry_after), message: message() }
        }
        _ => Attempt::Done(Answer::Rejected(message())),
    }
}

/// The lines a 1.x partial write refused: those it could not parse (each
/// named by an `unable to parse` message) plus `dropped=N` (parsed but refused,
/// e.g. a field type conflict). The other lines were written.
fn partial_write_dropped(body: &str) -> Option<usize> {
    if !body.contains("partial write") {
        return None;
    }
    let at = body.rfind("dropped=")? + "dropped=".len();
    let digits: String = body[at..].chars().take_while(char::is_ascii_digit).collect();
    let dropped: usize = digits.parse().ok()?;
    Some(dropped + body.matches("unable to parse '").count())
}

fn clip(body: &str) -> &str {
    let body = body.trim();
    if body.len() <= MAX_LOGGED_BODY {
        return body;
    }
    let mut end = MAX_LOGGED_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// An error with its causes (reqwest hides the interesting part in `source`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(a: Attempt<Answer>) -> Answer {
        match a {
            Attempt::Done(a) => a,
            Attempt::Retry { message, .. } => panic!("expected a final answer, got retry: {message}"),
        }
    }

    #[test]
    fn answers_are_classified() {
        let v1 = ApiVersion::V1;
        assert_eq!(done(classify(v1, StatusCode::NO_CONTENT, None, "")), Answer::Written);
        let conflict = r#"{"error":"partial write: field type conflict: input field \"value\" on measurement \"m\" is type float, already exists as type integer dropped=2"}"#;
        assert!(matches!(
            done(classify(v1, StatusCode::BAD_REQUEST, None, conflict)),
            Answer::PartlyWritten { dropped: 2, .. }
        ));
        assert!(matches!(done(classify(v1, StatusCode::BAD_REQUEST, None, "unable to parse")), Answer::Rejected(_)));
        let unparsable = r#"{"error":"partial write: unable to parse 'a,h=x\\ v=1 1': invalid tag format\nunable to parse 'a,h=y\\ v=1 2': invalid tag format dropped=1"}"#;
        assert!(matches!(
            done(classify(v1, StatusCode::BAD_REQUEST, None, unparsable)),
            Answer::PartlyWritten { dropped: 3, .. }
        ));
        let missing = r#"{"error":"database not found: \"x\""}"#;
        assert!(matches!(done(classify(v1, StatusCode::NOT_FOUND, None, missing)), Answer::DatabaseNotFound(_)));
        assert!(matches!(done(classify(ApiVersion::V2, StatusCode::NOT_FOUND, None, missing)), Answer::Rejected(_)));
        assert_eq!(done(classify(v1, StatusCode::PAYLOAD_TOO_LARGE, None, "")), Answer::TooLarge);
        assert!(matches!(done(classify(v1, StatusCode::UNAUTHORIZED, None, "")), Answer::Rejected(_)));
        assert!(matches!(done(classify(v1, StatusCode::NOT_IMPLEMENTED, None, "")), Answer::Rejected(_)));
        for (status, after) in [(429, Some("3")), (503, Some("1")), (500, None), (408, None)] {
            match classify(v1, StatusCode::from_u16(status).unwrap(), after, "busy") {
                Attempt::Retry { after: a, .. } => {
                    assert_eq!(a, after.map(|s| Duration::from_secs(s.parse().unwrap())), "{status}")
                }
                Attempt::Done(d) => panic!("{status} must be retried, got {d:?}"),
            }
        }
    }

    #[test]
    fn long_bodies_are_clipped_on_a_char_boundary() {
        let body = "é".repeat(400);
        assert!(clip(&body).len() <= MAX_LOGGED_BODY);
    }
}
