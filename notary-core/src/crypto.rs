//! Public keys, key IDs, signature methods, private keys and signing (spec §2.4, §2.5).
//!
//! ECDSA P-256 and RSA run on `ring` (assembly-backed: 8x faster signing and 5x faster
//! verification than the `p256` crate here); Ed25519 runs on `ed25519-dalek`, faster than
//! ring's on this machine (sign 1.5x, verify 1.6x). Figures: the `core` benchmark.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as rsig, KeyPair as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::asn1::{self, oid, tag};
use crate::names::KeyId;

/// Per-thread counts of the expensive key operations, so tests and benchmarks can count
/// work instead of timing it. Counting is a thread-local increment: always on, and cheap.
pub mod counters {
    use std::cell::Cell;

    thread_local! {
        static COUNTS: Cell<Counts> = const { Cell::new(Counts::ZERO) };
    }

    /// Operations counted on the current thread since the last [`reset`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Counts {
        /// Key IDs computed ([`super::PublicKey::key_id`]).
        pub key_ids: u64,
        /// Bytes hashed for those key IDs (the canonical JSON of each key).
        pub key_id_bytes: u64,
        /// Certificate-form key bundles decoded (PEM and X.509 parsing).
        pub cert_decodes: u64,
        /// Signature verifications attempted ([`super::PublicKey::verify`]).
        pub verifications: u64,
    }

    impl Counts {
        const ZERO: Counts = Counts {
            key_ids: 0,
            key_id_bytes: 0,
            cert_decodes: 0,
            verifications: 0,
        };
    }

    /// The counts of the current thread.
    pub fn get() -> Counts {
        COUNTS.with(Cell::get)
    }

    /// Sets the current thread's counts to zero.
    pub fn reset() {
        COUNTS.with(|c| c.set(Counts::ZERO));
    }

    pub(crate) fn add(f: impl FnOnce(&mut Counts)) {
        COUNTS.with(|c| {
            let mut v = c.get();
            f(&mut v);
            c.set(v);
        });
    }
}

/// Largest decoded `keyval.public` accepted (bytes): a P-256 SPKI is 91 bytes, an RSA
/// 4096 certificate about 2 KiB of PEM; a leaf with two intermediates still fits.
pub const MAX_PUBLIC_KEY_LEN: usize = 8 * 1024;

/// Largest RSA modulus accepted, in bits (verification cost grows with it).
pub const MAX_RSA_BITS: usize = 4096;

/// Errors about key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A key type this crate cannot use for the operation.
    #[error("unsupported key type {0:?}")]
    UnsupportedType(String),
    /// An elliptic curve other than those supported.
    #[error("unsupported elliptic curve")]
    UnsupportedCurve,
    /// The key bytes do not decode.
    #[error("malformed {kind} key: {reason}")]
    Malformed {
        /// Key type or container.
        kind: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A certificate-form key that does not hold a parsable certificate.
    #[error("malformed certificate: {0}")]
    Certificate(String),
}

/// Errors producing a signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The signing backend failed.
    #[error("signing failed: {0}")]
    Backend(String),
    /// No key is available for a role.
    #[error("no signing key available for {role}; need one of: {keyids}")]
    NoKey {
        /// The role that needs signing.
        role: String,
        /// Comma-separated key IDs that would do.
        keyids: String,
    },
    /// The metadata cannot be canonicalised.
    #[error(transparent)]
    Canonical(#[from] crate::cjson::CanonicalError),
}

/// A single signature that does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Signature method not usable with this key type.
    #[error("method {method} cannot be used with key type {key_type}")]
    MethodMismatch {
        /// Method from the signature.
        method: String,
        /// Key type of the key.
        key_type: String,
    },
    /// The key cannot be used for verification.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Wrong length for the method (ECDSA must be raw r||s).
    #[error("signature has the wrong length for {0}")]
    BadLength(&'static str),
    /// The cryptographic check failed.
    #[error("signature does not verify")]
    Invalid,
}

/// A `keytype` value (spec §2.4).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum KeyType {
    /// Raw 32-byte Ed25519 public key.
    Ed25519,
    /// DER SubjectPublicKeyInfo of an EC key.
    Ecdsa,
    /// PEM certificate bundle whose leaf holds an EC key.
    EcdsaX509,
    /// DER SubjectPublicKeyInfo of an RSA key.
    Rsa,
    /// PEM certificate bundle whose leaf holds an RSA key.
    RsaX509,
    /// Any other type: carried, never usable.
    Other(String),
}

