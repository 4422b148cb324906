//! The current chain of a GUN (spec §5.7): timestamp → snapshot → role files, cached in
//! process until the next update or expiry, regenerating an expired timestamp (and an
//! expired server-managed snapshot) on read (spec §5.6).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex};

use notary_core::metadata::{FileMeta, RoleMetadata, Root, Signed, Snapshot, Timestamp};
use notary_core::{Expires, Gun, RoleName};
use time::OffsetDateTime;

use super::{ReadError, Served, Service};
use crate::storage::{NewFile, StoreError, StoredFile, sha256_hex};

/// The current chain of a GUN, cached until the next update or expiry.
#[derive(Debug)]
pub(super) struct Current {
    pub(super) timestamp: StoredFile,
    pub(super) timestamp_expires: OffsetDateTime,
    pub(super) snapshot: StoredFile,
    pub(super) snapshot_expires: OffsetDateTime,
    /// role → sha256 hex of its current file, from the snapshot.
    pub(super) meta: BTreeMap<String, String>,
    pub(super) files: StdMutex<HashMap<String, StoredFile>>,
    /// The chain verified as a client would, once asked for ([`Service::trusted`]).
    pub(super) trusted: std::sync::OnceLock<Arc<notary_core::update::Repository>>,
}

impl Current {
    pub(super) fn new(
        timestamp: StoredFile,
        ts: &Timestamp,
        snapshot: StoredFile,
        sn: &Snapshot,
        files: HashMap<String, StoredFile>,
    ) -> Self {
        let meta = sn
            .meta
            .iter()
            .filter_map(|(role, m)| m.sha256().map(|h| (role.clone(), hex::encode(h))))
            .collect();
        Current {
            timestamp_expires: ts.expires().datetime(),
            snapshot_expires: sn.expires().datetime(),
            timestamp,
            snapshot,
            meta,
            files: StdMutex::new(files),
            trusted: std::sync::OnceLock::new(),
        }
    }

    fn fresh(&self, now: OffsetDateTime) -> bool {
        self.timestamp_expires >= now && self.snapshot_expires >= now
    }
}

impl Service {
    /// The current chain, regenerating the timestamp (and an expired server-managed
    /// snapshot) when needed (spec §5.6).
    pub(super) async fn current(&self, gun: &Gun) -> Result<Arc<Current>, ReadError> {
        let now = (self.clock)();
        if let Some(c) = self.cache.read().await.get(gun.as_str()) {
            if c.fresh(now) {
                return Ok(c.clone());
            }
        }
        let lock = self.gun_lock(gun.as_str()).await;
        let _guard = lock.lock().await;
        self.current_locked(gun, now).await
    }

    /// [`Self::current`] for callers already holding the GUN's lock.
    pub(super) async fn current_locked(
        &self,
        gun: &Gun,
        now: OffsetDateTime,
    ) -> Result<Arc<Current>, ReadError> {
        if let Some(c) = self.cache.read().await.get(gun.as_str()) {
            if c.fresh(now) {
                return Ok(c.clone());
            }
        }
        let current = Arc::new(self.load_current(gun, now).await?);
        self.cache
            .write()
            .await
            .insert(gun.to_string(), current.clone());
        Ok(current)
    }

    /// The stored current timestamp and the snapshot it names, parsed.
    async fn read_chain(
        &self,
        g: &str,
    ) -> Result<(StoredFile, Signed<Timestamp>, StoredFile, Signed<Snapshot>), ReadError> {
        let broken = |e: notary_core::metadata::ParseError| ReadError::Broken(e.to_string());
        let ts_file = self
            .store
            .latest(g, "timestamp")
            .await?
            .ok_or(ReadError::NotFound)?;
        let ts = Signed::<Timestamp>::parse(ts_file.data.to_vec()).map_err(broken)?;
        let sha = ts
            .signed()
            .meta
            .get("snapshot")
            .and_then(FileMeta::sha256)
            .map(hex::encode)
            .ok_or_else(|| ReadError::Broken("timestamp without a snapshot sha256".into()))?;
        let sn_file = self
            .store
            .by_checksum(g, "snapshot", &sha)
            .await?
            .ok_or(ReadError::NotFound)?;
        let sn = Signed::<Snapshot>::parse(sn_file.data.to_vec()).map_err(broken)?;
        Ok((ts_file, ts, sn_file, sn))
    }

