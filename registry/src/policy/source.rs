//! Where signatures come from: the [`SignatureSource`] trait and its Notary v1
//! implementation over the in-process Notary service ([`NotaryV1Source`]).
//!
//! A source turns whatever it verifies into [`RepoSignatures`]: per signer (a Notary
//! role; for cosign or Notation, one signing identity), which tags it signed for which
//! digest (or which digests it signed directly), the key ids whose signatures verified,
//! its expiry, and a version that changes whenever the signatures do. The engine decides
//! over that value only, so a source of OCI-referrer signatures (cosign, Notation) is
//! another implementation of the trait: it fills `by_digest` and leaves `pins` empty
//! (`pins_tags: false`), and the engine then checks the digest actually served.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use notary_core::update::Repository;
use notary_core::{Gun, KeyId, RoleName};
use time::OffsetDateTime;

/// One signer's signatures.
#[derive(Clone, Debug, Default)]
pub struct RoleSignatures {
    /// Role (`targets`, `targets/releases`, `targets/alice`) or signer identity.
    pub name: String,
    /// A direct child of `targets` or `targets` itself (what Docker signs into and
    /// team requirements count).
    pub direct: bool,
    /// Expiry of the signed metadata.
    pub expires: Option<OffsetDateTime>,
    /// Keys with a valid signature: `(key id as listed, canonical key id)`.
    pub signed_by: Vec<(String, String)>,
    /// Tag → digest (`sha256:<hex>`) it signs.
    pub tags: HashMap<String, String>,
    /// Digests signed without a tag (OCI-referrer signatures).
    pub by_digest: BTreeSet<String>,
}

impl RoleSignatures {
    /// Whether it signs `tag` at `digest`.
    pub fn signs(&self, tag: Option<&str>, digest: &str) -> bool {
        tag.and_then(|t| self.tags.get(t))
            .is_some_and(|d| d == digest)
            || self.by_digest.contains(digest)
    }

    /// Whether `key` (listed or canonical id) signed it.
    pub fn signed_with(&self, key: &str) -> bool {
        self.signed_by
            .iter()
            .any(|(id, canonical)| id == key || canonical == key)
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e < now)
    }
}

/// Where a tag points according to the signatures (Docker's resolution).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The role it was found in.
    pub role: String,
}

/// The verified signatures of one repository at one version.
#[derive(Clone, Debug, Default)]
pub struct RepoSignatures {
    /// Which source (`notary-v1`).
    pub source: &'static str,
    /// What was read (the GUN).
    pub subject: String,
    /// Changes whenever the signatures change (unique within the process).
    pub version: u64,
    /// Expiry of the metadata everything depends on (root, timestamp, snapshot,
    /// `targets`), by role.
    pub base_expiry: Vec<(String, OffsetDateTime)>,
    /// Every signer, by name.
    pub roles: BTreeMap<String, RoleSignatures>,
    /// Whether tags are pinned to digests by the signatures (Notary) rather than taken
    /// from the registry (referrer signatures).
    pub pins_tags: bool,
    /// Tag → pinned digest (`targets/releases`, then `targets`, as Docker resolves).
    pub pins: HashMap<String, Pin>,
    /// Digest → tags pinned to it.
    pub pinned_tags: HashMap<String, Vec<String>>,
    /// Roles delegated to, whether or not they have signed anything yet.
    pub delegated: BTreeSet<String>,
    /// Notes of the verification (skipped delegations).
    pub warnings: Vec<String>,
}

impl RepoSignatures {
    /// The digest `tag` is signed for, if any.
    pub fn pin(&self, tag: &str) -> Option<&Pin> {
        self.pins.get(tag)
    }

    /// Roles that name `tag` (for any digest), with the digest.
    pub fn roles_naming(&self, tag: &str) -> Vec<(&str, &str)> {
        self.roles
            .values()
            .filter_map(|r| r.tags.get(tag).map(|d| (r.name.as_str(), d.as_str())))
            .collect()
    }

