//! X.509 helpers: root-key certificates as Go generates them (spec §2.4.3), the root
//! certificate checks of spec §5.3, and chains to pinned CAs (spec §9.6).

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::crypto::{KeyError, KeyType, PrivateKey, PublicKey};
use crate::names::Gun;

/// Why a root certificate is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The key is not a certificate bundle.
    #[error("root key {0} is not a certificate (ecdsa-x509 or rsa-x509)")]
    NotCertificate(String),
    /// The bundle does not parse.
    #[error("certificate bundle does not parse: {0}")]
    Malformed(String),
    /// The first certificate is a CA, or there is more than one leaf.
    #[error("bundle must hold exactly one leaf (non-CA) certificate, first")]
    Leaf,
    /// The common name does not match the GUN.
    #[error("certificate common name {cn:?} does not match GUN {gun}")]
    CommonName {
        /// CN found.
        cn: String,
        /// GUN expected.
        gun: String,
    },
    /// Not valid at the given time.
    #[error("certificate is not valid at {now} (valid {not_before} to {not_after})")]
    Validity {
        /// Checked instant.
        now: OffsetDateTime,
        /// Start.
        not_before: OffsetDateTime,
        /// End.
        not_after: OffsetDateTime,
    },
    /// SHA-1 or RSA below 2048 bits.
    #[error("weak certificate: {0}")]
    Weak(&'static str),
    /// No path to a pinned CA.
    #[error("certificate does not chain to a pinned CA")]
    Untrusted,
}

/// Default root certificate validity: 10 years (3650 days).
pub const ROOT_CERT_VALIDITY: Duration = Duration::days(3650);

/// Splits a PEM bundle into DER certificates (Go accepts only `CERTIFICATE` blocks).
pub fn parse_pem_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
    let blocks = crate::pem::decode_all(pem).map_err(|e| KeyError::Certificate(e.to_string()))?;
    if blocks.is_empty() {
        return Err(KeyError::Certificate("no certificate in bundle".into()));
    }
    blocks
        .into_iter()
        .map(|b| {
            if b.label == "CERTIFICATE" {
                Ok(b.body.to_vec())
            } else {
                Err(KeyError::Certificate(format!(
                    "unexpected PEM block {:?}",
                    b.label
                )))
            }
        })
        .collect()
}

/// Splits the PEM bundle of a certificate-form key (`ecdsa-x509`, `rsa-x509`) into DER
/// certificates. Stricter than [`parse_pem_bundle`], which reads CA files: at most
/// [`crate::crypto::MAX_PUBLIC_KEY_LEN`] bytes, only `CERTIFICATE` blocks, nothing but
/// whitespace around them, no headers.
pub fn parse_key_bundle(pem: &[u8]) -> Result<Vec<Vec<u8>>, KeyError> {
    crate::crypto::counters::add(|c| c.cert_decodes += 1);
    if pem.len() > crate::crypto::MAX_PUBLIC_KEY_LEN {
        return Err(KeyError::Certificate(format!(
            "bundle larger than the {} bytes allowed",
            crate::crypto::MAX_PUBLIC_KEY_LEN
        )));
    }
    let blocks =
        crate::pem::decode_all_strict(pem).map_err(|e| KeyError::Certificate(e.to_string()))?;
    if blocks.is_empty() {
        return Err(KeyError::Certificate("no certificate in bundle".into()));
    }
    blocks
        .into_iter()
        .map(|b| {
            if b.label == "CERTIFICATE" {
                Ok(b.body.to_vec())
            } else {
                Err(KeyError::Certificate(format!(
                    "unexpected PEM block {:?}",
                    b.label
                )))
            }
        })
        .collect()
}

/// PEM text of DER certificates, as Go writes it.
pub fn to_pem(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| crate::pem::encode("CERTIFICATE", &[], d).to_string())
        .collect()
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, KeyError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| KeyError::Certificate(e.to_string()))
}

