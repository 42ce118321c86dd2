//! The metric registry (`config/metrics.yaml`, DESIGN §4): what each known
//! metric is (type, unit, help, allowed labels) and how some backends name it.
//!
//! Loaded and checked once at start-up (and by `tsrelay validate`); read-only
//! afterwards and shared as `Arc<MetricRegistry>`. The validate stage looks
//! entries up by metric name; sinks and read drivers read the `backends`
//! overrides, plain data owned here, with [`MetricRegistry::influxdb_overrides`] /
//! [`MetricRegistry::rrdcached_overrides`] or [`MetricEntry::influxdb`] /
//! [`MetricEntry::rrdcached`]. Nothing here imports a sink: the registry is upstream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::model::{METRIC_NAME_LABEL, MetricKind};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read metric registry {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    // serde_norway's message names the entry (`metrics[3].type`) and the line.
    #[error("metric registry {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("metric registry {path}: entry {index} (key {key:?}): {message}")]
    Entry { path: PathBuf, index: usize, key: String, message: String },
}

/// The kind of a registered metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl MetricType {
    pub fn kind(self) -> MetricKind {
        match self {
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
            MetricType::Summary => MetricKind::Summary,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.kind().as_str()
    }
}

/// One registered metric.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricEntry {
    /// Stable dotted identifier (`network.port.octets.in`); survives renames of `name`.
    pub key: String,
    /// The `__name__` this entry describes.
    pub name: String,
    /// Samples of this metric carry this type; a sender's conflicting hint is `type_conflict`.
    #[serde(rename = "type")]
    pub metric_type: MetricType,
    /// Unit of the values (`bytes`, `seconds`, ...), free text.
    #[serde(default)]
    pub unit: Option<String>,
    /// One sentence for humans and for backends that store help text.
    #[serde(default)]
    pub help: Option<String>,
    /// When present, the only labels (besides `__name__`) this metric may carry.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Per-backend naming overrides; a sink without an entry here uses its defaults.
    #[serde(default)]
    pub backends: BackendOverrides,
}

/// `backends:` of a registry entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendOverrides {
    #[serde(default)]
    pub influxdb: Option<InfluxdbOverride>,
    #[serde(default)]
    pub rrdcached: Option<RrdcachedOverride>,
}

/// How the InfluxDB sink writes this metric instead of `<name> value=...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxdbOverride {
    /// Measurement name (default: the metric name).
    #[serde(default)]
    pub measurement: Option<String>,
    /// Field key (default: `value`).
    #[serde(default)]
    pub field: Option<String>,
}

/// How the rrdcached sink stores this metric.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RrdcachedOverride {
    /// RRD file path template, `{label}` placeholders, relative to the sink's base directory.
    #[serde(default)]
    pub path: Option<String>,
    /// Data-source name inside the RRD file (rrdtool: 1–19 of `[a-zA-Z0-9_]`).
    #[serde(default)]
    pub ds: Option<String>,
    /// Data-source type.
    #[serde(default)]
    pub ds_type: Option<RrdDsType>,
}

/// rrdtool data-source types (rrdcreate(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RrdDsType {
    Gauge,
    Counter,
    Derive,
    Dcounter,
    Dderive,
    Absolute,
}

impl RrdDsType {
    pub fn as_str(self) -> &'static str {
        match self {
            RrdDsType::Gauge => "GAUGE",
            RrdDsType::Counter => "COUNTER",
            RrdDsType::Derive => "DERIVE",
            RrdDsType::Dcounter => "DCOUNTER",
            RrdDsType::Dderive => "DDERIVE",
            RrdDsType::Absolute => "ABSOLUTE",
        }
    }
}

impl MetricEntry {
    pub fn kind(&self) -> MetricKind {
        self.metric_type.kind()
    }

    pub fn influxdb(&self) -> Option<&InfluxdbOverride> {
        self.backends.influxdb.as_ref()
    }

    pub fn rrdcached(&self) -> Option<&RrdcachedOverride> {
        self.backends.rrdcached.as_ref()
    }

    /// Whether `label` may appear on this metric (`__name__` always may).
    pub fn allows_label(&self, label: &str) -> bool {
        label == METRIC_NAME_LABEL || self.labels.as_ref().is_none_or(|allowed| allowed.iter().any(|a| a == label))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    metrics: Vec<MetricEntry>,
}

/// The loaded, checked registry; immutable, cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MetricRegistry {
    entries: Vec<MetricEntry>,
    by_name: HashMap<String, usize, ahash::RandomState>,
    by_key: HashMap<String, usize, ahash::RandomState>,
    source: Option<PathBuf>,
}

