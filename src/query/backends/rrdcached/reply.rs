//! rrdcached's answers to `LIST`, `INFO` and `FETCH`, parsed. Pure functions
//! over the detail lines that follow a status line `<n> <message>`; every
//! malformed line is an error naming it, never a panic (fuzzed).

/// An answer rrdcached should not have given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: unexpected line {line:?}")]
pub struct ReplyError {
    pub what: &'static str,
    pub line: String,
}

fn bad(what: &'static str, line: &str) -> ReplyError {
    let mut line = line.to_string();
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    ReplyError { what, line }
}

/// `LIST RECURSIVE /dir`: one path a line, relative to `dir`. Paths are
/// returned relative to the base directory (`dir` prefixed), only `.rrd`
/// files... and anything else rrdcached lists as an RRD.
pub fn parse_list(dir: &str, lines: &[String]) -> Result<Vec<String>, ReplyError> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let name = line.trim_end_matches(['\r', '\n']);
        if name.is_empty() || name.starts_with('/') || name.split('/').any(|c| c == "..") {
            return Err(bad("LIST", line));
        }
        out.push(if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") });
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What `INFO` says about one data source and the archives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FileInfo {
    /// Base step (seconds).
    pub step: u64,
    pub last_update: i64,
    /// Data sources: (name, type), in file order.
    pub sources: Vec<(String, String)>,
    /// Archives, in file order.
    pub archives: Vec<Archive>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Archive {
    pub cf: String,
    pub pdp_per_row: u64,
    pub rows: u64,
    pub xff: f64,
}

impl FileInfo {
    pub fn source_type(&self, ds: &str) -> Option<&str> {
        self.sources.iter().find(|(n, _)| n == ds).map(|(_, t)| t.as_str())
    }
}

/// `INFO file`: lines `key <type> value` (type 0 float, 1 count, 2 string, ...).
pub fn parse_info(lines: &[String]) -> Result<FileInfo, ReplyError> {
    let mut info = FileInfo::default();
    for line in lines {
        let line = line.trim_end_matches(['\r', '\n']);
        let mut it = line.splitn(3, ' ');
        let (Some(key), Some(kind), value) = (it.next(), it.next(), it.next().unwrap_or("")) else {
            return Err(bad("INFO", line));
        };
        if kind.parse::<u8>().is_err() {
            return Err(bad("INFO", line));
        }
        let int = || value.trim().parse::<u64>().map_err(|_| bad("INFO", line));
        if key == "step" {
            info.step = int()?;
        } else if key == "last_update" {
            info.last_update = value.trim().parse::<i64>().map_err(|_| bad("INFO", line))?;
        } else if let Some(rest) = key.strip_prefix("ds[") {
            let Some((name, field)) = rest.split_once("].") else { return Err(bad("INFO", line)) };
            if field == "type" {
                info.sources.push((name.to_string(), value.trim().to_string()));
            }
        } else if let Some(rest) = key.strip_prefix("rra[") {
            let Some((index, field)) = rest.split_once("].") else { return Err(bad("INFO", line)) };
            let index: usize = index.parse().map_err(|_| bad("INFO", line))?;
            if index > 10_000 {
                return Err(bad("INFO", line));
            }
            if info.archives.len() <= index {
                info.archives.resize(index + 1, Archive::default());
            }
            let a = &mut info.archives[index];
            match field {
                "cf" => a.cf = value.trim().to_string(),
                "rows" => a.rows = int()?,
                "pdp_per_row" => a.pdp_per_row = int()?,
                "xff" => a.xff = value.trim().parse().map_err(|_| bad("INFO", line))?,
                _ => {}
            }
        }
    }
    if info.step == 0 {
        return Err(ReplyError { what: "INFO", line: "no `step` line".into() });
    }
    Ok(info)
}

/// `FETCH`: the rows of one data source.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub start: i64,
    pub end: i64,
    /// Resolution of the archive rrdcached chose (seconds).
    pub step: u64,
    pub ds: Vec<String>,
    /// `(t, value of the first data source)`: the row at `t` covers `(t − step, t]`;
    /// `None` for unknown.
    pub rows: Vec<(i64, Option<f64>)>,
}

/// `FETCH file CF start end [ds]`: header lines, then `t: v [v...]` rows.
pub fn parse_fetch(lines: &[String]) -> Result<Fetched, ReplyError> {
    let mut start = None;
    let mut end = None;
    let mut step = None;
    let mut ds = None;
    let mut rows = Vec::with_capacity(lines.len().saturating_sub(6));
    for line in lines {
        let line = line.trim_end_matches(['\r', '\n']);
        let Some((key, value)) = line.split_once(':') else { return Err(bad("FETCH", line)) };
        let value = value.trim();
        match key {
            "FlushVersion" | "DSCount" => {}
            "Start" => start = Some(value.parse::<i64>().map_err(|_| bad("FETCH", line))?),
            "End" => end = Some(value.parse::<i64>().map_err(|_| bad("FETCH", line))?),
            "Step" => step = Some(value.parse::<u64>().map_err(|_| bad("FETCH", line))?),
            "DSName" => ds = Some(value.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect()),
            t => {
                let t: i64 = t.trim().parse().map_err(|_| bad("FETCH", line))?;
                let first = value.split(' ').find(|s| !s.is_empty()).ok_or_else(|| bad("FETCH", line))?;
                rows.push((t, parse_value(first).ok_or_else(|| bad("FETCH", line))?));
            }
        }
    }
    let (Some(start), Some(end), Some(step)) = (start, end, step) else {
        return Err(ReplyError { what: "FETCH", line: "no Start, End or Step line".into() });
    };
    if step == 0 || rows.windows(2).any(|w| w[1].0 <= w[0].0) {
        return Err(ReplyError { what: "FETCH", line: "rows not in increasing time order".into() });
    }
    Ok(Fetched { start, end, step, ds: ds.unwrap_or_default(), rows })
}

/// `%0.17e` text: a number, or `nan`/`-nan` for unknown. ±inf is not a value
/// RRD stores for data, but is kept as unknown too.
fn parse_value(s: &str) -> Option<Option<f64>> {
    let lower = s.to_ascii_lowercase();
    if lower.contains("nan") || lower.contains("inf") {
        return Some(None);
    }
    s.parse::<f64>().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn fetch_rows_and_unknowns() {
        let f = parse_fetch(&lines(
            "FlushVersion: 1\nStart: 1764806400\nEnd: 1764806580\nStep: 60\nDSCount: 1\nDSName: value\n\
             1764806460: 1.00000000000000000e+00\n1764806520: -nan\n1764806580: 1.66666666666666657e-01\n",
        ))
        .unwrap();
        assert_eq!((f.start, f.end, f.step), (1764806400, 1764806580, 60));
        assert_eq!(f.ds, vec!["value".to_string()]);
        assert_eq!(f.rows, vec![(1764806460, Some(1.0)), (1764806520, None), (1764806580, Some(1.0 / 6.0))]);
    }

    #[test]
    fn fetch_garbage_is_an_error() {
        assert!(parse_fetch(&lines("Start: x\n")).is_err());
        assert!(parse_fetch(&lines("Start: 1\nEnd: 2\nStep: 60\n5: abc\n")).is_err());
        assert!(parse_fetch(&lines("Start: 1\nEnd: 2\n")).is_err());
        assert!(parse_fetch(&lines("Start: 1\nEnd: 2\nStep: 0\n")).is_err());
        assert!(parse_fetch(&lines("Start: 1\nEnd: 2\nStep: 60\n120: 1\n60: 2\n")).is_err());
        assert!(parse_fetch(&lines("no colon at all\n")).is_err());
    }

    #[test]
    fn info_of_a_file() {
        let i = parse_info(&lines(
            "filename 2 /b/g/a.rrd\nrrd_version 2 0003\nstep 1 60\nlast_update 1 1764808140\n\
             ds[value].index 1 0\nds[value].type 2 DERIVE\nds[value].minimal_heartbeat 1 120\n\
             ds[value].min 0 0.0000000000e+00\nrra[0].cf 2 AVERAGE\nrra[0].rows 1 1440\nrra[0].pdp_per_row 1 1\n\
             rra[0].xff 0 5.0000000000e-01\nrra[0].cdp_prep[0].value 0 NaN\nrra[1].cf 2 MAX\nrra[1].rows 1 2016\n\
             rra[1].pdp_per_row 1 5\nrra[1].xff 0 5.0000000000e-01\n",
        ))
        .unwrap();
        assert_eq!((i.step, i.last_update), (60, 1764808140));
        assert_eq!(i.source_type("value"), Some("DERIVE"));
        assert_eq!(i.archives.len(), 2);
        assert_eq!(i.archives[1], Archive { cf: "MAX".into(), pdp_per_row: 5, rows: 2016, xff: 0.5 });
        assert!(parse_info(&lines("step x 60\n")).is_err());
        assert!(parse_info(&lines("rra[99999999].cf 2 MAX\nstep 1 60\n")).is_err());
        assert!(parse_info(&lines("filename 2 x\n")).is_err());
    }

    #[test]
    fn list_is_relative_to_the_base() {
        assert_eq!(
            parse_list("cpu", &lines("b.rrd\na.rrd\n")).unwrap(),
            vec!["cpu/a.rrd".to_string(), "cpu/b.rrd".to_string()]
        );
        assert_eq!(parse_list("", &lines("x/y.rrd\n")).unwrap(), vec!["x/y.rrd".to_string()]);
        assert!(parse_list("", &lines("../etc/passwd\n")).is_err());
        assert!(parse_list("", &lines("/abs.rrd\n")).is_err());
    }
}
