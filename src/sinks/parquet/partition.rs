//! Where a sample goes: its Hive-style partition
//! `metric=<name>/date=YYYY-MM-DD/hour=HH`, and the file names inside one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike};

const HOUR_MS: i64 = 3_600_000;

/// One hour of one metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub metric: String,
    /// Hours since the Unix epoch (UTC).
    pub hour: i64,
}

impl PartitionKey {
    /// The hour a sample of `metric` at `timestamp_ms` belongs to; `None`
    /// when the sample cannot be placed: an empty metric name, or a timestamp
    /// outside the calendar chrono can write.
    pub fn hour_of(metric: &str, timestamp_ms: i64) -> Option<i64> {
        if metric.is_empty() {
            return None;
        }
        let hour = timestamp_ms.div_euclid(HOUR_MS);
        DateTime::from_timestamp_millis(hour * HOUR_MS)?;
        Some(hour)
    }

    /// `metric=<name>/date=YYYY-MM-DD/hour=HH`, relative to the archive root.
    pub fn dir(&self) -> PathBuf {
        let at = DateTime::from_timestamp_millis(self.hour * HOUR_MS).expect("checked in PartitionKey::hour_of");
        let mut s = String::with_capacity(self.metric.len() + 32);
        s.push_str("metric=");
        escape(&self.metric, &mut s);
        let _ = write!(s, "/date={:04}-{:02}-{:02}/hour={:02}", at.year(), at.month(), at.day(), at.hour());
        PathBuf::from(s)
    }
}

/// Hive escaping: bytes outside `[A-Za-z0-9_:.-]` (and a leading `.`, so no
/// name reads as `.` or `..` or a hidden file) become `%XX`, as Hive and
/// Spark write them and DuckDB reads them back.
pub fn escape(value: &str, out: &mut String) {
    for (i, b) in value.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-') || (b == b'.' && i > 0);
        if plain {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// `part-<n>.parquet`: the name a finished file is visible under.
pub fn part_name(n: u64) -> String {
    format!("part-{n}.parquet")
}

/// The name a file has while written: hidden (leading `.`) and not ending
/// in `.parquet`, so no reader's glob picks it up.
pub fn temp_name(n: u64) -> String {
    format!(".part-{n}.parquet.tmp")
}

/// Parses `part-<n>.parquet` or `.part-<n>.parquet.tmp`.
pub fn part_number(file_name: &str) -> Option<u64> {
    let rest = file_name.strip_prefix(".part-").and_then(|r| r.strip_suffix(".parquet.tmp"));
    let rest = rest.or_else(|| file_name.strip_prefix("part-").and_then(|r| r.strip_suffix(".parquet")))?;
    rest.parse().ok()
}

pub fn is_temp(file_name: &str) -> bool {
    file_name.starts_with(".part-") && file_name.ends_with(".parquet.tmp")
}

/// The next free part number in `dir` (0 when it has none or does not exist).
pub fn next_part_number(dir: &Path) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut next = 0;
    for entry in entries {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(part_number) {
            next = next.max(n + 1);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(metric: &str, ts: i64) -> Option<PartitionKey> {
        Some(PartitionKey { metric: metric.into(), hour: PartitionKey::hour_of(metric, ts)? })
    }

    #[test]
    fn hive_layout() {
        // 2026-12-04T13:59:59.999Z
        let k = key("cpu_usage", 1_796_392_799_999).unwrap();
        assert_eq!(k.dir(), PathBuf::from("metric=cpu_usage/date=2026-12-04/hour=13"));
        let next = key("cpu_usage", 1_796_392_800_000).unwrap();
        assert_eq!(next.dir(), PathBuf::from("metric=cpu_usage/date=2026-12-04/hour=14"));
        let before_epoch = key("m", -1).unwrap();
        assert_eq!(before_epoch.dir(), PathBuf::from("metric=m/date=1969-12-31/hour=23"));
        assert!(key("", 0).is_none());
        assert!(key("m", i64::MAX).is_none());
    }

    #[test]
    fn escaping_keeps_paths_inside_the_partition() {
        let mut s = String::new();
        escape("a/b=c%..", &mut s);
        assert_eq!(s, "a%2Fb%3Dc%25..");
        let mut s = String::new();
        escape("..", &mut s);
        assert_eq!(s, "%2E.");
        let mut s = String::new();
        escape("ns:metric_total", &mut s);
        assert_eq!(s, "ns:metric_total");
    }

    #[test]
    fn part_names_round_trip() {
        assert_eq!(part_number(&part_name(7)), Some(7));
        assert_eq!(part_number(&temp_name(12)), Some(12));
        assert!(is_temp(&temp_name(3)) && !is_temp(&part_name(3)));
        assert_eq!(part_number("part-x.parquet"), None);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_part_number(&dir.path().join("missing")).unwrap(), 0);
        std::fs::write(dir.path().join(part_name(4)), b"").unwrap();
        std::fs::write(dir.path().join(temp_name(9)), b"").unwrap();
        assert_eq!(next_part_number(dir.path()).unwrap(), 10);
    }
}
