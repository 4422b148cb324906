//! Private key files as Go Notary writes them (spec §9.2) and the passphrase
//! environment variables of spec §9.3.
//!
//! Files are PEM `ENCRYPTED PRIVATE KEY` (PKCS#8 PBES2: PBKDF2-HMAC-SHA1, 2048
//! iterations, 8-byte salt, AES-256-CBC) with `role` and, for `targets`, `snapshot` and
//! `timestamp` keys, `gun` headers. Unencrypted `PRIVATE KEY` and the legacy `EC PRIVATE
//! KEY`, `RSA PRIVATE KEY` and `ED25519 PRIVATE KEY` blocks are read too.

use pkcs8::der::{Decode as _, Encode as _};
use pkcs8::pkcs5::pbes2;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::asn1::{self, DerError, oid, tag};
use crate::crypto::{PrivateKey, SecretParts};
use crate::names::Gun;

/// Errors reading or writing key files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The PEM layer is broken.
    #[error(transparent)]
    Pem(#[from] crate::pem::PemError),
    /// A PEM block type this tool does not read.
    #[error("unsupported PEM block {0:?}")]
    UnsupportedBlock(String),
    /// The key is encrypted and no passphrase was given.
    #[error("key is encrypted and needs a passphrase")]
    PassphraseRequired,
    /// Decryption failed: almost always a wrong passphrase.
    #[error("wrong passphrase (or corrupt key file)")]
    WrongPassphrase,
    /// Legacy RFC 1423 (`Proc-Type: 4,ENCRYPTED`) encryption.
    #[error(
        "legacy PEM encryption (Proc-Type/DEK-Info) is not supported; re-export the key as PKCS#8"
    )]
    LegacyEncryption,
    /// The DER inside is malformed.
    #[error("malformed key: {0}")]
    Der(#[from] DerError),
    /// Key algorithm not supported.
    #[error("unsupported private key algorithm")]
    UnsupportedAlgorithm,
    /// The key material is inconsistent.
    #[error(transparent)]
    Key(#[from] crate::crypto::KeyError),
    /// Encryption failed.
    #[error("could not encrypt key: {0}")]
    Encrypt(String),
}

/// A decoded key file: the key plus its `role` and `gun` headers.
#[derive(Debug)]
pub struct KeyFile {
    /// The private key.
    pub key: PrivateKey,
    /// `role` header (`root`, `targets`, `targets/releases`, a docker signer name, ...).
    pub role: String,
    /// `gun` header, present for targets/snapshot/timestamp keys.
    pub gun: Option<Gun>,
}

impl KeyFile {
    /// Decodes a key file. `passphrase` is used only when the file is encrypted.
    pub fn decode(pem: &[u8], passphrase: Option<&str>) -> Result<KeyFile, KeyFileError> {
        let block = crate::pem::decode_one(pem)?;
        let role = block.header("role").unwrap_or_default().to_owned();
        let gun = block.header("gun").and_then(|g| Gun::new(g).ok());
        if block
            .header("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"))
        {
            return Err(KeyFileError::LegacyEncryption);
        }
        let key = match block.label.as_str() {
            "ENCRYPTED PRIVATE KEY" => {
                let pass = passphrase.ok_or(KeyFileError::PassphraseRequired)?;
                let info = pkcs8::EncryptedPrivateKeyInfoRef::from_der(&block.body)
                    .map_err(|_| KeyFileError::Der(DerError("bad EncryptedPrivateKeyInfo")))?;
                let doc = info
                    .decrypt(pass.as_bytes())
                    .map_err(|_| KeyFileError::WrongPassphrase)?;
                parse_private_key_info(doc.as_bytes()).map_err(|e| match e {
                    // A wrong passphrase usually fails the padding check, but can yield garbage.
                    KeyFileError::Der(_) => KeyFileError::WrongPassphrase,
                    other => other,
                })?
            }
            "PRIVATE KEY" => parse_private_key_info(&block.body)?,
            "EC PRIVATE KEY" => parse_sec1(&block.body, None)?,
            "RSA PRIVATE KEY" => PrivateKey::from_rsa_pkcs1(&block.body)?,
            "ED25519 PRIVATE KEY" => parse_go_ed25519(&block.body)?,
            other => return Err(KeyFileError::UnsupportedBlock(other.to_owned())),
        };
        Ok(KeyFile { key, role, gun })
    }

    /// Whether the file at hand is encrypted (without decrypting it).
    pub fn is_encrypted(pem: &[u8]) -> Result<bool, KeyFileError> {
        Ok(crate::pem::decode_one(pem)?.label == "ENCRYPTED PRIVATE KEY")
    }

    /// Encodes as Go does: `ENCRYPTED PRIVATE KEY` when a non-empty passphrase is given,
    /// else `PRIVATE KEY`; headers `gun` (only when given) and `role`.
    pub fn encode(
        key: &PrivateKey,
        role: &str,
        gun: Option<&Gun>,
        passphrase: Option<&str>,
    ) -> Result<Zeroizing<String>, KeyFileError> {
        let info = private_key_info(key);
        let mut headers: Vec<(&str, &str)> = vec![("role", role)];
        if let Some(g) = gun {
            headers.push(("gun", g.as_str()));
        }
        match passphrase {
            Some(pass) if !pass.is_empty() => {
                let rng = SystemRandom::new();
                let mut salt = [0u8; 8];
                let mut iv = [0u8; 16];
                rng.fill(&mut salt)
                    .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
                rng.fill(&mut iv)
                    .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
                let kdf = pbes2::Pbkdf2Params {
                    salt: salt
                        .as_slice()
                        .try_into()
                        .map_err(|_| KeyFileError::Encrypt("salt".into()))?,
                    iteration_count: 2048,
                    key_length: None,
                    prf: pbes2::Pbkdf2Prf::HmacWithSha1,
                };
                let params = pbes2::Parameters {
                    kdf: kdf.into(),
                    encryption: pbes2::EncryptionScheme::Aes256Cbc { iv },
                };
                let ciphertext = params
                    .encrypt(pass.as_bytes(), &info)
                    .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
                let enc = pkcs8::EncryptedPrivateKeyInfoRef {
                    encryption_algorithm: params.into(),
                    encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ciphertext)
                        .map_err(|e| KeyFileError::Encrypt(e.to_string()))?,
                };
                let der = enc
                    .to_der()
                    .map_err(|e| KeyFileError::Encrypt(e.to_string()))?;
                Ok(crate::pem::encode("ENCRYPTED PRIVATE KEY", &headers, &der))
            }
            _ => Ok(crate::pem::encode("PRIVATE KEY", &headers, &info)),
        }
    }
}

