//! The daemon's configuration: one TOML file, pipeline files merged in, and
//! `TSRELAY_` environment overrides (DESIGN §4).
//!
//! Each component owns its config struct (next to its code); this module only
//! assembles them, loads, and checks what spans components (references between
//! pipelines, receivers and sinks).

/// Moved to [`crate::librdkafka`] (a leaf module, so sinks and receivers need not import `config`).
pub use crate::librdkafka;
mod load;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::{ConfigError, EMBEDDED_DEFAULT, LoadedConfig, load};

use crate::pipeline::PipelineConfig;
use crate::receivers::ReceiverConfig;
use crate::sinks::SinkConfig;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where disk queues and other state live; relative to the config file.
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// How long a shutdown may take to drain queues before the rest is
    /// counted as dropped with `reason="shutdown"`.
    #[serde(default = "defaults::shutdown_timeout", with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Directory of extra `*.toml` files merged into this one (one pipeline
    /// per file, by convention); relative to the config file.
    #[serde(default = "defaults::pipelines_dir")]
    pub pipelines_dir: PathBuf,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub receivers: BTreeMap<String, ReceiverConfig>,
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// API keys: who may write and read.
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
    /// The metric registry (DESIGN §4); optional.
    #[serde(default)]
    pub registry: Option<RegistryConfig>,
    /// Bounds the loader derived because the config left them unset (see
    /// [`crate::limits::derive_defaults`]), one line each, for `tsrelay validate`.
    #[serde(skip)]
    pub derived: Vec<String>,
    /// The read side (DESIGN §7): present, the query listener runs.
    #[serde(default)]
    pub query: Option<crate::query::config::QueryConfig>,
}

/// Memory limits (DESIGN §1.4): a start-up check and a run-time guard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Upper bound on the worst case of all queues and tables, checked at
    /// start-up (`tsrelay validate` prints the breakdown); also the base of
    /// the run-time RSS high-water mark. Unset: `memory_allowed_percent` of
    /// the cgroup's memory limit (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`), else of physical memory.
    #[serde(default = "defaults::memory_bytes")]
    pub memory_bytes: u64,
    /// The share of the memory available to the process that
    /// `memory_bytes` defaults to (vmagent's `-memory.allowedPercent`).
    #[serde(default = "defaults::memory_allowed_percent")]
    pub memory_allowed_percent: u8,
    /// What one queued sample costs in memory, for the start-up check. The
    /// default is measured for a name and five labels of up to 24 bytes each
    /// (56 + 48 per label, plus allocator rounding); raise it for wider series.
    #[serde(default = "defaults::bytes_per_sample")]
    pub bytes_per_sample: u64,
    /// Receivers refuse new data (HTTP 503, gRPC `RESOURCE_EXHAUSTED`, streams
    /// and Kafka pause) while the resident set is above this percentage of
    /// `memory_bytes`, and accept again once it is back below.
    #[serde(default = "defaults::rss_high_water_percent")]
    pub rss_high_water_percent: u8,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            memory_bytes: defaults::memory_bytes(),
            memory_allowed_percent: defaults::memory_allowed_percent(),
            bytes_per_sample: defaults::bytes_per_sample(),
            rss_high_water_percent: defaults::rss_high_water_percent(),
        }
    }
}

impl LimitsConfig {
    /// RSS above which receivers refuse data.
    pub fn rss_high_water_bytes(&self) -> u64 {
        self.memory_bytes / 100 * u64::from(self.rss_high_water_percent)
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.memory_allowed_percent) {
            return Err("limits.memory_allowed_percent must be between 1 and 100".into());
        }
        if !(1..=100).contains(&self.rss_high_water_percent) {
            return Err("limits.rss_high_water_percent must be between 1 and 100".into());
        }
        if self.bytes_per_sample == 0 {
            return Err("limits.bytes_per_sample must be at least 1".into());
        }
        Ok(())
    }
}

/// The admin endpoint: `/metrics`, `/healthz`, `/readyz`, discovery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "defaults::admin_listen")]
    pub listen: SocketAddr,
    /// Open connections at once; beyond it new ones wait in the accept backlog.
    #[serde(default = "crate::listener::defaults::max_connections")]
    pub max_connections: usize,
    /// Header, body, idle, request and HTTP/2 keep-alive timeouts, connection age.
    #[serde(default)]
    pub timeouts: crate::listener::TimeoutsConfig,
    /// TLS (and with `client_ca_file` mutual TLS) on this listener.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// `"required"` or `"none"`; default `required` once `[auth] keys_file` is set.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthMode>,
    /// Paths served without a key when auth is required (probes, scrapes).
    #[serde(default = "defaults::admin_open_paths")]
    pub open_paths: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: defaults::admin_listen(),
            max_connections: crate::listener::defaults::max_connections(),
            timeouts: Default::default(),
            tls: None,
            auth: None,
            open_paths: defaults::admin_open_paths(),
        }
    }
}

/// Where the metric registry lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// YAML file, relative to the config file.
    pub path: PathBuf,
}

/// Every default of the top-level sections, in one place.
pub mod defaults {
    use super::*;

    pub fn data_dir() -> PathBuf {
        PathBuf::from("data")
    }
    pub fn shutdown_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn pipelines_dir() -> PathBuf {
        PathBuf::from("pipelines")
    }
    /// `memory_allowed_percent` of the memory available to the process
    /// (see [`crate::limits::available_memory`]); 512 MiB if unknown.
    pub fn memory_bytes() -> u64 {
        memory_bytes_at(memory_allowed_percent())
    }
    pub fn memory_bytes_at(percent: u8) -> u64 {
        crate::limits::available_memory().map_or(FALLBACK_MEMORY_BYTES, |m| m.bytes / 100 * u64::from(percent))
    }
    /// `limits.memory_bytes` when the available memory cannot be read.
    pub const FALLBACK_MEMORY_BYTES: u64 = 512 * 1024 * 1024;
    pub fn memory_allowed_percent() -> u8 {
        60
    }
    pub fn bytes_per_sample() -> u64 {
        360
    }
    pub fn rss_high_water_percent() -> u8 {
        90
    }
    /// Kubernetes probes carry no key; add `/metrics` to scrape without one.
    pub fn admin_open_paths() -> Vec<String> {
        vec!["/healthz".into(), "/readyz".into()]
    }
    pub fn admin_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9188))
    }
}
