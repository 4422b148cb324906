//! Blob uploads: monolithic (POST then PUT, or a single POST), chunked (PATCH with
//! `Content-Range`, 416 on a wrong offset with the session left intact), streamed
//! (PATCH without `Content-Range`), cross-repository mounts, status and cancel.
//!
//! Bytes are hashed as they arrive and appended to the store; the session's length,
//! hash state and store state only advance in the database after the store has made
//! the bytes durable, so a request cut mid-body, a crash or a restart leaves the session
//! exactly where its last complete request left it, resumable by any process.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::{authorize, check_name, empty, hv, next_chunk, parse_digest, query_get, query_pairs};
use crate::Registry;
use crate::access::Action;
use crate::error::{Code, RegistryError, Result};
use crate::hashing::Hasher;
use crate::meta::UploadRow;
use crate::names::{Algorithm, Digest};

const PUSH: &[Action] = &[Action::Pull, Action::Push];

fn new_upload_id() -> Result<String> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| RegistryError::internal("random", "no randomness"))?;
    Ok(hex::encode(b))
}

fn session_headers(name: &str, id: &str, size: i64) -> Vec<(header::HeaderName, HeaderValue)> {
    vec![
        (
            header::LOCATION,
            hv(&format!("/v2/{name}/blobs/uploads/{id}")),
        ),
        (header::RANGE, hv(&format!("0-{}", (size - 1).max(0)))),
        (
            header::HeaderName::from_static("docker-upload-uuid"),
            hv(id),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
    ]
}

fn created(name: &str, digest: &Digest) -> Response {
    let d = digest.to_string();
    empty(
        StatusCode::CREATED,
        vec![
            (header::LOCATION, hv(&format!("/v2/{name}/blobs/{d}"))),
            (
                header::HeaderName::from_static("docker-content-digest"),
                hv(&d),
            ),
            (header::CONTENT_LENGTH, HeaderValue::from_static("0")),
        ],
    )
}

fn unknown_upload() -> RegistryError {
    RegistryError::new(Code::BlobUploadUnknown, "blob upload unknown to registry")
}

/// Marks a session busy for the life of the guard (one writer per session).
struct Busy<'a> {
    reg: &'a Registry,
    id: String,
}

