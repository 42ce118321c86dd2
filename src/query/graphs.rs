//! The stored graphs: every file under `graphs_dir`, validated against the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::GraphFile;
use super::validate::{DefinitionError, ValidatedGraph, validate_graph};
use crate::registry::MetricRegistry;

#[derive(Debug, thiserror::Error)]
pub enum GraphsError {
    #[error("cannot read graphs {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("graph file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("graph file {path}: {source}")]
    Invalid { path: PathBuf, source: DefinitionError },
    #[error("graph file {path}: graph id {id:?} is already defined in {other}")]
    Duplicate { path: PathBuf, id: String, other: PathBuf },
}

/// Loaded graphs by id.
#[derive(Debug, Default, Clone)]
pub struct GraphStore {
    graphs: BTreeMap<String, (ValidatedGraph, PathBuf)>,
}

/// Parses a graph file's text: JSON when `path` ends in `.json`, else YAML.
pub fn parse_graph_file(text: &str, path: &Path) -> Result<GraphFile, GraphsError> {
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| GraphsError::Parse { path: path.to_path_buf(), message })
}

impl GraphStore {
    /// Loads every `*.yaml`, `*.yml` and `*.json` file of `dir` (not recursive),
    /// in name order. A missing directory is an empty store.
    pub fn load_dir(dir: &Path, registry: &MetricRegistry) -> Result<GraphStore, GraphsError> {
        let mut store = GraphStore::default();
        if !dir.exists() {
            return Ok(store);
        }
        let entries = std::fs::read_dir(dir).map_err(|source| GraphsError::Read { path: dir.to_path_buf(), source })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
            .collect();
        files.sort();
        for path in files {
            let text =
                std::fs::read_to_string(&path).map_err(|source| GraphsError::Read { path: path.clone(), source })?;
            store.add_file(&text, &path, registry)?;
        }
        Ok(store)
    }

    /// Adds the graphs of one file's text.
    pub fn add_file(&mut self, text: &str, path: &Path, registry: &MetricRegistry) -> Result<(), GraphsError> {
        let file = parse_graph_file(text, path)?;
        for def in &file.graphs {
            let graph = validate_graph(def, registry)
                .map_err(|source| GraphsError::Invalid { path: path.to_path_buf(), source })?;
            if let Some((_, other)) = self.graphs.get(&def.id) {
                return Err(GraphsError::Duplicate {
                    path: path.to_path_buf(),
                    id: def.id.clone(),
                    other: other.clone(),
                });
            }
            self.graphs.insert(def.id.clone(), (graph, path.to_path_buf()));
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<&ValidatedGraph> {
        self.graphs.get(id).map(|(g, _)| g)
    }

    /// Every graph, by id.
    pub fn iter(&self) -> impl Iterator<Item = &ValidatedGraph> {
        self.graphs.values().map(|(g, _)| g)
    }

    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.graphs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> MetricRegistry {
        MetricRegistry::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/metrics.yaml")).unwrap()
    }

    #[test]
    fn shipped_graphs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/graphs");
        let store = GraphStore::load_dir(&dir, &registry()).unwrap();
        assert!(store.len() >= 3, "{}", store.len());
    }

    #[test]
    fn errors_name_the_file_and_the_graph() {
        let r = registry();
        let mut s = GraphStore::default();
        let e = s.add_file("graphs:\n- id: a\n  series:\n  - metric: nope\n", Path::new("x.yaml"), &r).unwrap_err();
        assert!(e.to_string().starts_with("graph file x.yaml: graph \"a\" series[0]: metric:"), "{e}");
        s.add_file(r#"{"graphs":[{"id":"a","series":[{"metric":"node_load1"}]}]}"#, Path::new("a.json"), &r).unwrap();
        let e =
            s.add_file("graphs:\n- id: a\n  series:\n  - metric: node_load1\n", Path::new("b.yaml"), &r).unwrap_err();
        assert!(e.to_string().contains("already defined in a.json"), "{e}");
        let e = s.add_file("graphs: [", Path::new("c.yaml"), &r).unwrap_err();
        assert!(matches!(e, GraphsError::Parse { .. }), "{e}");
        assert_eq!(s.get("a").unwrap().series[0].entry.key, "host.load.1m");
    }
}
