//! The client update engine (spec §10.2): from a trusted root (cached, or trust
//! pinning) and whatever a [`Remote`] returns, build a verified [`Repository`]. Pure:
//! the remote is a trait, the clock a parameter; the caller writes the cache.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;

use time::OffsetDateTime;

use crate::crypto::PublicKey;
use crate::metadata::{
    FileMeta, ParseError, RoleKeys, RoleMetadata, Root, Signed, Snapshot, Targets, Timestamp,
};
use crate::names::{Gun, KeyId, RoleName};
use crate::verify::{self, TrustPinning, Verified, VerifyError};

/// Largest `timestamp.json` accepted (spec §9.5).
pub const MAX_TIMESTAMP_SIZE: u64 = 1 << 20;
/// Largest file of unknown size (`root.json`, `<v>.root.json`).
pub const MAX_UNKNOWN_SIZE: u64 = 100 << 20;
/// Most targets roles (`targets` and delegations) one update loads. Each role is loaded
/// at most once and delegation depth is bounded by the 255-byte role name limit; this
/// bounds the breadth.
pub const MAX_TARGETS_ROLES: usize = 4096;

/// One file the engine needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchRequest {
    /// Role of the file.
    pub role: RoleName,
    /// `Some(v)` for `<v>.root.json` during rotation walks.
    pub version: Option<u64>,
    /// Hex SHA-256 when the parent meta gives one (`<role>.<sha256>.json`).
    pub checksum: Option<String>,
    /// The most bytes to accept; the remote should refuse larger bodies.
    pub max_len: u64,
}

impl FetchRequest {
    /// The file name on a Notary server (`…/_trust/tuf/<name>`).
    pub fn file_name(&self) -> String {
        match (&self.version, &self.checksum) {
            (Some(v), _) => format!("{v}.{}.json", self.role),
            (None, Some(c)) => format!("{}.{c}.json", self.role),
            (None, None) => format!("{}.json", self.role),
        }
    }
}

