//! `[query.cache]`. Defaults in [`defaults`].

use std::time::Duration;

use serde::Deserialize;

/// ```toml
/// [query.cache]
/// enabled = true           # false: every render reads the backend
/// max_bytes = 67108864     # 64 MiB: bound of the cached buckets (least recently used go first)
/// fresh_for = "1m"         # buckets whose point is younger than this are always re-read
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `false`: nothing is cached, every render asks the backend for its whole window.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Most bytes the cached buckets take (each counted on the high side,
    /// see `merge::Bucket::weight`); counted in the start-up memory budget.
    #[serde(default = "defaults::max_bytes")]
    pub max_bytes: u64,
    /// A bucket whose point `t` is later than `now − fresh_for` may still get
    /// data: it is never served from, nor stored in, the cache.
    #[serde(default = "defaults::fresh_for", with = "humantime_serde")]
    pub fresh_for: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { enabled: defaults::enabled(), max_bytes: defaults::max_bytes(), fresh_for: defaults::fresh_for() }
    }
}

impl CacheConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.enabled && self.max_bytes == 0 {
            return Err("query.cache.max_bytes must be above zero (or set query.cache.enabled = false)".into());
        }
        Ok(())
    }
}

pub mod defaults {
    use super::*;

    pub fn enabled() -> bool {
        true
    }
    pub fn max_bytes() -> u64 {
        64 << 20
    }
    pub fn fresh_for() -> Duration {
        Duration::from_secs(60)
    }
}