    /// Expired metadata among the base roles and `roles`, oldest first.
    pub fn expired(&self, now: OffsetDateTime, roles: &[&str]) -> Vec<(String, OffsetDateTime)> {
        let mut out: Vec<(String, OffsetDateTime)> = self
            .base_expiry
            .iter()
            .filter(|(_, e)| *e < now)
            .cloned()
            .collect();
        for r in roles {
            if let Some(rs) = self.roles.get(*r) {
                if let Some(e) = rs.expires.filter(|e| *e < now) {
                    if !out.iter().any(|(n, _)| n == *r) {
                        out.push(((*r).to_owned(), e));
                    }
                }
            }
        }
        out.sort_by_key(|(_, e)| *e);
        out
    }
}

/// Why signatures could not be read.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SourceError {
    /// The signatures exist but do not verify: a refusal, not an outage.
    #[error("trust data for {subject} does not verify: {reason}")]
    Untrusted {
        /// GUN.
        subject: String,
        /// Why.
        reason: String,
    },
    /// The source is unavailable (database, signer): fail closed or open per mode.
    #[error("signatures unavailable: {0}")]
    Unavailable(String),
}

/// A provider of verified signatures.
#[async_trait]
pub trait SignatureSource: Send + Sync + 'static {
    /// The signatures of `repository` (`Ok(None)`: it has none).
    async fn signatures(
        &self,
        repository: &str,
    ) -> Result<Option<Arc<RepoSignatures>>, SourceError>;

    /// Forgets what is cached about `repository_or_subject` (its signatures changed).
    fn invalidate(&self, _repository_or_subject: &str) {}

    /// The subjects (GUNs) looked up for `repository`, for messages.
    fn subjects(&self, repository: &str) -> Vec<String> {
        vec![repository.to_owned()]
    }
}

/// Key ids with a valid signature on `role` of `repo`: `(id as listed, canonical id)`.
pub fn valid_signers(repo: &Repository, role: &RoleName) -> Vec<(String, String)> {
    let Some(loaded) = repo.role(role) else {
        return Vec::new();
    };
    let (keys, keyids) = if *role == RoleName::targets() {
        let root = repo.root();
        match root.role("targets") {
            Some(auth) => (&root.keys, auth.keyids.clone()),
            None => return Vec::new(),
        }
    } else {
        let Some(parent) = role.parent().and_then(|p| repo.role(&p)) else {
            return Vec::new();
        };
        match parent.metadata.delegation(role) {
            Some(d) => (&parent.metadata.delegations.keys, d.keyids.clone()),
            None => return Vec::new(),
        }
    };
    let mut seen: BTreeSet<KeyId> = BTreeSet::new();
    let mut out = Vec::new();
    for id in keyids {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(key) = keys.get(&id) else { continue };
        if notary_core::verify::count_valid(
            loaded.metadata.envelope(),
            keys,
            std::slice::from_ref(&id),
        ) == 1
        {
            let canonical = key
                .canonical_id()
                .map(|c| c.to_string())
                .unwrap_or_else(|_| id.to_string());
            out.push((id.to_string(), canonical));
        }
    }
    out
}

