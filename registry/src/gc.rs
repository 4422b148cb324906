//! Online garbage collection: the registry stays writable while it runs.
//!
//! The metadata database is the source of truth (the object store is never listed). A
//! run has four phases, each in small batches, each batch its own transaction, with a
//! report to a [`Progress`] observer and an optional pause in between:
//!
//! 1. **Untagged manifests** (off by default): a manifest that no tag points at, that
//!    no index of its repository lists and whose `subject` (if any) is gone, older than
//!    the configured age, is deleted (its references go with it).
//! 2. **Sweep**: a blob is garbage when no manifest of any repository references it, no
//!    repository link to it is younger than the grace period and the blob row itself is
//!    older than it. Its rows are deleted and its object key queued in
//!    `pending_deletes`, in one transaction whose check runs after the rows are locked
//!    (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so a manifest push holding `FOR SHARE` on a
//!    blob is skipped, and one arriving later waits and then finds the blob gone;
//!    SQLite: `BEGIN IMMEDIATE`, the single writer): concurrent pushes always win or get
//!    a clean `MANIFEST_BLOB_UNKNOWN`, never a manifest whose blobs are gone. Stale
//!    links are deleted with their age re-checked, and a blob whose link was refreshed
//!    meanwhile (an upload or mount of the same digest) is kept.
//! 3. **Objects**: queued keys are deleted from the store, then forgotten. Deleting rows
//!    first and objects afterwards makes an interrupted run safe: the next one finishes
//!    the queue.
//! 4. **Uploads**: sessions untouched for the expiry period are discarded.
//!
//! "Now" comes from [`GcOptions::clock`], so grace periods are testable without sleeping.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::meta::Db;
use crate::storage::{BlobStore, StorageError};

/// Largest batch accepted (bind parameters per statement stay far below both backends'
/// limits).
pub const MAX_BATCH: usize = 1000;
/// Longest period accepted anywhere in the settings (100 years).
const MAX_SECS: u64 = 100 * 365 * 86_400;
/// Passes over untagged manifests in one run (deleting an index or a subject can make
/// more manifests eligible).
const MAX_UNTAGGED_PASSES: usize = 16;

/// Returns "now" in Unix seconds.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::meta::now)
}

/// The `gc` section of the server configuration.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GcSettings {
    /// Seconds between scheduled GC jobs (`0`: never scheduled). Default one day.
    pub interval_secs: u64,
    /// Blobs and links younger than this are never collected. Default one day.
    pub grace_secs: u64,
    /// Delete untagged, unreferenced manifests older than this many days (`0`: off,
    /// the default).
    pub untagged_days: u32,
    /// Upload sessions untouched this long are discarded. Default seven days.
    pub upload_expiry_secs: u64,
    /// Rows per batch (each batch one transaction). Default 500.
    pub batch_size: u32,
    /// Pause between batches, in milliseconds (rate limit). Default 20.
    pub pause_ms: u64,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            interval_secs: 86_400,
            grace_secs: 86_400,
            untagged_days: 0,
            upload_expiry_secs: 7 * 86_400,
            batch_size: 500,
            pause_ms: 20,
        }
    }
}

impl GcSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("interval_secs", self.interval_secs),
            ("grace_secs", self.grace_secs),
            ("upload_expiry_secs", self.upload_expiry_secs),
            ("pause_ms", self.pause_ms),
        ] {
            if v > MAX_SECS {
                return Err(format!("gc.{name} is too large"));
            }
        }
        if u64::from(self.untagged_days) * 86_400 > MAX_SECS {
            return Err("gc.untagged_days is too large".into());
        }
        if self.batch_size == 0 || self.batch_size as usize > MAX_BATCH {
            return Err(format!("gc.batch_size must be between 1 and {MAX_BATCH}"));
        }
        Ok(())
    }

    /// The options of a run with these settings.
    pub fn options(&self) -> GcOptions {
        GcOptions {
            grace: Duration::from_secs(self.grace_secs.min(MAX_SECS)),
            untagged_after: (self.untagged_days > 0).then(|| {
                Duration::from_secs((u64::from(self.untagged_days) * 86_400).min(MAX_SECS))
            }),
            upload_expiry: Duration::from_secs(self.upload_expiry_secs.min(MAX_SECS)),
            batch: (self.batch_size as usize).clamp(1, MAX_BATCH),
            pause: Duration::from_millis(self.pause_ms.min(MAX_SECS)),
            ..GcOptions::default()
        }
    }
}

