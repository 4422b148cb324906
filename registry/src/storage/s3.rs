//! Blobs in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, ...), shared by every
//! replica.
//!
//! An upload is one S3 multipart upload driven part by part through
//! [`MultipartStore`], so any process can continue it: the session's backend state (kept
//! in the database after each flush) names the multipart upload, the parts already
//! uploaded (their ETags) and the object holding the not-yet-uploaded tail. Client chunks
//! have arbitrary sizes while parts must be at least 5 MiB (except the last), so a writer
//! buffers at most one part in memory; when a request ends with less than a part buffered,
//! `flush` stores those bytes as a small object `uploads/<id>/tail-<nonce>` that the next
//! request (on any replica) reads back and continues from. The nonce makes every flush
//! write a new tail object, so a flush whose database update never happened (a killed
//! replica, a lost race) cannot overwrite the tail the database still points at.
//!
//! The multipart upload is created (on the first full part) at the blob's final key,
//! `blobs/<2 hex>/<upload id>` — a key unique to the upload, which the database maps from
//! the digest — and `commit_upload` completes it there: no server-side copy ever. A blob
//! smaller than one part never starts a multipart upload; it is written with one PUT at
//! commit. Reads are ranged GETs streamed a window at a time. The only listing is of
//! one upload's own `uploads/<id>/` prefix when it ends (tails of flushes the database
//! never recorded); blobs are never listed.
//!
//! The digest is not known when the multipart upload is created, so unlike the
//! filesystem store's keys these do not name it.
//!
//! Not here: creating the bucket, lifecycle rules. A multipart upload created by a request
//! whose database update then failed is left incomplete (its parts are re-sent under a new
//! multipart id): configure the bucket's `AbortIncompleteMultipartUpload` lifecycle rule.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{BlobStore, ByteStream, StorageError, UploadWriter};
use crate::names::Digest;

/// The smallest part S3 accepts (except the last one).
pub const MIN_PART_SIZE: usize = 5 << 20;
/// The largest part S3 accepts.
pub const MAX_PART_SIZE: usize = 5 << 30;
/// The default part size.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// S3's limit on the number of parts of one upload.
pub const MAX_PARTS: usize = 10_000;
/// Bytes fetched by one ranged GET when serving a blob.
const READ_WINDOW: u64 = 16 << 20;
/// Longest ETag kept in a session state.
const MAX_ETAG: usize = 256;
/// Object deletions per `delete` call driven concurrently.
const DELETE_BATCH: usize = 1000;

/// An object store usable for blobs: plain objects and low-level multipart uploads.
pub trait Backend: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Backend for T {}

/// A secret from the configuration: zeroed on drop, never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Secret {
    /// Wraps a value.
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }
    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to reach the bucket.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (`http://127.0.0.1:9000` for MinIO); `None`: AWS for `region`.
    pub endpoint: Option<String>,
    /// Region (`us-east-1` by default).
    pub region: Option<String>,
    /// Access key id; `None`: the default AWS credential chain (web identity, ECS, IMDS).
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Key prefix inside the bucket (several registries may share one bucket).
    pub prefix: String,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// Part size of new uploads (at least 5 MiB; default 8 MiB).
    pub part_size: Option<usize>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .field("part_size", &self.part_size)
            .finish_non_exhaustive()
    }
}

/// A blob store in an S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn Backend>,
    prefix: String,
    part_size: usize,
    description: String,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

fn check_part_size(size: usize) -> Result<usize, StorageError> {
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(StorageError::Other(format!(
            "part size {size} is outside S3's limits ({MIN_PART_SIZE}..={MAX_PART_SIZE} bytes)"
        )))
    }
}

fn clean_prefix(prefix: &str) -> Result<String, StorageError> {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    let ok = p.len() <= 256
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
    if ok {
        Ok(p.to_owned())
    } else {
        Err(StorageError::Other(format!(
            "invalid S3 key prefix {prefix:?}"
        )))
    }
}