/// Builds [`RepoSignatures`] from verified Notary trust data.
pub fn from_notary(repo: &Repository, version: u64) -> RepoSignatures {
    let root = repo.root();
    let mut base_expiry = vec![
        ("root".to_owned(), root.expires.datetime()),
        ("timestamp".to_owned(), repo.timestamp().expires.datetime()),
        ("snapshot".to_owned(), repo.snapshot().expires.datetime()),
    ];
    let targets = RoleName::targets();
    if let Some(t) = repo.role(&targets) {
        base_expiry.push(("targets".to_owned(), t.metadata.expires.datetime()));
    }
    let mut roles = BTreeMap::new();
    let mut delegated = BTreeSet::new();
    for (name, loaded) in repo.roles() {
        for d in &loaded.metadata.delegations.roles {
            delegated.insert(d.name.to_string());
        }
        let mut tags = HashMap::new();
        for (target, meta) in &loaded.metadata.targets {
            if !loaded.admits(target) {
                continue;
            }
            // Docker uses sha256 only (a target without it cannot be pulled by DCT).
            if let Some(h) = meta.hashes.get("sha256") {
                tags.insert(target.clone(), format!("sha256:{}", hex::encode(&h.0)));
            }
        }
        let direct = *name == targets || name.parent().is_some_and(|p| p == targets);
        roles.insert(
            name.to_string(),
            RoleSignatures {
                name: name.to_string(),
                direct,
                expires: Some(loaded.metadata.expires.datetime()),
                signed_by: valid_signers(repo, name),
                tags,
                by_digest: BTreeSet::new(),
            },
        );
    }
    // Docker: targets/releases first, then targets; other delegations are ignored.
    let mut pins: HashMap<String, Pin> = HashMap::new();
    for role in ["targets/releases", "targets"] {
        if let Some(r) = roles.get(role) {
            for (tag, digest) in &r.tags {
                pins.entry(tag.clone()).or_insert_with(|| Pin {
                    digest: digest.clone(),
                    role: role.to_owned(),
                });
            }
        }
    }
    let mut pinned_tags: HashMap<String, Vec<String>> = HashMap::new();
    for (tag, pin) in &pins {
        pinned_tags
            .entry(pin.digest.clone())
            .or_default()
            .push(tag.clone());
    }
    for v in pinned_tags.values_mut() {
        v.sort();
    }
    RepoSignatures {
        source: "notary-v1",
        subject: repo.gun().to_string(),
        version,
        base_expiry,
        roles,
        pins_tags: true,
        pins,
        pinned_tags,
        delegated,
        warnings: repo.warnings().to_vec(),
    }
}

/// A verified repository and its conversion (made once, however many ask at once).
struct Converted {
    repo: Arc<Repository>,
    sigs: tokio::sync::OnceCell<Arc<RepoSignatures>>,
}

impl Converted {
    /// Whether `other` is the same trust data: the same value, or the same timestamp
    /// file (which pins the snapshot, which pins every other file).
    fn same(&self, other: &Arc<Repository>) -> bool {
        Arc::ptr_eq(&self.repo, other)
            || self.repo.timestamp().file_bytes() == other.timestamp().file_bytes()
    }
}

/// A process-wide counter for signature versions.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

/// The GUN prefixes (host names with ports) of a registry, asked for at each lookup.
pub type Prefixes = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Reads Notary v1 trust data from the in-process Notary service
/// ([`notary_server::service::Service::trusted`]: root, timestamp, snapshot, targets and
/// delegations verified with thresholds and expiry) under the first GUN prefix that has
/// any (`<prefix>/<repository>`; the repository itself with no prefixes).
pub struct NotaryV1Source {
    service: Arc<notary_server::service::Service>,
    prefixes: Prefixes,
    negative_ttl: Duration,
    /// Repository → the verified repository last converted and its conversion.
    converted: Mutex<HashMap<String, Arc<Converted>>>,
    /// GUN → when it was last found to have no trust data.
    missing: Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for NotaryV1Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotaryV1Source")
            .field("prefixes", &(self.prefixes)())
            .finish_non_exhaustive()
    }
}

/// Entries kept in each of the source's maps before they are cleared.
const MAX_CACHED: usize = 50_000;

impl NotaryV1Source {
    /// A source over `service`. `prefixes`: the registry's host names with ports, as
    /// clients type them (`127.0.0.1:5000`, `localhost:5000`, `registry.example.com`);
    /// a trailing `/` is ignored. `negative_ttl`: how long "no trust data" is
    /// remembered (a local publish forgets it at once through
    /// [`SignatureSource::invalidate`]).
    pub fn new(
        service: Arc<notary_server::service::Service>,
        prefixes: Vec<String>,
        negative_ttl: Duration,
    ) -> NotaryV1Source {
        NotaryV1Source::with_prefixes(service, Arc::new(move || prefixes.clone()), negative_ttl)
    }

