//! Docker registry token authentication (spec §7): bearer JWS tokens signed ES256 (raw
//! r‖s) or RS256 by a key whose certificate chains (`x5c`) to, or whose libtrust key ID
//! (`kid`) names, a certificate of `rootcertbundle`; issuer, audience (service),
//! `exp`/`nbf` with 60 s leeway; and the `access` claim checked against what each route
//! needs. Failures answer 401 with Go's challenge header and error body.

use std::path::Path;

use axum::http::{HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use notary_core::{KeyType, PublicKey, SigMethod};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::AuthOptions;
use crate::error::{ApiError, Code};

/// One access item a route needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// `repository` or `registry`.
    pub kind: &'static str,
    /// GUN or `catalog`.
    pub name: String,
    /// `pull`, `push` or `*`.
    pub action: &'static str,
}

impl Access {
    /// `repository:<gun>:<action>`.
    pub fn repo(gun: &str, action: &'static str) -> Self {
        Access {
            kind: "repository",
            name: gun.to_owned(),
            action,
        }
    }
    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Access {
            kind: "registry",
            name: "catalog".into(),
            action: "*",
        }
    }
}

/// Errors loading the token configuration.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A required option is empty.
    #[error("auth.options.{0} is required for token auth")]
    Missing(&'static str),
    /// The bundle cannot be read or holds no certificate.
    #[error("auth.options.rootcertbundle: {0}")]
    Bundle(String),
}

struct Root {
    der: Vec<u8>,
    spki: Vec<u8>,
    kid: String,
}

/// The token verifier.
pub struct TokenAuth {
    realm: String,
    service: String,
    issuer: String,
    roots: Vec<Root>,
}

#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: String,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    access: Vec<ResourceActions>,
}

#[derive(Deserialize)]
struct ResourceActions {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    actions: Vec<String>,
}