/// Go TUF's raw private key bytes (`data.PrivateKey.Private()`, what notary-signer
/// seals in its database): SEC1 `ECPrivateKey` DER with curve and public key for ECDSA
/// (121 bytes for P-256), `public ‖ seed ‖ public` (96 bytes) for Ed25519, PKCS#1 DER
/// for RSA.
pub fn tuf_private_bytes(key: &PrivateKey) -> Zeroizing<Vec<u8>> {
    match key.secret() {
        SecretParts::P256 { scalar, point } => sec1(scalar, point),
        SecretParts::Ed25519 { seed, public } => {
            let mut blob = Zeroizing::new(Vec::with_capacity(96));
            blob.extend_from_slice(public);
            blob.extend_from_slice(seed);
            blob.extend_from_slice(public);
            blob
        }
        SecretParts::Rsa { pkcs1 } => Zeroizing::new(pkcs1.to_vec()),
    }
}

/// The inverse of [`tuf_private_bytes`]: `algorithm` is the TUF key type (`ecdsa`,
/// `ed25519`, `rsa`, or their `-x509` forms).
pub fn private_key_from_tuf(algorithm: &str, bytes: &[u8]) -> Result<PrivateKey, KeyFileError> {
    match algorithm.strip_suffix("-x509").unwrap_or(algorithm) {
        "ecdsa" => parse_sec1(bytes, None),
        "ed25519" => parse_go_ed25519(bytes),
        "rsa" => Ok(PrivateKey::from_rsa_pkcs1(bytes)?),
        _ => Err(KeyFileError::UnsupportedAlgorithm),
    }
}

/// SEC1 `ECPrivateKey` as Go's `x509.MarshalECPrivateKey` writes it.
fn sec1(scalar: &[u8], point: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut ec = Zeroizing::new(asn1::tlv(tag::INTEGER, &[1]));
    asn1::write(&mut ec, tag::OCTET_STRING, scalar);
    asn1::write(&mut ec, tag::CONTEXT_0, &asn1::tlv(tag::OID, oid::P256));
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    asn1::write(&mut ec, tag::CONTEXT_1, &asn1::tlv(tag::BIT_STRING, &bits));
    Zeroizing::new(asn1::tlv(tag::SEQUENCE, &ec))
}