impl S3Store {
    /// Connects to a bucket (no request is made: see [`BlobStore::health`]).
    pub fn open(options: &S3Options) -> Result<S3Store, StorageError> {
        use object_store::aws::AmazonS3Builder;
        use object_store::{ClientOptions, RetryConfig};
        if options.bucket.is_empty() {
            return Err(StorageError::Other("no S3 bucket configured".into()));
        }
        // TLS to the endpoint through ring, the provider the rest of the process uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientOptions::new()
            .with_allow_http(options.allow_http)
            .with_connect_timeout(Duration::from_secs(5))
            // Bounds one request; reads are split into windows so a slow client does not
            // hold one GET open for a whole large blob.
            .with_timeout(Duration::from_secs(300));
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(options.region.as_deref().unwrap_or("us-east-1"))
            .with_allow_http(options.allow_http)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(e) = &options.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(k) = &options.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(s) = &options.secret_access_key {
            b = b.with_secret_access_key(s.expose());
        }
        let s3 = b
            .build()
            .map_err(|e| StorageError::Other(format!("S3 configuration: {e}")))?;
        let description = format!(
            "s3 bucket {} at {}",
            options.bucket,
            options.endpoint.as_deref().unwrap_or("AWS")
        );
        S3Store::with_backend(
            Arc::new(s3),
            &options.prefix,
            options.part_size.unwrap_or(DEFAULT_PART_SIZE),
            description,
        )
    }

    /// A store over any backend (tests use `object_store::memory::InMemory`).
    pub fn with_backend(
        backend: Arc<dyn Backend>,
        prefix: &str,
        part_size: usize,
        description: String,
    ) -> Result<S3Store, StorageError> {
        Ok(S3Store {
            inner: Arc::new(Inner {
                backend,
                prefix: clean_prefix(prefix)?,
                part_size: check_part_size(part_size)?,
                description,
            }),
        })
    }

    /// The part size of new uploads.
    pub fn part_size(&self) -> usize {
        self.inner.part_size
    }
}

// ------------------------------------------------------------------------ keys

fn valid_id(id: &str) -> bool {
    id.len() >= 2 && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_key(key: &str) -> bool {
    key.starts_with("blobs/")
        && key.len() < 512
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.-".contains(&b))
}

/// The key a committed upload's blob lives at.
fn blob_key(id: &str) -> String {
    format!("blobs/{}/{id}", &id[..2])
}

fn upload_dir(id: &str) -> String {
    format!("uploads/{id}")
}

fn new_tail_key(id: &str) -> Result<String, StorageError> {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| StorageError::Other("no randomness".into()))?;
    Ok(format!("uploads/{id}/tail-{}", hex::encode(b)))
}

fn valid_tail_key(id: &str, key: &str) -> bool {
    key.strip_prefix(&format!("uploads/{id}/tail-"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Inner {
    fn path(&self, key: &str) -> Result<Path, StorageError> {
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| StorageError::Other(format!("invalid object key: {e}")))
    }

    async fn put(&self, key: &str, payload: PutPayload) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.backend
            .put_opts(&path, payload, PutOptions::default())
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn get_all(&self, key: &str, max: usize) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        let r = self
            .backend
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(map_err)?;
        if r.meta.size > max as u64 {
            return Err(StorageError::Other(format!(
                "object {key} holds {} bytes, at most {max} expected",
                r.meta.size
            )));
        }
        r.bytes().await.map_err(map_err)
    }

    async fn size_of(&self, key: &str) -> Result<u64, StorageError> {
        let path = self.path(key)?;
        let r = self
            .backend
            .get_opts(&path, GetOptions::new().with_head(true))
            .await
            .map_err(map_err)?;
        Ok(r.meta.size)
    }

    /// Deletes objects by key, missing ones included, bounded batches at a time.
    async fn delete_keys(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let paths = batch
                .iter()
                .map(|k| self.path(k))
                .collect::<Result<Vec<_>, _>>()?;
            let n = paths.len();
            let mut results = self
                .backend
                .delete_stream(futures_util::stream::iter(paths.into_iter().map(Ok)).boxed());
            let mut first_error = None;
            while let Some(r) = results.next().await {
                match r {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                metrics::counter!("registry_s3_delete_failures_total").increment(1);
                return Err(map_err(e));
            }
            metrics::counter!("registry_s3_objects_deleted_total").increment(n as u64);
        }
        Ok(())
    }

    /// Deletes every object of an upload session (its tails).
    async fn delete_upload_dir(&self, id: &str) -> Result<(), StorageError> {
        let dir = self.path(&upload_dir(id))?;
        let strip = match self.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.prefix),
        };
        let keys: Vec<String> = self
            .backend
            .list(Some(&dir))
            .take(10_000)
            .map_ok(|m| {
                m.location
                    .as_ref()
                    .strip_prefix(&strip)
                    .unwrap_or("")
                    .to_owned()
            })
            .try_collect()
            .await
            .map_err(map_err)?;
        let keys: Vec<String> = keys.into_iter().filter(|k| valid_tail_key(id, k)).collect();
        if keys.is_empty() {
            return Ok(());
        }
        self.delete_keys(keys).await
    }

    /// One ranged GET as a stream, failing if the object is shorter than asked.
    async fn window(
        self: Arc<Self>,
        path: Path,
        range: Range<u64>,
    ) -> Result<ByteStream, StorageError> {
        let want = range.end - range.start;
        let r = self
            .backend
            .get_opts(&path, GetOptions::new().with_range(Some(range)))
            .await
            .map_err(map_err)?;
        let body = r.into_stream();
        let stream = futures_util::stream::unfold(
            (body, 0u64, false),
            move |(mut body, got, done)| async move {
                if done {
                    return None;
                }
                match body.next().await {
                    Some(Ok(chunk)) => {
                        let got = got + chunk.len() as u64;
                        if got > want {
                            let e = std::io::Error::other("storage returned more bytes than asked");
                            return Some((Err(e), (body, got, true)));
                        }
                        Some((Ok(chunk), (body, got, false)))
                    }
                    Some(Err(e)) => {
                        Some((Err(std::io::Error::other(map_err(e))), (body, got, true)))
                    }
                    None if got < want => {
                        let e = std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("object ended after {got} of {want} bytes"),
                        );
                        Some((Err(e), (body, got, true)))
                    }
                    None => None,
                }
            },
        );
        Ok(stream.boxed())
    }
}