/// Where metadata comes from. `Ok(None)` means "not found" (HTTP 404).
pub trait Remote {
    /// Transport error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Fetches one file; must not return more than `req.max_len` bytes.
    fn fetch(
        &mut self,
        req: &FetchRequest,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;
}

/// Why an update failed. Each variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    /// The server has no root for the GUN.
    #[error("{gun}: server does not have trust data (root.json not found)")]
    NoTrustData {
        /// GUN.
        gun: String,
    },
    /// Another file is missing.
    #[error("{file}: not found")]
    Missing {
        /// File name.
        file: String,
    },
    /// Transport failure.
    #[error("{file}: {source}")]
    Fetch {
        /// File name.
        file: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The remote returned more than allowed.
    #[error("{file}: larger than the {limit} bytes allowed")]
    TooLarge {
        /// File name.
        file: String,
        /// Limit.
        limit: u64,
    },
    /// The file does not parse.
    #[error("{file}: {source}")]
    Parse {
        /// File name.
        file: String,
        /// Cause.
        source: ParseError,
    },
    /// The file does not verify.
    #[error("{file}: {source}")]
    Verify {
        /// File name.
        file: String,
        /// Cause.
        source: VerifyError,
    },
    /// The delegation tree has more roles than one update loads.
    #[error("more than {limit} targets roles to load")]
    TooManyRoles {
        /// [`MAX_TARGETS_ROLES`].
        limit: usize,
    },
}

impl UpdateError {
    /// The verification failure, if that is what this is.
    pub fn verify_error(&self) -> Option<&VerifyError> {
        match self {
            UpdateError::Verify { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Previously cached files: the root is the trust anchor; the others give rollback
/// floors (timestamp, snapshot, `targets` and every delegation: a file that still
/// verifies under the keys now authorising its role sets the lowest acceptable version)
/// and avoid downloads when their hashes still match.
#[derive(Clone, Debug, Default)]
pub struct Cache {
    /// `root.json`.
    pub root: Option<Vec<u8>>,
    /// `timestamp.json`.
    pub timestamp: Option<Vec<u8>>,
    /// `snapshot.json`.
    pub snapshot: Option<Vec<u8>>,
    /// `targets.json` and delegations by role.
    pub targets: BTreeMap<RoleName, Vec<u8>>,
}

/// One loaded targets role with its effective key set and path restrictions.
#[derive(Clone, Debug)]
pub struct LoadedRole {
    /// The verified file.
    pub metadata: Verified<Targets>,
    /// Paths after intersecting with every ancestor's (`[""]` for `targets`).
    pub paths: Vec<String>,
}

impl LoadedRole {
    /// Whether this role may sign `target`.
    pub fn admits(&self, target: &str) -> bool {
        self.paths.iter().any(|p| target.starts_with(p.as_str()))
    }
}

/// A target as found by a walk.
#[derive(Clone, Debug)]
pub struct TargetEntry<'a> {
    /// Target name.
    pub name: &'a str,
    /// Its meta.
    pub meta: &'a FileMeta,
    /// Role that signed it.
    pub role: &'a RoleName,
}

/// A verified repository.
#[derive(Clone, Debug)]
pub struct Repository {
    gun: Gun,
    root: Verified<Root>,
    timestamp: Verified<Timestamp>,
    snapshot: Verified<Snapshot>,
    roles: BTreeMap<RoleName, LoadedRole>,
    warnings: Vec<String>,
}

impl Repository {
    /// The GUN.
    pub fn gun(&self) -> &Gun {
        &self.gun
    }
    /// The trusted root.
    pub fn root(&self) -> &Verified<Root> {
        &self.root
    }
    /// The timestamp.
    pub fn timestamp(&self) -> &Verified<Timestamp> {
        &self.timestamp
    }
    /// The snapshot.
    pub fn snapshot(&self) -> &Verified<Snapshot> {
        &self.snapshot
    }
    /// A loaded targets role.
    pub fn role(&self, name: &RoleName) -> Option<&LoadedRole> {
        self.roles.get(name)
    }
    /// All loaded targets roles.
    pub fn roles(&self) -> impl Iterator<Item = (&RoleName, &LoadedRole)> {
        self.roles.iter()
    }
    /// Delegations skipped (expired or below their threshold; any other failure aborts
    /// the update) and other notes.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Breadth-first walk from `targets` (spec §10.2): each loaded role in visiting
    /// order, children appended in listed order.
    pub fn walk(&self) -> Vec<(&RoleName, &LoadedRole)> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<RoleName> = VecDeque::from([RoleName::targets()]);
        while let Some(name) = queue.pop_front() {
            let Some((k, role)) = self.roles.get_key_value(&name) else {
                continue;
            };
            if !seen.insert(k) {
                continue;
            }
            out.push((k, role));
            for d in &role.metadata.delegations.roles {
                queue.push_back(d.name.clone());
            }
        }
        out
    }

    /// The first role in walk order that signs `name` within its paths.
    pub fn lookup(&self, name: &str) -> Option<TargetEntry<'_>> {
        self.walk().into_iter().find_map(|(role, loaded)| {
            let (k, meta) = loaded.metadata.targets.get_key_value(name)?;
            loaded.admits(name).then_some(TargetEntry {
                name: k,
                meta,
                role,
            })
        })
    }

    /// Every visible target, the first role in walk order winning for duplicates.
    pub fn list(&self) -> Vec<TargetEntry<'_>> {
        let mut seen = BTreeMap::new();
        for (role, loaded) in self.walk() {
            for (name, meta) in &loaded.metadata.targets {
                if loaded.admits(name) && !seen.contains_key(name.as_str()) {
                    seen.insert(name.as_str(), TargetEntry { name, meta, role });
                }
            }
        }
        seen.into_values().collect()
    }
}

/// A targets role waiting to be loaded: name, keys and authorisation from its
/// delegator, and its effective paths.
type Pending = (RoleName, BTreeMap<KeyId, PublicKey>, RoleKeys, Vec<String>);

/// Runs one update (spec §10.2) for a GUN.
#[derive(Clone, Debug)]
pub struct Updater {
    gun: Gun,
    now: OffsetDateTime,
    pinning: TrustPinning,
    cache: Cache,
    force_root_download: bool,
}

fn file_of(req: &FetchRequest) -> String {
    req.file_name()
}

impl Updater {
    /// An updater for `gun` at instant `now` with an empty cache and TOFU pinning.
    pub fn new(gun: Gun, now: OffsetDateTime) -> Self {
        Updater {
            gun,
            now,
            pinning: TrustPinning::default(),
            cache: Cache::default(),
            force_root_download: false,
        }
    }

