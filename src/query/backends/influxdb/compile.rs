//! A [`SeriesPlan`] on a [`TimeGrid`] → one InfluxQL statement. Pure: no I/O,
//! no clock; the same plan and grid give the same text, byte for byte.
//!
//! # Buckets
//!
//! The point at `t` covers `(t − step, t]`. InfluxQL's `GROUP BY time(step)`
//! buckets are `[b, b + step)` labelled by their start `b`; with the offset
//! argument `1ns` they become `[t − step + 1ns, t + 1ns)`, which for integer
//! nanosecond timestamps is exactly `(t − step, t]`. With `epoch=ms` the label
//! `t − step + 1ns` is printed truncated to `t − step` ms, so the driver adds
//! one step to every returned time ([`time_shift_ms`]). Checked against a real
//! influxd 1.6 with samples on the boundaries (tests/golden).
//!
//! # Functions
//!
//! `raw`/`last`/`avg`/`min`/`max`/`count`/`sum` are InfluxQL's `last`, `mean`,
//! `min`, `max`, `count`, `sum` per bucket, `fill(none)` (an empty bucket is
//! absent, never zero). `rate` and `increase` are *not*
//! `non_negative_derivative(last(...), 1s)`: InfluxQL takes that derivative
//! between consecutive *non-empty* buckets (across a hole it still gives a
//! value) and drops a reset instead of counting the new value, while the model
//! wants the growth seen by the samples in `[t − step, t]`. So for those two the
//! statement selects the stored samples of `[start − step, end]` and the neutral
//! layer computes them ([`RawForm::Samples`]).
//!
//! # Combining
//!
//! With `group_by`, the per-series statement becomes a subquery and the outer
//! statement combines it per bucket and per `group_by` tag ([`RawForm::Grouped`]).

use std::fmt::Write as _;

use super::influxql::{self, Unquotable};
use crate::query::backends::RawForm;
use crate::query::grid::TimeGrid;
use crate::query::model::{Across, Function, MatchOp};
use crate::query::plan::SeriesPlan;

/// Where a metric's values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `rp` of the sink, when set (qualifies the measurement).
    pub retention_policy: Option<String>,
    pub measurement: String,
    pub field: String,
}

impl Target {
    /// The registry's `backends.influxdb` overrides, else the metric name and the sink's `field`.
    pub fn for_plan(plan: &SeriesPlan, default_field: &str, retention_policy: Option<&str>) -> Target {
        let o = plan.entry.influxdb();
        Target {
            retention_policy: retention_policy.map(str::to_string),
            measurement: o.and_then(|o| o.measurement.clone()).unwrap_or_else(|| plan.entry.name.clone()),
            field: o.and_then(|o| o.field.clone()).unwrap_or_else(|| default_field.to_string()),
        }
    }
}

/// One compiled statement and how to read its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    pub form: RawForm,
    /// Added to every returned time to get the grid point (see the module doc).
    pub time_shift_ms: i64,
}

fn bucket_function(f: Function) -> Option<&'static str> {
    Some(match f {
        Function::Raw | Function::Last => "last",
        Function::Avg => "mean",
        Function::Min => "min",
        Function::Max => "max",
        Function::Count => "count",
        Function::Sum => "sum",
        Function::Rate | Function::Increase => return None,
    })
}

fn across_function(a: Across) -> &'static str {
    match a {
        Across::Sum => "sum",
        Across::Avg => "mean",
        Across::Min => "min",
        Across::Max => "max",
        Across::Count => "count",
    }
}

/// `FROM ["rp".]"measurement"`.
fn from(target: &Target, out: &mut String) -> Result<(), Unquotable> {
    out.push_str(" FROM ");
    if let Some(rp) = &target.retention_policy {
        influxql::ident(rp, out)?;
        out.push('.');
    }
    influxql::ident(&target.measurement, out)
}

