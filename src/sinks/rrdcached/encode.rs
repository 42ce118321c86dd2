//! Samples → rrdcached commands, and rrdcached replies → meaning. Pure functions.
//!
//! A file path comes from a template over the labels, sanitized component by
//! component so that no label value can leave rrdcached's base directory.
//! RRD files take one value per whole second, strictly increasing: samples of
//! a file are sorted, and several in the same second are coalesced (the last
//! received wins; the others are counted as `duplicate`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use serde::Deserialize;

use super::config::MissingLabel;
use crate::model::{Labels, MetricKind, Sample};

/// Longest command line sent; rrdcached drops the connection on lines over 8 KiB.
pub const MAX_COMMAND_BYTES: usize = 4000;

/// How a data source interprets values (rrdcreate(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DsType {
    Gauge,
    Counter,
    Derive,
    Dcounter,
    Dderive,
    Absolute,
}

impl DsType {
    pub fn as_str(self) -> &'static str {
        match self {
            DsType::Gauge => "GAUGE",
            DsType::Counter => "COUNTER",
            DsType::Derive => "DERIVE",
            DsType::Dcounter => "DCOUNTER",
            DsType::Dderive => "DDERIVE",
            DsType::Absolute => "ABSOLUTE",
        }
    }

    /// Counters become DERIVE with a minimum of 0 (a reset yields unknown,
    /// not a huge spike); everything else is a GAUGE.
    pub fn for_kind(kind: MetricKind) -> DsType {
        match kind {
            MetricKind::Counter => DsType::Derive,
            _ => DsType::Gauge,
        }
    }

    fn min(self) -> &'static str {
        match self {
            DsType::Derive => "0",
            _ => "U",
        }
    }
}

/// `backends.rrdcached` of one registry entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RrdcachedOverride {
    /// A path template used instead of the sink's `path_template`.
    pub path: Option<String>,
    pub ds: Option<String>,
    pub ds_type: Option<DsType>,
}

/// Looks a metric name up in the registry; `None` when it has no override.
pub type OverrideLookup = Arc<dyn Fn(&str) -> Option<Arc<RrdcachedOverride>> + Send + Sync>;