impl KeyType {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::EcdsaX509 => "ecdsa-x509",
            KeyType::Rsa => "rsa",
            KeyType::RsaX509 => "rsa-x509",
            KeyType::Other(s) => s,
        }
    }

    /// Parses the wire string.
    pub fn parse(s: &str) -> KeyType {
        match s {
            "ed25519" => KeyType::Ed25519,
            "ecdsa" => KeyType::Ecdsa,
            "ecdsa-x509" => KeyType::EcdsaX509,
            "rsa" => KeyType::Rsa,
            "rsa-x509" => KeyType::RsaX509,
            other => KeyType::Other(other.to_owned()),
        }
    }

    /// Whether the public bytes are a PEM certificate bundle.
    pub fn is_x509(&self) -> bool {
        matches!(self, KeyType::EcdsaX509 | KeyType::RsaX509)
    }

    /// The signature method Go produces for this key type.
    pub fn default_method(&self) -> Option<SigMethod> {
        match self {
            KeyType::Ed25519 => Some(SigMethod::EdDsa),
            KeyType::Ecdsa | KeyType::EcdsaX509 => Some(SigMethod::Ecdsa),
            KeyType::Rsa | KeyType::RsaX509 => Some(SigMethod::RsaPss),
            KeyType::Other(_) => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature `method` (lower-cased on parse, as Go does).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum SigMethod {
    /// ECDSA over SHA-256, raw r||s.
    Ecdsa,
    /// Ed25519 (`eddsa`).
    EdDsa,
    /// Ed25519 under the TUF 1.0 name `ed25519`.
    Ed25519,
    /// RSASSA-PSS SHA-256, salt 32.
    RsaPss,
    /// RSASSA-PKCS1-v1_5 SHA-256 (verify only).
    RsaPkcs1v15,
    /// Unknown method: never verifies.
    Other(String),
}

impl SigMethod {
    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            SigMethod::Ecdsa => "ecdsa",
            SigMethod::EdDsa => "eddsa",
            SigMethod::Ed25519 => "ed25519",
            SigMethod::RsaPss => "rsapss",
            SigMethod::RsaPkcs1v15 => "rsapkcs1v15",
            SigMethod::Other(s) => s,
        }
    }

    /// Parses a method, lower-casing it first.
    pub fn parse(s: &str) -> SigMethod {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa" => SigMethod::Ecdsa,
            "eddsa" => SigMethod::EdDsa,
            "ed25519" => SigMethod::Ed25519,
            "rsapss" => SigMethod::RsaPss,
            "rsapkcs1v15" => SigMethod::RsaPkcs1v15,
            other => SigMethod::Other(other.to_owned()),
        }
    }
}

impl Serialize for SigMethod {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SigMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(SigMethod::parse(&s))
    }
}

/// The parsed public key behind a [`PublicKey`], independent of how it is encoded and of
/// its form (certificate or plain): two metadata keys with equal identities are one key
/// and count once toward a threshold (spec §2.5).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct KeyIdentity(Vec<u8>);

/// A public key as it appears in metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key_type: KeyType,
    public: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.key_type, self.key_id())
    }
}

/// What a public key verifies with, once decoded.
enum Material<'a> {
    Ed25519(&'a [u8]),
    P256(Vec<u8>),
    P384(Vec<u8>),
    /// PKCS#1 RSAPublicKey DER.
    Rsa(Vec<u8>),
}

impl PublicKey {
    /// Builds a key from its type and decoded `keyval.public` bytes.
    pub fn new(key_type: KeyType, public: Vec<u8>) -> Self {
        PublicKey { key_type, public }
    }

    /// The key type.
    pub fn key_type(&self) -> &KeyType {
        &self.key_type
    }

    /// The decoded `keyval.public` bytes (DER SPKI, raw Ed25519, or PEM text).
    pub fn public_bytes(&self) -> &[u8] {
        &self.public
    }

    /// The canonical JSON that the key ID hashes (spec §2.4.1).
    pub fn canonical_json(&self) -> Vec<u8> {
        let b64 = B64.encode(&self.public);
        let mut out = Vec::with_capacity(b64.len() + 64);
        out.extend_from_slice(b"{\"keytype\":");
        crate::cjson::write_string(&mut out, self.key_type.as_str());
        out.extend_from_slice(b",\"keyval\":{\"private\":null,\"public\":\"");
        out.extend_from_slice(b64.as_bytes());
        out.extend_from_slice(b"\"}}");
        out
    }

