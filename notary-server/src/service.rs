//! The metadata service: current-state resolution through timestamp → snapshot → role
//! (spec §5.7) with an in-process cache, update validation and storage (§5.2), and
//! server signing of snapshot and timestamp (§5.4-5.6).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex as StdMutex};

use notary_core::metadata::{
    FileMeta, RoleMetadata, Root, Signature, Signed, Snapshot, Targets, Timestamp,
};
use notary_core::repo::Expiries;
use notary_core::verify::{self, TrustPinning, Verified, VerifyError};
use notary_core::{Expires, Gun, PublicKey, RoleName};
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use crate::storage::{NewFile, Store, StoreError, StoredFile, sha256_hex};
use crate::trust::{TrustError, TrustService};

/// Why an update was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Spec §4.9 `INVALID_UPDATE`: `name` is Go's error type name.
    #[error("{name}: {msg}")]
    Invalid {
        /// `ErrValidation`, `ErrBadRoot`, `ErrBadTargets`, `ErrBadSnapshot`, `ErrBadHierarchy`.
        name: &'static str,
        /// Message.
        msg: String,
        /// For `ErrBadHierarchy`, the missing role.
        missing: Option<&'static str>,
    },
    /// Spec §4.9 `VERSION`.
    #[error("a newer version is already stored")]
    Version,
    /// Storage failure.
    #[error(transparent)]
    Store(StoreError),
    /// Trust service failure.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Version { .. } => UpdateError::Version,
            other => UpdateError::Store(other),
        }
    }
}

fn invalid(name: &'static str, msg: impl std::fmt::Display) -> UpdateError {
    UpdateError::Invalid {
        name,
        msg: msg.to_string(),
        missing: None,
    }
}

/// Errors reading current metadata.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing stored.
    #[error("not found")]
    NotFound,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data no longer usable (e.g. expired root on regeneration).
    #[error("{0}")]
    Broken(String),
    /// Trust service failure while regenerating.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// The current chain of a GUN, cached until the next update or expiry.
#[derive(Debug)]
struct Current {
    timestamp: StoredFile,
    timestamp_expires: OffsetDateTime,
    snapshot: StoredFile,
    snapshot_expires: OffsetDateTime,
    /// role → sha256 hex of its current file, from the snapshot.
    meta: BTreeMap<String, String>,
    files: StdMutex<HashMap<String, StoredFile>>,
}

impl Current {
    fn new(
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
        }
    }

    fn fresh(&self, now: OffsetDateTime) -> bool {
        self.timestamp_expires >= now && self.snapshot_expires >= now
    }
}

/// Where the service reads the time (the system clock, or a test's).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Shared state of the service.
pub struct Service {
    clock: Clock,
    store: Store,
    trust: Arc<dyn TrustService>,
    expiries: Expiries,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    cache: RwLock<HashMap<String, Arc<Current>>>,
}

/// A role file and the time it was stored (for `Last-Modified`).
pub type Served = StoredFile;

