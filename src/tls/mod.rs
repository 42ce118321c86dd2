//! TLS for every listener: rustls (ring), TLS 1.2 and 1.3 only, ALPN `h2` and
//! `http/1.1`, optional mutual TLS (`client_ca_file`: a client certificate
//! signed by it is required), and certificates re-read when their files change
//! (cert-manager and Kubernetes Secrets rotate them in place).

mod client_cert;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tokio::net::TcpStream;

pub use client_cert::ClientCert;

/// `tls = { cert_file, key_file, client_ca_file }` on a listener; paths are
/// relative to the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the server certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CA(s) client certificates must chain to. Set, it makes the
    /// listener mutual TLS: a client without a valid certificate is refused
    /// during the handshake.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The same config with its paths resolved by `resolve` (against the config file).
    pub fn resolved(&self, resolve: impl Fn(&Path) -> PathBuf) -> TlsConfig {
        TlsConfig {
            cert_file: resolve(&self.cert_file),
            key_file: resolve(&self.key_file),
            client_ca_file: self.client_ca_file.as_deref().map(&resolve),
        }
    }
}

/// How often certificate files are checked for changes.
pub const RELOAD_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{what} {path}: {message}")]
    Pem { what: &'static str, path: PathBuf, message: String },
    #[error("TLS setup with {cert} and {key}: {source}")]
    Rustls { cert: PathBuf, key: PathBuf, source: rustls::Error },
    #[error("client CA {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
}

/// A listener's TLS server side; hands out the current configuration to
/// each handshake and swaps in a new one when the files change.
pub struct TlsAcceptor {
    listener: String,
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// Modification stamps of the files the current config was built from.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor").field("listener", &self.listener).field("files", &self.files).finish()
    }
}

impl TlsAcceptor {
    /// Loads the files of `config` (paths already resolved) for `listener`.
    pub fn new(listener: &str, config: TlsConfig) -> Result<Arc<TlsAcceptor>, TlsError> {
        let stamps = stamps(&config);
        let server = build(&config)?;
        Ok(Arc::new(TlsAcceptor {
            listener: listener.to_string(),
            files: config,
            current: RwLock::new(Arc::new(server)),
            stamps: Mutex::new(stamps),
        }))
    }

    pub fn is_mutual(&self) -> bool {
        self.files.client_ca_file.is_some()
    }

    /// The TLS handshake; with mutual TLS also the verified client certificate.
    pub async fn accept(
        &self,
        stream: TcpStream,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, Option<Arc<ClientCert>>)> {
        let config = self.current.read().clone();
        let tls = tokio_rustls::TlsAcceptor::from(config).accept(stream).await?;
        let client = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::new(ClientCert::from_der(leaf.as_ref())));
        Ok((tls, client))
    }

    /// Rebuilds the configuration when a file changed since the last load.
    /// A broken new file keeps the old configuration (and is reported).
    pub fn reload_if_changed(&self) {
        let now = stamps(&self.files);
        if *self.stamps.lock() == now {
            return;
        }
        self.reload_with(now);
    }

    /// Rebuilds the configuration from the files now (SIGHUP).
    pub fn reload(&self) {
        self.reload_with(stamps(&self.files));
    }

    fn reload_with(&self, now: Vec<Option<(SystemTime, u64)>>) {
        match build(&self.files) {
            Ok(server) => {
                *self.current.write() = Arc::new(server);
                *self.stamps.lock() = now;
                crate::telemetry::tls_reloads(&self.listener, true).increment(1);
                tracing::info!(listener = %self.listener, cert = %self.files.cert_file.display(), "TLS certificates reloaded");
            }
            Err(e) => {
                // Remember the stamps: one report per change, not one a second.
                *self.stamps.lock() = now;
                crate::telemetry::tls_reloads(&self.listener, false).increment(1);
                tracing::error!(listener = %self.listener, error = %e, "TLS reload failed; keeping the previous certificates");
            }
        }
    }
}

fn stamps(c: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    [Some(&c.cert_file), Some(&c.key_file), c.client_ca_file.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    let certs = certs.map_err(|e| TlsError::Pem { what, path: path.to_path_buf(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, path: path.to_path_buf(), message: "no CERTIFICATE block".into() });
    }
    Ok(certs)
}

/// The rustls server configuration for `c`: TLS 1.2 and 1.3, ring.
fn build(c: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let chain = certificates("cert_file", &c.cert_file)?;
    let key_pem = read("key_file", &c.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        what: "key_file",
        path: c.key_file.clone(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rustls_err = |source| TlsError::Rustls { cert: c.cert_file.clone(), key: c.key_file.clone(), source };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rustls_err)?;
    let builder = match &c.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("client_ca_file", ca)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa { path: ca.clone(), message: e.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa { path: ca.clone(), message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(rustls_err)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(server)
}

/// Re-reads every acceptor's files when they change, until `stop`.
pub fn watch(
    acceptors: Vec<Arc<TlsAcceptor>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if acceptors.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(RELOAD_CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            for a in &acceptors {
                a.reload_if_changed();
            }
        }
    })
}