    /// The TUF key ID: SHA-256 of [`Self::canonical_json`].
    pub fn key_id(&self) -> KeyId {
        let json = self.canonical_json();
        counters::add(|c| {
            c.key_ids += 1;
            c.key_id_bytes += json.len() as u64;
        });
        let d = ring::digest::digest(&ring::digest::SHA256, &json);
        let mut arr = [0u8; 32];
        arr.copy_from_slice(d.as_ref());
        KeyId::from_digest(&arr)
    }

    /// The canonical key ID: for x509 keys, the ID of the leaf certificate's public key
    /// in plain form (spec §2.4.2); for other keys, the key ID.
    pub fn canonical_id(&self) -> Result<KeyId, KeyError> {
        Ok(self.to_plain()?.key_id())
    }

    /// The plain (non-certificate) form of the key: the leaf's SPKI as `ecdsa`/`rsa`.
    pub fn to_plain(&self) -> Result<PublicKey, KeyError> {
        let plain_type = match self.key_type {
            KeyType::EcdsaX509 => KeyType::Ecdsa,
            KeyType::RsaX509 => KeyType::Rsa,
            _ => return Ok(self.clone()),
        };
        let certs = crate::x509::parse_key_bundle(&self.public)?;
        let leaf = certs
            .first()
            .ok_or_else(|| KeyError::Certificate("empty bundle".into()))?;
        Ok(PublicKey::new(plain_type, crate::x509::spki_der(leaf)?))
    }

    /// The parsed key (see [`KeyIdentity`]). Fails for keys that cannot verify:
    /// unsupported types, non-canonical DER, oversized keys, malformed certificates.
    pub fn identity(&self) -> Result<KeyIdentity, KeyError> {
        let material = self.material()?;
        let (tag, bytes): (u8, &[u8]) = match &material {
            Material::Ed25519(pk) => (1, pk),
            Material::P256(point) => (2, point),
            Material::P384(point) => (3, point),
            Material::Rsa(pkcs1) => (4, pkcs1),
        };
        let mut id = Vec::with_capacity(bytes.len() + 1);
        id.push(tag);
        id.extend_from_slice(bytes);
        Ok(KeyIdentity(id))
    }

    fn material(&self) -> Result<Material<'_>, KeyError> {
        if self.public.len() > MAX_PUBLIC_KEY_LEN {
            return Err(KeyError::Malformed {
                kind: "public",
                reason: format!("larger than the {MAX_PUBLIC_KEY_LEN} bytes allowed"),
            });
        }
        match &self.key_type {
            KeyType::Ed25519 => {
                if self.public.len() != 32 {
                    return Err(KeyError::Malformed {
                        kind: "ed25519",
                        reason: "public key must be 32 bytes".into(),
                    });
                }
                Ok(Material::Ed25519(&self.public))
            }
            KeyType::Ecdsa | KeyType::Rsa => spki_material(&self.public, &self.key_type),
            KeyType::EcdsaX509 | KeyType::RsaX509 => {
                let plain = self.to_plain()?;
                let m = spki_material(&plain.public, &plain.key_type)?;
                Ok(match m {
                    Material::Ed25519(_) => {
                        return Err(KeyError::UnsupportedType(self.key_type.to_string()));
                    }
                    other => other,
                })
            }
            KeyType::Other(t) => Err(KeyError::UnsupportedType(t.clone())),
        }
    }

    /// Checks `sig` over `msg` with `method` (spec §2.5).
    pub fn verify(&self, method: &SigMethod, msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        counters::add(|c| c.verifications += 1);
        let mismatch = || SignatureError::MethodMismatch {
            method: method.as_str().to_owned(),
            key_type: self.key_type.to_string(),
        };
        let material = self.material()?;
        let ok = match (method, material) {
            (SigMethod::EdDsa | SigMethod::Ed25519, Material::Ed25519(pk)) => {
                // ed25519-dalek verifies ~1.6x faster than ring here (see the `core` bench).
                return verify_ed25519(pk, msg, sig);
            }
            (SigMethod::Ecdsa, Material::P256(point)) => {
                if sig.len() != 64 {
                    return Err(SignatureError::BadLength("ecdsa P-256 (64-byte r||s)"));
                }
                rsig::UnparsedPublicKey::new(&rsig::ECDSA_P256_SHA256_FIXED, point).verify(msg, sig)
            }
            (SigMethod::Ecdsa, Material::P384(point)) => {
                if sig.len() != 96 {
                    return Err(SignatureError::BadLength("ecdsa P-384 (96-byte r||s)"));
                }
                let der = raw_to_der_sig(sig);
                rsig::UnparsedPublicKey::new(&rsig::ECDSA_P384_SHA256_ASN1, point).verify(msg, &der)
            }
            (SigMethod::RsaPss, Material::Rsa(pkcs1)) => {
                if sig.len() < 256 {
                    return Err(SignatureError::BadLength("rsapss (at least 256 bytes)"));
                }
                rsig::UnparsedPublicKey::new(&rsig::RSA_PSS_2048_8192_SHA256, pkcs1)
                    .verify(msg, sig)
            }
            (SigMethod::RsaPkcs1v15, Material::Rsa(pkcs1)) => {
                rsig::UnparsedPublicKey::new(&rsig::RSA_PKCS1_2048_8192_SHA256, pkcs1)
                    .verify(msg, sig)
            }
            _ => return Err(mismatch()),
        };
        ok.map_err(|_| SignatureError::Invalid)
    }
}

