//! Password hashing (argon2id, PHC strings) and the guarded verification path: at most
//! `max_concurrent` verifications run at once (each costs tens of milliseconds of CPU),
//! at most `max_queued` wait for a slot (the rest are refused as busy), unknown users
//! cost the same work as known ones, and successful Basic credentials are remembered
//! for a short time, keyed by a keyed hash of the credentials, so Docker's many token
//! requests after one login cost a hash lookup each.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, SaltString};
use ring::rand::SecureRandom as _;
use sha2::Digest as _;
use zeroize::Zeroizing;

/// The longest password accepted (longer ones fail without hashing).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Entries kept in the credentials cache.
const CACHE_CAPACITY: usize = 4096;

/// Hashing failed (no randomness, or argon2 refused its input).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// An argon2id PHC hash of `password` with a random salt (argon2 default parameters).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(HashError(format!(
            "password longer than {MAX_PASSWORD_LEN} bytes"
        )));
    }
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| HashError("no randomness".into()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    // Computed in a buffer of our own (see `MAPPED_BLOCKS`), then written as the PHC
    // string `Argon2::default().hash_password` would give.
    let params = argon2::Params::default();
    let ctx = Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    );
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut raw_salt)
        .map_err(|e| HashError(e.to_string()))?;
    let blocks = params.block_count();
    let mut memory: Vec<argon2::Block> = Vec::with_capacity(MAPPED_BLOCKS.max(blocks));
    memory.resize(blocks, argon2::Block::default());
    let mut out = Zeroizing::new(vec![
        0u8;
        params
            .output_len()
            .unwrap_or(argon2::Params::DEFAULT_OUTPUT_LEN)
    ]);
    ctx.hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, &mut memory[..])
        .map_err(|e| HashError(e.to_string()))?;
    let output = argon2::password_hash::Output::new(&out).map_err(|e| HashError(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: argon2::Algorithm::Argon2id.ident(),
        version: Some(argon2::Version::V0x13.into()),
        params: (&params)
            .try_into()
            .map_err(|e: argon2::password_hash::Error| HashError(e.to_string()))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Blocks reserved for one verification: above glibc's 32 MiB ceiling for its dynamic
/// mmap threshold, so the buffer is always its own mapping, returned to the system when
/// the verification ends (argon2's 19 MiB would otherwise stay in an allocator arena per
/// thread that ever verified, tens of MB of RSS for good). Only the blocks argon2 uses
/// are ever touched.
const MAPPED_BLOCKS: usize = (33 << 20) / argon2::Block::SIZE;

/// Most memory a stored hash may ask for (64 MiB): a hostile hash row cannot make a
/// verification allocate without bound.
const MAX_HASH_BLOCKS: u32 = 64 << 10;

/// Verifies a password against a PHC string (false on any malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_HASH_BLOCKS {
        return false;
    }
    let (Ok(algorithm), Some(salt), Some(expected)) = (
        argon2::Algorithm::try_from(parsed.algorithm),
        parsed.salt,
        parsed.hash,
    ) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    let ctx = Argon2::new(algorithm, version, params);
    let mut memory: Vec<argon2::Block> = Vec::with_capacity(MAPPED_BLOCKS.max(blocks));
    memory.resize(blocks, argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    let ok = ctx
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .is_ok()
        && constant_time_eq(&out, expected.as_bytes());
    zeroize::Zeroize::zeroize(&mut out);
    ok
}

/// Equality without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Too many verifications are waiting: answer 429 and let the client retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password verifications in progress")]
pub struct Busy;

/// Counters of the verification path (for metrics and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifyStats {
    /// Argon2 verifications run.
    pub verifications: usize,
    /// Most verifications that ever ran at once.
    pub peak_concurrent: usize,
    /// Requests refused as busy.
    pub refused_busy: usize,
    /// Cache hits.
    pub cache_hits: usize,
}

/// What a cached success remembers.
#[derive(Clone, Debug)]
pub struct CachedLogin {
    /// User id.
    pub user_id: i64,
    expires: Instant,
}