    /// Sets the trust pinning used when no root is cached.
    pub fn pinning(mut self, pinning: TrustPinning) -> Self {
        self.pinning = pinning;
        self
    }

    /// Supplies cached files.
    pub fn cache(mut self, cache: Cache) -> Self {
        self.cache = cache;
        self
    }

    /// Always downloads `root.json` (write operations do).
    pub fn force_root_download(mut self, yes: bool) -> Self {
        self.force_root_download = yes;
        self
    }

    async fn get<R: Remote>(
        &self,
        remote: &mut R,
        req: FetchRequest,
    ) -> Result<Vec<u8>, UpdateError> {
        match remote.fetch(&req).await {
            Ok(Some(b)) if b.len() as u64 > req.max_len => Err(UpdateError::TooLarge {
                file: file_of(&req),
                limit: req.max_len,
            }),
            Ok(Some(b)) => Ok(b),
            Ok(None)
                if req.role == RoleName::root()
                    && req.version.is_none()
                    && req.checksum.is_none() =>
            {
                Err(UpdateError::NoTrustData {
                    gun: self.gun.to_string(),
                })
            }
            Ok(None) => Err(UpdateError::Missing {
                file: file_of(&req),
            }),
            Err(e) => Err(UpdateError::Fetch {
                file: file_of(&req),
                source: Box::new(e),
            }),
        }
    }

    fn parse<T: RoleMetadata>(file: &str, bytes: Vec<u8>) -> Result<Signed<T>, UpdateError> {
        Signed::parse(bytes).map_err(|source| UpdateError::Parse {
            file: file.to_owned(),
            source,
        })
    }

    fn verr(file: &str) -> impl FnOnce(VerifyError) -> UpdateError + '_ {
        move |source| UpdateError::Verify {
            file: file.to_owned(),
            source,
        }
    }

    /// Runs the update.
    pub async fn update<R: Remote>(&self, remote: &mut R) -> Result<Repository, UpdateError> {
        let root = self.bootstrap_root(remote).await?;
        match self.load_rest(root.clone(), remote).await {
            Ok(repo) => Ok(repo),
            Err((_first, hint)) => {
                // Step 5: fetch a newer root (walking versions if needed), then retry once.
                let root = self.update_root(&root, hint, remote).await?;
                self.load_rest(root, remote).await.map_err(|(e, _)| e)
            }
        }
    }

    async fn bootstrap_root<R: Remote>(
        &self,
        remote: &mut R,
    ) -> Result<Verified<Root>, UpdateError> {
        let root_req = FetchRequest {
            role: RoleName::root(),
            version: None,
            checksum: None,
            max_len: MAX_UNKNOWN_SIZE,
        };
        let role = RoleName::root();
        if let Some(cached) = &self.cache.root {
            // The cached root pins trust: it must self-verify (expiry ignored).
            let parsed = Self::parse::<Root>("root.json (cached)", cached.clone())?;
            let trusted =
                verify::verify_root(parsed, &self.gun, None, &TrustPinning::default(), self.now)
                    .map_err(Self::verr("root.json (cached)"))?;
            let expired = verify::check_expiry(&*trusted, &role, self.now).is_err();
            if !expired && !self.force_root_download {
                return Ok(trusted);
            }
            return self.update_root(&trusted, None, remote).await;
        }
        let bytes = self.get(remote, root_req).await?;
        let parsed = Self::parse::<Root>("root.json", bytes)?;
        let root = verify::verify_root(parsed, &self.gun, None, &self.pinning, self.now)
            .map_err(Self::verr("root.json"))?;
        verify::check_expiry(&*root, &role, self.now).map_err(Self::verr("root.json"))?;
        Ok(root)
    }