/// The JSON shape of a key in metadata.
#[derive(Serialize, Deserialize)]
struct KeyJson {
    keytype: String,
    keyval: KeyValJson,
}

#[derive(Serialize, Deserialize)]
struct KeyValJson {
    private: Option<serde_json::Value>,
    public: String,
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyJson {
            keytype: self.key_type.as_str().to_owned(),
            keyval: KeyValJson {
                private: None,
                public: B64.encode(&self.public),
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let k = KeyJson::deserialize(d)?;
        // Refused before decoding: a padded key would cost every verifier work.
        if k.keyval.public.len() > MAX_PUBLIC_KEY_LEN.div_ceil(3) * 4 {
            return Err(serde::de::Error::custom(format!(
                "keyval.public is larger than the {MAX_PUBLIC_KEY_LEN} bytes allowed"
            )));
        }
        if !matches!(k.keyval.private, None | Some(serde_json::Value::Null)) {
            return Err(serde::de::Error::custom(
                "public key carries private key material",
            ));
        }
        let public = B64
            .decode(k.keyval.public.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("keyval.public is not base64: {e}")))?;
        Ok(PublicKey::new(KeyType::parse(&k.keytype), public))
    }
}

fn spki_material<'a>(der: &[u8], kt: &KeyType) -> Result<Material<'a>, KeyError> {
    let malformed = |reason: &str| KeyError::Malformed {
        kind: "SubjectPublicKeyInfo",
        reason: reason.into(),
    };
    let mut outer = asn1::Reader::new(der);
    let seq = outer.expect(tag::SEQUENCE).map_err(|e| malformed(e.0))?;
    if !outer.is_empty() {
        return Err(malformed("trailing data"));
    }
    let mut r = asn1::Reader::new(seq);
    let alg = r.expect(tag::SEQUENCE).map_err(|e| malformed(e.0))?;
    let bits = r.expect(tag::BIT_STRING).map_err(|e| malformed(e.0))?;
    let key = match bits.split_first() {
        Some((0, rest)) => rest.to_vec(),
        _ => return Err(malformed("bad BIT STRING")),
    };
    let mut a = asn1::Reader::new(alg);
    let alg_oid = a.expect(tag::OID).map_err(|e| malformed(e.0))?;
    let (material, canonical_alg) = match (alg_oid, kt) {
        (oid::EC_PUBLIC_KEY, KeyType::Ecdsa) => {
            let (m, curve, len) = match a.optional(tag::OID).map_err(|e| malformed(e.0))? {
                Some(oid::P256) => (Material::P256(key.clone()), oid::P256, 65),
                Some(oid::P384) => (Material::P384(key.clone()), oid::P384, 97),
                _ => return Err(KeyError::UnsupportedCurve),
            };
            if key.len() != len || key.first() != Some(&4) {
                return Err(malformed("EC point is not uncompressed"));
            }
            let mut alg = asn1::tlv(tag::OID, oid::EC_PUBLIC_KEY);
            asn1::write(&mut alg, tag::OID, curve);
            (m, alg)
        }
        (oid::RSA, KeyType::Rsa) => {
            let pkcs1 = canonical_rsa(&key)?;
            if pkcs1 != key {
                return Err(malformed("RSA public key is not canonical DER"));
            }
            let mut alg = asn1::tlv(tag::OID, oid::RSA);
            alg.extend_from_slice(&[tag::NULL, 0]);
            (Material::Rsa(key.clone()), alg)
        }
        _ => return Err(malformed("algorithm does not match the key type")),
    };
    // One key, one encoding: non-minimal lengths, trailing data or optional NULLs would
    // give the same key a second key ID (and a second vote toward a threshold).
    let mut body = asn1::tlv(tag::SEQUENCE, &canonical_alg);
    let mut bits = vec![0u8];
    bits.extend_from_slice(&key);
    asn1::write(&mut body, tag::BIT_STRING, &bits);
    if asn1::tlv(tag::SEQUENCE, &body) != der {
        return Err(malformed("not canonical DER"));
    }
    Ok(material)
}

