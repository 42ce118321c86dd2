//! Label discovery through the backend's own Prometheus HTTP API
//! (`/api/v1/series`, `/api/v1/labels`, `/api/v1/label/<name>/values`), and the
//! plain forwarding of a client's API request (`/prom/<backend>/api/v1/...`).

use std::fmt::Write as _;

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;

use super::compile::{quote, seconds};
use super::{PrometheusDriver, error_chain, parse, quote_body};
use crate::query::backends::BackendError;
use crate::query::backends::discovery::{ApiRequest, ApiResponse, Discovered, LabelQuery, SeriesLabels};

/// Largest discovery or forwarded answer read from the backend; a bigger one
/// fails the request (502) instead of filling memory.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A selector as PromQL text: `{__name__="up",job=~"a.*"}`.
pub fn selector_text(matchers: &[crate::query::model::Matcher]) -> String {
    let mut s = String::from("{");
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{}{}{}", m.label, m.op.promql(), quote(&m.value));
    }
    s.push('}');
    s
}

/// `match[]`, `start`, `end` and `limit` of a discovery query. `every_series`:
/// a selector for "everything" when the query has none (`/api/v1/series` needs one).
fn params(query: &LabelQuery, every_series: bool) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = query.selectors.iter().map(|s| ("match[]", selector_text(s))).collect();
    if out.is_empty() && every_series {
        out.push(("match[]", "{__name__=~\".+\"}".to_string()));
    }
    if let Some(t) = query.start_ms {
        out.push(("start", seconds(t)));
    }
    if let Some(t) = query.end_ms {
        out.push(("end", seconds(t)));
    }
    // Honoured by Prometheus ≥ 2.49, ignored before; the answer is cut here anyway.
    out.push(("limit", query.limit.saturating_add(1).to_string()));
    out
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer.
async fn read_bounded(backend: &str, mut answer: reqwest::Response) -> Result<Bytes, BackendError> {
    let mut body = Vec::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(BackendError::BadResponse {
                        backend: backend.to_string(),
                        message: format!("the answer is over {MAX_ANSWER_BYTES} bytes; narrow match[]"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(body)),
            Err(e) => {
                return Err(BackendError::BadResponse {
                    backend: backend.to_string(),
                    message: format!("reading the answer: {}", error_chain(&e)),
                });
            }
        }
    }
}

impl PrometheusDriver {
    fn unreachable(&self, url: &str, e: &reqwest::Error) -> BackendError {
        if e.is_timeout() {
            return BackendError::Timeout { backend: self.backend.clone(), after: self.timeout };
        }
        BackendError::Unreachable { backend: self.backend.clone(), target: url.to_string(), message: error_chain(e) }
    }

    /// One discovery request: `GET path?params`, the list in `data`.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&'static str, String)],
    ) -> Result<parse::ListAnswer<T>, BackendError> {
        let url = self.endpoint(path);
        self.requests.increment(1);
        let answer = self
            .client
            .get(&url)
            .headers(self.headers.clone())
            .query(params)
            .send()
            .await
            .map_err(|e| self.unreachable(&url, &e))?;
        let status = answer.status();
        let body = read_bounded(&self.backend, answer).await?;
        if !status.is_success() {
            let message = match parse::parse_list::<serde_json::Value>(&body) {
                Err(parse::ParseError::Failed { error_type, error }) => format!("{error_type}: {error}"),
                _ => quote_body(&body),
            };
            return Err(BackendError::Status { backend: self.backend.clone(), status: status.as_u16(), body: message });
        }
        parse::parse_list(&body)
            .map_err(|e| BackendError::BadResponse { backend: self.backend.clone(), message: format!("{url}: {e}") })
    }

    pub(super) async fn discover_series(&self, query: &LabelQuery) -> Result<Discovered<SeriesLabels>, BackendError> {
        let a: parse::ListAnswer<SeriesLabels> = self.list("/api/v1/series", &params(query, true)).await?;
        Ok(Discovered::bounded(a.data, query.limit, a.warnings))
    }

    pub(super) async fn discover_label_names(&self, query: &LabelQuery) -> Result<Discovered<String>, BackendError> {
        let a: parse::ListAnswer<String> = self.list("/api/v1/labels", &params(query, false)).await?;
        Ok(Discovered::bounded(a.data, query.limit, a.warnings))
    }

    pub(super) async fn discover_label_values(
        &self,
        name: &str,
        query: &LabelQuery,
    ) -> Result<Discovered<String>, BackendError> {
        let path = format!("/api/v1/label/{}/values", percent_encode_segment(name));
        let a: parse::ListAnswer<String> = self.list(&path, &params(query, false)).await?;
        Ok(Discovered::bounded(a.data, query.limit, a.warnings))
    }

    /// Sends the client's request to the same path under the backend's base.
    pub(super) async fn forward(&self, request: &ApiRequest) -> Result<ApiResponse, BackendError> {
        let mut url = self.endpoint(&request.path);
        if let Some(q) = &request.query {
            url.push('?');
            url.push_str(q);
        }
        self.requests.increment(1);
        let builder = if request.post {
            self.client.post(&url).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(request.form.clone())
        } else {
            self.client.get(&url)
        };
        let answer =
            builder.headers(self.headers.clone()).send().await.map_err(|e| self.unreachable(&self.endpoint(""), &e))?;
        let status = answer.status().as_u16();
        let content_type = answer.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_bounded(&self.backend, answer).await?;
        Ok(ApiResponse { status, content_type, body })
    }
}

/// A label name as one URL path segment (label names are `[A-Za-z_][A-Za-z0-9_]*`
/// when valid; anything else is encoded so it cannot change the path).
fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::model::{MatchOp, Matcher};

    #[test]
    fn selectors_and_params() {
        let sel = vec![
            Matcher::new("__name__", MatchOp::Equal, "up").unwrap(),
            Matcher::new("job", MatchOp::Regex, "a\"b.*").unwrap(),
        ];
        assert_eq!(selector_text(&sel), r#"{__name__="up",job=~"a\"b.*"}"#);
        let q = LabelQuery { selectors: vec![sel], start_ms: Some(1_500), end_ms: None, limit: 9 };
        let p = params(&q, true);
        assert_eq!(p[0].0, "match[]");
        assert_eq!(p[1], ("start", "1.500".to_string()));
        assert_eq!(p[2], ("limit", "10".to_string()));
        let every = params(&LabelQuery { limit: 1, ..Default::default() }, true);
        assert_eq!(every[0], ("match[]", "{__name__=~\".+\"}".to_string()));
        assert_eq!(params(&LabelQuery { limit: 1, ..Default::default() }, false).len(), 1);
        assert_eq!(percent_encode_segment("job"), "job");
        assert_eq!(percent_encode_segment("a/b c"), "a%2Fb%20c");
    }
}
