//! The job queue (DTR-style) and its admin API.
//!
//! Jobs live in the shared database, so every replica sees the same queue. Each process
//! runs one [`Runner`]: it claims a waiting job atomically (PostgreSQL: `UPDATE … WHERE
//! id = (SELECT … FOR UPDATE SKIP LOCKED)`; SQLite: one `UPDATE` statement, the single
//! writer), writes its worker id on it, heartbeats while it runs and honours cancel
//! requests between batches. A job whose worker stops heartbeating becomes
//! `worker_dead`. A scheduler enqueues `gc` every configured interval; the replica whose
//! compare-and-set moves the schedule forward is the one that enqueues.
//!
//! Routes (all need [`Need::Admin`]): `GET /api/v0/jobs?action=&running=&worker=&limit=`,
//! `POST /api/v0/jobs {"action":"gc","parameters":{…}}` (202), `GET /api/v0/jobs/{id}`,
//! `GET /api/v0/jobs/{id}/logs?after=&limit=`, `DELETE /api/v0/jobs/{id}` (cancel).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;

use crate::Registry;
use crate::access::Need;
use crate::error::RegistryError;
use crate::gc::{self, Clock, GcParameters, GcSettings, GcStats, Progress};
use crate::meta::Db;
use crate::storage::BlobStore;

/// The garbage collection action.
pub const ACTION_GC: &str = "gc";
/// Actions this build can run.
pub const ACTIONS: &[&str] = &[ACTION_GC];
/// Largest `POST /api/v0/jobs` body.
const MAX_BODY: usize = 64 << 10;
/// Most jobs or log lines in one response.
const MAX_LIMIT: i64 = 1000;

/// A job's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Queued.
    Waiting,
    /// Claimed by a worker.
    Running,
    /// Finished.
    Done,
    /// Failed.
    Error,
    /// Running, asked to stop.
    CancelRequest,
    /// Stopped before the end.
    Cancel,
    /// Its worker stopped heartbeating.
    WorkerDead,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Waiting => "waiting",
            Status::Running => "running",
            Status::Done => "done",
            Status::Error => "error",
            Status::CancelRequest => "cancel_request",
            Status::Cancel => "cancel",
            Status::WorkerDead => "worker_dead",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "waiting" => Status::Waiting,
            "running" => Status::Running,
            "done" => Status::Done,
            "error" => Status::Error,
            "cancel_request" => Status::CancelRequest,
            "cancel" => Status::Cancel,
            "worker_dead" => Status::WorkerDead,
            _ => return None,
        })
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Done | Status::Error | Status::Cancel | Status::WorkerDead
        )
    }
}

/// A job.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Random id (32 hex digits).
    pub id: String,
    /// What it does (`gc`).
    pub action: String,
    /// Where it is.
    pub status: Status,
    /// The worker that claimed it.
    pub worker_id: Option<String>,
    /// When it may start (Unix seconds).
    pub scheduled_at: i64,
    /// When a worker claimed it.
    pub started_at: Option<i64>,
    /// Last status or progress change.
    pub last_updated: i64,
    /// Last sign of life from its worker.
    pub heartbeat_at: Option<i64>,
    /// Parameters (JSON object).
    pub parameters: Value,
    /// Progress counters (JSON object).
    pub progress: Value,
    /// Why it failed.
    pub error: Option<String>,
}

fn rfc3339(t: i64) -> Value {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(Value::String)
        .unwrap_or(Value::Null)
}

impl Job {
    /// The API representation (DTR's field names).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "action": self.action,
            "status": self.status.as_str(),
            "workerID": self.worker_id.clone().unwrap_or_default(),
            "scheduledAt": rfc3339(self.scheduled_at),
            "lastUpdated": rfc3339(self.last_updated),
            "parameters": self.parameters,
            "progress": self.progress,
        });
        if let Some(t) = self.started_at {
            v["startedAt"] = rfc3339(t);
        }
        if let Some(t) = self.heartbeat_at {
            v["heartbeatAt"] = rfc3339(t);
        }
        if let Some(e) = &self.error {
            v["error"] = Value::String(e.clone());
        }
        v
    }
}

/// One line of a job's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Increasing sequence number (for `?after=`).
    pub seq: i64,
    /// Unix seconds.
    pub at: i64,
    /// Text.
    pub message: String,
}

