//! Manifests: PUT (by tag or digest, `?tag=` parameters), GET / HEAD, DELETE. Every
//! operation asks the policy decision point first.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::{authorize, check_name, empty, hv, needs_for, next_chunk, parse_digest, query_pairs};
use crate::Registry;
use crate::access::{Decision, Identity, Operation, PolicyRequest};
use crate::error::{Code, RegistryError, Result};
use crate::manifest;
use crate::meta::{NewManifest, PutManifestError};
use crate::names::{Algorithm, Digest, Reference, valid_tag};

/// Most tags one PUT may set with `?tag=`.
const MAX_TAG_PARAMS: usize = 32;

fn manifest_unknown(reference: &Reference) -> RegistryError {
    let detail = match reference {
        Reference::Tag(t) => serde_json::json!({"Tag": t}),
        Reference::Digest(d) => serde_json::json!(d.to_string()),
    };
    RegistryError::detail(Code::ManifestUnknown, "manifest unknown", detail)
}

async fn gate(
    reg: &Registry,
    name: &str,
    tag: Option<&str>,
    digest: &str,
    identity: &Identity,
    operation: Operation,
) -> Result<Option<String>> {
    let request = PolicyRequest {
        repository: name,
        tag,
        digest,
        identity,
        operation,
    };
    match reg.policy.decide(&request).await {
        Decision::Allow => Ok(None),
        Decision::Warn(w) => Ok(Some(w)),
        Decision::Deny(reason) => {
            metrics::counter!("registry_policy_denials_total").increment(1);
            Err(RegistryError::new(Code::Denied, reason))
        }
        Decision::Unavailable(reason) => {
            metrics::counter!("registry_policy_denials_total").increment(1);
            Err(RegistryError::new(Code::Unavailable, reason)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")))
        }
    }
}

fn warning_header(w: &str) -> HeaderValue {
    let text: String = w
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(1000)
        .collect();
    hv(&format!("299 - \"{text}\""))
}

pub(super) async fn handle(
    reg: &Registry,
    name: &str,
    reference: &str,
    req: Request,
) -> Result<Response> {
    check_name(name)?;
    let method = req.method().clone();
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    ) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on manifests",
        ));
    }
    let identity = authorize(reg, req.headers(), name, needs_for(&method)).await?;
    let reference = if reference.contains(':') {
        Reference::Digest(parse_digest(reference)?)
    } else if valid_tag(reference) {
        Reference::Tag(reference.to_owned())
    } else {
        return Err(RegistryError::detail(
            Code::TagInvalid,
            "invalid tag",
            serde_json::json!(reference.chars().take(200).collect::<String>()),
        ));
    };
    match method {
        Method::PUT => put(reg, name, reference, &identity, req).await,
        Method::DELETE => delete(reg, name, reference, &identity).await,
        _ => get(reg, name, reference, &identity, method == Method::HEAD).await,
    }
}

async fn get(
    reg: &Registry,
    name: &str,
    reference: Reference,
    identity: &Identity,
    head: bool,
) -> Result<Response> {
    let row = match &reference {
        Reference::Tag(t) => reg.db.tagged_manifest(name, t).await?,
        Reference::Digest(d) => reg.db.manifest(name, &d.to_string()).await?,
    };
    let Some(row) = row else {
        if reg.db.repository_id(name).await?.is_none() {
            return Err(RegistryError::detail(
                Code::NameUnknown,
                "repository name not known to registry",
                serde_json::json!({"name": name}),
            ));
        }
        return Err(manifest_unknown(&reference));
    };
    let tag = match &reference {
        Reference::Tag(t) => Some(t.as_str()),
        Reference::Digest(_) => None,
    };
    let op = if head {
        Operation::Head
    } else {
        Operation::Pull
    };
    let warning = gate(reg, name, tag, &row.digest, identity, op).await?;
    let mut headers = vec![
        (header::CONTENT_TYPE, hv(&row.media_type)),
        (header::CONTENT_LENGTH, hv(&row.body.len().to_string())),
        (
            header::HeaderName::from_static("docker-content-digest"),
            hv(&row.digest),
        ),
        (header::ETAG, hv(&format!("\"{}\"", row.digest))),
    ];
    if let Some(w) = warning {
        headers.push((header::WARNING, warning_header(&w)));
    }
    if head {
        return Ok(empty(StatusCode::OK, headers));
    }
    let mut resp = Response::new(Body::from(row.body));
    for (k, v) in headers {
        resp.headers_mut().append(k, v);
    }
    Ok(resp)
}