/// Re-encodes a PKCS#1 `RSAPublicKey` canonically, refusing moduli above
/// [`MAX_RSA_BITS`].
fn canonical_rsa(pkcs1: &[u8]) -> Result<Vec<u8>, KeyError> {
    let malformed = |reason: &str| KeyError::Malformed {
        kind: "RSA",
        reason: reason.into(),
    };
    let mut outer = asn1::Reader::new(pkcs1);
    let seq = outer.expect(tag::SEQUENCE).map_err(|e| malformed(e.0))?;
    let mut r = asn1::Reader::new(seq);
    let n = r.expect(tag::INTEGER).map_err(|e| malformed(e.0))?;
    let e = r.expect(tag::INTEGER).map_err(|e| malformed(e.0))?;
    if !outer.is_empty() || !r.is_empty() {
        return Err(malformed("trailing data"));
    }
    let magnitude = |v: &[u8]| -> Vec<u8> { v.iter().copied().skip_while(|b| *b == 0).collect() };
    let n_mag = magnitude(n);
    let bits = n_mag
        .first()
        .map_or(0, |b| n_mag.len() * 8 - b.leading_zeros() as usize);
    if bits > MAX_RSA_BITS {
        return Err(malformed(&format!(
            "modulus of {bits} bits, above the {MAX_RSA_BITS} allowed"
        )));
    }
    let mut body = asn1::tlv(tag::INTEGER, &asn1::uint_content(&n_mag));
    asn1::write(&mut body, tag::INTEGER, &asn1::uint_content(&magnitude(e)));
    Ok(asn1::tlv(tag::SEQUENCE, &body))
}

fn verify_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
    use ed25519_dalek::Verifier as _;
    let pk: &[u8; 32] = pk
        .try_into()
        .map_err(|_| SignatureError::BadLength("ed25519 public key"))?;
    let sig: &[u8; 64] = sig
        .try_into()
        .map_err(|_| SignatureError::BadLength("ed25519 (64 bytes)"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(pk).map_err(|_| SignatureError::Invalid)?;
    key.verify(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| SignatureError::Invalid)
}

/// Raw r||s → DER ECDSA-Sig-Value.
fn raw_to_der_sig(raw: &[u8]) -> Vec<u8> {
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = asn1::tlv(tag::INTEGER, &asn1::uint_content(r));
    asn1::write(&mut body, tag::INTEGER, &asn1::uint_content(s));
    asn1::tlv(tag::SEQUENCE, &body)
}

/// Signs canonical bytes with one key. Implemented by [`PrivateKey`] here and by remote
/// signers (notary-signer) elsewhere.
pub trait Signer {
    /// The plain public key; its key ID is the canonical key ID.
    fn public_key(&self) -> &PublicKey;
    /// Signs `msg` (the canonical bytes S) and returns the method and signature bytes.
    fn sign(&self, msg: &[u8]) -> Result<(SigMethod, Vec<u8>), SignError>;
}

/// Which private key algorithm to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 (what Go generates for every role).
    EcdsaP256,
    /// Ed25519 (used by Go's `local` trust service).
    Ed25519,
}

enum PrivInner {
    P256 {
        scalar: Zeroizing<Vec<u8>>,
        pair: rsig::EcdsaKeyPair,
    },
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        key: Box<ed25519_dalek::SigningKey>,
    },
    Rsa {
        pkcs1: Zeroizing<Vec<u8>>,
        pair: rsig::RsaKeyPair,
    },
}

