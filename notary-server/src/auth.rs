//! Docker registry token authentication (spec §7): bearer JWS tokens signed ES256 (raw
//! r‖s) or RS256 by a key whose certificate chains (`x5c`) to, or whose libtrust key ID
//! (`kid`) names, a certificate of `rootcertbundle`; issuer, audience (service),
//! `exp`/`nbf` with 60 s leeway; and the `access` claim checked against what each route
//! needs. Failures answer 401 with Go's challenge header and error body.
//!
//! Every token costs bounded work before any signature is checked: the header is at most
//! [`MAX_AUTHORIZATION_LEN`] bytes, `x5c` holds at most [`MAX_X5C_CERTS`] certificates,
//! each decoded and parsed once, and chain building tries each certificate once with at
//! most [`MAX_CHAIN_SIGNATURE_CHECKS`] certificate signature checks.

use std::collections::VecDeque;
use std::path::Path;

use axum::http::{HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use notary_core::{KeyType, PublicKey, SigMethod};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

use crate::config::AuthOptions;
use crate::error::{ApiError, Code};

/// Longest `Authorization` header value accepted, in bytes. Go's tokens, `x5c` included,
/// are 1-2 KiB.
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
/// Most certificates accepted in `x5c`, leaf included.
pub const MAX_X5C_CERTS: usize = 10;
/// Most certificate signature checks spent on one `x5c` chain (Go's crypto/x509 limit,
/// `maxChainSignatureChecks`). With [`MAX_X5C_CERTS`] and each certificate tried once the
/// search stays well below it unless the bundle holds many roots of the same name.
pub const MAX_CHAIN_SIGNATURE_CHECKS: usize = 100;

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

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token")]
    Missing,
    /// A token was presented but is not acceptable.
    #[error("invalid token: {0}")]
    Invalid(#[from] TokenError),
    /// A valid token without the access the route needs.
    #[error("token lacks the required access")]
    Insufficient,
}

/// A certificate taking part in chain building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRef {
    /// `x5c[i]` (0 is the leaf).
    X5c(usize),
    /// The i-th certificate of `rootcertbundle`.
    Root(usize),
}

/// Why a certificate was refused as the issuer of the previous link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Outside its validity period now.
    NotValidNow,
    /// basicConstraints is missing (intermediates) or says CA:false.
    NotCa,
    /// Its keyUsage lacks keyCertSign.
    NoKeyCertSign,
    /// Its pathLenConstraint is smaller than the intermediates below it.
    PathLen,
    /// Its key does not verify the previous link's signature.
    BadSignature,
}