async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes> {
    let too_large = || {
        RegistryError::new(
            Code::TooLarge,
            format!("manifests are limited to {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    loop {
        let Some(chunk) = next_chunk(&mut stream, Code::ManifestInvalid).await? else {
            break;
        };
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn put(
    reg: &Registry,
    name: &str,
    reference: Reference,
    identity: &Identity,
    req: Request,
) -> Result<Response> {
    let limit = reg.options.max_manifest_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|l| l > limit as u64) {
        return Err(RegistryError::new(
            Code::TooLarge,
            format!("manifests are limited to {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let q = query_pairs(req.uri());
    let mut tags: Vec<String> = Vec::new();
    for (k, v) in &q {
        if k == "tag" {
            if !valid_tag(v) {
                return Err(RegistryError::detail(
                    Code::TagInvalid,
                    "invalid tag",
                    serde_json::json!(v.chars().take(200).collect::<String>()),
                ));
            }
            if tags.len() >= MAX_TAG_PARAMS {
                return Err(RegistryError::new(
                    Code::TagInvalid,
                    format!("at most {MAX_TAG_PARAMS} tags per request"),
                )
                .with_status(StatusCode::URI_TOO_LONG));
            }
            tags.push(v.clone());
        }
    }
    let tag_params = !tags.is_empty();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_limited(req.into_body(), limit).await?;
    let parsed = manifest::parse(&body, content_type.as_deref())
        .map_err(|m| RegistryError::new(Code::ManifestInvalid, m))?;
    let algorithm = match &reference {
        Reference::Digest(d) => d.algorithm(),
        Reference::Tag(_) => Algorithm::Sha256,
    };
    let digest = Digest::of(algorithm, &body);
    match &reference {
        Reference::Digest(d) if d != &digest => {
            return Err(RegistryError::detail(
                Code::DigestInvalid,
                "manifest digest does not match the content",
                serde_json::json!({"provided": d.to_string(), "computed": digest.to_string()}),
            ));
        }
        Reference::Tag(t) => tags.insert(0, t.clone()),
        Reference::Digest(_) => {}
    }
    let d = digest.to_string();
    let mut warnings = Vec::new();
    if tags.is_empty() {
        if let Some(w) = gate(reg, name, None, &d, identity, Operation::Push).await? {
            warnings.push(w);
        }
    }
    for t in &tags {
        if let Some(w) = gate(reg, name, Some(t), &d, identity, Operation::Push).await? {
            warnings.push(w);
        }
    }
    let new = NewManifest {
        digest: d.clone(),
        media_type: parsed.media_type.clone(),
        artifact_type: parsed.artifact_type.clone(),
        subject: parsed.subject.as_ref().map(|s| s.to_string()),
        annotations: parsed.annotations.clone(),
        body,
        required_blobs: parsed.blobs.clone(),
        optional_blobs: parsed.foreign_blobs.clone(),
        children: parsed.children.clone(),
        children_required: !reg.options.sparse_indexes,
    };
    match reg.db.put_manifest(name, &new, &tags).await {
        Ok(()) => {}
        Err(PutManifestError::Missing(missing)) => {
            let errors = missing
                .into_iter()
                .take(100)
                .map(|m| {
                    (
                        Code::ManifestBlobUnknown,
                        "blob unknown to registry".to_owned(),
                        serde_json::json!(m),
                    )
                })
                .collect();
            return Err(RegistryError::many(StatusCode::BAD_REQUEST, errors));
        }
        Err(PutManifestError::Db(e)) => return Err(e.into()),
    }
    metrics::counter!("registry_manifests_pushed_total").increment(1);
    reg.notify_manifest_change(name);
    let mut headers = vec![
        (header::LOCATION, hv(&format!("/v2/{name}/manifests/{d}"))),
        (
            header::HeaderName::from_static("docker-content-digest"),
            hv(&d),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
    ];
    if let Some(s) = &parsed.subject {
        headers.push((
            header::HeaderName::from_static("oci-subject"),
            hv(&s.to_string()),
        ));
    }
    if tag_params {
        headers.push((
            header::HeaderName::from_static("oci-tag"),
            hv(&tags.join(", ")),
        ));
    }
    for w in warnings {
        headers.push((header::WARNING, warning_header(&w)));
    }
    Ok(empty(StatusCode::CREATED, headers))
}

async fn delete(
    reg: &Registry,
    name: &str,
    reference: Reference,
    identity: &Identity,
) -> Result<Response> {
    match &reference {
        Reference::Tag(t) => {
            let Some(row) = reg.db.tagged_manifest(name, t).await? else {
                return Err(manifest_unknown(&reference));
            };
            gate(reg, name, Some(t), &row.digest, identity, Operation::Delete).await?;
            if !reg.db.delete_tag(name, t).await? {
                return Err(manifest_unknown(&reference));
            }
        }
        Reference::Digest(d) => {
            let d = d.to_string();
            if reg.db.manifest(name, &d).await?.is_none() {
                return Err(manifest_unknown(&reference));
            }
            gate(reg, name, None, &d, identity, Operation::Delete).await?;
            for t in reg.db.tags_of(name, &d).await? {
                gate(reg, name, Some(&t), &d, identity, Operation::Delete).await?;
            }
            if !reg.db.delete_manifest(name, &d).await? {
                return Err(manifest_unknown(&reference));
            }
        }
    }
    metrics::counter!("registry_manifest_deletes_total").increment(1);
    reg.notify_manifest_change(name);
    Ok(empty(
        StatusCode::ACCEPTED,
        vec![(header::CONTENT_LENGTH, HeaderValue::from_static("0"))],
    ))
}
