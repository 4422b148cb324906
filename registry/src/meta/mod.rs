//! The registry's metadata database (sqlx): repositories, blobs and which repositories
//! may serve them, manifests (kept whole), their references, tags, upload sessions and
//! objects queued for deletion. SQLite (one file, the default) or PostgreSQL (shared by
//! replicas); the same SQL runs on both.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

use crate::names::Digest;

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same expression against whichever pool backs the database.
#[macro_export]
#[doc(hidden)]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $e:expr) => {
        match $db.backend() {
            $crate::meta::Backend::Sqlite($pool) => $e,
            $crate::meta::Backend::Postgres($pool) => $e,
        }
    };
}
pub use with_pool;

/// The metadata database.
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    /// SQLite has a single writer: writers queue here, in process, rather than in
    /// SQLite's sleeping busy handler.
    writes: Arc<tokio::sync::Mutex<()>>,
}

/// A write permit (a no-op on PostgreSQL).
pub struct WriteGuard<'a>(#[allow(dead_code)] Option<tokio::sync::MutexGuard<'a, ()>>);

/// Current Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A blob a repository may serve.
#[derive(Clone, Debug)]
pub struct BlobRow {
    /// Size in bytes.
    pub size: i64,
    /// Object key in the blob store (`inline:<digest>` for blobs kept in the database).
    pub location: String,
    /// The bytes of an inline blob.
    pub data: Option<bytes::Bytes>,
}

/// The location prefix of blobs kept in the database.
pub const INLINE: &str = "inline:";

/// Whether a location names a blob kept in the database (no object to read or delete).
pub fn is_inline(location: &str) -> bool {
    location.starts_with(INLINE)
}

fn blob_row(size: i64, location: String, data: Option<Vec<u8>>) -> BlobRow {
    BlobRow {
        size,
        location,
        data: data.map(bytes::Bytes::from),
    }
}

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct ManifestRow {
    /// Its digest.
    pub digest: String,
    /// Stored media type.
    pub media_type: String,
    /// The exact bytes.
    pub body: bytes::Bytes,
}

/// An upload session.
#[derive(Clone, Debug)]
pub struct UploadRow {
    /// Session id.
    pub id: String,
    /// Repository it was opened in.
    pub repository: String,
    /// Digest algorithm being computed.
    pub algorithm: String,
    /// Bytes received.
    pub size: i64,
    /// Saved hash state.
    pub hash_state: Vec<u8>,
    /// The blob store's state for this upload.
    pub backend_state: String,
    /// Last change (Unix seconds).
    pub updated_at: i64,
}

/// A manifest about to be stored.
#[derive(Clone, Debug)]
pub struct NewManifest {
    /// Digest of the bytes.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// `artifactType` for the referrers API (or the config media type of an image).
    pub artifact_type: Option<String>,
    /// `subject.digest`.
    pub subject: Option<String>,
    /// `annotations` as JSON text.
    pub annotations: Option<String>,
    /// The bytes.
    pub body: bytes::Bytes,
    /// Blobs that must be present in the repository.
    pub required_blobs: Vec<String>,
    /// Blobs referenced but not required (non-distributable layers).
    pub optional_blobs: Vec<String>,
    /// Child manifests (index entries).
    pub children: Vec<String>,
    /// Whether child manifests must already exist (non-sparse index).
    pub children_required: bool,
}

/// Why a manifest was not stored.
#[derive(Debug)]
pub enum PutManifestError {
    /// Referenced content missing from the repository.
    Missing(Vec<String>),
    /// Database failure.
    Db(sqlx::Error),
}

impl From<sqlx::Error> for PutManifestError {
    fn from(e: sqlx::Error) -> Self {
        PutManifestError::Db(e)
    }
}

/// A referrer (a manifest whose `subject` is some digest).
#[derive(Clone, Debug)]
pub struct Referrer {
    /// Digest.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// Size.
    pub size: i64,
    /// Artifact type.
    pub artifact_type: Option<String>,
    /// Annotations JSON.
    pub annotations: Option<String>,
}

/// References checked or inserted per statement when a manifest is stored.
const CHECK_BATCH: usize = 500;

/// `$first, $first+1, …` for `n` parameters.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// PostgreSQL connections per process: `NOTARY_REGISTRY_DB_POOL` (1-256), default 16.
fn pg_pool_size() -> u32 {
    std::env::var("NOTARY_REGISTRY_DB_POOL")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (1..=256).contains(n))
        .unwrap_or(16)
}

