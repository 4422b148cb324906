//! The metadata model: root, targets (and delegated targets), snapshot and timestamp
//! role objects (spec §2), and [`Signed`], a parsed or produced envelope that keeps the
//! exact file bytes F and the verification bytes V next to the typed value.
//!
//! A [`Signed`] value is *untrusted*: only [`crate::verify`] turns it into
//! [`crate::verify::Verified`].

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::cjson::CanonicalError;
use crate::crypto::{PublicKey, SigMethod, SignError, Signer};
use crate::dialect::Dialect;
use crate::expires::Expires;
use crate::names::{KeyId, RoleName};

/// Why bytes are not a metadata file of the expected role type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// JSON, but not a `{"signed":{...},"signatures":[...]}` envelope.
    #[error("malformed envelope: {0}")]
    Envelope(&'static str),
    /// `_type` is not the expected one.
    #[error("expected _type {expected:?}, found {found:?}")]
    WrongType {
        /// Expected `_type`.
        expected: &'static str,
        /// Found `_type`.
        found: String,
    },
    /// A field has the wrong type or an invalid value.
    #[error("invalid {role_type} metadata: {reason}")]
    Schema {
        /// `_type` being parsed.
        role_type: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The `signed` member has no canonical form (fractions, huge integers).
    #[error("signed content cannot be canonicalised: {0}")]
    Canonical(#[from] CanonicalError),
}

/// A base64 byte string (hashes, signatures).
#[derive(Clone, PartialEq, Eq, Debug, Hash, PartialOrd, Ord)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Hashes are small: encode on the stack.
        let mut buf = [0u8; 128];
        match B64.encode_slice(&self.0, &mut buf) {
            Ok(n) => s.serialize_str(std::str::from_utf8(&buf[..n]).unwrap_or_default()),
            Err(_) => s.serialize_str(&B64.encode(&self.0)),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64.decode(s.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// Length and hashes of a file, plus optional `custom` data (spec §2.10).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct FileMeta {
    /// Opaque JSON; omitted when absent, kept when `null` (Go keeps the raw `null`).
    /// Must be canonical to be signable (spec §3.7 a).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_value"
    )]
    pub custom: Option<Value>,
    /// Algorithm name → digest.
    pub hashes: BTreeMap<String, Bytes>,
    /// Length in bytes.
    pub length: u64,
}

fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Why bytes do not match a [`FileMeta`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Length differs.
    #[error("length {actual} does not match the expected {expected}")]
    Length {
        /// From the meta.
        expected: u64,
        /// Of the bytes.
        actual: u64,
    },
    /// A known hash differs.
    #[error("{0} hash does not match")]
    Mismatch(&'static str),
    /// No sha256 or sha512 to check.
    #[error("no known hash algorithm (sha256, sha512) to check")]
    NoKnownHash,
}

impl FileMeta {
    /// Meta of `bytes` with sha256 and sha512, as Go computes it.
    pub fn from_bytes(bytes: &[u8]) -> FileMeta {
        let mut hashes = BTreeMap::new();
        hashes.insert(
            "sha256".to_owned(),
            Bytes(crate::crypto::sha256(bytes).to_vec()),
        );
        hashes.insert(
            "sha512".to_owned(),
            Bytes(crate::crypto::sha512(bytes).to_vec()),
        );
        FileMeta {
            custom: None,
            hashes,
            length: bytes.len() as u64,
        }
    }

    /// The sha256 digest, if present and 32 bytes long.
    pub fn sha256(&self) -> Option<[u8; 32]> {
        self.hashes
            .get("sha256")
            .and_then(|h| h.0.as_slice().try_into().ok())
    }

    /// Checks `bytes`: equal length, at least one known hash, every known hash equal.
    pub fn check(&self, bytes: &[u8]) -> Result<(), HashError> {
        if self.length != bytes.len() as u64 {
            return Err(HashError::Length {
                expected: self.length,
                actual: bytes.len() as u64,
            });
        }
        self.check_hashes(bytes)
    }

    /// Checks only the hashes (for targets whose length is carried separately).
    pub fn check_hashes(&self, bytes: &[u8]) -> Result<(), HashError> {
        let mut known = 0;
        if let Some(h) = self.hashes.get("sha256") {
            known += 1;
            if h.0 != crate::crypto::sha256(bytes) {
                return Err(HashError::Mismatch("sha256"));
            }
        }
        if let Some(h) = self.hashes.get("sha512") {
            known += 1;
            if h.0 != crate::crypto::sha512(bytes) {
                return Err(HashError::Mismatch("sha512"));
            }
        }
        if known == 0 {
            return Err(HashError::NoKnownHash);
        }
        Ok(())
    }

    /// Known hashes have the right sizes (sha256: 32 bytes, sha512: 64 bytes).
    pub(crate) fn hash_sizes_ok(&self) -> bool {
        self.hashes.iter().all(|(alg, h)| match alg.as_str() {
            "sha256" => h.0.len() == 32,
            "sha512" => h.0.len() == 64,
            _ => true,
        })
    }
}

/// Keys and threshold of a role in root (spec §2.6).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RoleKeys {
    /// Authorised key IDs (order kept as received).
    pub keyids: Vec<KeyId>,
    /// Signatures needed.
    pub threshold: u32,
}

/// `root.json` (spec §2.6).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Root {
    /// Carried, no effect.
    pub consistent_snapshot: bool,
    /// Expiry.
    pub expires: Expires,
    /// All keys, by TUF key ID.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// `root`, `targets`, `snapshot`, `timestamp` (extra entries are kept).
    pub roles: BTreeMap<String, RoleKeys>,
    /// Version.
    pub version: u64,
}

