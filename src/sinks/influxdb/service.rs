//! One InfluxDB write attempt, the innermost service of the sink's shared
//! stack: POST the lines, and read the answer the InfluxDB way before the
//! shared rules — a partial write (400 naming `dropped=N`) wrote the rest; a
//! v1 `404 database not found` is answered with `CREATE DATABASE` and one
//! resend when `create_database` is on, else refused; everything else
//! (413 too large, 408/429/5xx retryable with `Retry-After`, other 4xx
//! refused) follows [`crate::sinks::common::classify`].

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderName, HeaderValue};

use super::config::{ApiVersion, InfluxdbSinkConfig, V1Auth};
use super::encode::InfluxdbRequest;
use crate::sinks::common::classify::{MAX_ERROR_BODY, classify_status};
use crate::sinks::common::http::{self, HttpAnswer, HttpSetupError};
use crate::sinks::common::{HttpTarget, SendError, Written};

/// How much of an error body is read: a partial write lists every line it
/// could not parse before the `dropped=N` the sink needs.
const MAX_READ_ERROR_BODY: usize = 256 * 1024;

/// Headers the protocol sets; `request.headers` cannot override them.
pub fn protocol_header_names(own_credentials: bool) -> Vec<&'static str> {
    let mut names = vec!["content-type", "content-encoding"];
    if own_credentials {
        names.push("authorization");
    }
    names
}

/// What a successful write did: all lines written, or (partial write) all
/// but `refused`, for the reason in `message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub refused: usize,
    pub message: String,
}

impl Written for WriteOutcome {
    fn refused(&self) -> Option<(usize, &str)> {
        (self.refused > 0).then_some((self.refused, self.message.as_str()))
    }
}

/// An answer read the InfluxDB way.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Written(WriteOutcome),
    /// v1 `404 database not found`.
    DatabaseNotFound(String),
    Failed(SendError),
}

#[derive(Clone)]
pub struct InfluxdbService {
    inner: Arc<Targets>,
}

struct Targets {
    api: ApiVersion,
    write_gzip: HttpTarget,
    write_plain: HttpTarget,
    /// v1 with `create_database`: `POST /query?q=CREATE DATABASE ...`.
    create_database: Option<HttpTarget>,
    database: String,
}

impl InfluxdbService {
    /// `resolve` turns config-relative paths (TLS files) into real ones.
    pub fn new(
        config: &InfluxdbSinkConfig,
        resolve: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    ) -> Result<Self, HttpSetupError> {
        let base = config.url.trim_end_matches('/');
        let url = |path: &str| http::parse_url(&format!("{base}{path}"));
        let mut write_url = url(match config.api {
            ApiVersion::V1 => "/write",
            ApiVersion::V2 => "/api/v2/write",
        })?;
        let mut credentials_in_query: Vec<(&str, &str)> = Vec::new();
        {
            let mut q = write_url.query_pairs_mut();
            match config.api {
                ApiVersion::V1 => {
                    q.append_pair("db", config.database.as_deref().unwrap_or_default());
                    if let Some(rp) = &config.rp {
                        q.append_pair("rp", rp);
                    }
                    if let (Some(u), Some(p), V1Auth::Query) = (&config.username, &config.password, config.auth) {
                        credentials_in_query = vec![("u", u), ("p", p)];
                        q.extend_pairs(&credentials_in_query);
                    }
                }
                ApiVersion::V2 => {
                    q.append_pair("org", config.org.as_deref().unwrap_or_default());
                    q.append_pair("bucket", config.bucket.as_deref().unwrap_or_default());
                }
            }
            q.append_pair("precision", "ns");
        }
        let client = http::build_client(&config.request, resolve)?;
        let mut protocol = vec![(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))];
        if let Some(authorization) = config.authorization() {
            let mut value = HeaderValue::from_str(&authorization).map_err(|_| HttpSetupError::Header {
                name: "authorization".into(),
                message: "username, password or token contain characters not allowed in a header".into(),
            })?;
            value.set_sensitive(true);
            protocol.push((AUTHORIZATION, value));
        }
        let headers = |extra: Option<(HeaderName, HeaderValue)>| {
            let mut all = protocol.clone();
            all.extend(extra);
            http::request_headers(&config.request, &all)
        };
        let gzip = (CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let write_gzip = HttpTarget::new(client.clone(), write_url.clone(), headers(Some(gzip))?);
        let write_plain = HttpTarget::new(client.clone(), write_url, headers(None)?);
        let database = config.database.clone().unwrap_or_default();
        let create_database = if config.api == ApiVersion::V1 && config.create_database {
            let mut query_url = url("/query")?;
            let statement = format!("CREATE DATABASE \"{}\"", database.replace('\\', "\\\\").replace('"', "\\\""));
            query_url.query_pairs_mut().append_pair("q", &statement).extend_pairs(&credentials_in_query);
            Some(HttpTarget::new(client, query_url, headers(None)?))
        } else {
            None
        };
        Ok(InfluxdbService {
            inner: Arc::new(Targets { api: config.api, write_gzip, write_plain, create_database, database }),
        })
    }
}

