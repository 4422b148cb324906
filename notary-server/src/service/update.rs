//! Validation and storage of an atomic update (spec §5.2): parse every part once, check
//! root, targets and delegations (parents first), snapshot, then sign what the server
//! manages and store everything in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use notary_core::metadata::{FileMeta, Root, Signed, Snapshot, Targets, Timestamp};
use notary_core::verify::{self, TrustPinning, Verified};
use notary_core::{Expires, Gun, RoleName};
use time::OffsetDateTime;

use super::current::Current;
use super::error::{bad_targets, invalid};
use super::{ReadError, Service, UpdateError};
use crate::storage::{NewFile, StoreError, StoredFile, sha256_hex};

impl Service {
    /// `DELETE`: removes everything stored for the GUN.
    pub async fn delete(&self, gun: &Gun) -> Result<(), StoreError> {
        let lock = self.gun_lock(gun.as_str()).await;
        let _guard = lock.lock().await;
        self.store.delete_gun(gun.as_str()).await?;
        self.invalidate(gun.as_str()).await;
        Ok(())
    }

    /// Validates and stores an atomic update (spec §5.2). `uploads` maps role → bytes.
    /// Gives up with [`UpdateError::TimedOut`] (nothing stored) when the update is not
    /// ready to commit within 30 s.
    pub async fn update(
        &self,
        gun: &Gun,
        uploads: BTreeMap<RoleName, Vec<u8>>,
    ) -> Result<(), UpdateError> {
        self.update_within(gun, uploads, std::time::Duration::from_secs(30))
            .await
    }

    /// [`Self::update`] with its own time limit, checked between stages (waiting for
    /// the GUN's lock, parsing, each role's verification, signing) and before the
    /// commit, so an abandoned update never stores anything and a committed one is
    /// never reported as abandoned.
    pub async fn update_within(
        &self,
        gun: &Gun,
        uploads: BTreeMap<RoleName, Vec<u8>>,
        limit: std::time::Duration,
    ) -> Result<(), UpdateError> {
        let started = std::time::Instant::now();
        let check = || {
            if started.elapsed() > limit {
                Err(UpdateError::TimedOut(limit))
            } else {
                Ok(())
            }
        };
        let lock = self.gun_lock(gun.as_str()).await;
        let _guard = lock.lock().await;
        check()?;
        let now = (self.clock)();
        let g = gun.as_str();

        // 1. Trusted state: the current chain (may be absent).
        let current = match self.load_chain(gun, now).await {
            Ok(c) => Some(c),
            Err(ReadError::NotFound) => None,
            Err(ReadError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(invalid("ErrValidation", other)),
        };
        // Every upload is parsed once, and refused unless canonical: CPU work on up to
        // `max_body_bytes`, done off the async workers so other requests (health
        // included) keep being served meanwhile.
        let (uploads, parsed) = tokio::task::spawn_blocking(move || {
            let parsed = parse_uploads(&uploads);
            (uploads, parsed)
        })
        .await
        .map_err(|e| invalid("ErrValidation", format!("parsing the update failed: {e}")))?;
        let mut parsed = parsed?;
        check()?;

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
        // Keys of the stored root may be adopted for signing (see `sign_role`).
        let anchor = stored_root.as_ref().map(|r| r.signed());
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
            check()?;
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
                let signed = self
                    .sign_role(gun, &root, anchor, &RoleName::snapshot(), sn)
                    .await?;
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
        let signed_ts = self
            .sign_role(gun, &root, anchor, &RoleName::timestamp(), ts)
            .await?;
        to_store.push(NewFile {
            role: "timestamp".into(),
            version: signed_ts.signed().version as i64,
            data: signed_ts.into_file_bytes(),
        });

        // 6. Store atomically (the last point at which the update may be abandoned).
        check()?;
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

pub(super) fn expires(now: OffsetDateTime, ttl: time::Duration) -> Result<Expires, UpdateError> {
    Expires::after(now, ttl).map_err(|e| invalid("ErrValidation", e))
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
