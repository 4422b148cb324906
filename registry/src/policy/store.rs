//! Policies in the database (migration `0005_policy.sql`) and their in-memory copy.
//!
//! Every change runs in one transaction that bumps the global version
//! (`policy_state`), writes the policy and appends a history row with who changed what.
//! Readers use [`PolicyStore::snapshot`], an `Arc` of every policy at one version: a
//! change made through this store replaces it at once; changes made elsewhere (another
//! replica, the CLI on the data directory) are picked up by [`PolicyStore::follow`],
//! which polls the version (one indexed single-row read) every interval.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::Row as _;

use super::model::{PolicySpec, Scope};
use crate::meta::{Db, now};
use crate::with_pool;

/// `kind, name, body, version, updated_by, updated_at`.
type PolicyRow = (String, String, String, i64, String, i64);
/// `version, action, body, previous, changed_by, changed_at`.
type HistoryRow = (i64, String, Option<String>, Option<String>, String, i64);

/// Most history rows one call returns.
pub const MAX_HISTORY: i64 = 1000;

/// A policy as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPolicy {
    /// What it is attached to.
    pub scope: Scope,
    /// The policy.
    pub spec: PolicySpec,
    /// The global version its last change produced.
    pub version: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// When (Unix seconds).
    pub updated_at: i64,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The version it produced.
    pub version: i64,
    /// Scope.
    pub scope: Scope,
    /// `set` or `delete`.
    pub action: String,
    /// The policy after (none for a deletion).
    pub policy: Option<PolicySpec>,
    /// The policy before (none when there was none).
    pub previous: Option<PolicySpec>,
    /// Who.
    pub changed_by: String,
    /// When (Unix seconds).
    pub changed_at: i64,
}

/// Every policy at one version.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// The global version (0: never changed).
    pub version: i64,
    global: Option<Arc<StoredPolicy>>,
    namespaces: HashMap<String, Arc<StoredPolicy>>,
    repositories: HashMap<String, Arc<StoredPolicy>>,
}

impl PolicySet {
    /// The policy that applies to `repository`: its own, else its namespace's (first
    /// path component), else the global one.
    pub fn effective(&self, repository: &str) -> Option<&Arc<StoredPolicy>> {
        if let Some(p) = self.repositories.get(repository) {
            return Some(p);
        }
        if let Some((ns, _)) = repository.split_once('/') {
            if let Some(p) = self.namespaces.get(ns) {
                return Some(p);
            }
        }
        self.global.as_ref()
    }

    /// The policy attached to exactly `scope`.
    pub fn get(&self, scope: &Scope) -> Option<&Arc<StoredPolicy>> {
        match scope {
            Scope::Global => self.global.as_ref(),
            Scope::Namespace(n) => self.namespaces.get(n),
            Scope::Repository(r) => self.repositories.get(r),
        }
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.global.iter().count() + self.namespaces.len() + self.repositories.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    /// Nothing attached to that scope.
    #[error("{0} does not exist")]
    NotFound(String),
    /// A stored policy does not parse (written by a newer version?).
    #[error("stored policy of {scope} is unreadable: {reason}")]
    Corrupt {
        /// Scope.
        scope: String,
        /// Parse error.
        reason: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn parse_body(scope: &Scope, body: &str) -> Result<PolicySpec, PolicyStoreError> {
    serde_json::from_str(body).map_err(|e| PolicyStoreError::Corrupt {
        scope: scope.describe(),
        reason: e.to_string(),
    })
}

/// The policies of one registry database.
#[derive(Debug)]
pub struct PolicyStore {
    db: Db,
    current: RwLock<Arc<PolicySet>>,
    reload: tokio::sync::Mutex<()>,
}

impl PolicyStore {
    /// Loads every policy.
    pub async fn open(db: Db) -> Result<Arc<PolicyStore>, PolicyStoreError> {
        let set = Self::load(&db).await?;
        Ok(Arc::new(PolicyStore {
            db,
            current: RwLock::new(Arc::new(set)),
            reload: tokio::sync::Mutex::new(()),
        }))
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Every policy, as last loaded.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The version stored in the database.
    pub async fn stored_version(&self) -> Result<i64, sqlx::Error> {
        with_pool!(self.db, pool => {
            Ok(sqlx::query("SELECT version FROM policy_state WHERE id = 1").fetch_one(pool).await?.get::<i64, _>(0))
        })
    }

    /// Reloads when the stored version differs from the one in memory. Returns whether
    /// it did.
    pub async fn refresh(&self) -> Result<bool, PolicyStoreError> {
        let stored = self.stored_version().await?;
        if stored == self.snapshot().version {
            return Ok(false);
        }
        let _g = self.reload.lock().await;
        if stored == self.snapshot().version {
            return Ok(false);
        }
        let set = Self::load(&self.db).await?;
        let version = set.version;
        let mut slot = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Never go back to an older version (a slow reload racing a newer one).
        if version >= slot.version {
            *slot = Arc::new(set);
        }
        drop(slot);
        tracing::info!(version, "policies reloaded");
        metrics::counter!("registry_policy_reloads_total").increment(1);
        Ok(true)
    }

    /// Polls the stored version every `every` and reloads on change, for as long as the
    /// store lives.
    pub fn follow(self: &Arc<Self>, every: Duration) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                if let Err(e) = store.refresh().await {
                    tracing::warn!(error = %e, "policy version poll failed");
                }
            }
        });
    }

