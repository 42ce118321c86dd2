//! The keys file: one entry per API key, holding its SHA-256 hash (never the
//! key), its scopes, the pipelines it may feed and its rate limits.
//!
//! ```yaml
//! keys:
//!   - name: collector-a
//!     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!     scopes: [write]            # write | read | admin; default [write]
//!     pipelines: [main]          # optional; default: every pipeline
//!     samples_per_second: 100000 # optional token bucket on samples...
//!     samples_burst: 200000      # ...its size (default: one second's worth)
//!     requests_per_second: 50    # optional token bucket on requests
//!     requests_burst: 100
//! ```

use std::path::{Path, PathBuf};

use ring::digest;
use serde::{Deserialize, Serialize};

/// What a key may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send samples to receivers.
    Write,
    /// Read: the admin port's discovery API and `/metrics`, the query listener.
    Read,
    /// Everything.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Write => "write",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Scope, String> {
        match s.trim() {
            "write" => Ok(Scope::Write),
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}; use write, read or admin")),
        }
    }
}

fn default_scopes() -> Vec<Scope> {
    vec![Scope::Write]
}

/// One entry of the keys file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Shown in logs and metrics (`key` label) instead of the key.
    pub name: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<Scope>,
    /// Pipelines the key may feed; empty = all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_burst: Option<u32>,
}

/// The whole keys file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    #[serde(default)]
    pub keys: Vec<KeySpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read keys file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("keys file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write keys file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl KeysFile {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<KeysFile, KeysFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| KeysFileError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|message| KeysFileError::Invalid { path: path.to_path_buf(), message })
    }

    /// Parses and checks the YAML text of a keys file.
    pub fn parse(text: &str) -> Result<KeysFile, String> {
        let file: KeysFile = if text.trim().is_empty() {
            KeysFile::default()
        } else {
            serde_norway::from_str(text).map_err(|e| e.to_string())?
        };
        file.check()?;
        Ok(file)
    }

    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        let mut hashes = std::collections::BTreeSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("keys[{i}] ({})", k.name);
            if k.name.trim().is_empty() {
                return Err(format!("keys[{i}]: name must not be empty"));
            }
            if !names.insert(k.name.as_str()) {
                return Err(format!("{at}: the name is used twice"));
            }
            if parse_hex_digest(&k.sha256).is_none() {
                return Err(format!("{at}: sha256 must be 64 hex digits (the SHA-256 of the key, never the key)"));
            }
            if !hashes.insert(k.sha256.to_ascii_lowercase()) {
                return Err(format!("{at}: the same key hash appears twice"));
            }
            if k.scopes.is_empty() {
                return Err(format!("{at}: scopes must name at least one of write, read, admin"));
            }
            for (what, v) in [
                ("samples_per_second", k.samples_per_second),
                ("samples_burst", k.samples_burst),
                ("requests_per_second", k.requests_per_second),
                ("requests_burst", k.requests_burst),
            ] {
                if v == Some(0) {
                    return Err(format!("{at}: {what} must be at least 1 (leave it out for no limit)"));
                }
            }
            if k.samples_burst.is_some() && k.samples_per_second.is_none() {
                return Err(format!("{at}: samples_burst needs samples_per_second"));
            }
            if k.requests_burst.is_some() && k.requests_per_second.is_none() {
                return Err(format!("{at}: requests_burst needs requests_per_second"));
            }
        }
        Ok(())
    }

    /// Writes the file atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> Result<(), KeysFileError> {
        let err = |source| KeysFileError::Write { path: path.to_path_buf(), source };
        let text = serde_norway::to_string(self).map_err(|e| err(std::io::Error::other(e.to_string())))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Parses 64 hex digits (either case).
pub fn parse_hex_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().as_bytes();
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A fresh key: `tsr_` and 256 random bits in hex.
pub fn generate_key() -> Result<String, ring::error::Unspecified> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    Ok(format!("tsr_{}", to_hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_known_digest() {
        let h = hash_key(b"test");
        assert_eq!(to_hex(&h), "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
        assert_eq!(parse_hex_digest(&to_hex(&h).to_uppercase()), Some(h));
        assert_eq!(parse_hex_digest("abc"), None);
    }

    #[test]
    fn generated_keys_are_long_and_distinct() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
    }

    #[test]
    fn a_bad_file_names_the_entry() {
        let text = "keys:\n  - name: a\n    sha256: xyz\n";
        let err = KeysFile::parse(text).unwrap_err();
        assert!(err.contains("keys[0] (a): sha256 must be 64 hex digits"), "{err}");
        let h = to_hex(&hash_key(b"k"));
        let dup = format!("keys:\n  - name: a\n    sha256: {h}\n  - name: a\n    sha256: {h}\n");
        assert!(KeysFile::parse(&dup).unwrap_err().contains("used twice"));
        let unknown = format!("keys:\n  - name: a\n    sha256: {h}\n    scope: [read]\n");
        assert!(KeysFile::parse(&unknown).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn defaults_are_write_and_no_limits() {
        let h = to_hex(&hash_key(b"k"));
        let f = KeysFile::parse(&format!("keys:\n  - name: a\n    sha256: {h}\n")).unwrap();
        assert_eq!(f.keys[0].scopes, vec![Scope::Write]);
        assert!(f.keys[0].pipelines.is_empty() && f.keys[0].samples_per_second.is_none());
    }
}