/// A private key held in memory. Secret bytes live in [`Zeroizing`] buffers and are
/// never printed.
pub struct PrivateKey {
    inner: PrivInner,
    public: PublicKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PrivateKey({}, {}, <redacted>)",
            self.public.key_type,
            self.public.key_id()
        )
    }
}

fn backend<E: fmt::Display>(e: E) -> KeyError {
    KeyError::Malformed {
        kind: "private",
        reason: e.to_string(),
    }
}

impl PrivateKey {
    /// Generates a fresh key from the system's secure RNG.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        match alg {
            Algorithm::EcdsaP256 => {
                let doc = rsig::EcdsaKeyPair::generate_pkcs8(
                    &rsig::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &rng,
                )
                .map_err(backend)?;
                let doc = Zeroizing::new(doc.as_ref().to_vec());
                let parsed = crate::keyfile::parse_private_key_info(&doc)
                    .map_err(|e| backend(e.to_string()))?;
                Ok(parsed)
            }
            Algorithm::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                rng.fill(seed.as_mut()).map_err(backend)?;
                Self::from_ed25519_seed(&seed)
            }
        }
    }

    /// An Ed25519 key from its 32-byte seed.
    pub fn from_ed25519_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let key = Box::new(ed25519_dalek::SigningKey::from_bytes(seed));
        let public = PublicKey::new(KeyType::Ed25519, key.verifying_key().to_bytes().to_vec());
        Ok(PrivateKey {
            inner: PrivInner::Ed25519 {
                seed: Zeroizing::new(*seed),
                key,
            },
            public,
        })
    }

    /// A P-256 key from its scalar and uncompressed public point.
    pub fn from_p256(scalar: &[u8], point: &[u8]) -> Result<Self, KeyError> {
        let pair = rsig::EcdsaKeyPair::from_private_key_and_public_key(
            &rsig::ECDSA_P256_SHA256_FIXED_SIGNING,
            scalar,
            point,
            &SystemRandom::new(),
        )
        .map_err(backend)?;
        let public = PublicKey::new(KeyType::Ecdsa, ec_spki(point));
        Ok(PrivateKey {
            inner: PrivInner::P256 {
                scalar: Zeroizing::new(scalar.to_vec()),
                pair,
            },
            public,
        })
    }

    /// An RSA key from PKCS#1 `RSAPrivateKey` DER.
    pub fn from_rsa_pkcs1(der: &[u8]) -> Result<Self, KeyError> {
        let pair = rsig::RsaKeyPair::from_der(der).map_err(backend)?;
        let pkcs1_pub = pair.public().as_ref().to_vec();
        let mut alg = asn1::tlv(tag::OID, oid::RSA);
        alg.extend_from_slice(&[tag::NULL, 0]);
        let mut body = asn1::tlv(tag::SEQUENCE, &alg);
        let mut bits = vec![0u8];
        bits.extend_from_slice(&pkcs1_pub);
        asn1::write(&mut body, tag::BIT_STRING, &bits);
        let public = PublicKey::new(KeyType::Rsa, asn1::tlv(tag::SEQUENCE, &body));
        Ok(PrivateKey {
            inner: PrivInner::Rsa {
                pkcs1: Zeroizing::new(der.to_vec()),
                pair,
            },
            public,
        })
    }

    /// The plain public key (`ecdsa`, `ed25519` or `rsa`).
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The algorithm family name Go shows (`ecdsa`, `ed25519`, `rsa`).
    pub fn algorithm_name(&self) -> &'static str {
        match self.inner {
            PrivInner::P256 { .. } => "ecdsa",
            PrivInner::Ed25519 { .. } => "ed25519",
            PrivInner::Rsa { .. } => "rsa",
        }
    }

    /// The secret parts, for key-file encoding only.
    pub(crate) fn secret(&self) -> SecretParts<'_> {
        match &self.inner {
            PrivInner::P256 { scalar, pair } => SecretParts::P256 {
                scalar,
                point: pair.public_key().as_ref(),
            },
            PrivInner::Ed25519 { seed, .. } => SecretParts::Ed25519 {
                seed,
                public: self.public.public_bytes(),
            },
            PrivInner::Rsa { pkcs1, .. } => SecretParts::Rsa { pkcs1 },
        }
    }

    /// The DER signature over `msg` that X.509 uses (ECDSA as ASN.1, not raw).
    pub(crate) fn sign_x509(&self, msg: &[u8]) -> Result<Vec<u8>, SignError> {
        let rng = SystemRandom::new();
        match &self.inner {
            PrivInner::P256 { scalar, pair } => {
                let asn1_pair = rsig::EcdsaKeyPair::from_private_key_and_public_key(
                    &rsig::ECDSA_P256_SHA256_ASN1_SIGNING,
                    scalar,
                    pair.public_key().as_ref(),
                    &rng,
                )
                .map_err(|e| SignError::Backend(e.to_string()))?;
                Ok(asn1_pair
                    .sign(&rng, msg)
                    .map_err(|e| SignError::Backend(e.to_string()))?
                    .as_ref()
                    .to_vec())
            }
            PrivInner::Ed25519 { key, .. } => Ok(ed25519_dalek::Signer::sign(key.as_ref(), msg)
                .to_bytes()
                .to_vec()),
            PrivInner::Rsa { pair, .. } => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&rsig::RSA_PKCS1_SHA256, &rng, msg, &mut sig)
                    .map_err(|e| SignError::Backend(e.to_string()))?;
                Ok(sig)
            }
        }
    }
}

