//! The one evaluation function every gate calls ([`PolicyEngine`]): the registry's
//! manifest routes through [`crate::access::Policy`], the admission webhook through
//! [`ImagePolicy`].
//!
//! For a repository, tag and the digest actually served: the effective policy (most
//! specific scope), exemptions, the verified signatures of the repository from a
//! [`SignatureSource`], the tag resolved as Docker resolves it (`targets/releases`, then
//! `targets`), each required signer checked on its own (a team: distinct keys
//! registered to its members that signed that tag at that digest in `targets` or a
//! direct delegation; a role: that role signs the tag at that digest with enough valid
//! keys), and the signed digest compared with the one served — so a tag moved to an
//! unsigned digest is refused even if it was signed before, and another tag signed
//! with the same digest does not help.
//!
//! The expensive part (signature bookkeeping, team keys from the database) is cached by
//! (repository, tag, digest, policy version, signatures version) for a short time
//! (team membership changes are seen within that time); concurrent identical
//! evaluations share one computation. Errors fail closed in enforced mode (503) and
//! open in permissive mode. Every decision of an active policy is queued for the audit
//! trail and counted in `registry_policy_decisions_total{gate,allowed}`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use time::OffsetDateTime;

use super::audit::{AuditEntry, AuditLog, AuditOptions};
use super::keys::{self, Directory};
use super::model::{DigestPulls, Mode, PolicySpec, Signer, SignerSpec};
use super::source::{NotaryV1Source, RepoSignatures, SignatureSource, SourceError};
use super::store::{PolicySet, PolicyStore, StoredPolicy};
use super::{Gate, ImagePolicy, PolicyError, Verdict};
use crate::access::{Decision, Identity, Operation, Policy, PolicyRequest};
use crate::auth::store::{AuthStore, Level};
use crate::meta::Db;
use crate::with_pool;

/// Where the engine reads the time (expiry checks).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Tunables.
#[derive(Clone)]
pub struct EngineOptions {
    /// How long a computed decision is reused (it is keyed by policy and signature
    /// versions; the time bounds how long team membership and key binding changes
    /// take to show).
    pub decision_ttl: Duration,
    /// How long team keys of a repository are reused.
    pub directory_ttl: Duration,
    /// Decisions kept in memory (beyond: stale ones dropped, then all).
    pub max_cached_decisions: usize,
    /// How often the stored policy version is polled (changes by other replicas or the
    /// CLI). At most a second, so changes reach every replica within one.
    pub poll_interval: Duration,
    /// How long "this repository has no trust data" is remembered by the Notary
    /// source of [`engine_for`].
    pub negative_ttl: Duration,
    /// The audit writer.
    pub audit: AuditOptions,
    /// Also audit allowed pulls (every manifest GET of a covered repository).
    pub audit_allowed_pulls: bool,
    /// The clock for expiry.
    pub clock: Clock,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            decision_ttl: Duration::from_secs(1),
            directory_ttl: Duration::from_secs(1),
            max_cached_decisions: 100_000,
            poll_interval: Duration::from_secs(1),
            negative_ttl: Duration::from_secs(1),
            audit: AuditOptions::default(),
            audit_allowed_pulls: true,
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("decision_ttl", &self.decision_ttl)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// The engine of [`crate::server`]'s all-in-one: the Notary v1 source over the
/// in-process Notary `service`, trust data looked up as `<prefix>/<repository>` for
/// each of `gun_prefixes` (the registry's host names with ports, as clients type them)
/// in turn. Loads the policies first (an error here is a start-up error: starting
/// without them would fail open).
pub async fn engine_for(
    db: Db,
    service: Arc<notary_server::service::Service>,
    gun_prefixes: Vec<String>,
) -> Result<Arc<PolicyEngine>, PolicyError> {
    let options = EngineOptions::default();
    let source = Arc::new(NotaryV1Source::new(
        service,
        gun_prefixes,
        options.negative_ttl,
    ));
    PolicyEngine::new(db, source, options).await
}

/// [`engine_for`] with GUN prefixes asked for at each lookup (the all-in-one's host
/// names, complete once its port is bound).
pub async fn engine_with_prefixes(
    db: Db,
    service: Arc<notary_server::service::Service>,
    prefixes: crate::policy::source::Prefixes,
) -> Result<Arc<PolicyEngine>, PolicyError> {
    let options = EngineOptions::default();
    let source = Arc::new(NotaryV1Source::with_prefixes(
        service,
        prefixes,
        options.negative_ttl,
    ));
    PolicyEngine::new(db, source, options).await
}

/// What an evaluation concluded before the mode is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The policy holds; the digest signed.
    Pass {
        /// The signed digest.
        digest: String,
        /// Who signed, in words.
        reason: String,
    },
    /// The policy does not hold.
    Fail {
        /// Why, in words a person can act on.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Tag,
    Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    kind: Kind,
    repository: String,
    tag: Option<String>,
    digest: String,
    policy_version: i64,
    trust_version: u64,
}

/// Errors are kept as text (and the entry dropped): they are not cached.
type Cell = Arc<tokio::sync::OnceCell<Result<Status, String>>>;

/// Decisions by key, in shards; entries live `ttl`.
struct DecisionCache {
    shards: Vec<Mutex<HashMap<CacheKey, (Instant, Cell)>>>,
    hasher: std::collections::hash_map::RandomState,
    ttl: Duration,
    max_per_shard: usize,
}

const SHARDS: usize = 16;

impl DecisionCache {
    fn new(ttl: Duration, max: usize) -> DecisionCache {
        DecisionCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            ttl,
            max_per_shard: (max / SHARDS).max(16),
        }
    }

