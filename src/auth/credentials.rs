//! Where each ecosystem's clients put their key: `Authorization: Bearer K`
//! (Prometheus remote-write, OTLP, gRPC metadata), `Authorization: Token K`
//! (InfluxDB 2.x), HTTP basic auth and the `u`/`p` query parameters
//! (InfluxDB 1.x: the password is the key).

use axum::http::{HeaderMap, header};
use base64::Engine;

/// The key a request presents, if any; `Err` names what is malformed.
pub fn presented_key(headers: &HeaderMap, query: Option<&str>) -> Result<Option<Vec<u8>>, &'static str> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| "the Authorization header is not ASCII")?.trim();
        let (scheme, rest) = value.split_once(' ').ok_or("the Authorization header has no scheme")?;
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" if !rest.is_empty() => Ok(Some(rest.as_bytes().to_vec())),
            "basic" => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| "the basic credentials are not base64")?;
                let (user, password) = match decoded.iter().position(|&b| b == b':') {
                    Some(i) => (&decoded[..i], &decoded[i + 1..]),
                    None => return Err("the basic credentials have no ':'"),
                };
                // The password is the key; a client that can only set a user name may put it there.
                Ok(Some(if password.is_empty() { user.to_vec() } else { password.to_vec() }))
            }
            _ => Err("use Authorization: Bearer <key>, Token <key> or Basic"),
        };
    }
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if k == "p" && !v.is_empty() {
                return Ok(Some(v.as_bytes().to_vec()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn every_client_style() {
        assert_eq!(presented_key(&with("Bearer abc"), None), Ok(Some(b"abc".to_vec())));
        assert_eq!(presented_key(&with("Token abc"), None), Ok(Some(b"abc".to_vec())));
        // "user:abc"
        assert_eq!(presented_key(&with("Basic dXNlcjphYmM="), None), Ok(Some(b"abc".to_vec())));
        assert_eq!(presented_key(&HeaderMap::new(), Some("db=x&u=user&p=a%2Bb")), Ok(Some(b"a+b".to_vec())));
        assert_eq!(presented_key(&HeaderMap::new(), Some("db=x")), Ok(None));
        assert!(presented_key(&with("Digest x"), None).is_err());
        assert!(presented_key(&with("Basic !!!"), None).is_err());
    }
}