/// `WHERE <matchers> AND time > s AND time <= e` (or `>=` with `inclusive_start`).
fn where_clause(
    plan: &SeriesPlan,
    start_ms: i64,
    end_ms: i64,
    inclusive_start: bool,
    out: &mut String,
) -> Result<(), Unquotable> {
    out.push_str(" WHERE ");
    for m in &plan.matchers {
        influxql::ident(&m.label, out)?;
        match m.op {
            MatchOp::Equal | MatchOp::NotEqual => {
                let op = if m.op == MatchOp::Equal { " = " } else { " != " };
                if m.value.contains(['\0', '\r']) {
                    // A string literal cannot carry these; a regex of the exact value can.
                    out.push_str(if m.op == MatchOp::Equal { " =~ " } else { " !~ " });
                    influxql::literal_regex(&m.value, out);
                } else {
                    out.push_str(op);
                    influxql::string(&m.value, out)?;
                }
            }
            MatchOp::Regex | MatchOp::NotRegex => {
                out.push_str(if m.op == MatchOp::Regex { " =~ " } else { " !~ " });
                influxql::regex(&m.value, out);
            }
        }
        out.push_str(" AND ");
    }
    out.push_str(if inclusive_start { "time >= " } else { "time > " });
    influxql::time_ms(start_ms, out);
    out.push_str(" AND time <= ");
    influxql::time_ms(end_ms, out);
    Ok(())
}

fn group_by_time(step_ms: i64, out: &mut String) {
    let _ = write!(out, " GROUP BY time({step_ms}ms, 1ns)");
}

