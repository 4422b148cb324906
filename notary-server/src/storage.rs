//! Metadata storage through sqlx: SQLite (a file in WAL mode, or in memory) by default,
//! PostgreSQL for several replicas. Every update is one transaction that refuses any
//! (gun, role) version not above the stored one, so racing publishers get exactly one
//! winner; on PostgreSQL a per-GUN advisory lock serialises replicas and the unique
//! (gun, role, version) constraint is the last line.
//!
//! The SQL text is shared by both backends (`$N` placeholders work on both).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{PgPool, Row, SqlitePool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored version of some role is already at or above the new one.
    #[error("a newer version of {role} is already stored")]
    Version {
        /// Role.
        role: String,
    },
    /// Database failure.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migration failure.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One stored metadata file.
#[derive(Clone, Debug)]
pub struct StoredFile {
    /// Role name.
    pub role: String,
    /// Version.
    pub version: i64,
    /// Exact bytes (shared, so serving never copies them).
    pub data: bytes::Bytes,
    /// Lower-case hex SHA-256 of `data`.
    pub sha256: String,
    /// When stored.
    pub created_at: OffsetDateTime,
}

/// A file to store.
#[derive(Clone, Debug)]
pub struct NewFile {
    /// Role name.
    pub role: String,
    /// Version.
    pub version: i64,
    /// Exact bytes.
    pub data: Vec<u8>,
}

/// One changefeed row (spec §4.7).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Change {
    /// Row id, as a string like Go.
    #[serde(rename = "ID")]
    pub id: String,
    /// Creation time (RFC 3339).
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    /// GUN.
    #[serde(rename = "GUN")]
    pub gun: String,
    /// Timestamp version (0 for deletions).
    #[serde(rename = "Version")]
    pub version: i64,
    /// Timestamp SHA-256 (empty for deletions).
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// `update` or `deletion`.
    #[serde(rename = "Category")]
    pub category: String,
}

/// A server-held key row (local trust service).
#[derive(Clone, Debug)]
pub struct KeyRow {
    /// Key ID.
    pub key_id: String,
    /// GUN.
    pub gun: String,
    /// Role.
    pub role: String,
    /// `ecdsa` or `ed25519`.
    pub algorithm: String,
    /// Public key JSON bytes (keytype + public).
    pub public: Vec<u8>,
    /// Encrypted PKCS#8 PEM.
    pub sealed: String,
    /// Whether the key has signed anything.
    pub used: bool,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression against whichever pool backs the store.
macro_rules! with_pool {
    ($self:expr, $pool:ident => $e:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $e,
            Backend::Postgres($pool) => $e,
        }
    };
}

macro_rules! file_from_row {
    ($row:expr) => {
        StoredFile {
            role: $row.try_get("role")?,
            version: $row.try_get("version")?,
            data: bytes::Bytes::from($row.try_get::<Vec<u8>, _>("data")?),
            sha256: $row.try_get("sha256")?,
            created_at: parse_time(&$row.try_get::<String, _>("created_at")?),
        }
    };
}

macro_rules! key_from_row {
    ($r:expr) => {
        KeyRow {
            key_id: $r.try_get("key_id")?,
            gun: $r.try_get("gun")?,
            role: $r.try_get("role")?,
            algorithm: $r.try_get("algorithm")?,
            public: $r.try_get("public")?,
            sealed: $r.try_get("sealed")?,
            used: $r.try_get::<Option<String>, _>("last_used")?.is_some(),
        }
    };
}

macro_rules! change_from_row {
    ($r:expr) => {
        Change {
            id: $r.try_get::<i64, _>("id")?.to_string(),
            created_at: $r.try_get("created_at")?,
            gun: $r.try_get("gun")?,
            version: $r.try_get("version")?,
            sha256: $r.try_get("sha256")?,
            category: $r.try_get("category")?,
        }
    };
}

/// A unique-constraint violation means a racing writer stored the same version first.
fn unique_to_version(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Version {
            role: String::new(),
        },
        _ => StoreError::Db(e),
    }
}