impl<'a> Busy<'a> {
    fn take(reg: &'a Registry, id: &str) -> Result<Busy<'a>> {
        let mut set = reg.busy_uploads.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(id.to_owned()) {
            return Err(RegistryError::new(
                Code::RangeInvalid,
                "another request is writing this upload",
            ));
        }
        Ok(Busy {
            reg,
            id: id.to_owned(),
        })
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut set = self
            .reg
            .busy_uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
    }
}

/// `POST /v2/<name>/blobs/uploads/`.
pub(super) async fn start(reg: &Registry, name: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    if req.method() != Method::POST {
        return Err(RegistryError::new(
            Code::Unsupported,
            "uploads start with POST",
        ));
    }
    authorize(reg, req.headers(), name, PUSH).await?;
    let q = query_pairs(req.uri());
    if let Some(mount) = query_get(&q, "mount") {
        let digest = parse_digest(mount)?;
        if try_mount(reg, req.headers(), name, &digest, query_get(&q, "from")).await? {
            metrics::counter!("registry_blob_mounts_total").increment(1);
            return Ok(created(name, &digest));
        }
    }
    let single = query_get(&q, "digest").map(parse_digest).transpose()?;
    let algorithm = match (&single, query_get(&q, "digest-algorithm")) {
        (Some(d), _) => d.algorithm(),
        (None, Some(a)) => Algorithm::parse(a).ok_or_else(|| {
            RegistryError::detail(
                Code::DigestInvalid,
                "unsupported digest algorithm",
                serde_json::json!(a.chars().take(64).collect::<String>()),
            )
        })?,
        (None, None) => Algorithm::Sha256,
    };
    let id = new_upload_id()?;
    let backend_state = reg.store.start_upload(&id).await?;
    let row = UploadRow {
        id: id.clone(),
        repository: name.to_owned(),
        algorithm: algorithm.as_str().to_owned(),
        size: 0,
        hash_state: Hasher::new(algorithm).save(),
        backend_state,
        updated_at: 0,
    };
    reg.db.create_upload(&row).await?;
    metrics::counter!("registry_uploads_started_total").increment(1);
    match single {
        Some(digest) => {
            let _busy = Busy::take(reg, &id)?;
            if let Some(len) = inline_candidate(reg, &row, req.headers()) {
                return finish_inline(reg, name, row, req.into_body(), len, &digest).await;
            }
            let (row, hasher) = append(reg, row, req.into_body(), None, false).await?;
            finish(reg, name, row, hasher, &digest).await
        }
        None => Ok(empty(StatusCode::ACCEPTED, session_headers(name, &id, 0))),
    }
}

async fn try_mount(
    reg: &Registry,
    headers: &HeaderMap,
    name: &str,
    digest: &Digest,
    from: Option<&str>,
) -> Result<bool> {
    let key = digest.to_string();
    match from {
        Some(from) if crate::names::valid_name(from) => {
            // Never reveal a blob of a repository the caller cannot read.
            if from != name && !reg.access.allows(headers, from, &[Action::Pull]).await {
                return Ok(false);
            }
            if reg.db.repository_blob(from, &key).await?.is_none() {
                return Ok(false);
            }
            Ok(reg.db.link_blob(name, &key).await?)
        }
        // Without a readable source the mount only succeeds for content already here.
        _ => Ok(reg.db.repository_blob(name, &key).await?.is_some()),
    }
}

/// Appends a request body to a session; the session advances only once everything
/// arrived and is durable.
async fn append(
    reg: &Registry,
    row: UploadRow,
    body: axum::body::Body,
    expected: Option<u64>,
    persist: bool,
) -> Result<(UploadRow, Hasher)> {
    let algorithm = Algorithm::parse(&row.algorithm)
        .ok_or_else(|| RegistryError::internal("upload", "unknown algorithm in session"))?;
    let mut hasher = Hasher::restore(algorithm, &row.hash_state)
        .ok_or_else(|| RegistryError::internal("upload", "corrupt hash state in session"))?;
    let start = row.size.max(0) as u64;
    let mut writer = match reg
        .store
        .open_upload(&row.id, &row.backend_state, start)
        .await
    {
        Ok(w) => w,
        Err(crate::storage::StorageError::NotFound) => return Err(unknown_upload()),
        Err(e) => return Err(e.into()),
    };
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    loop {
        let Some(chunk) = next_chunk(&mut stream, Code::BlobUploadInvalid).await? else {
            break;
        };
        if let Some(max) = reg.options.max_blob_bytes {
            if start + received + chunk.len() as u64 > max {
                return Err(RegistryError::new(
                    Code::TooLarge,
                    format!("blobs are limited to {max} bytes"),
                ));
            }
        }
        received += chunk.len() as u64;
        if expected.is_some_and(|e| received > e) {
            return Err(RegistryError::new(
                Code::SizeInvalid,
                "chunk longer than its Content-Range",
            ));
        }
        hasher.update(&chunk);
        writer.write(chunk).await?;
    }
    if expected.is_some_and(|e| received != e) {
        return Err(RegistryError::new(
            Code::SizeInvalid,
            "chunk length does not match Content-Range",
        ));
    }
    if received == 0 {
        return Ok((row, hasher));
    }
    let backend_state = writer.flush().await?;
    let size = (start + received) as i64;
    let state = hasher.save();
    // A closing PUT is sealed right away: recording its intermediate length would only
    // cost a database write (if sealing fails, the session is still at its last length
    // and the store drops the extra bytes when it is reopened).
    if persist
        && !reg
            .db
            .advance_upload(&row.id, row.size, size, &state, &backend_state)
            .await?
    {
        return Err(RegistryError::new(
            Code::RangeInvalid,
            "upload was changed by another request",
        ));
    }
    metrics::counter!("registry_upload_bytes_total").increment(received);
    Ok((
        UploadRow {
            size,
            hash_state: state,
            backend_state,
            ..row
        },
        hasher,
    ))
}

/// Checks the digest and seals the blob.
async fn finish(
    reg: &Registry,
    name: &str,
    row: UploadRow,
    hasher: Hasher,
    digest: &Digest,
) -> Result<Response> {
    if digest.algorithm() != hasher.algorithm() {
        discard(reg, &row).await;
        return Err(RegistryError::detail(
            Code::DigestInvalid,
            format!(
                "the upload was hashed with {}: start it with ?digest-algorithm={}",
                hasher.algorithm().as_str(),
                digest.algorithm().as_str()
            ),
            serde_json::json!(digest.to_string()),
        ));
    }
    let computed = hasher.finish();
    if &computed != digest {
        return Err(digest_mismatch(reg, &row, digest, &computed).await);
    }
    let location = reg
        .store
        .commit_upload(&row.id, &row.backend_state, digest, row.size as u64)
        .await?;
    let served = match reg
        .db
        .commit_blob(name, digest, row.size, &location, &row.id, None)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let _ = reg.store.delete(std::slice::from_ref(&location)).await;
            return Err(e.into());
        }
    };
    if served != location {
        // The digest was already stored: ours is the duplicate.
        if reg
            .store
            .delete(std::slice::from_ref(&location))
            .await
            .is_ok()
        {
            let _ = reg.db.deleted(std::slice::from_ref(&location)).await;
        }
    }
    metrics::counter!("registry_blobs_committed_total").increment(1);
    Ok(created(name, digest))
}

