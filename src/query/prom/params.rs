//! Parameters of the Prometheus HTTP API (`query`, `time`, `start`, `end`,
//! `step`, `timeout`) from a `GET` query string and a form `POST` body, in
//! Prometheus' own formats: times as Unix seconds (decimal) or RFC 3339,
//! durations as seconds (decimal) or PromQL durations (`5m`, `1h30m`).

use std::time::Duration;

use crate::query::request::FieldError;

/// The request's parameters: the form body's first, then the query string's
/// (as Prometheus reads them); for a repeated name the first one counts.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

fn bad(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

impl Params {
    pub fn parse(query: Option<&str>, form: Option<&[u8]>) -> Params {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(body) = form {
            pairs.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
        Params { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and non-empty.
    pub fn required(&self, name: &str) -> Result<&str, FieldError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(bad(name, "missing")),
        }
    }

    /// A time parameter in ms since the epoch; `default` when absent or empty.
    pub fn time(&self, name: &str, default: Option<i64>) -> Result<i64, FieldError> {
        match (self.get(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => parse_time(v).map_err(|m| bad(name, m)),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(bad(name, "missing")),
        }
    }

    /// A duration parameter in ms, if present and non-empty.
    pub fn duration(&self, name: &str) -> Result<Option<i64>, FieldError> {
        match self.get(name).filter(|v| !v.is_empty()) {
            Some(v) => parse_duration_ms(v).map(Some).map_err(|m| bad(name, m)),
            None => Ok(None),
        }
    }

    /// `timeout` as a [`Duration`], if given.
    pub fn timeout(&self) -> Result<Option<Duration>, FieldError> {
        Ok(self.duration("timeout")?.map(|ms| Duration::from_millis(ms.unsigned_abs())))
    }
}

/// Largest absolute time accepted, in seconds (year ~5138; keeps ms in `i64`).
const MAX_ABS_SECONDS: f64 = 1e11;

/// Unix seconds (`1700000000`, `1700000000.123`) or RFC 3339 → ms since the epoch.
pub fn parse_time(v: &str) -> Result<i64, String> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > MAX_ABS_SECONDS {
            return Err(format!("{v:?} is not a time (Unix seconds or RFC 3339)"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(v).map_err(|_| format!("{v:?} is not a time (Unix seconds or RFC 3339)"))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{v:?} is before 1970"))?.as_millis();
    i64::try_from(ms).map_err(|_| format!("{v:?} is out of range"))
}

/// Seconds (`60`, `0.5`) or a PromQL duration (`5m`, `1h30m`, `500ms`) → ms, > 0.
pub fn parse_duration_ms(v: &str) -> Result<i64, String> {
    let v = v.trim();
    let ms = if let Ok(secs) = v.parse::<f64>() {
        if !secs.is_finite() || secs <= 0.0 || secs > MAX_ABS_SECONDS {
            return Err(format!("{v:?} is not a positive duration"));
        }
        (secs * 1000.0).round() as i64
    } else {
        let d =
            promql_parser::util::duration::parse_duration(v).map_err(|e| format!("{v:?} is not a duration: {e}"))?;
        i64::try_from(d.as_millis()).map_err(|_| format!("{v:?} is too long"))?
    };
    if ms <= 0 {
        return Err(format!("{v:?} is not a positive duration"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_in_prometheus_formats() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("NaN").is_err() && parse_time("1e300").is_err() && parse_time("soon").is_err());
        assert_eq!(parse_duration_ms("60"), Ok(60_000));
        assert_eq!(parse_duration_ms("1.5"), Ok(1500));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert!(parse_duration_ms("0").is_err() && parse_duration_ms("-5").is_err() && parse_duration_ms("x").is_err());
    }

    #[test]
    fn body_first_then_query_string() {
        let p = Params::parse(Some("query=up&time=5"), Some(b"query=rate%28x%5B1m%5D%29"));
        assert_eq!(p.get("query"), Some("rate(x[1m])"));
        assert_eq!(p.time("time", None), Ok(5000));
        assert_eq!(p.time("end", Some(7)), Ok(7));
        assert_eq!(p.required("step").unwrap_err().field, "step");
    }
}