/// Maps an object-store error: missing objects, unreachable or failing (5xx) service,
/// anything else.
pub fn map_err(e: object_store::Error) -> StorageError {
    if let object_store::Error::NotFound { .. } = e {
        return StorageError::NotFound;
    }
    if is_unavailable(&e) {
        metrics::counter!("registry_s3_unavailable_total").increment(1);
        StorageError::Unavailable(e.to_string())
    } else {
        StorageError::Other(e.to_string())
    }
}

fn is_unavailable(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            // Connection refused or reset, timeouts: the transport failed.
            return true;
        }
        // object_store keeps its status-carrying error private; its message is stable:
        // "Server returned non-2xx status code: 503 Service Unavailable: ...".
        let text = err.to_string();
        if let Some(rest) = text
            .find("status code: ")
            .map(|i| &text[i + "status code: ".len()..])
        {
            if rest.starts_with('5') {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

// ------------------------------------------------------------------------ state

/// The session state kept in the database (compact JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct State {
    /// Part size of this upload (fixed at start, whatever the replicas' settings).
    #[serde(rename = "ps")]
    part_size: usize,
    /// The multipart upload, once the first part was sent.
    #[serde(rename = "mp", default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    /// ETags of the uploaded parts, in order (all exactly `part_size` bytes).
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<String>,
    /// The object holding the bytes after the last part.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    tail: Option<String>,
    /// Its length.
    #[serde(rename = "tl", default)]
    tail_len: u64,
    /// The tail of the state before this one (deleted when this state is reopened, i.e.
    /// once the database has moved past it).
    #[serde(rename = "pt", default, skip_serializing_if = "Option::is_none")]
    prev_tail: Option<String>,
}

impl State {
    fn parse(id: &str, s: &str) -> Result<State, StorageError> {
        let bad = |why: &str| StorageError::Other(format!("corrupt S3 upload state: {why}"));
        if s.len() > 1 << 20 {
            return Err(bad("too long"));
        }
        let st: State = serde_json::from_str(s).map_err(|_| bad("not JSON"))?;
        check_part_size(st.part_size)?;
        if st.parts.len() > MAX_PARTS || st.parts.iter().any(|p| p.is_empty() || p.len() > MAX_ETAG)
        {
            return Err(bad("parts"));
        }
        if !st.parts.is_empty() && st.multipart.is_none() {
            return Err(bad("parts without a multipart upload"));
        }
        if st
            .multipart
            .as_ref()
            .is_some_and(|m| m.is_empty() || m.len() > 1024)
        {
            return Err(bad("multipart id"));
        }
        // Keys come from our own database, but a state never makes us touch an object
        // outside this upload's own.
        for t in st.tail.iter().chain(&st.prev_tail) {
            if !valid_tail_key(id, t) {
                return Err(bad("tail key outside the upload"));
            }
        }
        if st.tail.is_none() != (st.tail_len == 0) || st.tail_len >= st.part_size as u64 {
            return Err(bad("tail length"));
        }
        Ok(st)
    }

    fn to_json(&self) -> Result<String, StorageError> {
        serde_json::to_string(self).map_err(|e| StorageError::Other(e.to_string()))
    }

    fn len(&self) -> u64 {
        self.parts.len() as u64 * self.part_size as u64 + self.tail_len
    }
}

// ------------------------------------------------------------------------ writer

struct S3Writer {
    inner: Arc<Inner>,
    id: String,
    key: String,
    state: State,
    /// Bytes after the last part (less than one part).
    buf: Vec<Bytes>,
    buf_len: usize,
    /// Whether `buf` changed since the tail object was written.
    dirty: bool,
    failed: bool,
}

impl S3Writer {
    async fn send_part(&mut self, payload: PutPayload) -> Result<(), StorageError> {
        if self.state.parts.len() >= MAX_PARTS {
            return Err(StorageError::Other(format!(
                "blob larger than {MAX_PARTS} parts of {} bytes: raise the part size",
                self.state.part_size
            )));
        }
        let path = self.inner.path(&self.key)?;
        let mp = match &self.state.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .inner
                    .backend
                    .create_multipart(&path)
                    .await
                    .map_err(map_err)?;
                tracing::debug!(upload = %self.id, key = %self.key, "S3 multipart upload created");
                self.state.multipart = Some(m.clone());
                m
            }
        };
        let idx = self.state.parts.len();
        let part: PartId = self
            .inner
            .backend
            .put_part(&path, &mp, idx, payload)
            .await
            .map_err(map_err)?;
        if part.content_id.is_empty() || part.content_id.len() > MAX_ETAG {
            return Err(StorageError::Other(
                "storage returned an unusable part ETag".into(),
            ));
        }
        self.state.parts.push(part.content_id);
        metrics::counter!("registry_s3_parts_uploaded_total").increment(1);
        Ok(())
    }

    async fn write_inner(&mut self, mut data: Bytes) -> Result<(), StorageError> {
        let part_size = self.state.part_size;
        while !data.is_empty() {
            let room = part_size - self.buf_len;
            let piece = data.split_to(room.min(data.len()));
            self.buf_len += piece.len();
            self.buf.push(piece);
            self.dirty = true;
            if self.buf_len == part_size {
                let payload: PutPayload = std::mem::take(&mut self.buf).into_iter().collect();
                self.buf_len = 0;
                self.send_part(payload).await?;
            }
        }
        Ok(())
    }

    async fn flush_inner(&mut self) -> Result<String, StorageError> {
        if self.dirty {
            let old = self.state.tail.take();
            if self.buf_len > 0 {
                let key = new_tail_key(&self.id)?;
                let payload: PutPayload = self.buf.iter().cloned().collect();
                self.inner.put(&key, payload).await?;
                metrics::counter!("registry_s3_tail_bytes_written_total")
                    .increment(self.buf_len as u64);
                self.state.tail = Some(key);
            }
            self.state.tail_len = self.buf_len as u64;
            if old.is_some() {
                self.state.prev_tail = old;
            }
            self.dirty = false;
        }
        self.state.to_json()
    }
}

