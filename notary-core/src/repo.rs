//! Repository editing: create a collection as Go does (spec §10.3), stage target and
//! delegation changes, and sign every changed role into byte-exact files (spec §10.4).

use std::collections::{BTreeMap, BTreeSet};

use time::{Duration, OffsetDateTime};

use crate::crypto::{KeyError, PrivateKey, PublicKey, SignError, Signer};
use crate::expires::{Expires, TimeError};
use crate::metadata::{
    DelegationRole, FileMeta, RoleKeys, Root, Signed, Snapshot, Targets, Timestamp,
};
use crate::names::{Gun, KeyId, RoleName};
use crate::update::Repository;

/// Go's effective expiries (spec §2.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiries {
    /// Root: 10 × 365 days.
    pub root: Duration,
    /// Targets and delegations: 3 × 365 days.
    pub targets: Duration,
    /// Snapshot: 3 × 365 days.
    pub snapshot: Duration,
    /// Timestamp: 14 days.
    pub timestamp: Duration,
}

impl Default for Expiries {
    fn default() -> Self {
        Expiries {
            root: Duration::days(3650),
            targets: Duration::days(3 * 365),
            snapshot: Duration::days(3 * 365),
            timestamp: Duration::days(14),
        }
    }
}

/// Why an edit or signing step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The role is not part of this repository.
    #[error("role {0} does not exist in this repository")]
    UnknownRole(String),
    /// The target is outside every path the role may sign.
    #[error("target {target:?} is not within the paths delegated to {role}")]
    PathNotAllowed {
        /// Role.
        role: String,
        /// Target name.
        target: String,
    },
    /// Target names with control characters cannot be published.
    #[error("invalid target name {0:?}: control characters cannot be published")]
    InvalidTargetName(String),
    /// A target meta without hashes.
    #[error("target {0:?} has no hashes")]
    NoHashes(String),
    /// Delegations need keys and a threshold ≥ 1.
    #[error("invalid delegation {role}: {reason}")]
    Delegation {
        /// Role.
        role: String,
        /// Reason.
        reason: String,
    },
    /// Not enough signing keys.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Key material problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Time out of range.
    #[error(transparent)]
    Time(#[from] TimeError),
    /// A local file that is not valid metadata.
    #[error("unusable local {role} metadata: {reason}")]
    Local {
        /// Role.
        role: String,
        /// Reason.
        reason: String,
    },
}

/// Signers by canonical key ID.
#[derive(Default)]
pub struct KeyRing<'a> {
    by_id: BTreeMap<KeyId, &'a dyn Signer>,
}

impl<'a> KeyRing<'a> {
    /// An empty ring.
    pub fn new() -> Self {
        KeyRing {
            by_id: BTreeMap::new(),
        }
    }
    /// Adds a signer.
    pub fn add(&mut self, signer: &'a dyn Signer) -> &mut Self {
        self.by_id.insert(signer.public_key().key_id(), signer);
        self
    }
    /// Builds a ring from private keys.
    pub fn from_keys(keys: &'a [PrivateKey]) -> Self {
        let mut ring = KeyRing::new();
        for k in keys {
            ring.add(k);
        }
        ring
    }

    /// `(metadata key ID, signer)` for every listed key this ring holds.
    fn signers_for(
        &self,
        keys: &BTreeMap<KeyId, PublicKey>,
        keyids: &[KeyId],
    ) -> Vec<(KeyId, &'a dyn Signer)> {
        let mut out = Vec::new();
        for id in keyids {
            let Some(k) = keys.get(id) else { continue };
            let Ok(canonical) = k.canonical_id() else {
                continue;
            };
            if let Some(s) = self.by_id.get(&canonical) {
                if !out.iter().any(|(i, _): &(KeyId, _)| i == id) {
                    out.push((id.clone(), *s));
                }
            }
        }
        out
    }
}

/// Files produced by [`RepoEditor::sign`], ready to upload.
#[derive(Clone, Debug, Default)]
pub struct SignedFiles {
    /// Role → exact file bytes, for every role that was (re-)signed.
    pub files: BTreeMap<RoleName, Vec<u8>>,
}

