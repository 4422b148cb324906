//! The changelist: `tuf/<gun>/changelist/<%020d nanos>_<uuid>.change`.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use notary_core::Gun;

use super::write_private;
use crate::client::Settings;

/// One staged change, in Go's JSON shape (fields in Go's order).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Change {
    /// `create`, `update`, `delete`.
    pub action: String,
    /// The scope: `targets`, `targets/x`, `root`.
    pub role: String,
    /// `target`, `delegation`, `witness`, `role`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Target name (or `""`).
    pub path: String,
    /// Base64 of the inner JSON, or null.
    pub data: Option<String>,
}

impl Change {
    /// A change (`role` is the scope).
    pub fn new(
        action: &str,
        role: impl ToString,
        kind: &str,
        path: impl ToString,
        data: Option<String>,
    ) -> Change {
        Change {
            action: action.to_owned(),
            role: role.to_string(),
            kind: kind.to_owned(),
            path: path.to_string(),
            data,
        }
    }

    /// The decoded `data`.
    pub fn data_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.data
            .as_deref()
            .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
            .transpose()
            .context("changelist data is not base64")
    }
}

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
    pub fn list(&self) -> anyhow::Result<Vec<(PathBuf, Change)>> {
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
            let c: Change = serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt change file {}", f.display()))?;
            out.push((f, c));
        }
        Ok(out)
    }

    /// Stages a change.
    pub fn add(&self, change: &Change) -> anyhow::Result<()> {
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
        write_private(&self.dir.join(name), &serde_json::to_vec(change)?)
    }

    /// Deletes every staged change.
    pub fn clear(&self) -> anyhow::Result<()> {
        for (f, _) in self.list()? {
            std::fs::remove_file(&f)?;
        }
        Ok(())
    }
}
