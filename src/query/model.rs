//! The graph model (DESIGN §7.1): what a graph file or an inline definition says.
//!
//! These types are the *unchecked* definition as written. [`crate::query::validate`]
//! checks them against the metric registry and turns each series into a
//! [`crate::query::plan::SeriesPlan`], the only form drivers ever see.

use serde::{Deserialize, Serialize};

/// A graph file: one or more graphs (`graphs: [...]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphFile {
    pub graphs: Vec<GraphDef>,
}

/// One graph: a title, a display unit and the series drawn.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GraphDef {
    /// Stable id, `[a-z0-9_.-]+`; `GET /api/v1/graphs/<id>` and `--graph ID` use it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Display unit of the values after `scale` (e.g. `bits/s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub series: Vec<SeriesDef>,
}

/// One line (or set of lines, one per `group_by` value) of a graph.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesDef {
    /// A registry key (`network.port.octets.in`) or a metric name (`__name__`).
    pub metric: String,
    /// What is computed per source series over each step bucket (default `raw`).
    #[serde(default)]
    pub function: Function,
    /// Labels kept. Absent: every label is kept and nothing is combined.
    /// Present (even empty): series sharing these labels are combined with `across`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// How series sharing the `group_by` labels are combined (default `sum`).
    #[serde(default)]
    pub across: Across,
    /// Label matchers: `value` (equal), `"!=v"`, `"=~re"`, `"!~re"` (regexes anchored at both ends).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub filter: std::collections::BTreeMap<String, String>,
    /// Every value is multiplied by this after `across` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<f64>,
    /// Legend template with `{label}` placeholders (default: the metric and its labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legend: Option<String>,
}

/// Per-series, per-bucket function. Bucket of the point at `t`: `(t − step, t]`.
///
/// | function | value at `t` |
/// |---|---|
/// | `raw` | the last sample in the bucket (as stored; for counters the counter value) |
/// | `last` | the last sample in the bucket |
/// | `avg` / `min` / `max` / `sum` | over the samples in the bucket |
/// | `count` | number of samples in the bucket |
/// | `increase` | counter growth over the bucket (see below) |
/// | `rate` | `increase / (step in seconds)` |
///
/// `increase` is computed from the samples in the *closed* window `[t − step, t]`
/// (a counter's growth over `(t − step, t]` needs its value at `t − step`): the
/// sum of the deltas between consecutive samples, where a decrease is a counter
/// reset and contributes the new value (the counter restarted from zero), so it is
/// never negative. Fewer than two samples in the window: `null`. No extrapolation.
/// An empty bucket is `null` for every function (`count` too: never zero-filled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Function {
    #[default]
    Raw,
    Rate,
    Increase,
    Avg,
    Min,
    Max,
    Last,
    Count,
    Sum,
}

impl Function {
    pub const ALL: [Function; 9] = [
        Function::Raw,
        Function::Rate,
        Function::Increase,
        Function::Avg,
        Function::Min,
        Function::Max,
        Function::Last,
        Function::Count,
        Function::Sum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Raw => "raw",
            Function::Rate => "rate",
            Function::Increase => "increase",
            Function::Avg => "avg",
            Function::Min => "min",
            Function::Max => "max",
            Function::Last => "last",
            Function::Count => "count",
            Function::Sum => "sum",
        }
    }

    /// `rate` and `increase` only make sense on counters.
    pub fn needs_counter(self) -> bool {
        matches!(self, Function::Rate | Function::Increase)
    }
}

/// How the series sharing the `group_by` labels are combined, per grid point.
/// Only non-null values take part; a point where every input is `null` is `null`.
/// `count` is the number of non-null inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Across {
    #[default]
    Sum,
    Avg,
    Min,
    Max,
    Count,
}

impl Across {
    pub const ALL: [Across; 5] = [Across::Sum, Across::Avg, Across::Min, Across::Max, Across::Count];