/// Stages changes to a repository and signs them.
#[derive(Clone, Debug)]
pub struct RepoEditor {
    gun: Gun,
    root: Root,
    /// Root role keys/threshold before a change, for cross-signing (spec §2.6).
    previous_root: Option<(BTreeMap<KeyId, PublicKey>, RoleKeys)>,
    /// Root keys of older root versions that also sign the next root (`notary key rotate
    /// --legacy`), for clients that still trust those versions.
    legacy_root: BTreeMap<KeyId, PublicKey>,
    targets: BTreeMap<RoleName, Targets>,
    snapshot: Option<Snapshot>,
    timestamp: Option<Timestamp>,
    /// Current file bytes of every role.
    files: BTreeMap<RoleName, Vec<u8>>,
    dirty: BTreeSet<RoleName>,
    expiries: Expiries,
}

impl RepoEditor {
    /// A new collection as `notary init` builds it: the root key wrapped in a
    /// self-signed certificate (CN = GUN, 10 years), threshold 1 everywhere,
    /// `consistent_snapshot: false`. Every role is staged; nothing is signed yet.
    pub fn create(
        gun: Gun,
        root_key: &PrivateKey,
        targets_key: PublicKey,
        snapshot_key: PublicKey,
        timestamp_key: PublicKey,
        now: OffsetDateTime,
    ) -> Result<Self, EditError> {
        let cert = crate::x509::root_certificate(
            root_key,
            &gun,
            now,
            now + crate::x509::ROOT_CERT_VALIDITY,
        )?;
        Self::create_with_root_cert(gun, cert, targets_key, snapshot_key, timestamp_key, now)
    }

    /// Like [`Self::create`], with a root certificate (bundle) issued elsewhere, e.g. by
    /// a CA that clients pin (`notary init --rootcert`). The certificate must pass the
    /// root checks for `gun` at `now`.
    pub fn create_with_root_cert(
        gun: Gun,
        cert: PublicKey,
        targets_key: PublicKey,
        snapshot_key: PublicKey,
        timestamp_key: PublicKey,
        now: OffsetDateTime,
    ) -> Result<Self, EditError> {
        crate::x509::check_root_leaf(&cert, &gun, Some(now))
            .map_err(|e| EditError::Key(KeyError::Certificate(e.to_string())))?;
        let expiries = Expiries::default();
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for (name, key) in [
            ("root", cert),
            ("targets", targets_key),
            ("snapshot", snapshot_key),
            ("timestamp", timestamp_key),
        ] {
            let id = key.key_id();
            keys.insert(id.clone(), key);
            roles.insert(
                name.to_owned(),
                RoleKeys {
                    keyids: vec![id],
                    threshold: 1,
                },
            );
        }
        let root = Root {
            consistent_snapshot: false,
            expires: Expires::after(now, expiries.root)?,
            keys,
            roles,
            version: 0,
        };
        let mut targets = BTreeMap::new();
        targets.insert(
            RoleName::targets(),
            Targets::new(Expires::after(now, expiries.targets)?),
        );
        let snapshot = Snapshot {
            expires: Expires::after(now, expiries.snapshot)?,
            meta: BTreeMap::new(),
            version: 0,
        };
        let dirty = [RoleName::root(), RoleName::targets(), RoleName::snapshot()]
            .into_iter()
            .collect();
        Ok(RepoEditor {
            gun,
            root,
            previous_root: None,
            legacy_root: BTreeMap::new(),
            targets,
            snapshot: Some(snapshot),
            timestamp: None,
            files: BTreeMap::new(),
            dirty,
            expiries,
        })
    }