#[async_trait]
impl UploadWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        if self.failed {
            return Err(StorageError::Other("upload writer failed earlier".into()));
        }
        let r = self.write_inner(data).await;
        self.failed = r.is_err();
        r
    }

    async fn flush(&mut self) -> Result<String, StorageError> {
        if self.failed {
            return Err(StorageError::Other("upload writer failed earlier".into()));
        }
        let r = self.flush_inner().await;
        self.failed = r.is_err();
        r
    }
}

// ------------------------------------------------------------------------ store

impl S3Store {
    fn check_id(id: &str) -> Result<(), StorageError> {
        if valid_id(id) {
            Ok(())
        } else {
            Err(StorageError::Other(format!("invalid upload id {id:?}")))
        }
    }

    async fn read_tail(&self, st: &State) -> Result<Option<Bytes>, StorageError> {
        let Some(t) = &st.tail else { return Ok(None) };
        let b = self.inner.get_all(t, st.part_size).await?;
        if b.len() as u64 != st.tail_len {
            return Err(StorageError::Other(format!(
                "upload tail holds {} bytes, the session {}",
                b.len(),
                st.tail_len
            )));
        }
        Ok(Some(b))
    }

    /// After a failed commit: whether an earlier attempt already stored the blob.
    async fn already_committed(&self, key: &str, size: u64) -> bool {
        matches!(self.inner.size_of(key).await, Ok(n) if n == size)
    }