    /// Fetches the newest root and validates it against `trusted`, walking
    /// `<v>.root.json` when it does not validate directly.
    async fn update_root<R: Remote>(
        &self,
        trusted: &Verified<Root>,
        checksum: Option<[u8; 32]>,
        remote: &mut R,
    ) -> Result<Verified<Root>, UpdateError> {
        let role = RoleName::root();
        let req = FetchRequest {
            role: role.clone(),
            version: None,
            checksum: checksum.map(hex::encode),
            max_len: MAX_UNKNOWN_SIZE,
        };
        let file = req.file_name();
        let bytes = self.get(remote, req).await?;
        if let Some(sum) = checksum {
            if crate::crypto::sha256(&bytes) != sum {
                return Err(UpdateError::Verify {
                    file,
                    source: VerifyError::Meta {
                        role: "root".into(),
                        parent: "snapshot".into(),
                        source: crate::metadata::HashError::Mismatch("sha256"),
                    },
                });
            }
        }
        let newest = Self::parse::<Root>(&file, bytes)?;
        let newest_version = newest.signed().version;
        let verified = match verify::verify_root(
            newest.clone(),
            &self.gun,
            Some(trusted),
            &self.pinning,
            self.now,
        ) {
            Ok(v) => v,
            Err(VerifyError::RootRotation(_)) if newest_version > trusted.version + 1 => {
                let mut current = trusted.clone();
                for v in trusted.version + 1..newest_version {
                    let req = FetchRequest {
                        role: role.clone(),
                        version: Some(v),
                        checksum: None,
                        max_len: MAX_UNKNOWN_SIZE,
                    };
                    let f = req.file_name();
                    let b = self.get(remote, req).await?;
                    let parsed = Self::parse::<Root>(&f, b)?;
                    if parsed.signed().version != v {
                        return Err(UpdateError::Verify {
                            file: f,
                            source: VerifyError::Structure {
                                role: "root".into(),
                                reason: format!("expected version {v}"),
                            },
                        });
                    }
                    current = verify::verify_root(
                        parsed,
                        &self.gun,
                        Some(&current),
                        &self.pinning,
                        self.now,
                    )
                    .map_err(Self::verr(&f))?;
                }
                verify::verify_root(newest, &self.gun, Some(&current), &self.pinning, self.now)
                    .map_err(Self::verr(&file))?
            }
            Err(e) => return Err(UpdateError::Verify { file, source: e }),
        };
        verify::check_rollback(&role, trusted.version, verified.version)
            .map_err(Self::verr(&file))?;
        verify::check_expiry(&*verified, &role, self.now).map_err(Self::verr(&file))?;
        Ok(verified)
    }

    /// A cached file's version, if it still verifies under `root` (rollback floor).
    fn cached_version<T: RoleMetadata + verify::Structure>(
        bytes: Option<&Vec<u8>>,
        role: &RoleName,
        keys: &BTreeMap<KeyId, PublicKey>,
        auth: &RoleKeys,
    ) -> Option<Verified<T>> {
        let parsed = Signed::<T>::parse(bytes?.clone()).ok()?;
        verify::verify_role(parsed, role, keys, auth).ok()
    }

    /// Steps 2-4. On failure, also returns the root checksum the snapshot listed.
    async fn load_rest<R: Remote>(
        &self,
        root: Verified<Root>,
        remote: &mut R,
    ) -> Result<Repository, (UpdateError, Option<[u8; 32]>)> {
        let mut hint = None;
        let res = self.load_rest_inner(root, remote, &mut hint).await;
        res.map_err(|e| (e, hint))
    }