    /// Starts from a verified repository.
    pub fn from_repository(repo: &Repository) -> Self {
        let mut files = BTreeMap::new();
        files.insert(RoleName::root(), repo.root().file_bytes().to_vec());
        files.insert(RoleName::snapshot(), repo.snapshot().file_bytes().to_vec());
        files.insert(
            RoleName::timestamp(),
            repo.timestamp().file_bytes().to_vec(),
        );
        let mut targets = BTreeMap::new();
        for (name, loaded) in repo.roles() {
            files.insert(name.clone(), loaded.metadata.file_bytes().to_vec());
            targets.insert(name.clone(), (*loaded.metadata).clone());
        }
        RepoEditor {
            gun: repo.gun().clone(),
            root: (**repo.root()).clone(),
            previous_root: None,
            legacy_root: BTreeMap::new(),
            targets,
            snapshot: Some((**repo.snapshot()).clone()),
            timestamp: Some((**repo.timestamp()).clone()),
            files,
            dirty: BTreeSet::new(),
            expiries: Expiries::default(),
        }
    }

    /// Starts from files signed locally but never published (`notary init` without
    /// `-p`): the root is kept as signed (upload it as is); targets and snapshot are
    /// staged to be signed again with whatever changes come on top. The root must
    /// verify against itself.
    pub fn from_unpublished(
        gun: Gun,
        root: &[u8],
        targets: &[u8],
        snapshot: Option<&[u8]>,
        now: OffsetDateTime,
    ) -> Result<Self, EditError> {
        let local = |role: &str, reason: String| EditError::Local {
            role: role.to_owned(),
            reason,
        };
        let r = Signed::<Root>::parse(root.to_vec()).map_err(|e| local("root", e.to_string()))?;
        let r =
            crate::verify::verify_root(r, &gun, None, &crate::verify::TrustPinning::default(), now)
                .map_err(|e| local("root", e.to_string()))?;
        let t = Signed::<Targets>::parse(targets.to_vec())
            .map_err(|e| local("targets", e.to_string()))?;
        let sn = snapshot
            .map(|b| Signed::<Snapshot>::parse(b.to_vec()))
            .transpose()
            .map_err(|e| local("snapshot", e.to_string()))?;
        let mut files = BTreeMap::new();
        files.insert(RoleName::root(), root.to_vec());
        files.insert(RoleName::targets(), targets.to_vec());
        let mut all_targets = BTreeMap::new();
        all_targets.insert(RoleName::targets(), t.signed().clone());
        Ok(RepoEditor {
            gun,
            root: (*r).clone(),
            previous_root: None,
            legacy_root: BTreeMap::new(),
            targets: all_targets,
            snapshot: sn.map(|s| s.signed().clone()),
            timestamp: None,
            files,
            dirty: [RoleName::targets(), RoleName::snapshot()]
                .into_iter()
                .collect(),
            expiries: Expiries::default(),
        })
    }

    /// Also signs the next root with these root keys of older root versions (those whose
    /// private key is in the key ring), and re-signs the root even if nothing else changed
    /// (`notary key rotate … --legacy`).
    pub fn sign_root_with_legacy_keys(&mut self, keys: BTreeMap<KeyId, PublicKey>) {
        self.legacy_root.extend(keys);
        self.dirty.insert(RoleName::root());
        self.dirty.insert(RoleName::snapshot());
    }

    /// Overrides the expiries used when signing.
    pub fn with_expiries(mut self, expiries: Expiries) -> Self {
        self.expiries = expiries;
        self
    }

    /// The GUN.
    pub fn gun(&self) -> &Gun {
        &self.gun
    }

    /// The staged root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// A staged targets role.
    pub fn targets(&self, role: &RoleName) -> Option<&Targets> {
        self.targets.get(role)
    }

    /// The paths `role` may sign, intersected down from `targets`.
    fn effective_paths(&self, role: &RoleName) -> Result<Vec<String>, EditError> {
        if *role == RoleName::targets() {
            return Ok(vec![String::new()]);
        }
        let parent = role
            .parent()
            .ok_or_else(|| EditError::UnknownRole(role.to_string()))?;
        let parent_paths = self.effective_paths(&parent)?;
        let entry = self
            .targets
            .get(&parent)
            .and_then(|t| t.delegation(role))
            .ok_or_else(|| EditError::UnknownRole(role.to_string()))?;
        Ok(entry
            .paths
            .iter()
            .filter(|p| parent_paths.iter().any(|pp| p.starts_with(pp.as_str())))
            .cloned()
            .collect())
    }