/// PKCS#8 `PrivateKeyInfo` for `key` (version 0; EC with the SEC1 key incl. curve and
/// public key; RSA with NULL parameters; Ed25519 in Go's 96-byte form so Go reads it).
fn private_key_info(key: &PrivateKey) -> Zeroizing<Vec<u8>> {
    let mut body = Zeroizing::new(asn1::tlv(tag::INTEGER, &[0]));
    match key.secret() {
        SecretParts::P256 { .. } => {
            let mut alg = asn1::tlv(tag::OID, oid::EC_PUBLIC_KEY);
            asn1::write(&mut alg, tag::OID, oid::P256);
            asn1::write(&mut body, tag::SEQUENCE, &alg);
        }
        SecretParts::Ed25519 { .. } => {
            asn1::write(
                &mut body,
                tag::SEQUENCE,
                &asn1::tlv(tag::OID, oid::ED25519_GO),
            );
        }
        SecretParts::Rsa { .. } => {
            let mut alg = asn1::tlv(tag::OID, oid::RSA);
            alg.extend_from_slice(&[tag::NULL, 0]);
            asn1::write(&mut body, tag::SEQUENCE, &alg);
        }
    }
    asn1::write(&mut body, tag::OCTET_STRING, &tuf_private_bytes(key));
    Zeroizing::new(asn1::tlv(tag::SEQUENCE, &body))
}

/// Parses PKCS#8 `PrivateKeyInfo` as Go does: any version, RSA with or without NULL
/// parameters, EC (SEC1 inside), Go's Ed25519 OID and RFC 8410 Ed25519.
pub(crate) fn parse_private_key_info(der: &[u8]) -> Result<PrivateKey, KeyFileError> {
    let mut outer = asn1::Reader::new(der);
    let seq = outer.expect(tag::SEQUENCE)?;
    let mut r = asn1::Reader::new(seq);
    let _version = r.small_uint()?;
    let alg = r.expect(tag::SEQUENCE)?;
    let key = r.expect(tag::OCTET_STRING)?;
    let mut a = asn1::Reader::new(alg);
    let alg_oid = a.expect(tag::OID)?;
    match alg_oid {
        oid::EC_PUBLIC_KEY => {
            let curve = a.optional(tag::OID)?;
            parse_sec1(key, curve)
        }
        oid::RSA => Ok(PrivateKey::from_rsa_pkcs1(key)?),
        oid::ED25519_GO => parse_go_ed25519(key),
        oid::ED25519 => {
            let seed = asn1::Reader::new(key).expect(tag::OCTET_STRING)?;
            let seed: &[u8; 32] = seed
                .try_into()
                .map_err(|_| DerError("Ed25519 seed must be 32 bytes"))?;
            Ok(PrivateKey::from_ed25519_seed(seed)?)
        }
        _ => Err(KeyFileError::UnsupportedAlgorithm),
    }
}

/// SEC1 `ECPrivateKey`; the curve comes from the key or from the PKCS#8 parameters.
fn parse_sec1(der: &[u8], outer_curve: Option<&[u8]>) -> Result<PrivateKey, KeyFileError> {
    let mut outer = asn1::Reader::new(der);
    let seq = outer.expect(tag::SEQUENCE)?;
    let mut r = asn1::Reader::new(seq);
    if r.small_uint()? != 1 {
        return Err(DerError("ECPrivateKey version must be 1").into());
    }
    let scalar = r.expect(tag::OCTET_STRING)?;
    let curve = match r.optional(tag::CONTEXT_0)? {
        Some(p) => Some(asn1::Reader::new(p).expect(tag::OID)?),
        None => outer_curve,
    };
    if curve != Some(oid::P256) {
        return Err(KeyFileError::UnsupportedAlgorithm);
    }
    let point = match r.optional(tag::CONTEXT_1)? {
        Some(p) => match asn1::Reader::new(p).expect(tag::BIT_STRING)?.split_first() {
            Some((0, point)) => point,
            _ => return Err(DerError("bad public key BIT STRING").into()),
        },
        None => return Err(DerError("EC private key without its public key").into()),
    };
    // Go strips leading zeros of the scalar; ring wants exactly 32 bytes.
    let mut padded = Zeroizing::new([0u8; 32]);
    if scalar.len() > 32 {
        return Err(DerError("EC scalar longer than 32 bytes").into());
    }
    padded[32 - scalar.len()..].copy_from_slice(scalar);
    Ok(PrivateKey::from_p256(padded.as_ref(), point)?)
}

/// Go's Ed25519 private key blob: public ‖ seed ‖ public (96 bytes).
fn parse_go_ed25519(blob: &[u8]) -> Result<PrivateKey, KeyFileError> {
    if blob.len() != 96 {
        return Err(DerError("Go Ed25519 private key must be 96 bytes").into());
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&blob[32..64]);
    let key = PrivateKey::from_ed25519_seed(&seed)?;
    if key.public().public_bytes() != &blob[..32] {
        return Err(DerError("Ed25519 public key does not match the seed").into());
    }
    Ok(key)
}