/// libtrust's key ID: base32 of the first 240 bits of SHA-256(SPKI), in 12 groups of 4.
pub fn libtrust_kid(spki: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = notary_core::crypto::sha256(spki);
    let bytes = &digest[..30];
    let mut out = String::with_capacity(60);
    let mut bits = 0u32;
    let mut acc = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    let chars: Vec<char> = out.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

enum Failure {
    Missing,
    Invalid(String),
    Insufficient,
}

const LEEWAY: i64 = 60;

impl TokenAuth {
    /// Loads the options and the certificate bundle.
    pub fn load(opts: &AuthOptions) -> Result<Self, AuthConfigError> {
        for (name, v) in [
            ("realm", &opts.realm),
            ("service", &opts.service),
            ("issuer", &opts.issuer),
        ] {
            if v.is_empty() {
                return Err(AuthConfigError::Missing(name));
            }
        }
        let path = opts
            .rootcertbundle
            .as_deref()
            .ok_or(AuthConfigError::Missing("rootcertbundle"))?;
        Self::from_bundle(&opts.realm, &opts.service, &opts.issuer, path)
    }

    fn from_bundle(
        realm: &str,
        service: &str,
        issuer: &str,
        bundle: &Path,
    ) -> Result<Self, AuthConfigError> {
        let pem = std::fs::read(bundle)
            .map_err(|e| AuthConfigError::Bundle(format!("{}: {e}", bundle.display())))?;
        let ders = notary_core::x509::parse_pem_bundle(&pem)
            .map_err(|e| AuthConfigError::Bundle(e.to_string()))?;
        let mut roots = Vec::new();
        for der in ders {
            let spki = notary_core::x509::spki_der(&der)
                .map_err(|e| AuthConfigError::Bundle(e.to_string()))?;
            roots.push(Root {
                kid: libtrust_kid(&spki),
                spki,
                der,
            });
        }
        Ok(TokenAuth {
            realm: realm.to_owned(),
            service: service.to_owned(),
            issuer: issuer.to_owned(),
            roots,
        })
    }

    /// Checks the `Authorization` header against the access a route needs.
    pub fn check(
        &self,
        authorization: Option<&HeaderValue>,
        required: &[Access],
        now_unix: i64,
    ) -> Result<(), ApiError> {
        match self.verify(authorization, required, now_unix) {
            Ok(()) => Ok(()),
            Err(f) => Err(self.challenge(required, f)),
        }
    }

    fn verify(
        &self,
        authorization: Option<&HeaderValue>,
        required: &[Access],
        now: i64,
    ) -> Result<(), Failure> {
        let value = authorization
            .and_then(|v| v.to_str().ok())
            .ok_or(Failure::Missing)?;
        let (scheme, token) = value.split_once(' ').ok_or(Failure::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Failure::Missing);
        }
        let claims = self
            .verify_token(token.trim(), now)
            .map_err(Failure::Invalid)?;
        let granted = |a: &Access| {
            claims.access.iter().any(|r| {
                r.kind == a.kind
                    && r.name == a.name
                    && r.actions.iter().any(|x| x == a.action || x == "*")
            })
        };
        if required.iter().all(granted) {
            Ok(())
        } else {
            Err(Failure::Insufficient)
        }
    }

    fn verify_token(&self, token: &str, now: i64) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a compact JWS".into());
        };
        let decode = |x: &str| {
            URL_SAFE_NO_PAD
                .decode(x.trim_end_matches('='))
                .map_err(|e| format!("bad base64url: {e}"))
        };
        let header: JoseHeader =
            serde_json::from_slice(&decode(h)?).map_err(|e| format!("bad JOSE header: {e}"))?;
        let sig = decode(s)?;
        let spki = self.signing_key(&header)?;
        let (kt, method) = match header.alg.as_str() {
            "ES256" => (KeyType::Ecdsa, SigMethod::Ecdsa),
            "RS256" => (KeyType::Rsa, SigMethod::RsaPkcs1v15),
            other => return Err(format!("unsupported alg {other}")),
        };
        let signing_input = format!("{h}.{p}");
        PublicKey::new(kt, spki)
            .verify(&method, signing_input.as_bytes(), &sig)
            .map_err(|e| format!("token signature: {e}"))?;
        let claims: Claims =
            serde_json::from_slice(&decode(p)?).map_err(|e| format!("bad claims: {e}"))?;
        if claims.iss != self.issuer {
            return Err("token issuer does not match".into());
        }
        let aud_ok = match &claims.aud {
            Value::String(a) => *a == self.service,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(self.service.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err("token audience does not match".into());
        }
        match claims.exp {
            Some(exp) if now <= exp + LEEWAY => {}
            _ => return Err("token expired or without exp".into()),
        }
        if claims.nbf.is_some_and(|nbf| now + LEEWAY < nbf) {
            return Err("token not yet valid".into());
        }
        Ok(claims)
    }

    /// The SPKI that must have signed the token: the `x5c` leaf chaining to the bundle,
    /// or the bundle certificate named by `kid`.
    fn signing_key(&self, header: &JoseHeader) -> Result<Vec<u8>, String> {
        if !header.x5c.is_empty() {
            let chain: Vec<Vec<u8>> = header
                .x5c
                .iter()
                .map(|c| STANDARD.decode(c).map_err(|e| format!("bad x5c: {e}")))
                .collect::<Result<_, _>>()?;
            let certs: Vec<X509Certificate<'_>> = chain
                .iter()
                .map(|d| {
                    X509Certificate::from_der(d)
                        .map(|(_, c)| c)
                        .map_err(|e| format!("bad x5c certificate: {e}"))
                })
                .collect::<Result<_, _>>()?;
            let roots: Vec<(&Root, X509Certificate<'_>)> = self
                .roots
                .iter()
                .filter_map(|r| X509Certificate::from_der(&r.der).ok().map(|(_, c)| (r, c)))
                .collect();
            let mut current = 0usize;
            for _ in 0..=certs.len() {
                let cert = &certs[current];
                if roots.iter().any(|(r, _)| r.der == chain[current]) {
                    return Ok(certs[0].public_key().raw.to_vec());
                }
                if roots.iter().any(|(_, rc)| {
                    rc.subject().as_raw() == cert.issuer().as_raw()
                        && cert.verify_signature(Some(rc.public_key())).is_ok()
                }) {
                    return Ok(certs[0].public_key().raw.to_vec());
                }
                let next = (0..certs.len()).find(|&i| {
                    i != current
                        && certs[i].subject().as_raw() == cert.issuer().as_raw()
                        && cert.verify_signature(Some(certs[i].public_key())).is_ok()
                });
                match next {
                    Some(n) => current = n,
                    None => break,
                }
            }
            return Err("x5c chain does not lead to rootcertbundle".into());
        }
        if let Some(kid) = &header.kid {
            if let Some(r) = self.roots.iter().find(|r| &r.kid == kid) {
                return Ok(r.spki.clone());
            }
            return Err("kid names no key of rootcertbundle".into());
        }
        Err("token names no signing key (x5c or kid)".into())
    }

    fn challenge(&self, required: &[Access], failure: Failure) -> ApiError {
        let scope = match required.first() {
            Some(first) => {
                let actions: Vec<&str> = required.iter().map(|a| a.action).collect();
                format!("{}:{}:{}", first.kind, first.name, actions.join(","))
            }
            None => String::new(),
        };
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\",scope=\"{scope}\"",
            self.realm, self.service
        );
        match &failure {
            Failure::Missing => {}
            Failure::Invalid(reason) => {
                tracing::info!(reason = %reason, "invalid token");
                value.push_str(",error=\"invalid_token\"");
            }
            Failure::Insufficient => value.push_str(",error=\"insufficient_scope\""),
        }
        // Go's struct order: Type, Class, Name, Action.
        let items: Vec<String> = required
            .iter()
            .map(|a| {
                format!(
                    "{{\"Type\":{},\"Class\":\"\",\"Name\":{},\"Action\":{}}}",
                    Value::from(a.kind),
                    Value::from(a.name.as_str()),
                    Value::from(a.action)
                )
            })
            .collect();
        let mut err = ApiError::new(Code::Unauthorized, None);
        err.detail_raw = Some(format!("[{}]", items.join(",")));
        if let Ok(v) = HeaderValue::from_str(&value) {
            err.headers.push((header::WWW_AUTHENTICATE, v));
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtrust_kid_shape() {
        let kid = libtrust_kid(b"anything");
        assert_eq!(kid.len(), 59);
        assert_eq!(kid.split(':').count(), 12);
    }
}