impl Service {
    /// A service over `store` signing with `trust`.
    pub fn new(store: Store, trust: Arc<dyn TrustService>) -> Self {
        Service {
            clock: Arc::new(OffsetDateTime::now_utc),
            store,
            trust,
            expiries: Expiries::default(),
            locks: Mutex::new(HashMap::new()),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces the clock (tests of expiry and regeneration).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The trust service.
    pub fn trust(&self) -> &Arc<dyn TrustService> {
        &self.trust
    }

    async fn gun_lock(&self, gun: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().await;
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(gun.to_owned()).or_default().clone()
    }

    async fn invalidate(&self, gun: &str) {
        self.cache.write().await.remove(gun);
    }

    /// For stores shared by several replicas: polls the changefeed every `every` and drops
    /// the cached chain of each GUN another process changed. Stops with the service.
    pub async fn follow_changefeed(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> Result<(), StoreError> {
        let mut last = self.store.last_change().await?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(service) = weak.upgrade() else {
                    return;
                };
                match service.store.changes_after(last).await {
                    Ok(changes) => {
                        if let Some((id, _)) = changes.last() {
                            last = *id;
                        }
                        if !changes.is_empty() {
                            let mut cache = service.cache.write().await;
                            for (_, gun) in &changes {
                                cache.remove(gun);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "changefeed poll failed"),
                }
            }
        });
        Ok(())
    }

    /// The current chain, regenerating the timestamp (and an expired server-managed
    /// snapshot) when needed (spec §5.6).
    async fn current(&self, gun: &Gun) -> Result<Arc<Current>, ReadError> {
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
    async fn current_locked(
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
                    .sign_role(&root, &RoleName::snapshot(), s)
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
                .sign_role(&root, &RoleName::timestamp(), new_ts)
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

    async fn file_in(
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

    /// `GET {role}.key`: the key listed in the current root that this server holds, else
    /// a created (or reused unused) one.
    pub async fn get_or_create_key(
        &self,
        gun: &Gun,
        role: &RoleName,
    ) -> Result<PublicKey, UpdateError> {
        // The current root through the cached chain (no store read when cached).
        let root = match self.current(gun).await {
            Ok(cur) => self.file_in(&cur, gun, &RoleName::root()).await.ok(),
            Err(_) => None,
        };
        if let Some(root) = root.and_then(|f| Signed::<Root>::parse(f.data.to_vec()).ok()) {
            let keyids = root
                .signed()
                .role(role.as_str())
                .map(|r| r.keyids.clone())
                .unwrap_or_default();
            for id in keyids {
                let Some(Ok(canonical)) = root.signed().keys.get(&id).map(PublicKey::canonical_id)
                else {
                    continue;
                };
                if let Some(pk) = self.trust.public_key(&canonical).await? {
                    return Ok(pk);
                }
            }
        }
        Ok(self.trust.create_key(gun, role).await?)
    }

    /// `POST {role}.key`: a new key for rotation.
    pub async fn rotate_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, UpdateError> {
        Ok(self.trust.create_key(gun, role).await?)
    }

    /// `DELETE`: removes everything stored for the GUN.
    pub async fn delete(&self, gun: &Gun) -> Result<(), StoreError> {
        let lock = self.gun_lock(gun.as_str()).await;
        let _guard = lock.lock().await;
        self.store.delete_gun(gun.as_str()).await?;
        self.invalidate(gun.as_str()).await;
        Ok(())
    }

    /// Signs a role object with every key of `role` in `root` that the trust service holds.
    async fn sign_role<T: RoleMetadata>(
        &self,
        root: &Root,
        role: &RoleName,
        obj: T,
    ) -> Result<Signed<T>, UpdateError> {
        let auth = root
            .role(role.as_str())
            .ok_or_else(|| invalid("ErrValidation", format!("root has no {role} role")))?;
        let s = Signed::<T>::signing_bytes(&obj, notary_core::Dialect::NotaryV1)
            .map_err(|e| invalid("ErrValidation", e))?;
        let mut sigs = Vec::new();
        for id in &auth.keyids {
            let Some(key) = root.keys.get(id) else {
                continue;
            };
            let Ok(canonical) = key.canonical_id() else {
                continue;
            };
            if self.trust.public_key(&canonical).await?.is_none() {
                continue;
            }
            let (method, sig) = self.trust.sign(&canonical, &s).await?;
            sigs.push(Signature {
                keyid: id.clone(),
                method,
                sig: notary_core::metadata::Bytes(sig),
            });
        }
        if sigs.is_empty() {
            return Err(match role.as_str() {
                "snapshot" => UpdateError::Invalid {
                    name: "ErrBadHierarchy",
                    msg: "no snapshot was included in update and server does not hold current snapshot key for repository".into(),
                    missing: Some("snapshot"),
                },
                _ => invalid("ErrBadRoot", format!("no  {role} keys exist on the server")),
            });
        }
        Signed::from_parts(obj, sigs).map_err(|e| invalid("ErrValidation", e))
    }

    /// Validates and stores an atomic update (spec §5.2). `uploads` maps role → bytes.
    pub async fn update(
        &self,
        gun: &Gun,
        uploads: BTreeMap<RoleName, Vec<u8>>,
    ) -> Result<(), UpdateError> {
        let lock = self.gun_lock(gun.as_str()).await;
        let _guard = lock.lock().await;
        let now = (self.clock)();
        let g = gun.as_str();

        // 1. Trusted state: the current chain (may be absent).
        let current = match self.load_chain(gun, now).await {
            Ok(c) => Some(c),
            Err(ReadError::NotFound) => None,
            Err(ReadError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(invalid("ErrValidation", other)),
        };
        // Every upload is parsed once, and refused unless canonical.
        let mut parsed = parse_uploads(&uploads)?;

        // 2. Root.
        let stored_root = match &current {
            Some(c) => Some(
                Signed::<Root>::parse(c.root.data.to_vec())
                    .map_err(|e| invalid("ErrValidation", e))?,
            ),
            None => None,
        };
        let mut to_store: Vec<NewFile> = Vec::new();
        let root: Root = match uploads.get(&RoleName::root()) {
            Some(bytes) => {
                let parsed = parsed
                    .root
                    .take()
                    .ok_or_else(|| invalid("ErrBadRoot", "root upload lost"))?;
                // The stored root is the anchor a new root must chain from. It is only
                // checked here, when a root is uploaded: it was validated when stored.
                let stored_root_verified: Option<Verified<Root>> = match &stored_root {
                    Some(r) => Some(
                        verify::verify_root(r.clone(), gun, None, &TrustPinning::default(), now)
                            .map_err(|e| {
                                invalid(
                                    "ErrValidation",
                                    format!("stored root no longer valid: {e}"),
                                )
                            })?,
                    ),
                    None => None,
                };
                let cur = stored_root.as_ref().map_or(1, |r| r.signed().version);
                let new = parsed.signed().version;
                if new != cur && new != cur + 1 {
                    return Err(invalid(
                        "ErrBadRoot",
                        format!(
                            "Root modifications must increment the version. Current {cur}, new {new}"
                        ),
                    ));
                }
                let v = verify::verify_root(
                    parsed,
                    gun,
                    stored_root_verified.as_ref(),
                    &TrustPinning::default(),
                    now,
                )
                .map_err(|e| invalid("ErrBadRoot", e))?;
                verify::check_expiry(&*v, &RoleName::root(), now)
                    .map_err(|e| invalid("ErrBadRoot", e))?;
                to_store.push(NewFile {
                    role: "root".into(),
                    version: v.version as i64,
                    data: bytes.clone(),
                });
                (*v).clone()
            }
            None => match &stored_root {
                Some(r) => r.signed().clone(),
                None => {
                    return Err(invalid(
                        "ErrValidation",
                        "no pre-existing root and no root provided in update.",
                    ));
                }
            },
        };
        let root_bytes: Vec<u8> = match uploads.get(&RoleName::root()) {
            Some(b) => b.clone(),
            None => current
                .as_ref()
                .map(|c| c.root.data.to_vec())
                .unwrap_or_default(),
        };

        // 3. Targets and delegations, parents first.
        let mut uploaded_targets: Vec<&RoleName> =
            uploads.keys().filter(|r| r.is_targets_like()).collect();
        uploaded_targets.sort_by_key(|r| (r.as_str().matches('/').count(), r.as_str().to_owned()));
        let mut loaded: BTreeMap<RoleName, (Targets, Vec<u8>)> = BTreeMap::new();
        for role in uploaded_targets {
            let bytes = &uploads[role];
            let (keys, auth) = match role.parent() {
                None => {
                    let auth = root
                        .role("targets")
                        .cloned()
                        .ok_or_else(|| invalid("ErrBadTargets", "root has no targets role"))?;
                    (root.keys.clone(), auth)
                }
                Some(parent) => {
                    if !loaded.contains_key(&parent) {
                        let file = self
                            .load_role_for_update(gun, &parent, current.as_ref())
                            .await?;
                        let parsed = Signed::<Targets>::parse(file.clone())
                            .map_err(|e| invalid("ErrBadTargets", e))?;
                        loaded.insert(parent.clone(), (parsed.into_signed(), file));
                    }
                    let (pt, _) = &loaded[&parent];
                    let d = pt.delegation(role).ok_or_else(|| {
                        invalid(
                            "ErrBadTargets",
                            format!("{role} is not delegated by {parent}"),
                        )
                    })?;
                    (
                        pt.delegations.keys.clone(),
                        notary_core::metadata::RoleKeys {
                            keyids: d.keyids.clone(),
                            threshold: d.threshold,
                        },
                    )
                }
            };
            let parsed = parsed
                .targets
                .remove(role)
                .ok_or_else(|| invalid("ErrBadTargets", "targets upload lost"))?;
            let v = verify::verify_role(parsed, role, &keys, &auth)
                .map_err(|e| bad_targets(role, e))?;
            verify::check_expiry(&*v, role, now).map_err(|e| bad_targets(role, e))?;
            to_store.push(NewFile {
                role: role.to_string(),
                version: v.version as i64,
                data: bytes.clone(),
            });
            loaded.insert(role.clone(), ((*v).clone(), bytes.clone()));
        }

        // 4. Snapshot: uploaded and checked, or generated.
        let snapshot_bytes: Vec<u8> = match uploads.get(&RoleName::snapshot()) {
            Some(bytes) => {
                let parsed = parsed
                    .snapshot
                    .take()
                    .ok_or_else(|| invalid("ErrBadSnapshot", "snapshot upload lost"))?;
                let auth = root
                    .role("snapshot")
                    .cloned()
                    .ok_or_else(|| invalid("ErrBadSnapshot", "root has no snapshot role"))?;
                let v = verify::verify_role(parsed, &RoleName::snapshot(), &root.keys, &auth)
                    .map_err(|e| invalid("ErrBadSnapshot", e))?;
                verify::check_expiry(&*v, &RoleName::snapshot(), now)
                    .map_err(|e| invalid("ErrBadSnapshot", e))?;
                verify::check_meta(&v.meta, &RoleName::snapshot(), "root", &root_bytes)
                    .map_err(|e| invalid("ErrBadSnapshot", e))?;
                for (role, (_, b)) in &loaded {
                    verify::check_meta(&v.meta, &RoleName::snapshot(), role.as_str(), b)
                        .map_err(|e| invalid("ErrBadSnapshot", e))?;
                }
                to_store.push(NewFile {
                    role: "snapshot".into(),
                    version: v.version as i64,
                    data: bytes.clone(),
                });
                bytes.clone()
            }
            None => {
                let (mut meta, version) = match &current {
                    Some(c) => {
                        let prev = Signed::<Snapshot>::parse(c.snapshot.data.to_vec())
                            .map_err(|e| invalid("ErrValidation", e))?;
                        (prev.signed().meta.clone(), prev.signed().version)
                    }
                    None => {
                        if !loaded.contains_key(&RoleName::targets()) {
                            return Err(invalid(
                                "ErrBadHierarchy",
                                "no targets metadata in the initial update",
                            ));
                        }
                        (BTreeMap::new(), 0)
                    }
                };
                // Meta of the exact stored bytes (Go re-serialises; see spec §3.7 b).
                meta.insert("root".into(), FileMeta::from_bytes(&root_bytes));
                for (role, (_, b)) in &loaded {
                    meta.insert(role.to_string(), FileMeta::from_bytes(b));
                }
                let sn = Snapshot {
                    expires: expires(now, self.expiries.snapshot)?,
                    meta,
                    version: version + 1,
                };
                let signed = self.sign_role(&root, &RoleName::snapshot(), sn).await?;
                to_store.push(NewFile {
                    role: "snapshot".into(),
                    version: signed.signed().version as i64,
                    data: signed.file_bytes().to_vec(),
                });
                signed.into_file_bytes()
            }
        };

        // 5. Timestamp, always generated.
        let prev_ts_version = match &current {
            Some(c) => c.current.timestamp.version as u64,
            None => match self.store.latest(g, "timestamp").await? {
                Some(f) => f.version as u64,
                None => 0,
            },
        };
        let ts = Timestamp {
            expires: expires(now, self.expiries.timestamp)?,
            meta: [("snapshot".to_owned(), FileMeta::from_bytes(&snapshot_bytes))]
                .into_iter()
                .collect(),
            version: prev_ts_version + 1,
        };
        let signed_ts = self.sign_role(&root, &RoleName::timestamp(), ts).await?;
        to_store.push(NewFile {
            role: "timestamp".into(),
            version: signed_ts.signed().version as i64,
            data: signed_ts.into_file_bytes(),
        });

        // 6. Store atomically.
        let result = self.store.commit(g, &to_store).await;
        if let Err(e) = result {
            self.invalidate(g).await;
            return Err(e.into());
        }
        // The new chain is known: cache it instead of reading it back.
        match Self::current_from_update(&to_store, current.as_ref().map(|c| &c.root), now) {
            Some(c) => {
                self.cache.write().await.insert(g.to_owned(), Arc::new(c));
            }
            None => self.invalidate(g).await,
        }
        tracing::info!(gun = %gun, roles = to_store.len(), "update stored");
        Ok(())
    }

    /// The current chain right after storing `files` (which end with snapshot and timestamp).
    fn current_from_update(
        files: &[NewFile],
        previous_root: Option<&StoredFile>,
        now: OffsetDateTime,
    ) -> Option<Current> {
        let stored = |f: &NewFile| StoredFile {
            role: f.role.clone(),
            version: f.version,
            data: bytes::Bytes::from(f.data.clone()),
            sha256: sha256_hex(&f.data),
            created_at: now,
        };
        let ts = files.iter().find(|f| f.role == "timestamp")?;
        let sn = files.iter().find(|f| f.role == "snapshot")?;
        let ts_parsed = Signed::<Timestamp>::parse(ts.data.clone()).ok()?;
        let sn_parsed = Signed::<Snapshot>::parse(sn.data.clone()).ok()?;
        let mut cached: HashMap<String, StoredFile> = files
            .iter()
            .filter(|f| {
                f.role == "root" || RoleName::new(&f.role).is_ok_and(|r| r.is_targets_like())
            })
            .map(|f| (f.role.clone(), stored(f)))
            .collect();
        let current = Current::new(
            stored(ts),
            ts_parsed.signed(),
            stored(sn),
            sn_parsed.signed(),
            HashMap::new(),
        );
        // An unchanged root stays cached.
        if let Some(prev) = previous_root {
            if !cached.contains_key("root") && current.meta.get("root") == Some(&prev.sha256) {
                cached.insert("root".into(), prev.clone());
            }
        }
        if let Ok(mut files) = current.files.lock() {
            *files = cached;
        }
        Some(current)
    }

    /// The stored current files needed for an update.
    async fn load_chain(&self, gun: &Gun, now: OffsetDateTime) -> Result<Chain, ReadError> {
        let cur = self.current_locked(gun, now).await?;
        let root = self.file_in(&cur, gun, &RoleName::root()).await?;
        Ok(Chain {
            root,
            snapshot: cur.snapshot.clone(),
            current: cur,
        })
    }

    async fn load_role_for_update(
        &self,
        gun: &Gun,
        role: &RoleName,
        chain: Option<&Chain>,
    ) -> Result<Vec<u8>, UpdateError> {
        let missing = || {
            invalid(
                "ErrBadTargets",
                format!("parent role {role} is neither uploaded nor stored"),
            )
        };
        let sha = chain
            .and_then(|c| c.current.meta.get(role.as_str()))
            .ok_or_else(missing)?;
        let file = self
            .store
            .by_checksum(gun.as_str(), role.as_str(), sha)
            .await?
            .ok_or_else(missing)?;
        Ok(file.data.to_vec())
    }
}

struct Chain {
    root: StoredFile,
    snapshot: StoredFile,
    current: Arc<Current>,
}

fn expires(now: OffsetDateTime, ttl: time::Duration) -> Result<Expires, UpdateError> {
    Expires::after(now, ttl).map_err(|e| invalid("ErrValidation", e))
}

fn bad_targets(role: &RoleName, e: VerifyError) -> UpdateError {
    match e {
        VerifyError::Threshold { .. } | VerifyError::NoSignatures { .. } => invalid(
            "ErrBadTargets",
            format!("valid signatures did not meet threshold for {role}"),
        ),
        other => invalid("ErrBadTargets", other),
    }
}

/// Uploaded files, parsed once.
struct Parsed {
    root: Option<Signed<Root>>,
    targets: BTreeMap<RoleName, Signed<Targets>>,
    snapshot: Option<Signed<Snapshot>>,
}

/// Parses every upload (an uploaded timestamp is ignored, as Go does) and refuses any
/// whose bytes are not Go's re-serialisation of their content: Go would accept them and
/// then publish a snapshot describing bytes nobody stored (spec §3.7 b).
fn parse_uploads(uploads: &BTreeMap<RoleName, Vec<u8>>) -> Result<Parsed, UpdateError> {
    let mut out = Parsed {
        root: None,
        targets: BTreeMap::new(),
        snapshot: None,
    };
    for (role, bytes) in uploads {
        let malformed = |e: notary_core::metadata::ParseError| UpdateError::Invalid {
            name: "MALFORMED",
            msg: format!("{role}: {e}"),
            missing: None,
        };
        let canonical = match role.as_str() {
            "timestamp" => continue,
            "root" => {
                let p = Signed::<Root>::parse(bytes.clone()).map_err(malformed)?;
                let ok = p.is_canonical();
                out.root = Some(p);
                ok
            }
            "snapshot" => {
                let p = Signed::<Snapshot>::parse(bytes.clone()).map_err(malformed)?;
                let ok = p.is_canonical();
                out.snapshot = Some(p);
                ok
            }
            _ => {
                let p = Signed::<Targets>::parse(bytes.clone()).map_err(malformed)?;
                let ok = p.is_canonical();
                out.targets.insert(role.clone(), p);
                ok
            }
        };
        if !canonical {
            return Err(invalid(
                "ErrValidation",
                format!(
                    "{role} is not in canonical form (whitespace, member order, time format or unknown fields differ from what Notary writes); refusing it because clients could not verify the repository"
                ),
            ));
        }
    }
    Ok(out)
}