/// The DER SubjectPublicKeyInfo of a DER certificate.
pub fn spki_der(cert_der: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ok(parse(cert_der)?.public_key().raw.to_vec())
}

fn to_time(t: &x509_parser::time::ASN1Time) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

struct RcgenKey<'a> {
    key: &'a PrivateKey,
    raw_public: Vec<u8>,
}

impl rcgen::PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.raw_public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self.key.algorithm_name() {
            "ecdsa" => &rcgen::PKCS_ECDSA_P256_SHA256,
            "ed25519" => &rcgen::PKCS_ED25519,
            _ => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl rcgen::SigningKey for RcgenKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key
            .sign_x509(msg)
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// The raw public key bytes rcgen expects (point, Ed25519 key or PKCS#1).
fn raw_public(key: &PrivateKey) -> Result<Vec<u8>, KeyError> {
    match key.public().key_type() {
        KeyType::Ed25519 => Ok(key.public().public_bytes().to_vec()),
        _ => {
            let (_, spki) =
                x509_parser::x509::SubjectPublicKeyInfo::from_der(key.public().public_bytes())
                    .map_err(|e| KeyError::Certificate(e.to_string()))?;
            Ok(spki.subject_public_key.data.to_vec())
        }
    }
}

/// Wraps `key` in a self-signed certificate as Go does for root keys: CN = GUN, random
/// 128-bit serial, KeyUsage {digitalSignature, keyEncipherment} (critical), EKU
/// codeSigning, BasicConstraints CA:FALSE (critical). Returns the `ecdsa-x509` (or
/// `rsa-x509`) public key whose bytes are the PEM text.
pub fn root_certificate(
    key: &PrivateKey,
    gun: &Gun,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<PublicKey, KeyError> {
    let key_type = match key.public().key_type() {
        KeyType::Ecdsa => KeyType::EcdsaX509,
        KeyType::Rsa => KeyType::RsaX509,
        other => {
            return Err(KeyError::UnsupportedType(format!(
                "{other} root certificate"
            )));
        }
    };
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, gun.as_str());
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    serial[0] &= 0x7F;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let signer = RcgenKey {
        key,
        raw_public: raw_public(key)?,
    };
    let cert = params
        .self_signed(&signer)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    Ok(PublicKey::new(
        key_type,
        to_pem(&[cert.der().to_vec()]).into_bytes(),
    ))
}

const SHA1_SIG_OIDS: [&str; 3] = [
    "1.2.840.113549.1.1.5",
    "1.2.840.10045.4.1",
    "1.2.840.10040.4.3",
];

fn bundle_ders(key: &PublicKey) -> Result<Vec<Vec<u8>>, CertError> {
    parse_key_bundle(key.public_bytes()).map_err(|e| CertError::Malformed(e.to_string()))
}

fn parse_all(ders: &[Vec<u8>]) -> Result<Vec<X509Certificate<'_>>, CertError> {
    ders.iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Malformed(e.to_string()))
}

/// Whether a certificate CN admits `gun`: equal, or `prefix*` matching.
pub fn cn_matches(cn: &str, gun: &str) -> bool {
    match cn.strip_suffix('*') {
        Some(prefix) => gun.starts_with(prefix),
        None => cn == gun,
    }
}