/// Compiles `plan` for `grid`. Errors only for text InfluxQL cannot quote.
pub fn compile(plan: &SeriesPlan, grid: &TimeGrid, target: &Target) -> Result<Statement, Unquotable> {
    let mut q = String::with_capacity(256);
    let Some(per_bucket) = bucket_function(plan.function) else {
        // rate / increase: the samples of [start − step, end], per stored series.
        q.push_str("SELECT ");
        influxql::ident(&target.field, &mut q)?;
        from(target, &mut q)?;
        where_clause(plan, grid.start_ms - grid.step_ms, grid.end_ms, true, &mut q)?;
        q.push_str(" GROUP BY *");
        return Ok(Statement { text: q, form: RawForm::Samples, time_shift_ms: 0 });
    };
    let inner = |q: &mut String, alias: bool| -> Result<(), Unquotable> {
        let _ = write!(q, "SELECT {per_bucket}(");
        influxql::ident(&target.field, q)?;
        q.push(')');
        if alias {
            q.push_str(" AS \"v\"");
        }
        from(target, q)?;
        where_clause(plan, grid.start_ms, grid.end_ms, false, q)?;
        group_by_time(grid.step_ms, q);
        q.push_str(", * fill(none)");
        Ok(())
    };
    match &plan.group_by {
        None => {
            inner(&mut q, false)?;
            Ok(Statement { text: q, form: RawForm::PerSeries, time_shift_ms: grid.step_ms })
        }
        Some(labels) => {
            let _ = write!(q, "SELECT {}(\"v\") FROM (", across_function(plan.across));
            inner(&mut q, true)?;
            q.push_str(") WHERE time > ");
            influxql::time_ms(grid.start_ms, &mut q);
            q.push_str(" AND time <= ");
            influxql::time_ms(grid.end_ms, &mut q);
            group_by_time(grid.step_ms, &mut q);
            for l in labels {
                q.push_str(", ");
                influxql::ident(l, &mut q)?;
            }
            q.push_str(" fill(none)");
            Ok(Statement { text: q, form: RawForm::Grouped, time_shift_ms: grid.step_ms })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::query::model::GraphDef;
    use crate::query::validate::validate_graph;
    use crate::registry::MetricRegistry;

    const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    labels: [device, port]
    backends:
      influxdb: { measurement: port, field: in_octets }
  - key: load
    name: node_load1
    type: gauge
"#;

    fn plan(series_yaml: &str) -> SeriesPlan {
        let registry = MetricRegistry::parse(REGISTRY, Path::new("metrics.yaml")).unwrap();
        let def: GraphDef = serde_norway::from_str(&format!("id: g\nseries:\n  - {series_yaml}")).unwrap();
        validate_graph(&def, &registry).unwrap().series.remove(0)
    }

    fn grid() -> TimeGrid {
        TimeGrid::new(1_764_806_400_000, 1_764_810_000_000, 60_000).unwrap()
    }

    fn compiled(series_yaml: &str) -> Statement {
        let p = plan(series_yaml);
        compile(&p, &grid(), &Target::for_plan(&p, "value", None)).unwrap()
    }

    #[test]
    fn per_bucket_functions_shift_the_buckets_by_one_nanosecond() {
        let s = compiled("{ metric: node_load1, function: avg }");
        assert_eq!(
            s.text,
            "SELECT mean(\"value\") FROM \"node_load1\" WHERE time > 1764806400000ms AND time <= 1764810000000ms \
             GROUP BY time(60000ms, 1ns), * fill(none)"
        );
        assert_eq!((s.form, s.time_shift_ms), (RawForm::PerSeries, 60_000));
        for (f, agg) in
            [("raw", "last"), ("last", "last"), ("min", "min"), ("max", "max"), ("count", "count"), ("sum", "sum")]
        {
            let s = compiled(&format!("{{ metric: node_load1, function: {f} }}"));
            assert!(s.text.starts_with(&format!("SELECT {agg}(\"value\")")), "{f}: {}", s.text);
        }
    }

    #[test]
    fn rate_and_increase_read_samples_from_one_step_before() {
        let s = compiled("{ metric: port.in, function: rate, filter: { device: sw1 } }");
        assert_eq!(
            s.text,
            "SELECT \"in_octets\" FROM \"port\" WHERE \"device\" = 'sw1' AND time >= 1764806340000ms \
             AND time <= 1764810000000ms GROUP BY *"
        );
        assert_eq!((s.form, s.time_shift_ms), (RawForm::Samples, 0));
        assert_eq!(compiled("{ metric: port.in, function: increase, group_by: [device] }").form, RawForm::Samples);
    }

    #[test]
    fn group_by_combines_in_a_subquery() {
        let s = compiled("{ metric: port.in, function: last, group_by: [device], across: avg }");
        assert_eq!(
            s.text,
            "SELECT mean(\"v\") FROM (SELECT last(\"in_octets\") AS \"v\" FROM \"port\" WHERE time > 1764806400000ms \
             AND time <= 1764810000000ms GROUP BY time(60000ms, 1ns), * fill(none)) WHERE time > 1764806400000ms \
             AND time <= 1764810000000ms GROUP BY time(60000ms, 1ns), \"device\" fill(none)"
        );
        assert_eq!(s.form, RawForm::Grouped);
        let all = compiled("{ metric: node_load1, function: max, group_by: [], across: count }");
        assert!(all.text.starts_with("SELECT count(\"v\") FROM (SELECT max("));
        assert!(all.text.ends_with("GROUP BY time(60000ms, 1ns) fill(none)"));
    }

    #[test]
    fn filters_are_quoted_and_regexes_anchored() {
        let s =
            compiled(r#"{ metric: port.in, function: max, filter: { device: "!=sw'1 OR 1=1", port: "=~ge-0/0/.*" } }"#);
        assert!(
            s.text.contains("WHERE \"device\" != 'sw\\'1 OR 1=1' AND \"port\" =~ /^(?:ge-0\\/0\\/.*)$/ AND time > "),
            "{}",
            s.text
        );
        let s = compiled(r#"{ metric: port.in, function: max, filter: { port: "!~x\"y" } }"#);
        assert!(s.text.contains("\"port\" !~ /^(?:x\"y)$/"), "{}", s.text);
    }

    #[test]
    fn retention_policy_qualifies_the_measurement_and_output_is_deterministic() {
        let p = plan("{ metric: node_load1, function: avg }");
        let t = Target::for_plan(&p, "val", Some("one \"week\""));
        let a = compile(&p, &grid(), &t).unwrap();
        assert!(a.text.contains("FROM \"one \\\"week\\\"\".\"node_load1\""), "{}", a.text);
        assert!(a.text.starts_with("SELECT mean(\"val\")"));
        assert_eq!(a, compile(&p, &grid(), &t).unwrap());
    }

    #[test]
    fn names_influxql_cannot_carry_are_refused() {
        let p = plan("{ metric: node_load1, function: avg }");
        let t = Target { retention_policy: None, measurement: "a\rb".into(), field: "value".into() };
        assert!(compile(&p, &grid(), &t).is_err());
    }
}
