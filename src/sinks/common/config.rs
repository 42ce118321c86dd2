//! `[sinks.<name>.request]`: how a network sink talks to its backend — the
//! settings every network sink shares (DESIGN §2), with their defaults in
//! [`defaults`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Request settings of a network sink:
///
/// ```toml
/// [sinks.prom.request]
/// timeout = "30s"
/// concurrency = "adaptive"      # or a fixed number of requests in flight
/// max_concurrency = 8
/// tenant = "team-a"             # X-Scope-OrgID
/// headers = { "X-Env" = "prod" }
/// auth = { type = "bearer", token = "..." }
/// tls = { ca_file = "ca.pem" }
/// retry = { initial = "100ms", max = "30s", multiplier = 2.0, max_retry_duration = "10m", max_retry_after = "60s" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Longest one attempt may take (connect, send, answer); then it counts
    /// as failed and is retried.
    #[serde(default = "defaults::timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests in flight at once: a number, or `"adaptive"` (AIMD between 1
    /// and `max_concurrency`, backing off on rising latency and retryable answers).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Upper bound of `"adaptive"` concurrency; ignored with a fixed number.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Retry and backoff.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Credentials sent with every request.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Tenant of a multi-tenant backend (Cortex, Mimir, Loki…), sent as `X-Scope-OrgID`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Extra headers. They can never replace a header the protocol or the
    /// settings above define (such a config is refused at start-up).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTPS settings (rustls; the Mozilla roots are always trusted).
    #[serde(default)]
    pub tls: TlsConfig,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            timeout: defaults::timeout(),
            concurrency: Concurrency::default(),
            max_concurrency: defaults::max_concurrency(),
            retry: RetryConfig::default(),
            auth: None,
            tenant: None,
            headers: BTreeMap::new(),
            tls: TlsConfig::default(),
        }
    }
}

/// Header names the shared settings own; extra headers may not use them.
pub const TENANT_HEADER: &str = "x-scope-orgid";
/// Set by the HTTP layer itself for every network sink.
const RESERVED_HEADERS: [&str; 6] = ["content-length", "host", "transfer-encoding", "connection", "te", "user-agent"];

impl RequestConfig {
    /// How many requests may be in flight at most, whatever the mode: the
    /// number of request lanes the sink worker runs.
    pub fn max_in_flight(&self) -> usize {
        match self.concurrency {
            Concurrency::Fixed(n) => n,
            Concurrency::Adaptive => self.max_concurrency,
        }
    }

    /// Checks values and that no extra header collides with `protocol_headers`
    /// (lower-case names the sink sets itself) or with the shared ones.
    pub fn check(&self, protocol_headers: &[&str]) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("request.timeout must be greater than 0".into());
        }
        match self.concurrency {
            Concurrency::Fixed(0) => return Err("request.concurrency must be at least 1 (or \"adaptive\")".into()),
            Concurrency::Adaptive if self.max_concurrency == 0 => {
                return Err("request.max_concurrency must be at least 1".into());
            }
            _ => {}
        }
        if self.max_in_flight() > defaults::MAX_LANES {
            return Err(format!(
                "request concurrency {} is above the supported maximum of {}",
                self.max_in_flight(),
                defaults::MAX_LANES
            ));
        }
        self.retry.check("request.retry")?;
        if let Some(tenant) = &self.tenant {
            reqwest::header::HeaderValue::from_str(tenant)
                .map_err(|_| format!("request.tenant {tenant:?} is not a valid header value"))?;
        }
        for (name, value) in &self.headers {
            let parsed = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("request.headers: {name:?} is not a valid header name"))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("request.headers.{name}: {value:?} is not a valid header value"))?;
            let lower = parsed.as_str();
            let owned_by_settings =
                (lower == TENANT_HEADER && self.tenant.is_some()) || (lower == "authorization" && self.auth.is_some());
            if protocol_headers.contains(&lower) || RESERVED_HEADERS.contains(&lower) || owned_by_settings {
                return Err(format!(
                    "request.headers.{name}: this header is set by the sink itself and cannot be overridden"
                ));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err("request.tls: cert_file and key_file go together (client certificate)".into());
        }
        Ok(())
    }
}

/// `concurrency = 4` or `concurrency = "adaptive"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "ConcurrencyRepr")]
pub enum Concurrency {
    Fixed(usize),
    #[default]
    Adaptive,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ConcurrencyRepr {
    Number(usize),
    Word(String),
}

impl TryFrom<ConcurrencyRepr> for Concurrency {
    type Error = String;

