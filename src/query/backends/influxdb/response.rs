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
//! `max-row-limit` carries `"partial": true`. `SHOW ...` answers (label
//! discovery) have the same envelope with string columns ([`parse_tables`]).

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

/// One series of a `SHOW ...` answer: its name (the measurement, where the
/// statement answers per measurement), columns, and rows of strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub name: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// The values of column `name`, or an error naming the columns there are.
    pub fn column(&self, name: &str) -> Result<impl Iterator<Item = &str>, ResponseError> {
        let i = self.columns.iter().position(|c| c == name).ok_or_else(|| ResponseError::Series {
            name: self.name.clone(),
            message: format!("no column {name:?} in {:?}", self.columns),
        })?;
        Ok(self.rows.iter().filter_map(move |r| r.get(i).map(String::as_str)))
    }
}

/// Parses the answer to one `SHOW MEASUREMENTS`, `SHOW FIELD KEYS`, `SHOW TAG
/// KEYS`, `SHOW TAG VALUES` or `SHOW SERIES` statement: every value a string,
/// every row as wide as the columns. `warnings` receives the server's messages.
pub fn parse_tables(body: &[u8], warnings: &mut Vec<String>) -> Result<Vec<Table>, ResponseError> {
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
            let err = |message: String| ResponseError::Series { name: s.name.clone(), message };
            if s.partial {
                return Err(err("the server cut the answer short (max-row-limit)".into()));
            }
            let mut rows = Vec::with_capacity(s.values.len());
            for (i, row) in s.values.iter().enumerate() {
                if row.len() != s.columns.len() {
                    return Err(err(format!("row {i} has {} values for {} columns", row.len(), s.columns.len())));
                }
                let row = row
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(|| err(format!("row {i}: {v} is not a string"))))
                    .collect::<Result<Vec<String>, _>>()?;
                rows.push(row);
            }
            out.push(Table { name: s.name.clone(), columns: s.columns.clone(), rows });
        }
    }
    Ok(out)
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

    #[test]
    fn show_answers_are_tables_of_strings() {
        let body = br#"{"results":[{"statement_id":0,"series":[
            {"name":"port","columns":["key","value"],"values":[["device","sw1"],["device","sw2"]]},
            {"columns":["key"],"values":[["notags"]]}]}]}"#;
        let t = parse_tables(body, &mut Vec::new()).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "port");
        assert_eq!(t[0].column("value").unwrap().collect::<Vec<_>>(), ["sw1", "sw2"]);
        assert!(t[0].column("nope").is_err());
        assert_eq!(t[1].column("key").unwrap().collect::<Vec<_>>(), ["notags"]);
        assert_eq!(parse_tables(br#"{"results":[{"statement_id":0}]}"#, &mut Vec::new()).unwrap(), vec![]);
        let ragged = br#"{"results":[{"series":[{"name":"m","columns":["a","b"],"values":[["x"]]}]}]}"#;
        assert!(matches!(parse_tables(ragged, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let number = br#"{"results":[{"series":[{"name":"m","columns":["a"],"values":[[1]]}]}]}"#;
        assert!(matches!(parse_tables(number, &mut Vec::new()), Err(ResponseError::Series { .. })));
        let refused = br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#;
        assert!(matches!(parse_tables(refused, &mut Vec::new()), Err(ResponseError::Refused(_))));
    }
}