    /// A source whose prefixes are asked for at each lookup (the registry's host names
    /// are only complete once its port is bound).
    pub fn with_prefixes(
        service: Arc<notary_server::service::Service>,
        prefixes: Prefixes,
        negative_ttl: Duration,
    ) -> NotaryV1Source {
        NotaryV1Source {
            service,
            prefixes,
            negative_ttl,
            converted: Mutex::new(HashMap::new()),
            missing: Mutex::new(HashMap::new()),
        }
    }

    fn guns(&self, repository: &str) -> Vec<String> {
        let prefixes: Vec<String> = (self.prefixes)()
            .into_iter()
            .map(|p| p.trim_end_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if prefixes.is_empty() {
            return vec![repository.to_owned()];
        }
        prefixes
            .iter()
            .map(|p| format!("{p}/{repository}"))
            .collect()
    }

    fn known_missing(&self, gun: &str) -> bool {
        let Ok(m) = self.missing.lock() else {
            return false;
        };
        m.get(gun).is_some_and(|t| t.elapsed() < self.negative_ttl)
    }

    fn remember_missing(&self, gun: &str) {
        if self.negative_ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.missing.lock() {
            if m.len() >= MAX_CACHED {
                let ttl = self.negative_ttl;
                m.retain(|_, t| t.elapsed() < ttl);
                if m.len() >= MAX_CACHED {
                    m.clear();
                }
            }
            m.insert(gun.to_owned(), Instant::now());
        }
    }

    async fn convert(
        &self,
        repository: &str,
        repo: Arc<Repository>,
    ) -> Result<Arc<RepoSignatures>, SourceError> {
        let slot = {
            let Ok(mut c) = self.converted.lock() else {
                return Err(SourceError::Unavailable("signature cache poisoned".into()));
            };
            match c.get(repository) {
                Some(slot) if slot.same(&repo) => Arc::clone(slot),
                _ => {
                    if c.len() >= MAX_CACHED {
                        c.clear();
                    }
                    let slot = Arc::new(Converted {
                        repo: Arc::clone(&repo),
                        sigs: tokio::sync::OnceCell::new(),
                    });
                    c.insert(repository.to_owned(), Arc::clone(&slot));
                    slot
                }
            }
        };
        slot.sigs
            .get_or_try_init(|| async {
                let version = VERSIONS.fetch_add(1, Ordering::Relaxed);
                let r2 = Arc::clone(&slot.repo);
                // Signature checks: CPU work off the async workers.
                let sigs = tokio::task::spawn_blocking(move || from_notary(&r2, version))
                    .await
                    .map_err(|e| SourceError::Unavailable(format!("converting trust data: {e}")))?;
                metrics::counter!("registry_policy_trust_conversions_total").increment(1);
                Ok(Arc::new(sigs))
            })
            .await
            .cloned()
    }
}

#[async_trait]
impl SignatureSource for NotaryV1Source {
    async fn signatures(
        &self,
        repository: &str,
    ) -> Result<Option<Arc<RepoSignatures>>, SourceError> {
        use notary_server::service::ReadError;
        for gun in self.guns(repository) {
            if self.known_missing(&gun) {
                continue;
            }
            let Ok(g) = Gun::new(&gun) else { continue };
            match self.service.trusted(&g).await {
                Ok(repo) => return self.convert(repository, repo).await.map(Some),
                Err(ReadError::NotFound) => self.remember_missing(&gun),
                Err(ReadError::Untrusted(reason)) | Err(ReadError::Broken(reason)) => {
                    return Err(SourceError::Untrusted {
                        subject: gun,
                        reason,
                    });
                }
                Err(e) => return Err(SourceError::Unavailable(e.to_string())),
            }
        }
        Ok(None)
    }

    fn invalidate(&self, repository_or_subject: &str) {
        let repository = super::keys::repository_of_gun(repository_or_subject).to_owned();
        let guns = self.guns(&repository);
        if let Ok(mut m) = self.missing.lock() {
            m.remove(repository_or_subject);
            for g in &guns {
                m.remove(g);
            }
        }
        if let Ok(mut c) = self.converted.lock() {
            c.remove(&repository);
        }
    }

    fn subjects(&self, repository: &str) -> Vec<String> {
        self.guns(repository)
    }
}
