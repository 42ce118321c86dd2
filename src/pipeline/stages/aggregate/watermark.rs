//! What of a pipeline's aggregation survives a restart: per rule, the end of
//! the newest bucket it emitted (its *watermark*). A restarted daemon treats
//! every bucket ending at or before it as closed, so a bucket flushed before
//! the restart (or on shutdown) is never emitted a second time.
//!
//! One small JSON file per pipeline, `<data_dir>/aggregate/<pipeline>.json`:
//! `{"version": 1, "rules": {"<rule name>": <end, ms since the epoch>}}`.
//! It is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), so a reader sees the old or the new content, never a mix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory under `data_dir` that holds the watermark files.
pub const DIR: &str = "aggregate";
const VERSION: u32 = 1;

/// A watermark file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    #[error("aggregate watermark file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "aggregate watermark file {path} is damaged ({reason}); remove it to start afresh \
         (buckets emitted before the restart may then be emitted again)"
    )]
    Damaged { path: PathBuf, reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    version: u32,
    /// Rule name → end (ms) of the newest bucket the rule emitted.
    rules: BTreeMap<String, i64>,
}

/// The watermark file of one pipeline.
#[derive(Debug, Clone)]
pub struct WatermarkFile {
    dir: PathBuf,
    path: PathBuf,
}

impl WatermarkFile {
    /// The file of pipeline `pipeline` under `data_dir` (nothing is touched yet).
    pub fn new(data_dir: &Path, pipeline: &str) -> Self {
        let dir = data_dir.join(DIR);
        let path = dir.join(format!("{}.json", file_stem(pipeline)));
        WatermarkFile { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The watermarks saved by an earlier run; empty when there is no file.
    pub fn load(&self) -> Result<BTreeMap<String, i64>, WatermarkError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => return Err(WatermarkError::Io { path: self.path.clone(), source }),
        };
        let damaged = |reason: String| WatermarkError::Damaged { path: self.path.clone(), reason };
        let contents: Contents = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        if contents.version != VERSION {
            return Err(damaged(format!("version {} (this tsrelay writes {VERSION})", contents.version)));
        }
        Ok(contents.rules)
    }

    /// Replaces the file with `rules`, durably.
    pub fn save(&self, rules: &BTreeMap<String, i64>) -> Result<(), WatermarkError> {
        let io = |source| WatermarkError::Io { path: self.path.clone(), source };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let body = serde_json::to_vec(&Contents { version: VERSION, rules: rules.clone() })
            .map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        std::fs::File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

/// A file name for any pipeline name: `[A-Za-z0-9_-]` kept, every other byte
/// written `%XX` (so two names never share a file, and none leaves the directory).
fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_missing_and_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let f = WatermarkFile::new(dir.path(), "main");
        assert!(f.load().unwrap().is_empty(), "no file: no watermarks");
        let rules = BTreeMap::from([("a".to_string(), 1_700_000_000_000), ("b:1h".to_string(), -5)]);
        f.save(&rules).unwrap();
        assert_eq!(f.path(), dir.path().join("aggregate/main.json"));
        assert_eq!(f.load().unwrap(), rules);
        assert!(!dir.path().join("aggregate/main.json.tmp").exists());
        std::fs::write(f.path(), b"{\"version\": 1, \"rules\": {\"a\": ").unwrap();
        let e = f.load().unwrap_err().to_string();
        assert!(e.contains("main.json is damaged"), "{e}");
        std::fs::write(f.path(), b"{\"version\": 9, \"rules\": {}}").unwrap();
        assert!(f.load().unwrap_err().to_string().contains("version 9"));
    }

    #[test]
    fn file_names_stay_in_the_directory() {
        assert_eq!(file_stem("main"), "main");
        assert_eq!(file_stem("../x/y"), "%2E%2E%2Fx%2Fy");
        assert_eq!(file_stem("a.b"), "a%2Eb");
    }
}
