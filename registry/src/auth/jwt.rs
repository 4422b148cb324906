//! The registry's own bearer tokens (spec 3.4): ES256 compact JWS with `x5c` (the
//! token-signing certificate) and a libtrust `kid`, so distribution ≤ 2.8, Notary 0.7
//! and newer verifiers all accept them with that certificate as `rootcertbundle`.
//! Signing and verification use ring; the clock is an argument.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `Authorization` header accepted, in bytes (our tokens are 1-2 KiB).
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;
/// Leeway on `exp` and `nbf`, seconds (distribution's).
pub const LEEWAY: i64 = 60;

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// One `access` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (as requested) or `catalog` / `admin`.
    pub name: String,
    /// Granted actions.
    pub actions: Vec<String>,
}

/// The claim set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// User name, `""` for anonymous.
    pub sub: String,
    /// Audience (the `service`), a string.
    pub aud: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Not before.
    pub nbf: i64,
    /// Issued at.
    pub iat: i64,
    /// Unique id.
    pub jti: String,
    /// What the bearer may do.
    pub access: Vec<ResourceActions>,
}

impl Claims {
    /// Whether the token grants `action` on `kind:name`.
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|r| r.kind == kind && r.name == name && r.actions.iter().any(|a| a == action))
    }
}

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The files hold no usable P-256 key or certificate.
    #[error("{0}")]
    Invalid(String),
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Over [`MAX_AUTHORIZATION_LEN`].
    #[error("token of {0} bytes is too large")]
    TooLarge(usize),
    /// Not three base64url parts, or a part not base64url/JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` other than ES256 (`none` included).
    #[error("unsupported alg {0}")]
    Alg(String),
    /// `kid` names another key.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Another issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// Another audience.
    #[error("wrong audience")]
    WrongAudience,
    /// Past `exp` plus leeway.
    #[error("expired")]
    Expired,
    /// Before `nbf` minus leeway.
    #[error("not yet valid")]
    NotYetValid,
}

/// The token-signing key and its certificate.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// Uncompressed public point.
    public: Vec<u8>,
    cert_der: Vec<u8>,
    kid: String,
    /// base64url of the JOSE header (constant).
    header_b64: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl SigningKey {
    /// `dir/token.crt` and `dir/token.key` (0600), generated on first use: a
    /// self-signed P-256 certificate valid ten years.
    pub fn load_or_generate(dir: &Path) -> Result<SigningKey, KeyError> {
        let cert = dir.join("token.crt");
        let key = dir.join("token.key");
        if !cert.exists() || !key.exists() {
            notary_daemon::fs::private_dir(dir).map_err(io_err(dir))?;
            let (cert_pem, key_pem) = generate()?;
            notary_daemon::fs::write_private(&key, key_pem.as_bytes()).map_err(io_err(&key))?;
            std::fs::write(&cert, cert_pem.as_bytes()).map_err(io_err(&cert))?;
            tracing::info!(cert = %cert.display(), "generated the token-signing certificate");
        }
        SigningKey::from_files(&cert, &key)
    }

    /// A configured certificate (PEM, first certificate is used) and PKCS#8 P-256 key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<SigningKey, KeyError> {
        let c = std::fs::read(cert).map_err(io_err(cert))?;
        let k = zeroize::Zeroizing::new(std::fs::read(key).map_err(io_err(key))?);
        SigningKey::from_pem(&c, &k)
    }

    /// From PEM bytes.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<SigningKey, KeyError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
        let cert = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or_else(|| {
                KeyError::Invalid("no certificate in the token certificate file".into())
            })?
            .map_err(|e| KeyError::Invalid(format!("token certificate: {e}")))?;
        let key = PrivatePkcs8KeyDer::from_pem_slice(key_pem).map_err(|e| {
            KeyError::Invalid(format!(
                "token key (a PKCS#8 \"PRIVATE KEY\" P-256 key is required): {e}"
            ))
        })?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| KeyError::Invalid(format!("token key is not a P-256 PKCS#8 key: {e}")))?;
        let public = pair.public_key().as_ref().to_vec();
        let spki = spki_der(&public);
        let cert_der = cert.as_ref().to_vec();
        if !cert_der.windows(spki.len()).any(|w| w == spki.as_slice()) {
            return Err(KeyError::Invalid(
                "the token certificate does not hold the token key's public key".into(),
            ));
        }
        let kid = notary_server::auth::libtrust_kid(&spki);
        let header = serde_json::json!({
            "alg": "ES256",
            "typ": "JWT",
            "kid": kid,
            "x5c": [STANDARD.encode(&cert_der)],
        });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
        Ok(SigningKey {
            pair,
            rng,
            public,
            cert_der,
            kid,
            header_b64,
        })
    }

    /// The libtrust key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The certificate as PEM (what a Notary server's `rootcertbundle` holds).
    pub fn cert_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.cert_der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }

    /// Signs a claim set.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let payload =
            serde_json::to_vec(claims).map_err(|e| KeyError::Invalid(format!("claims: {e}")))?;
        let input = format!("{}.{}", self.header_b64, URL_SAFE_NO_PAD.encode(payload));
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| KeyError::Invalid("signing failed".into()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }

    /// Verifies a token this key signed: ES256 only, `kid` (if any) ours, signature,
    /// issuer, audience (one of `audiences`), `exp`/`nbf` with [`LEEWAY`].
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[&str],
        now: i64,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_AUTHORIZATION_LEN {
            return Err(TokenError::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not a compact JWS"));
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
            #[serde(default)]
            kid: Option<String>,
        }
        let header: Header = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(h)
                .map_err(|_| TokenError::Malformed("header encoding"))?,
        )
        .map_err(|_| TokenError::Malformed("header JSON"))?;
        if header.alg != "ES256" {
            return Err(TokenError::Alg(header.alg.chars().take(16).collect()));
        }
        if header.kid.as_deref().is_some_and(|k| k != self.kid) {
            return Err(TokenError::UnknownKey);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed("signature encoding"))?;
        let input_len = h.len() + 1 + p.len();
        let input = &token.as_bytes()[..input_len];
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(input, &sig)
            .map_err(|_| TokenError::BadSignature)?;
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            iss: String,
            #[serde(default)]
            sub: String,
            #[serde(default)]
            aud: Value,
            exp: Option<i64>,
            #[serde(default)]
            nbf: Option<i64>,
            #[serde(default)]
            iat: Option<i64>,
            #[serde(default)]
            jti: String,
            #[serde(default)]
            access: Vec<ResourceActions>,
        }
        let raw: Raw = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| TokenError::Malformed("claims encoding"))?,
        )
        .map_err(|_| TokenError::Malformed("claims JSON"))?;
        if raw.iss != issuer {
            return Err(TokenError::WrongIssuer);
        }
        let aud = match &raw.aud {
            Value::String(a) if audiences.contains(&a.as_str()) => a.clone(),
            _ => return Err(TokenError::WrongAudience),
        };
        let exp = match raw.exp {
            Some(exp) if now <= exp.saturating_add(LEEWAY) => exp,
            _ => return Err(TokenError::Expired),
        };
        let nbf = raw.nbf.unwrap_or(i64::MIN);
        if now.saturating_add(LEEWAY) < nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(Claims {
            iss: raw.iss,
            sub: raw.sub,
            aud,
            exp,
            nbf,
            iat: raw.iat.unwrap_or(0),
            jti: raw.jti,
            access: raw.access,
        })
    }
}

