//! Validated identifiers: GUNs, role names and key IDs (spec §1, §2.4.1, §2.11).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// A GUN that cannot be stored, addressed or published.
    #[error("invalid GUN {name:?}: {reason}")]
    Gun {
        /// The refused input.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A role name that is neither a base role nor a valid delegation.
    #[error("invalid role name {name:?}: {reason}")]
    Role {
        /// The refused input.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A key ID that is not 64 lower-case hex digits.
    #[error("invalid key ID {0:?}: expected 64 lower-case hex digits")]
    KeyId(String),
}

macro_rules! string_newtype_common {
    ($t:ident) => {
        impl $t {
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.0)
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $t::new(&s).map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $t::new(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A Globally Unique Name of a trusted collection, e.g. `docker.io/library/alpine`.
///
/// Refused: empty names, names over 255 bytes (Go's `gun varchar(255)` column), `*`
/// (Go's router cannot address it), control characters and whitespace (Go's envelope
/// and URLs cannot carry them), and empty, `.` or `..` path segments (the GUN becomes
/// a directory path in every client's trust directory).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gun(String);
string_newtype_common!(Gun);

impl Gun {
    /// Maximum GUN length in bytes.
    pub const MAX_LEN: usize = 255;

    /// Validates `name` as a GUN.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::Gun {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(err("empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(err("longer than 255 bytes"));
        }
        if name.contains('*') {
            return Err(err("contains '*'"));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(err("contains a control or whitespace character"));
        }
        if name
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(err("has an empty, '.' or '..' path segment"));
        }
        Ok(Gun(name.to_owned()))
    }
}

/// A TUF role name: `root`, `targets`, `snapshot`, `timestamp` or a delegation
/// `targets/<name>` (spec §2.11).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);
string_newtype_common!(RoleName);

impl RoleName {
    /// Delegation names must be shorter than this many bytes.
    pub const MAX_LEN: usize = 256;

    /// Validates a base role or delegation name.
    pub fn new(name: &str) -> Result<Self, NameError> {
        match name {
            "root" | "targets" | "snapshot" | "timestamp" => Ok(RoleName(name.to_owned())),
            _ => Self::delegation(name),
        }
    }

    /// Validates a delegation name: `targets/` prefix, `[-a-z0-9_/]`, < 256 bytes,
    /// a clean path.
    pub fn delegation(name: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::Role {
            name: name.to_owned(),
            reason,
        };
        let Some(rest) = name.strip_prefix("targets/") else {
            return Err(err("not a base role and not under targets/"));
        };
        if name.len() >= Self::MAX_LEN {
            return Err(err("256 bytes or longer"));
        }
        if !name
            .bytes()
            .all(|b| matches!(b, b'-' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'/'))
        {
            return Err(err(
                "only lower-case letters, digits, '-', '_' and '/' are allowed",
            ));
        }
        if rest.split('/').any(|seg| seg.is_empty()) {
            return Err(err("not a clean path (empty segment or trailing '/')"));
        }
        Ok(RoleName(name.to_owned()))
    }

    /// The root role.
    pub fn root() -> Self {
        RoleName("root".into())
    }
    /// The top-level targets role.
    pub fn targets() -> Self {
        RoleName("targets".into())
    }
    /// The snapshot role.
    pub fn snapshot() -> Self {
        RoleName("snapshot".into())
    }
    /// The timestamp role.
    pub fn timestamp() -> Self {
        RoleName("timestamp".into())
    }

    /// Whether this is a delegated targets role (`targets/...`).
    pub fn is_delegation(&self) -> bool {
        self.0.starts_with("targets/")
    }

    /// Whether this is `targets` or a delegation under it.
    pub fn is_targets_like(&self) -> bool {
        self.0 == "targets" || self.is_delegation()
    }

    /// The delegating role (`path.Dir`): `targets/a/b` → `targets/a`, `targets/a` → `targets`.
    pub fn parent(&self) -> Option<RoleName> {
        if !self.is_delegation() {
            return None;
        }
        let idx = self.0.rfind('/')?;
        Some(RoleName(self.0[..idx].to_owned()))
    }

    /// Whether `self` is `other` or a delegation below it.
    pub fn is_under(&self, other: &RoleName) -> bool {
        self == other
            || (self.0.len() > other.0.len()
                && self.0.starts_with(&other.0)
                && self.0.as_bytes()[other.0.len()] == b'/')
    }
}

/// A key ID: lower-case hex SHA-256 of the key's canonical JSON (spec §2.4.1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);
string_newtype_common!(KeyId);

impl KeyId {
    /// Validates a key ID string.
    pub fn new(id: &str) -> Result<Self, NameError> {
        if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(KeyId(id.to_owned()))
        } else {
            Err(NameError::KeyId(id.to_owned()))
        }
    }

    /// Builds the ID from a SHA-256 digest.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        KeyId(hex::encode(digest))
    }

    /// The first 7 hex digits, as the Go CLI shows in prompts.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guns() {
        assert!(Gun::new("docker.io/library/alpine").is_ok());
        assert!(Gun::new("example.com/test/app").is_ok());
        for bad in [
            "", "a*b", "a b", "a\tb", "/a", "a/", "a//b", "a/../b", "./a", "a\u{7f}",
        ] {
            assert!(Gun::new(bad).is_err(), "{bad:?}");
        }
        assert!(Gun::new(&"a".repeat(256)).is_err());
    }

    #[test]
    fn roles() {
        for ok in [
            "root",
            "targets",
            "snapshot",
            "timestamp",
            "targets/releases",
            "targets/a/b-c_d/0",
        ] {
            assert!(RoleName::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "Root",
            "targets/",
            "targets//a",
            "targets/A",
            "targets/*",
            "targets/a/",
            "foo",
            "targets/a b",
            "targets/./a",
            "targets/..",
        ] {
            assert!(RoleName::new(bad).is_err(), "{bad}");
        }
        let long = format!("targets/{}", "a".repeat(248));
        assert!(RoleName::new(&long).is_err());
        let r = RoleName::new("targets/a/b").unwrap();
        assert_eq!(r.parent().unwrap().as_str(), "targets/a");
        assert_eq!(r.parent().unwrap().parent().unwrap(), RoleName::targets());
        assert!(r.is_under(&RoleName::targets()));
        assert!(
            !RoleName::new("targets/ab")
                .unwrap()
                .is_under(&RoleName::new("targets/a").unwrap())
        );
    }

    #[test]
    fn key_ids() {
        assert!(KeyId::new(&"a".repeat(64)).is_ok());
        assert!(KeyId::new(&"A".repeat(64)).is_err());
        assert!(KeyId::new("abc").is_err());
    }
}
