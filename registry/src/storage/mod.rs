//! Where blob bytes live: a local directory (one replica) or S3-compatible object
//! storage (replicas). The database says which object serves which digest, so the
//! store only ever writes, reads and deletes objects by key: it is never listed.
//!
//! An upload is written through an [`UploadWriter`] opened at the session's current
//! length; [`UploadWriter::flush`] makes what was written durable and returns the
//! store's state for the session (kept in the database with the running hash), so
//! another process can reopen the upload where this one stopped.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub mod fs;
pub mod s3;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object not found")]
    NotFound,
    /// The backend could not be reached.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Local I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A stream of blob bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Bytes being appended to one upload.
#[async_trait]
pub trait UploadWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
    /// Makes everything written durable; returns the new backend state.
    async fn flush(&mut self) -> Result<String, StorageError>;
}

/// A blob store.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts an upload; returns its initial backend state.
    async fn start_upload(&self, id: &str) -> Result<String, StorageError>;
    /// Reopens an upload at `offset` (the length recorded in the database; anything
    /// written past it by an interrupted request is discarded).
    async fn open_upload(
        &self,
        id: &str,
        state: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError>;
    /// Seals a completed, verified upload of `size` bytes as an object and returns
    /// the object's key (unique to this upload).
    async fn commit_upload(
        &self,
        id: &str,
        state: &str,
        digest: &crate::names::Digest,
        size: u64,
    ) -> Result<String, StorageError>;
    /// Discards an upload.
    async fn abort_upload(&self, id: &str, state: &str) -> Result<(), StorageError>;
    /// Reads `len` bytes of an object from `offset`.
    async fn read(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StorageError>;
    /// Deletes objects (missing ones are not an error).
    async fn delete(&self, keys: &[String]) -> Result<(), StorageError>;
    /// A cheap check that the store is reachable.
    async fn health(&self) -> Result<(), StorageError>;
    /// A short description for logs (`filesystem /var/lib/...`, `s3 bucket ...`).
    fn describe(&self) -> String;
}
