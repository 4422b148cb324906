//! Verification. Only this module builds [`Verified`] values: thresholds over distinct
//! keys (spec §2.5), structural validity (§2.13), expiry, root validation with
//! rotation and trust pinning (§5.3, §9.6), and meta checks against snapshot and
//! timestamp (§2.8-2.10).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use time::OffsetDateTime;

use crate::crypto::PublicKey;
use crate::metadata::{
    HashError, ParseError, RoleKeys, RoleMetadata, Root, Signed, Snapshot, Targets, Timestamp,
};
use crate::names::{Gun, KeyId, RoleName};
use crate::x509;

/// Metadata whose signatures and structure were checked against a trusted parent.
#[derive(Clone, Debug)]
pub struct Verified<T> {
    inner: Signed<T>,
}

impl<T> Verified<T> {
    /// The envelope (bytes and signatures).
    pub fn envelope(&self) -> &Signed<T> {
        &self.inner
    }
    /// Consumes the proof, returning the envelope.
    pub fn into_envelope(self) -> Signed<T> {
        self.inner
    }
}

impl<T: RoleMetadata> Verified<T> {
    /// F, the exact file bytes.
    pub fn file_bytes(&self) -> &[u8] {
        self.inner.file_bytes()
    }
}

impl<T: RoleMetadata> Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.signed()
    }
}

/// Why metadata is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No signatures at all.
    #[error("{role}: data has no signatures")]
    NoSignatures {
        /// Role.
        role: String,
    },
    /// Fewer valid signatures from distinct authorised keys than the threshold.
    #[error("{role} v{version}: valid signatures did not meet threshold ({valid} of {threshold})")]
    Threshold {
        /// Role.
        role: String,
        /// Version of the rejected file.
        version: u64,
        /// Distinct keys with valid signatures.
        valid: usize,
        /// Required.
        threshold: u32,
    },
    /// Expired.
    #[error("{role} v{version} expired at {expires} (now {now})")]
    Expired {
        /// Role.
        role: String,
        /// Version.
        version: u64,
        /// Expiry.
        expires: String,
        /// Checked instant.
        now: String,
    },
    /// Version lower than the trusted one.
    #[error("{role}: version {new} is lower than the trusted version {trusted} (rollback)")]
    Rollback {
        /// Role.
        role: String,
        /// Trusted version.
        trusted: u64,
        /// Offered version.
        new: u64,
    },
    /// Bytes do not match the meta that describes them.
    #[error("{role}: {source} (checked against {parent})")]
    Meta {
        /// Role whose file was checked.
        role: String,
        /// Role whose meta describes it.
        parent: String,
        /// What differs.
        source: HashError,
    },
    /// Invalid structure.
    #[error("{role}: invalid structure: {reason}")]
    Structure {
        /// Role.
        role: String,
        /// What is wrong.
        reason: String,
    },
    /// No root key is a valid leaf certificate for the GUN.
    #[error(
        "could not validate the path to a trusted root: unable to retrieve valid leaf certificates ({0})"
    )]
    NoValidRootCerts(String),
    /// The new root is not signed by the previously trusted root's threshold.
    #[error(
        "root rotation failed: failed to validate data with current trusted certificates ({0})"
    )]
    RootRotation(String),
    /// The root is not admitted by the trust pinning configuration.
    #[error("could not validate the path to a trusted root: {0}")]
    TrustPinning(String),
    /// A file did not parse.
    #[error("{role}: {source}")]
    Parse {
        /// Role.
        role: String,
        /// Parse failure.
        source: ParseError,
    },
    /// A role that cannot exist here.
    #[error("{0}: role is not delegated")]
    UnknownRole(String),
    /// More signature entries than the keys that may sign could produce.
    #[error(
        "{role}: {count} signature entries, more than the {limit} allowed for its {keys} key(s)"
    )]
    TooManySignatures {
        /// Role.
        role: String,
        /// Entries in the file.
        count: usize,
        /// Most accepted.
        limit: usize,
        /// Distinct key IDs that may sign.
        keys: usize,
    },
}

/// Signature entries accepted per key that may sign a file.
pub const SIGNATURES_PER_KEY: usize = 4;
/// Signature entries accepted on any file on top of [`SIGNATURES_PER_KEY`] per key.
pub const SIGNATURES_SLACK: usize = 16;

/// The most signature entries a file may carry when `keys` distinct key IDs may sign
/// it. Go signs with each key once, so legitimate files stay far below; every entry
/// beyond could cost a signature verification.
pub fn max_signatures(keys: usize) -> usize {
    keys.saturating_mul(SIGNATURES_PER_KEY)
        .saturating_add(SIGNATURES_SLACK)
}

