//! The JSON answer of InfluxDB 1.x `/query?epoch=ms`, parsed into series.
//! Pure: bytes in, series or an error naming what was wrong out (fuzzed).
//!
//! ```json
//! {"results": [{"statement_id": 0, "series": [
//!    {"name": "cpu", "tags": {"host": "a"}, "columns": ["time", "v"], "values": [[1764806400000, 0.5]]}
//! ]}]}
//! ```
//! A statement error is `{"results": [{"statement_id": 0, "error": "..."}]}`, a
//! request error `{"error": "..."}`; a series cut by the server's
//! `max-row-limit` carries `"partial": true`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One series: tags (empty values dropped: an absent tag) and `(time ms, value)` rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub tags: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("not InfluxDB query JSON: {0}")]
    Json(String),
    #[error("InfluxDB refused the query: {0}")]
    Refused(String),
    #[error("series {name:?}: {message}")]
    Series { name: String, message: String },
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<RawSeries>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    level: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct RawSeries {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
    #[serde(default)]
    partial: bool,
}

/// Parses the answer to one statement; `warnings` receives the server's messages.
pub fn parse(body: &[u8], warnings: &mut Vec<String>) -> Result<Vec<Series>, ResponseError> {
    let body: Body = serde_json::from_slice(body).map_err(|e| ResponseError::Json(e.to_string()))?;
    if let Some(e) = body.error {
        return Err(ResponseError::Refused(e));
    }
    let mut out = Vec::new();
    for result in body.results {
        if let Some(e) = result.error {
            return Err(ResponseError::Refused(e));
        }
        for m in result.messages {
            warnings.push(format!("InfluxDB {}: {}", m.level, m.text));
        }
        for s in result.series {
            out.push(series(s)?);
        }
    }
    Ok(out)
}

fn series(s: RawSeries) -> Result<Series, ResponseError> {
    let err = |message: String| ResponseError::Series { name: s.name.clone(), message };
    if s.partial {
        return Err(err("the server cut the answer short (max-row-limit); ask for fewer points".into()));
    }
    if s.columns.len() != 2 || s.columns[0] != "time" {
        return Err(err(format!("expected the columns [time, value], got {:?}", s.columns)));
    }
    let mut points = Vec::with_capacity(s.values.len());
    for (i, row) in s.values.iter().enumerate() {
        let [t, v] = row.as_slice() else {
            return Err(err(format!("row {i} has {} values, expected 2", row.len())));
        };
        let Some(t) = t.as_i64() else {
            return Err(err(format!("row {i}: time {t} is not an integer (epoch=ms)")));
        };
        let v = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(x) => x,
                None => return Err(err(format!("row {i}: value {n} is not a float"))),
            },
            other => return Err(err(format!("row {i}: value {other} is not a number"))),
        };
        if points.last().is_some_and(|&(last, _)| last >= t) {
            return Err(err(format!("row {i}: time {t} is not after the previous row")));
        }
        points.push((t, v));
    }
    let tags = s.tags.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    Ok(Series { tags, points })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_with_tags_and_nulls() {
        let body = br#"{"results":[{"statement_id":0,"series":[
            {"name":"port","tags":{"device":"a","port":""},"columns":["time","v"],"values":[[1000,0.5],[2000,null],[3000,2]]},
            {"name":"port","columns":["time","v"],"values":[[1000,-1e300]]}]}]}"#;
        let mut warnings = Vec::new();
        let s = parse(body, &mut warnings).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tags, BTreeMap::from([("device".to_string(), "a".to_string())]));
        assert_eq!(s[0].points, vec![(1000, 0.5), (3000, 2.0)]);
        assert!(s[1].tags.is_empty());
        assert!(warnings.is_empty());
    }

    #[test]
    fn empty_results_are_no_series() {
        assert_eq!(parse(br#"{"results":[{"statement_id":0}]}"#, &mut Vec::new()).unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_reason() {
        let e = parse(br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#, &mut Vec::new());
        assert_eq!(e, Err(ResponseError::Refused("database not found: x".into())));
        let e = parse(br#"{"error":"error parsing query: found EOF"}"#, &mut Vec::new());
        assert!(matches!(e, Err(ResponseError::Refused(m)) if m.contains("parsing")));
        assert!(matches!(parse(b"<html>", &mut Vec::new()), Err(ResponseError::Json(_))));
        let partial = br#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[],"partial":true}]}]}"#;
        assert!(matches!(parse(partial, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let strings = br#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[1,"x"]]}]}]}"#;
        assert!(matches!(parse(strings, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let unordered = br#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[[2,1],[1,1]]}]}]}"#;
        assert!(matches!(parse(unordered, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let rfc3339 =
            br#"{"results":[{"series":[{"name":"m","columns":["time","v"],"values":[["2020-01-01T00:00:00Z",1]]}]}]}"#;
        assert!(matches!(parse(rfc3339, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let columns = br#"{"results":[{"series":[{"name":"m","columns":["time","a","b"],"values":[]}]}]}"#;
        assert!(matches!(parse(columns, &mut Vec::new()), Err(ResponseError::Series { .. })));
    }

    #[test]
    fn server_messages_become_warnings() {
        let body = br#"{"results":[{"statement_id":0,"messages":[{"level":"warning","text":"deprecated"}]}]}"#;
        let mut warnings = Vec::new();
        parse(body, &mut warnings).unwrap();
        assert_eq!(warnings, vec!["InfluxDB warning: deprecated".to_string()]);
    }
}