pub(crate) enum SecretParts<'a> {
    P256 {
        scalar: &'a [u8],
        point: &'a [u8],
    },
    Ed25519 {
        seed: &'a [u8; 32],
        public: &'a [u8],
    },
    Rsa {
        pkcs1: &'a [u8],
    },
}

impl Signer for PrivateKey {
    fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<(SigMethod, Vec<u8>), SignError> {
        let rng = SystemRandom::new();
        match &self.inner {
            PrivInner::P256 { pair, .. } => {
                let sig = pair
                    .sign(&rng, msg)
                    .map_err(|e| SignError::Backend(e.to_string()))?;
                Ok((SigMethod::Ecdsa, sig.as_ref().to_vec()))
            }
            PrivInner::Ed25519 { key, .. } => Ok((
                SigMethod::EdDsa,
                ed25519_dalek::Signer::sign(key.as_ref(), msg)
                    .to_bytes()
                    .to_vec(),
            )),
            PrivInner::Rsa { pair, .. } => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(&rsig::RSA_PSS_SHA256, &rng, msg, &mut sig)
                    .map_err(|e| SignError::Backend(e.to_string()))?;
                Ok((SigMethod::RsaPss, sig))
            }
        }
    }
}

/// DER SubjectPublicKeyInfo of a P-256 point, as Go's `x509.MarshalPKIXPublicKey` writes it.
pub(crate) fn ec_spki(point: &[u8]) -> Vec<u8> {
    let mut alg = asn1::tlv(tag::OID, oid::EC_PUBLIC_KEY);
    asn1::write(&mut alg, tag::OID, oid::P256);
    let mut body = asn1::tlv(tag::SEQUENCE, &alg);
    let mut bits = vec![0u8];
    bits.extend_from_slice(point);
    asn1::write(&mut body, tag::BIT_STRING, &bits);
    asn1::tlv(tag::SEQUENCE, &body)
}

/// SHA-256 digest.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-512 digest.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    let d = ring::digest::digest(&ring::digest::SHA512, data);
    let mut out = [0u8; 64];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_key_id_example() {
        let public = B64
            .decode("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE42wSsuuWueEMgwPNVnHCkfP9TIKlnnhywnVV0odf/Qpx2HVUo72j+hzc3HkPS/O60PQtNKABM4/GbaY7a7CZhg==")
            .unwrap();
        let k = PublicKey::new(KeyType::Ecdsa, public);
        assert_eq!(
            k.key_id().as_str(),
            "4cdea4f5fff1fcacbaa518282d15241097c879d21692c2c4db485bcfea7b4058"
        );
    }

    #[test]
    fn sign_and_verify_each_algorithm() {
        for alg in [Algorithm::EcdsaP256, Algorithm::Ed25519] {
            let k = PrivateKey::generate(alg).unwrap();
            let (m, sig) = k.sign(b"hello").unwrap();
            k.public().verify(&m, b"hello", &sig).unwrap();
            assert_eq!(
                k.public().verify(&m, b"hellO", &sig),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn ecdsa_der_signatures_are_refused() {
        let k = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let der = k.sign_x509(b"m").unwrap();
        assert!(k.public().verify(&SigMethod::Ecdsa, b"m", &der).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let k = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let SecretParts::Ed25519 { seed, .. } = k.secret() else {
            unreachable!()
        };
        let dbg = format!("{k:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode(seed)));
    }
}