    fn shard(&self, key: &CacheKey) -> &Mutex<HashMap<CacheKey, (Instant, Cell)>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// The cell for `key` (new if absent or stale) and whether it already holds a value.
    fn cell(&self, key: &CacheKey) -> (Cell, bool) {
        let Ok(mut m) = self.shard(key).lock() else {
            return (Arc::default(), false);
        };
        if let Some((born, cell)) = m.get(key) {
            if born.elapsed() < self.ttl {
                return (Arc::clone(cell), cell.initialized());
            }
        }
        if m.len() >= self.max_per_shard {
            let ttl = self.ttl;
            m.retain(|_, (born, _)| born.elapsed() < ttl);
            if m.len() >= self.max_per_shard {
                m.clear();
            }
        }
        let cell: Cell = Arc::default();
        m.insert(key.clone(), (Instant::now(), Arc::clone(&cell)));
        (cell, false)
    }

    /// Drops `key` if it still holds `cell` (errors are not kept).
    fn forget(&self, key: &CacheKey, cell: &Cell) {
        if let Ok(mut m) = self.shard(key).lock() {
            if m.get(key).is_some_and(|(_, c)| Arc::ptr_eq(c, cell)) {
                m.remove(key);
            }
        }
    }

    fn clear(&self) {
        for s in &self.shards {
            if let Ok(mut m) = s.lock() {
                m.clear();
            }
        }
    }
}

/// A small map whose entries expire.
struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }
    fn get(&self, k: &K) -> Option<V> {
        let m = self.map.lock().ok()?;
        m.get(k)
            .filter(|(t, _)| t.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }
    fn put(&self, k: K, v: V) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= self.max {
                let ttl = self.ttl;
                m.retain(|_, (t, _)| t.elapsed() < ttl);
                if m.len() >= self.max {
                    m.clear();
                }
            }
            m.insert(k, (Instant::now(), v));
        }
    }
    fn retain(&self, f: impl Fn(&K) -> bool) {
        if let Ok(mut m) = self.map.lock() {
            m.retain(|k, _| f(k));
        }
    }
}

/// The signatures of a repository as one evaluation sees them.
#[derive(Clone)]
enum Trust {
    Present(Arc<RepoSignatures>),
    Absent,
    Untrusted(String),
}

impl Trust {
    fn version(&self) -> Option<u64> {
        match self {
            Trust::Present(s) => Some(s.version),
            Trust::Absent => Some(0),
            Trust::Untrusted(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Pull,
    Head,
    Push,
    Delete,
    Deploy,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Pull => "pull",
            Op::Head => "head",
            Op::Push => "push",
            Op::Delete => "delete",
            Op::Deploy => "deploy",
        }
    }
}

fn gate_name(g: Gate) -> &'static str {
    match g {
        Gate::Pull => "pull",
        Gate::Push => "push",
        Gate::Deploy => "deploy",
    }
}

/// The result of one evaluation, mode applied.
#[derive(Clone, Debug)]
struct Outcome {
    allowed: bool,
    warn: bool,
    unavailable: bool,
    reason: String,
    digest: Option<String>,
    policy_version: i64,
    /// An active policy decided (audited and counted).
    audited: bool,
}

impl Outcome {
    fn allow(
        reason: impl Into<String>,
        digest: Option<String>,
        version: i64,
        audited: bool,
    ) -> Outcome {
        Outcome {
            allowed: true,
            warn: false,
            unavailable: false,
            reason: reason.into(),
            digest,
            policy_version: version,
            audited,
        }
    }
}

/// Where a policy decides before the mode is applied.
enum Finding {
    Pass(String, Option<String>),
    /// Allowed and stored, but with a warning (a quarantined push).
    Quarantine(String),
    Fail(String),
}

/// One tag as the admin API lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagReport {
    /// Tag.
    pub tag: String,
    /// Digest the registry serves for it.
    pub digest: String,
    /// Signed for exactly that digest (in `targets/releases` or `targets`).
    pub signed: bool,
    /// The digest the signatures pin the tag to, if any.
    pub signed_digest: Option<String>,
    /// Roles that sign the tag at the served digest, with the keys that signed them and
    /// their owners.
    pub signers: Vec<TagSigner>,
    /// Whether the effective policy holds at the pull gate (`None`: none applies).
    pub policy_satisfied: Option<bool>,
    /// Stored but not pullable until signed as the policy requires.
    pub quarantined: bool,
    /// Why.
    pub reason: String,
}

/// A role signing a tag, for [`TagReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSigner {
    /// Role.
    pub role: String,
    /// Keys with a valid signature on it: id and owner, when bound.
    pub keys: Vec<(String, Option<String>)>,
}

/// The policy decision point.
pub struct PolicyEngine {
    db: Db,
    auth: AuthStore,
    store: Arc<PolicyStore>,
    source: Arc<dyn SignatureSource>,
    decisions: DecisionCache,
    directories: TtlCache<(String, String), Arc<Directory>>,
    user_teams: TtlCache<String, Arc<BTreeSet<String>>>,
    writers: TtlCache<(String, String), bool>,
    audit: AuditLog,
    options: EngineOptions,
    computations: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_owned(),
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The `org/team` a signer or exemption names, for `repository`.
fn qualify_team(org: Option<&str>, team: &str, repository: &str) -> Option<String> {
    match org {
        Some(o) => Some(format!("{o}/{team}")),
        None => repository
            .split_once('/')
            .map(|(ns, _)| format!("{ns}/{team}")),
    }
}

fn qualify_team_name(name: &str, repository: &str) -> Option<String> {
    match name.split_once('/') {
        Some((o, t)) => qualify_team(Some(o), t, repository),
        None => qualify_team(None, name, repository),
    }
}

/// Everything one evaluation reads.
struct Ctx<'a> {
    repository: &'a str,
    policy: &'a PolicySpec,
    trust: &'a Trust,
    dir: &'a Directory,
    now: OffsetDateTime,
    subjects: &'a [String],
}