    pub fn as_str(self) -> &'static str {
        match self {
            Across::Sum => "sum",
            Across::Avg => "avg",
            Across::Min => "min",
            Across::Max => "max",
            Across::Count => "count",
        }
    }
}

impl std::fmt::Display for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Across {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operator of one label matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// `value`: the label equals it (an empty value matches an absent label).
    Equal,
    /// `"!=value"`.
    NotEqual,
    /// `"=~re"`: the whole value matches the regex.
    Regex,
    /// `"!~re"`: the whole value does not match the regex.
    NotRegex,
}

impl MatchOp {
    /// The PromQL spelling (`=`, `!=`, `=~`, `!~`).
    pub fn promql(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

/// One checked label matcher. Regexes are RE2 syntax (Rust `regex` crate and
/// PromQL agree on it) and anchored at both ends.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    /// The value or the regex source, without the operator prefix.
    pub value: String,
    /// `^(?:value)$`, compiled, for `Regex`/`NotRegex`.
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// Parses the filter syntax of a graph definition: `value`, `"!=v"`, `"=~re"`, `"!~re"`.
    /// A leading `=` followed by anything else than `~` is an equality with the rest
    /// (`"==x"` is not special: write `x`).
    pub fn parse(label: &str, spec: &str) -> Result<Matcher, String> {
        let (op, value) = if let Some(rest) = spec.strip_prefix("=~") {
            (MatchOp::Regex, rest)
        } else if let Some(rest) = spec.strip_prefix("!~") {
            (MatchOp::NotRegex, rest)
        } else if let Some(rest) = spec.strip_prefix("!=") {
            (MatchOp::NotEqual, rest)
        } else {
            (MatchOp::Equal, spec)
        };
        let regex = if op.is_regex() {
            Some(crate::model::regex::anchored(value).map_err(|e| format!("invalid regex {value:?}: {e}"))?)
        } else {
            None
        };
        Ok(Matcher { label: label.to_string(), op, value: value.to_string(), regex })
    }

    /// A matcher from its parts (a `match[]` selector's); regexes are anchored.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        let regex = if op.is_regex() {
            Some(crate::model::regex::anchored(value).map_err(|e| format!("invalid regex {value:?}: {e}"))?)
        } else {
            None
        };
        Ok(Matcher { label: label.to_string(), op, value: value.to_string(), regex })
    }

    /// Whether a series whose label `self.label` has `value` (`""` when absent) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matcher_syntax() {
        let m = Matcher::parse("port", "=~ge-.*").unwrap();
        assert_eq!(m.op, MatchOp::Regex);
        assert!(m.matches("ge-0/0/1") && !m.matches("xe-ge-1"));
        let m = Matcher::parse("d", "!=sw1").unwrap();
        assert!(m.matches("sw2") && !m.matches("sw1"));
        let m = Matcher::parse("d", "!~sw.").unwrap();
        assert!(m.matches("router") && !m.matches("sw1"));
        let m = Matcher::parse("d", "sw1").unwrap();
        assert!(m.matches("sw1") && !m.matches("sw10"));
        assert!(Matcher::parse("d", "=~(").unwrap_err().contains("invalid regex"));
    }

    #[test]
    fn definition_parses_from_yaml() {
        let text = r#"
graphs:
  - id: port.traffic
    title: Port traffic
    unit: bits/s
    series:
      - metric: network.port.octets.in
        function: rate
        group_by: [device]
        across: sum
        filter: { device: sw1, port: "=~ge-.*" }
        scale: 8
        legend: "{device} in"
"#;
        let f: GraphFile = serde_norway::from_str(text).unwrap();
        let s = &f.graphs[0].series[0];
        assert_eq!(s.function, Function::Rate);
        assert_eq!(s.group_by.as_deref(), Some(&["device".to_string()][..]));
        assert_eq!(s.filter["port"], "=~ge-.*");
        let bad: Result<GraphFile, _> = serde_norway::from_str("graphs:\n  - id: a\n    series: []\n    colour: red\n");
        assert!(bad.unwrap_err().to_string().contains("colour"));
    }
}
