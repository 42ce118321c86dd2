//! `[sinks.<name>] type = "parquet"`: one documented struct, defaults in one place.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;

/// A cold archive of raw samples in Parquet files, partitioned Hive-style:
/// `path/metric=<name>/date=YYYY-MM-DD/hour=HH/part-<n>.parquet`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Root directory of the archive, relative to the config file; created
    /// if missing. One sink per directory (the sink keeps its commit record
    /// in `path/_tsrelay/`).
    pub path: PathBuf,
    /// Labels that also get a top-level string column of their own (null
    /// where a sample lacks the label), for readers that filter on them.
    /// The `labels` map column always holds every label but `__name__`.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Rows per Parquet row group (the unit readers skip or read).
    #[serde(default = "defaults::row_group_rows")]
    pub row_group_rows: usize,
    /// zstd level of every column (1 fastest … 22 smallest).
    #[serde(default = "defaults::zstd_level")]
    pub zstd_level: i32,
    /// Longest a file stays open: every open file is finished and made
    /// visible this long after the first sample went into it.
    #[serde(default = "defaults::roll_every", with = "humantime_serde")]
    pub roll_every: Duration,
    /// A file reaching this size (estimated while written, checked after each
    /// batch) rolls every open file.
    #[serde(default = "defaults::max_file_bytes")]
    pub max_file_bytes: u64,
    /// Partitions (files) open at once; a sample for one more rolls them all.
    #[serde(default = "defaults::max_open_files")]
    pub max_open_files: usize,
    /// Samples written to open files and not yet durable. Their queue records
    /// and acknowledgements stay open until the roll that makes them visible,
    /// so this bounds the memory they hold (counted in the start-up budget)
    /// and how much a roll period may gather: reaching it rolls every open
    /// file. With a memory queue it is at most half the queue's `max_samples`.
    #[serde(default = "defaults::max_pending_samples")]
    pub max_pending_samples: usize,
    /// Hour partitions whose hour ended longer ago than this are deleted
    /// whole (checked at start and at every roll). Unset: keep everything.
    #[serde(default, with = "humantime_serde")]
    pub retention: Option<Duration>,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long writes may fail before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

pub mod defaults {
    use std::time::Duration;

    /// About 1–2 MiB of compressed data a row group at typical label sets.
    pub fn row_group_rows() -> usize {
        131_072
    }
    pub fn zstd_level() -> i32 {
        3
    }
    pub fn roll_every() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn max_file_bytes() -> u64 {
        256 << 20
    }
    pub fn max_open_files() -> usize {
        256
    }
    /// ~50–100 MiB held at ~100 bytes a sample in memory.
    pub fn max_pending_samples() -> usize {
        500_000
    }
    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
}

/// Column names the sink writes itself (and Hive partition keys readers add).
pub const RESERVED_COLUMNS: [&str; 6] = ["timestamp", "value", "labels", "metric", "date", "hour"];

impl ParquetSinkConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("path must not be empty".into());
        }
        if self.row_group_rows == 0 {
            return Err("row_group_rows must be at least 1".into());
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(format!("zstd_level must be 1 to 22, not {}", self.zstd_level));
        }
        if self.roll_every < Duration::from_secs(1) {
            return Err("roll_every must be at least 1s".into());
        }
        if self.max_file_bytes < 4096 {
            return Err("max_file_bytes must be at least 4096".into());
        }
        if self.max_open_files == 0 {
            return Err("max_open_files must be at least 1".into());
        }
        if self.max_pending_samples == 0 {
            return Err("max_pending_samples must be at least 1".into());
        }
        if self.retention.is_some_and(|r| r < Duration::from_secs(3600)) {
            return Err("retention must be at least 1h (partitions are hours)".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.columns {
            if RESERVED_COLUMNS.contains(&c.as_str()) || c == "__name__" {
                return Err(format!("columns: {c:?} is a column the sink writes itself or a partition key"));
            }
            if c.is_empty() {
                return Err("columns: a label name must not be empty".into());
            }
            if !seen.insert(c) {
                return Err(format!("columns: {c:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// The bound on samples not yet durable, given the queue in front.
    pub fn effective_max_pending(&self) -> usize {
        match self.queue.kind {
            crate::queue::QueueKind::Memory => self.max_pending_samples.min((self.queue.max_samples / 2).max(1)),
            crate::queue::QueueKind::Disk => self.max_pending_samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<ParquetSinkConfig, String> {
        let text = format!("path = \"arch\"\n{extra}");
        let c: ParquetSinkConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_checks() {
        let c = parse("").unwrap();
        assert_eq!(c.roll_every, Duration::from_secs(3600));
        assert_eq!(c.row_group_rows, defaults::row_group_rows());
        assert!(c.retention.is_none());
        assert_eq!(c.effective_max_pending(), 125_000, "half the default memory queue");
        let c = parse("retention = \"30d\"\nroll_every = \"10m\"\ncolumns = [\"host\"]").unwrap();
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86400)));
        assert!(parse("columns = [\"value\"]").unwrap_err().contains("value"));
        assert!(parse("columns = [\"a\", \"a\"]").unwrap_err().contains("twice"));
        assert!(parse("zstd_level = 0").unwrap_err().contains("zstd_level"));
        assert!(parse("retention = \"5m\"").unwrap_err().contains("retention"));
        assert!(parse("rol_every = \"1h\"").unwrap_err().contains("unknown field"));
    }
}
