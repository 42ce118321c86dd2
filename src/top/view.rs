//! The status report as sorted rows of text: what `top` shows, with no terminal.

use crate::status::{Flow, Status};

/// Row order of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// Highest rate first (received for receivers, sent for sinks).
    Rate,
    /// Most drops per second first.
    Drops,
    Name,
}

impl SortBy {
    pub fn label(self) -> &'static str {
        match self {
            SortBy::Rate => "rate",
            SortBy::Drops => "drops",
            SortBy::Name => "name",
        }
    }
}

/// One table: a title, its column headers and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: &'static str,
    pub header: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// Everything on the screen but the key help.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    pub summary: String,
    pub tables: Vec<Table>,
}

pub fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn rate(f: &Flow) -> String {
    f.per_second.map_or_else(|| "-".to_string(), |r| format!("{}/s", number(r)))
}

fn per_second(f: &Flow) -> f64 {
    f.per_second.unwrap_or(0.0)
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1}{}", UNITS[i])
}

fn order<T>(
    items: &mut [T],
    sort: SortBy,
    name: impl Fn(&T) -> &str,
    rate: impl Fn(&T) -> f64,
    drops: impl Fn(&T) -> f64,
) {
    items.sort_by(|a, b| {
        let by = |f: &dyn Fn(&T) -> f64| f(b).total_cmp(&f(a));
        match sort {
            SortBy::Rate => by(&rate),
            SortBy::Drops => by(&drops),
            SortBy::Name => std::cmp::Ordering::Equal,
        }
        .then_with(|| name(a).cmp(name(b)))
    });
}

pub fn tables(status: &Status, sort: SortBy) -> Tables {
    let m = &status.memory;
    let summary = format!(
        "{} | in {}/s | out {}/s | dropped {}/s | memory {} of {} ({:.0}%){} | rates over {} | sorted by {}",
        if status.ready { "ready" } else { "NOT READY" },
        number(status.receivers.iter().map(|r| per_second(&r.received_samples)).sum()),
        number(status.sinks.iter().map(|s| per_second(&s.sent_samples)).sum()),
        number(status.drops.iter().map(|d| per_second(&d.samples)).sum()),
        bytes(m.rss_bytes),
        bytes(m.limit_bytes),
        m.used_ratio * 100.0,
        if m.pressure { " PRESSURE" } else { "" },
        status.window_seconds.map_or_else(|| "-".to_string(), |w| format!("{w:.1}s")),
        sort.label(),
    );

    let mut receivers = status.receivers.clone();
    order(&mut receivers, sort, |r| &r.name, |r| per_second(&r.received_samples), |r| per_second(&r.dropped_samples));
    let receivers = Table {
        title: "Receivers",
        header: vec!["receiver", "state", "samples/s", "total", "dropped/s", "rejected"],
        rows: receivers
            .iter()
            .map(|r| {
                vec![
                    r.name.clone(),
                    r.state.clone(),
                    rate(&r.received_samples),
                    number(r.received_samples.total),
                    rate(&r.dropped_samples),
                    number(r.rejected_requests.total),
                ]
            })
            .collect(),
    };

    let mut sinks = status.sinks.clone();
    order(&mut sinks, sort, |s| &s.name, |s| per_second(&s.sent_samples), |s| per_second(&s.dropped_samples));
    let sinks = Table {
        title: "Sinks",
        header: vec!["sink", "health", "sent/s", "sent", "dropped/s", "queue", "blocked", "retries/s", "last error"],
        rows: sinks
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.state.clone(),
                    rate(&s.sent_samples),
                    number(s.sent_samples.total),
                    rate(&s.dropped_samples),
                    format!("{:.0}% of {}", s.queue_fill_ratio * 100.0, number(s.queue_capacity_samples)),
                    s.fanout_blocked_seconds.per_second.map_or_else(
                        || format!("{:.1}s", s.fanout_blocked_seconds.total),
                        |r| format!("{:.0}%", r * 100.0),
                    ),
                    rate(&s.retries),
                    s.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    };

    let mut pipelines = status.pipelines.clone();
    order(
        &mut pipelines,
        sort,
        |p| &p.name,
        |p| p.cardinality_series.unwrap_or(0.0),
        |p| per_second(&p.dropped_samples),
    );
    let pipelines = Table {
        title: "Pipelines",
        header: vec!["pipeline", "series", "limit", "over warn", "dropped/s"],
        rows: pipelines
            .iter()
            .map(|p| {
                let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), number);
                vec![
                    p.name.clone(),
                    opt(p.cardinality_series),
                    opt(p.cardinality_limit_series),
                    opt(p.cardinality_metrics_over_warn),
                    rate(&p.dropped_samples),
                ]
            })
            .collect(),
    };

    let mut drops = status.drops.clone();
    let label = |d: &crate::status::DropStatus| format!("{} {} {}", d.scope, d.name, d.reason);
    drops.sort_by(|a, b| match sort {
        SortBy::Name => label(a).cmp(&label(b)),
        _ => per_second(&b.samples)
            .total_cmp(&per_second(&a.samples))
            .then_with(|| b.samples.total.total_cmp(&a.samples.total)),
    });
    let drops = Table {
        title: "Drops",
        header: vec!["where", "stage", "reason", "samples/s", "total"],
        rows: drops
            .iter()
            .map(|d| {
                vec![
                    format!("{} {}", d.scope, d.name),
                    d.stage.clone(),
                    d.reason.clone(),
                    rate(&d.samples),
                    number(d.samples.total),
                ]
            })
            .collect(),
    };

    Tables { summary, tables: vec![receivers, sinks, pipelines, drops] }
}

