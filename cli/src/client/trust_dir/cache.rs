//! The metadata cache: `tuf/<gun>/metadata/<role>.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use notary_core::update::{Cache, Repository};
use notary_core::{Gun, RoleName};

use super::write_private;
use crate::client::Settings;

/// The cached metadata of one GUN.
pub struct MetadataCache {
    dir: PathBuf,
}

impl MetadataCache {
    /// `tuf/<gun>/metadata/`.
    pub fn new(settings: &Settings, gun: &Gun) -> Self {
        MetadataCache {
            dir: settings.gun_dir(gun).join("metadata"),
        }
    }

    fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.json"))
    }

    /// A cached file.
    pub fn get(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(role)).ok()
    }

    /// Stores a file (not rewritten when unchanged).
    pub fn put(&self, role: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(role);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        write_private(&path, bytes)
    }

    /// What the update engine starts from.
    pub fn engine_cache(&self) -> Cache {
        let mut c = Cache {
            root: self.get("root"),
            timestamp: self.get("timestamp"),
            snapshot: self.get("snapshot"),
            targets: BTreeMap::new(),
        };
        if let Some(t) = self.get("targets") {
            c.targets.insert(RoleName::targets(), t);
        }
        let deleg = self.dir.join("targets");
        let mut stack = vec![deleg];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(rel) = p
                    .strip_prefix(&self.dir)
                    .ok()
                    .and_then(|r| r.to_str())
                    .and_then(|r| r.strip_suffix(".json"))
                {
                    if let (Ok(role), Ok(b)) = (RoleName::new(rel), std::fs::read(&p)) {
                        c.targets.insert(role, b);
                    }
                }
            }
        }
        c
    }

    /// Writes every file of a verified repository.
    pub fn store(&self, repo: &Repository) -> anyhow::Result<()> {
        self.put("root", repo.root().file_bytes())?;
        self.put("timestamp", repo.timestamp().file_bytes())?;
        self.put("snapshot", repo.snapshot().file_bytes())?;
        for (name, role) in repo.roles() {
            self.put(name.as_str(), role.metadata.file_bytes())?;
        }
        Ok(())
    }
}
