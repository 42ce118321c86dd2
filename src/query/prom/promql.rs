//! The PromQL subset served over backends that do not speak PromQL themselves
//! (docs/prometheus-api.md): an expression parsed by `promql-parser` becomes
//! one graph series ([`SeriesDef`]) that the neutral render path validates,
//! checks against the driver's capabilities, compiles and normalizes like any
//! other graph. Nothing here knows a backend.
//!
//! Subset: one selector (`=`, `!=`, `=~`, `!~`), optionally inside one of
//! `rate`, `increase`, `{avg,min,max,last,count,sum}_over_time`, optionally
//! inside one of `sum`, `avg`, `min`, `max`, `count` (`by`/`without`), with any
//! number of multiplications or divisions by a number (and unary minus)
//! around those; or an expression of numbers only (a scalar). Everything else
//! is refused with the construct named.

use std::collections::BTreeMap;

use promql_parser::label::MatchOp as PromMatchOp;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

use crate::model::METRIC_NAME_LABEL;
use crate::query::model::{Across, Function, SeriesDef};
use crate::registry::MetricRegistry;

/// Why a query is outside the subset or malformed (HTTP 400 `bad_data`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The parser refused the text (syntax, unknown function, wrong argument types).
    #[error("invalid PromQL: {0}")]
    Parse(String),
    /// Valid PromQL outside the served subset; `construct` names it.
    #[error("PromQL construct {construct} is outside the subset served for this backend: {message}")]
    Outside { construct: String, message: String },
}

fn outside(construct: impl Into<String>, message: impl Into<String>) -> MapError {
    MapError::Outside { construct: construct.into(), message: message.into() }
}

/// A query mapped onto the graph model.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An expression of numbers only: `resultType` `scalar` (instant) or one
    /// label-less series (range).
    Scalar(f64),
    /// A vector expression: one graph series.
    Vector(VectorQuery),
    /// A selector of a metric the registry does not know: nothing stores it,
    /// so the answer is empty (as Prometheus answers for a metric it never saw).
    Unknown { metric: String },
}

/// One graph series and what the Prometheus answer needs around it.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery {
    pub series: SeriesDef,
    /// The `__name__` selected.
    pub metric: String,
    /// The range of the function's range selector in ms (`rate(x[5m])` → 300000);
    /// `None` for a bare selector.
    pub range_ms: Option<i64>,
    /// Whether the answer's series carry `__name__` (a bare selector only:
    /// Prometheus drops it after functions, aggregations and arithmetic).
    pub keep_name: bool,
}

/// Per-series functions of the subset and what they map to.
fn range_function(name: &str) -> Option<Function> {
    Some(match name {
        "rate" => Function::Rate,
        "increase" => Function::Increase,
        "avg_over_time" => Function::Avg,
        "min_over_time" => Function::Min,
        "max_over_time" => Function::Max,
        "last_over_time" => Function::Last,
        "count_over_time" => Function::Count,
        "sum_over_time" => Function::Sum,
        _ => return None,
    })
}

fn aggregation(name: &str) -> Option<Across> {
    Some(match name {
        "sum" => Across::Sum,
        "avg" => Across::Avg,
        "min" => Across::Min,
        "max" => Across::Max,
        "count" => Across::Count,
        _ => return None,
    })
}

/// A vector expression being built, inside out.
#[derive(Debug, Clone)]
struct Vector {
    metric: String,
    filter: BTreeMap<String, String>,
    function: Function,
    range_ms: Option<i64>,
    group: Option<(Across, Vec<String>)>,
    scale: f64,
    keep_name: bool,
}

enum Node {
    Number(f64),
    Vector(Vector),
}