impl Targets {
    async fn write(&self, request: &InfluxdbRequest) -> Result<Answer, SendError> {
        let target = if request.gzipped { &self.write_gzip } else { &self.write_plain };
        let answer = target.send(request.body.clone(), MAX_READ_ERROR_BODY).await?;
        Ok(classify(self.api, &answer, SystemTime::now()))
    }

    /// `CREATE DATABASE` (idempotent on the server). InfluxDB answers 200
    /// with an `"error"` in the body when a statement fails.
    async fn create_database(&self, target: &HttpTarget) -> Result<(), SendError> {
        let answer = target.send(Bytes::new(), MAX_ERROR_BODY).await?;
        let body = String::from_utf8_lossy(&answer.body);
        let what = format!("CREATE DATABASE {:?}", self.database);
        if answer.status.is_success() && !body.contains("\"error\"") {
            tracing::info!(database = %self.database, "created the missing InfluxDB database");
            return Ok(());
        }
        Err(match classify_status(answer.status, &answer.headers, &answer.body, SystemTime::now()) {
            SendError::Retryable { message, retry_after } => {
                SendError::Retryable { message: format!("{what}: {message}"), retry_after }
            }
            _ => SendError::Rejected {
                status: Some(answer.status.as_u16()),
                message: format!("{what}: HTTP {}: {}", answer.status, body.trim()),
            },
        })
    }
}

impl tower::Service<InfluxdbRequest> for InfluxdbService {
    type Response = WriteOutcome;
    type Error = SendError;
    type Future = BoxFuture<'static, Result<WriteOutcome, SendError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: InfluxdbRequest) -> Self::Future {
        let targets = self.inner.clone();
        Box::pin(async move {
            let mut answer = targets.write(&request).await?;
            if let (Answer::DatabaseNotFound(message), Some(create)) = (&answer, &targets.create_database) {
                targets.create_database(create).await.map_err(|e| match e {
                    SendError::Rejected { status, message: why } => {
                        SendError::Rejected { status, message: format!("{message}; creating it failed: {why}") }
                    }
                    other => other,
                })?;
                answer = targets.write(&request).await?;
            }
            match answer {
                Answer::Written(outcome) => Ok(outcome),
                Answer::DatabaseNotFound(message) => Err(SendError::Rejected { status: Some(404), message }),
                Answer::Failed(e) => Err(e),
            }
        })
    }
}

