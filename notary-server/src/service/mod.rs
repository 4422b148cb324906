//! The metadata service: current-state resolution through timestamp → snapshot → role
//! (spec §5.7) with an in-process cache ([`current`]), update validation and storage
//! (§5.2, [`update`]), server signing of snapshot and timestamp (§5.4-5.6, [`sign`]), and
//! the verified read API other crates use ([`Service::trusted`]).

mod current;
mod error;
mod sign;
mod trusted;
mod update;

use std::collections::HashMap;
use std::sync::Arc;

use notary_core::repo::Expiries;
use time::OffsetDateTime;
use tokio::sync::{Mutex, RwLock};

use self::current::Current;
pub use self::error::{ReadError, UpdateError};
use crate::storage::{Store, StoreError, StoredFile};
use crate::trust::TrustService;

/// What one update may carry and take: enforced by the API while reading the body
/// (before anything is parsed) and around the update task.
#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    /// The whole request body.
    pub max_body_bytes: usize,
    /// Each metadata file.
    pub max_role_bytes: usize,
    /// Metadata files per update.
    pub max_parts: usize,
    /// Time an update may take before it is abandoned (nothing is stored).
    pub update_timeout: std::time::Duration,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_body_bytes: 16 << 20,
            max_role_bytes: 5 << 20,
            max_parts: 100,
            update_timeout: std::time::Duration::from_secs(30),
        }
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
}
