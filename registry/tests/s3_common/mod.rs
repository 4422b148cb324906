//! Helpers shared by the S3 and HA tests: HTTP through curl, test data, S3 settings for
//! a moto server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use notary_registry::names::{Algorithm, Digest};
use notary_registry::storage::s3::{S3Options, Secret};
use notary_tests::Moto;

/// The smallest part S3 accepts: tests cross part boundaries with little data.
pub const PART: usize = 5 << 20;

/// Settings for `bucket` on `moto` (any credentials work there).
pub fn s3_options(moto: &Moto, bucket: &str) -> S3Options {
    S3Options {
        bucket: bucket.to_owned(),
        endpoint: Some(moto.url.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test-key".into()),
        secret_access_key: Some(Secret::new("test-secret".into())),
        prefix: "reg".into(),
        allow_http: true,
        part_size: Some(PART),
    }
}

/// Deterministic bytes (xorshift), different per seed.
pub fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `sha256:<hex>`.
pub fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

/// A curl response.
pub struct Http {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Http {
    /// A response header (last occurrence, case-insensitive).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .next_back()
            .unwrap_or_default()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request through curl (`url` absolute); a body is always sent for POST, PUT and
/// PATCH (an empty one by default, so Content-Length is 0).
pub fn curl(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Http {
    let dir = tempfile::tempdir().unwrap();
    let out_body = dir.path().join("body");
    let out_headers = dir.path().join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-H", "Expect:", "-o"])
        .arg(&out_body)
        .arg("-D")
        .arg(&out_headers)
        .args(["-w", "%{http_code}"]);
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if body.is_some() || matches!(method, "POST" | "PUT" | "PATCH") {
        let p = dir.path().join("in");
        std::fs::write(&p, body.unwrap_or_default()).unwrap();
        cmd.arg("--data-binary").arg(format!("@{}", p.display()));
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            cmd.args(["-H", "Content-Type: application/octet-stream"]);
        }
    }
    let out = cmd.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "curl {method} {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Http {
        status: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap(),
        headers: std::fs::read_to_string(&out_headers).unwrap_or_default(),
        body: std::fs::read(&out_body).unwrap_or_default(),
    }
}

/// Makes a `Location` header absolute.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{base}{location}")
    }
}

/// POST + PUT `?digest=` (monolithic); returns the digest.
pub fn push_blob(base: &str, repo: &str, blob: &[u8]) -> String {
    let d = sha256(blob);
    let r = curl(
        "POST",
        &format!("{base}/v2/{repo}/blobs/uploads/"),
        &[],
        None,
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = absolute(base, &r.header("location"));
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = curl("PUT", &format!("{loc}{sep}digest={d}"), &[], Some(blob));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), d);
    d
}

/// Pushes a config and `layer` and a manifest tagged `tag`; returns (manifest digest,
/// manifest bytes, layer digest).
pub fn push_image(base: &str, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = push_blob(base, repo, config);
    let l = push_blob(base, repo, layer);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let r = curl(
        "PUT",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        Some(&manifest),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (sha256(&manifest), manifest, l)
}
