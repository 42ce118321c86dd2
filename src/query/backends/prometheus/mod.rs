//! Driver for `prometheus_remote_write` sinks: reads through the Prometheus HTTP
//! API (Prometheus, VictoriaMetrics, anything speaking `/api/v1/query_range`)
//! at the sink's `query_url` (default: the origin of its `url`).
//!
//! [`compile`] is the pure PromQL compiler, [`parse`] the answer parser, this
//! file the client and the capability table.

pub mod compile;
pub mod discover;
pub mod parse;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Url;
use reqwest::header::HeaderMap;

use super::{
    ApiRequest, ApiResponse, BackendError, Capabilities, Compiled, Discovered, Driver, DriverConfigError, LabelQuery,
    RawResult, SeriesLabels, StepSupport, Unsupported,
};
use crate::query::grid::TimeGrid;
use crate::query::model::{Across, Function};
use crate::query::plan::SeriesPlan;
use crate::sinks::common::http::{build_client, parse_url, request_headers};
use crate::sinks::remote_write::RemoteWriteSinkConfig;

/// Longest part of an error body quoted in a message.
const MAX_QUOTED_BODY: usize = 512;

pub struct PrometheusDriver {
    backend: String,
    base: Url,
    client: reqwest::Client,
    headers: HeaderMap,
    capabilities: Capabilities,
    requests: metrics::Counter,
    /// The sink's request timeout (reported when a discovery request runs out of it).
    timeout: Duration,
}

/// The capability table: everything, with `rate`/`increase` computed by tsrelay
/// from raw samples.
pub fn capabilities() -> Capabilities {
    Capabilities {
        driver: "prometheus",
        functions: Function::ALL.to_vec(),
        across_on_server: Across::ALL.to_vec(),
        group_by_on_server: true,
        regex_filters: true,
        negative_filters: true,
        steps: StepSupport::Any { min_ms: 1000 },
        raw_counter_values: true,
        label_discovery: true,
        notes: vec![
            "rate and increase are computed by tsrelay from the raw samples (PromQL's rate/increase extrapolate \
             to the window edges, which the neutral definition does not), and combined across labels by tsrelay"
                .into(),
        ],
    }
}

/// The origin (`scheme://host:port`) of a URL.
fn origin(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_path("");
    u.set_query(None);
    u.set_fragment(None);
    u
}

impl PrometheusDriver {
    /// `base_dir` resolves relative TLS file paths (the config file's directory).
    pub fn from_sink(name: &str, c: &RemoteWriteSinkConfig, base_dir: &Path) -> Result<Self, DriverConfigError> {
        let err = |message: String| DriverConfigError { backend: name.to_string(), message };
        let base = match &c.query_url {
            Some(q) => parse_url(q).map_err(|e| err(format!("query_url: {e}")))?,
            None => origin(&parse_url(&c.url).map_err(|e| err(format!("url: {e}")))?),
        };
        let resolve = |p: &Path| -> PathBuf { if p.is_absolute() { p.to_path_buf() } else { base_dir.join(p) } };
        let client = build_client(&c.request, &resolve).map_err(|e| err(e.to_string()))?;
        let headers = request_headers(&c.request, &[]).map_err(|e| err(e.to_string()))?;
        let mut driver = PrometheusDriver::new(name, base, client, headers);
        driver.timeout = c.request.timeout;
        Ok(driver)
    }