    fn targets_mut(&mut self, role: &RoleName) -> Result<&mut Targets, EditError> {
        if !self.targets.contains_key(role) {
            // A delegation without metadata yet: it must be delegated by its parent.
            self.effective_paths(role)?;
            let expires = self.root.expires;
            self.targets.insert(role.clone(), Targets::new(expires));
        }
        self.dirty.insert(role.clone());
        self.targets
            .get_mut(role)
            .ok_or_else(|| EditError::UnknownRole(role.to_string()))
    }

    /// Adds or replaces a target in `role`.
    pub fn add_target(
        &mut self,
        role: &RoleName,
        name: &str,
        meta: FileMeta,
    ) -> Result<(), EditError> {
        if name.bytes().any(|b| b < 0x20) {
            return Err(EditError::InvalidTargetName(name.to_owned()));
        }
        if meta.hashes.is_empty() {
            return Err(EditError::NoHashes(name.to_owned()));
        }
        if let Some(custom) = &meta.custom {
            crate::cjson::to_canonical(custom).map_err(SignError::from)?;
        }
        let paths = self.effective_paths(role)?;
        if !paths.iter().any(|p| name.starts_with(p.as_str())) {
            return Err(EditError::PathNotAllowed {
                role: role.to_string(),
                target: name.to_owned(),
            });
        }
        self.targets_mut(role)?
            .targets
            .insert(name.to_owned(), meta);
        Ok(())
    }

    /// Removes a target from `role`; returns whether it was there.
    pub fn remove_target(&mut self, role: &RoleName, name: &str) -> Result<bool, EditError> {
        if !self.targets.contains_key(role) {
            return Err(EditError::UnknownRole(role.to_string()));
        }
        Ok(self.targets_mut(role)?.targets.remove(name).is_some())
    }

    /// Adds a delegation (or adds keys and paths to an existing one).
    pub fn add_delegation(
        &mut self,
        name: &RoleName,
        keys: Vec<PublicKey>,
        paths: Vec<String>,
        threshold: u32,
    ) -> Result<(), EditError> {
        let err = |reason: &str| EditError::Delegation {
            role: name.to_string(),
            reason: reason.to_owned(),
        };
        let parent = name.parent().ok_or_else(|| err("not a delegation name"))?;
        if threshold < 1 {
            return Err(err("threshold must be at least 1"));
        }
        let parent_paths = self.effective_paths(&parent)?;
        if paths
            .iter()
            .any(|p| !parent_paths.iter().any(|pp| p.starts_with(pp.as_str())))
        {
            return Err(err("paths must be within the parent's paths"));
        }
        let t = self.targets_mut(&parent)?;
        let ids: Vec<KeyId> = keys.iter().map(PublicKey::key_id).collect();
        for k in keys {
            t.delegations.keys.insert(k.key_id(), k);
        }
        match t.delegations.roles.iter_mut().find(|r| &r.name == name) {
            Some(existing) => {
                for id in ids {
                    if !existing.keyids.contains(&id) {
                        existing.keyids.push(id);
                    }
                }
                for p in paths {
                    if !existing.paths.contains(&p) {
                        existing.paths.push(p);
                    }
                }
                existing.threshold = threshold;
            }
            None => {
                if ids.is_empty() {
                    return Err(err("a new delegation needs at least one key"));
                }
                t.delegations.roles.push(DelegationRole {
                    keyids: ids,
                    name: name.clone(),
                    paths,
                    threshold,
                });
            }
        }
        prune_keys(t);
        Ok(())
    }

