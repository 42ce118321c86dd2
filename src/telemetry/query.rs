//! Metrics of the read side (DESIGN §7.2).

use metrics::{Counter, Gauge, counter, gauge, histogram};

use super::names::{
    QUERY_BACKEND_REQUESTS_TOTAL, QUERY_CACHE_BYTES, QUERY_CACHE_EVICTIONS_TOTAL, QUERY_CACHE_HITS_TOTAL,
    QUERY_CACHE_MISSES_TOTAL, QUERY_DURATION_SECONDS, QUERY_REQUESTS_TOTAL,
};

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

/// `tsrelay_query_cache_hits_total{backend}`: buckets of a graph series served from the query cache.
pub fn query_cache_hits(backend: &str) -> Counter {
    counter!(QUERY_CACHE_HITS_TOTAL, "backend" => backend.to_string())
}

/// `tsrelay_query_cache_misses_total{backend}`: buckets asked from the backend
/// (missing, fresh, or shared with a concurrent render's request).
pub fn query_cache_misses(backend: &str) -> Counter {
    counter!(QUERY_CACHE_MISSES_TOTAL, "backend" => backend.to_string())
}

/// `tsrelay_query_cache_bytes`: bytes the cached buckets are counted for (`[query.cache] max_bytes` bounds it).
pub fn query_cache_bytes() -> Gauge {
    gauge!(QUERY_CACHE_BYTES)
}

/// `tsrelay_query_cache_evictions_total`: buckets evicted to stay within `max_bytes`.
pub fn query_cache_evictions() -> Counter {
    counter!(QUERY_CACHE_EVICTIONS_TOTAL)
}
