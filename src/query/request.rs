//! The render request (DESIGN §7.1/§7.2) as JSON, and its times and step.

use serde::Deserialize;

use super::model::GraphDef;

/// Body of `POST /api/v1/graph/render` and `/compile`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderRequest {
    /// A stored graph's id (string) or an inline definition (object).
    pub graph: serde_json::Value,
    /// A sink name.
    pub backend: String,
    /// ms since the epoch, RFC 3339, `now`, or `now-6h` / `-6h`.
    pub start: serde_json::Value,
    /// As `start`; default `now`.
    #[serde(default)]
    pub end: Option<serde_json::Value>,
    /// `"60s"`, `"5m"` or a number of seconds; ≥ 1 s.
    #[serde(default)]
    pub step: Option<serde_json::Value>,
    /// Instead of `step`: the step is `(end − start) / max_points`, rounded up to a whole second.
    #[serde(default)]
    pub max_points: Option<u64>,
}

/// Which graph a request names.
#[derive(Debug, Clone)]
pub enum GraphRef {
    Id(String),
    Inline(Box<GraphDef>),
}

/// A bad request (HTTP 400): the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.to_string(), message: message.into() }
}

impl RenderRequest {
    pub fn graph_ref(&self) -> Result<GraphRef, FieldError> {
        match &self.graph {
            serde_json::Value::String(id) => Ok(GraphRef::Id(id.clone())),
            v @ serde_json::Value::Object(_) => serde_json::from_value::<GraphDef>(v.clone())
                .map(|g| GraphRef::Inline(Box::new(g)))
                .map_err(|e| field_err("graph", format!("invalid definition: {e}"))),
            _ => Err(field_err("graph", "must be a graph id (string) or a definition (object)")),
        }
    }

    /// `(start_ms, end_ms, step_ms)`, not yet aligned.
    pub fn times(&self, now_ms: i64) -> Result<(i64, i64, i64), FieldError> {
        let start = parse_time(&self.start, now_ms).map_err(|m| field_err("start", m))?;
        let end = match &self.end {
            None => now_ms,
            Some(v) => parse_time(v, now_ms).map_err(|m| field_err("end", m))?,
        };
        if end <= start {
            return Err(field_err("end", format!("{end} is not after start {start}")));
        }
        let step = match (&self.step, self.max_points) {
            (Some(_), Some(_)) => return Err(field_err("step", "give step or max_points, not both")),
            (None, None) => return Err(field_err("step", "missing: give step or max_points")),
            (Some(s), None) => parse_step(s).map_err(|m| field_err("step", m))?,
            (None, Some(0)) => return Err(field_err("max_points", "must be at least 1")),
            (None, Some(n)) => {
                // both positive: end > start, n ≥ 1
                let raw = (end - start + n as i64 - 1) / n as i64;
                ((raw + 999) / 1000 * 1000).max(1000)
            }
        };
        Ok((start, end, step))
    }
}

/// ms since the epoch (number or digits), RFC 3339, `now`, `now-<duration>` or `-<duration>`.
pub fn parse_time(v: &serde_json::Value, now_ms: i64) -> Result<i64, String> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not an integer number of ms")),
        serde_json::Value::String(s) => parse_time_str(s, now_ms),
        other => Err(format!("{other} is not a time (ms since the epoch, RFC 3339, now, -6h)")),
    }
}

pub fn parse_time_str(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Some(rel) = s.strip_prefix("now-").or_else(|| s.strip_prefix('-')) {
        let d = humantime::parse_duration(rel).map_err(|e| format!("{s:?}: {e}"))?;
        return i64::try_from(d.as_millis()).map(|d| now_ms - d).map_err(|_| format!("{s:?} is too far back"));
    }
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is out of range"));
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|_| format!("{s:?} is not a time (ms since the epoch, RFC 3339, now, -6h)"))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|_| format!("{s:?} is before 1970"))?.as_millis();
    i64::try_from(ms).map_err(|_| format!("{s:?} is out of range"))
}

/// `"60s"`, `"5m"`, `"1h30m"` or a number of seconds.
pub fn parse_step(v: &serde_json::Value) -> Result<i64, String> {
    let ms = match v {
        serde_json::Value::Number(n) => {
            let secs = n.as_f64().ok_or("not a number")?;
            if !(secs.is_finite() && secs > 0.0 && secs < 1e12) {
                return Err(format!("{n} is not a positive number of seconds"));
            }
            (secs * 1000.0).round() as i64
        }
        serde_json::Value::String(s) => {
            let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
            i64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))?
        }
        other => return Err(format!("{other} is not a duration")),
    };
    if ms < 1000 {
        return Err(format!("{ms} ms is below the minimum of 1s"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_and_steps() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time(&json!("now"), now), Ok(now));
        assert_eq!(parse_time(&json!("-6h"), now), Ok(now - 6 * 3_600_000));
        assert_eq!(parse_time(&json!("now-5m"), now), Ok(now - 300_000));
        assert_eq!(parse_time(&json!(5), now), Ok(5));
        assert_eq!(parse_time(&json!("1700000000000"), now), Ok(now));
        assert_eq!(parse_time(&json!("2023-11-14T22:13:20Z"), now), Ok(now));
        assert!(parse_time(&json!("yesterday"), now).unwrap_err().contains("not a time"));
        assert!(parse_time(&json!(1.5), now).is_err());
        assert_eq!(parse_step(&json!("5m")), Ok(300_000));
        assert_eq!(parse_step(&json!(60)), Ok(60_000));
        assert!(parse_step(&json!("500ms")).unwrap_err().contains("minimum"));
        assert!(parse_step(&json!(-1)).is_err());
    }

    #[test]
    fn request_fields() {
        let r: RenderRequest = serde_json::from_value(
            json!({"graph": "g", "backend": "prom", "start": 0, "end": 3_600_000, "max_points": 7}),
        )
        .unwrap();
        assert_eq!(r.times(0).unwrap(), (0, 3_600_000, 515_000));
        assert!(matches!(r.graph_ref().unwrap(), GraphRef::Id(id) if id == "g"));
        let r: RenderRequest =
            serde_json::from_value(json!({"graph": {"id": "x", "series": [{"metric": "m", "fn": 1}]}, "backend": "p", "start": 0, "step": "1m"}))
                .unwrap();
        let e = r.graph_ref().unwrap_err();
        assert_eq!(e.field, "graph");
        assert!(e.message.contains("fn"), "{e}");
        let r: RenderRequest =
            serde_json::from_value(json!({"graph": "g", "backend": "p", "start": 10, "end": 5, "step": "1m"})).unwrap();
        assert_eq!(r.times(0).unwrap_err().field, "end");
        let r: RenderRequest =
            serde_json::from_value(json!({"graph": "g", "backend": "p", "start": 0, "end": 5})).unwrap();
        assert_eq!(r.times(0).unwrap_err().field, "step");
        assert!(
            serde_json::from_value::<RenderRequest>(json!({"graph": "g", "backend": "p", "start": 0, "stp": 1}))
                .is_err()
        );
    }
}