const COLS: &str = "id, action, status, worker_id, scheduled_at, started_at, last_updated, heartbeat_at, parameters, progress, error";

/// A job from a row selected with [`COLS`] (a macro: the row types of the two
/// backends differ).
macro_rules! job_from {
    ($r:expr) => {{
        let r = $r;
        let text = |c: &str| -> String { r.try_get::<String, _>(c).unwrap_or_default() };
        let obj =
            |c: &str| -> Value { serde_json::from_str(&text(c)).unwrap_or_else(|_| json!({})) };
        Job {
            id: text("id"),
            action: text("action"),
            status: Status::parse(&text("status")).unwrap_or(Status::Error),
            worker_id: r.try_get::<Option<String>, _>("worker_id").ok().flatten(),
            scheduled_at: r.try_get::<i64, _>("scheduled_at").unwrap_or(0),
            started_at: r.try_get::<Option<i64>, _>("started_at").ok().flatten(),
            last_updated: r.try_get::<i64, _>("last_updated").unwrap_or(0),
            heartbeat_at: r.try_get::<Option<i64>, _>("heartbeat_at").ok().flatten(),
            parameters: obj("parameters"),
            progress: obj("progress"),
            error: r.try_get::<Option<String>, _>("error").ok().flatten(),
        }
    }};
}

/// A new random id (32 hex digits).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No system randomness: time and a counter still make ids unique here.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&t.to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    hex::encode(b)
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, the write lock up front).
macro_rules! begin_write {
    ($db:expr, $pool:ident) => {
        $pool
            .begin_with(if $db.is_shared() {
                "BEGIN"
            } else {
                "BEGIN IMMEDIATE"
            })
            .await?
    };
}

// -------------------------------------------------------------------- queue operations

/// Queues a job.
pub async fn enqueue(
    db: &Db,
    action: &str,
    parameters: &Value,
    now: i64,
) -> Result<Job, sqlx::Error> {
    let id = new_id();
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        sqlx::query("INSERT INTO jobs (id, action, status, scheduled_at, last_updated, parameters, progress) VALUES ($1, $2, 'waiting', $3, $3, $4, '{}')")
            .bind(&id).bind(action).bind(now).bind(parameters.to_string()).execute(pool).await?;
    });
    drop(_w);
    log(db, &id, now, &format!("{action} job queued")).await?;
    get(db, &id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// A job by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<Job>, sqlx::Error> {
    let q = format!("SELECT {COLS} FROM jobs WHERE id = $1");
    crate::meta::with_pool!(db, pool => {
        Ok(sqlx::query(&q).bind(id).fetch_optional(pool).await?.map(|r| job_from!(&r)))
    })
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this action.
    pub action: Option<String>,
    /// `Some(true)`: running (or being cancelled); `Some(false)`: not running.
    pub running: Option<bool>,
    /// Only jobs claimed by this worker.
    pub worker: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// Jobs, newest first.
pub async fn list(db: &Db, f: &Filter) -> Result<Vec<Job>, sqlx::Error> {
    let running = match f.running {
        None => 0i64,
        Some(true) => 1,
        Some(false) => 2,
    };
    let q = format!(
        "SELECT {COLS} FROM jobs WHERE ($1 = '' OR action = $1) \
         AND ($2 = 0 OR ($2 = 1 AND status IN ('running', 'cancel_request')) OR ($2 = 2 AND status NOT IN ('running', 'cancel_request'))) \
         AND ($3 = '' OR worker_id = $3) \
         ORDER BY scheduled_at DESC, id LIMIT $4"
    );
    let limit = f.limit.clamp(1, MAX_LIMIT);
    crate::meta::with_pool!(db, pool => {
        Ok(sqlx::query(&q)
            .bind(f.action.clone().unwrap_or_default())
            .bind(running)
            .bind(f.worker.clone().unwrap_or_default())
            .bind(limit)
            .fetch_all(pool).await?.iter().map(|r| job_from!(r)).collect())
    })
}

/// Appends a line to a job's log.
pub async fn log(db: &Db, id: &str, now: i64, message: &str) -> Result<(), sqlx::Error> {
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        sqlx::query("INSERT INTO job_logs (job_id, at, message) VALUES ($1, $2, $3)")
            .bind(id).bind(now).bind(message).execute(pool).await.map(|_| ())
    })
}

