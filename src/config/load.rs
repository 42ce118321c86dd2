use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::Figment;
use figment::providers::{Env, Format, Toml};

use super::Config;
use crate::registry::{MetricRegistry, RegistryError};

/// Top-level scalar keys that may be set from the environment without `__`.
const TOP_LEVEL_ENV_KEYS: [&str; 3] = ["data_dir", "shutdown_timeout", "pipelines_dir"];

/// The configuration compiled into the binary: HTTP and gRPC in, a file sink out.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/tsrelay.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot list pipeline files in {path}: {source}")]
    PipelinesDir { path: PathBuf, source: std::io::Error },
    // figment's message names the key and the file it came from.
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration ({origin}): {message}")]
    Invalid { origin: String, message: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Parse(Box::new(e))
    }
}

/// A parsed config and where it came from (paths in it are resolved against `base_dir`).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub base_dir: PathBuf,
    /// The file it was read from, or `None` for the embedded default.
    pub source: Option<PathBuf>,
    /// The metric registry of `[registry] path`, loaded and checked (empty without one).
    pub registry: Arc<MetricRegistry>,
}

impl LoadedConfig {
    pub fn origin(&self) -> String {
        self.source.as_ref().map_or_else(|| "embedded default".to_string(), |p| p.display().to_string())
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }
}

/// Loads `path` (or the embedded default when `path` is `None`), merges the
/// pipeline files and the `TSRELAY_` environment, and checks cross-references.
pub fn load(path: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let (mut figment, base_dir, source) = match path {
        Some(p) => {
            if let Err(source) = std::fs::metadata(p) {
                return Err(ConfigError::Read { path: p.to_path_buf(), source });
            }
            let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
            let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
            (Figment::from(Toml::file_exact(p)), base, Some(p.to_path_buf()))
        }
        None => (Figment::from(Toml::string(EMBEDDED_DEFAULT)), PathBuf::from("."), None),
    };

    let pipelines_dir: PathBuf =
        figment.extract_inner::<PathBuf>("pipelines_dir").unwrap_or_else(|_| super::defaults::pipelines_dir());
    let pipelines_dir = if pipelines_dir.is_absolute() { pipelines_dir } else { base_dir.join(pipelines_dir) };
    if source.is_some() && pipelines_dir.is_dir() {
        let entries = std::fs::read_dir(&pipelines_dir)
            .map_err(|source| ConfigError::PipelinesDir { path: pipelines_dir.clone(), source })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        for f in files {
            figment = figment.admerge(Toml::file_exact(f));
        }
    }
    // Only nested keys (`A__B`) and the known top-level keys: an unrelated
    // variable such as TSRELAY_BIN must not become a config error.
    figment = figment.merge(
        Env::prefixed("TSRELAY_")
            .filter(|k| k.as_str().contains("__") || TOP_LEVEL_ENV_KEYS.contains(&k.as_str()))
            .split("__"),
    );

    let mut config: Config = figment.extract()?;
    let explicit = crate::limits::Explicit::from_figment(&figment, &config);
    if !explicit.memory_bytes {
        config.limits.memory_bytes = super::defaults::memory_bytes_at(config.limits.memory_allowed_percent);
    }
    crate::limits::derive_defaults(&mut config, &explicit);
    let mut loaded = LoadedConfig { config, base_dir, source, registry: Arc::new(MetricRegistry::empty()) };
    check_references(&loaded)?;
    if let Some(r) = &loaded.config.registry {
        loaded.registry = Arc::new(MetricRegistry::load(&loaded.resolve(&r.path))?);
    }
    Ok(loaded)
}

fn check_references(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let c = &loaded.config;
    let invalid = |message: String| ConfigError::Invalid { origin: loaded.origin(), message };
    if c.pipelines.is_empty() {
        return Err(invalid("no [pipelines.<name>] section: nothing would flow".into()));
    }
    let mut used_receivers = std::collections::BTreeSet::new();
    for (name, p) in &c.pipelines {
        if p.receivers.is_empty() {
            return Err(invalid(format!("pipelines.{name}.receivers is empty")));
        }
        if p.sinks.is_empty() {
            return Err(invalid(format!("pipelines.{name}.sinks is empty")));
        }
        for r in &p.receivers {
            if !c.receivers.contains_key(r) {
                return Err(invalid(format!(
                    "pipelines.{name}.receivers names \"{r}\", but there is no [receivers.{r}] (known: {})",
                    known(c.receivers.keys())
                )));
            }
            if !used_receivers.insert(r.as_str()) {
                return Err(invalid(format!(
                    "receivers.{r} is used by more than one pipeline; give each pipeline its own receiver"
                )));
            }
        }
        for s in &p.sinks {
            if !c.sinks.contains_key(s) {
                return Err(invalid(format!(
                    "pipelines.{name}.sinks names \"{s}\", but there is no [sinks.{s}] (known: {})",
                    known(c.sinks.keys())
                )));
            }
        }
        for (i, rule) in p.aggregate.iter().enumerate() {
            for s in rule.sinks.iter().flatten() {
                if !c.sinks.contains_key(s) {
                    return Err(invalid(format!(
                        "pipelines.{name}.aggregate[{i}].sinks names \"{s}\", but there is no [sinks.{s}] (known: {})",
                        known(c.sinks.keys())
                    )));
                }
            }
        }
        p.check().map_err(|m| invalid(format!("pipelines.{name}: {m}")))?;
    }
    for name in c.receivers.keys() {
        if !used_receivers.contains(name.as_str()) {
            return Err(invalid(format!("receivers.{name} is not used by any pipeline")));
        }
    }
    c.limits.check().map_err(invalid)?;
    c.admin.timeouts.check().map_err(|m| invalid(format!("admin: {m}")))?;
    let mut listeners = vec![("admin".to_string(), c.admin.auth)];
    for (name, r) in &c.receivers {
        if let Some(mode) = r.auth() {
            listeners.push((format!("receivers.{name}"), mode));
        }
    }
    c.auth.check(&listeners).map_err(invalid)?;
    for (name, r) in &c.receivers {
        r.check_unauthenticated(c.auth.keys_file.is_some()).map_err(|m| invalid(format!("receivers.{name}: {m}")))?;
    }
    if let Some(q) = &c.query {
        q.check().map_err(invalid)?;
    }
    for (name, s) in &c.sinks {
        s.check().map_err(|m| invalid(format!("sinks.{name}: {m}")))?;
    }
    for (name, r) in &c.receivers {
        r.check().map_err(|m| invalid(format!("receivers.{name}: {m}")))?;
    }
    Ok(())
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}