/// Refuses files with more than [`max_signatures`] entries, before any crypto.
fn check_signature_count<T: RoleMetadata>(
    signed: &Signed<T>,
    role: &str,
    keys: usize,
) -> Result<(), VerifyError> {
    let count = signed.signatures().len();
    let limit = max_signatures(keys);
    if count > limit {
        return Err(VerifyError::TooManySignatures {
            role: role.to_owned(),
            count,
            limit,
            keys,
        });
    }
    Ok(())
}

/// Counts distinct authorised keys with a valid signature on `signed` (spec §2.5): the
/// signature key ID must be listed for the role, present in `keys`, equal to the key's
/// computed ID, and verify over V. Keys count once even when listed under two IDs (a
/// certificate and its plain form, or two DER encodings), compared by their parsed
/// [`KeyIdentity`](crate::crypto::KeyIdentity).
///
/// Work is bounded per key, not per entry: each key's ID and identity are computed once,
/// and entries of a key already counted are skipped without verification. Callers bound
/// the number of entries ([`verify_role`] and [`verify_root`] refuse more than
/// [`max_signatures`]).
pub fn count_valid<T: RoleMetadata>(
    signed: &Signed<T>,
    keys: &BTreeMap<KeyId, PublicKey>,
    keyids: &[KeyId],
) -> usize {
    let allowed: BTreeSet<&KeyId> = keyids.iter().collect();
    // Per key ID: its parsed identity, or None when the key cannot count.
    let mut identities: BTreeMap<&KeyId, Option<crate::crypto::KeyIdentity>> = BTreeMap::new();
    let mut counted: BTreeSet<&KeyId> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    for sig in signed.signatures() {
        if !allowed.contains(&sig.keyid) || counted.contains(&sig.keyid) {
            continue;
        }
        let Some(key) = keys.get(&sig.keyid) else {
            continue;
        };
        let identity = identities.entry(&sig.keyid).or_insert_with(|| {
            (key.key_id() == sig.keyid)
                .then(|| key.identity().ok())
                .flatten()
        });
        let Some(identity) = identity else {
            continue;
        };
        if seen.contains(identity) {
            counted.insert(&sig.keyid);
            continue;
        }
        if key
            .verify(&sig.method, signed.verify_bytes(), &sig.sig.0)
            .is_ok()
        {
            seen.insert(identity.clone());
            counted.insert(&sig.keyid);
        }
    }
    seen.len()
}

/// The distinct key IDs of a role, in listed order.
fn distinct(keyids: &[KeyId]) -> Vec<KeyId> {
    let mut seen = BTreeSet::new();
    keyids.iter().filter(|k| seen.insert(*k)).cloned().collect()
}

fn check_threshold<T: RoleMetadata>(
    signed: &Signed<T>,
    role: &str,
    keys: &BTreeMap<KeyId, PublicKey>,
    auth: &RoleKeys,
) -> Result<(), VerifyError> {
    if auth.threshold < 1 {
        return Err(VerifyError::Structure {
            role: role.to_owned(),
            reason: "threshold below 1".into(),
        });
    }
    if signed.signatures().is_empty() {
        return Err(VerifyError::NoSignatures {
            role: role.to_owned(),
        });
    }
    let keyids = distinct(&auth.keyids);
    check_signature_count(signed, role, keyids.len())?;
    let valid = count_valid(signed, keys, &keyids);
    if valid < auth.threshold as usize {
        return Err(VerifyError::Threshold {
            role: role.to_owned(),
            version: signed.signed().version(),
            valid,
            threshold: auth.threshold,
        });
    }
    Ok(())
}

/// Structural validity of a role object (spec §2.13).
pub trait Structure {
    /// Checks the object as role `role`.
    fn check_structure(&self, role: &RoleName) -> Result<(), String>;
}

impl Structure for Root {
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        for base in ["root", "targets", "snapshot", "timestamp"] {
            let r = self
                .roles
                .get(base)
                .ok_or_else(|| format!("missing role {base}"))?;
            if r.threshold < 1 {
                return Err(format!("role {base} has threshold below 1"));
            }
            if let Some(k) = r.keyids.iter().find(|k| !self.keys.contains_key(*k)) {
                return Err(format!("role {base} lists unknown key {k}"));
            }
        }
        Ok(())
    }
}

impl Structure for Targets {
    fn check_structure(&self, role: &RoleName) -> Result<(), String> {
        if !role.is_targets_like() {
            return Err(format!("{role} is not a targets role"));
        }
        let mut names = BTreeSet::new();
        for d in &self.delegations.roles {
            // Go refuses a second load of a role ("has already been loaded"); a parent
            // listing a child twice would otherwise double the walk at every level.
            if !names.insert(&d.name) {
                return Err(format!("delegation {} is listed more than once", d.name));
            }
            if d.name.parent().as_ref() != Some(role) {
                return Err(format!(
                    "delegation {} is not a direct child of {role}",
                    d.name
                ));
            }
            if d.threshold < 1 {
                return Err(format!("delegation {} has threshold below 1", d.name));
            }
            if let Some(k) = d
                .keyids
                .iter()
                .find(|k| !self.delegations.keys.contains_key(*k))
            {
                return Err(format!("delegation {} lists unknown key {k}", d.name));
            }
        }
        Ok(())
    }
}