/// Log lines of a job with a sequence number above `after`, oldest first.
pub async fn logs(db: &Db, id: &str, after: i64, limit: i64) -> Result<Vec<LogLine>, sqlx::Error> {
    crate::meta::with_pool!(db, pool => {
        Ok(sqlx::query("SELECT id, at, message FROM job_logs WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3")
            .bind(id).bind(after).bind(limit.clamp(1, MAX_LIMIT * 10)).fetch_all(pool).await?
            .iter().map(|r| LogLine { seq: r.get(0), at: r.get(1), message: r.get(2) }).collect())
    })
}

/// What a cancel request did.
#[derive(Clone, Debug, PartialEq)]
pub enum CancelOutcome {
    /// No such job.
    Unknown,
    /// It had not started: cancelled now.
    Cancelled(Job),
    /// It is running: its worker stops at the next batch.
    Requested(Job),
    /// It had already ended.
    Finished(Job),
}

/// Cancels a waiting job or asks a running one to stop.
pub async fn cancel(db: &Db, id: &str, now: i64) -> Result<CancelOutcome, sqlx::Error> {
    let (waiting, running) = {
        let _w = db.write().await;
        crate::meta::with_pool!(db, pool => {
            let a = sqlx::query("UPDATE jobs SET status = 'cancel', last_updated = $2 WHERE id = $1 AND status = 'waiting'")
                .bind(id).bind(now).execute(pool).await?.rows_affected();
            let b = if a == 0 {
                sqlx::query("UPDATE jobs SET status = 'cancel_request', last_updated = $2 WHERE id = $1 AND status = 'running'")
                    .bind(id).bind(now).execute(pool).await?.rows_affected()
            } else {
                0
            };
            (a, b)
        })
    };
    if waiting + running > 0 {
        let what = if waiting > 0 {
            "cancelled before it started"
        } else {
            "cancel requested"
        };
        log(db, id, now, what).await?;
    }
    let Some(job) = get(db, id).await? else {
        return Ok(CancelOutcome::Unknown);
    };
    Ok(if waiting > 0 {
        CancelOutcome::Cancelled(job)
    } else if running > 0 || job.status == Status::CancelRequest {
        CancelOutcome::Requested(job)
    } else {
        CancelOutcome::Finished(job)
    })
}

/// Claims the oldest waiting job of `actions` due at `now` for `worker`, atomically
/// (several runners on one database never claim the same job).
pub async fn claim(
    db: &Db,
    worker: &str,
    actions: &[&str],
    now: i64,
) -> Result<Option<Job>, sqlx::Error> {
    if actions.is_empty() {
        return Ok(None);
    }
    let list = (0..actions.len())
        .map(|i| format!("${}", i + 3))
        .collect::<Vec<_>>()
        .join(", ");
    let lock = if db.is_shared() {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let q = format!(
        "UPDATE jobs SET status = 'running', worker_id = $1, started_at = $2, last_updated = $2, heartbeat_at = $2 \
         WHERE status = 'waiting' AND id = (SELECT id FROM jobs WHERE status = 'waiting' AND scheduled_at <= $2 \
         AND action IN ({list}) ORDER BY scheduled_at, id LIMIT 1{lock}) RETURNING {COLS}"
    );
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        let mut query = sqlx::query(&q).bind(worker).bind(now);
        for a in actions {
            query = query.bind(*a);
        }
        Ok(query.fetch_optional(pool).await?.map(|r| job_from!(&r)))
    })
}

/// Records a sign of life (and the progress, if given); returns the job's status, or
/// `None` when the job is no longer this worker's to run.
pub async fn heartbeat(
    db: &Db,
    id: &str,
    worker: &str,
    now: i64,
    progress: Option<&Value>,
) -> Result<Option<Status>, sqlx::Error> {
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        let row = match progress {
            Some(p) => sqlx::query("UPDATE jobs SET heartbeat_at = $3, last_updated = $3, progress = $4 WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'cancel_request') RETURNING status")
                .bind(id).bind(worker).bind(now).bind(p.to_string()).fetch_optional(pool).await?,
            None => sqlx::query("UPDATE jobs SET heartbeat_at = $3 WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'cancel_request') RETURNING status")
                .bind(id).bind(worker).bind(now).fetch_optional(pool).await?,
        };
        Ok(row.and_then(|r| Status::parse(&r.get::<String, _>(0))))
    })
}