impl MetricRegistry {
    /// No entries: every metric is unknown.
    pub fn empty() -> Self {
        MetricRegistry::default()
    }

    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RegistryError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// Parses and checks registry YAML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, RegistryError> {
        let file: RegistryFile = serde_norway::from_str(text)
            .map_err(|e| RegistryError::Parse { path: origin.to_path_buf(), message: e.to_string() })?;
        let mut registry = MetricRegistry { source: Some(origin.to_path_buf()), ..Default::default() };
        for (index, entry) in file.metrics.into_iter().enumerate() {
            let err = |message: String| RegistryError::Entry {
                path: origin.to_path_buf(),
                index,
                key: entry.key.clone(),
                message,
            };
            check_entry(&entry).map_err(err)?;
            if let Some(&other) = registry.by_key.get(&entry.key) {
                return Err(err(format!("key is already used by entry {other}")));
            }
            if let Some(&other) = registry.by_name.get(&entry.name) {
                return Err(err(format!(
                    "name {:?} is already described by entry {other} (key {:?})",
                    entry.name, registry.entries[other].key
                )));
            }
            registry.by_key.insert(entry.key.clone(), index);
            registry.by_name.insert(entry.name.clone(), index);
            registry.entries.push(entry);
        }
        Ok(registry)
    }

    /// The entry whose `name` is this metric name.
    pub fn get(&self, metric_name: &str) -> Option<&MetricEntry> {
        self.by_name.get(metric_name).map(|&i| &self.entries[i])
    }

    /// The entry with this stable key.
    pub fn get_by_key(&self, key: &str) -> Option<&MetricEntry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[MetricEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file it was loaded from (`None` when empty by configuration).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }
}

/// Metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| METRIC_NAME_BYTES[c as usize])
}

/// Label names: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && !b[0].is_ascii_digit() && b.iter().all(|&c| LABEL_NAME_BYTES[c as usize])
}

// Byte tables: every sample's names are checked, and one load per byte
// beats a chain of range comparisons.
const fn name_bytes(colon: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':');
        c += 1;
    }
    table
}

static METRIC_NAME_BYTES: [bool; 256] = name_bytes(true);
static LABEL_NAME_BYTES: [bool; 256] = name_bytes(false);