impl Ctx<'_> {
    fn no_trust(&self, tag: &str) -> String {
        match self.trust {
            Trust::Untrusted(reason) => reason.clone(),
            _ => format!(
                "tag {tag} is not signed: {} has no trust data (looked up {}); sign it with `docker trust sign {}:{tag}` or `notary image sign`",
                self.repository,
                self.subjects.join(", "),
                self.subjects
                    .first()
                    .map(String::as_str)
                    .unwrap_or(self.repository)
            ),
        }
    }

    /// The tag at the served digest.
    fn tag_status(&self, tag: &str, served: &str) -> Status {
        let fail = |reason: String| Status::Fail { reason };
        let Trust::Present(sigs) = self.trust else {
            return fail(self.no_trust(tag));
        };
        let (signed, pin_role) = if sigs.pins_tags {
            match sigs.pin(tag) {
                Some(p) => (p.digest.clone(), p.role.clone()),
                None => {
                    let elsewhere: Vec<&str> =
                        sigs.roles_naming(tag).into_iter().map(|(r, _)| r).collect();
                    return fail(if elsewhere.is_empty() {
                        format!(
                            "tag {tag} is not signed: {} has no entry for it in targets/releases or targets; sign it with `docker trust sign {}:{tag}`",
                            sigs.subject, sigs.subject
                        )
                    } else {
                        format!(
                            "tag {tag} is not signed where clients look: only {} name it, and Docker reads targets/releases, then targets; sign it with `docker trust sign {}:{tag}`",
                            elsewhere.join(", "),
                            sigs.subject
                        )
                    });
                }
            }
        } else {
            (served.to_owned(), String::new())
        };
        if signed != served {
            return fail(format!(
                "tag {tag} points at {served} but is signed for {signed} ({pin_role} of {}): the tag was moved after signing; sign the new digest or push the signed image back",
                sigs.subject
            ));
        }
        if self.policy.deny_expired {
            let expired = sigs.expired(self.now, &[pin_role.as_str()]);
            if !expired.is_empty() {
                return fail(expired_reason(&sigs.subject, &expired));
            }
        }
        self.check_signers(sigs, Some(tag), served, &pin_role)
    }

    fn check_signers(
        &self,
        sigs: &RepoSignatures,
        tag: Option<&str>,
        digest: &str,
        pin_role: &str,
    ) -> Status {
        let what = match tag {
            Some(t) => format!("tag {t}"),
            None => short_digest(digest),
        };
        if self.policy.signers.is_empty() {
            let by = if pin_role.is_empty() {
                sigs.source.to_owned()
            } else {
                pin_role.to_owned()
            };
            return Status::Pass {
                digest: digest.to_owned(),
                reason: format!("{what} is signed for {} ({by})", short_digest(digest)),
            };
        }
        let mut satisfied: Vec<String> = Vec::new();
        let mut missing: Vec<(String, String)> = Vec::new();
        for s in &self.policy.signers {
            match self.check_signer(sigs, s, tag, digest) {
                Ok(()) => satisfied.push(s.label()),
                Err(detail) => missing.push((s.label(), detail)),
            }
        }
        if missing.is_empty() {
            return Status::Pass {
                digest: digest.to_owned(),
                reason: format!(
                    "{what} is signed for {} by {}",
                    short_digest(digest),
                    satisfied.join(", ")
                ),
            };
        }
        let labels: Vec<&str> = missing.iter().map(|(l, _)| l.as_str()).collect();
        let details: Vec<&str> = missing.iter().map(|(_, d)| d.as_str()).collect();
        let reason = if satisfied.is_empty() {
            format!(
                "{what} is not signed by {} as the policy requires: {}",
                labels.join(" and "),
                details.join("; ")
            )
        } else {
            format!(
                "{what} is signed by {} but the policy also requires {}: {}",
                satisfied.join(", "),
                labels.join(" and "),
                details.join("; ")
            )
        };
        Status::Fail { reason }
    }

    fn check_signer(
        &self,
        sigs: &RepoSignatures,
        s: &SignerSpec,
        tag: Option<&str>,
        digest: &str,
    ) -> Result<(), String> {
        let expiry_counts = self.policy.deny_expired;
        let target = match tag {
            Some(t) => format!("{t} at {}", short_digest(digest)),
            None => short_digest(digest),
        };
        match s.signer() {
            Some(Signer::Role(r)) => {
                let Some(role) = sigs.roles.get(&r) else {
                    return Err(if sigs.delegated.contains(&r) {
                        format!("{r} has not signed {target} (it has signed nothing yet)")
                    } else {
                        format!("{r} does not exist in the trust data of {}", sigs.subject)
                    });
                };
                if expiry_counts && role.expired(self.now) {
                    return Err(format!(
                        "{r} expired on {}",
                        role.expires.map(rfc3339).unwrap_or_default()
                    ));
                }
                if !role.signs(tag, digest) {
                    return Err(match tag.and_then(|t| role.tags.get(t)) {
                        Some(other) => {
                            format!("{r} signed {} for {other}, not {digest}", tag.unwrap_or(""))
                        }
                        None => format!("{r} has not signed {target}"),
                    });
                }
                if role.signed_by.len() < s.min as usize {
                    return Err(format!(
                        "{r} carries {} valid signatures, the policy requires {}",
                        role.signed_by.len(),
                        s.min
                    ));
                }
                Ok(())
            }
            Some(Signer::Team(org, team)) => {
                let Some(name) = qualify_team(org.as_deref(), &team, self.repository) else {
                    return Err(format!(
                        "team {team} needs an organisation: {} has no namespace (write org/{team})",
                        self.repository
                    ));
                };
                if !self.dir.teams.contains(&name) {
                    return Err(format!("team {name} does not exist"));
                }
                let empty = BTreeSet::new();
                let keys = self.dir.team_keys.get(&name).unwrap_or(&empty);
                if keys.is_empty() {
                    return Err(format!(
                        "no signing key of {} is registered to a member of {name}",
                        self.repository
                    ));
                }
                let mut counted: BTreeSet<&str> = BTreeSet::new();
                for role in sigs.roles.values() {
                    if !role.direct
                        || !role.signs(tag, digest)
                        || (expiry_counts && role.expired(self.now))
                    {
                        continue;
                    }
                    for (id, canonical) in &role.signed_by {
                        if keys.contains(id) || keys.contains(canonical) {
                            counted.insert(id.as_str());
                        }
                    }
                }
                if counted.len() >= s.min as usize {
                    Ok(())
                } else if counted.is_empty() {
                    Err(format!("no key of a member of {name} signed {target}"))
                } else {
                    Err(format!(
                        "{} key(s) of members of {name} signed {target}, the policy requires {}",
                        counted.len(),
                        s.min
                    ))
                }
            }
            None => Err("the signer names neither a team nor a role".into()),
        }
    }

    /// A digest pulled or deployed by digest: some tag within the policy is signed for
    /// it and passes.
    fn digest_status(&self, digest: &str) -> Status {
        let Trust::Present(sigs) = self.trust else {
            return Status::Fail {
                reason: match self.trust {
                    Trust::Untrusted(r) => r.clone(),
                    _ => format!(
                        "{digest} is not signed: {} has no trust data (looked up {}); digest pulls are limited to signed digests",
                        self.repository,
                        self.subjects.join(", ")
                    ),
                },
            };
        };
        if !sigs.pins_tags {
            return self.check_signers(sigs, None, digest, "");
        }
        let candidates: Vec<&String> = sigs
            .pinned_tags
            .get(digest)
            .map(|v| v.iter().filter(|t| self.policy.in_scope(t)).collect())
            .unwrap_or_default();
        let mut first_failure = None;
        for tag in candidates {
            match self.tag_status(tag, digest) {
                Status::Pass { reason, .. } => {
                    return Status::Pass {
                        digest: digest.to_owned(),
                        reason: format!(
                            "{} is the signed digest of tag {tag}: {reason}",
                            short_digest(digest)
                        ),
                    };
                }
                Status::Fail { reason } => {
                    if first_failure.is_none() {
                        first_failure =
                            Some(format!("{digest} is signed as tag {tag}, but {reason}"));
                    }
                }
            }
        }
        Status::Fail {
            reason: first_failure.unwrap_or_else(|| {
                format!(
                    "{digest} is not the signed digest of any tag the policy covers in {}: digest pulls are limited to signed digests",
                    sigs.subject
                )
            }),
        }
    }
}

