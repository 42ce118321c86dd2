//! The driver side of label discovery (DESIGN §7.2: `/prom/<backend>/api/v1/series`,
//! `.../labels`, `.../label/<name>/values`, and `GET /api/v1/catalog`): what a
//! driver is asked ([`LabelQuery`]) and what it answers ([`Discovered`]), plus
//! the plain forwarding of a Prometheus HTTP API request ([`ApiRequest`]) for
//! backends that speak that API themselves.
//!
//! Every answer is bounded: a driver returns at most [`LabelQuery::limit`]
//! entries and says when there were more ([`Discovered::truncated`]); the
//! neutral layer turns that into a warning (a client's own `limit`) or a 422
//! naming `query.max_series` (the hard bound).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{BackendError, Unsupported};
use crate::model::METRIC_NAME_LABEL;
use crate::query::model::{MatchOp, Matcher};

/// The labels of one series, `__name__` included.
pub type SeriesLabels = BTreeMap<String, String>;

/// One `match[]` selector: every matcher must hold (`__name__` is a matcher
/// like any other; an absent label reads as `""`).
pub type Selector = Vec<Matcher>;

/// What a discovery request asks a driver.
#[derive(Debug, Clone, Default)]
pub struct LabelQuery {
    /// `match[]`: a series is selected when any selector holds. Empty: every series.
    pub selectors: Vec<Selector>,
    /// Time bounds (ms since the epoch), when the client gave them. How far a
    /// backend can honour them is in its capability notes.
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Most entries to return; a driver stops collecting after `limit` and sets
    /// [`Discovered::truncated`].
    pub limit: usize,
}

impl LabelQuery {
    /// Whether a series with `labels` is selected.
    pub fn selects(&self, labels: &SeriesLabels) -> bool {
        self.selectors.is_empty()
            || self
                .selectors
                .iter()
                .any(|s| s.iter().all(|m| m.matches(labels.get(&m.label).map_or("", String::as_str))))
    }

    /// Whether some selector may select series of metric `name` (judging by
    /// its `__name__` matchers only).
    pub fn may_select_metric(&self, name: &str) -> bool {
        self.selectors.is_empty() || self.selectors.iter().any(|s| selector_admits_metric(s, name))
    }

    /// The selectors that may select metric `name`, without their `__name__`
    /// matchers (what is left to check against a series' other labels). `None`:
    /// no selector may select it. An empty list inside: every series of it.
    pub fn for_metric(&self, name: &str) -> Option<Vec<Vec<&Matcher>>> {
        if self.selectors.is_empty() {
            return Some(vec![Vec::new()]);
        }
        let out: Vec<Vec<&Matcher>> = self
            .selectors
            .iter()
            .filter(|s| selector_admits_metric(s, name))
            .map(|s| s.iter().filter(|m| m.label != METRIC_NAME_LABEL).collect())
            .collect();
        (!out.is_empty()).then_some(out)
    }

    /// The metric name a selector fixes with `__name__="x"`, if every selector
    /// fixes one (lets a driver look in only those places).
    pub fn exact_names(&self) -> Option<BTreeSet<&str>> {
        if self.selectors.is_empty() {
            return None;
        }
        let mut names = BTreeSet::new();
        for s in &self.selectors {
            let name = s.iter().find(|m| m.label == METRIC_NAME_LABEL && m.op == MatchOp::Equal)?;
            names.insert(name.value.as_str());
        }
        Some(names)
    }
}

fn selector_admits_metric(s: &Selector, name: &str) -> bool {
    s.iter().filter(|m| m.label == METRIC_NAME_LABEL).all(|m| m.matches(name))
}

/// A bounded discovery answer: sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovered<T> {
    pub items: Vec<T>,
    /// There were more than the query's `limit`; `items` holds the first `limit`.
    pub truncated: bool,
    /// Non-fatal remarks (a file that could not be attributed, the server's warnings).
    pub warnings: Vec<String>,
}

impl<T: Ord> Discovered<T> {
    /// Sorts, removes duplicates and cuts to `limit`.
    pub fn bounded(items: impl IntoIterator<Item = T>, limit: usize, warnings: Vec<String>) -> Discovered<T> {
        let set: BTreeSet<T> = items.into_iter().collect();
        let truncated = set.len() > limit;
        Discovered { items: set.into_iter().take(limit).collect(), truncated, warnings }
    }
}

/// Label names of a list of series (sorted, once each).
pub fn names_of(series: &[SeriesLabels]) -> BTreeSet<String> {
    series.iter().flat_map(|s| s.keys().cloned()).collect()
}

/// The refusal of a driver without label discovery (HTTP 422).
pub fn no_discovery(backend: &str, driver: &str) -> BackendError {
    BackendError::Unsupported(Unsupported {
        backend: backend.to_string(),
        feature: "label_discovery".into(),
        message: format!("the {driver} driver cannot list series or labels"),
    })
}

/// A Prometheus HTTP API request forwarded unchanged to a backend that speaks
/// the API itself (`/prom/<backend>/api/v1/...` on a Prometheus backend).
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// `GET` or `POST`.
    pub post: bool,
    /// The API path after the backend's base, e.g. `/api/v1/series` or
    /// `/api/v1/label/job/values` (percent-encoded as received).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// A form body (`application/x-www-form-urlencoded`) of a POST.
    pub form: Bytes,
}

/// The backend's answer, returned to the client as it is.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(label: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(label, op, value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> SeriesLabels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_select_series_and_metrics() {
        let q = LabelQuery {
            selectors: vec![
                vec![m("__name__", MatchOp::Equal, "up"), m("job", MatchOp::NotEqual, "a")],
                vec![m("__name__", MatchOp::Regex, "load.*")],
            ],
            limit: 10,
            ..Default::default()
        };
        assert!(q.selects(&labels(&[("__name__", "up"), ("job", "b")])));
        assert!(q.selects(&labels(&[("__name__", "up")])));
        assert!(!q.selects(&labels(&[("__name__", "up"), ("job", "a")])));
        assert!(q.selects(&labels(&[("__name__", "load1"), ("job", "a")])));
        assert!(q.may_select_metric("up") && q.may_select_metric("load5") && !q.may_select_metric("down"));
        assert_eq!(q.for_metric("up").unwrap().len(), 1);
        assert_eq!(q.for_metric("up").unwrap()[0].len(), 1);
        assert!(q.for_metric("down").is_none());
        assert_eq!(q.exact_names(), None);
        let all = LabelQuery::default();
        assert!(all.may_select_metric("x") && all.for_metric("x") == Some(vec![vec![]]));
        let exact = LabelQuery { selectors: vec![vec![m("__name__", MatchOp::Equal, "up")]], ..Default::default() };
        assert_eq!(exact.exact_names(), Some(["up"].into()));
    }

    #[test]
    fn bounded_answers_say_when_cut() {
        let d = Discovered::bounded(["b", "a", "c", "a"], 2, vec![]);
        assert_eq!((d.items, d.truncated), (vec!["a", "b"], true));
        let d = Discovered::bounded(["b", "a"], 2, vec![]);
        assert_eq!((d.items, d.truncated), (vec!["a", "b"], false));
    }
}