    async fn load(db: &Db) -> Result<PolicySet, PolicyStoreError> {
        // Version and rows in one transaction, so the set is consistent with its version.
        let (version, rows): (i64, Vec<PolicyRow>) = with_pool!(db, pool => {
            let mut tx = pool.begin().await?;
            let v: i64 = sqlx::query("SELECT version FROM policy_state WHERE id = 1").fetch_one(&mut *tx).await?.get(0);
            let rows = sqlx::query("SELECT kind, name, body, version, updated_by, updated_at FROM policies")
                .fetch_all(&mut *tx).await?
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
                .collect();
            tx.commit().await?;
            (v, rows)
        });
        let mut set = PolicySet {
            version,
            ..PolicySet::default()
        };
        for (kind, name, body, v, by, at) in rows {
            let Some(scope) = Scope::from_columns(&kind, &name) else {
                tracing::warn!(kind = %kind, "policy row of an unknown kind ignored");
                continue;
            };
            let spec = match parse_body(&scope, &body) {
                Ok(s) => s,
                Err(e) => {
                    // An unreadable policy must not silently disable enforcement: keep
                    // it as an enforced policy that nothing satisfies.
                    tracing::error!(error = %e, "unreadable policy: treated as enforced with an impossible requirement");
                    let mut s = PolicySpec::new(super::model::Mode::Enforced);
                    s.signers.push(super::model::SignerSpec::role(
                        "targets/unreadable-policy",
                        super::model::MAX_MIN_SIGNATURES,
                    ));
                    s
                }
            };
            let p = Arc::new(StoredPolicy {
                scope: scope.clone(),
                spec,
                version: v,
                updated_by: by,
                updated_at: at,
            });
            match scope {
                Scope::Global => set.global = Some(p),
                Scope::Namespace(n) => {
                    set.namespaces.insert(n, p);
                }
                Scope::Repository(r) => {
                    set.repositories.insert(r, p);
                }
            }
        }
        Ok(set)
    }

    /// The stored policy of `scope`, read from the database.
    pub async fn get(&self, scope: &Scope) -> Result<Option<StoredPolicy>, PolicyStoreError> {
        let row: Option<(String, i64, String, i64)> = with_pool!(self.db, pool => {
            sqlx::query("SELECT body, version, updated_by, updated_at FROM policies WHERE kind = $1 AND name = $2")
                .bind(scope.kind()).bind(scope.name()).fetch_optional(pool).await?
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        });
        match row {
            None => Ok(None),
            Some((body, version, updated_by, updated_at)) => Ok(Some(StoredPolicy {
                spec: parse_body(scope, &body)?,
                scope: scope.clone(),
                version,
                updated_by,
                updated_at,
            })),
        }
    }