/// One delegation entry (spec §2.7).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct DelegationRole {
    /// Authorised key IDs. Go writes a delegation whose last key was removed (`docker
    /// trust signer remove` on `targets/releases`) with `"keyids":null` (a nil slice):
    /// `null` reads as empty, and empty is written as `null`, so such files round-trip.
    #[serde(deserialize_with = "null_as_empty", serialize_with = "empty_as_null")]
    pub keyids: Vec<KeyId>,
    /// Full role name, a direct child of the delegating role.
    pub name: RoleName,
    /// Target-name prefixes this role may sign (`""` = all); omitted when empty.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub paths: Vec<String>,
    /// Signatures needed.
    pub threshold: u32,
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

fn empty_as_null<S: Serializer>(v: &[KeyId], s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        v.serialize(s)
    }
}

/// The `delegations` member: always present, `{"keys":{},"roles":[]}` when empty.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize)]
pub struct Delegations {
    /// Keys by TUF key ID.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// Ordered delegation entries (order = walk priority).
    pub roles: Vec<DelegationRole>,
}

/// `targets.json` and delegated targets roles (spec §2.7).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Targets {
    /// Delegations made by this role.
    #[serde(default)]
    pub delegations: Delegations,
    /// Expiry.
    pub expires: Expires,
    /// Target name → meta.
    #[serde(default)]
    pub targets: BTreeMap<String, FileMeta>,
    /// Version.
    pub version: u64,
}

/// `snapshot.json` (spec §2.8).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// Expiry.
    pub expires: Expires,
    /// Role name → meta of its current file.
    pub meta: BTreeMap<String, FileMeta>,
    /// Version.
    pub version: u64,
}

/// `timestamp.json` (spec §2.9).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Timestamp {
    /// Expiry.
    pub expires: Expires,
    /// Exactly `snapshot` → meta.
    pub meta: BTreeMap<String, FileMeta>,
    /// Version.
    pub version: u64,
}

/// Common behaviour of the four role objects.
pub trait RoleMetadata: Serialize + DeserializeOwned + Clone {
    /// The `_type` value.
    const TYPE: &'static str;
    /// The version.
    fn version(&self) -> u64;
    /// The expiry.
    fn expires(&self) -> &Expires;
    /// Sets version and expiry (used before re-signing).
    fn set_version_expires(&mut self, version: u64, expires: Expires);
}