/// Per-run overrides (the parameters of a `gc` job).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GcParameters {
    /// Count what would be collected without deleting anything.
    pub dry_run: bool,
    /// Overrides `grace_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_secs: Option<u64>,
    /// Overrides `untagged_days` (`0`: off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untagged_days: Option<u32>,
    /// Overrides `upload_expiry_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_expiry_secs: Option<u64>,
}

impl GcParameters {
    /// The settings with these overrides applied (validated).
    pub fn apply(&self, base: &GcSettings) -> Result<GcSettings, String> {
        let mut s = base.clone();
        if let Some(v) = self.grace_secs {
            s.grace_secs = v;
        }
        if let Some(v) = self.untagged_days {
            s.untagged_days = v;
        }
        if let Some(v) = self.upload_expiry_secs {
            s.upload_expiry_secs = v;
        }
        s.validate()?;
        Ok(s)
    }
}

/// How one run behaves.
#[derive(Clone)]
pub struct GcOptions {
    /// Grace period for blobs and repository links.
    pub grace: Duration,
    /// Untagged manifests older than this are deleted (`None`: kept).
    pub untagged_after: Option<Duration>,
    /// Upload sessions untouched this long are discarded.
    pub upload_expiry: Duration,
    /// Rows per batch.
    pub batch: usize,
    /// Pause after each batch.
    pub pause: Duration,
    /// Count only.
    pub dry_run: bool,
    /// "Now".
    pub clock: Clock,
    /// Stops the run between batches (and interrupts the pause).
    pub cancel: CancellationToken,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(86_400),
            untagged_after: None,
            upload_expiry: Duration::from_secs(7 * 86_400),
            batch: 500,
            pause: Duration::ZERO,
            dry_run: false,
            clock: system_clock(),
            cancel: CancellationToken::new(),
        }
    }
}

impl std::fmt::Debug for GcOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcOptions")
            .field("grace", &self.grace)
            .field("untagged_after", &self.untagged_after)
            .field("upload_expiry", &self.upload_expiry)
            .field("batch", &self.batch)
            .field("pause", &self.pause)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

/// The phase a run is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not started.
    #[default]
    Starting,
    /// Deleting untagged manifests.
    Untagged,
    /// Deleting unreferenced blob rows.
    Sweep,
    /// Deleting queued objects from storage.
    Objects,
    /// Expiring upload sessions.
    Uploads,
    /// Finished.
    Done,
}