/// Copies the WAL back into the database file twice a second while there are writes
/// (PASSIVE: never blocks readers or the writer), so no request pays for a checkpoint.
async fn checkpoint_loop(pool: SqlitePool, writes: std::sync::Weak<tokio::sync::Mutex<()>>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() || writes.strong_count() == 0 {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

impl Db {
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Opens (creating if needed) a SQLite database file and migrates it.
    pub async fn open_sqlite(path: &str) -> Result<Db, sqlx::Error> {
        let opts = notary_daemon::sqlite_options(path)?
            .foreign_keys(true)
            .pragma("cache_size", "-4096")
            // Checkpoints run in the background (below), not inside the commit that
            // crosses the threshold; this large threshold is only the safety net.
            .pragma("wal_autocheckpoint", "16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let db = Db {
            backend: Backend::Sqlite(pool.clone()),
            writes: Arc::default(),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(checkpoint_loop(pool, Arc::downgrade(&db.writes)));
        }
        Ok(db)
    }

    /// Connects to PostgreSQL and migrates the schema (migrations take an advisory
    /// lock, so replicas starting together migrate once).
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Db, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Db {
            backend: Backend::Postgres(pool),
            writes: Arc::default(),
        })
    }

    /// Opens `url`: `postgres://…` / `postgresql://…`, or a SQLite path / `sqlite:` URL.
    pub async fn open(url: &str) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::open_postgres(url, pg_pool_size()).await
        } else {
            Db::open_sqlite(url).await
        }
    }

    /// Whether several processes share this database.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Takes the write permit (SQLite's single writer).
    pub async fn write(&self) -> WriteGuard<'_> {
        match self.backend {
            Backend::Sqlite(_) => WriteGuard(Some(self.writes.lock().await)),
            Backend::Postgres(_) => WriteGuard(None),
        }
    }

    /// A cheap liveness query.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    // ---------------------------------------------------------------- repositories

    /// The id of a repository, if it exists.
    pub async fn repository_id(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        const Q: &str = "SELECT id FROM repositories WHERE name = $1";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(name).fetch_optional(pool).await?.map(|r| r.get::<i64, _>(0)))
        })
    }

    /// The id of a repository, creating it.
    pub async fn ensure_repository(&self, name: &str) -> Result<i64, sqlx::Error> {
        if let Some(id) = self.repository_id(name).await? {
            return Ok(id);
        }
        let _w = self.write().await;
        const INS: &str = "INSERT INTO repositories (name, public, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
        with_pool!(self, pool => {
            sqlx::query(INS).bind(name).bind(false).bind(now()).execute(pool).await?;
        });
        self.repository_id(name)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// Whether anonymous callers may pull the repository.
    pub async fn is_public(&self, name: &str) -> Result<bool, sqlx::Error> {
        const Q: &str = "SELECT public FROM repositories WHERE name = $1";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(name).fetch_optional(pool).await?.map(|r| r.get::<bool, _>(0)).unwrap_or(false))
        })
    }

    /// Marks a repository public or private (creating it).
    pub async fn set_public(&self, name: &str, public: bool) -> Result<(), sqlx::Error> {
        self.ensure_repository(name).await?;
        let _w = self.write().await;
        const Q: &str = "UPDATE repositories SET public = $1 WHERE name = $2";
        with_pool!(self, pool => sqlx::query(Q).bind(public).bind(name).execute(pool).await.map(|_| ()))
    }

    /// Repository names in byte order, strictly after `last`, at most `n`.
    pub async fn catalog(&self, last: &str, n: i64) -> Result<Vec<String>, sqlx::Error> {
        // Byte order on both: SQLite's default collation, PostgreSQL's "C".
        let q = match &self.backend {
            Backend::Sqlite(_) => {
                "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"
            }
            Backend::Postgres(_) => {
                "SELECT name FROM repositories WHERE name COLLATE \"C\" > $1 ORDER BY name COLLATE \"C\" LIMIT $2"
            }
        };
        with_pool!(self, pool => {
            Ok(sqlx::query(q).bind(last).bind(n).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    // ---------------------------------------------------------------- blobs

    /// A blob as served by one repository (`None` unless linked there).
    pub async fn repository_blob(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<BlobRow>, sqlx::Error> {
        const Q: &str = "SELECT b.size, b.location, b.data FROM blobs b JOIN repository_blobs rb ON rb.digest = b.digest JOIN repositories r ON r.id = rb.repository_id WHERE r.name = $1 AND b.digest = $2";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).fetch_optional(pool).await?.map(|r| blob_row(r.get(0), r.get(1), r.get(2))))
        })
    }

    /// A blob anywhere in the registry.
    pub async fn blob(&self, digest: &str) -> Result<Option<BlobRow>, sqlx::Error> {
        const Q: &str = "SELECT size, location, data FROM blobs WHERE digest = $1";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(digest).fetch_optional(pool).await?.map(|r| blob_row(r.get(0), r.get(1), r.get(2))))
        })
    }

    /// Links an existing blob into a repository (a mount). `false` if the blob is gone.
    pub async fn link_blob(&self, repo: &str, digest: &str) -> Result<bool, sqlx::Error> {
        let repo_id = self.ensure_repository(repo).await?;
        let _w = self.write().await;
        const Q: &str = "INSERT INTO repository_blobs (repository_id, digest, created_at) SELECT $1, digest, $3 FROM blobs WHERE digest = $2 ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at";
        match &self.backend {
            Backend::Sqlite(pool) => Ok(sqlx::query(Q)
                .bind(repo_id)
                .bind(digest)
                .bind(now())
                .execute(pool)
                .await?
                .rows_affected()
                > 0),
            Backend::Postgres(pool) => {
                // Lock the blob row first, so a concurrent GC sweep cannot delete it between
                // the check and the link.
                let mut tx = pool.begin().await?;
                if sqlx::query("SELECT 1 FROM blobs WHERE digest = $1 FOR SHARE")
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_none()
                {
                    return Ok(false);
                }
                let n = sqlx::query(Q)
                    .bind(repo_id)
                    .bind(digest)
                    .bind(now())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(n > 0)
            }
        }
    }

    /// Removes a blob from a repository (storage is reclaimed by GC). `false` if it was
    /// not linked.
    pub async fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool, sqlx::Error> {
        let _w = self.write().await;
        const Q: &str = "DELETE FROM repository_blobs WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).execute(pool).await?.rows_affected() > 0)
        })
    }

    /// Records a finished upload: the blob row (unless the digest is already stored, in
    /// which case `location` is queued for deletion and the existing copy is used), the
    /// link into `repo`, and the end of the session — one transaction. Returns the
    /// location that now serves the digest. With `data`, the blob is kept inline
    /// (`location` is then ignored).
    pub async fn commit_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: i64,
        location: &str,
        upload_id: &str,
        data: Option<&[u8]>,
    ) -> Result<String, sqlx::Error> {
        let repo_id = self.ensure_repository(repo).await?;
        let digest = digest.to_string();
        let inline_location = format!("{INLINE}{digest}");
        let location = if data.is_some() {
            inline_location.as_str()
        } else {
            location
        };
        let now = now();
        let _w = self.write().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // DO UPDATE (a no-op) rather than DO NOTHING: it locks an existing row, so a
            // concurrent GC sweep cannot delete it under the link inserted below.
            let served: String = sqlx::query("INSERT INTO blobs (digest, size, location, created_at, data) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (digest) DO UPDATE SET size = blobs.size RETURNING location")
                .bind(&digest).bind(size).bind(location).bind(now).bind(data)
                .fetch_one(&mut *tx).await?.get(0);
            if served != location && !is_inline(location) {
                sqlx::query("INSERT INTO pending_deletes (location, queued_at) VALUES ($1, $2) ON CONFLICT (location) DO NOTHING")
                    .bind(location).bind(now).execute(&mut *tx).await?;
            }
            sqlx::query("INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT (repository_id, digest) DO UPDATE SET created_at = excluded.created_at")
                .bind(repo_id).bind(&digest).bind(now).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM uploads WHERE id = $1").bind(upload_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(served)
        })
    }

    // ---------------------------------------------------------------- uploads

    /// Opens an upload session.
    pub async fn create_upload(&self, row: &UploadRow) -> Result<(), sqlx::Error> {
        let _w = self.write().await;
        const Q: &str = "INSERT INTO uploads (id, repository, algorithm, size, hash_state, backend_state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)";
        with_pool!(self, pool => {
            sqlx::query(Q).bind(&row.id).bind(&row.repository).bind(&row.algorithm).bind(row.size)
                .bind(&row.hash_state).bind(&row.backend_state).bind(now()).execute(pool).await.map(|_| ())
        })
    }

    /// An upload session.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>, sqlx::Error> {
        const Q: &str = "SELECT id, repository, algorithm, size, hash_state, backend_state, updated_at FROM uploads WHERE id = $1";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(id).fetch_optional(pool).await?.map(|r| UploadRow {
                id: r.get(0), repository: r.get(1), algorithm: r.get(2), size: r.get(3),
                hash_state: r.get(4), backend_state: r.get(5), updated_at: r.get(6),
            }))
        })
    }

    /// Advances a session from `expected_size` (compare-and-set: `false` when another
    /// request moved it first).
    pub async fn advance_upload(
        &self,
        id: &str,
        expected_size: i64,
        size: i64,
        hash_state: &[u8],
        backend_state: &str,
    ) -> Result<bool, sqlx::Error> {
        let _w = self.write().await;
        const Q: &str = "UPDATE uploads SET size = $3, hash_state = $4, backend_state = $5, updated_at = $6 WHERE id = $1 AND size = $2";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(id).bind(expected_size).bind(size).bind(hash_state).bind(backend_state).bind(now())
                .execute(pool).await?.rows_affected() == 1)
        })
    }

    /// Ends a session without a blob.
    pub async fn delete_upload(&self, id: &str) -> Result<bool, sqlx::Error> {
        let _w = self.write().await;
        with_pool!(self, pool => {
            Ok(sqlx::query("DELETE FROM uploads WHERE id = $1").bind(id).execute(pool).await?.rows_affected() == 1)
        })
    }

    /// Sessions not touched since `before` (for expiry).
    pub async fn stale_uploads(
        &self,
        before: i64,
        limit: i64,
    ) -> Result<Vec<UploadRow>, sqlx::Error> {
        const Q: &str = "SELECT id, repository, algorithm, size, hash_state, backend_state, updated_at FROM uploads WHERE updated_at < $1 ORDER BY updated_at LIMIT $2";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(before).bind(limit).fetch_all(pool).await?.into_iter().map(|r| UploadRow {
                id: r.get(0), repository: r.get(1), algorithm: r.get(2), size: r.get(3),
                hash_state: r.get(4), backend_state: r.get(5), updated_at: r.get(6),
            }).collect())
        })
    }

    // ---------------------------------------------------------------- manifests

    /// Stores a manifest and points `tags` at it, after checking in the same transaction
    /// that everything it requires is present in the repository.
    pub async fn put_manifest(
        &self,
        repo: &str,
        m: &NewManifest,
        tags: &[String],
    ) -> Result<(), PutManifestError> {
        let repo_id = self.ensure_repository(repo).await?;
        let now = now();
        let _w = self.write().await;
        let pg = self.is_shared();
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // Lock the blob rows we depend on (PostgreSQL: FOR SHARE) so a concurrent GC
            // sweep cannot delete them between this check and our commit. Batched: a
            // statement per 500 references, not per reference.
            let mut present = std::collections::HashSet::new();
            for chunk in m.required_blobs.chunks(CHECK_BATCH) {
                let q = if pg {
                    format!("SELECT rb.digest FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = $1 AND rb.digest IN ({}) FOR SHARE OF b", placeholders(2, chunk.len()))
                } else {
                    format!("SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest IN ({})", placeholders(2, chunk.len()))
                };
                let mut query = sqlx::query(&q).bind(repo_id);
                for d in chunk {
                    query = query.bind(d);
                }
                present.extend(query.fetch_all(&mut *tx).await?.iter().map(|r| r.get::<String, _>(0)));
            }
            let mut missing: Vec<String> = m.required_blobs.iter().filter(|d| !present.contains(*d)).cloned().collect();
            if m.children_required {
                let mut found = std::collections::HashSet::new();
                for chunk in m.children.chunks(CHECK_BATCH) {
                    let q = format!("SELECT digest FROM manifests WHERE repository_id = $1 AND digest IN ({})", placeholders(2, chunk.len()));
                    let mut query = sqlx::query(&q).bind(repo_id);
                    for d in chunk {
                        query = query.bind(d);
                    }
                    found.extend(query.fetch_all(&mut *tx).await?.iter().map(|r| r.get::<String, _>(0)));
                }
                missing.extend(m.children.iter().filter(|d| !found.contains(*d)).cloned());
            }
            if !missing.is_empty() {
                return Err(PutManifestError::Missing(missing));
            }
            let inserted = sqlx::query("INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repository_id, digest) DO NOTHING")
                .bind(repo_id).bind(&m.digest).bind(&m.media_type).bind(&m.artifact_type).bind(&m.subject)
                .bind(&m.annotations).bind(m.body.len() as i64).bind(m.body.as_ref()).bind(now)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if inserted {
                let refs: Vec<(&String, &str)> = m.required_blobs.iter().chain(&m.optional_blobs).map(|d| (d, "blob"))
                    .chain(m.children.iter().map(|d| (d, "manifest"))).collect();
                for chunk in refs.chunks(CHECK_BATCH) {
                    let rows: Vec<String> = (0..chunk.len()).map(|i| format!("($1, $2, ${}, ${})", 3 + 2 * i, 4 + 2 * i)).collect();
                    let q = format!("INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, kind) VALUES {} ON CONFLICT DO NOTHING", rows.join(", "));
                    let mut query = sqlx::query(&q).bind(repo_id).bind(&m.digest);
                    for (d, kind) in chunk {
                        query = query.bind(*d).bind(*kind);
                    }
                    query.execute(&mut *tx).await?;
                }
            }
            for t in tags {
                sqlx::query("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (repository_id, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at")
                    .bind(repo_id).bind(t).bind(&m.digest).bind(now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// A manifest by digest.
    pub async fn manifest(
        &self,
        repo: &str,
        digest: &str,
    ) -> Result<Option<ManifestRow>, sqlx::Error> {
        const Q: &str = "SELECT m.digest, m.media_type, m.body FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).fetch_optional(pool).await?.map(|r| ManifestRow {
                digest: r.get(0), media_type: r.get(1), body: bytes::Bytes::from(r.get::<Vec<u8>, _>(2)),
            }))
        })
    }

    /// The manifest a tag points at.
    pub async fn tagged_manifest(
        &self,
        repo: &str,
        tag: &str,
    ) -> Result<Option<ManifestRow>, sqlx::Error> {
        const Q: &str = "SELECT m.digest, m.media_type, m.body FROM tags t JOIN repositories r ON r.id = t.repository_id JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest WHERE r.name = $1 AND t.name = $2";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(tag).fetch_optional(pool).await?.map(|r| ManifestRow {
                digest: r.get(0), media_type: r.get(1), body: bytes::Bytes::from(r.get::<Vec<u8>, _>(2)),
            }))
        })
    }

    /// Deletes a manifest and every tag pointing at it. `false` if it was not there.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<bool, sqlx::Error> {
        let _w = self.write().await;
        const Q: &str = "DELETE FROM manifests WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).execute(pool).await?.rows_affected() > 0)
        })
    }

    /// Deletes one tag. `false` if it was not there.
    pub async fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, sqlx::Error> {
        let _w = self.write().await;
        const Q: &str = "DELETE FROM tags WHERE name = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(tag).execute(pool).await?.rows_affected() > 0)
        })
    }

    /// Tags of a repository in byte order, strictly after `last`, at most `n`.
    pub async fn tags(&self, repo_id: i64, last: &str, n: i64) -> Result<Vec<String>, sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(pool) => Ok(sqlx::query("SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3")
                .bind(repo_id).bind(last).bind(n).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect()),
            Backend::Postgres(pool) => Ok(sqlx::query("SELECT name FROM tags WHERE repository_id = $1 AND name COLLATE \"C\" > $2 ORDER BY name COLLATE \"C\" LIMIT $3")
                .bind(repo_id).bind(last).bind(n).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect()),
        }
    }

    /// Tags pointing at a digest.
    pub async fn tags_of(&self, repo: &str, digest: &str) -> Result<Vec<String>, sqlx::Error> {
        const Q: &str = "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.digest = $2 ORDER BY t.name";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).fetch_all(pool).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Manifests of a repository whose `subject` is `digest`.
    pub async fn referrers(&self, repo: &str, digest: &str) -> Result<Vec<Referrer>, sqlx::Error> {
        const Q: &str = "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.subject = $2 ORDER BY m.digest LIMIT 10000";
        with_pool!(self, pool => {
            Ok(sqlx::query(Q).bind(repo).bind(digest).fetch_all(pool).await?.into_iter().map(|r| Referrer {
                digest: r.get(0), media_type: r.get(1), size: r.get(2), artifact_type: r.get(3), annotations: r.get(4),
            }).collect())
        })
    }

    /// Objects queued for deletion.
    pub async fn pending_deletes(&self, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        with_pool!(self, pool => {
            Ok(sqlx::query("SELECT location FROM pending_deletes WHERE location NOT LIKE 'inline:%' ORDER BY queued_at LIMIT $1").bind(limit)
                .fetch_all(pool).await?.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Queues an object for deletion.
    pub async fn queue_delete(&self, location: &str) -> Result<(), sqlx::Error> {
        let _w = self.write().await;
        with_pool!(self, pool => {
            sqlx::query("INSERT INTO pending_deletes (location, queued_at) VALUES ($1, $2) ON CONFLICT (location) DO NOTHING")
                .bind(location).bind(now()).execute(pool).await.map(|_| ())
        })
    }

    /// Forgets objects that were deleted from storage.
    pub async fn deleted(&self, locations: &[String]) -> Result<(), sqlx::Error> {
        let _w = self.write().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for l in locations {
                sqlx::query("DELETE FROM pending_deletes WHERE location = $1").bind(l).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }
}