    async fn load_current(&self, gun: &Gun, now: OffsetDateTime) -> Result<Current, ReadError> {
        let g = gun.as_str();
        let (mut ts_file, mut ts, mut sn_file, mut sn) = self.read_chain(g).await?;
        let sn_meta = ts
            .signed()
            .meta
            .get("snapshot")
            .cloned()
            .ok_or_else(|| ReadError::Broken("timestamp without snapshot".into()))?;
        let ts_stale =
            ts.signed().expires().is_expired(now) || sn_meta.check(&sn_file.data).is_err();
        let sn_expired = sn.signed().expires().is_expired(now);
        if ts_stale || sn_expired {
            // Regenerate under the current root.
            let root = self.current_root_from(g, sn.signed()).await?;
            let mut new_files = Vec::new();
            if sn_expired {
                let mut s = sn.signed().clone();
                s.set_version_expires(
                    s.version + 1,
                    Expires::after(now, self.expiries.snapshot)
                        .map_err(|e| ReadError::Broken(e.to_string()))?,
                );
                let signed = self
                    .sign_role(gun, &root, Some(&root), &RoleName::snapshot(), s)
                    .await
                    .map_err(|e| ReadError::Broken(e.to_string()))?;
                new_files.push(NewFile {
                    role: "snapshot".into(),
                    version: signed.signed().version as i64,
                    data: signed.file_bytes().to_vec(),
                });
                sn = signed;
            }
            let new_ts = Timestamp {
                expires: Expires::after(now, self.expiries.timestamp)
                    .map_err(|e| ReadError::Broken(e.to_string()))?,
                meta: [("snapshot".to_owned(), FileMeta::from_bytes(sn.file_bytes()))]
                    .into_iter()
                    .collect(),
                version: ts.signed().version + 1,
            };
            let signed_ts = self
                .sign_role(gun, &root, Some(&root), &RoleName::timestamp(), new_ts)
                .await
                .map_err(|e| ReadError::Broken(e.to_string()))?;
            new_files.push(NewFile {
                role: "timestamp".into(),
                version: signed_ts.signed().version as i64,
                data: signed_ts.file_bytes().to_vec(),
            });
            match self.store.commit(g, &new_files).await {
                // Another replica regenerated first: read what it stored.
                Err(StoreError::Version { .. }) => return self.load_current_plain(gun).await,
                other => other?,
            }
            ts_file = self
                .store
                .latest(g, "timestamp")
                .await?
                .ok_or(ReadError::NotFound)?;
            sn_file = self
                .store
                .by_checksum(g, "snapshot", &sha256_hex(sn.file_bytes()))
                .await?
                .ok_or(ReadError::NotFound)?;
            ts = signed_ts;
        }
        Ok(Current::new(
            ts_file,
            ts.signed(),
            sn_file,
            sn.signed(),
            HashMap::new(),
        ))
    }

    /// The stored chain as it is, without regenerating anything.
    async fn load_current_plain(&self, gun: &Gun) -> Result<Current, ReadError> {
        let (ts_file, ts, sn_file, sn) = self.read_chain(gun.as_str()).await?;
        Ok(Current::new(
            ts_file,
            ts.signed(),
            sn_file,
            sn.signed(),
            HashMap::new(),
        ))
    }

    async fn current_root_from(&self, gun: &str, sn: &Snapshot) -> Result<Root, ReadError> {
        let sha = sn
            .meta
            .get("root")
            .and_then(FileMeta::sha256)
            .map(hex::encode)
            .ok_or(ReadError::NotFound)?;
        let file = self
            .store
            .by_checksum(gun, "root", &sha)
            .await?
            .ok_or(ReadError::NotFound)?;
        Ok(Signed::<Root>::parse(file.data.to_vec())
            .map_err(|e| ReadError::Broken(e.to_string()))?
            .into_signed())
    }

    /// `GET {role}.json`: the current file of a role.
    pub async fn get_current(&self, gun: &Gun, role: &RoleName) -> Result<Served, ReadError> {
        let cur = self.current(gun).await?;
        self.file_in(&cur, gun, role).await
    }

    pub(super) async fn file_in(
        &self,
        cur: &Current,
        gun: &Gun,
        role: &RoleName,
    ) -> Result<Served, ReadError> {
        match role.as_str() {
            "timestamp" => return Ok(cur.timestamp.clone()),
            "snapshot" => return Ok(cur.snapshot.clone()),
            _ => {}
        }
        if let Ok(files) = cur.files.lock() {
            if let Some(f) = files.get(role.as_str()) {
                return Ok(f.clone());
            }
        }
        let sha = cur.meta.get(role.as_str()).ok_or(ReadError::NotFound)?;
        let file = self
            .store
            .by_checksum(gun.as_str(), role.as_str(), sha)
            .await?
            .ok_or(ReadError::NotFound)?;
        if let Ok(mut files) = cur.files.lock() {
            files.insert(role.to_string(), file.clone());
        }
        Ok(file)
    }

    /// `GET {role}.{sha256}.json`.
    pub async fn get_by_checksum(
        &self,
        gun: &Gun,
        role: &RoleName,
        sha: &str,
    ) -> Result<Served, ReadError> {
        self.store
            .by_checksum(gun.as_str(), role.as_str(), sha)
            .await?
            .ok_or(ReadError::NotFound)
    }

    /// `GET {version}.{role}.json`.
    pub async fn get_by_version(
        &self,
        gun: &Gun,
        role: &RoleName,
        version: i64,
    ) -> Result<Served, ReadError> {
        if version < 1 {
            return Err(ReadError::NotFound);
        }
        self.store
            .by_version(gun.as_str(), role.as_str(), version)
            .await?
            .ok_or(ReadError::NotFound)
    }
}