macro_rules! role_impl {
    ($t:ty, $name:literal) => {
        impl RoleMetadata for $t {
            const TYPE: &'static str = $name;
            fn version(&self) -> u64 {
                self.version
            }
            fn expires(&self) -> &Expires {
                &self.expires
            }
            fn set_version_expires(&mut self, version: u64, expires: Expires) {
                self.version = version;
                self.expires = expires;
            }
        }
    };
}
role_impl!(Root, "Root");
role_impl!(Targets, "Targets");
role_impl!(Snapshot, "Snapshot");
role_impl!(Timestamp, "Timestamp");

impl Root {
    /// Keys and threshold of a role.
    pub fn role(&self, name: &str) -> Option<&RoleKeys> {
        self.roles.get(name)
    }
}

impl Targets {
    /// An empty targets object.
    pub fn new(expires: Expires) -> Self {
        Targets {
            delegations: Delegations::default(),
            expires,
            targets: BTreeMap::new(),
            version: 0,
        }
    }

    /// A delegation entry by name.
    pub fn delegation(&self, name: &RoleName) -> Option<&DelegationRole> {
        self.delegations.roles.iter().find(|r| &r.name == name)
    }
}

/// One entry of `signatures`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Signature {
    /// TUF key ID of the signing key as listed in the metadata.
    pub keyid: KeyId,
    /// Method (lower-cased).
    pub method: SigMethod,
    /// Signature bytes.
    pub sig: Bytes,
}

/// A metadata file: the typed role object, its signatures, and its bytes.
#[derive(Clone, Debug)]
pub struct Signed<T> {
    signed: T,
    signatures: Vec<Signature>,
    /// V: what signatures are checked against.
    verify_bytes: Vec<u8>,
    /// F: the exact file bytes.
    file: Vec<u8>,
    dialect: Dialect,
}

impl<T: RoleMetadata> Signed<T> {
    /// Parses Notary v1 file bytes (not verified).
    pub fn parse(file: impl Into<Vec<u8>>) -> Result<Self, ParseError> {
        Self::parse_dialect(file.into(), Dialect::NotaryV1)
    }

    /// Parses file bytes of the given dialect.
    pub fn parse_dialect(file: Vec<u8>, dialect: Dialect) -> Result<Self, ParseError> {
        let (signed, signatures, verify_bytes) = dialect.decode_envelope::<T>(&file, T::TYPE)?;
        Ok(Signed {
            signed,
            signatures,
            verify_bytes,
            file,
            dialect,
        })
    }

    /// The canonical signing bytes S of a role object.
    pub fn signing_bytes(signed: &T, dialect: Dialect) -> Result<Vec<u8>, CanonicalError> {
        match dialect {
            // The direct encoder; the tree-based one stays the reference and the fallback.
            Dialect::NotaryV1 => {
                match crate::canonical_ser::to_canonical_typed(signed, Some(T::TYPE)) {
                    Ok(bytes) => Ok(bytes),
                    Err(crate::canonical_ser::SerError::Canonical(e)) => Err(e),
                    Err(_) => crate::cjson::to_canonical(&dialect.signed_value(signed, T::TYPE)),
                }
            }
        }
    }

    /// Assembles a file from a role object and signatures made over its signing bytes.
    pub fn from_parts(signed: T, signatures: Vec<Signature>) -> Result<Self, CanonicalError> {
        let dialect = Dialect::NotaryV1;
        let verify_bytes = Self::signing_bytes(&signed, dialect)?;
        let file = dialect.encode_envelope(&verify_bytes, &signatures)?;
        Ok(Signed {
            signed,
            signatures,
            verify_bytes,
            file,
            dialect,
        })
    }

    /// Signs `signed` with each `(metadata key ID, signer)` pair: the signature carries
    /// the key ID as listed in the metadata (the certificate form for x509 keys).
    pub fn sign(signed: T, signers: &[(KeyId, &dyn Signer)]) -> Result<Self, SignError> {
        let s = Self::signing_bytes(&signed, Dialect::NotaryV1)?;
        let mut signatures = Vec::with_capacity(signers.len());
        for (keyid, signer) in signers {
            let (method, sig) = signer.sign(&s)?;
            signatures.push(Signature {
                keyid: keyid.clone(),
                method,
                sig: Bytes(sig),
            });
        }
        Ok(Self::from_parts(signed, signatures)?)
    }