/// Ends a job this worker runs. `false` if it was no longer this worker's (declared
/// dead meanwhile).
pub async fn finish(
    db: &Db,
    id: &str,
    worker: &str,
    now: i64,
    status: Status,
    progress: &Value,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        Ok(sqlx::query("UPDATE jobs SET status = $3, last_updated = $4, heartbeat_at = $4, progress = $5, error = $6 WHERE id = $1 AND worker_id = $2 AND status IN ('running', 'cancel_request')")
            .bind(id).bind(worker).bind(status.as_str()).bind(now).bind(progress.to_string()).bind(error)
            .execute(pool).await?.rows_affected() == 1)
    })
}

/// Marks `worker_dead` the running jobs whose last heartbeat is older than `dead_after`.
pub async fn reap_dead(db: &Db, now: i64, dead_after: Duration) -> Result<u64, sqlx::Error> {
    let before = now.saturating_sub(dead_after.as_secs() as i64);
    let stale: Vec<(String, Option<String>)> = crate::meta::with_pool!(db, pool => {
        sqlx::query("SELECT id, worker_id FROM jobs WHERE status IN ('running', 'cancel_request') AND COALESCE(heartbeat_at, 0) < $1 LIMIT 100")
            .bind(before).fetch_all(pool).await?.iter().map(|r| (r.get(0), r.get(1))).collect()
    });
    let mut n = 0;
    for (id, worker) in stale {
        let hit = {
            let _w = db.write().await;
            crate::meta::with_pool!(db, pool => {
                sqlx::query("UPDATE jobs SET status = 'worker_dead', last_updated = $2 WHERE id = $1 AND status IN ('running', 'cancel_request') AND COALESCE(heartbeat_at, 0) < $3")
                    .bind(&id).bind(now).bind(before).execute(pool).await?.rows_affected()
            })
        };
        if hit == 1 {
            n += 1;
            tracing::warn!(job = %id, worker = worker.as_deref().unwrap_or(""), "job's worker stopped heartbeating");
            log(
                db,
                &id,
                now,
                &format!("worker {} stopped heartbeating", worker.unwrap_or_default()),
            )
            .await?;
        }
    }
    Ok(n)
}

/// Deletes ended jobs (and their logs) last updated before `before`.
pub async fn purge(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    let _w = db.write().await;
    crate::meta::with_pool!(db, pool => {
        let mut tx = begin_write!(db, pool);
        // Logs first: SQLite may run without foreign-key cascades.
        sqlx::query("DELETE FROM job_logs WHERE job_id IN (SELECT id FROM jobs WHERE status IN ('done', 'error', 'cancel', 'worker_dead') AND last_updated < $1)")
            .bind(before).execute(&mut *tx).await?;
        let n = sqlx::query("DELETE FROM jobs WHERE status IN ('done', 'error', 'cancel', 'worker_dead') AND last_updated < $1")
            .bind(before).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    })
}

