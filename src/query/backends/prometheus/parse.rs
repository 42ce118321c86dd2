//! Parser of the Prometheus HTTP API's JSON answers (`/api/v1/query_range`,
//! `/api/v1/query` with a matrix result; `/api/v1/series`, `/api/v1/labels`,
//! `/api/v1/label/<name>/values`). Outside bytes: never panics, fuzzed
//! (`fuzz/fuzz_targets/prometheus_response.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::super::RawSeries;

/// What a successful answer held.
#[derive(Debug, Clone, PartialEq)]
pub struct PromAnswer {
    pub series: Vec<RawSeries>,
    pub warnings: Vec<String>,
}

/// Why an answer is unusable (HTTP 502 naming the backend).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("not the Prometheus API's JSON: {0}")]
    Json(String),
    #[error("query failed: {error_type}: {error}")]
    Failed { error_type: String, error: String },
    #[error("result type {0:?}, expected matrix")]
    ResultType(String),
    #[error("series {series}: value {value:?} at {t} is not a number")]
    Value { series: usize, t: String, value: String },
    #[error("series {series}: timestamp {t} is not a time in milliseconds' range")]
    Timestamp { series: usize, t: f64 },
    #[error("series {series}: timestamps are not strictly ascending at {t_ms} ms")]
    Order { series: usize, t_ms: i64 },
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Parses one answer body (whatever the HTTP status: error bodies are parsed for their message).
pub fn parse_answer(body: &[u8]) -> Result<PromAnswer, ParseError> {
    let env: Envelope = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if env.status != "success" {
        return Err(ParseError::Failed {
            error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
            error: env.error.unwrap_or_else(|| format!("status {:?} without a message", env.status)),
        });
    }
    let data = env.data.ok_or_else(|| ParseError::Json("status success without data".into()))?;
    if data.result_type != "matrix" {
        return Err(ParseError::ResultType(data.result_type));
    }
    let mut series = Vec::with_capacity(data.result.len());
    for (i, s) in data.result.into_iter().enumerate() {
        let mut points = Vec::with_capacity(s.values.len());
        for (t, v) in s.values {
            let ms = t * 1000.0;
            if !ms.is_finite() || ms.abs() > 9.0e15 {
                return Err(ParseError::Timestamp { series: i, t });
            }
            let ms = ms.round() as i64;
            let value: f64 =
                v.parse().map_err(|_| ParseError::Value { series: i, t: t.to_string(), value: v.clone() })?;
            if points.last().is_some_and(|&(last, _)| last >= ms) {
                return Err(ParseError::Order { series: i, t_ms: ms });
            }
            points.push((ms, value));
        }
        series.push(RawSeries { labels: s.metric, points });
    }
    Ok(PromAnswer { series, warnings: env.warnings })
}

/// A discovery answer (`/api/v1/series`, `/api/v1/labels`,
/// `/api/v1/label/<name>/values`): `data` is a list of `T`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListAnswer<T> {
    pub data: Vec<T>,
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ListEnvelope<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<Vec<T>>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Parses a discovery answer: label sets (`T = BTreeMap<String, String>`) or
/// names and values (`T = String`). Error bodies give [`ParseError::Failed`].
pub fn parse_list<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<ListAnswer<T>, ParseError> {
    let env: ListEnvelope<T> = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    if env.status != "success" {
        return Err(ParseError::Failed {
            error_type: env.error_type.unwrap_or_else(|| "unknown".into()),
            error: env.error.unwrap_or_else(|| format!("status {:?} without a message", env.status)),
        });
    }
    // Prometheus answers `"data": null` for an empty list of label values.
    Ok(ListAnswer { data: env.data.unwrap_or_default(), warnings: env.warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_matrix() {
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"x","device":"sw1"},"values":[[1700000060,"1.5"],[1700000120.001,"NaN"],[1700000180,"+Inf"]]},
            {"metric":{},"values":[]}]},"warnings":["w"]}"#;
        let a = parse_answer(body).unwrap();
        assert_eq!(a.series.len(), 2);
        assert_eq!(a.series[0].labels["device"], "sw1");
        assert_eq!(a.series[0].points[0], (1_700_000_060_000, 1.5));
        assert_eq!(a.series[0].points[1].0, 1_700_000_120_001);
        assert!(a.series[0].points[1].1.is_nan());
        assert_eq!(a.series[0].points[2].1, f64::INFINITY);
        assert_eq!(a.warnings, ["w"]);
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let e = parse_answer(br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#);
        assert_eq!(e.unwrap_err().to_string(), "query failed: bad_data: parse error at char 3");
        let e = parse_answer(br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        assert!(matches!(e, Err(ParseError::ResultType(_))));
        let e = parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1,"x"]]}]}}"#);
        assert!(e.unwrap_err().to_string().contains("\"x\""));
        let e = parse_answer(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[2,"1"],[1,"1"]]}]}}"#,
        );
        assert!(matches!(e, Err(ParseError::Order { .. })));
        let e =
            parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[{"values":[[1e300,"1"]]}]}}"#);
        assert!(matches!(e, Err(ParseError::Timestamp { .. })));
        assert!(matches!(parse_answer(b"<html>"), Err(ParseError::Json(_))));
    }

    #[test]
    fn parses_discovery_lists() {
        let a: ListAnswer<String> = parse_list(br#"{"status":"success","data":["__name__","job"]}"#).unwrap();
        assert_eq!(a.data, ["__name__", "job"]);
        let a: ListAnswer<String> = parse_list(br#"{"status":"success","data":null,"warnings":["w"]}"#).unwrap();
        assert!(a.data.is_empty() && a.warnings == ["w"]);
        let a: ListAnswer<BTreeMap<String, String>> =
            parse_list(br#"{"status":"success","data":[{"__name__":"up","job":"a"}]}"#).unwrap();
        assert_eq!(a.data[0]["job"], "a");
        let e = parse_list::<String>(br#"{"status":"error","errorType":"bad_data","error":"1:2: parse error"}"#);
        assert_eq!(e.unwrap_err().to_string(), "query failed: bad_data: 1:2: parse error");
        assert!(matches!(parse_list::<String>(br#"{"status":"success","data":[1]}"#), Err(ParseError::Json(_))));
        assert!(matches!(parse_list::<String>(b"<html>"), Err(ParseError::Json(_))));
    }
}