fn expired_reason(subject: &str, expired: &[(String, OffsetDateTime)]) -> String {
    let list: Vec<String> = expired
        .iter()
        .map(|(r, e)| format!("{r} on {}", rfc3339(*e)))
        .collect();
    let first = expired
        .first()
        .map(|(_, e)| rfc3339(*e))
        .unwrap_or_default();
    format!(
        "trust data for {subject} expired on {first} ({}): re-sign it (`notary publish {subject}` or `docker trust sign`)",
        list.join(", ")
    )
}

impl PolicyEngine {
    /// An engine over `db` (the registry's database: policies, key bindings, teams,
    /// audit) reading signatures from `source`.
    pub async fn new(
        db: Db,
        source: Arc<dyn SignatureSource>,
        options: EngineOptions,
    ) -> Result<Arc<PolicyEngine>, PolicyError> {
        let store = PolicyStore::open(db.clone())
            .await
            .map_err(|e| PolicyError(format!("loading policies: {e}")))?;
        store.follow(options.poll_interval.min(Duration::from_secs(1)));
        let audit = AuditLog::start(db.clone(), options.audit);
        Ok(Arc::new(PolicyEngine {
            auth: AuthStore::new(db.clone()),
            db,
            store,
            source,
            decisions: DecisionCache::new(options.decision_ttl, options.max_cached_decisions),
            directories: TtlCache::new(options.directory_ttl, 10_000),
            user_teams: TtlCache::new(options.directory_ttl, 10_000),
            writers: TtlCache::new(options.directory_ttl, 10_000),
            audit,
            options,
            computations: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// The policies.
    pub fn store(&self) -> &Arc<PolicyStore> {
        &self.store
    }

    /// The signature source.
    pub fn source(&self) -> &Arc<dyn SignatureSource> {
        &self.source
    }

    /// How many evaluations were computed rather than served from the cache (or joined
    /// while in progress).
    pub fn computations(&self) -> u64 {
        self.computations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until every decision made so far is in the audit table.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    /// To call after a successful Notary publish of `gun` by `user`, with the verified
    /// trust data before (`None` for a new repository) and after: binds the keys that
    /// signed changed roles to `user` ([`keys::record_update`]) and forgets cached
    /// state of the repository.
    pub async fn published(
        &self,
        gun: &str,
        user: &str,
        before: Option<&notary_core::update::Repository>,
        after: &notary_core::update::Repository,
    ) -> Result<Vec<keys::SignerKey>, PolicyError> {
        self.trust_changed(gun);
        let added = keys::record_update(&self.db, gun, user, before, after)
            .await
            .map_err(|e| PolicyError(format!("recording signing keys: {e}")))?;
        self.signers_changed(keys::repository_of_gun(gun));
        Ok(added)
    }

    /// Forgets cached signatures of `gun` (or a repository name): call after trust
    /// data changed in this process (a publish, a deletion).
    pub fn trust_changed(&self, gun: &str) {
        self.source.invalidate(gun);
    }

    /// Forgets cached key bindings and decisions of `repository`.
    pub fn signers_changed(&self, repository: &str) {
        self.directories.retain(|(r, _)| r != repository);
        self.decisions.clear();
    }

    async fn trust(&self, repository: &str) -> Result<Trust, PolicyError> {
        match self.source.signatures(repository).await {
            Ok(Some(s)) => Ok(Trust::Present(s)),
            Ok(None) => Ok(Trust::Absent),
            Err(e @ SourceError::Untrusted { .. }) => Ok(Trust::Untrusted(e.to_string())),
            Err(e @ SourceError::Unavailable(_)) => Err(PolicyError(e.to_string())),
        }
    }

    async fn directory(
        &self,
        repository: &str,
        policy: &PolicySpec,
    ) -> Result<Arc<Directory>, PolicyError> {
        let teams: BTreeSet<String> = policy
            .signers
            .iter()
            .filter_map(|s| match s.signer() {
                Some(Signer::Team(org, team)) => qualify_team(org.as_deref(), &team, repository),
                _ => None,
            })
            .collect();
        let key = (
            repository.to_owned(),
            teams.iter().cloned().collect::<Vec<_>>().join(","),
        );
        if let Some(d) = self.directories.get(&key) {
            return Ok(d);
        }
        let d = Arc::new(
            keys::directory(&self.db, repository, &teams)
                .await
                .map_err(|e| PolicyError(format!("reading signing keys: {e}")))?,
        );
        self.directories.put(key, Arc::clone(&d));
        Ok(d)
    }

    fn now(&self) -> OffsetDateTime {
        (self.options.clock)()
    }

    /// Parents (indexes) of `digest` in `repository`.
    async fn parents(&self, repository: &str, digest: &str) -> Result<Vec<String>, PolicyError> {
        const Q: &str = "SELECT DISTINCT mr.manifest_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id WHERE r.name = $1 AND mr.child_digest = $2 AND mr.kind = 'manifest' LIMIT 16";
        let rows: Result<Vec<String>, sqlx::Error> = with_pool!(self.db, pool => {
            sqlx::query_scalar::<_, String>(Q).bind(repository).bind(digest).fetch_all(pool).await
        });
        rows.map_err(|e| PolicyError(format!("reading manifest references: {e}")))
    }

    /// The cached status of `tag` at `digest` (kind Tag) or of `digest` (kind Digest).
    async fn status(
        &self,
        stored: &Arc<StoredPolicy>,
        set: &PolicySet,
        repository: &str,
        tag: Option<&str>,
        digest: &str,
        trust: &Trust,
    ) -> Result<Status, PolicyError> {
        let kind = if tag.is_some() {
            Kind::Tag
        } else {
            Kind::Digest
        };
        let compute = || async {
            self.compute(stored, repository, tag, digest, trust)
                .await
                .map_err(|e| e.0)
        };
        let Some(trust_version) = trust.version() else {
            // Unverifiable trust data: nothing worth caching.
            return compute().await.map_err(PolicyError);
        };
        let key = CacheKey {
            kind,
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest: digest.to_owned(),
            policy_version: set.version,
            trust_version,
        };
        let (cell, hit) = self.decisions.cell(&key);
        metrics::counter!("registry_policy_cache_total", "result" => if hit { "hit" } else { "miss" }).increment(1);
        let result = cell.get_or_init(compute).await.clone();
        if result.is_err() {
            self.decisions.forget(&key, &cell);
        }
        result.map_err(PolicyError)
    }

    /// [`Self::status`] without the cache.
    async fn compute(
        &self,
        stored: &Arc<StoredPolicy>,
        repository: &str,
        tag: Option<&str>,
        digest: &str,
        trust: &Trust,
    ) -> Result<Status, PolicyError> {
        self.computations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.directory(repository, &stored.spec).await?;
        let subjects = self.source.subjects(repository);
        let ctx = Ctx {
            repository,
            policy: &stored.spec,
            trust,
            dir: &dir,
            now: self.now(),
            subjects: &subjects,
        };
        let status = match tag {
            Some(t) => ctx.tag_status(t, digest),
            None => ctx.digest_status(digest),
        };
        if tag.is_some() || matches!(status, Status::Pass { .. }) {
            return Ok(status);
        }
        // A child of a signed index (a platform manifest of a multi-arch image):
        // allowed with its index. Two levels at most.
        let mut frontier = vec![digest.to_owned()];
        for _ in 0..2 {
            let mut next = Vec::new();
            for d in &frontier {
                for parent in self.parents(repository, d).await? {
                    if let Status::Pass { reason, .. } = ctx.digest_status(&parent) {
                        return Ok(Status::Pass {
                            digest: digest.to_owned(),
                            reason: format!(
                                "{} belongs to index {}; {reason}",
                                short_digest(digest),
                                short_digest(&parent)
                            ),
                        });
                    }
                    next.push(parent);
                }
            }
            frontier = next;
        }
        Ok(status)
    }

    async fn is_exempt_by_team(
        &self,
        user: &str,
        policy: &PolicySpec,
        repository: &str,
    ) -> Result<bool, PolicyError> {
        if policy.exempt_teams.is_empty() {
            return Ok(false);
        }
        let teams = match self.user_teams.get(&user.to_owned()) {
            Some(t) => t,
            None => {
                let t = Arc::new(
                    keys::user_teams(&self.db, user)
                        .await
                        .map_err(|e| PolicyError(format!("reading team membership: {e}")))?,
                );
                self.user_teams.put(user.to_owned(), Arc::clone(&t));
                t
            }
        };
        Ok(policy
            .exempt_teams
            .iter()
            .filter_map(|t| qualify_team_name(t, repository))
            .any(|t| teams.contains(&t)))
    }

    /// Whether the caller may push to `repository` (reads quarantined tags).
    async fn is_writer(&self, identity: &Identity, repository: &str) -> bool {
        let Some(user) = &identity.user else {
            return false;
        };
        if identity.admin {
            return true;
        }
        let key = (user.clone(), repository.to_owned());
        if let Some(w) = self.writers.get(&key) {
            return w;
        }
        let w = match self.auth.user(user).await {
            Ok(Some(u)) if u.admin => true,
            Ok(Some(u)) => {
                matches!(self.auth.repo_level(&u, repository).await, Ok(Some(l)) if l >= Level::ReadWrite)
            }
            _ => false,
        };
        self.writers.put(key, w);
        w
    }

    /// The evaluation every gate shares.
    async fn run(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        identity: &Identity,
        gate: Gate,
        op: Op,
    ) -> Outcome {
        let set = self.store.snapshot();
        let version = set.version;
        let Some(stored) = set.effective(repository).cloned() else {
            return Outcome::allow(
                format!("no policy applies to {repository}"),
                digest.map(str::to_owned),
                version,
                false,
            );
        };
        let p = &stored.spec;
        if !p.active(gate) {
            return Outcome::allow(
                format!(
                    "{} does not apply at the {} gate",
                    stored.scope.describe(),
                    gate_name(gate)
                ),
                digest.map(str::to_owned),
                version,
                false,
            );
        }
        let mut outcome = match self
            .find(&stored, &set, repository, tag, digest, identity, op)
            .await
        {
            Ok(Finding::Pass(reason, d)) => Outcome::allow(
                reason,
                d.or_else(|| digest.map(str::to_owned)),
                version,
                true,
            ),
            Ok(Finding::Quarantine(reason)) => {
                let t = tag.unwrap_or("");
                let reason = if p.mode == Mode::Permissive {
                    format!("{reason} (not enforced: the policy is permissive)")
                } else {
                    format!(
                        "stored but quarantined: pulls of {t} are refused until it is signed as the policy requires ({reason})"
                    )
                };
                Outcome {
                    warn: true,
                    ..Outcome::allow(reason, digest.map(str::to_owned), version, true)
                }
            }
            Ok(Finding::Fail(reason)) => {
                if p.mode == Mode::Permissive {
                    Outcome {
                        warn: true,
                        ..Outcome::allow(
                            format!("{reason} (not enforced: the policy is permissive)"),
                            digest.map(str::to_owned),
                            version,
                            true,
                        )
                    }
                } else if matches!(op, Op::Pull | Op::Head)
                    && p.writers_read_quarantined
                    && self.is_writer(identity, repository).await
                {
                    Outcome {
                        warn: true,
                        ..Outcome::allow(
                            format!(
                                "{reason} (quarantined; served because you may push to {repository})"
                            ),
                            digest.map(str::to_owned),
                            version,
                            true,
                        )
                    }
                } else {
                    Outcome {
                        allowed: false,
                        ..Outcome::allow(reason, digest.map(str::to_owned), version, true)
                    }
                }
            }
            Err(e) => {
                metrics::counter!("registry_policy_errors_total").increment(1);
                tracing::warn!(error = %e, repository, "policy evaluation failed");
                if p.mode == Mode::Permissive {
                    Outcome {
                        warn: true,
                        ..Outcome::allow(
                            format!(
                                "the signed-image policy could not be evaluated ({e}); allowed because the policy is permissive"
                            ),
                            digest.map(str::to_owned),
                            version,
                            true,
                        )
                    }
                } else {
                    Outcome {
                        allowed: false,
                        unavailable: true,
                        ..Outcome::allow(
                            format!(
                                "the signed-image policy could not be evaluated ({e}); refused until it can be (retry shortly)"
                            ),
                            digest.map(str::to_owned),
                            version,
                            true,
                        )
                    }
                }
            }
        };
        if !outcome.allowed || outcome.warn {
            outcome.reason = format!("{}: {}", stored.scope.describe(), outcome.reason);
        }
        if outcome.audited {
            let allowed = if outcome.allowed { "true" } else { "false" };
            metrics::counter!("registry_policy_decisions_total", "gate" => gate_name(gate), "allowed" => allowed).increment(1);
            if outcome.warn {
                metrics::counter!("registry_policy_warnings_total", "gate" => gate_name(gate))
                    .increment(1);
            }
            let skip = outcome.allowed
                && !outcome.warn
                && matches!(op, Op::Pull | Op::Head)
                && !self.options.audit_allowed_pulls;
            if !skip {
                self.audit.record(AuditEntry {
                    id: 0,
                    at: crate::meta::now(),
                    gate: gate_name(gate).to_owned(),
                    operation: op.as_str().to_owned(),
                    repository: repository.to_owned(),
                    tag: tag.map(str::to_owned),
                    digest: outcome.digest.clone().or_else(|| digest.map(str::to_owned)),
                    user: identity.user.clone(),
                    allowed: outcome.allowed,
                    warned: outcome.warn,
                    reason: outcome.reason.clone(),
                    policy_version: version,
                });
            }
        }
        outcome
    }

    /// The policy's finding for one operation (mode not applied).
    #[allow(clippy::too_many_arguments)]
    async fn find(
        &self,
        stored: &Arc<StoredPolicy>,
        set: &PolicySet,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        identity: &Identity,
        op: Op,
    ) -> Result<Finding, PolicyError> {
        let p = &stored.spec;
        if let Some(user) = &identity.user {
            if p.exempt_users.iter().any(|u| u == user) {
                return Ok(Finding::Pass(
                    format!("user {user} is exempt from {}", stored.scope.describe()),
                    None,
                ));
            }
            if self.is_exempt_by_team(user, p, repository).await? {
                return Ok(Finding::Pass(
                    format!(
                        "user {user} is in a team exempt from {}",
                        stored.scope.describe()
                    ),
                    None,
                ));
            }
        }
        if let Some(t) = tag {
            if !p.in_scope(t) {
                return Ok(Finding::Pass(
                    format!("tag {t} is not covered by {}", stored.scope.describe()),
                    None,
                ));
            }
        }
        match op {
            Op::Pull | Op::Head | Op::Deploy => {
                let digest = match (tag, digest) {
                    (_, Some(d)) => d.to_owned(),
                    (Some(t), None) => match self.db.tagged_manifest(repository, t).await {
                        Ok(Some(row)) => row.digest,
                        Ok(None) => {
                            return Ok(Finding::Fail(format!(
                                "tag {t} does not exist in {repository}"
                            )));
                        }
                        Err(e) => return Err(PolicyError(format!("reading tag {t}: {e}"))),
                    },
                    (None, None) => {
                        return Ok(Finding::Fail("neither a tag nor a digest to check".into()));
                    }
                };
                if tag.is_none() && p.digest_pulls == DigestPulls::Always {
                    return Ok(Finding::Pass(
                        "digest pulls are always allowed by the policy".into(),
                        Some(digest),
                    ));
                }
                let trust = self.trust(repository).await?;
                match self
                    .status(stored, set, repository, tag, &digest, &trust)
                    .await?
                {
                    Status::Pass { digest, reason } => Ok(Finding::Pass(reason, Some(digest))),
                    Status::Fail { reason } => Ok(Finding::Fail(reason)),
                }
            }
            Op::Push => {
                let (Some(t), Some(d)) = (tag, digest) else {
                    return Ok(Finding::Pass("a push by digest sets no tag".into(), None));
                };
                let trust = self.trust(repository).await?;
                if p.immutable_signed_tags {
                    if let Trust::Present(sigs) = &trust {
                        if let Some(pin) = sigs.pin(t).filter(|pin| pin.digest != d) {
                            let roles: Vec<&str> =
                                sigs.roles_naming(t).into_iter().map(|(r, _)| r).collect();
                            return Ok(Finding::Fail(format!(
                                "tag {t} is signed for {} and the policy keeps signed tags immutable: remove the signature first (`notary remove {} {t}{} --publish` or `docker trust revoke {}:{t}`), then push",
                                pin.digest,
                                sigs.subject,
                                roles
                                    .iter()
                                    .map(|r| format!(" --roles {r}"))
                                    .collect::<String>(),
                                sigs.subject
                            )));
                        }
                    }
                }
                match self
                    .status(stored, set, repository, Some(t), d, &trust)
                    .await?
                {
                    Status::Pass { reason, .. } => Ok(Finding::Pass(reason, None)),
                    Status::Fail { reason } => Ok(Finding::Quarantine(reason)),
                }
            }
            Op::Delete => {
                let (Some(t), Some(d)) = (tag, digest) else {
                    return Ok(Finding::Pass(
                        "deleting a manifest removes no signed tag by itself".into(),
                        None,
                    ));
                };
                let Trust::Present(sigs) = self.trust(repository).await? else {
                    return Ok(Finding::Pass(format!("tag {t} is not signed"), None));
                };
                let mut roles: Vec<&str> = sigs
                    .roles_naming(t)
                    .into_iter()
                    .filter(|(_, signed)| *signed == d)
                    .map(|(r, _)| r)
                    .collect();
                roles.sort();
                if roles.is_empty() {
                    return Ok(Finding::Pass(
                        format!("tag {t} is not signed for {}", short_digest(d)),
                        None,
                    ));
                }
                Ok(Finding::Fail(format!(
                    "tag {t} is signed ({}): remove it with `notary remove {} {t}{} --publish` first",
                    roles.join(", "),
                    sigs.subject,
                    roles
                        .iter()
                        .map(|r| format!(" --roles {r}"))
                        .collect::<String>()
                )))
            }
        }
    }

    /// The status of tags (`(tag, served digest)`) for the admin API's listing.
    pub async fn tag_reports(
        &self,
        repository: &str,
        tags: &[(String, String)],
    ) -> Result<(Option<Arc<RepoSignatures>>, Vec<TagReport>), PolicyError> {
        let trust = self.trust(repository).await?;
        let set = self.store.snapshot();
        let stored = set.effective(repository).cloned();
        let empty = Arc::new(Directory::default());
        let dir = match &stored {
            Some(s) => self.directory(repository, &s.spec).await?,
            None => empty,
        };
        let owners = &dir.owners;
        let sigs = match &trust {
            Trust::Present(s) => Some(Arc::clone(s)),
            _ => None,
        };
        let mut out = Vec::with_capacity(tags.len());
        for (tag, digest) in tags {
            let pin = sigs.as_ref().and_then(|s| s.pin(tag).cloned());
            let signed = pin.as_ref().is_some_and(|p| &p.digest == digest);
            let signers = sigs
                .as_ref()
                .map(|s| {
                    s.roles
                        .values()
                        .filter(|r| r.signs(Some(tag), digest))
                        .map(|r| {
                            let keys = r
                                .signed_by
                                .iter()
                                .map(|(id, c)| {
                                    (
                                        id.clone(),
                                        owners.get(id).or_else(|| owners.get(c)).cloned(),
                                    )
                                })
                                .collect();
                            TagSigner {
                                role: r.name.clone(),
                                keys,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let (policy_satisfied, quarantined, reason) = match &stored {
                Some(st) if st.spec.active(Gate::Pull) && st.spec.in_scope(tag) => {
                    match self
                        .status(st, &set, repository, Some(tag), digest, &trust)
                        .await?
                    {
                        Status::Pass { reason, .. } => (Some(true), false, reason),
                        Status::Fail { reason } => {
                            (Some(false), st.spec.mode == Mode::Enforced, reason)
                        }
                    }
                }
                Some(st) => (
                    None,
                    false,
                    format!(
                        "{} does not cover tag {tag} at the pull gate",
                        st.scope.describe()
                    ),
                ),
                None => (None, false, format!("no policy applies to {repository}")),
            };
            out.push(TagReport {
                tag: tag.clone(),
                digest: digest.clone(),
                signed,
                signed_digest: pin.map(|p| p.digest),
                signers,
                policy_satisfied,
                quarantined,
                reason,
            });
        }
        Ok((sigs, out))
    }
}

#[async_trait]
impl Policy for PolicyEngine {
    async fn decide(&self, request: &PolicyRequest<'_>) -> Decision {
        let (gate, op) = match request.operation {
            Operation::Pull => (Gate::Pull, Op::Pull),
            Operation::Head => (Gate::Pull, Op::Head),
            Operation::Push => (Gate::Push, Op::Push),
            Operation::Delete => (Gate::Push, Op::Delete),
        };
        let o = self
            .run(
                request.repository,
                request.tag,
                Some(request.digest),
                request.identity,
                gate,
                op,
            )
            .await;
        if o.unavailable {
            Decision::Unavailable(o.reason)
        } else if !o.allowed {
            Decision::Deny(o.reason)
        } else if o.warn {
            Decision::Warn(o.reason)
        } else {
            Decision::Allow
        }
    }

    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        Some(self)
    }
}

#[async_trait]
impl ImagePolicy for PolicyEngine {
    async fn evaluate(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        identity: &Identity,
        gate: Gate,
    ) -> Result<Verdict, PolicyError> {
        let op = match gate {
            Gate::Pull => Op::Pull,
            Gate::Push => Op::Push,
            Gate::Deploy => Op::Deploy,
        };
        let mut o = self.run(repository, tag, digest, identity, gate, op).await;
        if o.unavailable {
            return Err(PolicyError(o.reason));
        }
        if o.digest.is_none() && gate == Gate::Deploy {
            // No policy decided: still tell the caller what the tag points at.
            if let Some(t) = tag {
                if let Ok(Some(row)) = self.db.tagged_manifest(repository, t).await {
                    o.digest = Some(row.digest);
                }
            }
        }
        Ok(Verdict {
            allowed: o.allowed,
            warn: o.warn,
            digest: o.digest,
            reason: o.reason,
            policy_version: o.policy_version,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::policy::source::{Pin, RoleSignatures};

    fn sigs() -> RepoSignatures {
        let d1 =
            "sha256:1111111111111111111111111111111111111111111111111111111111111111".to_owned();
        let d2 =
            "sha256:2222222222222222222222222222222222222222222222222222222222222222".to_owned();
        let mut roles = std::collections::BTreeMap::new();
        let role = |name: &str, tags: &[(&str, &String)], keys: &[&str]| RoleSignatures {
            name: name.into(),
            direct: true,
            expires: Some(OffsetDateTime::now_utc() + time::Duration::days(30)),
            signed_by: keys
                .iter()
                .map(|k| ((*k).to_owned(), format!("c{k}")))
                .collect(),
            tags: tags
                .iter()
                .map(|(t, d)| ((*t).to_owned(), (*d).clone()))
                .collect(),
            by_digest: BTreeSet::new(),
        };
        roles.insert(
            "targets/releases".into(),
            role("targets/releases", &[("v1", &d1), ("v2", &d2)], &["ka"]),
        );
        roles.insert(
            "targets/alice".into(),
            role("targets/alice", &[("v1", &d1), ("v2", &d2)], &["ka"]),
        );
        roles.insert(
            "targets/bob".into(),
            role("targets/bob", &[("v1", &d1)], &["kb"]),
        );
        let mut pins = HashMap::new();
        pins.insert(
            "v1".to_owned(),
            Pin {
                digest: d1.clone(),
                role: "targets/releases".into(),
            },
        );
        pins.insert(
            "v2".to_owned(),
            Pin {
                digest: d2.clone(),
                role: "targets/releases".into(),
            },
        );
        let mut pinned_tags = HashMap::new();
        pinned_tags.insert(d1, vec!["v1".to_owned()]);
        pinned_tags.insert(d2, vec!["v2".to_owned()]);
        RepoSignatures {
            source: "test",
            subject: "host/org/app".into(),
            version: 7,
            base_expiry: vec![(
                "targets".into(),
                OffsetDateTime::now_utc() + time::Duration::days(30),
            )],
            roles,
            pins_tags: true,
            pins,
            pinned_tags,
            delegated: BTreeSet::new(),
            warnings: Vec::new(),
        }
    }

    fn dir() -> Directory {
        let mut d = Directory::default();
        d.teams.insert("org/qa".into());
        d.teams.insert("org/security".into());
        d.team_keys
            .insert("org/qa".into(), ["ka".to_owned()].into());
        d.team_keys
            .insert("org/security".into(), ["ckb".to_owned()].into());
        d.owners.insert("ka".into(), "alice".into());
        d
    }

    fn check(policy: &PolicySpec, tag: &str, digest: &str) -> Status {
        let trust = Trust::Present(Arc::new(sigs()));
        let dir = dir();
        let subjects = vec!["host/org/app".to_owned()];
        let ctx = Ctx {
            repository: "org/app",
            policy,
            trust: &trust,
            dir: &dir,
            now: OffsetDateTime::now_utc(),
            subjects: &subjects,
        };
        ctx.tag_status(tag, digest)
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn teams_are_all_required_and_matched_by_canonical_id() {
        let mut p = PolicySpec::new(Mode::Enforced);
        p.signers = vec![SignerSpec::team("qa", 1), SignerSpec::team("security", 1)];
        assert!(matches!(check(&p, "v1", D1), Status::Pass { .. }));
        match check(&p, "v2", D2) {
            Status::Fail { reason } => assert!(
                reason.starts_with(
                    "tag v2 is signed by team qa but the policy also requires team security"
                ),
                "{reason}"
            ),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn served_digest_must_equal_signed_digest() {
        let p = PolicySpec::new(Mode::Enforced);
        match check(&p, "v1", D2) {
            Status::Fail { reason } => assert!(
                reason.contains(&format!("tag v1 points at {D2} but is signed for {D1}")),
                "{reason}"
            ),
            s => panic!("{s:?}"),
        }
        assert!(matches!(check(&p, "v3", D1), Status::Fail { .. }));
    }

    #[test]
    fn role_minimums_count_valid_keys() {
        let mut p = PolicySpec::new(Mode::Enforced);
        p.signers = vec![SignerSpec::role("targets/bob", 1)];
        assert!(matches!(check(&p, "v1", D1), Status::Pass { .. }));
        assert!(matches!(check(&p, "v2", D2), Status::Fail { .. }));
        p.signers = vec![SignerSpec::role("targets/releases", 2)];
        assert!(matches!(check(&p, "v1", D1), Status::Fail { .. }));
    }

    #[test]
    fn decision_cache_coalesces_and_expires() {
        let c = DecisionCache::new(Duration::from_millis(50), 1000);
        let key = CacheKey {
            kind: Kind::Tag,
            repository: "r".into(),
            tag: None,
            digest: "d".into(),
            policy_version: 1,
            trust_version: 1,
        };
        let (a, hit) = c.cell(&key);
        assert!(!hit);
        let (b, _) = c.cell(&key);
        assert!(Arc::ptr_eq(&a, &b));
        std::thread::sleep(Duration::from_millis(60));
        let (d, _) = c.cell(&key);
        assert!(!Arc::ptr_eq(&a, &d));
    }

    #[test]
    fn decision_cache_is_bounded() {
        let c = DecisionCache::new(Duration::from_secs(60), SHARDS * 16);
        for i in 0..10_000 {
            let key = CacheKey {
                kind: Kind::Digest,
                repository: "r".into(),
                tag: None,
                digest: format!("d{i}"),
                policy_version: 1,
                trust_version: 1,
            };
            let _ = c.cell(&key);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= SHARDS * 16, "{total}");
    }
}
