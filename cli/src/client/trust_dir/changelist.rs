//! The changelist: `tuf/<gun>/changelist/<%020d nanos>_<uuid>.change`.

use std::path::PathBuf;

use anyhow::Context as _;
use notary_core::Gun;
use notary_core::changelist::{Change, RawChange};

use super::write_private;
use crate::client::Settings;

/// The changelist of one GUN.
pub struct Changelist {
    dir: PathBuf,
}

impl Changelist {
    /// `tuf/<gun>/changelist/`.
    pub fn new(settings: &Settings, gun: &Gun) -> Self {
        Changelist {
            dir: settings.gun_dir(gun).join("changelist"),
        }
    }

    /// Changes in application order (file-name order), with their files.
    pub fn list(&self) -> anyhow::Result<Vec<(PathBuf, RawChange)>> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "change"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f)?;
            let c: RawChange = serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt change file {}", f.display()))?;
            out.push((f, c));
        }
        Ok(out)
    }

    /// Stages a change, in the file Go's `notary` would write for it.
    pub fn add(&self, change: &Change) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(&change.to_raw()?)?;
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let mut u = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut u)
            .map_err(|_| anyhow::anyhow!("random"))?;
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let h = hex::encode(u);
        let name = format!(
            "{nanos:020}_{}-{}-{}-{}-{}.change",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        );
        write_private(&self.dir.join(name), &bytes)
    }

    /// Deletes every staged change.
    pub fn clear(&self) -> anyhow::Result<()> {
        for (f, _) in self.list()? {
            std::fs::remove_file(&f)?;
        }
        Ok(())
    }
}