/// Parses `query` and maps it onto the graph model. `registry` resolves the
/// metric (and the labels `without` keeps).
pub fn map_query(query: &str, registry: &MetricRegistry) -> Result<Mapped, MapError> {
    let expr = parse(query)?;
    match map(&expr)? {
        Node::Number(v) => Ok(Mapped::Scalar(v)),
        Node::Vector(v) => {
            let Some(entry) = registry.get(&v.metric) else {
                return Ok(Mapped::Unknown { metric: v.metric });
            };
            let across = v.group.as_ref().map(|(a, _)| *a).unwrap_or_default();
            let group_by = v.group.map(|(_, labels)| labels);
            // `without`: every label the registry allows for the metric, minus the listed ones.
            let group_by = match group_by {
                Some(labels) if labels.first().map(String::as_str) == Some(WITHOUT_MARK) => {
                    let allowed = entry.labels.as_ref().ok_or_else(|| {
                        outside(
                            "without",
                            format!(
                                "the registry lists no labels for {:?}, so what `without` keeps is unknown: use by (...)",
                                v.metric
                            ),
                        )
                    })?;
                    Some(allowed.iter().filter(|l| !labels[1..].contains(l)).cloned().collect())
                }
                other => other,
            };
            Ok(Mapped::Vector(VectorQuery {
                series: SeriesDef {
                    metric: v.metric.clone(),
                    function: v.function,
                    group_by,
                    across,
                    filter: v.filter,
                    scale: (v.scale != 1.0).then_some(v.scale),
                    legend: None,
                },
                metric: v.metric,
                range_ms: v.range_ms,
                keep_name: v.keep_name,
            }))
        }
    }
}

/// Longest query accepted (bytes). The subset needs far less; the bound keeps
/// parsing, mapping and dropping the syntax tree shallow.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Most operators and brackets outside string literals: an expression's depth
/// is at most this, so no recursion over it can exhaust a stack.
pub const MAX_OPERATORS: usize = 256;

/// Refuses queries too long or too deeply nested before the parser sees them.
fn check_size(query: &str) -> Result<(), MapError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(MapError::Parse(format!("query of {} bytes exceeds {MAX_QUERY_BYTES}", query.len())));
    }
    let mut operators = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in query.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if matches!(c, '"' | '\'' | '`') => quote = Some(c),
            None if "([{-+*/%^=!<>".contains(c) => operators += 1,
            None => {}
        }
    }
    if operators > MAX_OPERATORS {
        return Err(MapError::Parse(format!(
            "query has more than {MAX_OPERATORS} operators and brackets; the served subset needs far fewer"
        )));
    }
    Ok(())
}

/// `promql-parser` on `query`; a panic inside the parser is a refusal, not a crash.
pub fn parse(query: &str) -> Result<Expr, MapError> {
    if query.trim().is_empty() {
        return Err(MapError::Parse("empty query".into()));
    }
    check_size(query)?;
    match crate::telemetry::contain_panic(|| parser::parse(query)) {
        Some(Ok(expr)) => Ok(expr),
        Some(Err(e)) => Err(MapError::Parse(e)),
        None => Err(MapError::Parse("the parser failed on this input (e.g. a duration out of range)".into())),
    }
}

/// Marks a `without` list (first element) until the registry entry is known;
/// not a valid label name, so it can never collide.
const WITHOUT_MARK: &str = "\u{0}without";

