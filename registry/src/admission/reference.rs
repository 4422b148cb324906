//! Container image references as Kubernetes and Docker read them
//! (`distribution/reference`'s grammar and its normalisation):
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] path
//! domain    := host [ ":" port ]        host: DNS name, IPv4 or "[" IPv6 "]"
//! path      := component ( "/" component )*   (lowercase, as OCI repository names)
//! ```
//!
//! Normalisation: a first component that holds no `.` or `:` and is not `localhost` is
//! part of the path, and the domain is `docker.io`; `index.docker.io` is `docker.io`;
//! a one-component path on `docker.io` gets `library/`; no tag and no digest means
//! `latest`. Scanners are linear in the input (no regex engine).

use std::fmt;

use crate::names::{self, Digest};

/// The registry an image without a domain comes from.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag of an image named without tag or digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest reference accepted (name, tag and digest together).
pub const MAX_REFERENCE_LEN: usize = 1024;

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry host, with its port if one was written (`127.0.0.1:5000`,
    /// `docker.io`), lowercase.
    pub domain: String,
    /// The repository inside that registry (`org/app`, `library/nginx`).
    pub path: String,
    /// The tag as written; `None` when the reference names none.
    pub tag: Option<String>,
    /// The digest the reference pins, if any.
    pub digest: Option<Digest>,
    /// The name exactly as written, without tag or digest: what a digest is appended to
    /// when the reference is rewritten (`127.0.0.1:5000/org/app`).
    pub written_name: String,
}

impl ImageReference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<ImageReference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() > MAX_REFERENCE_LEN {
            return Err(ReferenceError::TooLong);
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(ReferenceError::BadCharacter(c));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = Digest::parse(d).map_err(|e| match e {
                    names::DigestError::Malformed => ReferenceError::BadDigest,
                    names::DigestError::Unsupported => ReferenceError::UnsupportedDigest,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A tag follows the last ':' when no '/' comes after it (a ':' before the last
        // '/' is a port).
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !names::valid_tag(t)
        {
            return Err(ReferenceError::BadTag(t.to_owned()));
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (domain, path) = split_domain(name)?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        if domain.len() + 1 + path.len() > names::MAX_NAME_LEN {
            return Err(ReferenceError::TooLong);
        }
        if !names::valid_name(&path) {
            return Err(ReferenceError::BadPath(path));
        }
        Ok(ImageReference {
            domain,
            path,
            tag: tag.map(str::to_owned),
            digest,
            written_name: name.to_owned(),
        })
    }

    /// The tag to resolve: the written one, or `latest` for a reference with neither tag
    /// nor digest; `None` for a digest-only reference.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some(DEFAULT_TAG),
            (None, Some(_)) => None,
        }
    }

    /// The reference pinned to `digest`: the name as written, `@`, the digest (the tag
    /// is dropped: the runtime ignores a tag beside a digest).
    pub fn pinned(&self, digest: &str) -> String {
        format!("{}@{digest}", self.written_name)
    }
}

impl fmt::Display for ImageReference {
    /// The fully qualified form (`docker.io/library/nginx:latest`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = self.effective_tag() {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Why a reference was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Nothing, or nothing before the tag or digest.
    #[error("the reference is empty")]
    Empty,
    /// Longer than [`MAX_REFERENCE_LEN`], or the name longer than 255 bytes.
    #[error("the reference is too long")]
    TooLong,
    /// Whitespace or a control character.
    #[error("the reference holds the character {0:?}")]
    BadCharacter(char),
    /// Not `algorithm:hex`.
    #[error("the digest is malformed")]
    BadDigest,
    /// A digest algorithm other than sha256 and sha512.
    #[error("the digest algorithm is not supported (sha256 or sha512)")]
    UnsupportedDigest,
    /// A tag outside `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid tag {0:?}")]
    BadTag(String),
    /// Uppercase letters in the repository path.
    #[error("the repository name must be lowercase")]
    Uppercase,
    /// A repository path outside the OCI grammar.
    #[error("invalid repository name {0:?}")]
    BadPath(String),
    /// A malformed registry host or port.
    #[error("invalid registry host {0:?}")]
    BadDomain(String),
}

/// Splits `name` into a normalised domain and path.
fn split_domain(name: &str) -> Result<(String, String), ReferenceError> {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.starts_with('[')
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            if !valid_domain(first) {
                return Err(ReferenceError::BadDomain(first.to_owned()));
            }
            (first.to_ascii_lowercase(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN.to_owned()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((domain, path))
}

/// `host[:port]` with host a DNS name (labels of letters, digits and inner `-`), an
/// IPv4 address (a DNS-shaped string too) or a bracketed IPv6 address.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(inner) = d.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            a => match a.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    (host.is_empty() && d.starts_with('[')) || valid_host(host)
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn full(s: &str) -> String {
        ImageReference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(full("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(full("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(full("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(full("docker.io/nginx"), "docker.io/library/nginx:latest");
        assert_eq!(
            full("index.docker.io/library/nginx:1"),
            "docker.io/library/nginx:1"
        );
        assert_eq!(full("a/b/c:t"), "docker.io/a/b/c:t");
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("127.0.0.1:5000/org/app:v2@{d}")).unwrap();
        assert_eq!(r.domain, "127.0.0.1:5000");
        assert_eq!(r.path, "org/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.digest.as_ref().map(|d| d.to_string()), Some(d.clone()));
        assert_eq!(r.pinned(&d), format!("127.0.0.1:5000/org/app@{d}"));
        let r = ImageReference::parse("localhost:5000/app").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.effective_tag()),
            ("localhost:5000", "app", Some("latest"))
        );
        let r = ImageReference::parse("localhost/app").unwrap();
        assert_eq!(r.domain, "localhost");
        let r = ImageReference::parse(&format!("Registry.Example.com/org/app@{d}")).unwrap();
        assert_eq!(
            (r.domain.as_str(), r.effective_tag()),
            ("registry.example.com", None)
        );
        assert_eq!(r.written_name, "Registry.Example.com/org/app");
        let r = ImageReference::parse("[::1]:5000/org/app:v1").unwrap();
        assert_eq!(r.domain, "[::1]:5000");
        assert_eq!(
            full("registry.example.com/org/app"),
            "registry.example.com/org/app:latest"
        );
    }

    #[test]
    fn malformed_references() {
        for bad in [
            "",
            "nginx:",
            ":v1",
            "Nginx",
            "org/App:v1",
            "127.0.0.1:5000/Org/app",
            "a b",
            "app\n",
            "app:v1:v2",
            "app:-v1",
            "app@sha256:abc",
            "app@md5:0123",
            "app//x",
            "host:port/app",
            "ho_st.example/app",
            "[::1/app",
            "[zz::1]:5000/app",
            "registry.example.com:99999999/app",
            "/app",
            "app/",
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} accepted");
        }
        // An uppercase first component is a host, as distribution reads it.
        assert_eq!(ImageReference::parse("Org/app").unwrap().domain, "org");
        assert_eq!(
            ImageReference::parse(&"a".repeat(2000)),
            Err(ReferenceError::TooLong)
        );
        assert_eq!(
            ImageReference::parse(&format!("r.io/{}", "a".repeat(260))),
            Err(ReferenceError::TooLong)
        );
        assert_eq!(
            ImageReference::parse(&format!("app@blake3:{}", "a".repeat(64))),
            Err(ReferenceError::UnsupportedDigest)
        );
    }
}
