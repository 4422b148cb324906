//! The key store: `private/<canonical id>.key`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use notary_core::keyfile::KeyFile;
use notary_core::{Gun, PrivateKey};

use super::{ensure_private_dir, write_private_durable};
use crate::client::{Passphrases, Settings};

/// One key file, read without decrypting it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Canonical key ID (the file name).
    pub id: String,
    /// `role` header.
    pub role: String,
    /// `gun` header.
    pub gun: Option<String>,
}

/// The key files of a trust directory.
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// `private/` of `settings`.
    pub fn new(settings: &Settings) -> KeyStore {
        KeyStore {
            dir: settings.private_dir(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every key file (sorted by GUN, then role, then ID, as Go lists them).
    pub fn list(&self) -> anyhow::Result<Vec<StoredKey>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in rd {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .map(str::to_owned)
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(block) = notary_core::pem::decode_one(&bytes) else {
                continue;
            };
            out.push(StoredKey {
                id,
                role: block.header("role").unwrap_or("").to_owned(),
                gun: block.header("gun").map(str::to_owned),
            });
        }
        out.sort_by(|a, b| (&a.gun, &a.role, &a.id).cmp(&(&b.gun, &b.role, &b.id)));
        Ok(out)
    }

    /// The key file with canonical ID `id` (headers only).
    pub fn find(&self, id: &str) -> anyhow::Result<StoredKey> {
        self.list()?
            .into_iter()
            .find(|k| k.id == id)
            .with_context(|| format!("key {id} not found"))
    }

    /// The lexically first root key of the store (with its ID), or a new one.
    pub fn root_key_or_new(
        &self,
        pass: &mut Passphrases,
    ) -> anyhow::Result<(Option<String>, PrivateKey)> {
        let first = self
            .list()?
            .into_iter()
            .filter(|k| k.role == "root")
            .min_by(|a, b| a.id.cmp(&b.id));
        if let Some(k) = first {
            let kf = self
                .load(&k.id, pass)?
                .with_context(|| format!("root key {} vanished", k.id))?;
            return Ok((Some(k.id), kf.key));
        }
        let k = PrivateKey::generate(notary_core::Algorithm::EcdsaP256)?;
        self.add(&k, "root", None, pass)?;
        Ok((None, k))
    }

    /// The key with canonical ID `id`, decrypted.
    pub fn load(&self, id: &str, pass: &mut Passphrases) -> anyhow::Result<Option<KeyFile>> {
        let path = self.dir.join(format!("{id}.key"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let role = notary_core::pem::decode_one(&bytes)
            .ok()
            .and_then(|b| b.header("role").map(str::to_owned))
            .unwrap_or_default();
        Ok(Some(pass.open(&bytes, &role, id)?))
    }

    /// Deletes a key file (if present).
    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.dir.join(format!("{id}.key"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a key encrypted under the passphrase for `role` (`gun` header for base
    /// roles other than root, as Go writes it). Returns its canonical ID.
    pub fn add(
        &self,
        key: &PrivateKey,
        role: &str,
        gun: Option<&Gun>,
        pass: &mut Passphrases,
    ) -> anyhow::Result<String> {
        let id = key.public().canonical_id()?.to_string();
        let p = pass.for_new_key(role, &id)?;
        let gun = match role {
            "targets" | "snapshot" | "timestamp" => gun,
            _ => None,
        };
        let pem = KeyFile::encode(key, role, gun, Some(&p))?;
        ensure_private_dir(&self.dir)?;
        write_private_durable(&self.dir.join(format!("{id}.key")), pem.as_bytes())?;
        Ok(id)
    }
}
