//! Metrics of the read side (DESIGN §7.2).

use metrics::{Counter, counter, histogram};

use super::names::{QUERY_BACKEND_REQUESTS_TOTAL, QUERY_DURATION_SECONDS, QUERY_REQUESTS_TOTAL};

/// `tsrelay_query_requests_total{endpoint, code}` and
/// `tsrelay_query_duration_seconds{endpoint}` for one answered API request.
pub fn query_request(endpoint: &'static str, code: u16, seconds: f64) {
    counter!(QUERY_REQUESTS_TOTAL, "endpoint" => endpoint, "code" => code.to_string()).increment(1);
    histogram!(QUERY_DURATION_SECONDS, "endpoint" => endpoint).record(seconds);
}

/// `tsrelay_query_backend_requests_total{backend}`: one per request a driver
/// sends (HTTP request, rrdcached command exchange). Drivers hold the handle.
pub fn query_backend_requests(backend: &str) -> Counter {
    counter!(QUERY_BACKEND_REQUESTS_TOTAL, "backend" => backend.to_string())
}
