//! `tsrelay keys new | list`: the keys file the config names.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::keys::{KeySpec, KeysFile, KeysFileError, generate_key, hash_key, to_hex};
use crate::config::LoadedConfig;

/// The keys file `[auth] keys_file` of `loaded` names, resolved.
pub fn keys_file_path(loaded: &LoadedConfig) -> Result<PathBuf, String> {
    match &loaded.config.auth.keys_file {
        Some(p) => Ok(loaded.resolve(p)),
        None => Err(format!("{}: no [auth] keys_file is configured", loaded.origin())),
    }
}

/// Adds a key described by `spec` (its `sha256` is filled in) to the file at
/// `path`, creating it if needed, and returns the key, which is stored nowhere.
pub fn new_key(path: &Path, mut spec: KeySpec) -> Result<String, KeysFileError> {
    let mut file = if path.exists() { KeysFile::load(path)? } else { KeysFile::default() };
    if file.keys.iter().any(|k| k.name == spec.name) {
        return Err(KeysFileError::Invalid {
            path: path.to_path_buf(),
            message: format!("a key named {} exists already; pick another name or remove it first", spec.name),
        });
    }
    let key = generate_key().map_err(|_| KeysFileError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other("the system random source failed"),
    })?;
    spec.sha256 = to_hex(&hash_key(key.as_bytes()));
    file.keys.push(spec);
    // The same checks the daemon makes, before anything is written.
    let text = serde_norway::to_string(&file)
        .map_err(|e| KeysFileError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    KeysFile::parse(&text).map_err(|message| KeysFileError::Invalid { path: path.to_path_buf(), message })?;
    file.save(path)?;
    Ok(key)
}

/// A table of the keys in `path`: names, scopes, pipelines and limits (never hashes).
pub fn list(path: &Path) -> Result<String, KeysFileError> {
    let file = KeysFile::load(path)?;
    let mut out = String::new();
    let header = ["NAME", "SCOPES", "PIPELINES", "SAMPLES/S (BURST)", "REQUESTS/S (BURST)"];
    let _ = writeln!(out, "{:<24} {:<18} {:<16} {:<22} {}", header[0], header[1], header[2], header[3], header[4]);
    let limit = |per: Option<u32>, burst: Option<u32>| match per {
        None => "-".to_string(),
        Some(p) => format!("{p} ({})", burst.unwrap_or(p)),
    };
    for k in &file.keys {
        let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
        let pipelines = if k.pipelines.is_empty() { "*".to_string() } else { k.pipelines.join(",") };
        let _ = writeln!(
            out,
            "{:<24} {:<18} {:<16} {:<22} {}",
            k.name,
            scopes.join(","),
            pipelines,
            limit(k.samples_per_second, k.samples_burst),
            limit(k.requests_per_second, k.requests_burst)
        );
    }
    Ok(out)
}
