//! `[sinks.<name>] type = "rrdcached"`: every key, documented, defaults in [`defaults`].

use std::time::Duration;

use serde::Deserialize;

use super::encode::{PathTemplate, valid_ds_name};
use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;
use crate::sinks::common::RetryConfig;

/// What to do with a sample that lacks a label the path template names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingLabel {
    /// Drop the sample (counted as `rejected`).
    #[default]
    Drop,
    /// Use `placeholder` in place of the value.
    Placeholder,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrdcachedSinkConfig {
    /// `unix:/path/to/rrdcached.sock` or `tcp:host:port`.
    pub address: String,
    /// Where a series' file lives, relative to rrdcached's base directory (`-b`),
    /// with `{label}` placeholders, e.g. `{__name__}/{host}.rrd`. Every path
    /// component is sanitized (`[^A-Za-z0-9._-]` → `_`, no `..`), so no label
    /// value can leave the base directory. Run rrdcached with `-B` (and `-R` so
    /// `CREATE` makes sub-directories).
    #[serde(default = "defaults::path_template")]
    pub path_template: String,
    /// A label the template names is missing: `drop` (default) or `placeholder`.
    #[serde(default)]
    pub missing_label: MissingLabel,
    /// Stands in for a missing label with `missing_label = "placeholder"`.
    #[serde(default = "defaults::placeholder")]
    pub placeholder: String,
    /// Data-source name in created files (the registry's `backends.rrdcached.ds` overrides it).
    #[serde(default = "defaults::ds")]
    pub ds: String,
    /// Base interval of created files (`-s`).
    #[serde(default = "defaults::step", with = "humantime_serde")]
    pub step: Duration,
    /// Longest gap before a value becomes unknown; default twice `step`.
    #[serde(default, with = "humantime_serde")]
    pub heartbeat: Option<Duration>,
    /// Archives of created files, in rrdtool syntax without the `RRA:` prefix
    /// (e.g. `"AVERAGE:0.5:1:1440"`). Default: for each of AVERAGE, MIN, MAX and
    /// LAST, one day at full resolution, a week at 5 minutes, a month at 1 hour
    /// and a year at 1 day (rows and steps derived from `step`).
    #[serde(default)]
    pub rra: Option<Vec<String>>,
    /// `FLUSH` every file this sink wrote to when it shuts down, so the data is
    /// on disk, not only in rrdcached's journal.
    #[serde(default = "defaults::flush_on_shutdown")]
    pub flush_on_shutdown: bool,
    /// How many files the sink remembers the last written second of (to drop
    /// out-of-order samples before sending); the memory bound of the sink.
    #[serde(default = "defaults::max_tracked_files")]
    pub max_tracked_files: usize,
    /// Time limit of one exchange with rrdcached (connect, or one `BATCH`).
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Backoff between reconnects and resends, and how long one batch may be
    /// retried: the shared retry settings (`initial`, `max`, `multiplier`,
    /// `max_retry_duration`; `max_retry_after` has no use here). With a disk
    /// queue the sink retries without a time limit.
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long rrdcached may keep failing before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

pub mod defaults {
    use std::time::Duration;

    pub fn path_template() -> String {
        "{__name__}.rrd".into()
    }
    pub fn placeholder() -> String {
        "unknown".into()
    }
    pub fn ds() -> String {
        "value".into()
    }
    pub fn step() -> Duration {
        Duration::from_secs(60)
    }
    pub fn flush_on_shutdown() -> bool {
        true
    }
    pub fn max_tracked_files() -> usize {
        100_000
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }

    /// The documented default archive set for `step_secs`.
    pub fn rra(step_secs: u64) -> Vec<String> {
        const DAY: u64 = 86_400;
        // (resolution, span): a day at full resolution, a week, a month, a year.
        let tiers = [(step_secs, DAY), (300, 7 * DAY), (3_600, 31 * DAY), (DAY, 366 * DAY)];
        let mut out = Vec::new();
        for cf in ["AVERAGE", "MIN", "MAX", "LAST"] {
            for (resolution, span) in tiers {
                let steps = (resolution / step_secs).max(1);
                let rows = (span / (steps * step_secs)).max(1);
                out.push(format!("{cf}:0.5:{steps}:{rows}"));
            }
        }
        out
    }
}

impl RrdcachedSinkConfig {
    pub fn step_secs(&self) -> u64 {
        self.step.as_secs().max(1)
    }

    pub fn heartbeat_secs(&self) -> u64 {
        self.heartbeat.map_or(2 * self.step_secs(), |h| h.as_secs().max(1))
    }

    pub fn rras(&self) -> Vec<String> {
        self.rra.clone().unwrap_or_else(|| defaults::rra(self.step_secs()))
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        super::client::Address::parse(&self.address)?;
        PathTemplate::parse(&self.path_template).map_err(|e| format!("path_template: {e}"))?;
        if !valid_ds_name(&self.ds) {
            return Err(format!("ds {:?} must be 1-19 characters of [A-Za-z0-9_]", self.ds));
        }
        if self.step.as_secs() == 0 {
            return Err("step must be at least 1s".into());
        }
        if self.missing_label == MissingLabel::Placeholder && self.placeholder.is_empty() {
            return Err("placeholder must not be empty with missing_label = \"placeholder\"".into());
        }
        for r in self.rra.iter().flatten() {
            let parts: Vec<&str> = r.split(':').collect();
            let cf_ok = matches!(parts.first().copied(), Some("AVERAGE" | "MIN" | "MAX" | "LAST"));
            if parts.len() != 4 || !cf_ok || parts[1..].iter().any(|p| p.parse::<f64>().is_err()) {
                return Err(format!("rra {r:?} must look like \"AVERAGE:0.5:1:1440\" (CF:xff:steps:rows)"));
            }
        }
        if self.max_tracked_files == 0 {
            return Err("max_tracked_files must be at least 1".into());
        }
        self.retry.check("retry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_takes_the_shared_keys() {
        use figment::providers::Format;
        let parse = |text: &str| {
            figment::Figment::from(figment::providers::Toml::string(text))
                .extract::<RrdcachedSinkConfig>()
                .map_err(|e| e.to_string())
        };
        let c = parse("address = \"unix:/tmp/s\"\nretry = { initial = \"50ms\", max = \"200ms\" }").unwrap();
        assert_eq!(c.retry.max, Duration::from_millis(200));
        assert!(c.check().is_ok());
        assert!(parse("address = \"unix:/tmp/s\"\nretry = { initial_backoff = \"50ms\" }").is_err());
        let bad = parse("address = \"unix:/tmp/s\"\nretry = { initial = \"2s\", max = \"1s\" }").unwrap();
        assert!(bad.check().unwrap_err().starts_with("retry.max"));
    }

    #[test]
    fn default_archives_cover_a_day_week_month_year() {
        let r = defaults::rra(60);
        assert_eq!(r.len(), 16);
        assert_eq!(&r[..4], ["AVERAGE:0.5:1:1440", "AVERAGE:0.5:5:2016", "AVERAGE:0.5:60:744", "AVERAGE:0.5:1440:366"]);
        assert!(r.contains(&"LAST:0.5:1:1440".to_string()));
        assert_eq!(defaults::rra(10)[0], "AVERAGE:0.5:1:8640");
    }
}
