//! Label discovery in the Prometheus HTTP API over any readable backend
//! (DESIGN §7.2): `GET`/form `POST` `/prom/<backend>/api/v1/series`,
//! `.../labels` and `.../label/<name>/values`.
//!
//! A backend that speaks the Prometheus API itself gets the request forwarded
//! unchanged and its answer returned as it is. For every other backend the
//! parameters are read here — `match[]` (series selectors, parsed with the
//! `promql-parser` crate), `start` and `end` (Unix seconds or RFC 3339), `limit`
//! — and answered by the backend's driver through its own discovery
//! ([`crate::query::backends::Driver::series`] and friends).
//!
//! Answers are bounded by `[query] max_series` entries: more is 422
//! `errorType = "limit"` naming it. A client's own `limit` (as in Prometheus
//! ≥ 2.49) cuts the answer instead, with a warning.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql_parser::label::MatchOp as PromOp;
use promql_parser::parser::Expr;
use serde::Serialize;

use crate::model::METRIC_NAME_LABEL;
use crate::query::api::finish;
use crate::query::backends::discovery::{ApiRequest, Discovered, LabelQuery, Selector};
use crate::query::model::{MatchOp, Matcher};
use crate::query::request::FieldError;
use crate::query::service::{QueryError, QueryService};
use crate::registry::is_valid_label_name;

/// Longest `match[]` selector accepted (bytes): a selector is a name and a few matchers.
pub const MAX_SELECTOR_BYTES: usize = 16 * 1024;

/// The discovery routes, merged into the query listener's router.
pub fn routes() -> Router<Arc<QueryService>> {
    Router::new()
        .route("/prom/{backend}/api/v1/series", get(series).post(series))
        .route("/prom/{backend}/api/v1/labels", get(labels).post(labels))
        .route("/prom/{backend}/api/v1/label/{name}/values", get(label_values).post(label_values))
}

/// The parameters of a discovery request (query string and form body together).
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub selectors: Vec<Selector>,
    /// `match[]` given at all (an empty list and none differ for `/series`).
    pub matched: bool,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// The client's `limit`; `None` or 0: no limit of its own.
    pub limit: Option<usize>,
}

fn bad(field: &str, message: impl Into<String>) -> QueryError {
    QueryError::BadRequest(FieldError { field: field.to_string(), message: message.into() })
}

/// Reads `match[]`, `start`, `end` and `limit` from the query string and, for
/// a form POST, the body; other parameters are ignored (as Prometheus does).
pub fn parse_params(query: Option<&str>, form: Option<&[u8]>) -> Result<Params, QueryError> {
    let mut p = Params::default();
    let pairs =
        form_urlencoded::parse(query.unwrap_or("").as_bytes()).chain(form.into_iter().flat_map(form_urlencoded::parse));
    for (key, value) in pairs {
        match key.as_ref() {
            "match[]" => {
                p.matched = true;
                p.selectors.extend(parse_selector(&value).map_err(|e| bad("match[]", e))?);
            }
            "start" => p.start_ms = Some(parse_prom_time(&value).map_err(|e| bad("start", e))?),
            "end" => p.end_ms = Some(parse_prom_time(&value).map_err(|e| bad("end", e))?),
            "limit" => {
                let n: usize = value.trim().parse().map_err(|_| {
                    bad("limit", format!("invalid parameter \"limit\": {value:?} is not a non-negative integer"))
                })?;
                p.limit = (n > 0).then_some(n);
            }
            _ => {}
        }
    }
    if let (Some(s), Some(e)) = (p.start_ms, p.end_ms)
        && e < s
    {
        return Err(bad("end", "invalid parameter \"end\": end timestamp must not be before start time"));
    }
    Ok(p)
}