fn map(expr: &Expr) -> Result<Node, MapError> {
    match expr {
        Expr::NumberLiteral(n) => Ok(Node::Number(n.val)),
        Expr::Paren(p) => map(&p.expr),
        Expr::Unary(u) => match map(&u.expr)? {
            Node::Number(v) => Ok(Node::Number(-v)),
            Node::Vector(mut v) => {
                v.scale = -v.scale;
                v.keep_name = false;
                Ok(Node::Vector(v))
            }
        },
        Expr::Binary(b) => binary(b),
        Expr::VectorSelector(vs) => {
            let (metric, filter) = selector(vs)?;
            Ok(Node::Vector(Vector {
                metric,
                filter,
                function: Function::Raw,
                range_ms: None,
                group: None,
                scale: 1.0,
                keep_name: true,
            }))
        }
        Expr::MatrixSelector(_) => Err(outside(
            "range selector",
            "a range vector (x[5m]) is only served as the argument of one of the subset's functions",
        )),
        Expr::Call(call) => {
            let name = call.func.name;
            let function = range_function(name)
                .ok_or_else(|| outside(format!("function {name}"), "functions served: rate, increase, avg_over_time, min_over_time, max_over_time, last_over_time, count_over_time, sum_over_time"))?;
            let [arg] = call.args.args.as_slice() else {
                return Err(outside(format!("function {name}"), "takes exactly one range selector"));
            };
            match arg.as_ref() {
                Expr::MatrixSelector(ms) => {
                    let (metric, filter) = selector(&ms.vs)?;
                    let range_ms = i64::try_from(ms.range.as_millis())
                        .map_err(|_| outside("range", format!("the range of {name} is too long")))?;
                    Ok(Node::Vector(Vector {
                        metric,
                        filter,
                        function,
                        range_ms: Some(range_ms),
                        group: None,
                        scale: 1.0,
                        keep_name: false,
                    }))
                }
                Expr::Subquery(_) => {
                    Err(outside("subquery", format!("the argument of {name} must be a range selector")))
                }
                _ => Err(outside(format!("function {name}"), "the argument must be a range selector (x[5m])")),
            }
        }
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            let across = aggregation(&op).ok_or_else(|| {
                outside(format!("aggregation {op}"), "aggregations served: sum, avg, min, max, count")
            })?;
            if a.param.is_some() {
                return Err(outside(format!("aggregation {op}"), "takes no parameter"));
            }
            let mut v = match map(&a.expr)? {
                Node::Vector(v) => v,
                Node::Number(_) => return Err(outside(format!("aggregation {op}"), "of a number")),
            };
            if v.group.is_some() {
                return Err(outside("nested aggregation", "only one aggregation is served"));
            }
            let labels = match &a.modifier {
                None => vec![],
                Some(LabelModifier::Include(ls)) => checked_labels(&ls.labels, "by")?,
                Some(LabelModifier::Exclude(ls)) => {
                    let mut out = vec![WITHOUT_MARK.to_string()];
                    out.extend(checked_labels(&ls.labels, "without")?);
                    out
                }
            };
            // A scale inside the aggregation: count ignores values; min and max swap
            // under a negative factor; sum and avg are linear.
            let across = match across {
                Across::Count => {
                    v.scale = 1.0;
                    across
                }
                Across::Min if v.scale < 0.0 => Across::Max,
                Across::Max if v.scale < 0.0 => Across::Min,
                other => other,
            };
            v.group = Some((across, labels));
            v.keep_name = false;
            Ok(Node::Vector(v))
        }
        Expr::Subquery(_) => Err(outside("subquery", "subqueries are not served")),
        Expr::StringLiteral(_) => Err(outside("string literal", "a query must be a vector or a number")),
        Expr::Extension(_) => Err(outside("extension", "not served")),
    }
}

fn checked_labels(labels: &[String], clause: &str) -> Result<Vec<String>, MapError> {
    if labels.iter().any(|l| l == METRIC_NAME_LABEL) {
        return Err(outside(format!("{clause} ({METRIC_NAME_LABEL})"), "grouping by the metric name is not served"));
    }
    Ok(labels.to_vec())
}

fn binary(b: &parser::BinaryExpr) -> Result<Node, MapError> {
    let op = b.op.to_string();
    if b.op.is_comparison_operator() || b.op.is_set_operator() || b.return_bool() {
        return Err(outside(format!("operator {op}"), "only arithmetic with a number (* and /) is served"));
    }
    if b.modifier.as_ref().is_some_and(|m| m.matching.is_some()) {
        return Err(outside("vector matching", "on/ignoring/group_left/group_right are not served"));
    }
    match (map(&b.lhs)?, map(&b.rhs)?) {
        (Node::Number(l), Node::Number(r)) => {
            let v = match op.as_str() {
                "+" => l + r,
                "-" => l - r,
                "*" => l * r,
                "/" => l / r,
                "%" => l % r,
                "^" => l.powf(r),
                other => return Err(outside(format!("operator {other}"), "between numbers")),
            };
            Ok(Node::Number(v))
        }
        (Node::Vector(v), Node::Number(n)) if op == "*" || op == "/" => {
            scaled(v, &op, if op == "*" { n } else { 1.0 / n }, n)
        }
        (Node::Number(n), Node::Vector(v)) if op == "*" => scaled(v, &op, n, n),
        (Node::Number(_), Node::Vector(_)) if op == "/" => {
            Err(outside("operator /", "a number divided by a vector is not served (only vector / number)"))
        }
        (Node::Vector(_), Node::Vector(_)) => {
            Err(outside(format!("operator {op}"), "between two vectors is not served (only with a number)"))
        }
        _ => Err(outside(format!("operator {op}"), "only * and / by a number are served with a vector")),
    }
}