    /// Deletes tails in the background (their loss only leaks a small object).
    fn forget_tails(&self, id: &str, keys: Vec<String>, whole_dir: bool) {
        let inner = Arc::clone(&self.inner);
        let id = id.to_owned();
        tokio::spawn(async move {
            let r = if whole_dir {
                inner.delete_upload_dir(&id).await
            } else {
                inner.delete_keys(keys).await
            };
            if let Err(e) = r {
                tracing::warn!(upload = %id, error = %e, "could not delete upload tail objects");
            }
        });
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn start_upload(&self, id: &str) -> Result<String, StorageError> {
        S3Store::check_id(id)?;
        // Nothing is created yet: a small blob is one PUT at commit.
        State {
            part_size: self.inner.part_size,
            ..State::default()
        }
        .to_json()
    }

    async fn open_upload(
        &self,
        id: &str,
        state: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        S3Store::check_id(id)?;
        let mut st = State::parse(id, state)?;
        if st.len() != offset {
            return Err(StorageError::Other(format!(
                "S3 upload state holds {} bytes, the session {offset}",
                st.len()
            )));
        }
        if let Some(prev) = st.prev_tail.take() {
            // The database moved past the state that used it.
            self.forget_tails(id, vec![prev], false);
        }
        let tail = match self.read_tail(&st).await {
            Ok(t) => t,
            // The session exists (the caller read it): a missing tail is damage, not an
            // unknown upload.
            Err(StorageError::NotFound) => {
                return Err(StorageError::Other("upload tail object is missing".into()));
            }
            Err(e) => return Err(e),
        };
        let buf_len = tail.as_ref().map_or(0, Bytes::len);
        Ok(Box::new(S3Writer {
            inner: Arc::clone(&self.inner),
            id: id.to_owned(),
            key: blob_key(id),
            state: st,
            buf: tail.into_iter().collect(),
            buf_len,
            dirty: false,
            failed: false,
        }))
    }

    async fn commit_upload(
        &self,
        id: &str,
        state: &str,
        _digest: &Digest,
        size: u64,
    ) -> Result<String, StorageError> {
        S3Store::check_id(id)?;
        let st = State::parse(id, state)?;
        if st.len() != size {
            return Err(StorageError::Other(format!(
                "S3 upload state holds {} bytes, {size} recorded",
                st.len()
            )));
        }
        let key = blob_key(id);
        let path = self.inner.path(&key)?;
        let tail = match self.read_tail(&st).await {
            Ok(t) => t,
            // A retried commit whose first attempt stored the blob (and dropped the tail).
            Err(StorageError::NotFound) if self.already_committed(&key, size).await => {
                return Ok(key);
            }
            Err(StorageError::NotFound) => {
                return Err(StorageError::Other("upload tail object is missing".into()));
            }
            Err(e) => return Err(e),
        };
        match &st.multipart {
            None => {
                let payload = tail.map(PutPayload::from_bytes).unwrap_or_default();
                self.inner.put(&key, payload).await?;
            }
            Some(mp) => {
                let mut parts: Vec<PartId> = st
                    .parts
                    .iter()
                    .map(|e| PartId {
                        content_id: e.clone(),
                    })
                    .collect();
                if let Some(t) = tail {
                    let p = self
                        .inner
                        .backend
                        .put_part(&path, mp, parts.len(), PutPayload::from_bytes(t))
                        .await;
                    // Once completed, the multipart upload is gone: S3 answers 404
                    // NoSuchUpload, some implementations 500. Either way, a retried commit
                    // finds its blob in place.
                    match p {
                        Ok(p) => parts.push(p),
                        Err(_) if self.already_committed(&key, size).await => return Ok(key),
                        Err(e) => return Err(map_err(e)),
                    }
                }
                match self
                    .inner
                    .backend
                    .complete_multipart(&path, mp, parts)
                    .await
                {
                    Ok(_) => {}
                    Err(_) if self.already_committed(&key, size).await => {}
                    Err(e) => return Err(map_err(e)),
                }
            }
        }
        metrics::counter!("registry_s3_blobs_committed_total").increment(1);
        tracing::debug!(upload = %id, %key, size, parts = st.parts.len(), "S3 blob committed");
        self.forget_tails(id, Vec::new(), true);
        Ok(key)
    }

    async fn abort_upload(&self, id: &str, state: &str) -> Result<(), StorageError> {
        S3Store::check_id(id)?;
        if let Ok(st) = State::parse(id, state) {
            if let Some(mp) = &st.multipart {
                let path = self.inner.path(&blob_key(id))?;
                match self.inner.backend.abort_multipart(&path, mp).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(map_err(e)),
                }
            }
        }
        self.inner.delete_upload_dir(id).await
    }