impl Structure for Snapshot {
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        for r in ["root", "targets"] {
            let m = self.meta.get(r).ok_or_else(|| format!("no meta for {r}"))?;
            if m.sha256().is_none() {
                return Err(format!("meta for {r} has no valid sha256"));
            }
        }
        if let Some((r, _)) = self.meta.iter().find(|(_, m)| !m.hash_sizes_ok()) {
            return Err(format!("meta for {r} has a hash of the wrong size"));
        }
        Ok(())
    }
}

impl Structure for Timestamp {
    fn check_structure(&self, _role: &RoleName) -> Result<(), String> {
        let m = self.meta.get("snapshot").ok_or("no meta for snapshot")?;
        if m.sha256().is_none() || !m.hash_sizes_ok() {
            return Err("meta for snapshot has no valid sha256".into());
        }
        Ok(())
    }
}

/// Verifies signatures (threshold of distinct authorised keys) and structure of a
/// non-root role. Expiry is checked separately by [`check_expiry`].
pub fn verify_role<T: RoleMetadata + Structure>(
    signed: Signed<T>,
    role: &RoleName,
    keys: &BTreeMap<KeyId, PublicKey>,
    auth: &RoleKeys,
) -> Result<Verified<T>, VerifyError> {
    check_threshold(&signed, role.as_str(), keys, auth)?;
    check_structure(&signed, role)?;
    Ok(Verified { inner: signed })
}

fn check_structure<T: RoleMetadata + Structure>(
    signed: &Signed<T>,
    role: &RoleName,
) -> Result<(), VerifyError> {
    if signed.signed().version() < 1 {
        return Err(VerifyError::Structure {
            role: role.to_string(),
            reason: "version below 1".into(),
        });
    }
    signed
        .signed()
        .check_structure(role)
        .map_err(|reason| VerifyError::Structure {
            role: role.to_string(),
            reason,
        })
}

/// Fails if `meta` has expired at `now` (`expires < now`).
pub fn check_expiry<T: RoleMetadata>(
    meta: &T,
    role: &RoleName,
    now: OffsetDateTime,
) -> Result<(), VerifyError> {
    if meta.expires().is_expired(now) {
        return Err(VerifyError::Expired {
            role: role.to_string(),
            version: meta.version(),
            expires: meta.expires().to_string(),
            now: crate::expires::Expires::new(now)
                .map(|e| e.to_string())
                .unwrap_or_default(),
        });
    }
    Ok(())
}

/// Fails if `new` is older than `trusted`.
pub fn check_rollback(role: &RoleName, trusted: u64, new: u64) -> Result<(), VerifyError> {
    if new < trusted {
        return Err(VerifyError::Rollback {
            role: role.to_string(),
            trusted,
            new,
        });
    }
    Ok(())
}

/// Checks that `bytes` (the file of `role`) match `meta[role]` in `parent`.
pub fn check_meta(
    meta: &BTreeMap<String, crate::metadata::FileMeta>,
    parent: &RoleName,
    role: &str,
    bytes: &[u8],
) -> Result<(), VerifyError> {
    let m = meta.get(role).ok_or_else(|| VerifyError::Meta {
        role: role.to_owned(),
        parent: parent.to_string(),
        source: HashError::NoKnownHash,
    })?;
    m.check(bytes).map_err(|source| VerifyError::Meta {
        role: role.to_owned(),
        parent: parent.to_string(),
        source,
    })
}

/// Trust pinning configuration (spec §9.6). CA bundles are passed as PEM bytes: this
/// crate does no IO.
#[derive(Clone, Debug, Default)]
pub struct TrustPinning {
    /// GUN (or `prefix*`) → allowed TUF key IDs of certificate-form root keys.
    pub certs: BTreeMap<String, Vec<KeyId>>,
    /// GUN prefix → PEM bundle of CA certificates.
    pub ca: BTreeMap<String, Vec<u8>>,
    /// Refuse trust on first use when nothing else applies.
    pub disable_tofu: bool,
}