    async fn load_rest_inner<R: Remote>(
        &self,
        root: Verified<Root>,
        remote: &mut R,
        hint: &mut Option<[u8; 32]>,
    ) -> Result<Repository, UpdateError> {
        let mut warnings = Vec::new();
        let ts_role = RoleName::timestamp();
        let sn_role = RoleName::snapshot();
        let auth = |r: &RoleName| verify::root_role_auth(&root, r).cloned();

        // Step 2: timestamp, always downloaded; cached copy on transport errors or 404.
        let ts_auth = auth(&ts_role).map_err(Self::verr("timestamp.json"))?;
        let cached_ts: Option<Verified<Timestamp>> = Self::cached_version(
            self.cache.timestamp.as_ref(),
            &ts_role,
            &root.keys,
            &ts_auth,
        );
        let ts_req = FetchRequest {
            role: ts_role.clone(),
            version: None,
            checksum: None,
            max_len: MAX_TIMESTAMP_SIZE,
        };
        let ts_bytes = match self.get(remote, ts_req).await {
            Ok(b) => b,
            Err(e @ (UpdateError::Fetch { .. } | UpdateError::Missing { .. })) => {
                match &cached_ts {
                    Some(c) => {
                        warnings.push(format!("using cached timestamp: {e}"));
                        c.file_bytes().to_vec()
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let ts = Self::parse::<Timestamp>("timestamp.json", ts_bytes)?;
        let ts = verify::verify_role(ts, &ts_role, &root.keys, &ts_auth)
            .map_err(Self::verr("timestamp.json"))?;
        if let Some(c) = &cached_ts {
            verify::check_rollback(&ts_role, c.version, ts.version)
                .map_err(Self::verr("timestamp.json"))?;
        }
        verify::check_expiry(&*ts, &ts_role, self.now).map_err(Self::verr("timestamp.json"))?;

        // Step 3: snapshot by checksum, limited to the timestamp's length.
        let sn_meta = ts
            .meta
            .get("snapshot")
            .cloned()
            .ok_or_else(|| UpdateError::Verify {
                file: "timestamp.json".into(),
                source: VerifyError::Structure {
                    role: "timestamp".into(),
                    reason: "no snapshot meta".into(),
                },
            })?;
        let sn_auth = auth(&sn_role).map_err(Self::verr("snapshot.json"))?;
        let cached_sn: Option<Verified<Snapshot>> =
            Self::cached_version(self.cache.snapshot.as_ref(), &sn_role, &root.keys, &sn_auth);
        let (sn_bytes, sn_file) = self
            .fetch_by_meta(remote, &sn_role, &sn_meta, self.cache.snapshot.as_ref())
            .await?;
        verify::check_meta(&ts.meta, &ts_role, "snapshot", &sn_bytes)
            .map_err(Self::verr(&sn_file))?;
        let sn = Self::parse::<Snapshot>(&sn_file, sn_bytes)?;
        let sn = verify::verify_role(sn, &sn_role, &root.keys, &sn_auth)
            .map_err(Self::verr(&sn_file))?;
        if let Some(c) = &cached_sn {
            verify::check_rollback(&sn_role, c.version, sn.version)
                .map_err(Self::verr(&sn_file))?;
        }
        verify::check_expiry(&*sn, &sn_role, self.now).map_err(Self::verr(&sn_file))?;
        *hint = sn.meta.get("root").and_then(FileMeta::sha256);
        verify::check_meta(&sn.meta, &sn_role, "root", root.file_bytes())
            .map_err(Self::verr("root.json"))?;

        // Step 4: targets tree, pre-order in listed order.
        let mut roles = BTreeMap::new();
        let tg_auth = auth(&RoleName::targets()).map_err(Self::verr("targets.json"))?;
        let mut stack: Vec<Pending> = vec![(
            RoleName::targets(),
            root.keys.clone(),
            tg_auth,
            vec![String::new()],
        )];
        let mut visited: BTreeSet<RoleName> = BTreeSet::new();
        while let Some((name, keys, role_auth, paths)) = stack.pop() {
            let top = name == RoleName::targets();
            // Each role is loaded at most once (Go: "has already been loaded"); parents
            // listing a child twice already fail structural validation.
            if !visited.insert(name.clone()) {
                return Err(UpdateError::Verify {
                    file: format!("{name}.json"),
                    source: VerifyError::Structure {
                        role: name.to_string(),
                        reason: "role has already been loaded".into(),
                    },
                });
            }
            if visited.len() > MAX_TARGETS_ROLES {
                return Err(UpdateError::TooManyRoles {
                    limit: MAX_TARGETS_ROLES,
                });
            }
            let Some(meta) = sn.meta.get(name.as_str()).cloned() else {
                if top {
                    return Err(UpdateError::Verify {
                        file: "snapshot.json".into(),
                        source: VerifyError::Structure {
                            role: "snapshot".into(),
                            reason: "no meta for targets".into(),
                        },
                    });
                }
                continue;
            };
            let loaded = self
                .load_targets(remote, &name, &meta, &sn, &keys, &role_auth)
                .await;
            let verified = match loaded {
                Ok(v) => v,
                // As Go does: only an expired delegation or one below its threshold is
                // skipped; any other failure (hash, length, structure, rollback,
                // transport) aborts the update.
                Err(
                    e @ UpdateError::Verify {
                        source: VerifyError::Expired { .. } | VerifyError::Threshold { .. },
                        ..
                    },
                ) if !top => {
                    warnings.push(format!("skipping delegation {name}: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Children in front of the queue, in listed order.
            for d in verified.delegations.roles.iter().rev() {
                let child_paths: Vec<String> = d
                    .paths
                    .iter()
                    .filter(|p| paths.iter().any(|pp| p.starts_with(pp.as_str())))
                    .cloned()
                    .collect();
                let child_auth = RoleKeys {
                    keyids: d.keyids.clone(),
                    threshold: d.threshold,
                };
                stack.push((
                    d.name.clone(),
                    verified.delegations.keys.clone(),
                    child_auth,
                    child_paths,
                ));
            }
            roles.insert(
                name,
                LoadedRole {
                    metadata: verified,
                    paths,
                },
            );
        }
        Ok(Repository {
            gun: self.gun.clone(),
            root,
            timestamp: ts,
            snapshot: sn,
            roles,
            warnings,
        })
    }

    async fn load_targets<R: Remote>(
        &self,
        remote: &mut R,
        name: &RoleName,
        meta: &FileMeta,
        sn: &Verified<Snapshot>,
        keys: &BTreeMap<KeyId, PublicKey>,
        auth: &RoleKeys,
    ) -> Result<Verified<Targets>, UpdateError> {
        let cached = self.cache.targets.get(name);
        let (bytes, file) = self.fetch_by_meta(remote, name, meta, cached).await?;
        verify::check_meta(&sn.meta, &RoleName::snapshot(), name.as_str(), &bytes)
            .map_err(Self::verr(&file))?;
        // TUF 5.6 rollback floor: the version of the cached file, when it still verifies
        // under the keys that now authorise the role (Go feeds it as the minimum).
        let floor = match cached {
            Some(c) if *c != bytes => {
                Self::cached_version::<Targets>(Some(c), name, keys, auth).map(|c| c.version)
            }
            _ => None,
        };
        let parsed = Self::parse::<Targets>(&file, bytes)?;
        let v = verify::verify_role(parsed, name, keys, auth).map_err(Self::verr(&file))?;
        if let Some(trusted) = floor {
            verify::check_rollback(name, trusted, v.version).map_err(Self::verr(&file))?;
        }
        verify::check_expiry(&*v, name, self.now).map_err(Self::verr(&file))?;
        Ok(v)
    }

    /// The cached file if it matches `meta`, else `<role>.<sha256>.json` from the remote.
    async fn fetch_by_meta<R: Remote>(
        &self,
        remote: &mut R,
        role: &RoleName,
        meta: &FileMeta,
        cached: Option<&Vec<u8>>,
    ) -> Result<(Vec<u8>, String), UpdateError> {
        if let Some(c) = cached {
            if meta.check(c).is_ok() {
                return Ok((c.clone(), format!("{role}.json (cached)")));
            }
        }
        let req = FetchRequest {
            role: role.clone(),
            version: None,
            checksum: meta.sha256().map(hex::encode),
            max_len: meta.length,
        };
        let file = req.file_name();
        Ok((self.get(remote, req).await?, file))
    }
}
