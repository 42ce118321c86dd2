//! `[query]`: the read side's listener and limits. Defaults in [`defaults`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// ```toml
/// [query]                      # present: the query listener runs
/// listen = "127.0.0.1:9189"
/// graphs_dir = "graphs"        # relative to the config file
/// max_series = 10000           # lines in one render (422 beyond)
/// max_points = 11000           # points per line (400 beyond)
/// timeout = "30s"              # one render, backend I/O included (504 beyond)
/// max_concurrent_renders = 4   # more wait (within `timeout`)
/// worker_threads = 1           # the query runtime's own threads
///
/// [query.cache]                # see `cache::CacheConfig`
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Address of the query HTTP API (DESIGN §7.2).
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Graph definition files (`*.yaml`, `*.yml`, `*.json`), relative to the config
    /// file. A missing directory means no stored graphs (inline graphs still work).
    #[serde(default = "defaults::graphs_dir")]
    pub graphs_dir: PathBuf,
    /// Most lines one render may return (all graph series together); more is 422.
    #[serde(default = "defaults::max_series")]
    pub max_series: usize,
    /// Most points per line: `(end − start) / step`; more is 400 naming `step`.
    #[serde(default = "defaults::max_points")]
    pub max_points: usize,
    /// Time limit of one render, every backend request included; beyond it 504.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Renders running at once; further ones wait for a slot (within `timeout`).
    #[serde(default = "defaults::max_concurrent_renders")]
    pub max_concurrent_renders: usize,
    /// Threads of the query listener's own runtime: renders never run on the
    /// ingestion runtime's threads, so reads cannot starve ingestion.
    #[serde(default = "defaults::worker_threads")]
    pub worker_threads: usize,
    /// The listener keys every listener shares (README, src/listener/config.rs).
    #[serde(default = "crate::listener::defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default)]
    pub timeouts: crate::listener::TimeoutsConfig,
    /// TLS (and with `client_ca_file` mutual TLS) on the query listener.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// `"required"` or `"none"`; default `required` once `[auth] keys_file`
    /// is set. Every request then needs a key with the `read` scope.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthMode>,
    /// `[query.cache]`: the step-aligned bucket cache in front of every driver (DESIGN §7.3).
    #[serde(default)]
    pub cache: super::cache::CacheConfig,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            listen: defaults::listen(),
            graphs_dir: defaults::graphs_dir(),
            max_series: defaults::max_series(),
            max_points: defaults::max_points(),
            timeout: defaults::timeout(),
            max_concurrent_renders: defaults::max_concurrent_renders(),
            worker_threads: defaults::worker_threads(),
            max_connections: crate::listener::defaults::max_connections(),
            timeouts: Default::default(),
            tls: None,
            auth: None,
            cache: Default::default(),
        }
    }
}

impl QueryConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        let positive = [
            ("max_series", self.max_series),
            ("max_points", self.max_points),
            ("max_concurrent_renders", self.max_concurrent_renders),
            ("worker_threads", self.worker_threads),
        ];
        self.timeouts.check().map_err(|m| format!("query.{m}"))?;
        self.cache.check()?;
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("query.{key} must be at least 1"));
            }
        }
        if self.timeout.is_zero() {
            return Err("query.timeout must be above zero".into());
        }
        Ok(())
    }
}

pub mod defaults {
    use super::*;

    pub fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9189))
    }
    pub fn graphs_dir() -> PathBuf {
        PathBuf::from("graphs")
    }
    pub fn max_series() -> usize {
        10_000
    }
    /// Prometheus' own limit of points per series in one range query.
    pub fn max_points() -> usize {
        11_000
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_concurrent_renders() -> usize {
        4
    }
    pub fn worker_threads() -> usize {
        1
    }
}
