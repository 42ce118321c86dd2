//! Who may write and read: API keys (stored as SHA-256 hashes) with scopes,
//! pipelines and per-key token buckets, presented the way each client
//! ecosystem sends them, or stood for by a client certificate (mutual TLS).
//!
//! [`Guard`] is the check every listener runs before anything else
//! (`ListenerOptions::with_auth`); a refused request never reaches a
//! receiver's admission, decoding or pipeline.

pub mod cli;
mod credentials;
mod guard;
pub mod keys;
mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

pub use credentials::presented_key;
pub use guard::{Denied, Guard, rate_limited_response, rate_limited_status};
pub use keys::{KeySpec, KeysFile, KeysFileError, Scope};
pub use store::{KeyEntry, KeyStore, Principal, RateLimited, watch};

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The keys file (YAML, see [`keys`]); relative to the config file. Set,
    /// every listener requires a key unless its `auth = "none"`.
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Client certificates that stand for a key (mutual TLS): the
    /// certificate's subject common name → the name of a key in the keys file.
    #[serde(default)]
    pub client_certs: BTreeMap<String, String>,
}

/// A listener's `auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every request needs a key (or a mapped client certificate).
    Required,
    /// Open to anyone who can reach the listener.
    None,
}

impl AuthConfig {
    /// A listener's effective mode: as set, else `required` once a keys file is configured.
    pub fn mode(&self, set: Option<AuthMode>) -> AuthMode {
        set.unwrap_or(if self.keys_file.is_some() { AuthMode::Required } else { AuthMode::None })
    }

    pub(crate) fn check(&self, listeners: &[(String, Option<AuthMode>)]) -> Result<(), String> {
        for (what, mode) in listeners {
            if *mode == Some(AuthMode::Required) && self.keys_file.is_none() {
                return Err(format!("{what}.auth = \"required\" needs [auth] keys_file"));
            }
        }
        if !self.client_certs.is_empty() && self.keys_file.is_none() {
            return Err("auth.client_certs maps certificates to keys of [auth] keys_file, which is not set".into());
        }
        Ok(())
    }
}

/// How often the keys file is checked for changes.
pub const RELOAD_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