    /// Removes keys (by canonical key ID, as `notary delegation remove/purge` name them)
    /// and paths from a delegation; `clear_paths` drops every path first. The delegation
    /// stays (possibly without keys, which makes it unusable until keys are added).
    pub fn edit_delegation(
        &mut self,
        name: &RoleName,
        remove_keys: &[String],
        remove_paths: &[String],
        clear_paths: bool,
    ) -> Result<(), EditError> {
        let parent = name
            .parent()
            .ok_or_else(|| EditError::UnknownRole(name.to_string()))?;
        let t = self.targets_mut(&parent)?;
        let by_canonical: BTreeSet<KeyId> = t
            .delegations
            .keys
            .iter()
            .filter(|(_, k)| {
                k.canonical_id()
                    .is_ok_and(|c| remove_keys.iter().any(|r| r == c.as_str()))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let entry = t
            .delegations
            .roles
            .iter_mut()
            .find(|r| &r.name == name)
            .ok_or_else(|| EditError::UnknownRole(name.to_string()))?;
        entry.keyids.retain(|id| {
            !by_canonical.contains(id) && !remove_keys.iter().any(|r| r == id.as_str())
        });
        if clear_paths {
            entry.paths.clear();
        }
        entry.paths.retain(|p| !remove_paths.contains(p));
        prune_keys(t);
        Ok(())
    }

    /// Removes keys (canonical IDs) from every delegation of every loaded targets role
    /// (`notary delegation purge`).
    pub fn purge_delegation_keys(&mut self, remove_keys: &[String]) -> Result<(), EditError> {
        let roles: Vec<(RoleName, RoleName)> = self
            .targets
            .iter()
            .flat_map(|(parent, t)| {
                t.delegations
                    .roles
                    .iter()
                    .map(|d| (parent.clone(), d.name.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (parent, name) in roles {
            let hit = self.targets.get(&parent).is_some_and(|t| {
                t.delegation(&name).is_some_and(|d| {
                    d.keyids.iter().any(|id| {
                        remove_keys.iter().any(|r| r == id.as_str())
                            || t.delegations.keys.get(id).is_some_and(|k| {
                                k.canonical_id()
                                    .is_ok_and(|c| remove_keys.iter().any(|r| r == c.as_str()))
                            })
                    })
                })
            });
            if hit {
                self.edit_delegation(&name, remove_keys, &[], false)?;
            }
        }
        Ok(())
    }

    /// Removes a delegation (and its subtree's metadata).
    pub fn remove_delegation(&mut self, name: &RoleName) -> Result<(), EditError> {
        let parent = name
            .parent()
            .ok_or_else(|| EditError::UnknownRole(name.to_string()))?;
        let t = self.targets_mut(&parent)?;
        let before = t.delegations.roles.len();
        t.delegations.roles.retain(|r| &r.name != name);
        if t.delegations.roles.len() == before {
            return Err(EditError::UnknownRole(name.to_string()));
        }
        prune_keys(t);
        self.targets.retain(|r, _| !r.is_under(name));
        self.files.retain(|r, _| !r.is_under(name));
        self.dirty.retain(|r| !r.is_under(name));
        Ok(())
    }

    /// Replaces all keys of a base role in root (key rotation, spec §10.5). Keys of other
    /// roles that are no longer used are removed; root keys stay in `keys`.
    pub fn rotate_base_role(
        &mut self,
        role: &RoleName,
        keys: Vec<PublicKey>,
    ) -> Result<(), EditError> {
        if role.is_delegation() || keys.is_empty() {
            return Err(EditError::UnknownRole(role.to_string()));
        }
        if *role == RoleName::root() && self.previous_root.is_none() {
            if let Some(r) = self.root.roles.get("root") {
                self.previous_root = Some((self.root.keys.clone(), r.clone()));
            }
        }
        let old: Vec<KeyId> = self
            .root
            .roles
            .get(role.as_str())
            .map(|r| r.keyids.clone())
            .unwrap_or_default();
        let ids: Vec<KeyId> = keys.iter().map(PublicKey::key_id).collect();
        for k in keys {
            self.root.keys.insert(k.key_id(), k);
        }
        let threshold = self
            .root
            .roles
            .get(role.as_str())
            .map_or(1, |r| r.threshold);
        self.root.roles.insert(
            role.to_string(),
            RoleKeys {
                keyids: ids,
                threshold,
            },
        );
        if *role != RoleName::root() {
            let root_ids: BTreeSet<KeyId> = self.root_key_history();
            for id in old {
                let used = self.root.roles.values().any(|r| r.keyids.contains(&id));
                if !used && !root_ids.contains(&id) {
                    self.root.keys.remove(&id);
                }
            }
        }
        self.dirty.insert(RoleName::root());
        self.dirty.insert(RoleName::snapshot());
        Ok(())
    }

    fn root_key_history(&self) -> BTreeSet<KeyId> {
        self.root
            .keys
            .iter()
            .filter(|(_, k)| k.key_type().is_x509())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks a role for re-signing at the next [`Self::sign`] (`notary witness`).
    pub fn witness(&mut self, role: &RoleName) -> Result<(), EditError> {
        if !self.targets.contains_key(role) {
            return Err(EditError::UnknownRole(role.to_string()));
        }
        self.dirty.insert(role.clone());
        Ok(())
    }

    /// Signs every changed role (version + 1, fresh expiry), then the snapshot and the
    /// timestamp if `keys` holds their keys. Roles whose key is missing fail with
    /// [`SignError::NoKey`], except snapshot and timestamp, which are left to the server.
    pub fn sign(
        &mut self,
        keys: &KeyRing<'_>,
        now: OffsetDateTime,
    ) -> Result<SignedFiles, EditError> {
        let mut out = SignedFiles::default();
        // Delegations and targets.
        let dirty_targets: Vec<RoleName> = self
            .dirty
            .iter()
            .filter(|r| r.is_targets_like())
            .cloned()
            .collect();
        for role in dirty_targets {
            let (role_keys, auth) = self.authority(&role)?;
            let signers = keys.signers_for(&role_keys, &auth.keyids);
            if signers.is_empty() {
                return Err(no_key(&role, &auth.keyids).into());
            }
            let t = self
                .targets
                .get_mut(&role)
                .ok_or_else(|| EditError::UnknownRole(role.to_string()))?;
            t.version += 1;
            t.expires = Expires::after(now, self.expiries.targets)?;
            let signed = Signed::sign(t.clone(), &signers)?;
            self.files
                .insert(role.clone(), signed.file_bytes().to_vec());
            out.files.insert(role, signed.into_file_bytes());
        }
        // Root, cross-signed by the previous root role when it changed.
        if self.dirty.contains(&RoleName::root()) {
            let auth = self
                .root
                .roles
                .get("root")
                .cloned()
                .ok_or_else(|| EditError::UnknownRole("root".into()))?;
            let mut signers = keys.signers_for(&self.root.keys, &auth.keyids);
            if signers.is_empty() {
                return Err(no_key(&RoleName::root(), &auth.keyids).into());
            }
            if let Some((prev_keys, prev_auth)) = &self.previous_root {
                for (id, s) in keys.signers_for(prev_keys, &prev_auth.keyids) {
                    if !signers.iter().any(|(i, _)| *i == id) {
                        self.root
                            .keys
                            .entry(id.clone())
                            .or_insert_with(|| prev_keys[&id].clone());
                        signers.push((id, s));
                    }
                }
            }
            let legacy_ids: Vec<KeyId> = self.legacy_root.keys().cloned().collect();
            for (id, s) in keys.signers_for(&self.legacy_root, &legacy_ids) {
                if !signers.iter().any(|(i, _)| *i == id) {
                    self.root
                        .keys
                        .entry(id.clone())
                        .or_insert_with(|| self.legacy_root[&id].clone());
                    signers.push((id, s));
                }
            }
            self.root.version += 1;
            self.root.expires = Expires::after(now, self.expiries.root)?;
            let signed = Signed::sign(self.root.clone(), &signers)?;
            self.files
                .insert(RoleName::root(), signed.file_bytes().to_vec());
            out.files.insert(RoleName::root(), signed.into_file_bytes());
            self.previous_root = None;
            self.legacy_root.clear();
        }
        // Snapshot, when this client holds its key.
        let sn_auth = self
            .root
            .roles
            .get("snapshot")
            .cloned()
            .unwrap_or(RoleKeys {
                keyids: vec![],
                threshold: 1,
            });
        let sn_signers = keys.signers_for(&self.root.keys, &sn_auth.keyids);
        if !sn_signers.is_empty()
            && (!out.files.is_empty() || self.dirty.contains(&RoleName::snapshot()))
        {
            let snapshot = self.snapshot.get_or_insert_with(|| Snapshot {
                expires: self.root.expires,
                meta: BTreeMap::new(),
                version: 0,
            });
            snapshot.meta = self
                .files
                .iter()
                .filter(|(r, _)| **r == RoleName::root() || r.is_targets_like())
                .map(|(r, b)| (r.to_string(), FileMeta::from_bytes(b)))
                .collect();
            snapshot.version += 1;
            snapshot.expires = Expires::after(now, self.expiries.snapshot)?;
            let signed = Signed::sign(snapshot.clone(), &sn_signers)?;
            self.files
                .insert(RoleName::snapshot(), signed.file_bytes().to_vec());
            out.files
                .insert(RoleName::snapshot(), signed.into_file_bytes());
        }
        // Timestamp, when this editor holds its key (server side, tests).
        let ts_auth = self
            .root
            .roles
            .get("timestamp")
            .cloned()
            .unwrap_or(RoleKeys {
                keyids: vec![],
                threshold: 1,
            });
        let ts_signers = keys.signers_for(&self.root.keys, &ts_auth.keyids);
        if let (false, Some(sn_bytes)) =
            (ts_signers.is_empty(), out.files.get(&RoleName::snapshot()))
        {
            let version = self.timestamp.as_ref().map_or(0, |t| t.version) + 1;
            let ts = Timestamp {
                expires: Expires::after(now, self.expiries.timestamp)?,
                meta: [("snapshot".to_owned(), FileMeta::from_bytes(sn_bytes))]
                    .into_iter()
                    .collect(),
                version,
            };
            let signed = Signed::sign(ts.clone(), &ts_signers)?;
            self.timestamp = Some(ts);
            self.files
                .insert(RoleName::timestamp(), signed.file_bytes().to_vec());
            out.files
                .insert(RoleName::timestamp(), signed.into_file_bytes());
        }
        self.dirty.clear();
        Ok(out)
    }

    /// Keys and threshold that authorise `role`.
    fn authority(
        &self,
        role: &RoleName,
    ) -> Result<(BTreeMap<KeyId, PublicKey>, RoleKeys), EditError> {
        if *role == RoleName::targets() {
            let auth = self
                .root
                .roles
                .get("targets")
                .cloned()
                .ok_or_else(|| EditError::UnknownRole("targets".into()))?;
            return Ok((self.root.keys.clone(), auth));
        }
        let parent = role
            .parent()
            .ok_or_else(|| EditError::UnknownRole(role.to_string()))?;
        let t = self
            .targets
            .get(&parent)
            .ok_or_else(|| EditError::UnknownRole(parent.to_string()))?;
        let d = t
            .delegation(role)
            .ok_or_else(|| EditError::UnknownRole(role.to_string()))?;
        Ok((
            t.delegations.keys.clone(),
            RoleKeys {
                keyids: d.keyids.clone(),
                threshold: d.threshold,
            },
        ))
    }
}

fn no_key(role: &RoleName, ids: &[KeyId]) -> SignError {
    SignError::NoKey {
        role: role.to_string(),
        keyids: ids
            .iter()
            .map(KeyId::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Drops delegation keys no role references (Go prunes on every delegation edit).
fn prune_keys(t: &mut Targets) {
    let used: BTreeSet<KeyId> = t
        .delegations
        .roles
        .iter()
        .flat_map(|r| r.keyids.iter().cloned())
        .collect();
    t.delegations.keys.retain(|id, _| used.contains(id));
}