    pub fn new(backend: &str, base: Url, client: reqwest::Client, headers: HeaderMap) -> Self {
        PrometheusDriver {
            backend: backend.to_string(),
            base,
            client,
            headers,
            capabilities: capabilities(),
            requests: crate::telemetry::query_backend_requests(backend),
            timeout: crate::sinks::common::config::defaults::timeout(),
        }
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    async fn send(&self, request: &compile::PromRequest) -> Result<RawResult, BackendError> {
        let path = match request {
            compile::PromRequest::Range { .. } => "/api/v1/query_range",
            compile::PromRequest::Instant { .. } => "/api/v1/query",
        };
        let url = self.endpoint(path);
        self.requests.increment(1);
        let answer =
            self.client.post(&url).headers(self.headers.clone()).form(&request.params()).send().await.map_err(|e| {
                BackendError::Unreachable {
                    backend: self.backend.clone(),
                    target: url.clone(),
                    message: error_chain(&e),
                }
            })?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(|e| BackendError::Unreachable {
            backend: self.backend.clone(),
            target: url.clone(),
            message: format!("reading the answer: {}", error_chain(&e)),
        })?;
        if !status.is_success() {
            let message = match parse::parse_answer(&body) {
                Err(parse::ParseError::Failed { error_type, error }) => format!("{error_type}: {error}"),
                _ => quote_body(&body),
            };
            return Err(BackendError::Status { backend: self.backend.clone(), status: status.as_u16(), body: message });
        }
        let parsed = parse::parse_answer(&body)
            .map_err(|e| BackendError::BadResponse { backend: self.backend.clone(), message: format!("{url}: {e}") })?;
        Ok(RawResult { form: super::RawForm::Samples, series: parsed.series, warnings: parsed.warnings })
    }
}

fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_QUOTED_BODY)]);
    text.trim().to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

impl Driver for PrometheusDriver {
    fn backend(&self) -> &str {
        &self.backend
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn compile(&self, plan: &SeriesPlan, grid: &TimeGrid) -> Result<Compiled, Unsupported> {
        let (mut compiled, request) = compile::compile(plan, grid);
        compiled.payload = Some(Arc::new(request));
        Ok(compiled)
    }

    fn execute<'a>(
        &'a self,
        compiled: &'a Compiled,
        plan: &'a SeriesPlan,
        grid: &'a TimeGrid,
    ) -> BoxFuture<'a, Result<RawResult, BackendError>> {
        Box::pin(async move {
            let request = match compiled.payload.as_ref().and_then(|p| p.downcast_ref::<compile::PromRequest>()) {
                Some(r) => r.clone(),
                None => compile::compile(plan, grid).1,
            };
            let mut raw = self.send(&request).await?;
            raw.form = compiled.form;
            Ok(raw)
        })
    }

    fn series<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<SeriesLabels>, BackendError>> {
        Box::pin(self.discover_series(query))
    }

    fn label_names<'a>(&'a self, query: &'a LabelQuery) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        Box::pin(self.discover_label_names(query))
    }

    fn label_values<'a>(
        &'a self,
        name: &'a str,
        query: &'a LabelQuery,
    ) -> BoxFuture<'a, Result<Discovered<String>, BackendError>> {
        Box::pin(self.discover_label_values(name, query))
    }

    fn forward_prometheus_api<'a>(
        &'a self,
        request: &'a ApiRequest,
    ) -> Option<BoxFuture<'a, Result<ApiResponse, BackendError>>> {
        Some(Box::pin(self.forward(request)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_url_defaults_to_the_origin_of_url() {
        let c: RemoteWriteSinkConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:9090/api/v1/write?x=1"}"#).unwrap();
        let d = PrometheusDriver::from_sink("prom", &c, Path::new("/")).unwrap();
        assert_eq!(d.endpoint("/api/v1/query"), "http://127.0.0.1:9090/api/v1/query");
        let c: RemoteWriteSinkConfig =
            serde_json::from_str(r#"{"url":"http://a:1/w","query_url":"http://vm:8428/select/0/prometheus/"}"#)
                .unwrap();
        let d = PrometheusDriver::from_sink("prom", &c, Path::new("/")).unwrap();
        assert_eq!(d.endpoint("/api/v1/query"), "http://vm:8428/select/0/prometheus/api/v1/query");
        let c: RemoteWriteSinkConfig = serde_json::from_str(r#"{"url":"http://a:1/w","query_url":"ftp://x"}"#).unwrap();
        let e = PrometheusDriver::from_sink("prom", &c, Path::new("/")).err().unwrap();
        assert!(e.to_string().contains("query_url"), "{e}");
    }
}