/// Reads an answer: InfluxDB's own cases first, then the shared rules.
pub fn classify(api: ApiVersion, answer: &HttpAnswer, now: SystemTime) -> Answer {
    if answer.status.is_success() {
        return Answer::Written(WriteOutcome::default());
    }
    let body = String::from_utf8_lossy(&answer.body);
    let shown = clip(&body);
    let message = || format!("HTTP {}: {shown}", answer.status);
    match answer.status {
        StatusCode::BAD_REQUEST => match partial_write_dropped(&body) {
            Some(refused) => Answer::Written(WriteOutcome { refused, message: message() }),
            None => Answer::Failed(SendError::Rejected { status: Some(400), message: message() }),
        },
        StatusCode::NOT_FOUND if api == ApiVersion::V1 && body.contains("database not found") => {
            Answer::DatabaseNotFound(message())
        }
        status => Answer::Failed(classify_status(status, &answer.headers, shown.as_bytes(), now)),
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

/// The start of a server's message, for logs and `/readyz`.
fn clip(body: &str) -> &str {
    let body = body.trim();
    if body.len() <= MAX_ERROR_BODY {
        return body;
    }
    let mut end = MAX_ERROR_BODY;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::{HeaderMap, RETRY_AFTER};

    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> HttpAnswer {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert(RETRY_AFTER, r.parse().unwrap());
        }
        HttpAnswer { status: StatusCode::from_u16(status).unwrap(), headers, body: body.as_bytes().to_vec() }
    }

    fn read(api: ApiVersion, status: u16, retry_after: Option<&str>, body: &str) -> Answer {
        classify(api, &answer(status, retry_after, body), SystemTime::now())
    }

    #[test]
    fn answers_are_classified() {
        let v1 = ApiVersion::V1;
        assert_eq!(read(v1, 204, None, ""), Answer::Written(WriteOutcome::default()));
        let conflict = r#"{"error":"partial write: field type conflict: input field \"value\" on measurement \"m\" is type float, already exists as type integer dropped=2"}"#;
        assert!(matches!(read(v1, 400, None, conflict), Answer::Written(WriteOutcome { refused: 2, .. })));
        assert!(matches!(
            read(v1, 400, None, "unable to parse"),
            Answer::Failed(SendError::Rejected { status: Some(400), .. })
        ));
        let unparsable = r#"{"error":"partial write: unable to parse 'a,h=x\\ v=1 1': invalid tag format\nunable to parse 'a,h=y\\ v=1 2': invalid tag format dropped=1"}"#;
        assert!(matches!(read(v1, 400, None, unparsable), Answer::Written(WriteOutcome { refused: 3, .. })));
        let missing = r#"{"error":"database not found: \"x\""}"#;
        assert!(matches!(read(v1, 404, None, missing), Answer::DatabaseNotFound(_)));
        assert!(matches!(read(ApiVersion::V2, 404, None, missing), Answer::Failed(SendError::Rejected { .. })));
        assert!(matches!(read(v1, 413, None, ""), Answer::Failed(SendError::TooLarge { .. })));
        assert!(matches!(read(v1, 401, None, ""), Answer::Failed(SendError::Rejected { status: Some(401), .. })));
        assert!(matches!(read(v1, 501, None, ""), Answer::Failed(SendError::Rejected { .. })));
        for (status, after) in [(429, Some("3")), (503, Some("1")), (500, None), (408, None)] {
            match read(v1, status, after, "busy") {
                Answer::Failed(SendError::Retryable { retry_after, .. }) => {
                    assert_eq!(retry_after, after.map(|s| Duration::from_secs(s.parse().unwrap())), "{status}")
                }
                other => panic!("{status} must be retried, got {other:?}"),
            }
        }
    }

    #[test]
    fn long_bodies_are_clipped_on_a_char_boundary() {
        let body = "é".repeat(800);
        assert!(clip(&body).len() <= MAX_ERROR_BODY);
    }

    #[test]
    fn headers_carry_credentials_and_never_expose_them_in_the_url_for_basic() {
        let config: InfluxdbSinkConfig = {
            use figment::providers::Format;
            figment::Figment::from(figment::providers::Toml::string(
                "url = \"http://127.0.0.1:8086/\"\ndatabase = \"m\"\nusername = \"u\"\npassword = \"p\"\ncreate_database = true",
            ))
            .extract()
            .unwrap()
        };
        let service = InfluxdbService::new(&config, &|p| p.to_path_buf()).unwrap();
        assert_eq!(service.inner.write_gzip.url().as_str(), "http://127.0.0.1:8086/write?db=m&precision=ns");
        let create = service.inner.create_database.as_ref().unwrap();
        assert_eq!(create.url().query(), Some("q=CREATE+DATABASE+%22m%22"));
    }
}
