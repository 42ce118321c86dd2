//! What tsrelay takes from a verified client certificate: its subject, and
//! the common name that `[auth] client_certs` may map to a key name.

use x509_cert::der::Decode;

/// A verified client certificate (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject as RFC 4514 text, e.g. `CN=collector-b,O=ops`.
    pub subject: String,
    /// The subject's (first) common name.
    pub common_name: Option<String>,
}

impl ClientCert {
    /// Reads the subject of a DER certificate rustls has already verified; an
    /// unparsable one yields an empty subject (it then maps to no key).
    pub fn from_der(der: &[u8]) -> ClientCert {
        let Ok(cert) = x509_cert::Certificate::from_der(der) else {
            return ClientCert { subject: String::new(), common_name: None };
        };
        let subject = &cert.tbs_certificate.subject;
        let common_name = subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == x509_cert::der::oid::db::rfc4519::CN)
            .and_then(|atv| std::str::from_utf8(atv.value.value()).ok().map(str::to_string));
        ClientCert { subject: subject.to_string(), common_name }
    }
}