    async fn read(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StorageError> {
        if !valid_key(key) {
            return Err(StorageError::Other(format!("invalid object key {key:?}")));
        }
        let path = self.inner.path(key)?;
        if len == 0 {
            // No ranged GET can ask for nothing: check the object is there.
            self.inner.size_of(key).await?;
            return Ok(futures_util::stream::empty().boxed());
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| StorageError::Other("range overflows".into()))?;
        let first_end = end.min(offset.saturating_add(READ_WINDOW));
        // The first GET is made now, so a missing object is an error rather than a
        // truncated response.
        let first = Arc::clone(&self.inner)
            .window(path.clone(), offset..first_end)
            .await?;
        let inner = Arc::clone(&self.inner);
        let rest = futures_util::stream::iter(
            (first_end..end)
                .step_by(READ_WINDOW as usize)
                .map(move |s| s..end.min(s + READ_WINDOW)),
        )
        .then(move |r| {
            let w = Arc::clone(&inner).window(path.clone(), r);
            async move { w.await.map_err(std::io::Error::other) }
        })
        .try_flatten();
        Ok(first.chain(rest).boxed())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        if let Some(bad) = keys.iter().find(|k| !valid_key(k)) {
            return Err(StorageError::Other(format!("invalid object key {bad:?}")));
        }
        self.inner.delete_keys(keys.to_vec()).await
    }

    async fn health(&self) -> Result<(), StorageError> {
        match self.inner.size_of("health-check").await {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn keys_and_ids_are_confined() {
        assert!(valid_key("blobs/ab/abcd"));
        assert!(!valid_key("blobs/../uploads/x"));
        assert!(!valid_key("uploads/x/tail-00"));
        assert!(valid_tail_key("abc", "uploads/abc/tail-00ff"));
        assert!(!valid_tail_key("abc", "uploads/abd/tail-00ff"));
        assert!(!valid_tail_key("abc", "uploads/abc/tail-../x"));
        assert!(!valid_id("a") && !valid_id("../x"));
        assert_eq!(blob_key("abcdef"), "blobs/ab/abcdef");
        assert!(clean_prefix("/reg/one/").is_ok_and(|p| p == "reg/one"));
        assert!(clean_prefix("a/../b").is_err());
    }

    #[test]
    fn state_that_points_outside_the_upload_is_refused() {
        let ok = r#"{"ps":5242880,"t":"uploads/abc/tail-01","tl":3}"#;
        assert_eq!(State::parse("abc", ok).unwrap().tail_len, 3);
        // Another upload's tail, or any other object: never read or deleted through us.
        let other = r#"{"ps":5242880,"t":"uploads/abd/tail-01","tl":3}"#;
        assert!(State::parse("abc", other).is_err());
        let blob = r#"{"ps":5242880,"pt":"blobs/ab/abd","tl":0}"#;
        assert!(State::parse("abc", blob).is_err());
        // Inconsistent lengths and part sizes S3 would refuse.
        assert!(State::parse("abc", r#"{"ps":5242880,"tl":3}"#).is_err());
        assert!(State::parse("abc", r#"{"ps":1024,"tl":0}"#).is_err());
        assert!(State::parse("abc", r#"{"ps":5242880,"p":["e"],"tl":0}"#).is_err());
    }

    #[test]
    fn transport_failures_are_unavailable() {
        #[derive(Debug)]
        struct Refused;
        impl fmt::Display for Refused {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("connection refused")
            }
        }
        impl std::error::Error for Refused {}
        let e = object_store::Error::Generic {
            store: "S3",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Connect,
                Refused,
            )),
        };
        assert!(matches!(map_err(e), StorageError::Unavailable(_)));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: slow down"
                .into(),
        };
        assert!(matches!(map_err(e), StorageError::Unavailable(_)));
        let e = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 403 Forbidden: denied".into(),
        };
        assert!(matches!(map_err(e), StorageError::Other(_)));
        let e = object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        };
        assert!(matches!(map_err(e), StorageError::NotFound));
    }
}
