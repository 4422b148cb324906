//! The audit trail of policy decisions (`policy_audit`): who, what, which digest,
//! which policy version, allowed or why not.
//!
//! The hot path only queues an entry ([`AuditLog::record`] never waits): a background
//! task writes queued entries in batches, one transaction each. The queue is bounded;
//! when it is full (the database cannot keep up) entries are dropped and counted in
//! `registry_policy_audit_dropped_total`. Old entries are purged now and then.

use std::time::Duration;

use sqlx::Row as _;
use tokio::sync::{mpsc, oneshot};

use crate::meta::{Db, now};
use crate::with_pool;

/// Most entries one query returns.
pub const MAX_QUERY: i64 = 1000;
/// Longest reason stored.
pub const MAX_REASON: usize = 2000;

/// One decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Row id (0 before it is written).
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// `pull`, `push` or `deploy`.
    pub gate: String,
    /// `pull`, `head`, `push`, `delete`, `deploy`.
    pub operation: String,
    /// Repository.
    pub repository: String,
    /// Tag, if the request named one.
    pub tag: Option<String>,
    /// Digest decided about.
    pub digest: Option<String>,
    /// Caller (none: anonymous).
    pub user: Option<String>,
    /// Allowed (possibly with a warning).
    pub allowed: bool,
    /// Allowed only with a warning (permissive mode, quarantined tag served to a writer).
    pub warned: bool,
    /// Why.
    pub reason: String,
    /// The global policy version that decided.
    pub policy_version: i64,
}

/// Settings of the writer.
#[derive(Clone, Copy, Debug)]
pub struct AuditOptions {
    /// Entries waiting before new ones are dropped.
    pub queue: usize,
    /// Most entries per transaction.
    pub batch: usize,
    /// Longest wait before a partial batch is written.
    pub flush_every: Duration,
    /// Entries older than this many days are purged (0: kept forever).
    pub retention_days: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            queue: 10_000,
            batch: 500,
            flush_every: Duration::from_millis(200),
            retention_days: 90,
        }
    }
}

enum Msg {
    Entry(AuditEntry),
    Flush(oneshot::Sender<()>),
}

/// The queue in front of the audit table.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: Option<mpsc::Sender<Msg>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditMsg")
    }
}

impl AuditLog {
    /// Starts the writer (needs a tokio runtime; without one, entries are only counted).
    pub fn start(db: Db, options: AuditOptions) -> AuditLog {
        if tokio::runtime::Handle::try_current().is_err() {
            return AuditLog { tx: None };
        }
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        tokio::spawn(writer(db, rx, options));
        AuditLog { tx: Some(tx) }
    }

    /// Queues an entry; never waits.
    pub fn record(&self, mut entry: AuditEntry) {
        let Some(tx) = &self.tx else { return };
        if entry.reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !entry.reason.is_char_boundary(end) {
                end -= 1;
            }
            entry.reason.truncate(end);
        }
        if tx.try_send(Msg::Entry(entry)).is_err() {
            metrics::counter!("registry_policy_audit_dropped_total").increment(1);
        }
    }

    /// Waits until everything queued before this call is written.
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Msg>, options: AuditOptions) {
    let mut batch: Vec<AuditEntry> = Vec::with_capacity(options.batch);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut last_purge = std::time::Instant::now();
    loop {
        // Block for the first message, then gather what arrives within flush_every.
        let Some(first) = rx.recv().await else {
            if !batch.is_empty() {
                write(&db, &batch).await;
            }
            return;
        };
        let deadline = tokio::time::Instant::now() + options.flush_every;
        let mut next = Some(first);
        loop {
            match next.take() {
                Some(Msg::Entry(e)) => batch.push(e),
                Some(Msg::Flush(done)) => {
                    waiting.push(done);
                    break;
                }
                None => {}
            }
            if batch.len() >= options.batch {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(m)) => next = Some(m),
                Ok(None) | Err(_) => break,
            }
        }
        if !batch.is_empty() {
            write(&db, &batch).await;
            batch.clear();
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
        if options.retention_days > 0 && last_purge.elapsed() > Duration::from_secs(3600) {
            last_purge = std::time::Instant::now();
            let before = now() - i64::from(options.retention_days) * 86_400;
            match purge(&db, before).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "old policy audit entries purged"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging policy audit entries"),
            }
        }
    }
}

async fn write(db: &Db, batch: &[AuditEntry]) {
    let res: Result<(), sqlx::Error> = async {
        let _w = db.write().await;
        with_pool!(db, pool => {
            let mut tx = pool.begin().await?;
            for e in batch {
                sqlx::query("INSERT INTO policy_audit (at, gate, operation, repository, tag, digest, user_name, allowed, warned, reason, policy_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)")
                    .bind(e.at).bind(&e.gate).bind(&e.operation).bind(&e.repository).bind(&e.tag).bind(&e.digest)
                    .bind(&e.user).bind(e.allowed).bind(e.warned).bind(&e.reason).bind(e.policy_version)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }
    .await;
    match res {
        Ok(()) => {
            metrics::counter!("registry_policy_audit_written_total").increment(batch.len() as u64)
        }
        Err(e) => {
            metrics::counter!("registry_policy_audit_dropped_total").increment(batch.len() as u64);
            tracing::warn!(error = %e, entries = batch.len(), "writing policy audit entries failed");
        }
    }
}

async fn purge(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    let _w = db.write().await;
    with_pool!(db, pool => {
        Ok(sqlx::query("DELETE FROM policy_audit WHERE at < $1").bind(before).execute(pool).await?.rows_affected())
    })
}

/// A query of the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only this repository.
    pub repository: Option<String>,
    /// Only allowed (`true`) or refused (`false`) decisions.
    pub allowed: Option<bool>,
    /// Entries with an id above this (paging forward).
    pub after: Option<i64>,
    /// At most this many (capped at [`MAX_QUERY`]).
    pub limit: i64,
}

/// Entries matching `q`, oldest first.
pub async fn query(db: &Db, q: &AuditQuery) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let limit = if q.limit <= 0 {
        100
    } else {
        q.limit.min(MAX_QUERY)
    };
    const SQL: &str = "SELECT id, at, gate, operation, repository, tag, digest, user_name, allowed, warned, reason, policy_version FROM policy_audit WHERE ($1 IS NULL OR repository = $1) AND ($2 IS NULL OR allowed = $2) AND id > $3 ORDER BY id LIMIT $4";
    with_pool!(db, pool => {
        Ok(sqlx::query(SQL)
            .bind(q.repository.as_deref()).bind(q.allowed).bind(q.after.unwrap_or(0)).bind(limit)
            .fetch_all(pool).await?
            .iter().map(|r| AuditEntry {
                id: r.get(0), at: r.get(1), gate: r.get(2), operation: r.get(3), repository: r.get(4),
                tag: r.get(5), digest: r.get(6), user: r.get(7), allowed: r.get(8), warned: r.get(9),
                reason: r.get(10), policy_version: r.get(11),
            }).collect())
    })
}
