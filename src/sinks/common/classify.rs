//! What one attempt ended in, and how a backend's answer decides it
//! (DESIGN §2): connection errors, timeouts, 408, 429 and 5xx except 501 are
//! worth retrying; 413 asks for smaller requests (the sink splits the batch
//! when its encoder can); every other 4xx (and 501) refuses the data for good.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The most of a backend's error body kept for logs and `/readyz`.
pub const MAX_ERROR_BODY: usize = 1024;

/// A failed attempt (or, from the retry layer, a failed request).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again; the backend may have said when (`Retry-After`).
    #[error("{message}")]
    Retryable { message: String, retry_after: Option<Duration> },
    /// The backend refused the data; sending it again would not help.
    #[error("{message}")]
    Rejected { status: Option<u16>, message: String },
    /// The request is over the backend's size limit (413): resending it whole
    /// cannot help, but its halves may go through. [`crate::sinks::common::NetworkSink`]
    /// splits it when its encoder can ([`crate::sinks::common::Encode::split`]),
    /// otherwise the samples count as rejected.
    #[error("{message}")]
    TooLarge { message: String },
    /// Retrying stopped: the time budget (`max_retry_duration`) is spent.
    #[error("gave up after {attempts} attempts in {elapsed:.1?}: {last}")]
    Exhausted { attempts: u32, elapsed: Duration, last: String },
}

impl SendError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError::Retryable { message: message.into(), retry_after: None }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }

    /// A refusal that says the sink is misconfigured (credentials, URL)
    /// rather than that this data is bad: it marks the sink failing in `/readyz`.
    pub fn is_configuration_problem(&self) -> bool {
        matches!(self, SendError::Rejected { status: Some(401 | 403 | 404 | 405 | 407 | 413 | 414 | 415), .. })
    }
}

/// Whether an HTTP status is worth retrying.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// Classifies a non-success answer. `body` is the start of the backend's
/// message (see [`MAX_ERROR_BODY`]); it ends up in the log and in `/readyz`.
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &[u8], now: SystemTime) -> SendError {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {text}") };
    if is_retryable_status(status) {
        SendError::Retryable { message, retry_after: retry_after(headers, now) }
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        SendError::TooLarge { message }
    } else {
        SendError::Rejected { status: Some(status.as_u16()), message }
    }
}

/// Classifies a transport failure (no answer at all).
pub fn classify_transport(error: &reqwest::Error) -> SendError {
    // A request that cannot even be built fails the same way every time.
    if error.is_builder() {
        return SendError::Rejected { status: None, message: format!("cannot build the request: {error}") };
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    // reqwest's own text is generic ("error sending request"); the cause says what happened.
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    SendError::retryable(message)
}

/// `Retry-After` as delay-seconds or an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, retry_after.parse().unwrap());
        h
    }

    #[test]
    fn retry_rules_follow_the_design() {
        for code in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 413, 422, 501] {
            assert!(!is_retryable_status(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&headers("7"), now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(retry_after(&headers(&later), now), Some(Duration::from_secs(42)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(5));
        assert_eq!(retry_after(&headers(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn answers_are_classified_with_the_backend_message() {
        let now = SystemTime::now();
        let e = classify_status(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"out of order sample\n", now);
        assert_eq!(
            e,
            SendError::Rejected { status: Some(400), message: "HTTP 400 Bad Request: out of order sample".into() }
        );
        assert!(!e.is_configuration_problem());
        let e = classify_status(StatusCode::TOO_MANY_REQUESTS, &headers("3"), b"", now);
        assert_eq!(
            e,
            SendError::Retryable {
                message: "HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert!(classify_status(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"", now).is_configuration_problem());
        assert_eq!(
            classify_status(StatusCode::PAYLOAD_TOO_LARGE, &HeaderMap::new(), b"", now),
            SendError::TooLarge { message: "HTTP 413 Payload Too Large".into() }
        );
    }
}