/// Counts of a run (in a dry run: what would have been done).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcStats {
    /// Current phase.
    pub phase: Phase,
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Untagged manifests deleted.
    pub manifests_deleted: u64,
    /// Blob rows looked at.
    pub blobs_examined: u64,
    /// Blob rows deleted.
    pub blobs_deleted: u64,
    /// Sum of their sizes.
    pub bytes_freed: u64,
    /// Objects deleted from storage (including ones queued by earlier runs or uploads).
    pub objects_deleted: u64,
    /// Upload sessions discarded.
    pub uploads_expired: u64,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcReport {
    /// Final counts.
    pub stats: GcStats,
    /// `false` when it was stopped (cancelled, or the observer asked) before the end.
    pub finished: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Why a run failed (everything done before the failure stays done; the next run
/// continues).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The blob store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Observes a run: called after every batch and at the end of each phase.
#[async_trait]
pub trait Progress: Send + Sync {
    /// Reports the counts so far (`milestone`: the end of a phase or of the run, as
    /// opposed to one more batch); `Break` stops the run here.
    async fn report(&mut self, stats: &GcStats, message: &str, milestone: bool) -> ControlFlow<()>;
}

/// An observer that only logs (at debug level).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogProgress;

#[async_trait]
impl Progress for LogProgress {
    async fn report(
        &mut self,
        _stats: &GcStats,
        message: &str,
        _milestone: bool,
    ) -> ControlFlow<()> {
        tracing::debug!("gc: {message}");
        ControlFlow::Continue(())
    }
}

/// `$start, $start+1, …` (`n` placeholders).
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Human-readable bytes for log lines.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The garbage condition on a blob row `b`, with the cutoff in `$1`.
const GARBAGE: &str = "b.created_at < $1 \
    AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.child_digest = b.digest) \
    AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest AND rb.created_at >= $1)";

/// The eligibility of an untagged manifest `m`, with the cutoff in `$1`.
const UNTAGGED: &str = "m.created_at < $1 \
    AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest) \
    AND NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.repository_id = m.repository_id AND r.child_digest = m.digest AND r.kind = 'manifest') \
    AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repository_id = m.repository_id AND s.digest = m.subject))";

/// Runs one garbage collection. Safe to run while the registry serves pushes and pulls,
/// and concurrently with another run (on another replica).
pub async fn run(
    db: &Db,
    store: &dyn BlobStore,
    opts: &GcOptions,
    progress: &mut dyn Progress,
) -> Result<GcReport, GcError> {
    let started = Instant::now();
    let mut gc = Run {
        db,
        store,
        opts,
        progress,
        stats: GcStats {
            dry_run: opts.dry_run,
            ..GcStats::default()
        },
    };
    tracing::info!(
        dry_run = opts.dry_run,
        grace_secs = opts.grace.as_secs(),
        "gc started"
    );
    metrics::counter!("registry_gc_runs_total").increment(1);
    let finished = gc.all().await;
    let stats = gc.stats.clone();
    let elapsed = started.elapsed();
    match &finished {
        Ok(f) => tracing::info!(
            finished = f,
            manifests_deleted = stats.manifests_deleted,
            blobs_examined = stats.blobs_examined,
            blobs_deleted = stats.blobs_deleted,
            bytes_freed = stats.bytes_freed,
            objects_deleted = stats.objects_deleted,
            uploads_expired = stats.uploads_expired,
            elapsed_ms = elapsed.as_millis() as u64,
            "gc ended"
        ),
        Err(e) => {
            metrics::counter!("registry_gc_failures_total").increment(1);
            tracing::warn!(error = %e, "gc failed");
        }
    }
    Ok(GcReport {
        stats,
        finished: finished?,
        elapsed,
    })
}

struct Run<'a> {
    db: &'a Db,
    store: &'a dyn BlobStore,
    opts: &'a GcOptions,
    progress: &'a mut dyn Progress,
    stats: GcStats,
}

impl Run<'_> {
    fn now(&self) -> i64 {
        (self.opts.clock)()
    }

    fn cutoff(&self, age: Duration) -> i64 {
        self.now()
            .saturating_sub(age.as_secs().min(MAX_SECS) as i64)
    }

    /// Reports, then pauses. `false`: stop here.
    async fn checkpoint(&mut self, message: &str) -> bool {
        if self
            .progress
            .report(&self.stats, message, false)
            .await
            .is_break()
        {
            return false;
        }
        if self.opts.cancel.is_cancelled() {
            return false;
        }
        if !self.opts.pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.opts.pause) => {}
                () = self.opts.cancel.cancelled() => return false,
            }
        }
        true
    }

    /// Reports the end of a phase (no pause). `false`: stop here.
    async fn phase_done(&mut self, message: &str) -> bool {
        self.progress
            .report(&self.stats, message, true)
            .await
            .is_continue()
            && !self.opts.cancel.is_cancelled()
    }

    async fn all(&mut self) -> Result<bool, GcError> {
        if let Some(age) = self.opts.untagged_after {
            self.stats.phase = Phase::Untagged;
            if !self.untagged(age).await? {
                return Ok(false);
            }
        }
        self.stats.phase = Phase::Sweep;
        if !self.sweep().await? {
            return Ok(false);
        }
        self.stats.phase = Phase::Objects;
        if !self.objects().await? {
            return Ok(false);
        }
        self.stats.phase = Phase::Uploads;
        if !self.uploads().await? {
            return Ok(false);
        }
        self.stats.phase = Phase::Done;
        let s = &self.stats;
        let msg = format!(
            "done: {} manifests, {} of {} blobs ({}), {} objects, {} uploads",
            s.manifests_deleted,
            s.blobs_deleted,
            s.blobs_examined,
            human_bytes(s.bytes_freed),
            s.objects_deleted,
            s.uploads_expired
        );
        let _ = self.progress.report(&self.stats, &msg, true).await;
        Ok(true)
    }

    // ------------------------------------------------------------ untagged manifests

    async fn untagged(&mut self, age: Duration) -> Result<bool, GcError> {
        let cutoff = self.cutoff(age);
        for _ in 0..MAX_UNTAGGED_PASSES {
            let mut after: (i64, String) = (i64::MIN, String::new());
            let mut deleted_in_pass = 0u64;
            loop {
                let page = self.untagged_page(cutoff, &after).await?;
                let Some(last) = page.last() else { break };
                after = last.clone();
                let n = if self.opts.dry_run {
                    page.len() as u64
                } else {
                    self.delete_manifests(cutoff, &page).await?
                };
                deleted_in_pass += n;
                self.stats.manifests_deleted += n;
                if !self.opts.dry_run {
                    metrics::counter!("registry_gc_manifests_deleted_total").increment(n);
                }
                let msg = format!(
                    "untagged manifests: {} deleted",
                    self.stats.manifests_deleted
                );
                if !self.checkpoint(&msg).await {
                    return Ok(false);
                }
            }
            if self.opts.dry_run || deleted_in_pass == 0 {
                break;
            }
        }
        let msg = format!(
            "untagged manifests: done, {} deleted",
            self.stats.manifests_deleted
        );
        Ok(self.phase_done(&msg).await)
    }

    async fn untagged_page(
        &self,
        cutoff: i64,
        after: &(i64, String),
    ) -> Result<Vec<(i64, String)>, GcError> {
        let q = format!(
            "SELECT m.repository_id, m.digest FROM manifests m \
             WHERE (m.repository_id > $2 OR (m.repository_id = $2 AND m.digest > $3)) AND {UNTAGGED} \
             ORDER BY m.repository_id, m.digest LIMIT $4"
        );
        let batch = self.opts.batch as i64;
        crate::meta::with_pool!(self.db, pool => {
            Ok(sqlx::query(&q).bind(cutoff).bind(after.0).bind(&after.1).bind(batch)
                .fetch_all(pool).await?.iter().map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))).collect())
        })
    }

    /// Deletes the manifests of `page` that are still eligible; returns how many.
    async fn delete_manifests(&self, cutoff: i64, page: &[(i64, String)]) -> Result<u64, GcError> {
        let pg = self.db.is_shared();
        let del = format!(
            "DELETE FROM manifests WHERE repository_id = $2 AND digest = $3 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = $2 AND m.digest = $3 AND {UNTAGGED})"
        );
        const LOCK: &str = "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2 FOR UPDATE SKIP LOCKED";
        let _w = self.db.write().await;
        crate::meta::with_pool!(self.db, pool => {
            let mut tx = pool.begin_with(if pg { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
            let mut n = 0;
            for (repo, digest) in page {
                // PostgreSQL: lock first, then check in a later statement (a fresh
                // snapshot); a tag being pointed at the manifest right now holds a key
                // share lock, so the manifest is skipped.
                if pg && sqlx::query(LOCK).bind(repo).bind(digest).fetch_optional(&mut *tx).await?.is_none() {
                    continue;
                }
                n += sqlx::query(&del).bind(cutoff).bind(repo).bind(digest).execute(&mut *tx).await?.rows_affected();
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    // ------------------------------------------------------------ blob sweep

    async fn sweep(&mut self) -> Result<bool, GcError> {
        let cutoff = self.cutoff(self.opts.grace);
        let mut after = String::new();
        loop {
            let page = self.blob_page(cutoff, &after).await?;
            let Some(last) = page.last() else { break };
            after = last.0.clone();
            self.stats.blobs_examined += page.len() as u64;
            let candidates: Vec<String> = page.into_iter().filter(|p| p.1).map(|p| p.0).collect();
            if candidates.is_empty() {
                // Nothing written: no pause needed, but still an observation point.
                if self
                    .progress
                    .report(&self.stats, &self.sweep_msg(), false)
                    .await
                    .is_break()
                    || self.opts.cancel.is_cancelled()
                {
                    return Ok(false);
                }
                continue;
            }
            let (n, bytes) = if self.opts.dry_run {
                self.measure(&candidates).await?
            } else {
                self.delete_blobs(cutoff, &candidates).await?
            };
            self.stats.blobs_deleted += n;
            self.stats.bytes_freed += bytes;
            if !self.opts.dry_run {
                metrics::counter!("registry_gc_blobs_deleted_total").increment(n);
                metrics::counter!("registry_gc_bytes_freed_total").increment(bytes);
            }
            let msg = self.sweep_msg();
            if !self.checkpoint(&msg).await {
                return Ok(false);
            }
        }
        let msg = format!("{} (done)", self.sweep_msg());
        Ok(self.phase_done(&msg).await)
    }

    fn sweep_msg(&self) -> String {
        format!(
            "sweep: examined {} blobs, deleted {} ({})",
            self.stats.blobs_examined,
            self.stats.blobs_deleted,
            human_bytes(self.stats.bytes_freed)
        )
    }

    /// The next page of blob digests after `after`, each with whether it looks like
    /// garbage (a hint: the deleting transaction checks again).
    async fn blob_page(&self, cutoff: i64, after: &str) -> Result<Vec<(String, bool)>, GcError> {
        let q = format!(
            "SELECT b.digest, CASE WHEN {GARBAGE} THEN 1 ELSE 0 END FROM blobs b \
             WHERE b.digest > $2 ORDER BY b.digest LIMIT $3"
        );
        let batch = self.opts.batch as i64;
        crate::meta::with_pool!(self.db, pool => {
            Ok(sqlx::query(&q).bind(cutoff).bind(after).bind(batch).fetch_all(pool).await?
                .iter().map(|r| (r.get::<String, _>(0), r.get::<i32, _>(1) != 0)).collect())
        })
    }

    /// Dry run: count and size the candidates.
    async fn measure(&self, candidates: &[String]) -> Result<(u64, u64), GcError> {
        let q = format!(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs WHERE digest IN ({})",
            placeholders(1, candidates.len())
        );
        crate::meta::with_pool!(self.db, pool => {
            let mut query = sqlx::query(&q);
            for d in candidates {
                query = query.bind(d);
            }
            let r = query.fetch_one(pool).await?;
            Ok((r.get::<i64, _>(0).max(0) as u64, r.get::<i64, _>(1).max(0) as u64))
        })
    }

    /// Deletes the candidates that are still garbage, queueing their objects, in one
    /// transaction. Returns (blobs deleted, bytes).
    async fn delete_blobs(
        &self,
        cutoff: i64,
        candidates: &[String],
    ) -> Result<(u64, u64), GcError> {
        let pg = self.db.is_shared();
        let now = self.now();
        let _w = self.db.write().await;
        crate::meta::with_pool!(self.db, pool => {
            let mut tx = pool.begin_with(if pg { "BEGIN" } else { "BEGIN IMMEDIATE" }).await?;
            let mut digests: Vec<String> = candidates.to_vec();
            if pg {
                // Lock before checking: a manifest push holding FOR SHARE on a blob, or
                // a link being inserted (key share), makes us skip it; anything starting
                // later waits for our commit and then sees the blob gone.
                let q = format!(
                    "SELECT digest FROM blobs WHERE digest IN ({}) ORDER BY digest FOR UPDATE SKIP LOCKED",
                    placeholders(1, digests.len())
                );
                let mut query = sqlx::query(&q);
                for d in &digests {
                    query = query.bind(d);
                }
                digests = query.fetch_all(&mut *tx).await?.iter().map(|r| r.get(0)).collect();
                if digests.is_empty() {
                    tx.commit().await?;
                    return Ok((0, 0));
                }
            }
            // The check, in a statement that starts after the locks were taken.
            let q = format!(
                "SELECT b.digest, b.size, b.location FROM blobs b WHERE b.digest IN ({}) AND {GARBAGE}",
                placeholders(2, digests.len())
            );
            let mut query = sqlx::query(&q).bind(cutoff);
            for d in &digests {
                query = query.bind(d);
            }
            let mut garbage: Vec<(String, i64, String)> = query.fetch_all(&mut *tx).await?
                .iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
            if garbage.is_empty() {
                tx.commit().await?;
                return Ok((0, 0));
            }
            // Stale links go. A link refreshed meanwhile (PostgreSQL: an upload or mount
            // of the same digest updating its link row, which takes no lock on the blob
            // row) is re-checked by the DELETE and survives; its blob is then kept.
            let q = format!(
                "DELETE FROM repository_blobs WHERE digest IN ({}) AND created_at < $1",
                placeholders(2, garbage.len())
            );
            let mut query = sqlx::query(&q).bind(cutoff);
            for g in &garbage {
                query = query.bind(&g.0);
            }
            query.execute(&mut *tx).await?;
            let q = format!(
                "SELECT DISTINCT digest FROM repository_blobs WHERE digest IN ({})",
                placeholders(1, garbage.len())
            );
            let mut query = sqlx::query(&q);
            for g in &garbage {
                query = query.bind(&g.0);
            }
            let linked: std::collections::HashSet<String> =
                query.fetch_all(&mut *tx).await?.iter().map(|r| r.get(0)).collect();
            garbage.retain(|g| !linked.contains(&g.0));
            if garbage.is_empty() {
                tx.commit().await?;
                return Ok((0, 0));
            }
            // Inline blobs go with their rows: there is no object to delete.
            let objects: Vec<&String> = garbage.iter().map(|g| &g.2).filter(|l| !crate::meta::is_inline(l)).collect();
            if !objects.is_empty() {
                let values = (0..objects.len()).map(|i| format!("(${}, $1)", i + 2)).collect::<Vec<_>>().join(", ");
                let q = format!("INSERT INTO pending_deletes (location, queued_at) VALUES {values} ON CONFLICT (location) DO NOTHING");
                let mut query = sqlx::query(&q).bind(now);
                for l in &objects {
                    query = query.bind(*l);
                }
                query.execute(&mut *tx).await?;
            }
            let q = format!("DELETE FROM blobs WHERE digest IN ({})", placeholders(1, garbage.len()));
            let mut query = sqlx::query(&q);
            for g in &garbage {
                query = query.bind(&g.0);
            }
            query.execute(&mut *tx).await?;
            tx.commit().await?;
            for g in &garbage {
                tracing::debug!(digest = %g.0, size = g.1, "gc: blob collected");
            }
            let bytes = garbage.iter().map(|g| g.1.max(0) as u64).sum();
            Ok((garbage.len() as u64, bytes))
        })
    }

    // ------------------------------------------------------------ objects

    async fn objects(&mut self) -> Result<bool, GcError> {
        if self.opts.dry_run {
            let n: i64 = crate::meta::with_pool!(self.db, pool => {
                sqlx::query("SELECT COUNT(*) FROM pending_deletes").fetch_one(pool).await?.get(0)
            });
            self.stats.objects_deleted = n.max(0) as u64;
            let msg = format!(
                "objects: {} queued for deletion",
                self.stats.objects_deleted
            );
            return Ok(self.phase_done(&msg).await);
        }
        loop {
            let keys = self.db.pending_deletes(self.opts.batch as i64).await?;
            if keys.is_empty() {
                break;
            }
            let live = self.live_locations(&keys).await?;
            if !live.is_empty() {
                // Object keys are unique per upload, so this means a bug elsewhere:
                // never destroy what a blob row still serves.
                tracing::error!(
                    count = live.len(),
                    "gc: objects queued for deletion are still in use; keeping them"
                );
                metrics::counter!("registry_gc_live_objects_kept_total")
                    .increment(live.len() as u64);
            }
            let doomed: Vec<String> = keys
                .iter()
                .filter(|k| !live.contains(*k))
                .cloned()
                .collect();
            if !doomed.is_empty() {
                self.store.delete(&doomed).await?;
            }
            self.db.deleted(&keys).await?;
            self.stats.objects_deleted += doomed.len() as u64;
            metrics::counter!("registry_gc_objects_deleted_total").increment(doomed.len() as u64);
            let msg = format!(
                "objects: {} deleted from storage",
                self.stats.objects_deleted
            );
            if !self.checkpoint(&msg).await {
                return Ok(false);
            }
        }
        let msg = format!(
            "objects: done, {} deleted from storage",
            self.stats.objects_deleted
        );
        Ok(self.phase_done(&msg).await)
    }

    async fn live_locations(
        &self,
        keys: &[String],
    ) -> Result<std::collections::HashSet<String>, GcError> {
        let q = format!(
            "SELECT location FROM blobs WHERE location IN ({})",
            placeholders(1, keys.len())
        );
        crate::meta::with_pool!(self.db, pool => {
            let mut query = sqlx::query(&q);
            for k in keys {
                query = query.bind(k);
            }
            Ok(query.fetch_all(pool).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    // ------------------------------------------------------------ uploads

    async fn uploads(&mut self) -> Result<bool, GcError> {
        let cutoff = self.cutoff(self.opts.upload_expiry);
        if self.opts.dry_run {
            let n: i64 = crate::meta::with_pool!(self.db, pool => {
                sqlx::query("SELECT COUNT(*) FROM uploads WHERE updated_at < $1").bind(cutoff).fetch_one(pool).await?.get(0)
            });
            self.stats.uploads_expired = n.max(0) as u64;
            let msg = format!("uploads: {} would expire", self.stats.uploads_expired);
            return Ok(self.phase_done(&msg).await);
        }
        loop {
            let rows = self
                .db
                .stale_uploads(cutoff, self.opts.batch as i64)
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut expired = 0u64;
            for row in &rows {
                // Store first, row second: if we stop in between, the row is still
                // stale and the next run aborts again (aborting twice is harmless). A
                // session resumed at this very moment finds its data gone and gets
                // BLOB_UPLOAD_UNKNOWN; its row is then no longer stale and stays.
                if let Err(e) = self.store.abort_upload(&row.id, &row.backend_state).await {
                    tracing::warn!(upload = %row.id, error = %e, "gc: could not discard an expired upload");
                    continue;
                }
                let _w = self.db.write().await;
                let n = crate::meta::with_pool!(self.db, pool => {
                    sqlx::query("DELETE FROM uploads WHERE id = $1 AND updated_at < $2")
                        .bind(&row.id).bind(cutoff).execute(pool).await?.rows_affected()
                });
                expired += n;
            }
            self.stats.uploads_expired += expired;
            metrics::counter!("registry_gc_uploads_expired_total").increment(expired);
            let msg = format!("uploads: {} expired", self.stats.uploads_expired);
            if !self.checkpoint(&msg).await {
                return Ok(false);
            }
            if expired == 0 {
                // Every one of them failed: leave them to the next run.
                break;
            }
        }
        let msg = format!("uploads: done, {} expired", self.stats.uploads_expired);
        Ok(self.phase_done(&msg).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(4, 1), "$4");
    }

    #[test]
    fn settings_are_bounded() {
        assert!(GcSettings::default().validate().is_ok());
        let huge = GcSettings {
            grace_secs: u64::MAX,
            ..GcSettings::default()
        };
        assert!(huge.validate().is_err());
        let zero_batch = GcSettings {
            batch_size: 0,
            ..GcSettings::default()
        };
        assert!(zero_batch.validate().is_err());
        let p = GcParameters {
            untagged_days: Some(u32::MAX),
            ..GcParameters::default()
        };
        assert!(p.apply(&GcSettings::default()).is_err());
        assert_eq!(GcSettings::default().options().untagged_after, None);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