/// The DER SubjectPublicKeyInfo of an uncompressed P-256 point.
pub fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut v = P256_SPKI_PREFIX.to_vec();
    v.extend_from_slice(point);
    v
}

/// A new self-signed P-256 token-signing certificate and its PKCS#8 key, as PEM.
pub fn generate() -> Result<(String, String), KeyError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let bad = |e: rcgen::Error| KeyError::Invalid(format!("generating the token certificate: {e}"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "notary-registry token signing");
    // A CA certificate, so it can also be the root of a verifier's bundle.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).map_err(bad)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "iss".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp: now + 300,
            nbf: now,
            iat: now,
            jti: "j".into(),
            access: vec![ResourceActions {
                kind: "repository".into(),
                name: "a/b".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    #[test]
    fn sign_verify_round_trip_and_refusals() {
        let (c, k) = generate().unwrap();
        let key = SigningKey::from_pem(c.as_bytes(), k.as_bytes()).unwrap();
        let now = 1_700_000_000;
        let t = key.sign(&claims(now)).unwrap();
        let got = key.verify(&t, "iss", &["svc"], now).unwrap();
        assert_eq!(got, claims(now));
        assert!(got.grants("repository", "a/b", "pull"));
        assert_eq!(
            key.verify(&t, "other", &["svc"], now),
            Err(TokenError::WrongIssuer)
        );
        assert_eq!(
            key.verify(&t, "iss", &["x"], now),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            key.verify(&t, "iss", &["svc"], now + 361),
            Err(TokenError::Expired)
        );
        assert!(key.verify(&t, "iss", &["svc"], now + 359).is_ok());
        assert_eq!(
            key.verify(&t, "iss", &["svc"], now - 61),
            Err(TokenError::NotYetValid)
        );
        // Another key's token.
        let (c2, k2) = generate().unwrap();
        let other = SigningKey::from_pem(c2.as_bytes(), k2.as_bytes()).unwrap();
        let forged = other.sign(&claims(now)).unwrap();
        assert_eq!(
            key.verify(&forged, "iss", &["svc"], now),
            Err(TokenError::UnknownKey)
        );
        // Same kid header but the other key's signature.
        let (_, rest) = forged.split_once('.').unwrap();
        let spliced = format!("{}.{rest}", t.split('.').next().unwrap());
        assert_eq!(
            key.verify(&spliced, "iss", &["svc"], now),
            Err(TokenError::BadSignature)
        );
        // Mismatched certificate and key.
        assert!(SigningKey::from_pem(c.as_bytes(), k2.as_bytes()).is_err());
        assert!(key.cert_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    }
}