/// A whole small blob in one request (an empty session, a `Content-Length` within the
/// inline limit, no `Content-Range` past 0): its length.
fn inline_candidate(reg: &Registry, row: &UploadRow, headers: &HeaderMap) -> Option<u64> {
    if row.size != 0 || reg.options.inline_max_bytes == 0 {
        return None;
    }
    let len = content_length(headers)?;
    if len > reg.options.inline_max_bytes {
        return None;
    }
    match content_range(headers) {
        Ok(None) => Some(len),
        Ok(Some((0, b))) if b + 1 == len => Some(len),
        _ => None,
    }
}

/// Receives a small blob into memory, checks it and stores it with its metadata.
async fn finish_inline(
    reg: &Registry,
    name: &str,
    row: UploadRow,
    body: axum::body::Body,
    len: u64,
    digest: &Digest,
) -> Result<Response> {
    let mut data = Vec::with_capacity(len as usize);
    let mut stream = body.into_data_stream();
    loop {
        let Some(chunk) = next_chunk(&mut stream, Code::BlobUploadInvalid).await? else {
            break;
        };
        if data.len() + chunk.len() > len as usize {
            return Err(RegistryError::new(
                Code::SizeInvalid,
                "body longer than its Content-Length",
            ));
        }
        data.extend_from_slice(&chunk);
    }
    if data.len() as u64 != len {
        return Err(RegistryError::new(
            Code::SizeInvalid,
            "body shorter than its Content-Length",
        ));
    }
    let mut hasher = Hasher::new(digest.algorithm());
    hasher.update(&data);
    let computed = hasher.finish();
    if &computed != digest {
        return Err(digest_mismatch(reg, &row, digest, &computed).await);
    }
    reg.db
        .commit_blob(name, digest, data.len() as i64, "", &row.id, Some(&data))
        .await?;
    if let Err(e) = reg.store.abort_upload(&row.id, &row.backend_state).await {
        tracing::warn!(upload = %row.id, error = %e, "could not discard upload data");
    }
    metrics::counter!("registry_blobs_committed_total").increment(1);
    Ok(created(name, digest))
}

/// Discards an upload whose bytes do not have the digest the client named.
async fn digest_mismatch(
    reg: &Registry,
    row: &UploadRow,
    provided: &Digest,
    computed: &Digest,
) -> RegistryError {
    discard(reg, row).await;
    metrics::counter!("registry_upload_digest_mismatches_total").increment(1);
    RegistryError::detail(
        Code::DigestInvalid,
        "provided digest did not match uploaded content",
        serde_json::json!({"provided": provided.to_string(), "computed": computed.to_string()}),
    )
}