/// Why a presented token is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The `Authorization` header is over [`MAX_AUTHORIZATION_LEN`].
    #[error("authorization header of {len} bytes, at most {max} accepted")]
    TooLarge {
        /// Header length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three base64url parts.
    #[error("token is not a compact JWS")]
    NotCompact,
    /// A part is not base64url.
    #[error("bad base64url in the token {part}")]
    Base64 {
        /// `header`, `claims` or `signature`.
        part: &'static str,
    },
    /// The JOSE header is not the expected JSON.
    #[error("bad JOSE header: {0}")]
    Header(String),
    /// The claims are not the expected JSON.
    #[error("bad claims: {0}")]
    Claims(String),
    /// `alg` is not ES256 or RS256.
    #[error("unsupported alg {0}")]
    UnsupportedAlg(String),
    /// `x5c` is over [`MAX_X5C_CERTS`].
    #[error("x5c holds {count} certificates, at most {max} accepted")]
    TooManyCertificates {
        /// Entries in `x5c`.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An `x5c` entry is not a base64 DER certificate.
    #[error("x5c[{index}]: {reason}")]
    BadCertificate {
        /// Position in `x5c`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The leaf certificate is expired or not yet valid.
    #[error("x5c leaf certificate is not valid now")]
    LeafNotValidNow,
    /// No chain from the leaf to `rootcertbundle`; the issuers refused on the way.
    #[error("x5c chain does not lead to rootcertbundle (refused issuers: {rejected:?})")]
    NoChain {
        /// Each candidate issuer refused, with the reason.
        rejected: Vec<(CertRef, Rejection)>,
    },
    /// Chain building hit [`MAX_CHAIN_SIGNATURE_CHECKS`].
    #[error("x5c chain building needs over {max} signature checks")]
    ChainTooExpensive {
        /// The limit.
        max: usize,
    },
    /// `kid` names no bundle key.
    #[error("kid names no key of rootcertbundle")]
    UnknownKid,
    /// Neither `x5c` nor `kid`.
    #[error("token names no signing key (x5c or kid)")]
    NoSigningKey,
    /// The JWS signature does not verify.
    #[error("token signature: {0}")]
    BadSignature(String),
    /// `iss` is not the configured issuer.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// `aud` is not the configured service.
    #[error("token audience does not match")]
    WrongAudience,
    /// Past `exp` (with leeway) or no `exp`.
    #[error("token expired or without exp")]
    Expired,
    /// Before `nbf` (with leeway).
    #[error("token not yet valid")]
    NotYetValid,
}

/// Work spent on one token, for tests and diagnostics: the defences bound each count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyWork {
    /// `x5c` certificates decoded and parsed.
    pub certificates_parsed: usize,
    /// Certificate signature checks while building the chain (the token's own
    /// signature is not counted).
    pub signature_checks: usize,
    /// Certificates expanded while building the chain.
    pub path_steps: usize,
}

struct Root {
    der: Vec<u8>,
    spki: Vec<u8>,
    kid: String,
    subject: Vec<u8>,
    not_before: i64,
    not_after: i64,
    /// basicConstraints says CA:false (absent is accepted for roots, as Go does).
    not_ca: bool,
    /// keyUsage present without keyCertSign.
    no_cert_sign: bool,
    path_len: Option<u32>,
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

const LEEWAY: i64 = 60;

/// The CA properties chain building needs, read once per certificate.
struct CaProps {
    /// basicConstraints present (`Some(ca)`) or absent (`None`).
    ca: Option<bool>,
    path_len: Option<u32>,
    /// keyUsage present without keyCertSign.
    no_cert_sign: bool,
}

fn ca_props(cert: &X509Certificate<'_>) -> Result<CaProps, String> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| format!("basicConstraints: {e}"))?;
    let ku = cert.key_usage().map_err(|e| format!("keyUsage: {e}"))?;
    Ok(CaProps {
        ca: bc.as_ref().map(|b| b.value.ca),
        path_len: bc.and_then(|b| b.value.path_len_constraint),
        no_cert_sign: ku.is_some_and(|k| !k.value.key_cert_sign()),
    })
}

fn valid_at(cert: &X509Certificate<'_>, now: i64) -> bool {
    let v = cert.validity();
    v.not_before.timestamp() <= now && now <= v.not_after.timestamp()
}

/// One decoded `x5c` certificate.
struct Link<'a> {
    /// Position in `x5c`.
    index: usize,
    der: &'a [u8],
    cert: X509Certificate<'a>,
    props: CaProps,
}

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
        Self::from_pem(realm, service, issuer, &pem)
    }

    /// A verifier for `realm`, `service` and `issuer` trusting the certificates of a PEM
    /// bundle (the contents of `rootcertbundle`).
    pub fn from_pem(
        realm: &str,
        service: &str,
        issuer: &str,
        pem: &[u8],
    ) -> Result<Self, AuthConfigError> {
        let ders = notary_core::x509::parse_pem_bundle(pem)
            .map_err(|e| AuthConfigError::Bundle(e.to_string()))?;
        let mut roots = Vec::new();
        for der in ders {
            let spki = notary_core::x509::spki_der(&der)
                .map_err(|e| AuthConfigError::Bundle(e.to_string()))?;
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| AuthConfigError::Bundle(e.to_string()))?;
            let props = ca_props(&cert).map_err(AuthConfigError::Bundle)?;
            let validity = cert.validity();
            let root = Root {
                kid: libtrust_kid(&spki),
                subject: cert.subject().as_raw().to_vec(),
                not_before: validity.not_before.timestamp(),
                not_after: validity.not_after.timestamp(),
                not_ca: props.ca == Some(false),
                no_cert_sign: props.no_cert_sign,
                path_len: props.path_len,
                spki,
                der: der.clone(),
            };
            roots.push(root);
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
        let mut work = VerifyWork::default();
        self.authorize(authorization, required, now_unix, &mut work)
            .map_err(|f| self.challenge(required, &f))
    }

    /// [`TokenAuth::check`] with the reason of a refusal and the work spent in `work`.
    pub fn authorize(
        &self,
        authorization: Option<&HeaderValue>,
        required: &[Access],
        now_unix: i64,
        work: &mut VerifyWork,
    ) -> Result<(), AuthFailure> {
        let raw = authorization.ok_or(AuthFailure::Missing)?;
        // Bound all later work (base64, JSON, certificates) by the header size.
        if raw.len() > MAX_AUTHORIZATION_LEN {
            return Err(TokenError::TooLarge {
                len: raw.len(),
                max: MAX_AUTHORIZATION_LEN,
            }
            .into());
        }
        let value = raw.to_str().map_err(|_| AuthFailure::Missing)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthFailure::Missing);
        }
        let claims = self.verify_token(token.trim(), now_unix, work)?;
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
            Err(AuthFailure::Insufficient)
        }
    }

    fn verify_token(
        &self,
        token: &str,
        now: i64,
        work: &mut VerifyWork,
    ) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotCompact);
        };
        let decode = |x: &str, part: &'static str| {
            URL_SAFE_NO_PAD
                .decode(x.trim_end_matches('='))
                .map_err(|_| TokenError::Base64 { part })
        };
        let header: JoseHeader = serde_json::from_slice(&decode(h, "header")?)
            .map_err(|e| TokenError::Header(e.to_string()))?;
        let sig = decode(s, "signature")?;
        let (kt, method) = match header.alg.as_str() {
            "ES256" => (KeyType::Ecdsa, SigMethod::Ecdsa),
            "RS256" => (KeyType::Rsa, SigMethod::RsaPkcs1v15),
            other => return Err(TokenError::UnsupportedAlg(other.to_owned())),
        };
        let spki = self.signing_key(&header, now, work)?;
        let signing_input = format!("{h}.{p}");
        PublicKey::new(kt, spki)
            .verify(&method, signing_input.as_bytes(), &sig)
            .map_err(|e| TokenError::BadSignature(e.to_string()))?;
        let claims: Claims = serde_json::from_slice(&decode(p, "claims")?)
            .map_err(|e| TokenError::Claims(e.to_string()))?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        let aud_ok = match &claims.aud {
            Value::String(a) => *a == self.service,
            Value::Array(a) => a.iter().any(|x| x.as_str() == Some(self.service.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::WrongAudience);
        }
        match claims.exp {
            Some(exp) if now <= exp.saturating_add(LEEWAY) => {}
            _ => return Err(TokenError::Expired),
        }
        if claims
            .nbf
            .is_some_and(|nbf| now.saturating_add(LEEWAY) < nbf)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }

    /// The SPKI that must have signed the token: the `x5c` leaf chaining to the bundle,
    /// or the bundle certificate named by `kid` (docker/distribution's order).
    fn signing_key(
        &self,
        header: &JoseHeader,
        now: i64,
        work: &mut VerifyWork,
    ) -> Result<Vec<u8>, TokenError> {
        if !header.x5c.is_empty() {
            return self.verify_x5c(&header.x5c, now, work);
        }
        if let Some(kid) = &header.kid {
            if let Some(r) = self.roots.iter().find(|r| &r.kid == kid) {
                return Ok(r.spki.clone());
            }
            return Err(TokenError::UnknownKid);
        }
        Err(TokenError::NoSigningKey)
    }

    /// Verifies `x5c` as Go's `x509.Verify` with the bundle as roots and the rest of
    /// `x5c` as intermediates (any EKU), and returns the leaf's SPKI. Every link must be
    /// valid now; intermediates must be CAs with keyCertSign (if keyUsage is present)
    /// and respect pathLenConstraint; bundle certificates must not say CA:false or lack
    /// keyCertSign when they issue a link. A leaf that is itself a bundle certificate is
    /// its own chain (Go: `Roots.contains(leaf)`).
    fn verify_x5c(
        &self,
        x5c: &[String],
        now: i64,
        work: &mut VerifyWork,
    ) -> Result<Vec<u8>, TokenError> {
        if x5c.len() > MAX_X5C_CERTS {
            return Err(TokenError::TooManyCertificates {
                count: x5c.len(),
                max: MAX_X5C_CERTS,
            });
        }
        let ders: Vec<Vec<u8>> = x5c
            .iter()
            .enumerate()
            .map(|(index, c)| {
                STANDARD.decode(c).map_err(|e| TokenError::BadCertificate {
                    index,
                    reason: format!("bad base64: {e}"),
                })
            })
            .collect::<Result<_, _>>()?;
        let mut links: Vec<Link<'_>> = Vec::with_capacity(ders.len());
        for (index, der) in ders.iter().enumerate() {
            // The same certificate twice is one node of the search.
            if links.iter().any(|l| l.der == der.as_slice()) {
                continue;
            }
            work.certificates_parsed += 1;
            let bad = |reason: String| TokenError::BadCertificate { index, reason };
            let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
            if !rest.is_empty() {
                return Err(bad("trailing data after the certificate".into()));
            }
            let props = ca_props(&cert).map_err(bad)?;
            links.push(Link {
                index,
                der,
                cert,
                props,
            });
        }
        let Some(leaf) = links.first() else {
            return Err(TokenError::NoSigningKey);
        };
        if !valid_at(&leaf.cert, now) {
            return Err(TokenError::LeafNotValidNow);
        }
        let leaf_spki = leaf.cert.public_key().raw.to_vec();
        if self.roots.iter().any(|r| r.der == leaf.der) {
            return Ok(leaf_spki);
        }
        self.build_chain(&links, now, work)?;
        Ok(leaf_spki)
    }

    /// Breadth-first search from the leaf (`links[0]`) towards a bundle certificate.
    /// Each certificate joins the search at most once, at its shortest distance from the
    /// leaf (the most lenient for pathLenConstraint), so cycles and duplicates cost
    /// nothing and each (certificate, issuer) signature is checked at most once.
    fn build_chain(
        &self,
        links: &[Link<'_>],
        now: i64,
        work: &mut VerifyWork,
    ) -> Result<(), TokenError> {
        let mut rejected: Vec<(CertRef, Rejection)> = Vec::new();
        let mut seen = vec![false; links.len()];
        seen[0] = true;
        // (link, intermediates from the leaf up to and including it)
        let mut queue: VecDeque<(usize, u32)> = VecDeque::from([(0, 0)]);
        let spend = |work: &mut VerifyWork| {
            if work.signature_checks >= MAX_CHAIN_SIGNATURE_CHECKS {
                return Err(TokenError::ChainTooExpensive {
                    max: MAX_CHAIN_SIGNATURE_CHECKS,
                });
            }
            work.signature_checks += 1;
            Ok(())
        };
        while let Some((at, level)) = queue.pop_front() {
            work.path_steps += 1;
            let Some(child) = links.get(at) else { break };
            let issuer_name = child.cert.issuer().as_raw();
            for (ri, root) in self.roots.iter().enumerate() {
                if root.subject != issuer_name {
                    continue;
                }
                let why = if now < root.not_before || now > root.not_after {
                    Some(Rejection::NotValidNow)
                } else if root.not_ca {
                    Some(Rejection::NotCa)
                } else if root.no_cert_sign {
                    Some(Rejection::NoKeyCertSign)
                } else if root.path_len.is_some_and(|l| level > l) {
                    Some(Rejection::PathLen)
                } else {
                    None
                };
                if let Some(why) = why {
                    rejected.push((CertRef::Root(ri), why));
                    continue;
                }
                let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&root.spki) else {
                    continue;
                };
                spend(work)?;
                if child.cert.verify_signature(Some(&spki)).is_ok() {
                    return Ok(());
                }
                rejected.push((CertRef::Root(ri), Rejection::BadSignature));
            }
            for (pi, parent) in links.iter().enumerate() {
                if seen[pi] || parent.cert.subject().as_raw() != issuer_name {
                    continue;
                }
                let props = &parent.props;
                // Go: intermediates need basicConstraints CA:true.
                let why = if !valid_at(&parent.cert, now) {
                    Some(Rejection::NotValidNow)
                } else if props.ca != Some(true) {
                    Some(Rejection::NotCa)
                } else if props.no_cert_sign {
                    Some(Rejection::NoKeyCertSign)
                } else if props.path_len.is_some_and(|l| level > l) {
                    Some(Rejection::PathLen)
                } else {
                    None
                };
                if let Some(why) = why {
                    // Not depending on the child, and the breadth-first order only
                    // raises `level`: this certificate can never be used.
                    seen[pi] = true;
                    rejected.push((CertRef::X5c(parent.index), why));
                    continue;
                }
                spend(work)?;
                if child
                    .cert
                    .verify_signature(Some(parent.cert.public_key()))
                    .is_ok()
                {
                    seen[pi] = true;
                    queue.push_back((pi, level.saturating_add(1)));
                } else {
                    rejected.push((CertRef::X5c(parent.index), Rejection::BadSignature));
                }
            }
        }
        Err(TokenError::NoChain { rejected })
    }

    fn challenge(&self, required: &[Access], failure: &AuthFailure) -> ApiError {
        let error = match failure {
            AuthFailure::Missing => None,
            AuthFailure::Invalid(reason) => {
                tracing::info!(reason = %reason, "invalid token");
                Some("invalid_token")
            }
            AuthFailure::Insufficient => Some("insufficient_scope"),
        };
        unauthorized(&self.realm, &self.service, required, error)
    }
}

/// The 401 of a Notary route as Go answers it: a `Bearer` challenge naming `realm`,
/// `service`, the scope `required` asks for and `error` (`invalid_token`,
/// `insufficient_scope`), with the access the route needs as the error's detail. For
/// the Notary API's own token checks and for code that mounts it with another
/// authoriser.
pub fn unauthorized(
    realm: &str,
    service: &str,
    required: &[Access],
    error: Option<&str>,
) -> ApiError {
    let scope = match required.first() {
        Some(first) => {
            let actions: Vec<&str> = required.iter().map(|a| a.action).collect();
            format!("{}:{}:{}", first.kind, first.name, actions.join(","))
        }
        None => String::new(),
    };
    let mut value = format!("Bearer realm=\"{realm}\",service=\"{service}\",scope=\"{scope}\"");
    if let Some(e) = error {
        value.push_str(&format!(",error=\"{e}\""));
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
    // A name that cannot be a header value (control characters) gets no challenge.
    if let Ok(v) = HeaderValue::from_str(&value) {
        err.headers.push((header::WWW_AUTHENTICATE, v));
    }
    err
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