/// One scheduler tick: if `action` is due (every `interval`), moves its next run forward
/// and enqueues it (unless one is already waiting or running). Exactly one of several
/// replicas ticking together enqueues. Returns the job enqueued.
pub async fn schedule_tick(
    db: &Db,
    action: &str,
    parameters: &Value,
    interval: Duration,
    now: i64,
) -> Result<Option<Job>, sqlx::Error> {
    let secs = interval.as_secs().min(100 * 365 * 86_400) as i64;
    if secs == 0 {
        return Ok(None);
    }
    let id = new_id();
    let enqueued = {
        let _w = db.write().await;
        crate::meta::with_pool!(db, pool => {
            let mut tx = begin_write!(db, pool);
            // First tick ever: due one interval from now. A shorter interval configured
            // later pulls the next run in.
            sqlx::query("INSERT INTO job_schedules (action, interval_secs, next_run) VALUES ($1, $2, $3) \
                         ON CONFLICT (action) DO UPDATE SET interval_secs = excluded.interval_secs, \
                         next_run = CASE WHEN job_schedules.next_run > excluded.next_run THEN excluded.next_run ELSE job_schedules.next_run END")
                .bind(action).bind(secs).bind(now.saturating_add(secs)).execute(&mut *tx).await?;
            let due = sqlx::query("UPDATE job_schedules SET next_run = $2 WHERE action = $1 AND next_run <= $3")
                .bind(action).bind(now.saturating_add(secs)).bind(now).execute(&mut *tx).await?.rows_affected() == 1;
            let mut enqueued = false;
            if due {
                let busy = sqlx::query("SELECT 1 FROM jobs WHERE action = $1 AND status IN ('waiting', 'running', 'cancel_request') LIMIT 1")
                    .bind(action).fetch_optional(&mut *tx).await?.is_some();
                if !busy {
                    sqlx::query("INSERT INTO jobs (id, action, status, scheduled_at, last_updated, parameters, progress) VALUES ($1, $2, 'waiting', $3, $3, $4, '{}')")
                        .bind(&id).bind(action).bind(now).bind(parameters.to_string()).execute(&mut *tx).await?;
                    sqlx::query("INSERT INTO job_logs (job_id, at, message) VALUES ($1, $2, $3)")
                        .bind(&id).bind(now).bind(format!("{action} job scheduled (every {secs} s)")).execute(&mut *tx).await?;
                    enqueued = true;
                }
            }
            tx.commit().await?;
            enqueued
        })
    };
    if enqueued {
        tracing::info!(job = %id, action, "scheduled job queued");
        get(db, &id).await
    } else {
        Ok(None)
    }
}

// -------------------------------------------------------------------- runner

/// How a runner behaves.
#[derive(Clone, Debug)]
pub struct RunnerSettings {
    /// This worker's id (written on the jobs it claims).
    pub worker_id: String,
    /// Pause between looks at the queue when it is empty (plus up to half of it, random).
    pub poll: Duration,
    /// Heartbeat period while a job runs.
    pub heartbeat: Duration,
    /// A running job without a heartbeat for this long is `worker_dead`.
    pub dead_after: Duration,
    /// Ended jobs are deleted after this long.
    pub keep_finished: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .take(63)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let suffix = &new_id()[..8];
        RunnerSettings {
            worker_id: if host.is_empty() {
                format!("worker-{suffix}")
            } else {
                format!("{host}-{suffix}")
            },
            poll: Duration::from_secs(2),
            heartbeat: Duration::from_secs(10),
            dead_after: Duration::from_secs(120),
            keep_finished: Duration::from_secs(30 * 86_400),
        }
    }
}

/// Runs queued jobs, one at a time, in this process.
#[derive(Clone)]
pub struct Runner {
    db: Db,
    store: Arc<dyn BlobStore>,
    gc: GcSettings,
    settings: RunnerSettings,
    clock: Clock,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("worker_id", &self.settings.worker_id)
            .field("gc", &self.gc)
            .finish_non_exhaustive()
    }
}

/// Reports GC progress to the job: progress JSON and heartbeat after every batch, a log
/// line at every milestone and at most every few seconds otherwise; stops the run when
/// the job was cancelled or taken away.
struct JobProgress {
    db: Db,
    id: String,
    worker: String,
    cancel: CancellationToken,
    clock: Clock,
    last_log: Option<Instant>,
    /// The last counts reported (kept as the job's progress if the run fails).
    last: GcStats,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

#[async_trait]
impl Progress for JobProgress {
    async fn report(&mut self, stats: &GcStats, message: &str, milestone: bool) -> ControlFlow<()> {
        let now = (self.clock)();
        self.last = stats.clone();
        let progress = serde_json::to_value(stats).unwrap_or_else(|_| json!({}));
        match heartbeat(&self.db, &self.id, &self.worker, now, Some(&progress)).await {
            Ok(Some(Status::Running)) => {}
            Ok(_) => self.cancel.cancel(),
            Err(e) => tracing::warn!(job = %self.id, error = %e, "could not record job progress"),
        }
        if milestone
            || self.last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY)
            || self.cancel.is_cancelled()
        {
            self.last_log = Some(Instant::now());
            if let Err(e) = log(&self.db, &self.id, now, message).await {
                tracing::warn!(job = %self.id, error = %e, "could not write the job log");
            }
        }
        if self.cancel.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    let ms = max.as_millis().min(u128::from(u32::MAX)) as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from(u32::from_be_bytes(b)) % ms)
}