/// rrdtool's rule for data-source names.
pub fn valid_ds_name(ds: &str) -> bool {
    (1..=19).contains(&ds.len()) && ds.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One piece of a path template: text as written, or a `{label}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Label(String),
}

/// A parsed `path_template`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("{0:?} is empty")]
    Empty(String),
    #[error("{0:?} is absolute; paths are relative to rrdcached's base directory")]
    Absolute(String),
    #[error("{0:?} has a `.` or `..` component")]
    DotComponent(String),
    #[error("{0:?} has an unclosed or empty `{{label}}`")]
    Brace(String),
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let err_src = || template.to_string();
        if template.trim().is_empty() {
            return Err(TemplateError::Empty(err_src()));
        }
        if template.starts_with('/') {
            return Err(TemplateError::Absolute(err_src()));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or_else(|| TemplateError::Brace(err_src()))? + open;
            let name = rest[open + 1..close].trim();
            if name.is_empty() || name.contains('{') {
                return Err(TemplateError::Brace(err_src()));
            }
            parts.push(Part::Label(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::Brace(err_src()));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        // Literal components may not climb out either (labels are sanitized at render time).
        let literal_only: String =
            parts.iter().map(|p| if let Part::Literal(l) = p { l.as_str() } else { "x" }).collect();
        if literal_only.split('/').any(|c| c == "." || c == "..") {
            return Err(TemplateError::DotComponent(err_src()));
        }
        Ok(PathTemplate { parts })
    }

    /// The pieces in order (the read side inverts paths back into labels with them).
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Renders the path for `labels` into `out` (cleared first). `Err(label)`
    /// names a missing label when `missing` is `Drop`.
    pub fn render<'t>(
        &'t self,
        labels: &Labels,
        missing: MissingLabel,
        placeholder: &str,
        out: &mut String,
    ) -> Result<(), &'t str> {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Label(name) => {
                    let value = match labels.get(name).filter(|v| !v.is_empty()) {
                        Some(v) => v,
                        None if missing == MissingLabel::Placeholder => placeholder,
                        None => return Err(name),
                    };
                    // A value is one component at most: `/` is sanitized like any other byte.
                    for c in value.chars() {
                        out.push(if is_safe(c) { c } else { '_' });
                    }
                }
            }
        }
        sanitize_path(out);
        Ok(())
    }
}

/// Whether a character survives path sanitizing as it is (others become `_`).
pub fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Makes every component of `path` safe in place: `[^A-Za-z0-9._-]` → `_`,
/// empty or dots-only components (`.`, `..`) → underscores, no leading `/`.
pub fn sanitize_path(path: &mut String) {
    let mut out = String::with_capacity(path.len());
    for (i, component) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if component.is_empty() {
            out.push('_');
        } else if component.bytes().all(|b| b == b'.') {
            out.extend(std::iter::repeat_n('_', component.len()));
        } else {
            out.extend(component.chars().map(|c| if is_safe(c) { c } else { '_' }));
        }
    }
    *path = out;
}

/// Where one sample goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub ds: String,
    pub ds_type: DsType,
}

/// The points of one file in one batch: sorted, one per second.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePoints {
    pub path: String,
    pub target: Target,
    /// `(unix seconds, value)`, strictly increasing in time.
    pub points: Vec<(i64, f64)>,
}

/// A batch grouped by file, with what was left out and why.
#[derive(Debug, Default)]
pub struct Plan {
    pub files: Vec<FilePoints>,
    /// Samples replaced by a later one of the same file and second.
    pub coalesced: usize,
    /// Samples missing a label of the path template (`missing_label = "drop"`).
    pub missing_label: usize,
    /// ±Inf values, which RRD cannot store (NaN is written as unknown, `U`).
    pub unrepresentable: usize,
    /// A label that was missing, for the log.
    pub missing_example: Option<String>,
}

/// Resolves samples to files: templates, registry overrides, defaults.
pub struct Router {
    pub template: PathTemplate,
    pub missing: MissingLabel,
    pub placeholder: String,
    pub ds: String,
    pub overrides: Option<OverrideLookup>,
    /// Parsed override templates, by template text (bounded by the registry's size).
    parsed: HashMap<String, Option<PathTemplate>>,
}

impl Router {
    pub fn new(
        template: PathTemplate,
        missing: MissingLabel,
        placeholder: String,
        ds: String,
        overrides: Option<OverrideLookup>,
    ) -> Self {
        Router { template, missing, placeholder, ds, overrides, parsed: HashMap::new() }
    }

    /// Groups `samples` by file; within a file sorts by second and coalesces.
    pub fn plan<'a>(&mut self, samples: impl Iterator<Item = &'a Sample>) -> Plan {
        let mut plan = Plan::default();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut path = String::new();
        let mut last: Option<(&'a str, Option<Arc<RrdcachedOverride>>)> = None;
        for sample in samples {
            if sample.value.is_infinite() {
                plan.unrepresentable += 1;
                continue;
            }
            let name = sample.name();
            let found = match (&self.overrides, &last) {
                (None, _) => None,
                (Some(_), Some((n, o))) if *n == name => o.clone(),
                (Some(lookup), _) => {
                    let o = lookup(name);
                    last = Some((name, o.clone()));
                    o
                }
            };
            let template = match found.as_ref().and_then(|o| o.path.as_ref()) {
                Some(t) => {
                    let parsed = self.parsed.entry(t.clone()).or_insert_with(|| {
                        PathTemplate::parse(t)
                            .inspect_err(
                                |e| tracing::warn!(template = %t, error = %e, "registry rrdcached.path ignored"),
                            )
                            .ok()
                    });
                    parsed.as_ref().unwrap_or(&self.template)
                }
                None => &self.template,
            };
            if let Err(label) = template.render(&sample.labels, self.missing, &self.placeholder, &mut path) {
                plan.missing_label += 1;
                if plan.missing_example.is_none() {
                    plan.missing_example = Some(format!("{} lacks label {label:?}", sample.labels));
                }
                continue;
            }
            let i = match index.get(path.as_str()) {
                Some(&i) => i,
                None => {
                    let ds = found.as_ref().and_then(|o| o.ds.clone()).filter(|d| valid_ds_name(d));
                    let ds_type = found.as_ref().and_then(|o| o.ds_type).unwrap_or(DsType::for_kind(sample.kind));
                    let target = Target { ds: ds.unwrap_or_else(|| self.ds.clone()), ds_type };
                    plan.files.push(FilePoints { path: path.clone(), target, points: Vec::new() });
                    index.insert(path.clone(), plan.files.len() - 1);
                    plan.files.len() - 1
                }
            };
            plan.files[i].points.push((sample.timestamp_ms.div_euclid(1000), sample.value));
        }
        for f in &mut plan.files {
            plan.coalesced += coalesce(&mut f.points);
        }
        plan
    }
}

/// Sorts by second (stable, so arrival order breaks ties) and keeps the last
/// point of each second. Returns how many points were dropped.
pub fn coalesce(points: &mut Vec<(i64, f64)>) -> usize {
    let before = points.len();
    if !points.is_sorted_by(|a, b| a.0 < b.0) {
        points.sort_by_key(|p| p.0);
        let mut out: Vec<(i64, f64)> = Vec::with_capacity(points.len());
        for &p in points.iter() {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        *points = out;
    }
    before - points.len()
}

/// Appends `UPDATE <path> <t>:<v> ...` lines for `points` to `out`, each line
/// at most [`MAX_COMMAND_BYTES`]. Returns how many points each line holds.
pub fn write_updates(path: &str, points: &[(i64, f64)], out: &mut Vec<u8>, per_line: &mut Vec<usize>) {
    let mut i = 0;
    while i < points.len() {
        let line_start = out.len();
        out.extend_from_slice(b"UPDATE ");
        out.extend_from_slice(path.as_bytes());
        let mut n = 0;
        while i < points.len() {
            let before = out.len();
            let (t, v) = points[i];
            // Writing to a Vec cannot fail.
            let _ = if v.is_nan() { write!(out, " {t}:U") } else { write!(out, " {t}:{v}") };
            if n > 0 && out.len() - line_start + 1 > MAX_COMMAND_BYTES {
                out.truncate(before);
                break;
            }
            n += 1;
            i += 1;
        }
        out.push(b'\n');
        per_line.push(n);
    }
}

/// `CREATE <path> -b <start> -s <step> -O DS:<ds>:<type>:<heartbeat>:<min>:U RRA:...`,
/// starting one second before the first value so that value is accepted.
pub fn create_command(
    path: &str,
    first_ts: i64,
    step: u64,
    heartbeat: u64,
    target: &Target,
    rras: &[String],
) -> String {
    let mut s = String::with_capacity(128 + rras.len() * 24);
    let _ = write!(
        s,
        "CREATE {path} -b {} -s {step} -O DS:{}:{}:{heartbeat}:{}:U",
        first_ts - 1,
        target.ds,
        target.ds_type.as_str(),
        target.ds_type.min()
    );
    for r in rras {
        let _ = write!(s, " RRA:{r}");
    }
    s.push('\n');
    s
}

/// What an error reply means for the values of its command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file does not exist: create it and resend.
    NoSuchFile,
    /// A value is not newer than the file's last update (`last`, when stated).
    NotNewer { last: Option<i64> },
    /// `CREATE` of a file that exists (another writer was first): fine.
    FileExists,
    /// Anything else: the values are refused for good.
    Other,
}

pub fn classify_error(message: &str) -> ErrorKind {
    if message.contains("No such file") {
        return ErrorKind::NoSuchFile;
    }
    if message.contains("File exists") {
        return ErrorKind::FileExists;
    }
    if message.contains("illegal attempt to update") {
        let last = message
            .split("last update time is ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|d| d.parse().ok());
        return ErrorKind::NotNewer { last };
    }
    ErrorKind::Other
}

/// A status line `<n> <message>`: `n < 0` is an error, otherwise `n` lines follow
/// (for `BATCH`, `n` error lines).
pub fn parse_status(line: &str) -> Option<(i64, &str)> {
    let line = line.trim_end();
    let (n, message) = line.split_once(' ').unwrap_or((line, ""));
    Some((n.parse().ok()?, message))
}

/// A `BATCH` error line `<command number> <message>` (numbers start at 1).
pub fn parse_batch_error(line: &str) -> Option<(usize, &str)> {
    let line = line.trim_end();
    let (n, message) = line.split_once(' ')?;
    Some((n.parse().ok()?, message))
}

/// For logs: which second and value a point was.
pub fn describe(points: &[(i64, f64)]) -> String {
    let mut s = String::new();
    for (t, v) in points.iter().take(3) {
        let _ = write!(s, "{t}:{v} ");
    }
    if points.len() > 3 {
        let _ = write!(s, "... ({} points)", points.len());
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().copied().collect()
    }

    fn render(t: &str, l: &[(&str, &str)]) -> Result<String, String> {
        let mut out = String::new();
        PathTemplate::parse(t)
            .unwrap()
            .render(&labels(l), MissingLabel::Drop, "unknown", &mut out)
            .map(|()| out)
            .map_err(str::to_string)
    }

    #[test]
    fn template_renders_labels() {
        assert_eq!(
            render("{__name__}/{host}.rrd", &[("__name__", "cpu"), ("host", "web-1")]).unwrap(),
            "cpu/web-1.rrd"
        );
        assert_eq!(render("{host}.rrd", &[("__name__", "cpu")]), Err("host".to_string()));
        let mut out = String::new();
        PathTemplate::parse("{a}/{b}.rrd")
            .unwrap()
            .render(&labels(&[("a", "x")]), MissingLabel::Placeholder, "none", &mut out)
            .unwrap();
        assert_eq!(out, "x/none.rrd");
    }

    #[test]
    fn no_label_value_leaves_the_base_directory() {
        let cases = [
            ("../../etc", ".._.._etc"),
            ("..", ".."),
            ("/etc/passwd", "_etc_passwd"),
            ("a/../../b", "a_.._.._b"),
            ("sp ace;rm -rf", "sp_ace_rm_-rf"),
            ("ünï", "_n_"),
        ];
        for (value, safe) in cases {
            let p = render("{host}.rrd", &[("host", value)]).unwrap();
            assert_eq!(p, format!("{safe}.rrd"), "{value}");
            let p = render("{host}", &[("host", value)]).unwrap();
            assert!(
                !p.starts_with('/') && p.split('/').all(|c| c != ".." && c != "." && !c.is_empty()),
                "{value} → {p}"
            );
        }
        // A value that is exactly `..` in its own component.
        assert_eq!(render("d/{host}/x.rrd", &[("host", "..")]).unwrap(), "d/__/x.rrd");
    }

    #[test]
    fn templates_are_checked() {
        assert!(matches!(PathTemplate::parse("/abs/{a}.rrd"), Err(TemplateError::Absolute(_))));
        assert!(matches!(PathTemplate::parse("../{a}.rrd"), Err(TemplateError::DotComponent(_))));
        assert!(matches!(PathTemplate::parse("x/{a.rrd"), Err(TemplateError::Brace(_))));
        assert!(matches!(PathTemplate::parse("x/{}.rrd"), Err(TemplateError::Brace(_))));
        assert!(matches!(PathTemplate::parse(""), Err(TemplateError::Empty(_))));
        assert!(PathTemplate::parse("a..b/{x}.rrd").is_ok());
    }

    #[test]
    fn coalesces_same_second_last_wins_and_sorts() {
        let mut p = vec![(10, 1.0), (12, 2.0), (10, 3.0), (11, 4.0), (12, 5.0)];
        assert_eq!(coalesce(&mut p), 2);
        assert_eq!(p, vec![(10, 3.0), (11, 4.0), (12, 5.0)]);
        let mut sorted = vec![(1, 1.0), (2, 2.0)];
        assert_eq!(coalesce(&mut sorted), 0);
    }

    #[test]
    fn plan_groups_by_file_with_overrides() {
        let lookup: OverrideLookup = Arc::new(|name: &str| {
            (name == "port_in").then(|| {
                Arc::new(RrdcachedOverride {
                    path: Some("{device}/port-{port}.rrd".into()),
                    ds: Some("in".into()),
                    ds_type: Some(DsType::Derive),
                })
            })
        });
        let mut router = Router::new(
            PathTemplate::parse("{__name__}/{host}.rrd").unwrap(),
            MissingLabel::Drop,
            "unknown".into(),
            "value".into(),
            Some(lookup),
        );
        let mut counter = Sample::new(labels(&[("__name__", "req"), ("host", "a")]), 1.0, 2_500);
        counter.kind = MetricKind::Counter;
        let samples = [
            counter.clone(),
            Sample::new(labels(&[("__name__", "req"), ("host", "a")]), 2.0, 2_900),
            Sample::new(labels(&[("__name__", "port_in"), ("device", "sw1"), ("port", "3")]), 5.0, 1_000),
            Sample::new(labels(&[("__name__", "req")]), 1.0, 1_000),
            Sample::new(labels(&[("__name__", "req"), ("host", "b")]), f64::INFINITY, 1_000),
        ];
        let plan = router.plan(samples.iter());
        assert_eq!((plan.coalesced, plan.missing_label, plan.unrepresentable), (1, 1, 1));
        assert_eq!(plan.files.len(), 2);
        assert_eq!(plan.files[0].path, "req/a.rrd");
        assert_eq!(plan.files[0].points, vec![(2, 2.0)]);
        assert_eq!(plan.files[0].target, Target { ds: "value".into(), ds_type: DsType::Derive });
        assert_eq!(plan.files[1].path, "sw1/port-3.rrd");
        assert_eq!(plan.files[1].target, Target { ds: "in".into(), ds_type: DsType::Derive });
    }

    #[test]
    fn updates_are_split_below_the_line_limit() {
        let points: Vec<(i64, f64)> = (0..1000).map(|i| (1_700_000_000 + i, i as f64 + 0.25)).collect();
        let mut out = Vec::new();
        let mut per_line = Vec::new();
        write_updates("cpu/a.rrd", &points, &mut out, &mut per_line);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), per_line.len());
        assert!(lines.len() > 1);
        assert_eq!(per_line.iter().sum::<usize>(), 1000);
        assert!(lines.iter().all(|l| l.len() < MAX_COMMAND_BYTES && l.starts_with("UPDATE cpu/a.rrd ")));
        assert!(lines[0].starts_with("UPDATE cpu/a.rrd 1700000000:0.25 1700000001:1.25"));
        let mut out = Vec::new();
        write_updates("x.rrd", &[(5, f64::NAN), (6, -1e-7)], &mut out, &mut Vec::new());
        assert_eq!(out, b"UPDATE x.rrd 5:U 6:-0.0000001\n");
    }

    #[test]
    fn create_command_has_ds_and_archives() {
        let t = Target { ds: "value".into(), ds_type: DsType::Derive };
        let c = create_command("a/b.rrd", 1000, 60, 120, &t, &["AVERAGE:0.5:1:1440".into()]);
        assert_eq!(c, "CREATE a/b.rrd -b 999 -s 60 -O DS:value:DERIVE:120:0:U RRA:AVERAGE:0.5:1:1440\n");
        let g = Target { ds: "v".into(), ds_type: DsType::Gauge };
        assert!(create_command("x", 1, 1, 2, &g, &[]).contains("DS:v:GAUGE:2:U:U"));
    }

    #[test]
    fn replies_are_parsed() {
        assert_eq!(parse_status("0 errors, enqueued 2 value(s).\n"), Some((0, "errors, enqueued 2 value(s).")));
        assert_eq!(parse_status("-1 No such file: /x"), Some((-1, "No such file: /x")));
        assert_eq!(parse_status("garbage"), None);
        assert_eq!(parse_batch_error("2 No such file: /b/nope.rrd\n"), Some((2, "No such file: /b/nope.rrd")));
        assert_eq!(classify_error("No such file: /b/nope.rrd"), ErrorKind::NoSuchFile);
        assert_eq!(
            classify_error(
                "illegal attempt to update using time 1795323100.000000 when last update time is 1795323180.000000 (minimum one second step)"
            ),
            ErrorKind::NotNewer { last: Some(1795323180) }
        );
        assert_eq!(classify_error("RRD Error: creating '/b/y.rrd': File exists"), ErrorKind::FileExists);
        assert_eq!(classify_error("/base/../y.rrd: Permission denied"), ErrorKind::Other);
    }
}