/// The guarded verifier.
pub struct Verifier {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    max_concurrent: usize,
    max_queued: usize,
    waiting: AtomicUsize,
    running: std::sync::Arc<AtomicUsize>,
    peak: AtomicUsize,
    verifications: AtomicUsize,
    refused: AtomicUsize,
    hits: AtomicUsize,
    /// Hash of a random password: unknown users are verified against it.
    dummy_hash: String,
    cache_key: Zeroizing<[u8; 32]>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], CachedLogin>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// `max_concurrent` argon2 verifications at once, `max_queued` waiting, successes
    /// cached for `cache_ttl` (zero: no cache).
    pub fn new(
        max_concurrent: usize,
        max_queued: usize,
        cache_ttl: Duration,
    ) -> Result<Verifier, HashError> {
        let rng = ring::rand::SystemRandom::new();
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill(key.as_mut())
            .map_err(|_| HashError("no randomness".into()))?;
        let mut pw = [0u8; 24];
        rng.fill(&mut pw)
            .map_err(|_| HashError("no randomness".into()))?;
        Ok(Verifier {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
            max_queued,
            waiting: AtomicUsize::new(0),
            running: std::sync::Arc::default(),
            peak: AtomicUsize::new(0),
            verifications: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            hits: AtomicUsize::new(0),
            dummy_hash: hash_password(&hex::encode(pw))?,
            cache_key: key,
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> VerifyStats {
        VerifyStats {
            verifications: self.verifications.load(Ordering::Relaxed),
            peak_concurrent: self.peak.load(Ordering::Relaxed),
            refused_busy: self.refused.load(Ordering::Relaxed),
            cache_hits: self.hits.load(Ordering::Relaxed),
        }
    }

    fn cache_id(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.cache_key.as_ref());
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// A cached success for these credentials.
    pub fn cached(&self, user: &str, password: &str) -> Option<i64> {
        if self.cache_ttl.is_zero() {
            return None;
        }
        let id = self.cache_id(user, password);
        let now = Instant::now();
        let cache = self.cache.lock().ok()?;
        let hit = cache
            .get(&id)
            .filter(|c| c.expires > now)
            .map(|c| c.user_id);
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Remembers a success.
    pub fn remember(&self, user: &str, password: &str, user_id: i64) {
        if self.cache_ttl.is_zero() {
            return;
        }
        let id = self.cache_id(user, password);
        let now = Instant::now();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                cache.retain(|_, c| c.expires > now);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(
                id,
                CachedLogin {
                    user_id,
                    expires: now + self.cache_ttl,
                },
            );
        }
    }

    /// Forgets every cached success (a password, an admin flag or a user changed).
    pub fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Verifies `password` against `hash` (`None`: an unknown user, verified against
    /// a dummy hash so that it costs the same), under the concurrency limit.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, Busy> {
        if password.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        // `waiting` counts callers queued or running; beyond the slots plus the queue,
        // refuse at once rather than pile up. The guards undo the counts even when the
        // request is dropped while waiting.
        let queued = Counted::enter(&self.waiting);
        if queued.before >= self.max_queued + self.max_concurrent {
            self.refused.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("registry_auth_password_busy_total").increment(1);
            return Err(Busy);
        }
        let permit = tokio::time::timeout(
            Duration::from_secs(10),
            std::sync::Arc::clone(&self.slots).acquire_owned(),
        )
        .await;
        let Ok(Ok(permit)) = permit else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("registry_auth_password_verifications_total").increment(1);
        let known = hash.is_some();
        let hash = hash.unwrap_or(&self.dummy_hash).to_owned();
        let password = Zeroizing::new(password.to_owned());
        let running = std::sync::Arc::clone(&self.running);
        let now_running = running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now_running, Ordering::SeqCst);
        // The permit and the running count move into the blocking task: a request
        // dropped mid-verification still holds its slot until argon2 is done.
        let ok = tokio::task::spawn_blocking(move || {
            let ok = verify_password(&hash, &password);
            running.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        drop(queued);
        Ok(ok && known)
    }
}

/// Increments a counter for as long as it lives.
struct Counted<'a> {
    counter: &'a AtomicUsize,
    before: usize,
}

impl<'a> Counted<'a> {
    fn enter(counter: &'a AtomicUsize) -> Counted<'a> {
        let before = counter.fetch_add(1, Ordering::SeqCst);
        Counted { counter, before }
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3creT"));
        assert!(!verify_password("not a hash", "x"));
    }

    #[test]
    fn hashes_are_the_argon2_crates_own_phc_strings() {
        use argon2::password_hash::PasswordVerifier as _;
        let h = hash_password("pw-1").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default().verify_password(b"pw-1", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"pw-2", &parsed).is_err());
        // And hashes made by the crate verify here.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = argon2::password_hash::PasswordHasher::hash_password(
            &Argon2::default(),
            b"pw-3",
            &salt,
        )
        .unwrap()
        .to_string();
        assert!(verify_password(&theirs, "pw-3") && !verify_password(&theirs, "pw-4"));
    }

    #[test]
    fn a_stored_hash_asking_for_unbounded_memory_is_refused_unrun() {
        // m = 4 GiB: verifying would allocate it; the cap refuses before any work.
        let h = hash_password("s3cret").unwrap();
        let hostile = h.replacen("m=19456", "m=4194304", 1);
        assert_ne!(h, hostile);
        assert!(!verify_password(&hostile, "s3cret"));
        assert!(hash_password(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }

    #[tokio::test]
    async fn unknown_users_never_verify_and_cache_is_keyed_by_both() {
        let v = Verifier::new(2, 4, Duration::from_secs(30)).unwrap();
        let h = hash_password("pw").unwrap();
        assert_eq!(v.verify(None, "pw").await, Ok(false));
        assert_eq!(v.verify(Some(&h), "pw").await, Ok(true));
        v.remember("alice", "pw", 7);
        assert_eq!(v.cached("alice", "pw"), Some(7));
        assert_eq!(v.cached("alice", "pw2"), None);
        assert_eq!(v.cached("alicep", "w"), None);
        v.forget_all();
        assert_eq!(v.cached("alice", "pw"), None);
    }
}
