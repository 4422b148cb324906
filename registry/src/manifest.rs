//! Manifest checks on push: the JSON must be one of the four manifest kinds we store
//! (Docker schema2, Docker manifest list, OCI image manifest, OCI index), its
//! `mediaType` must agree with `Content-Type`, and its descriptors must be well formed.
//! What it references is returned for the database (presence checks and GC marks).

use serde::Deserialize;
use serde_json::Value;

use crate::names::Digest;

/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI empty descriptor's media type.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Most descriptors (config, layers, index entries) one manifest may reference: what a
/// push makes the database check and record stays bounded whatever fits in the size
/// limit (a 4 MiB manifest could otherwise name some 40 000 blobs).
pub const MAX_REFERENCES: usize = 4096;

/// What a manifest references.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The media type it is stored under.
    pub media_type: String,
    /// For the referrers API: `artifactType`, else the config media type of an image.
    pub artifact_type: Option<String>,
    /// `subject.digest`.
    pub subject: Option<Digest>,
    /// `annotations` re-serialised.
    pub annotations: Option<String>,
    /// Blobs that must be in the repository (config, layers).
    pub blobs: Vec<String>,
    /// Non-distributable layers (referenced, not required).
    pub foreign_blobs: Vec<String>,
    /// Child manifests (index entries).
    pub children: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    data: Option<String>,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, Value>>,
}

fn check_descriptor(d: &Descriptor, what: &str) -> Result<Digest, String> {
    if d.media_type.is_empty() || d.media_type.len() > 255 {
        return Err(format!("{what}: invalid mediaType"));
    }
    if d.size < 0 {
        return Err(format!("{what}: negative size"));
    }
    let digest =
        Digest::parse(&d.digest).map_err(|_| format!("{what}: invalid digest {:?}", d.digest))?;
    if let Some(data) = &d.data {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| format!("{what}: data is not base64"))?;
        if bytes.len() as i64 != d.size || Digest::of(digest.algorithm(), &bytes) != digest {
            return Err(format!("{what}: data does not match digest and size"));
        }
    }
    Ok(digest)
}

fn non_distributable(d: &Descriptor) -> bool {
    d.media_type.contains(".nondistributable.")
        || d.media_type.contains(".foreign.")
        || d.urls.as_ref().is_some_and(|u| !u.is_empty())
}

/// Parses and checks a pushed manifest. `content_type` is the request's (parameters
/// ignored). Errors are messages for `MANIFEST_INVALID`.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("invalid manifest JSON: {e}"))?;
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_owned())
        .filter(|c| !c.is_empty());
    let media_type = match (&raw.media_type, &ct) {
        (Some(m), Some(c)) if m != c => {
            return Err(format!("mediaType {m} does not match Content-Type {c}"));
        }
        (Some(m), _) => m.clone(),
        (None, Some(c)) => c.clone(),
        (None, None) => {
            if raw.manifests.is_some() {
                OCI_INDEX.to_owned()
            } else {
                OCI_MANIFEST.to_owned()
            }
        }
    };
    if media_type.starts_with("application/vnd.docker.distribution.manifest.v1+")
        || raw.schema_version == Some(1)
    {
        return Err("Docker schema1 manifests are not accepted".into());
    }
    if raw.schema_version != Some(2) {
        return Err("schemaVersion must be 2".into());
    }
    let mut p = Parsed {
        media_type: media_type.clone(),
        annotations: raw
            .annotations
            .as_ref()
            .map(|a| Value::Object(a.clone()).to_string()),
        ..Parsed::default()
    };
    if let Some(s) = &raw.subject {
        p.subject = Some(check_descriptor(s, "subject")?);
    }
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            if raw.manifests.is_some() {
                return Err("an image manifest has no manifests field".into());
            }
            let config = raw.config.as_ref().ok_or("config is required")?;
            let cd = check_descriptor(config, "config")?;
            if config.media_type == OCI_EMPTY
                && raw.artifact_type.is_none()
                && media_type == OCI_MANIFEST
            {
                // Allowed by older artifacts; the referrers API then reports the config type.
            }
            p.blobs.push(cd.to_string());
            let layers = raw.layers.as_deref().unwrap_or_default();
            if media_type == DOCKER_MANIFEST && raw.layers.is_none() {
                return Err("layers is required".into());
            }
            for (i, l) in layers.iter().enumerate() {
                let d = check_descriptor(l, &format!("layers[{i}]"))?;
                if non_distributable(l) {
                    p.foreign_blobs.push(d.to_string());
                } else {
                    p.blobs.push(d.to_string());
                }
            }
            p.artifact_type = raw
                .artifact_type
                .clone()
                .or_else(|| Some(config.media_type.clone()));
        }
        DOCKER_LIST | OCI_INDEX => {
            if raw.config.is_some() || raw.layers.is_some() {
                return Err("an index has no config or layers".into());
            }
            let manifests = raw.manifests.as_ref().ok_or("manifests is required")?;
            for (i, m) in manifests.iter().enumerate() {
                p.children
                    .push(check_descriptor(m, &format!("manifests[{i}]"))?.to_string());
            }
            p.artifact_type = raw.artifact_type.clone();
        }
        other => return Err(format!("unsupported manifest media type {other}")),
    }
    let references = p.blobs.len() + p.foreign_blobs.len() + p.children.len();
    if references > MAX_REFERENCES {
        return Err(format!(
            "the manifest references {references} descriptors; at most {MAX_REFERENCES} are accepted"
        ));
    }
    p.blobs.sort();
    p.blobs.dedup();
    p.children.sort();
    p.children.dedup();
    Ok(p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_and_index() {
        let m = serde_json::json!({"schemaVersion":2,"mediaType":DOCKER_MANIFEST,
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":d('a')},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":d('b')},
                      {"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","size":2,"digest":d('c'),"urls":["http://x"]}]});
        let p = parse(m.to_string().as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        let oci = serde_json::json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"config":{"mediaType":OCI_EMPTY,"size":2,"digest":d('a')},"layers":[]});
        assert!(parse(oci.to_string().as_bytes(), Some(OCI_MANIFEST)).is_ok());
        assert_eq!(p.blobs, vec![d('a'), d('b')]);
        assert_eq!(p.foreign_blobs, vec![d('c')]);
        assert!(parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).is_err());
        let i = serde_json::json!({"schemaVersion":2,"mediaType":OCI_INDEX,"manifests":[{"mediaType":OCI_MANIFEST,"size":3,"digest":d('e')}],
            "subject":{"mediaType":OCI_MANIFEST,"size":3,"digest":d('f')}});
        let p = parse(i.to_string().as_bytes(), None).unwrap();
        assert_eq!(p.children, vec![d('e')]);
        assert_eq!(p.subject.unwrap().to_string(), d('f'));
    }

    #[test]
    fn refusals() {
        assert!(parse(b"{", None).is_err());
        assert!(parse(b"{\"schemaVersion\":1}", None).is_err());
        let bad = serde_json::json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"config":{"mediaType":"x","size":1,"digest":"sha256:nope"},"layers":[]});
        assert!(parse(bad.to_string().as_bytes(), None).is_err());
        let data = serde_json::json!({"schemaVersion":2,"mediaType":OCI_MANIFEST,"config":{"mediaType":OCI_EMPTY,"size":2,"digest":d('a'),"data":"e30="},"layers":[]});
        assert!(parse(data.to_string().as_bytes(), None).is_err());
    }
}