/// Checks a root-role key as spec §5.3 step 2 does: a certificate bundle led by exactly
/// one non-CA leaf whose CN matches `gun`, not SHA-1, RSA ≥ 2048 bits, and (when `now`
/// is given) valid at `now` with one day of NotBefore leeway.
pub fn check_root_leaf(
    key: &PublicKey,
    gun: &Gun,
    now: Option<OffsetDateTime>,
) -> Result<(), CertError> {
    if !key.key_type().is_x509() {
        return Err(CertError::NotCertificate(key.key_type().to_string()));
    }
    let ders = bundle_ders(key)?;
    let certs = parse_all(&ders)?;
    let leaf = &certs[0];
    if leaf.is_ca() || certs[1..].iter().any(|c| !c.is_ca()) {
        return Err(CertError::Leaf);
    }
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default();
    if !cn_matches(cn, gun.as_str()) {
        return Err(CertError::CommonName {
            cn: cn.to_owned(),
            gun: gun.to_string(),
        });
    }
    if SHA1_SIG_OIDS.contains(&leaf.signature_algorithm.algorithm.to_id_string().as_str()) {
        return Err(CertError::Weak("SHA-1 signature"));
    }
    if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = leaf.public_key().parsed() {
        if rsa.key_size() < 2048 {
            return Err(CertError::Weak("RSA key below 2048 bits"));
        }
    }
    if let Some(now) = now {
        let not_before = to_time(&leaf.validity().not_before);
        let not_after = to_time(&leaf.validity().not_after);
        if not_before > now + Duration::days(1) || now > not_after {
            return Err(CertError::Validity {
                now,
                not_before,
                not_after,
            });
        }
    }
    Ok(())
}

/// Checks that the leaf of `key`'s bundle chains to one of the CA certificates in
/// `ca_pem` (invalid or expired CAs are ignored), using the bundle's other certificates
/// as intermediates (spec §9.6 `ca`).
pub fn chains_to_ca(key: &PublicKey, ca_pem: &[u8], now: OffsetDateTime) -> Result<(), CertError> {
    let ders = bundle_ders(key)?;
    let certs = parse_all(&ders)?;
    let ca_ders = parse_pem_bundle(ca_pem).unwrap_or_default();
    let valid_at = |c: &X509Certificate<'_>| {
        to_time(&c.validity().not_before) <= now && now <= to_time(&c.validity().not_after)
    };
    let cas: Vec<X509Certificate<'_>> = ca_ders
        .iter()
        .filter_map(|d| parse(d).ok())
        .filter(|c| c.is_ca() && valid_at(c))
        .collect();
    let mut current = &certs[0];
    if !valid_at(current) {
        return Err(CertError::Untrusted);
    }
    for _ in 0..8 {
        let signed_by = |issuer: &X509Certificate<'_>| {
            issuer.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(issuer.public_key())).is_ok()
        };
        if cas.iter().any(signed_by) {
            return Ok(());
        }
        match certs[1..].iter().find(|c| valid_at(c) && signed_by(c)) {
            Some(next) => current = next,
            None => break,
        }
    }
    Err(CertError::Untrusted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Algorithm;
    use time::macros::datetime;

    #[test]
    fn generated_root_cert_passes_root_checks() {
        let key = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let gun = Gun::new("example.com/test/x").unwrap();
        let now = datetime!(2026-11-23 00:00 UTC);
        let pk = root_certificate(&key, &gun, now, now + ROOT_CERT_VALIDITY).unwrap();
        assert_eq!(pk.key_type(), &KeyType::EcdsaX509);
        assert!(
            std::str::from_utf8(pk.public_bytes())
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );
        check_root_leaf(&pk, &gun, Some(now)).unwrap();
        assert_eq!(pk.canonical_id().unwrap(), key.public().key_id());
        let other = Gun::new("example.com/other").unwrap();
        assert!(matches!(
            check_root_leaf(&pk, &other, Some(now)),
            Err(CertError::CommonName { .. })
        ));
        assert!(matches!(
            check_root_leaf(&pk, &gun, Some(now + Duration::days(3651))),
            Err(CertError::Validity { .. })
        ));
        assert!(check_root_leaf(key.public(), &gun, Some(now)).is_err());
    }

    #[test]
    fn wildcard_cn() {
        assert!(cn_matches(
            "docker.io/library/*",
            "docker.io/library/alpine"
        ));
        assert!(!cn_matches("docker.io/library/*", "docker.io/other/alpine"));
        assert!(cn_matches("a/b", "a/b"));
    }
}
