//! Any `Retry-After` value and any error answer from a backend: classification must not
//! panic; delay-seconds mean exactly that many seconds; an HTTP date means the time until
//! it (zero when past); the retry layer waits at least its backoff and never longer than
//! `max_retry_after` asks for; a backend's message is kept in the error it becomes.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use tsrelay::sinks::common::classify::{SendError, classify_status, is_retryable_status, retry_after};
use tsrelay::sinks::common::config::RetryConfig;
use tsrelay::sinks::common::retry::RetryPolicy;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let status =
        StatusCode::from_u16(400 + u16::from_le_bytes([data[0], data[1]]) % 200).expect("4xx and 5xx are valid");
    let now = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::from(u32::from_le_bytes([data[2], data[3], data[4], data[5]])));
    let rest = &data[6..];
    let (value, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let Ok(value) = HeaderValue::from_bytes(value) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, value.clone());

    let asked = retry_after(&headers, now);
    if let Ok(text) = value.to_str() {
        let text = text.trim();
        if let Ok(seconds) = text.parse::<u64>() {
            assert_eq!(asked, Some(Duration::from_secs(seconds)));
        } else if let Ok(at) = httpdate::parse_http_date(text) {
            assert_eq!(asked, Some(at.duration_since(now).unwrap_or(Duration::ZERO)));
        } else {
            assert_eq!(asked, None, "{text:?}");
        }
    } else {
        assert_eq!(asked, None);
    }

    let policy = RetryPolicy::new(&RetryConfig::default(), false);
    let backoff = Duration::from_millis(u64::from(data[0]) * 10);
    let wait = policy.delay(backoff, asked);
    assert!(wait >= backoff && wait <= backoff.max(policy.max_retry_after), "{wait:?} for {asked:?}");

    let text = String::from_utf8_lossy(body);
    match classify_status(status, &headers, body, now) {
        SendError::Retryable { message, retry_after } => {
            assert!(is_retryable_status(status));
            assert_eq!(retry_after, asked);
            assert!(message.contains(text.trim()));
        }
        SendError::TooLarge { message } => {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert!(message.contains(text.trim()));
        }
        SendError::Rejected { status: code, message } => {
            assert!(!is_retryable_status(status) && code == Some(status.as_u16()));
            assert!(message.contains(text.trim()));
        }
        other => panic!("an answer classified as {other:?}"),
    }
});
