//! Fetches the status report from the listener that serves `/api/v1/status`
//! (the query listener or the admin endpoint).

use std::time::Duration;

use crate::status::Status;

/// How long one fetch may take before the screen says the daemon is not answering.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error("invalid --url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("{url} did not answer a status report: {reason}")]
    Body { url: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
}

#[derive(serde::Deserialize)]
struct Envelope {
    data: Status,
}

pub struct StatusClient {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
}

impl StatusClient {
    /// `base` is the listener's URL (`http://127.0.0.1:9090`); a URL that
    /// already ends in `/api/v1/status` is taken as is.
    pub fn new(base: &str, key: Option<String>) -> Result<StatusClient, TopError> {
        let trimmed = base.trim_end_matches('/');
        let url =
            if trimmed.ends_with("/api/v1/status") { trimmed.to_string() } else { format!("{trimmed}/api/v1/status") };
        let parsed =
            reqwest::Url::parse(&url).map_err(|e| TopError::Url { url: base.to_string(), reason: e.to_string() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(TopError::Url { url: base.to_string(), reason: "the scheme must be http or https".into() });
        }
        let http = reqwest::Client::builder().timeout(FETCH_TIMEOUT).build().map_err(TopError::Client)?;
        Ok(StatusClient { http, url, key })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn fetch(&self) -> Result<Status, TopError> {
        let mut req = self.http.get(&self.url);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|source| TopError::Unreachable { url: self.url.clone(), source })?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|source| TopError::Unreachable { url: self.url.clone(), source })?;
        if status != 200 {
            let body = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
            return Err(TopError::Status { url: self.url.clone(), status, body });
        }
        parse_report(&body).map_err(|reason| TopError::Body { url: self.url.clone(), reason })
    }
}

/// The report out of a `GET /api/v1/status` answer body.
pub fn parse_report(body: &[u8]) -> Result<Status, String> {
    serde_json::from_slice::<Envelope>(body).map(|e| e.data).map_err(|e| e.to_string())
}