/// One `match[]` selector → the conjunctions it stands for (one, or one per
/// `or` group). Anything but a plain series selector is refused.
pub fn parse_selector(text: &str) -> Result<Vec<Selector>, String> {
    if text.len() > MAX_SELECTOR_BYTES {
        return Err(format!("invalid parameter \"match[]\": longer than {MAX_SELECTOR_BYTES} bytes"));
    }
    let expr = crate::telemetry::contain_panic(|| promql_parser::parser::parse(text))
        .ok_or_else(|| format!("invalid parameter \"match[]\": the parser failed on {text:?}"))?
        .map_err(|e| format!("invalid parameter \"match[]\": {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("invalid parameter \"match[]\": {text:?} is not a series selector"));
    };
    if vs.offset.is_some() || vs.at.is_some() {
        return Err(format!("invalid parameter \"match[]\": {text:?}: offset and @ are not part of a series selector"));
    }
    let convert = |m: &promql_parser::label::Matcher| -> Result<Matcher, String> {
        let op = match m.op {
            PromOp::Equal => MatchOp::Equal,
            PromOp::NotEqual => MatchOp::NotEqual,
            PromOp::Re(_) => MatchOp::Regex,
            PromOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(&m.name, op, &m.value).map_err(|e| format!("invalid parameter \"match[]\": {e}"))
    };
    let name = vs.name.as_ref().map(|n| Matcher::new(METRIC_NAME_LABEL, MatchOp::Equal, n)).transpose()?;
    let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![&vs.matchers.matchers]
    } else {
        vs.matchers.or_matchers.iter().collect()
    };
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut sel: Selector = name.iter().cloned().collect();
        for m in g {
            sel.push(convert(m)?);
        }
        if sel.iter().all(|m| m.matches("")) {
            return Err(format!(
                "invalid parameter \"match[]\": {text:?}: a selector needs a name or a matcher that does not match the empty string"
            ));
        }
        out.push(sel);
    }
    Ok(out)
}

/// A Prometheus API time: Unix seconds (`1700000000`, `1700000000.5`) or RFC 3339 in UTC.
pub fn parse_prom_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.0e15 {
            return Err(format!("cannot parse {text:?} to a valid timestamp: out of range"));
        }
        return Ok(ms as i64);
    }
    let st = humantime::parse_rfc3339_weak(t)
        .map_err(|_| format!("cannot parse {text:?} to a valid timestamp (Unix seconds or RFC 3339)"))?;
    let ms = match st.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).map_err(|_| format!("{text:?} is out of range"))?,
        Err(e) => -i64::try_from(e.duration().as_millis()).map_err(|_| format!("{text:?} is out of range"))?,
    };
    Ok(ms)
}

#[derive(Serialize)]
struct Success<T: Serialize> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

fn success<T: Serialize>(data: T, warnings: Vec<String>) -> Response {
    (StatusCode::OK, axum::Json(Success { status: "success", data, warnings })).into_response()
}

/// Which list is asked for.
enum Ask {
    Series,
    Labels,
    Values(String),
}

impl Ask {
    fn endpoint(&self) -> &'static str {
        match self {
            Ask::Series => "prom_series",
            Ask::Labels => "prom_labels",
            Ask::Values(_) => "prom_label_values",
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Ask::Series => "series",
            Ask::Labels => "label names",
            Ask::Values(_) => "label values",
        }
    }
}

/// Cuts an answer to the client's limit (a warning) or refuses one over `max_series` (422).
fn bounded<T>(d: Discovered<T>, params: &Params, max: usize, what: &str) -> Result<(Vec<T>, Vec<String>), QueryError> {
    let mut warnings = d.warnings;
    if d.truncated {
        match params.limit {
            Some(l) if l <= max => warnings.push(format!("results truncated due to limit ({l} {what})")),
            _ => {
                return Err(QueryError::Limit {
                    field: "match[]",
                    message: format!(
                        "more than query.max_series {max} {what}; narrow match[] (or pass a smaller limit to cut the list)"
                    ),
                });
            }
        }
    }
    Ok((d.items, warnings))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/x-www-form-urlencoded"))
}

async fn answer(
    s: &QueryService,
    backend: &str,
    ask: &Ask,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, QueryError> {
    let driver = s.driver(backend)?;
    let post = method == Method::POST;
    let form = (post && is_form(headers)).then_some(body.as_ref());
    let path = uri.path();
    let api_path = path.find("/api/v1/").map_or(path, |i| &path[i..]).to_string();
    let request = ApiRequest {
        post,
        path: api_path,
        query: uri.query().map(str::to_string),
        form: if form.is_some() { body.clone() } else { Bytes::new() },
    };
    if let Some(forward) = driver.forward_prometheus_api(&request) {
        let reply = s.bounded(backend, forward).await?;
        let mut response =
            (StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY), reply.body).into_response();
        if let Some(ct) = reply.content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(CONTENT_TYPE, ct);
        }
        return Ok(response);
    }
    let params = parse_params(uri.query(), form)?;
    if let Ask::Values(name) = ask
        && !is_valid_label_name(name)
    {
        return Err(bad("name", format!("invalid label name: {name:?}")));
    }
    if matches!(ask, Ask::Series) && !params.matched {
        return Err(bad("match[]", "no match[] parameter provided"));
    }
    let max = s.config().max_series;
    let query = LabelQuery {
        selectors: params.selectors.clone(),
        start_ms: params.start_ms,
        end_ms: params.end_ms,
        limit: params.limit.map_or(max, |l| l.min(max)),
    };
    let what = ask.what();
    Ok(match ask {
        Ask::Series => {
            let (items, warnings) = bounded(s.bounded(backend, driver.series(&query)).await?, &params, max, what)?;
            success(items, warnings)
        }
        Ask::Labels => {
            let (items, warnings) = bounded(s.bounded(backend, driver.label_names(&query)).await?, &params, max, what)?;
            success(items, warnings)
        }
        Ask::Values(name) => {
            let (items, warnings) =
                bounded(s.bounded(backend, driver.label_values(name, &query)).await?, &params, max, what)?;
            success(items, warnings)
        }
    })
}