async fn discard(reg: &Registry, row: &UploadRow) {
    if let Err(e) = reg.store.abort_upload(&row.id, &row.backend_state).await {
        tracing::warn!(upload = %row.id, error = %e, "could not discard upload data");
    }
    let _ = reg.db.delete_upload(&row.id).await;
}

/// `Content-Range: a-b` (also tolerated: `bytes a-b`, `bytes=a-b`, `a-b/total`).
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || RegistryError::new(Code::RangeInvalid, "invalid Content-Range");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes")
        .map(|s| s.trim_start_matches([' ', '=']))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let num = |x: &str| -> Result<u64> {
        if x.is_empty() || x.len() > 19 || !x.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    let (a, b) = (num(a)?, num(b)?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn range_error(name: &str, row: &UploadRow, msg: &str) -> RegistryError {
    let mut e = RegistryError::new(Code::RangeInvalid, msg.to_owned());
    for (k, v) in session_headers(name, &row.id, row.size) {
        if k != header::CONTENT_LENGTH {
            e = e.with_header(k, v);
        }
    }
    e
}

/// Checks a chunk's `Content-Range` against the session and appends it.
async fn append_chunk(
    reg: &Registry,
    name: &str,
    row: UploadRow,
    req: Request,
    persist: bool,
) -> Result<(UploadRow, Hasher, bool)> {
    let range = content_range(req.headers())?;
    let declared = content_length(req.headers());
    if let Some((a, b)) = range {
        if a != row.size as u64 {
            return Err(range_error(
                name,
                &row,
                "chunk does not start at the end of the upload",
            ));
        }
        if declared.is_some_and(|l| l != b - a + 1) {
            return Err(range_error(
                name,
                &row,
                "Content-Range does not match Content-Length",
            ));
        }
    }
    let before = row.size;
    let expected = range.map(|(a, b)| b - a + 1);
    let (row, hasher) = append(reg, row, req.into_body(), expected, persist).await?;
    let wrote = row.size != before;
    Ok((row, hasher, wrote))
}

/// `PATCH` / `PUT` / `GET` / `DELETE` on `/v2/<name>/blobs/uploads/<id>`.
pub(super) async fn handle(reg: &Registry, name: &str, id: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    authorize(reg, req.headers(), name, PUSH).await?;
    if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(unknown_upload());
    }
    let row = match reg.db.upload(id).await? {
        Some(r) if r.repository == name => r,
        _ => return Err(unknown_upload()),
    };
    match *req.method() {
        Method::GET | Method::HEAD => Ok(empty(
            StatusCode::NO_CONTENT,
            session_headers(name, id, row.size),
        )),
        Method::DELETE => {
            let _busy = Busy::take(reg, id)?;
            discard(reg, &row).await;
            Ok(empty(
                StatusCode::NO_CONTENT,
                vec![(header::CONTENT_LENGTH, HeaderValue::from_static("0"))],
            ))
        }
        Method::PATCH => {
            let _busy = Busy::take(reg, id)?;
            let (row, _, _) = append_chunk(reg, name, row, req, true).await?;
            Ok(empty(
                StatusCode::ACCEPTED,
                session_headers(name, id, row.size),
            ))
        }
        Method::PUT => {
            let q = query_pairs(req.uri());
            let digest = query_get(&q, "digest")
                .ok_or_else(|| {
                    RegistryError::new(Code::DigestInvalid, "digest query parameter is required")
                })
                .and_then(parse_digest)?;
            let _busy = Busy::take(reg, id)?;
            if let Some(len) = inline_candidate(reg, &row, req.headers()) {
                return finish_inline(reg, name, row, req.into_body(), len, &digest).await;
            }
            let (row, hasher, _) = append_chunk(reg, name, row, req, false).await?;
            finish(reg, name, row, hasher, &digest).await
        }
        _ => Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on uploads",
        )),
    }
}