fn check_entry(e: &MetricEntry) -> Result<(), String> {
    let key_ok = !e.key.is_empty()
        && e.key
            .split('.')
            .all(|seg| !seg.is_empty() && seg.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    if !key_ok {
        return Err("key must be dot-separated segments of [a-zA-Z0-9_-], e.g. network.port.octets.in".into());
    }
    if !is_valid_metric_name(&e.name) {
        return Err(format!("name {:?} is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", e.name));
    }
    if let Some(labels) = &e.labels {
        for (i, l) in labels.iter().enumerate() {
            if l == METRIC_NAME_LABEL {
                return Err(format!("labels lists {METRIC_NAME_LABEL}, which is always allowed; remove it"));
            }
            if !is_valid_label_name(l) {
                return Err(format!("labels[{i}] {l:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
            }
            if labels[..i].contains(l) {
                return Err(format!("labels lists {l:?} twice"));
            }
        }
    }
    if let Some(influx) = &e.backends.influxdb {
        for (what, v) in [("measurement", &influx.measurement), ("field", &influx.field)] {
            if v.as_deref().is_some_and(str::is_empty) {
                return Err(format!("backends.influxdb.{what} is empty"));
            }
        }
    }
    if let Some(rrd) = &e.backends.rrdcached {
        if let Some(ds) = &rrd.ds {
            let ok = (1..=19).contains(&ds.len()) && ds.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(format!("backends.rrdcached.ds {ds:?} must be 1 to 19 characters of [a-zA-Z0-9_]"));
            }
        }
        if let Some(path) = &rrd.path {
            check_path_template(path, e).map_err(|m| format!("backends.rrdcached.path {path:?}: {m}"))?;
        }
    }
    Ok(())
}

fn check_path_template(path: &str, e: &MetricEntry) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if path.starts_with('/') || path.split('/').any(|seg| seg == "..") {
        return Err("must be relative and must not contain `..`".into());
    }
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or("has a `{` without a closing `}`")?;
        let label = &after[..close];
        if !is_valid_label_name(label) {
            return Err(format!("placeholder {{{label}}} is not a label name"));
        }
        if !e.allows_label(label) {
            return Err(format!("placeholder {{{label}}} names a label the entry's `labels` does not allow"));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("has a `}` without an opening `{`".into());
    }
    Ok(())
}

/// Looks a metric name up; `None` when its entry has no such override.
/// Sinks and read drivers get these from [`MetricRegistry::influxdb_overrides`]
/// and [`MetricRegistry::rrdcached_overrides`].
pub type OverrideLookup<T> = Arc<dyn Fn(&str) -> Option<Arc<T>> + Send + Sync>;

impl MetricRegistry {
    fn override_lookup<T: Clone + Send + Sync + 'static>(
        &self,
        pick: impl Fn(&MetricEntry) -> Option<&T>,
    ) -> OverrideLookup<T> {
        let table: HashMap<String, Arc<T>> =
            self.entries().iter().filter_map(|e| Some((e.name.clone(), Arc::new(pick(e)?.clone())))).collect();
        Arc::new(move |name: &str| table.get(name).cloned())
    }

    /// `backends.influxdb` overrides by metric name.
    pub fn influxdb_overrides(&self) -> OverrideLookup<InfluxdbOverride> {
        self.override_lookup(MetricEntry::influxdb)
    }

    /// `backends.rrdcached` overrides by metric name.
    pub fn rrdcached_overrides(&self) -> OverrideLookup<RrdcachedOverride> {
        self.override_lookup(MetricEntry::rrdcached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetricRegistry, RegistryError> {
        MetricRegistry::parse(text, Path::new("metrics.yaml"))
    }

    const GOOD: &str = r#"
metrics:
  - key: network.port.octets.in
    name: network_port_in_octets_total
    type: counter
    unit: bytes
    help: Octets received on a switch port.
    labels: [device, port]
    backends:
      influxdb: { measurement: port, field: in_octets }
      rrdcached: { path: "{device}/port-{port}.rrd", ds: in, ds_type: DERIVE }
  - key: node.load1
    name: node_load1
    type: gauge
"#;

    #[test]
    fn loads_entries_and_looks_them_up() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.len(), 2);
        let e = r.get("network_port_in_octets_total").unwrap();
        assert_eq!(e.kind(), MetricKind::Counter);
        assert_eq!(e.unit.as_deref(), Some("bytes"));
        assert_eq!(e.influxdb().unwrap().field.as_deref(), Some("in_octets"));
        let rrd = e.rrdcached().unwrap();
        assert_eq!(rrd.ds_type, Some(RrdDsType::Derive));
        assert_eq!(rrd.path.as_deref(), Some("{device}/port-{port}.rrd"));
        assert!(e.allows_label("port") && e.allows_label("__name__") && !e.allows_label("vlan"));
        let load = r.get_by_key("node.load1").unwrap();
        assert!(load.allows_label("anything"));
        assert!(load.influxdb().is_none());
        assert!(r.get("nope").is_none());
    }

    fn entry_error(text: &str) -> String {
        match parse(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn errors_name_file_entry_and_problem() {
        let dup = format!("{GOOD}  - key: node.load1\n    name: other\n    type: gauge\n");
        let e = entry_error(&dup);
        assert!(e.contains("metrics.yaml") && e.contains("entry 2") && e.contains("already used by entry 1"), "{e}");

        let e = entry_error("metrics:\n  - key: a.b\n    name: 1bad\n    type: gauge\n");
        assert!(e.contains("entry 0 (key \"a.b\")") && e.contains("not a metric name"), "{e}");

        let e = entry_error("metrics:\n  - key: a..b\n    name: ok\n    type: gauge\n");
        assert!(e.contains("key must be"), "{e}");

        let e = entry_error(
            "metrics:\n  - key: a\n    name: a\n    type: gauge\n    labels: [x]\n    backends:\n      rrdcached: { path: \"{y}.rrd\" }\n",
        );
        assert!(e.contains("placeholder {y}"), "{e}");

        let e = entry_error(
            "metrics:\n  - key: a\n    name: a\n    type: gauge\n    backends:\n      rrdcached: { ds: this_name_is_far_too_long }\n",
        );
        assert!(e.contains("1 to 19"), "{e}");

        let e = entry_error(
            "metrics:\n  - key: a\n    name: a\n    type: gauge\n  - key: b\n    name: a\n    type: counter\n",
        );
        assert!(e.contains("entry 1") && e.contains("already described by entry 0"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_field_and_line() {
        let e = entry_error("metrics:\n  - key: a\n    name: a\n    typ: gauge\n");
        assert!(e.contains("metrics.yaml") && e.contains("typ") && e.contains("line"), "{e}");
        let e = entry_error("metrics:\n  - key: a\n    name: a\n    type: meter\n");
        assert!(e.contains("meter"), "{e}");
        let e = entry_error(
            "metrics:\n  - key: a\n    name: a\n    type: gauge\n    backends:\n      rrdcached: { ds_type: derive }\n",
        );
        assert!(e.contains("derive"), "{e}");
    }

    #[test]
    fn shipped_registry_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/metrics.yaml");
        let r = MetricRegistry::load(&path).unwrap();
        assert!(!r.is_empty());
    }
}