async fn run(
    s: Arc<QueryService>,
    backend: String,
    ask: Ask,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let result = answer(&s, &backend, &ask, &method, &uri, &headers, &body).await;
    finish(ask.endpoint(), started, result)
}

async fn series(
    State(s): State<Arc<QueryService>>,
    Path(backend): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(s, backend, Ask::Series, method, uri, headers, body).await
}

async fn labels(
    State(s): State<Arc<QueryService>>,
    Path(backend): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(s, backend, Ask::Labels, method, uri, headers, body).await
}

async fn label_values(
    State(s): State<Arc<QueryService>>,
    Path((backend, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    run(s, backend, Ask::Values(name), method, uri, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Selector {
        let mut v = parse_selector(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(v.len(), 1, "{text}");
        v.remove(0)
    }

    fn rendered(s: &Selector) -> Vec<String> {
        s.iter().map(|m| format!("{}{}{}", m.label, m.op.promql(), m.value)).collect()
    }

    #[test]
    fn selectors_parse_with_promql_parser() {
        assert_eq!(rendered(&one("up")), ["__name__=up"]);
        assert_eq!(rendered(&one(r#"up{job=~"a.*", zone!="eu"}"#)), ["__name__=up", "job=~a.*", "zone!=eu"]);
        assert_eq!(rendered(&one(r#"{__name__=~"golden_.*"}"#)), ["__name__=~golden_.*"]);
        assert_eq!(rendered(&one(r#"{job="a\"b"}"#)), ["job=a\"b"]);
        let ors = parse_selector(r#"{job="a" or job="b"}"#).unwrap();
        assert_eq!(ors.len(), 2);
        for (bad, why) in [
            ("up[5m]", "not a series selector"),
            ("rate(up[5m])", "not a series selector"),
            ("up offset 5m", "offset"),
            (r#"{job=~".*"}"#, "matcher"),
            ("{", "invalid parameter"),
            (r#"{job=~"("}"#, "invalid parameter"),
            ("", "invalid parameter"),
        ] {
            let e = parse_selector(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(parse_selector(&"a".repeat(MAX_SELECTOR_BYTES + 1)).unwrap_err().contains("longer"));
    }

    #[test]
    fn params_from_query_and_form() {
        let p = parse_params(
            Some("match%5B%5D=up&start=1700000000.5&end=2023-11-14T22:14:00Z"),
            Some(b"match[]=%7Bjob%3D%22a%22%7D&limit=3&other=x"),
        )
        .unwrap();
        assert_eq!(p.selectors.len(), 2);
        assert!(p.matched);
        assert_eq!((p.start_ms, p.end_ms, p.limit), (Some(1_700_000_000_500), Some(1_700_000_040_000), Some(3)));
        assert_eq!(parse_params(Some("limit=0"), None).unwrap().limit, None);
        for (q, field) in [
            ("start=yesterday", "start"),
            ("end=1e400", "end"),
            ("limit=-1", "limit"),
            ("match[]=up[", "match[]"),
            ("start=10&end=5", "end"),
        ] {
            match parse_params(Some(q), None) {
                Err(QueryError::BadRequest(f)) => assert_eq!(f.field, field, "{q}: {f:?}"),
                other => panic!("{q}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_cut_or_refuse() {
        let d = Discovered { items: vec![1, 2], truncated: true, warnings: vec![] };
        let p = Params { limit: Some(2), ..Params::default() };
        let (items, w) = bounded(d.clone(), &p, 10, "series").unwrap();
        assert_eq!((items.len(), w.len()), (2, 1));
        match bounded(d, &Params::default(), 2, "series") {
            Err(QueryError::Limit { field, message }) => {
                assert_eq!(field, "match[]");
                assert!(message.contains("query.max_series 2"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }
}
