//! `GET /api/v1/catalog` (DESIGN §7.2, for editors and pickers): every registry
//! metric with its type, unit and help, the stored graphs that use it, and the
//! backends that hold it with the label names each has for it — asked of every
//! readable backend through its driver's label discovery
//! ([`crate::query::backends::Driver::label_names`] with `match[] = {__name__="<metric>"}`).
//!
//! A backend that fails (down, timed out, no discovery) does not fail the
//! catalog: it is listed under `backends` with its error, and no metric names it.
//! The JSON shape is documented in `docs/query.md`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;

use super::backends::{BackendError, Driver, LabelQuery};
use super::model::{MatchOp, Matcher};
use super::service::QueryService;
use crate::model::METRIC_NAME_LABEL;

/// Metrics asked of one backend at once.
const CONCURRENCY: usize = 4;

/// `data` of `GET /api/v1/catalog`.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// Registry order.
    pub metrics: Vec<CatalogMetric>,
    /// Every sink, sorted by name: whether it could be asked, and how that went.
    pub backends: Vec<CatalogBackend>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogMetric {
    pub key: String,
    pub name: String,
    #[serde(rename = "type")]
    pub metric_type: &'static str,
    pub unit: Option<String>,
    pub help: Option<String>,
    /// The labels the registry allows (`null`: any).
    pub labels: Option<Vec<String>>,
    /// Ids of the stored graphs with a series of this metric, sorted.
    pub graphs: Vec<String>,
    /// The backends that hold series of it, sorted by name.
    pub backends: Vec<Holding>,
}

/// One backend holding a metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holding {
    pub backend: String,
    /// Label names of the metric's series there, `__name__` included, sorted.
    pub label_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogBackend {
    pub name: String,
    /// `false`: the sink type has no read driver (`reason`).
    pub readable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The backend failed: `errorType` as in the API's error envelope, and the message.
    #[serde(rename = "errorType", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// What one backend holds: metric name → label names (absent: not held).
type Held = (BTreeMap<String, Vec<String>>, Vec<String>);

async fn ask_backend(driver: Arc<dyn Driver>, names: Vec<String>, limit: usize) -> Result<Held, BackendError> {
    let answers: Vec<(String, Vec<String>, Vec<String>)> = stream::iter(names.into_iter().map(|name| {
        let driver = driver.clone();
        async move {
            let matcher = Matcher::new(METRIC_NAME_LABEL, MatchOp::Equal, &name)
                .map_err(|e| BackendError::BadResponse { backend: driver.backend().to_string(), message: e })?;
            let query = LabelQuery { selectors: vec![vec![matcher]], start_ms: None, end_ms: None, limit };
            let d = driver.label_names(&query).await?;
            let mut warnings = d.warnings;
            if d.truncated {
                warnings.push(format!("{name}: label names cut at query.max_series {limit}"));
            }
            Ok::<_, BackendError>((name, d.items, warnings))
        }
    }))
    .buffered(CONCURRENCY)
    .try_collect()
    .await?;
    let mut held = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, labels, w) in answers {
        if !labels.is_empty() {
            held.insert(name, labels);
        }
        warnings.extend(w);
    }
    warnings.sort();
    warnings.dedup();
    Ok((held, warnings))
}

/// Builds the catalog; every readable backend is asked at once, each within `[query] timeout`.
pub async fn catalog(s: &QueryService) -> Catalog {
    let registry = s.registry();
    let names: Vec<String> = registry.entries().iter().map(|e| e.name.clone()).collect();
    let limit = s.config().max_series;
    let asks = s.drivers().iter().map(|(backend, driver)| {
        let work = ask_backend(driver.clone(), names.clone(), limit);
        async move { (backend.clone(), driver.capabilities().driver, s.bounded(backend, work).await) }
    });
    let answers = futures::future::join_all(asks).await;

    let mut backends: Vec<CatalogBackend> = s
        .unreadable()
        .iter()
        .map(|(name, why)| CatalogBackend {
            name: name.clone(),
            readable: false,
            driver: None,
            reason: Some(why.clone()),
            error_type: None,
            error: None,
            warnings: Vec::new(),
        })
        .collect();
    let mut held: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for (backend, driver, answer) in answers {
        let mut entry = CatalogBackend {
            name: backend.clone(),
            readable: true,
            driver: Some(driver),
            reason: None,
            error_type: None,
            error: None,
            warnings: Vec::new(),
        };
        match answer {
            Ok((by_metric, warnings)) => {
                entry.warnings = warnings;
                held.insert(backend, by_metric);
            }
            Err(e) => {
                tracing::warn!(backend = %backend, error = %e, "catalog: backend discovery failed");
                entry.error_type = Some(e.error_type());
                entry.error = Some(e.to_string());
            }
        }
        backends.push(entry);
    }
    backends.sort_by(|a, b| a.name.cmp(&b.name));

    let mut graphs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for g in s.graphs().iter() {
        for plan in &g.series {
            let ids = graphs.entry(plan.metric_name()).or_default();
            if !ids.contains(&g.def.id) {
                ids.push(g.def.id.clone());
            }
        }
    }
    let metrics = registry
        .entries()
        .iter()
        .map(|e| {
            let mut ids = graphs.get(e.name.as_str()).cloned().unwrap_or_default();
            ids.sort();
            CatalogMetric {
                key: e.key.clone(),
                name: e.name.clone(),
                metric_type: e.metric_type.as_str(),
                unit: e.unit.clone(),
                help: e.help.clone(),
                labels: e.labels.clone(),
                graphs: ids,
                backends: held
                    .iter()
                    .filter_map(|(backend, by_metric)| {
                        by_metric
                            .get(&e.name)
                            .map(|labels| Holding { backend: backend.clone(), label_names: labels.clone() })
                    })
                    .collect(),
            }
        })
        .collect();
    Catalog { metrics, backends }
}