    fn try_from(r: ConcurrencyRepr) -> Result<Self, String> {
        match r {
            ConcurrencyRepr::Number(n) => Ok(Concurrency::Fixed(n)),
            ConcurrencyRepr::Word(w) if w == "adaptive" => Ok(Concurrency::Adaptive),
            // Environment overrides arrive as strings.
            ConcurrencyRepr::Word(w) => w
                .parse()
                .map(Concurrency::Fixed)
                .map_err(|_| format!("concurrency must be a number or \"adaptive\", not {w:?}")),
        }
    }
}

/// Exponential backoff with full jitter (DESIGN §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Backoff ceiling of the first retry; each wait is uniformly random below its ceiling.
    #[serde(default = "defaults::retry_initial", with = "humantime_serde")]
    pub initial: Duration,
    /// Largest backoff ceiling.
    #[serde(default = "defaults::retry_max", with = "humantime_serde")]
    pub max: Duration,
    /// Growth of the ceiling from one retry to the next.
    #[serde(default = "defaults::retry_multiplier")]
    pub multiplier: f64,
    /// How long one request may be retried before its samples are dropped as
    /// `retry_exhausted`. Applies to memory queues only: with a disk queue a
    /// sink retries until it succeeds, the queue holds the data.
    #[serde(default = "defaults::max_retry_duration", with = "humantime_serde")]
    pub max_retry_duration: Duration,
    /// Longest wait a backend may ask for with `Retry-After` (longer asks are cut to this).
    #[serde(default = "defaults::max_retry_after", with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: defaults::retry_initial(),
            max: defaults::retry_max(),
            multiplier: defaults::retry_multiplier(),
            max_retry_duration: defaults::max_retry_duration(),
            max_retry_after: defaults::max_retry_after(),
        }
    }
}

impl RetryConfig {
    /// Checks values; `key` is where the settings sit in the sink's config
    /// (`request.retry`, or `retry` for a sink that is not HTTP).
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err(format!("{key}.initial must be greater than 0"));
        }
        if self.max < self.initial {
            return Err(format!("{key}.max ({:?}) must not be below {key}.initial ({:?})", self.max, self.initial));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!("{key}.multiplier must be at least 1.0, not {}", self.multiplier));
        }
        Ok(())
    }
}

/// `auth = { type = "basic", username = "u", password = "p" }` or
/// `auth = { type = "bearer", token = "t" }`. Secrets are best given through
/// the environment (`TSRELAY_SINKS__<NAME>__REQUEST__AUTH__TOKEN`).
#[derive(Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    Basic { username: String, password: String },
    Bearer { token: String },
}

// Never print secrets in logs or `validate` output.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthConfig::Basic { username, .. } => write!(f, "Basic {{ username: {username:?}, password: <redacted> }}"),
            AuthConfig::Bearer { .. } => f.write_str("Bearer { token: <redacted> }"),
        }
    }
}

/// HTTPS settings; paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) trusted besides the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for mutual TLS; needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests against self-signed backends only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Every default of the request settings, in one place.
pub mod defaults {
    use std::time::Duration;

    /// More lanes than this buys nothing and splits batches too thin.
    pub const MAX_LANES: usize = 256;

    pub fn timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub fn max_concurrency() -> usize {
        8
    }
    pub fn retry_initial() -> Duration {
        Duration::from_millis(100)
    }
    pub fn retry_max() -> Duration {
        Duration::from_secs(30)
    }
    pub fn retry_multiplier() -> f64 {
        2.0
    }
    pub fn max_retry_duration() -> Duration {
        Duration::from_secs(600)
    }
    pub fn max_retry_after() -> Duration {
        Duration::from_secs(60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RequestConfig, String> {
        use figment::providers::Format;
        figment::Figment::from(figment::providers::Toml::string(toml_text)).extract().map_err(|e| e.to_string())
    }

    #[test]
    fn concurrency_is_a_number_or_adaptive() {
        assert_eq!(parse("concurrency = 4").unwrap().concurrency, Concurrency::Fixed(4));
        assert_eq!(parse("concurrency = \"adaptive\"").unwrap().concurrency, Concurrency::Adaptive);
        assert_eq!(parse("concurrency = \"3\"").unwrap().concurrency, Concurrency::Fixed(3));
        assert!(parse("concurrency = \"fast\"").is_err());
        assert_eq!(parse("").unwrap().max_in_flight(), defaults::max_concurrency());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("timout = \"1s\"").is_err());
        assert!(parse("retry = { inital = \"1s\" }").is_err());
    }

    #[test]
    fn extra_headers_cannot_override_protocol_or_shared_ones() {
        let c = parse("headers = { \"Content-Type\" = \"text/plain\" }").unwrap();
        assert!(c.check(&["content-type"]).unwrap_err().contains("cannot be overridden"));
        let c = parse("tenant = \"a\"\nheaders = { \"X-Scope-OrgID\" = \"b\" }").unwrap();
        assert!(c.check(&[]).is_err());
        let c = parse("headers = { \"X-Scope-OrgID\" = \"b\", \"X-Env\" = \"prod\" }").unwrap();
        assert!(c.check(&["content-type"]).is_ok());
        let c = parse("auth = { type = \"bearer\", token = \"t\" }\nheaders = { Authorization = \"x\" }").unwrap();
        assert!(c.check(&[]).is_err());
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = parse("auth = { type = \"basic\", username = \"u\", password = \"hunter2\" }").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn retry_values_are_checked() {
        assert!(parse("retry = { multiplier = 0.5 }").unwrap().check(&[]).is_err());
        assert!(parse("retry = { initial = \"2s\", max = \"1s\" }").unwrap().check(&[]).is_err());
        assert!(parse("concurrency = 0").unwrap().check(&[]).is_err());
    }
}