    /// The role object. Untrusted until verified.
    pub fn signed(&self) -> &T {
        &self.signed
    }

    /// The signatures.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// V, the bytes signatures are checked against.
    pub fn verify_bytes(&self) -> &[u8] {
        &self.verify_bytes
    }

    /// F, the exact file bytes.
    pub fn file_bytes(&self) -> &[u8] {
        &self.file
    }

    /// Consumes the value, returning F.
    pub fn into_file_bytes(self) -> Vec<u8> {
        self.file
    }

    /// The role object, consumed.
    pub fn into_signed(self) -> T {
        self.signed
    }

    /// Length and sha256/sha512 of F.
    pub fn file_meta(&self) -> FileMeta {
        FileMeta::from_bytes(&self.file)
    }

    /// Whether F is exactly what Go would write for this content (spec §3.7 b): the
    /// same bytes come back from re-serialising the typed value with the same
    /// signatures. Servers reject uploads for which this is false.
    pub fn is_canonical(&self) -> bool {
        Self::signing_bytes(&self.signed, self.dialect)
            .and_then(|s| self.dialect.encode_envelope(&s, &self.signatures))
            .is_ok_and(|f| f == self.file)
    }

    /// Re-serialises as Go would (drops unknown fields, normalises times).
    pub fn reserialize(&self) -> Result<Vec<u8>, CanonicalError> {
        let s = Self::signing_bytes(&self.signed, self.dialect)?;
        self.dialect.encode_envelope(&s, &self.signatures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_and_schema_errors() {
        let f = br#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":1},"signatures":[]}"#;
        assert!(matches!(
            Signed::<Root>::parse(f.to_vec()),
            Err(ParseError::WrongType { .. })
        ));
        let t = Signed::<Targets>::parse(f.to_vec()).unwrap();
        assert_eq!(t.signed().version, 1);
        let bad = br#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":-1},"signatures":[]}"#;
        assert!(matches!(
            Signed::<Targets>::parse(bad.to_vec()),
            Err(ParseError::Schema { .. })
        ));
        let frac = br#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":1.5},"signatures":[]}"#;
        assert!(Signed::<Targets>::parse(frac.to_vec()).is_err());
    }

    fn direct_equals_tree<T: RoleMetadata>(file: &[u8]) {
        let parsed = Signed::<T>::parse(file.to_vec()).unwrap();
        let direct = crate::canonical_ser::to_canonical_typed(parsed.signed(), Some(T::TYPE))
            .unwrap_or_else(|e| panic!("direct encoder fell back: {e}"));
        let tree =
            crate::cjson::to_canonical(&Dialect::NotaryV1.signed_value(parsed.signed(), T::TYPE))
                .unwrap();
        assert_eq!(direct, tree);
        assert_eq!(direct, parsed.verify_bytes());
    }

    #[test]
    fn direct_encoder_is_used_and_matches_the_tree_encoder() {
        direct_equals_tree::<Root>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-app/server-snapshot/root.json"
        ));
        direct_equals_tree::<Targets>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-app/server-snapshot/targets.json"
        ));
        direct_equals_tree::<Targets>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-custom/targets.json"
        ));
        direct_equals_tree::<Snapshot>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-app/server-snapshot/snapshot.json"
        ));
        direct_equals_tree::<Timestamp>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-app/server-snapshot/timestamp.json"
        ));
        direct_equals_tree::<Targets>(include_bytes!(
            "../../fixtures/go-notary-0.7/repo-app/server-snapshot/targets/rsa.json"
        ));
    }

    #[test]
    fn file_meta_checks() {
        let m = FileMeta::from_bytes(b"abc");
        m.check(b"abc").unwrap();
        assert!(matches!(
            m.check(b"abd"),
            Err(HashError::Mismatch("sha256"))
        ));
        assert!(matches!(m.check(b"abcd"), Err(HashError::Length { .. })));
        let empty = FileMeta {
            custom: None,
            hashes: BTreeMap::new(),
            length: 3,
        };
        assert_eq!(empty.check(b"abc"), Err(HashError::NoKnownHash));
    }
}