impl Runner {
    /// A runner over a database and blob store.
    pub fn new(
        db: Db,
        store: Arc<dyn BlobStore>,
        gc: GcSettings,
        settings: RunnerSettings,
    ) -> Runner {
        Runner {
            db,
            store,
            gc,
            settings,
            clock: gc::system_clock(),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Runner {
        self.clock = clock;
        self
    }

    /// This runner's worker id.
    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Runs forever in a task: reaps dead workers' jobs, claims and runs jobs, purges
    /// old ones.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(worker = %self.settings.worker_id, "job runner started");
            let mut last_purge: Option<Instant> = None;
            loop {
                let now = (self.clock)();
                if let Err(e) = reap_dead(&self.db, now, self.settings.dead_after).await {
                    tracing::warn!(error = %e, "job runner: reaping dead workers failed");
                }
                if last_purge.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                    last_purge = Some(Instant::now());
                    let before = now.saturating_sub(self.settings.keep_finished.as_secs() as i64);
                    match purge(&self.db, before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(jobs = n, "old jobs purged"),
                        Err(e) => tracing::warn!(error = %e, "job runner: purge failed"),
                    }
                }
                match self.run_once().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "job runner: claiming a job failed"),
                }
                tokio::time::sleep(self.settings.poll + jitter(self.settings.poll / 2)).await;
            }
        })
    }

    /// Claims one job and runs it to its end; `None` when nothing was waiting.
    pub async fn run_once(&self) -> Result<Option<Job>, sqlx::Error> {
        let worker = self.settings.worker_id.clone();
        let Some(job) = claim(&self.db, &worker, ACTIONS, (self.clock)()).await? else {
            return Ok(None);
        };
        tracing::info!(job = %job.id, action = %job.action, "job started");
        metrics::counter!("registry_jobs_started_total", "action" => job.action.clone())
            .increment(1);
        log(
            &self.db,
            &job.id,
            (self.clock)(),
            &format!("started on worker {worker}"),
        )
        .await?;
        let cancel = CancellationToken::new();
        let beat = {
            let (db, id, worker, cancel, clock, period) = (
                self.db.clone(),
                job.id.clone(),
                worker.clone(),
                cancel.clone(),
                Arc::clone(&self.clock),
                self.settings.heartbeat,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match heartbeat(&db, &id, &worker, clock(), None).await {
                        Ok(Some(Status::Running)) => {}
                        Ok(_) => cancel.cancel(),
                        Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
                    }
                }
            })
        };
        let outcome = self.execute(&job, cancel.clone()).await;
        beat.abort();
        let now = (self.clock)();
        let (status, progress, error) = match outcome {
            Ok((stats, true)) => (Status::Done, stats, None),
            Ok((stats, false)) => (Status::Cancel, stats, None),
            Err((stats, e)) => (Status::Error, stats, Some(e)),
        };
        let progress = serde_json::to_value(&progress).unwrap_or_else(|_| json!({}));
        let line = match &error {
            Some(e) => format!("failed: {e}"),
            None => format!("ended: {}", status.as_str()),
        };
        log(&self.db, &job.id, now, &line).await?;
        if !finish(
            &self.db,
            &job.id,
            &worker,
            now,
            status,
            &progress,
            error.as_deref(),
        )
        .await?
        {
            tracing::warn!(job = %job.id, "job was taken from this worker before it ended");
        }
        tracing::info!(job = %job.id, status = status.as_str(), "job ended");
        metrics::counter!("registry_jobs_ended_total", "action" => job.action.clone(), "status" => status.as_str())
            .increment(1);
        get(&self.db, &job.id).await
    }

    async fn execute(
        &self,
        job: &Job,
        cancel: CancellationToken,
    ) -> Result<(GcStats, bool), (GcStats, String)> {
        if job.action != ACTION_GC {
            return Err((
                GcStats::default(),
                format!("unknown action {:?}", job.action),
            ));
        }
        let params: GcParameters = serde_json::from_value(job.parameters.clone())
            .map_err(|e| (GcStats::default(), format!("invalid parameters: {e}")))?;
        let settings = params
            .apply(&self.gc)
            .map_err(|e| (GcStats::default(), e))?;
        let mut opts = settings.options();
        opts.dry_run = params.dry_run;
        opts.clock = Arc::clone(&self.clock);
        opts.cancel = cancel.clone();
        let mut progress = JobProgress {
            db: self.db.clone(),
            id: job.id.clone(),
            worker: self.settings.worker_id.clone(),
            cancel,
            clock: Arc::clone(&self.clock),
            last_log: None,
            last: GcStats {
                dry_run: params.dry_run,
                ..GcStats::default()
            },
        };
        match gc::run(&self.db, self.store.as_ref(), &opts, &mut progress).await {
            Ok(report) => Ok((report.stats, report.finished)),
            Err(e) => Err((progress.last, e.to_string())),
        }
    }
}

