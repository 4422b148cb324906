//! Blobs in a local directory: `uploads/<id>` while a session is open, then renamed
//! (after fsync) to `blobs/<alg>/<2 hex>/<hex>.<upload id>`, a key unique to the upload.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::{BlobStore, ByteStream, StorageError, UploadWriter};
use crate::names::Digest;

/// Bytes gathered before one write system call (the most an upload holds in memory).
const WRITE_BUFFER: usize = 1 << 20;
/// Read size when serving a blob.
const READ_BUFFER: usize = 512 << 10;

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
        && key.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"/.-".contains(&b))
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

struct FsWriter {
    file: Option<std::fs::File>,
    buf: Vec<u8>,
}

impl FsWriter {
    async fn drain(&mut self) -> Result<(), StorageError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Other("upload writer failed earlier".into()))?;
        let buf = std::mem::take(&mut self.buf);
        let (file, buf) = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&buf);
            r.map(|()| (file, buf))
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
        self.file = Some(file);
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }
}

#[async_trait]
impl UploadWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let mut data = &data[..];
        while !data.is_empty() {
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
        let file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Other("upload writer failed earlier".into()))?;
        let file = tokio::task::spawn_blocking(move || file.sync_data().map(|()| file))
            .await
            .map_err(|e| StorageError::Other(e.to_string()))??;
        self.file = Some(file);
        Ok(String::new())
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for FsStore {
    async fn start_upload(&self, id: &str) -> Result<String, StorageError> {
        let path = self.upload_path(id)?;
        tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(|_| ())
        })
        .await
        .map_err(|e| StorageError::Other(e.to_string()))??;
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
            let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
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
        Ok(Box::new(FsWriter {
            file: Some(file),
            buf: Vec::with_capacity(64 << 10),
        }))
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
            let len = std::fs::metadata(&from)?.len();
            if len != size {
                return Err(StorageError::Other(format!(
                    "upload holds {len} bytes, {size} recorded"
                )));
            }
            let dir = to.parent().ok_or_else(|| StorageError::Other("bad key".into()))?;
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
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound,
            _ => StorageError::Io(e),
        })?;
        file.set_max_buf_size(READ_BUFFER);
        if offset > 0 {
            file.seek(SeekFrom::Start(offset)).await?;
        }
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), READ_BUFFER);
        Ok(stream.boxed())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        for key in keys {
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
