//! The Prometheus HTTP API's answers: `{"status":"success","data":...,"warnings":[...]}`
//! and `{"status":"error","errorType":...,"error":...}` with Prometheus' status
//! codes, sample values as strings the way Prometheus writes them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::query::backends::BackendError;
use crate::query::service::QueryError;

/// A sample value as Prometheus writes it: shortest decimal without exponent,
/// `NaN`, `+Inf`, `-Inf`.
pub fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// A timestamp (ms) as Prometheus writes it: Unix seconds, a JSON number with
/// at most three decimals (`1700000000`, `1700000000.5`).
pub fn timestamp(ms: i64) -> serde_json::Value {
    if ms % 1000 == 0 {
        serde_json::Value::from(ms / 1000)
    } else {
        serde_json::Number::from_f64(ms as f64 / 1000.0).map(serde_json::Value::Number).unwrap_or_default()
    }
}

/// `[t, "v"]`.
pub fn point(t_ms: i64, v: f64) -> serde_json::Value {
    serde_json::Value::Array(vec![timestamp(t_ms), serde_json::Value::String(value(v))])
}

/// 200 with `data` and, when there are any, `warnings`.
pub fn success(data: serde_json::Value, warnings: Vec<String>) -> Response {
    let mut body = serde_json::json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = warnings.into();
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Prometheus' status code and `errorType` for a read-side error:
///
/// | error | status | errorType |
/// |---|---|---|
/// | bad request, PromQL outside the subset | 400 | `bad_data` |
/// | unknown backend | 404 | `not_found` |
/// | not served exactly by the backend, `max_series` | 422 | `execution` |
/// | the backend failed or answered nonsense | 502 | `unavailable` |
/// | timeout (the backend's or `timeout`) | 503 | `timeout` |
/// | every render slot busy | 503 | `unavailable` |
pub fn status_and_type(e: &QueryError) -> (u16, &'static str) {
    match e {
        QueryError::BadRequest(_) => (400, "bad_data"),
        QueryError::NotFound { .. } => (404, "not_found"),
        QueryError::Unsupported(_) | QueryError::Limit { .. } => (422, "execution"),
        QueryError::Backend(BackendError::Unsupported(_)) => (422, "execution"),
        QueryError::Backend(BackendError::Timeout { .. }) => (503, "timeout"),
        QueryError::Backend(_) => (502, "unavailable"),
        QueryError::Busy { .. } => (503, "unavailable"),
    }
}

/// The error envelope: Prometheus' three fields plus the read side's details
/// (`field`, `backend`, `feature`) where it has them.
pub fn failure(e: &QueryError) -> Response {
    let (status, error_type) = status_and_type(e);
    let mut body = e.body();
    body["errorType"] = error_type.into();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_timestamps_as_prometheus_writes_them() {
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(value(1.0), "1");
        assert_eq!(value(0.1), "0.1");
        assert_eq!(value(-2.5), "-2.5");
        assert_eq!(value(1e21), "1000000000000000000000");
        assert_eq!(value(1e-7), "0.0000001");
        assert_eq!(timestamp(1_700_000_000_000).to_string(), "1700000000");
        assert_eq!(timestamp(1_700_000_000_500).to_string(), "1700000000.5");
        assert_eq!(point(1000, 3.0).to_string(), r#"[1,"3"]"#);
    }
}