/// Which client's environment variables to read (spec §9.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassphraseFlavor {
    /// The `notary` CLI: `NOTARY_{ROOT,TARGETS,SNAPSHOT,DELEGATION}_PASSPHRASE`.
    Notary,
    /// Docker: `DOCKER_CONTENT_TRUST_{ROOT,REPOSITORY}_PASSPHRASE`.
    Docker,
}

/// The environment variable holding the passphrase for keys of role `alias`.
pub fn passphrase_env_var(alias: &str, flavor: PassphraseFlavor) -> &'static str {
    match (flavor, alias) {
        (PassphraseFlavor::Notary, "root") => "NOTARY_ROOT_PASSPHRASE",
        (PassphraseFlavor::Notary, "targets") => "NOTARY_TARGETS_PASSPHRASE",
        (PassphraseFlavor::Notary, "snapshot") => "NOTARY_SNAPSHOT_PASSPHRASE",
        (PassphraseFlavor::Notary, _) => "NOTARY_DELEGATION_PASSPHRASE",
        (PassphraseFlavor::Docker, "root") => "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
        (PassphraseFlavor::Docker, _) => "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
    }
}

/// Go's environment retriever: the variable's value for attempts 0 and 1, nothing from
/// attempt 2 on (so a wrong passphrase fails after two tries).
pub fn passphrase_from_env(
    alias: &str,
    flavor: PassphraseFlavor,
    attempt: u32,
) -> Option<Zeroizing<String>> {
    if attempt >= 2 {
        return None;
    }
    std::env::var(passphrase_env_var(alias, flavor))
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Algorithm, Signer as _};

    #[test]
    fn tuf_private_bytes_round_trip_in_go_sizes() {
        for (alg, name, len) in [
            (Algorithm::EcdsaP256, "ecdsa", 121),
            (Algorithm::Ed25519, "ed25519", 96),
        ] {
            let key = PrivateKey::generate(alg).unwrap();
            let raw = tuf_private_bytes(&key);
            assert_eq!(raw.len(), len, "{name}");
            let back = private_key_from_tuf(name, &raw).unwrap();
            assert_eq!(back.public(), key.public());
            let (m, sig) = back.sign(b"msg").unwrap();
            key.public().verify(&m, b"msg", &sig).unwrap();
        }
        assert!(private_key_from_tuf("ecdsa", &[0x30, 0x00]).is_err());
        assert!(private_key_from_tuf("ed25519", &[0u8; 95]).is_err());
        assert!(matches!(
            private_key_from_tuf("dsa", &[]),
            Err(KeyFileError::UnsupportedAlgorithm)
        ));
    }

    #[test]
    fn round_trip_encrypted_and_plain() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let key = PrivateKey::generate(alg).unwrap();
            let gun = Gun::new("example.com/x").unwrap();
            let pem = KeyFile::encode(&key, "targets", Some(&gun), Some("passphrase-1")).unwrap();
            assert!(pem.starts_with(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: example.com/x\nrole: targets\n\n"
            ));
            let back = KeyFile::decode(pem.as_bytes(), Some("passphrase-1")).unwrap();
            assert_eq!(back.key.public(), key.public());
            assert_eq!(back.role, "targets");
            assert_eq!(back.gun.as_ref(), Some(&gun));
            assert_eq!(
                KeyFile::decode(pem.as_bytes(), Some("wrong")).unwrap_err(),
                KeyFileError::WrongPassphrase
            );
            assert_eq!(
                KeyFile::decode(pem.as_bytes(), None).unwrap_err(),
                KeyFileError::PassphraseRequired
            );
            let plain = KeyFile::encode(&key, "root", None, None).unwrap();
            assert!(plain.starts_with("-----BEGIN PRIVATE KEY-----\nrole: root\n\n"));
            let back = KeyFile::decode(plain.as_bytes(), None).unwrap();
            let (m, sig) = back.key.sign(b"x").unwrap();
            key.public().verify(&m, b"x", &sig).unwrap();
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(KeyFile::decode(b"", None).is_err());
        assert!(
            KeyFile::decode(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                None
            )
            .is_err()
        );
        assert!(KeyFile::decode(b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", None).is_err());
        let legacy = b"-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            KeyFile::decode(legacy, None).unwrap_err(),
            KeyFileError::LegacyEncryption
        );
    }

    #[test]
    fn env_vars() {
        assert_eq!(
            passphrase_env_var("targets/releases", PassphraseFlavor::Notary),
            "NOTARY_DELEGATION_PASSPHRASE"
        );
        assert_eq!(
            passphrase_env_var("", PassphraseFlavor::Notary),
            "NOTARY_DELEGATION_PASSPHRASE"
        );
        assert_eq!(
            passphrase_env_var("snapshot", PassphraseFlavor::Docker),
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE"
        );
    }
}