/// Enqueues `gc` every `interval` (checked every minute at most, or every interval if
/// shorter). Several replicas may run it: one enqueues.
pub fn spawn_scheduler(db: Db, interval: Duration) -> Option<tokio::task::JoinHandle<()>> {
    if interval.is_zero() {
        return None;
    }
    let tick = interval.min(Duration::from_secs(60));
    Some(tokio::spawn(async move {
        loop {
            if let Err(e) =
                schedule_tick(&db, ACTION_GC, &json!({}), interval, crate::meta::now()).await
            {
                tracing::warn!(error = %e, "gc scheduler tick failed");
            }
            tokio::time::sleep(tick + jitter(tick / 10)).await;
        }
    }))
}

/// Starts this process's runner and the `gc` scheduler (per `settings.interval_secs`).
pub fn start(registry: &Registry, settings: &GcSettings) {
    let runner = Runner::new(
        registry.db.clone(),
        Arc::clone(&registry.store),
        settings.clone(),
        RunnerSettings::default(),
    );
    runner.spawn();
    if spawn_scheduler(
        registry.db.clone(),
        Duration::from_secs(settings.interval_secs),
    )
    .is_none()
    {
        tracing::info!("scheduled garbage collection is off (gc.interval_secs = 0)");
    }
}

// -------------------------------------------------------------------- routes

/// An admin API error (`{"errors":[{"code","message"}]}`).
#[derive(Debug)]
enum ApiError {
    Registry(RegistryError),
    Own(StatusCode, &'static str, String),
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ApiError::Registry(e)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Registry(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Registry(e) => e.into_response(),
            ApiError::Own(status, code, message) => (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"errors": [{"code": code, "message": message}]}).to_string(),
            )
                .into_response(),
        }
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::Own(
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
        message.into(),
    )
}

fn no_such_job() -> ApiError {
    ApiError::Own(StatusCode::NOT_FOUND, "NO_SUCH_JOB", "job not found".into())
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// The `/api/v0/jobs` routes.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/api/v0/jobs", routing::get(list_route).post(create_route))
        .route(
            "/api/v0/jobs/{id}",
            routing::get(get_route).delete(cancel_route),
        )
        .route("/api/v0/jobs/{id}/logs", routing::get(logs_route))
        .with_state(registry)
}

async fn admin(reg: &Registry, headers: &HeaderMap) -> Result<(), ApiError> {
    reg.access.check(headers, &[Need::Admin]).await?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    action: Option<String>,
    running: Option<String>,
    worker: Option<String>,
    limit: Option<String>,
}

fn parse_limit(s: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match s {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad_request(format!("limit must be between 1 and {max}"))),
        },
    }
}

async fn list_route(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&reg, &headers).await?;
    let Query(q) = query.map_err(|_| bad_request("malformed query"))?;
    let action = match q.action.as_deref() {
        None | Some("") | Some("any") => None,
        Some(a) if a.len() <= 64 && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Some(a.to_owned())
        }
        Some(_) => return Err(bad_request("invalid action")),
    };
    let running = match q.running.as_deref() {
        None | Some("") | Some("any") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(bad_request("running must be any, true or false")),
    };
    let worker = match q.worker.as_deref() {
        None | Some("") | Some("any") => None,
        Some(w) if w.len() <= 128 => Some(w.to_owned()),
        Some(_) => return Err(bad_request("invalid worker")),
    };
    let limit = parse_limit(q.limit.as_deref(), 100, MAX_LIMIT)?;
    let jobs = list(
        &reg.db,
        &Filter {
            action,
            running,
            worker,
            limit,
        },
    )
    .await?;
    let jobs: Vec<Value> = jobs.iter().map(Job::to_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "jobs": jobs })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    action: String,
    #[serde(default)]
    parameters: Option<Value>,
}