/// The tables as plain text (`tsrelay top --once`).
pub fn plain(t: &Tables) -> String {
    let mut out = format!("{}\n", t.summary);
    for table in &t.tables {
        let cols = table.header.len();
        let mut widths: Vec<usize> = table.header.iter().map(|h| h.len()).collect();
        for row in &table.rows {
            for (i, c) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        out.push_str(&format!("\n{}\n", table.title));
        let line = |cells: Vec<String>| {
            let mut s = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
            s.truncate(s.trim_end().len());
            s + "\n"
        };
        out.push_str(&line(table.header.iter().map(|h| h.to_string()).collect()));
        for row in &table.rows {
            out.push_str(&line(row.clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::*;

    fn flow(total: f64, per_second: f64) -> Flow {
        Flow { total, per_second: Some(per_second) }
    }

    fn sink(name: &str, sent: f64, dropped: f64) -> SinkStatus {
        SinkStatus {
            name: name.into(),
            state: "healthy".into(),
            last_error: None,
            failing_for_seconds: None,
            received_samples: flow(0.0, 0.0),
            sent_samples: flow(sent * 10.0, sent),
            dropped_samples: flow(dropped * 10.0, dropped),
            retries: flow(0.0, 0.0),
            queue_samples: 5.0,
            queue_capacity_samples: 10.0,
            queue_fill_ratio: 0.5,
            fanout_blocked_seconds: flow(0.0, 0.25),
            in_flight_requests: 0.0,
            concurrency_limit: 1.0,
        }
    }

    #[test]
    fn sorts_by_rate_drops_or_name() {
        let status = Status {
            time_ms: 0,
            window_seconds: Some(5.0),
            ready: true,
            receivers: vec![],
            pipelines: vec![],
            sinks: vec![sink("a", 1.0, 30.0), sink("b", 100.0, 0.0), sink("c", 50.0, 2.0)],
            drops: vec![],
            memory: MemoryStatus {
                rss_bytes: 1024.0,
                limit_bytes: 2048.0,
                worst_case_bytes: 0.0,
                used_ratio: 0.5,
                pressure: false,
            },
        };
        let names = |sort| tables(&status, sort).tables[1].rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>();
        assert_eq!(names(SortBy::Rate), ["b", "c", "a"]);
        assert_eq!(names(SortBy::Drops), ["a", "c", "b"]);
        assert_eq!(names(SortBy::Name), ["a", "b", "c"]);
        let t = tables(&status, SortBy::Rate);
        assert!(t.summary.contains("out 151/s") && t.summary.contains("1.0KiB of 2.0KiB (50%)"), "{}", t.summary);
        assert_eq!(t.tables[1].rows[0][5], "50% of 10");
        assert_eq!(t.tables[1].rows[0][6], "25%");
        assert!(plain(&t).contains("Sinks\nsink"));
    }
}