/// `SELECT role, MAX(version)` for `n` roles of one GUN (`$1`), roles bound as `$2…`:
/// one index lookup per role, in one statement (one round trip).
fn max_versions_sql(n: usize) -> String {
    (0..n)
        .map(|i| {
            let p = i + 2;
            format!(
                "SELECT CAST(${p} AS TEXT) AS role, (SELECT MAX(version) FROM tuf_files WHERE gun = $1 AND role = ${p}) AS v"
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// One multi-row `INSERT` of `n` files (7 parameters per row).
fn insert_files_sql(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let b = i * 7;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            )
        })
        .collect();
    format!(
        "INSERT INTO tuf_files (created_at, updated_at, gun, role, version, data, sha256) VALUES {}",
        rows.join(", ")
    )
}

/// The query of [`insert_files_sql`] with every file's values bound.
macro_rules! insert_files_query {
    ($sql:expr, $gun:expr, $files:expr, $now:expr, $shas:expr) => {{
        let mut q = sqlx::query($sql);
        for (f, sha) in $files.iter().zip($shas) {
            q = q
                .bind($now)
                .bind($now)
                .bind($gun)
                .bind(&f.role)
                .bind(f.version)
                .bind(&f.data)
                .bind(sha);
        }
        q
    }};
}

/// Version checks and inserts of one update, inside an open transaction: three
/// statements whatever the number of files (each statement is a round trip).
macro_rules! commit_rows {
    ($conn:expr, $gun:expr, $files:expr) => {{
        async {
            let files: &[NewFile] = $files;
            if files.is_empty() {
                return Ok(());
            }
            let now = now_text();
            let sql = max_versions_sql(files.len());
            let mut q = sqlx::query(&sql).bind($gun);
            for f in files {
                q = q.bind(&f.role);
            }
            let rows = q.fetch_all(&mut *$conn).await?;
            let mut max = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                if let Some(v) = r.try_get::<Option<i64>, _>("v")? {
                    max.insert(r.try_get::<String, _>("role")?, v);
                }
            }
            if let Some(f) = files.iter().find(|f| max.get(&f.role).is_some_and(|m| *m >= f.version)) {
                return Err(StoreError::Version { role: f.role.clone() });
            }
            let shas: Vec<String> = files.iter().map(|f| sha256_hex(&f.data)).collect();
            let sql = insert_files_sql(files.len());
            insert_files_query!(&sql, $gun, files, &now, &shas)
                .execute(&mut *$conn)
                .await
                .map_err(unique_to_version)?;
            if let Some((f, sha)) = files.iter().zip(&shas).find(|(f, _)| f.role == "timestamp") {
                sqlx::query("INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES ($1, $2, $3, $4, 'update')")
                    .bind(&now)
                    .bind($gun)
                    .bind(f.version)
                    .bind(sha)
                    .execute(&mut *$conn)
                    .await?;
            }
            Ok::<(), StoreError>(())
        }
        .await
    }};
}

/// The metadata store.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// SQLite has a single writer. Queuing writers here, in process, avoids SQLite's
    /// busy handler, which sleeps in steps of up to 100 ms and made parallel updates
    /// to different GUNs slower than sequential ones.
    writes: Arc<Writes>,
}

/// Serialises writers of one store and counts its commits (for the checkpoint task).
#[derive(Debug, Default)]
struct Writes {
    gate: tokio::sync::Mutex<()>,
    commits: std::sync::atomic::AtomicU64,
}

impl Writes {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let guard = self.gate.lock().await;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        guard
    }
}

fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Copies the WAL back into the database file twice a second after writes, while the
/// store is in use.
/// PASSIVE never blocks readers or the writer; a checkpoint that cannot finish (a reader
/// still needs old frames) simply continues next time.
async fn checkpoint_loop(pool: SqlitePool, writes: Arc<Writes>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = 0_u64;
    loop {
        tick.tick().await;
        // Stop with the store: closed pool, or every Store clone dropped.
        if pool.is_closed() || Arc::strong_count(&writes) == 1 {
            return;
        }
        let n = writes.commits.load(std::sync::atomic::Ordering::Relaxed);
        if n == seen {
            continue;
        }
        seen = n;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(notary_core::crypto::sha256(data))
}

impl Store {
    /// Opens (creating if needed) a SQLite database file, in WAL mode, and migrates it.
    pub async fn open_sqlite(path_or_url: &str) -> Result<Self, StoreError> {
        let opts = notary_daemon::sqlite_options(path_or_url)?
            .foreign_keys(true)
            // Hot metadata is served from the service's cache; a small page cache per
            // connection keeps memory down.
            .pragma("cache_size", "-1024")
            // Checkpoints run in the background (below), not inside the commit that
            // crosses the threshold; this large threshold is only the safety net.
            .pragma("wal_autocheckpoint", "8192");
        // SQLite has one writer; reads are mostly cache hits. Four connections (each with
        // its own worker thread) are plenty.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let store = Self::migrated(pool.clone()).await?;
        tokio::spawn(checkpoint_loop(pool, Arc::clone(&store.writes)));
        Ok(store)
    }

    /// Connects to PostgreSQL (`postgres://…`) and migrates the schema.
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            writes: Arc::default(),
        })
    }

    /// Whether several server processes may share this store (cache invalidation then
    /// follows the changefeed).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// A private in-memory database (the `memory` backend).
    pub async fn memory() -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every in-memory connection would be its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts)
            .await?;
        Self::migrated(pool).await
    }

    async fn migrated(pool: SqlitePool) -> Result<Self, StoreError> {
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
            writes: Arc::default(),
        })
    }

    /// The highest stored version of a role.
    pub async fn latest(&self, gun: &str, role: &str) -> Result<Option<StoredFile>, StoreError> {
        const Q: &str = "SELECT role, version, data, sha256, created_at FROM tuf_files WHERE gun = $1 AND role = $2 ORDER BY version DESC LIMIT 1";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(gun).bind(role).fetch_optional(pool).await? {
                Some(row) => Ok(Some(file_from_row!(row))),
                None => Ok(None),
            }
        })
    }

    /// A role's file by SHA-256 (lower-case hex).
    pub async fn by_checksum(
        &self,
        gun: &str,
        role: &str,
        sha256: &str,
    ) -> Result<Option<StoredFile>, StoreError> {
        const Q: &str = "SELECT role, version, data, sha256, created_at FROM tuf_files WHERE gun = $1 AND role = $2 AND sha256 = $3 ORDER BY version DESC LIMIT 1";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(gun).bind(role).bind(sha256).fetch_optional(pool).await? {
                Some(row) => Ok(Some(file_from_row!(row))),
                None => Ok(None),
            }
        })
    }

    /// A role's file by version.
    pub async fn by_version(
        &self,
        gun: &str,
        role: &str,
        version: i64,
    ) -> Result<Option<StoredFile>, StoreError> {
        const Q: &str = "SELECT role, version, data, sha256, created_at FROM tuf_files WHERE gun = $1 AND role = $2 AND version = $3";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(gun).bind(role).bind(version).fetch_optional(pool).await? {
                Some(row) => Ok(Some(file_from_row!(row))),
                None => Ok(None),
            }
        })
    }

    /// Stores files atomically; a timestamp among them also appends a changefeed row.
    /// Fails with [`StoreError::Version`] if any (gun, role) already has an equal or
    /// higher version; then nothing is stored.
    pub async fn commit(&self, gun: &str, files: &[NewFile]) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                if files.is_empty() {
                    return Ok(());
                }
                let _writer = self.writes.lock().await;
                // One statement, so one implicit transaction and one round trip: the
                // triggers of migration 0002 refuse non-increasing versions (aborting
                // the whole statement) and append the changefeed row.
                let now = now_text();
                let shas: Vec<String> = files.iter().map(|f| sha256_hex(&f.data)).collect();
                let sql = insert_files_sql(files.len());
                let q = insert_files_query!(&sql, gun, files, &now, &shas);
                q.execute(pool).await.map_err(|e| match &e {
                    sqlx::Error::Database(d)
                        if d.message().contains("notary: version conflict") =>
                    {
                        StoreError::Version {
                            role: String::new(),
                        }
                    }
                    _ => unique_to_version(e),
                })?;
                Ok(())
            }
            Backend::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Serialises updates of one GUN across replicas.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(gun)
                    .execute(&mut *tx)
                    .await?;
                commit_rows!(&mut *tx, gun, files)?;
                tx.commit().await.map_err(unique_to_version)?;
                Ok(())
            }
        }
    }

    /// Deletes every version of every role of `gun`; appends a `deletion` changefeed row
    /// if anything was deleted. Returns whether anything was.
    pub async fn delete_gun(&self, gun: &str) -> Result<bool, StoreError> {
        let _writer = match self.backend {
            Backend::Sqlite(_) => Some(self.writes.lock().await),
            Backend::Postgres(_) => None,
        };
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("DELETE FROM tuf_files WHERE gun = $1").bind(gun).execute(&mut *tx).await?.rows_affected();
            if n > 0 {
                sqlx::query("INSERT INTO changefeed (created_at, gun, version, sha256, category) VALUES ($1, $2, 0, '', 'deletion')")
                    .bind(now_text())
                    .bind(gun)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n > 0)
        })
    }

    /// Changefeed page (spec §4.7): forward from `change_id` when `records > 0` and
    /// `change_id >= 0`, else the newest `|records|` before `change_id` (oldest first).
    pub async fn changefeed(
        &self,
        gun: Option<&str>,
        change_id: i64,
        records: i64,
    ) -> Result<Vec<Change>, StoreError> {
        let records = if records == 0 { 100 } else { records };
        let limit = records.unsigned_abs().min(10_000) as i64;
        let forward = change_id >= 0 && records > 0;
        let bound = if forward || change_id > 0 {
            change_id
        } else {
            i64::MAX
        };
        let (cmp, order) = if forward { (">", "ASC") } else { ("<", "DESC") };
        let sql = match gun {
            Some(_) => format!(
                "SELECT id, created_at, gun, version, sha256, category FROM changefeed WHERE id {cmp} $1 AND gun = $2 ORDER BY id {order} LIMIT $3"
            ),
            None => format!(
                "SELECT id, created_at, gun, version, sha256, category FROM changefeed WHERE id {cmp} $1 ORDER BY id {order} LIMIT $2"
            ),
        };
        let mut out: Vec<Change> = with_pool!(self, pool => {
            let mut q = sqlx::query(&sql).bind(bound);
            if let Some(g) = gun {
                q = q.bind(g);
            }
            let rows = q.bind(limit).fetch_all(pool).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push(change_from_row!(r));
            }
            v
        });
        if !forward {
            out.reverse();
        }
        Ok(out)
    }

    /// Changefeed rows after `after`: (id, gun), for cache invalidation across replicas.
    pub async fn changes_after(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        const Q: &str = "SELECT id, gun FROM changefeed WHERE id > $1 ORDER BY id ASC LIMIT 10000";
        with_pool!(self, pool => {
            let rows = sqlx::query(Q).bind(after).fetch_all(pool).await?;
            let mut v = Vec::with_capacity(rows.len());
            for r in &rows {
                v.push((r.try_get::<i64, _>("id")?, r.try_get::<String, _>("gun")?));
            }
            Ok(v)
        })
    }

    /// The newest changefeed id (0 when empty).
    pub async fn last_change(&self) -> Result<i64, StoreError> {
        const Q: &str = "SELECT COALESCE(MAX(id), 0) FROM changefeed";
        with_pool!(self, pool => Ok(sqlx::query_scalar::<_, i64>(Q).fetch_one(pool).await?))
    }

    /// A cheap query proving the database answers.
    pub async fn health(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'tuf_files'",
                )
                .fetch_one(pool)
                .await?;
            }
            Backend::Postgres(pool) => {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'tuf_files'",
                )
                .fetch_one(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Stores a new server key.
    pub async fn insert_key(&self, k: &KeyRow) -> Result<(), StoreError> {
        const Q: &str = "INSERT INTO server_keys (key_id, gun, role, algorithm, public, sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        with_pool!(self, pool => {
            sqlx::query(Q)
                .bind(&k.key_id)
                .bind(&k.gun)
                .bind(&k.role)
                .bind(&k.algorithm)
                .bind(&k.public)
                .bind(&k.sealed)
                .bind(now_text())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A server key by ID.
    pub async fn key(&self, key_id: &str) -> Result<Option<KeyRow>, StoreError> {
        const Q: &str = "SELECT * FROM server_keys WHERE key_id = $1";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(key_id).fetch_optional(pool).await? {
                Some(r) => Ok(Some(key_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// A never-used key for (gun, role, algorithm), if any (reused by create, as Go's signer does).
    pub async fn unused_key(
        &self,
        gun: &str,
        role: &str,
        algorithm: &str,
    ) -> Result<Option<KeyRow>, StoreError> {
        const Q: &str = "SELECT * FROM server_keys WHERE gun = $1 AND role = $2 AND algorithm = $3 AND last_used IS NULL ORDER BY created_at LIMIT 1";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(gun).bind(role).bind(algorithm).fetch_optional(pool).await? {
                Some(r) => Ok(Some(key_from_row!(r))),
                None => Ok(None),
            }
        })
    }

    /// Records the first use of a key.
    pub async fn mark_key_used(&self, key_id: &str) -> Result<(), StoreError> {
        const Q: &str =
            "UPDATE server_keys SET last_used = $1 WHERE key_id = $2 AND last_used IS NULL";
        with_pool!(self, pool => {
            sqlx::query(Q).bind(now_text()).bind(key_id).execute(pool).await?;
        });
        Ok(())
    }

    /// The GUN and role a remote signer's key was created for, if recorded.
    pub async fn key_scope(&self, key_id: &str) -> Result<Option<(String, String)>, StoreError> {
        const Q: &str = "SELECT gun, role FROM remote_key_scopes WHERE key_id = $1";
        with_pool!(self, pool => {
            match sqlx::query(Q).bind(key_id).fetch_optional(pool).await? {
                Some(r) => Ok(Some((r.try_get("gun")?, r.try_get("role")?))),
                None => Ok(None),
            }
        })
    }

    /// Records the GUN and role of a remote signer's key (first record wins: a key keeps
    /// the scope it was created for).
    pub async fn insert_key_scope(
        &self,
        key_id: &str,
        gun: &str,
        role: &str,
    ) -> Result<(), StoreError> {
        const Q: &str = "INSERT INTO remote_key_scopes (key_id, gun, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING";
        with_pool!(self, pool => {
            sqlx::query(Q)
                .bind(key_id)
                .bind(gun)
                .bind(role)
                .bind(now_text())
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
