//! Blobs in a local directory: `uploads/<id>` while a session is open, then renamed
//! (after fsync) to `blobs/<alg>/<2 hex>/<hex>.<upload id>`, a key unique to the upload.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;

use super::{BlobStore, ByteStream, StorageError, UploadWriter};
use crate::names::Digest;

/// Bytes gathered before one write system call (the most an upload holds in memory).
const WRITE_BUFFER: usize = 1 << 20;
/// Read size when serving a blob.
const READ_BUFFER: usize = 1 << 20;

/// A blob store in a directory.
#[derive(Clone, Debug)]
pub struct FsStore {
    root: PathBuf,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
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

impl FsStore {
    /// Opens (creating) a store under `root`.
    pub fn open(root: &Path) -> Result<FsStore, StorageError> {
        std::fs::create_dir_all(root.join("uploads"))?;
        std::fs::create_dir_all(root.join("blobs"))?;
        Ok(FsStore {
            root: root.to_path_buf(),
        })
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf, StorageError> {
        if !valid_id(id) {
            return Err(StorageError::Other(format!("invalid upload id {id:?}")));
        }
        Ok(self.root.join("uploads").join(id))
    }

    fn key_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        if !valid_key(key) {
            return Err(StorageError::Other(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

/// Bytes written since the last background `fdatasync` that start another one, so the
/// final sync at the end of an upload has little left to write.
const SYNC_EVERY: u64 = 16 << 20;

type Io<T> = tokio::task::JoinHandle<std::io::Result<T>>;

/// Appends to an upload file: hashing and receiving the next buffer overlap with the
/// write of the previous one (on a blocking thread), and dirty pages are synced in the
/// background every [`SYNC_EVERY`] bytes.
struct FsWriter {
    file: Option<std::fs::File>,
    sync_fd: std::sync::Arc<std::fs::File>,
    buf: Vec<u8>,
    spare: Vec<u8>,
    inflight: Option<Io<(std::fs::File, Vec<u8>)>>,
    syncing: Option<Io<()>>,
    unsynced: u64,
}

fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Other(e.to_string())
}

impl FsWriter {
    fn new(file: std::fs::File) -> std::io::Result<FsWriter> {
        Ok(FsWriter {
            sync_fd: std::sync::Arc::new(file.try_clone()?),
            file: Some(file),
            buf: Vec::with_capacity(64 << 10),
            spare: Vec::new(),
            inflight: None,
            syncing: None,
            unsynced: 0,
        })
    }

    async fn wait_write(&mut self) -> Result<(), StorageError> {
        if let Some(w) = self.inflight.take() {
            let (file, mut buf) = w.await.map_err(join_error)??;
            self.file = Some(file);
            buf.clear();
            self.spare = buf;
        }
        Ok(())
    }

    async fn wait_sync(&mut self) -> Result<(), StorageError> {
        if let Some(s) = self.syncing.take() {
            s.await.map_err(join_error)??;
        }
        Ok(())
    }

    async fn drain(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.wait_write().await?;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Other("upload writer failed earlier".into()))?;
        let next = std::mem::take(&mut self.spare);
        let buf = std::mem::replace(&mut self.buf, next);
        self.unsynced += buf.len() as u64;
        self.inflight = Some(tokio::task::spawn_blocking(move || {
            file.write_all(&buf).map(|()| (file, buf))
        }));
        if self.unsynced >= SYNC_EVERY && self.syncing.as_ref().is_none_or(|s| s.is_finished()) {
            self.wait_sync().await?;
            self.unsynced = 0;
            let fd = std::sync::Arc::clone(&self.sync_fd);
            self.syncing = Some(tokio::task::spawn_blocking(move || fd.sync_data()));
        }
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let mut data = &data[..];
        while !data.is_empty() {
            if self.buf.capacity() < WRITE_BUFFER {
                self.buf.reserve(WRITE_BUFFER - self.buf.len());
            }
            let room = WRITE_BUFFER - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.buf.len() == WRITE_BUFFER {
                self.drain().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<String, StorageError> {
        self.drain().await?;
        self.wait_write().await?;
        self.wait_sync().await?;
        let fd = std::sync::Arc::clone(&self.sync_fd);
        tokio::task::spawn_blocking(move || fd.sync_data())
            .await
            .map_err(join_error)??;
        self.unsynced = 0;
        Ok(String::new())
    }
}

fn read_into(
    mut file: std::fs::File,
    len: u64,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) {
    use std::io::Read as _;
    let mut left = len;
    while left > 0 {
        let n = left.min(READ_BUFFER as u64) as usize;
        let mut buf = vec![0u8; n];
        let mut got = 0;
        while got < n {
            match file.read(&mut buf[got..]) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shorter than recorded",
                    )));
                    return;
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
        left -= n as u64;
        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
            return; // the client went away
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsStore {
    async fn start_upload(&self, id: &str) -> Result<String, StorageError> {
        // The file is created by the first write: a small blob sent whole is kept in
        // the database and never touches the disk here.
        self.upload_path(id)?;
        Ok(String::new())
    }

    async fn open_upload(
        &self,
        id: &str,
        _state: &str,
        offset: u64,
    ) -> Result<Box<dyn UploadWriter>, StorageError> {
        let path = self.upload_path(id)?;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(offset == 0)
                .truncate(false)
                .open(&path)?;
            // Drop anything an interrupted request wrote past the recorded length.
            f.set_len(offset)?;
            f.seek(SeekFrom::Start(offset))?;
            Ok(f)
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound,
            _ => StorageError::Io(e),
        })?;
        Ok(Box::new(FsWriter::new(file)?))
    }

    async fn commit_upload(
        &self,
        id: &str,
        _state: &str,
        digest: &Digest,
        size: u64,
    ) -> Result<String, StorageError> {
        let from = self.upload_path(id)?;
        let hex = digest.hex();
        let key = format!(
            "blobs/{}/{}/{}.{}",
            digest.algorithm().as_str(),
            &hex[..2],
            hex,
            id
        );
        let to = self.key_path(&key)?;
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            if size == 0 && !from.exists() {
                std::fs::File::create(&from)?.sync_all()?;
            }
            let len = std::fs::metadata(&from)?.len();
            if len != size {
                return Err(StorageError::Other(format!(
                    "upload holds {len} bytes, {size} recorded"
                )));
            }
            let dir = to
                .parent()
                .ok_or_else(|| StorageError::Other("bad key".into()))?;
            std::fs::create_dir_all(dir)?;
            std::fs::rename(&from, &to)?;
            sync_dir(dir)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
        Ok(key)
    }

    async fn abort_upload(&self, id: &str, _state: &str) -> Result<(), StorageError> {
        let path = self.upload_path(id)?;
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, key: &str, offset: u64, len: u64) -> Result<ByteStream, StorageError> {
        let path = self.key_path(key)?;
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let mut f = std::fs::File::open(&path)?;
            if offset > 0 {
                f.seek(SeekFrom::Start(offset))?;
            }
            Ok(f)
        })
        .await
        .map_err(join_error)?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound,
            _ => StorageError::Io(e),
        })?;
        // A blocking reader runs ahead of the socket by a few buffers.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || read_into(file, len, &tx));
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        for key in keys.iter().filter(|k| !crate::meta::is_inline(k)) {
            let path = self.key_path(key)?;
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), StorageError> {
        let meta = tokio::fs::metadata(self.root.join("blobs")).await?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(StorageError::Other("blobs is not a directory".into()))
        }
    }

    fn describe(&self) -> String {
        format!("filesystem {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_ids_are_confined() {
        assert!(valid_key("blobs/sha256/ab/abcd.x1"));
        assert!(!valid_key("blobs/../etc/passwd"));
        assert!(!valid_key("/etc/passwd"));
        assert!(!valid_key("uploads/x"));
        assert!(valid_id("0123abcd-ef"));
        assert!(!valid_id("../x") && !valid_id(""));
    }
}