    /// Attaches `spec` to `scope` (replacing any), as `by`. Returns the stored policy
    /// (with the new global version). The caller validated `spec`.
    pub async fn set(
        &self,
        scope: &Scope,
        spec: &PolicySpec,
        by: &str,
    ) -> Result<StoredPolicy, PolicyStoreError> {
        let body = serde_json::to_string(spec).map_err(|e| PolicyStoreError::Corrupt {
            scope: scope.describe(),
            reason: e.to_string(),
        })?;
        let at = now();
        let version = self.change(scope, Some(&body), by, at).await?;
        tracing::info!(scope = %scope.describe(), version, by = %by, mode = spec.mode.as_str(), "policy set");
        self.after_change().await;
        Ok(StoredPolicy {
            scope: scope.clone(),
            spec: spec.clone(),
            version,
            updated_by: by.to_owned(),
            updated_at: at,
        })
    }

    /// Detaches the policy of `scope`. Returns the new global version.
    pub async fn delete(&self, scope: &Scope, by: &str) -> Result<i64, PolicyStoreError> {
        let version = self.change(scope, None, by, now()).await?;
        tracing::info!(scope = %scope.describe(), version, by = %by, "policy deleted");
        self.after_change().await;
        Ok(version)
    }

    async fn after_change(&self) {
        metrics::counter!("registry_policy_changes_total").increment(1);
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "reloading policies after a change");
        }
    }

    /// One change in one transaction: version bump, row, history.
    async fn change(
        &self,
        scope: &Scope,
        body: Option<&str>,
        by: &str,
        at: i64,
    ) -> Result<i64, PolicyStoreError> {
        let _w = self.db.write().await;
        with_pool!(self.db, pool => {
            let mut tx = pool.begin().await?;
            // The row lock on policy_state serialises changes across replicas.
            let version: i64 = sqlx::query("UPDATE policy_state SET version = version + 1 WHERE id = 1 RETURNING version")
                .fetch_one(&mut *tx).await?.get(0);
            let previous: Option<String> = sqlx::query("SELECT body FROM policies WHERE kind = $1 AND name = $2")
                .bind(scope.kind()).bind(scope.name()).fetch_optional(&mut *tx).await?.map(|r| r.get(0));
            match body {
                Some(b) => {
                    sqlx::query("INSERT INTO policies (kind, name, body, version, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, version = excluded.version, updated_by = excluded.updated_by, updated_at = excluded.updated_at")
                        .bind(scope.kind()).bind(scope.name()).bind(b).bind(version).bind(by).bind(at)
                        .execute(&mut *tx).await?;
                }
                None => {
                    if previous.is_none() {
                        return Err(PolicyStoreError::NotFound(scope.describe()));
                    }
                    sqlx::query("DELETE FROM policies WHERE kind = $1 AND name = $2")
                        .bind(scope.kind()).bind(scope.name()).execute(&mut *tx).await?;
                }
            }
            sqlx::query("INSERT INTO policy_history (version, kind, name, action, body, previous, changed_by, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(version).bind(scope.kind()).bind(scope.name())
                .bind(if body.is_some() { "set" } else { "delete" })
                .bind(body).bind(previous.as_deref()).bind(by).bind(at)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(version)
        })
    }

    /// The changes of `scope`, newest first, at most `limit` (capped at [`MAX_HISTORY`]).
    pub async fn history(
        &self,
        scope: &Scope,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, PolicyStoreError> {
        let limit = limit.clamp(1, MAX_HISTORY);
        let rows: Vec<HistoryRow> = with_pool!(self.db, pool => {
            sqlx::query("SELECT version, action, body, previous, changed_by, changed_at FROM policy_history WHERE kind = $1 AND name = $2 ORDER BY version DESC LIMIT $3")
                .bind(scope.kind()).bind(scope.name()).bind(limit).fetch_all(pool).await?
                .iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect()
        });
        let parse = |b: Option<String>| b.and_then(|b| serde_json::from_str::<PolicySpec>(&b).ok());
        Ok(rows
            .into_iter()
            .map(
                |(version, action, body, previous, changed_by, changed_at)| HistoryEntry {
                    version,
                    scope: scope.clone(),
                    action,
                    policy: parse(body),
                    previous: parse(previous),
                    changed_by,
                    changed_at,
                },
            )
            .collect())
    }
}
