//! Repository names, tags and digests as OCI distribution defines them (spec 1.1):
//! checked by hand-written scanners (linear, no regex engine), so a hostile name costs
//! time proportional to its length.

use std::fmt;

/// The longest repository name we accept (clients cap `host[:port]/name` at 255).
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
pub const MAX_TAG_LEN: usize = 128;

/// `true` when `name` is a valid repository name: `/`-separated components, each
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, at most [`MAX_NAME_LEN`] bytes in all.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`, followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// `true` when `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// A digest algorithm the registry stores content under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// `sha256` (64 hex digits).
    Sha256,
    /// `sha512` (128 hex digits).
    Sha512,
}

impl Algorithm {
    /// The name used in digests.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    /// Hex digits in an encoded digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
    /// Parses an algorithm name we support.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a digest string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Not `algorithm:encoded` as the grammar says, or wrong length/case for the algorithm.
    Malformed,
    /// Grammatical, but an algorithm we do not store (e.g. `blake3`).
    Unsupported,
}

/// A content digest (`sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, enc) = s.split_once(':').ok_or(DigestError::Malformed)?;
        if !grammatical_algorithm(alg) || enc.is_empty() || enc.len() > 1024 {
            return Err(DigestError::Malformed);
        }
        if !enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-')
        {
            return Err(DigestError::Malformed);
        }
        let algorithm = Algorithm::parse(alg).ok_or(DigestError::Unsupported)?;
        if enc.len() != algorithm.hex_len()
            || !enc
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_owned(),
        })
    }

    /// Builds a digest from a raw hash output.
    pub fn from_raw(algorithm: Algorithm, raw: &[u8]) -> Digest {
        Digest {
            algorithm,
            hex: hex::encode(raw),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
    /// Computes the digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = crate::hashing::Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// `[a-z0-9]+([+._-][a-z0-9]+)*`
fn grammatical_algorithm(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    b.windows(2).all(|w| alnum(w[0]) || alnum(w[1]))
        && b.iter().all(|&x| alnum(x) || b"+._-".contains(&x))
}

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A tag.
    Tag(String),
    /// A digest.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with `:` is a digest, otherwise a tag.
    pub fn parse(s: &str) -> Result<Reference, DigestError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else if valid_tag(s) {
            Ok(Reference::Tag(s.to_owned()))
        } else {
            Err(DigestError::Malformed)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/ubuntu",
            "a.b_c__d---e/f0",
            "conformance/repo1",
            "a/b/c/d",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "_trust", "a/_trust", "a b",
            "a.-b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest") && valid_tag("_x") && valid_tag("v1.2-rc_3"));
        assert!(!valid_tag("") && !valid_tag(".x") && !valid_tag("-x") && !valid_tag("a/b"));
        assert!(valid_tag(&"a".repeat(128)) && !valid_tag(&"a".repeat(129)));
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&d).map(|d| d.to_string()), Ok(d));
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        assert_eq!(
            Digest::parse("sha256:totallywrong"),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            Digest::parse(&format!("sha256:{}", "A".repeat(64))),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            Digest::parse(&format!("blake3:{}", "a".repeat(64))),
            Err(DigestError::Unsupported)
        );
        assert_eq!(Digest::parse("sha256"), Err(DigestError::Malformed));
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(Reference::parse("bad tag").is_err());
    }
}