impl TrustPinning {
    /// Filters the valid root certificate key IDs by the pinning rule for `gun`.
    fn filter(
        &self,
        gun: &Gun,
        candidates: Vec<KeyId>,
        keys: &BTreeMap<KeyId, PublicKey>,
        now: OffsetDateTime,
    ) -> Result<Vec<KeyId>, VerifyError> {
        let g = gun.as_str();
        let pinned_ids = self.certs.get(g).or_else(|| {
            self.certs
                .iter()
                .filter(|(k, _)| k.strip_suffix('*').is_some_and(|p| g.starts_with(p)))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, v)| v)
        });
        let kept: Vec<KeyId> = if let Some(ids) = pinned_ids {
            candidates
                .into_iter()
                .filter(|id| ids.contains(id))
                .collect()
        } else if let Some((_, ca)) = self
            .ca
            .iter()
            .filter(|(prefix, _)| g.starts_with(prefix.as_str()))
            .max_by_key(|(k, _)| k.len())
        {
            candidates
                .into_iter()
                .filter(|id| {
                    keys.get(id)
                        .is_some_and(|k| x509::chains_to_ca(k, ca, now).is_ok())
                })
                .collect()
        } else if self.disable_tofu {
            return Err(VerifyError::TrustPinning(
                "invalid trust pinning specified".into(),
            ));
        } else {
            candidates
        };
        if kept.is_empty() {
            return Err(VerifyError::TrustPinning(
                "unable to match any certificates to trust_pinning config".into(),
            ));
        }
        Ok(kept)
    }
}

/// Validates a root (spec §5.3). With `trusted`, the new root must carry valid
/// signatures from the trusted root's threshold of its GUN-matching certificates and
/// pinning is not consulted; without it, `pinning` filters the new root's certificates
/// (an empty config is trust on first use). In both cases the new root must meet its own
/// threshold with valid, unexpired leaf certificates for `gun`.
///
/// Metadata expiry and version floors are separate checks ([`check_expiry`],
/// [`check_rollback`]) because cached and intermediate roots may be expired.
pub fn verify_root(
    new: Signed<Root>,
    gun: &Gun,
    trusted: Option<&Verified<Root>>,
    pinning: &TrustPinning,
    now: OffsetDateTime,
) -> Result<Verified<Root>, VerifyError> {
    let role = RoleName::root();
    check_structure(&new, &role)?;
    let n = new.signed();
    let n_auth = n.role("root").ok_or_else(|| VerifyError::Structure {
        role: "root".into(),
        reason: "no root role".into(),
    })?;
    let n_ids = distinct(&n_auth.keyids);
    let prev_auth = match trusted {
        Some(prev) => Some(prev.role("root").ok_or_else(|| VerifyError::Structure {
            role: "root".into(),
            reason: "trusted root has no root role".into(),
        })?),
        None => None,
    };
    let prev_ids = prev_auth.map(|a| distinct(&a.keyids)).unwrap_or_default();
    // Bounded work first: the entries both signer sets could produce, before any crypto.
    check_signature_count(&new, "root", n_ids.len() + prev_ids.len())?;
    // Step 2: valid leaf certificates among the new root role's keys.
    let mut reasons = Vec::new();
    let mut valid: Vec<KeyId> = Vec::new();
    for id in &n_ids {
        if let Some(k) = n.keys.get(id) {
            match x509::check_root_leaf(k, gun, Some(now)) {
                Ok(()) => valid.push(id.clone()),
                Err(e) => reasons.push(format!("{}: {e}", id.short())),
            }
        }
    }
    if valid.is_empty() {
        return Err(VerifyError::NoValidRootCerts(reasons.join("; ")));
    }
    if let (Some(prev), Some(p_auth)) = (trusted, prev_auth) {
        // Step 3: signed by the previous root's threshold (certificate expiry not checked).
        let prev_ids: Vec<KeyId> = prev_ids
            .iter()
            .filter(|id| {
                prev.keys
                    .get(*id)
                    .is_some_and(|k| x509::check_root_leaf(k, gun, None).is_ok())
            })
            .cloned()
            .collect();
        let got = count_valid(&new, &prev.keys, &prev_ids);
        if got < p_auth.threshold as usize {
            return Err(VerifyError::RootRotation(format!(
                "{got} of {} signatures from the trusted root v{} keys",
                p_auth.threshold, prev.version
            )));
        }
    } else {
        // Step 4: trust pinning when nothing is trusted yet.
        valid = pinning.filter(gun, valid, &n.keys, now)?;
    }
    // Step 5: the new root's own threshold with the remaining certificates.
    let got = count_valid(&new, &n.keys, &valid);
    if got < n_auth.threshold as usize {
        return Err(VerifyError::Threshold {
            role: "root".into(),
            version: n.version,
            valid: got,
            threshold: n_auth.threshold,
        });
    }
    Ok(Verified { inner: new })
}

/// Keys and authorisation of a role as the trusted root states them.
pub fn root_role_auth<'a>(
    root: &'a Verified<Root>,
    role: &RoleName,
) -> Result<&'a RoleKeys, VerifyError> {
    root.role(role.as_str())
        .ok_or_else(|| VerifyError::UnknownRole(role.to_string()))
}