fn scaled(mut v: Vector, op: &str, by: f64, n: f64) -> Result<Node, MapError> {
    let scale = v.scale * by;
    if !scale.is_finite() || scale == 0.0 {
        return Err(outside(format!("operator {op}"), format!("by {n} gives no finite, non-zero factor")));
    }
    v.scale = scale;
    v.keep_name = false;
    Ok(Node::Vector(v))
}

/// The metric name and the graph filter of a selector.
fn selector(vs: &VectorSelector) -> Result<(String, BTreeMap<String, String>), MapError> {
    if vs.offset.is_some() {
        return Err(outside("offset", "offset modifiers are not served"));
    }
    if vs.at.is_some() {
        return Err(outside("@", "@ modifiers are not served"));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(outside("or in a selector", "alternative matcher sets are not served"));
    }
    let mut name = vs.name.clone();
    let mut filter = BTreeMap::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME_LABEL {
            match (&m.op, &name) {
                (PromMatchOp::Equal, None) => name = Some(m.value.clone()),
                (PromMatchOp::Equal, Some(n)) if *n == m.value => {}
                (PromMatchOp::Equal, Some(_)) => {
                    return Err(outside("__name__ matcher", "two different metric names"));
                }
                _ => return Err(outside("__name__ matcher", "the metric name must be given exactly (=)")),
            }
            continue;
        }
        let spec = match &m.op {
            PromMatchOp::Equal => {
                if ["=~", "!=", "!~"].iter().any(|p| m.value.starts_with(p)) {
                    return Err(outside(
                        format!("matcher {}", m.name),
                        format!("an equality with a value starting with {:?} is not served", &m.value[..2]),
                    ));
                }
                m.value.clone()
            }
            PromMatchOp::NotEqual => format!("!={}", m.value),
            PromMatchOp::Re(_) => format!("=~{}", m.value),
            PromMatchOp::NotRe(_) => format!("!~{}", m.value),
        };
        if filter.insert(m.name.clone(), spec).is_some() {
            return Err(outside(format!("matcher {}", m.name), "two matchers on one label are not served"));
        }
    }
    let name = name.ok_or_else(|| outside("selector without a metric name", "name the metric"))?;
    Ok((name, filter))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn registry() -> MetricRegistry {
        MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/metrics.yaml")).unwrap()
    }

    fn vector(q: &str) -> VectorQuery {
        match map_query(q, &registry()) {
            Ok(Mapped::Vector(v)) => v,
            other => panic!("{q}: {other:?}"),
        }
    }

    fn refused(q: &str) -> String {
        match map_query(q, &registry()) {
            Err(e) => e.to_string(),
            Ok(m) => panic!("{q} was mapped: {m:?}"),
        }
    }

    #[test]
    fn selectors_map_to_filters() {
        let v = vector(r#"golden_octets_total{device="sw1", port=~"ge-.*", x!="a", y!~"b|c"}"#);
        assert_eq!(v.series.metric, "golden_octets_total");
        assert_eq!(v.series.function, Function::Raw);
        assert_eq!(v.series.filter["device"], "sw1");
        assert_eq!(v.series.filter["port"], "=~ge-.*");
        assert_eq!(v.series.filter["x"], "!=a");
        assert_eq!(v.series.filter["y"], "!~b|c");
        assert!(v.keep_name && v.range_ms.is_none() && v.series.group_by.is_none());
        let v = vector(r#"{__name__="golden_load", host="h1"}"#);
        assert_eq!((v.metric.as_str(), v.series.filter.len()), ("golden_load", 1));
    }

    #[test]
    fn functions_aggregations_and_scale() {
        let v = vector("rate(golden_octets_total[5m])");
        assert_eq!((v.series.function, v.range_ms, v.keep_name), (Function::Rate, Some(300_000), false));
        for (f, want) in [
            ("increase", Function::Increase),
            ("avg_over_time", Function::Avg),
            ("min_over_time", Function::Min),
            ("max_over_time", Function::Max),
            ("last_over_time", Function::Last),
            ("count_over_time", Function::Count),
            ("sum_over_time", Function::Sum),
        ] {
            assert_eq!(vector(&format!("{f}(golden_load[1m])")).series.function, want, "{f}");
        }
        let v = vector("sum by (device) (rate(golden_octets_total[1m])) * 8");
        assert_eq!(v.series.group_by.as_deref(), Some(&["device".to_string()][..]));
        assert_eq!((v.series.across, v.series.scale), (Across::Sum, Some(8.0)));
        let v = vector("avg without (port) (rate(golden_octets_total[1m]) / 1000)");
        assert_eq!(v.series.group_by.as_deref(), Some(&["device".to_string()][..]));
        assert_eq!((v.series.across, v.series.scale), (Across::Avg, Some(0.001)));
        assert_eq!(vector("count(golden_load * 8)").series.scale, None);
        assert_eq!(vector("sum(golden_load)").series.group_by.as_deref(), Some(&[][..]));
        // min of a negated series is the negated max
        let v = vector("min(-golden_load)");
        assert_eq!((v.series.across, v.series.scale), (Across::Max, Some(-1.0)));
        assert_eq!(vector("2 * (golden_load / 4)").series.scale, Some(0.5));
    }

    #[test]
    fn numbers_are_scalars_and_unknown_metrics_empty() {
        assert_eq!(map_query("1 + 2 * 3", &registry()), Ok(Mapped::Scalar(7.0)));
        assert_eq!(map_query("-(2 ^ 3)", &registry()), Ok(Mapped::Scalar(-8.0)));
        assert_eq!(map_query("nope_total", &registry()), Ok(Mapped::Unknown { metric: "nope_total".into() }));
    }

    #[test]
    fn a_parser_panic_is_a_refusal() {
        // promql-parser panics converting an out-of-range offset to a Duration
        // (found by the promql_mapping fuzz target); it must be a 400, not a crash.
        let huge = format!("t offset 5{}/6m", "6".repeat(60));
        assert!(matches!(parse(&huge), Err(MapError::Parse(_))));
        assert!(!crate::telemetry::panic_is_contained());
    }

    #[test]
    fn outside_the_subset_names_the_construct() {
        for (q, construct) in [
            ("histogram_quantile(0.9, rate(golden_octets_total[5m]))", "function histogram_quantile"),
            ("golden_load offset 5m", "offset"),
            ("golden_load @ 100", "@"),
            ("rate(golden_octets_total[5m] offset 1m)", "offset"),
            ("topk(3, golden_load)", "aggregation topk"),
            ("golden_load + 1", "operator +"),
            ("golden_load > 1", "operator >"),
            ("golden_load / golden_load", "operator /"),
            ("1 / golden_load", "operator /"),
            ("golden_load * 0", "operator *"),
            ("sum(sum by (host) (golden_load))", "nested aggregation"),
            ("golden_load[5m]", "range selector"),
            ("max_over_time(golden_load[10m:1m])", "subquery"),
            (r#"{__name__=~"golden_.*"}"#, "__name__ matcher"),
            ("sum by (__name__) (golden_load)", "by (__name__)"),
            (r#""text""#, "string literal"),
            ("abs(golden_load)", "function abs"),
        ] {
            let e = refused(q);
            assert!(e.contains(&format!("construct {construct} ")), "{q}: {e}");
        }
        assert!(refused("rate(").starts_with("invalid PromQL"));
        assert!(refused("no_such_function(golden_load)").starts_with("invalid PromQL"));
        assert!(refused("").contains("empty"));
        let deep = format!("{}golden_load{}", "(".repeat(300), ")".repeat(300));
        assert!(refused(&deep).contains("operators"));
        assert!(refused(&"-".repeat(20_000)).contains("exceeds"));
        // brackets inside strings do not count
        let regex = format!(r#"golden_load{{host=~"{}"}}"#, "(h)".repeat(200));
        assert!(matches!(map_query(&regex, &registry()), Ok(Mapped::Vector(_))));
    }
}
