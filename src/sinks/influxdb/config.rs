//! `[sinks.<name>] type = "influxdb"`: every key, documented, defaults in [`defaults`].

use std::time::Duration;

use serde::Deserialize;

use super::service::protocol_header_names;
use crate::queue::QueueConfig;
use crate::sinks::BatchConfig;
use crate::sinks::common::RequestConfig;
use crate::sinks::common::http::parse_url;

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

/// ```toml
/// [sinks.influx]
/// type = "influxdb"
/// url = "http://127.0.0.1:8086"
/// database = "metrics"
/// [sinks.influx.request]
/// concurrency = "adaptive"
/// retry = { initial = "100ms", max = "30s", max_retry_duration = "10m" }
/// ```
#[derive(Clone, Deserialize)]
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
    /// Timeout, concurrency, retry, credentials (`auth` basic/bearer, instead
    /// of the InfluxDB-specific keys above), tenant, headers, TLS: the settings
    /// every network sink shares.
    #[serde(default)]
    pub request: RequestConfig,
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
    pub fn unhealthy_after() -> Duration {
        Duration::from_secs(60)
    }
}

impl InfluxdbSinkConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        parse_url(&self.url).map_err(|e| format!("url: {e}"))?;
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
        let own_credentials = self.username.is_some() || self.token.is_some();
        if own_credentials && self.request.auth.is_some() {
            return Err("request.auth and username/password or token exclude each other".into());
        }
        self.request.check(&protocol_header_names(own_credentials))
    }

    /// The InfluxDB-specific credentials as an `Authorization` value: v1 basic
    /// (unless sent as `u`/`p` query parameters), v2 `Token`.
    pub fn authorization(&self) -> Option<String> {
        match self.api {
            ApiVersion::V1 => match (&self.username, &self.password, self.auth) {
                (Some(u), Some(p), V1Auth::Basic) => Some(crate::sinks::common::http::basic_credentials(u, p)),
                _ => None,
            },
            ApiVersion::V2 => self.token.as_ref().map(|t| format!("Token {t}")),
        }
    }
}

// Never print secrets in logs or `validate` output.
impl std::fmt::Debug for InfluxdbSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("InfluxdbSinkConfig")
            .field("url", &self.url)
            .field("api", &self.api)
            .field("database", &self.database)
            .field("rp", &self.rp)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("auth", &self.auth)
            .field("create_database", &self.create_database)
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &redacted(&self.token))
            .field("gzip", &self.gzip)
            .field("field", &self.field)
            .field("request", &self.request)
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .field("unhealthy_after", &self.unhealthy_after)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<InfluxdbSinkConfig, String> {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml_text)).extract().map_err(|e| e.to_string())
    }

    #[test]
    fn shared_request_settings_and_checks() {
        let c = parse(
            "url = \"http://127.0.0.1:8086\"\ndatabase = \"m\"\n[request]\nconcurrency = 2\nretry = { initial = \"50ms\" }",
        )
        .unwrap();
        assert_eq!(c.request.max_in_flight(), 2);
        assert!(c.check().is_ok());
        // The old top-level keys moved under `request`.
        assert!(parse("url = \"http://h:1\"\ndatabase = \"m\"\ntimeout = \"1s\"").is_err());
        assert!(parse("url = \"http://h:1\"\ndatabase = \"m\"\nretry = { initial_backoff = \"1s\" }").is_err());
        let both = parse(
            "url = \"http://h:1\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\nrequest = { auth = { type = \"bearer\", token = \"x\" } }",
        )
        .unwrap();
        assert!(both.check().unwrap_err().contains("exclude"));
        let header = parse(
            "url = \"http://h:1\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"\nrequest = { headers = { Authorization = \"x\" } }",
        )
        .unwrap();
        assert!(header.check().is_err());
        assert!(!format!("{both:?}").contains("\"t\""));
    }

    #[test]
    fn credentials_become_the_authorization_header() {
        let v1 = parse("url = \"http://h:1\"\ndatabase = \"m\"\nusername = \"user\"\npassword = \"pass\"").unwrap();
        assert_eq!(v1.authorization().as_deref(), Some("Basic dXNlcjpwYXNz"));
        let query =
            parse("url = \"http://h:1\"\ndatabase = \"m\"\nusername = \"user\"\npassword = \"pass\"\nauth = \"query\"")
                .unwrap();
        assert_eq!(query.authorization(), None);
        let v2 = parse("url = \"http://h:1\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"t\"").unwrap();
        assert_eq!(v2.authorization().as_deref(), Some("Token t"));
    }
}
