//! `[sinks.<name>] type = "influxdb"`: every key, documented, defaults in [`defaults`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;
use crate::sinks::retry::RetryConfig;

/// Which write API the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiVersion {
    /// InfluxDB 1.x: `POST /write?db=&rp=&precision=ns`.
    #[default]
    V1,
    /// InfluxDB 2.x/3.x (and compatible servers): `POST /api/v2/write?org=&bucket=&precision=ns`.
    V2,
}

/// How v1 credentials travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum V1Auth {
    /// `Authorization: Basic ...`.
    #[default]
    Basic,
    /// Query parameters `u=` and `p=` (older proxies strip the header).
    Query,
}

/// Trust settings for `https://` URLs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with extra CA certificates to trust (relative to the config file).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxdbSinkConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8086` (paths are added).
    pub url: String,
    /// `v1` (default) or `v2`.
    #[serde(default)]
    pub api: ApiVersion,
    /// v1: the database (`db=`). Required with `api = "v1"`.
    #[serde(default)]
    pub database: Option<String>,
    /// v1: the retention policy (`rp=`); the database's default when unset.
    #[serde(default)]
    pub rp: Option<String>,
    /// v1: user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password.
    #[serde(default)]
    pub password: Option<String>,
    /// v1: send credentials as `basic` auth (default) or as `query` parameters `u`/`p`.
    #[serde(default)]
    pub auth: V1Auth,
    /// v1: on `404 database not found`, run `CREATE DATABASE` and resend (otherwise
    /// the batch is dropped as `rejected`).
    #[serde(default)]
    pub create_database: bool,
    /// v2: organization (`org=`). Required with `api = "v2"`.
    #[serde(default)]
    pub org: Option<String>,
    /// v2: bucket (`bucket=`). Required with `api = "v2"`.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: API token, sent as `Authorization: Token <token>`.
    #[serde(default)]
    pub token: Option<String>,
    /// Compress request bodies with gzip.
    #[serde(default = "defaults::gzip")]
    pub gzip: bool,
    /// Field written when the registry names none for a metric.
    #[serde(default = "defaults::field")]
    pub field: String,
    /// Time limit of one request (connect + answer).
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long the server may keep failing before `/readyz` reports the sink failing.
    #[serde(default = "defaults::unhealthy_after", with = "humantime_serde")]
    pub unhealthy_after: Duration,
}

pub mod defaults {
    use std::time::Duration;

    pub fn gzip() -> bool {
        true
    }
    pub fn field() -> String {
        "value".into()
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
}

impl InfluxdbSinkConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(format!("url must start with http:// or https://, got {:?}", self.url));
        }
        if self.field.is_empty() {
            return Err("field must not be empty".into());
        }
        match self.api {
            ApiVersion::V1 => {
                if self.database.as_deref().is_none_or(str::is_empty) {
                    return Err("api = \"v1\" needs `database`".into());
                }
                if self.username.is_some() != self.password.is_some() {
                    return Err("username and password go together".into());
                }
                if self.org.is_some() || self.bucket.is_some() || self.token.is_some() {
                    return Err("org, bucket and token belong to api = \"v2\"".into());
                }
            }
            ApiVersion::V2 => {
                if self.org.as_deref().is_none_or(str::is_empty) || self.bucket.as_deref().is_none_or(str::is_empty) {
                    return Err("api = \"v2\" needs `org` and `bucket`".into());
                }
                if self.database.is_some() || self.rp.is_some() || self.username.is_some() || self.create_database {
                    return Err("database, rp, username/password and create_database belong to api = \"v1\"".into());
                }
            }
        }
        self.retry.check()
    }
}