async fn create_route(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    admin(&reg, &headers).await?;
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::Own(
            StatusCode::PAYLOAD_TOO_LARGE,
            "INVALID_PARAMETERS",
            format!("the body is limited to {MAX_BODY} bytes"),
        )
    })?;
    let req: CreateBody =
        serde_json::from_slice(&bytes).map_err(|e| bad_request(format!("invalid job: {e}")))?;
    if !ACTIONS.contains(&req.action.as_str()) {
        return Err(bad_request(format!(
            "unknown action {:?} (known: {})",
            req.action.chars().take(64).collect::<String>(),
            ACTIONS.join(", ")
        )));
    }
    let parameters = req.parameters.unwrap_or_else(|| json!({}));
    let parsed: GcParameters = serde_json::from_value(parameters)
        .map_err(|e| bad_request(format!("invalid parameters: {e}")))?;
    parsed.apply(&GcSettings::default()).map_err(bad_request)?;
    // Store the parameters as understood (normalised), not as sent.
    let parameters = serde_json::to_value(&parsed).unwrap_or_else(|_| json!({}));
    let job = enqueue(&reg.db, &req.action, &parameters, crate::meta::now()).await?;
    tracing::info!(job = %job.id, action = %job.action, "job queued through the API");
    Ok(json_response(StatusCode::ACCEPTED, &job.to_json()))
}

async fn get_route(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&reg, &headers).await?;
    if !valid_id(&id) {
        return Err(no_such_job());
    }
    let job = get(&reg.db, &id).await?.ok_or_else(no_such_job)?;
    Ok(json_response(StatusCode::OK, &job.to_json()))
}

#[derive(Debug, Default, Deserialize)]
struct LogsQuery {
    after: Option<String>,
    limit: Option<String>,
}

async fn logs_route(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    admin(&reg, &headers).await?;
    let Query(q) = query.map_err(|_| bad_request("malformed query"))?;
    if !valid_id(&id) {
        return Err(no_such_job());
    }
    let after = match q.after.as_deref() {
        None | Some("") => 0,
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| bad_request("after must be a log sequence number"))?,
    };
    let limit = parse_limit(q.limit.as_deref(), MAX_LIMIT * 10, MAX_LIMIT * 10)?;
    if get(&reg.db, &id).await?.is_none() {
        return Err(no_such_job());
    }
    let lines = logs(&reg.db, &id, after, limit).await?;
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| json!({"seq": l.seq, "time": rfc3339(l.at), "message": l.message}))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "logs": lines })))
}

async fn cancel_route(
    State(reg): State<Arc<Registry>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&reg, &headers).await?;
    if !valid_id(&id) {
        return Err(no_such_job());
    }
    match cancel(&reg.db, &id, crate::meta::now()).await? {
        CancelOutcome::Unknown => Err(no_such_job()),
        CancelOutcome::Cancelled(job) | CancelOutcome::Requested(job) => {
            Ok(json_response(StatusCode::ACCEPTED, &job.to_json()))
        }
        CancelOutcome::Finished(job) => Err(ApiError::Own(
            StatusCode::CONFLICT,
            "JOB_FINISHED",
            format!("the job has already ended ({})", job.status.as_str()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            Status::Waiting,
            Status::Running,
            Status::Done,
            Status::Error,
            Status::CancelRequest,
            Status::Cancel,
            Status::WorkerDead,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("deleted"), None);
    }

    #[test]
    fn ids_are_checked_before_the_database() {
        assert!(valid_id(&new_id()));
        assert!(!valid_id("../../etc"));
        assert!(!valid_id(&"a".repeat(33)));
        assert!(!valid_id(&"A".repeat(32)));
    }
}
