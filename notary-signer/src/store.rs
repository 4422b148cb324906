//! Where sealed keys live: Go's `private_keys` table through sqlx (SQLite by default,
//! PostgreSQL for several signer replicas), or process memory (`memory` backend).
//! Rows soft-deleted by Go (`deleted_at` set) are invisible, as they are to Go.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use tokio::sync::RwLock;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// One stored key. `private` is the sealed JWE (or, in memory, the raw key bytes).
#[derive(Clone)]
pub struct KeyRow {
    /// TUF key ID.
    pub key_id: String,
    /// TUF key type: `ecdsa` or `ed25519`.
    pub algorithm: String,
    /// Passphrase alias the key is sealed under.
    pub passphrase_alias: String,
    /// GUN the key was created for.
    pub gun: String,
    /// Role the key was created for.
    pub role: String,
    /// Raw public bytes (DER SPKI for ECDSA, 32 bytes for Ed25519).
    pub public: Vec<u8>,
    /// JWE compact serialisation (ASCII).
    pub private: Vec<u8>,
    /// Whether the key has signed.
    pub used: bool,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("passphrase_alias", &self.passphrase_alias)
            .field("gun", &self.gun)
            .field("role", &self.role)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Memory(Arc<RwLock<Vec<KeyRow>>>),
}

/// The key store.
#[derive(Clone, Debug)]
pub struct KeyStore {
    backend: Backend,
}

const COLUMNS: &str = "key_id, algorithm, passphrase_alias, gun, role, public, private, last_used IS NOT NULL AS used";

macro_rules! row_to_key {
    ($r:expr) => {
        KeyRow {
            key_id: $r.try_get("key_id")?,
            algorithm: $r.try_get("algorithm")?,
            passphrase_alias: $r.try_get("passphrase_alias")?,
            gun: $r.try_get("gun")?,
            role: $r.try_get("role")?,
            public: $r.try_get("public")?,
            private: $r.try_get("private")?,
            used: $r.try_get("used")?,
        }
    };
}

/// Runs the same statements on either SQL pool; `$mem` handles the memory backend.
macro_rules! on_sql {
    ($self:expr, $pool:ident => $e:expr, $rows:ident => $mem:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $e,
            Backend::Postgres($pool) => $e,
            Backend::Memory($rows) => $mem,
        }
    };
}

impl KeyStore {
    /// Opens (creating if needed) a SQLite file and migrates it.
    pub async fn open_sqlite(path_or_url: &str) -> Result<Self, StoreError> {
        let opts = notary_daemon::sqlite_options(path_or_url)?.pragma("cache_size", "-512");
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(KeyStore {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL and migrates (a table Go created is kept as is).
    pub async fn open_postgres(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(KeyStore {
            backend: Backend::Postgres(pool),
        })
    }

    /// Keys in process memory only (lost on exit), stored unencrypted.
    pub fn memory() -> Self {
        KeyStore {
            backend: Backend::Memory(Arc::default()),
        }
    }

    /// Whether keys are kept only in memory (and so are not sealed).
    pub fn is_memory(&self) -> bool {
        matches!(self.backend, Backend::Memory(_))
    }

    /// Stores a new key.
    pub async fn insert(&self, k: &KeyRow) -> Result<(), StoreError> {
        const Q: &str = "INSERT INTO private_keys (created_at, updated_at, key_id, encryption_alg, keywrap_alg, algorithm, passphrase_alias, public, private, gun, role) VALUES (CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, $1, $2, $3, $4, $5, $6, $7, $8, $9)";
        on_sql!(self, pool => {
            sqlx::query(Q)
                .bind(&k.key_id)
                .bind(crate::jwe::ENCRYPTION_ALG)
                .bind(crate::jwe::KEYWRAP_ALG)
                .bind(&k.algorithm)
                .bind(&k.passphrase_alias)
                .bind(&k.public)
                .bind(&k.private)
                .bind(&k.gun)
                .bind(&k.role)
                .execute(pool)
                .await?;
        }, rows => rows.write().await.push(k.clone()));
        Ok(())
    }

    /// A key by ID.
    pub async fn get(&self, key_id: &str) -> Result<Option<KeyRow>, StoreError> {
        let q =
            format!("SELECT {COLUMNS} FROM private_keys WHERE key_id = $1 AND deleted_at IS NULL");
        on_sql!(self, pool => {
            match sqlx::query(&q).bind(key_id).fetch_optional(pool).await? {
                Some(r) => Ok(Some(row_to_key!(r))),
                None => Ok(None),
            }
        }, rows => Ok(rows.read().await.iter().find(|k| k.key_id == key_id).cloned()))
    }

    /// A never-used key for (gun, role, algorithm), lowest key ID first (Go's reuse rule).
    pub async fn unused(
        &self,
        gun: &str,
        role: &str,
        algorithm: &str,
    ) -> Result<Option<KeyRow>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM private_keys WHERE gun = $1 AND role = $2 AND algorithm = $3 AND last_used IS NULL AND deleted_at IS NULL ORDER BY key_id LIMIT 1"
        );
        on_sql!(self, pool => {
            match sqlx::query(&q).bind(gun).bind(role).bind(algorithm).fetch_optional(pool).await? {
                Some(r) => Ok(Some(row_to_key!(r))),
                None => Ok(None),
            }
        }, rows => Ok(rows
            .read()
            .await
            .iter()
            .filter(|k| !k.used && k.gun == gun && k.role == role && k.algorithm == algorithm)
            .min_by(|a, b| a.key_id.cmp(&b.key_id))
            .cloned()))
    }

    /// Records that a key signed (`last_used`, `updated_at`).
    pub async fn mark_used(&self, key_id: &str) -> Result<(), StoreError> {
        const Q: &str = "UPDATE private_keys SET last_used = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE key_id = $1";
        on_sql!(self, pool => {
            sqlx::query(Q).bind(key_id).execute(pool).await?;
        }, rows => {
            if let Some(k) = rows.write().await.iter_mut().find(|k| k.key_id == key_id) {
                k.used = true;
            }
        });
        Ok(())
    }

    /// Deletes a key (succeeds for unknown IDs). Like Go, a soft delete: the row stays
    /// with `deleted_at` set and is invisible from then on.
    pub async fn delete(&self, key_id: &str) -> Result<(), StoreError> {
        const Q: &str = "UPDATE private_keys SET deleted_at = CURRENT_TIMESTAMP WHERE key_id = $1 AND deleted_at IS NULL";
        on_sql!(self, pool => {
            sqlx::query(Q).bind(key_id).execute(pool).await?;
        }, rows => rows.write().await.retain(|k| k.key_id != key_id));
        Ok(())
    }

    /// For each passphrase alias in use: how many keys, and one key sealed under it (to
    /// check the passphrase at start-up).
    pub async fn aliases(&self) -> Result<HashMap<String, (i64, KeyRow)>, StoreError> {
        let q = format!(
            "SELECT {COLUMNS} FROM private_keys WHERE deleted_at IS NULL AND id IN (SELECT MIN(id) FROM private_keys WHERE deleted_at IS NULL GROUP BY passphrase_alias)"
        );
        const COUNT: &str = "SELECT passphrase_alias, COUNT(*) AS n FROM private_keys WHERE deleted_at IS NULL GROUP BY passphrase_alias";
        on_sql!(self, pool => {
            let mut counts = HashMap::new();
            for r in sqlx::query(COUNT).fetch_all(pool).await? {
                counts.insert(r.try_get::<String, _>("passphrase_alias")?, r.try_get::<i64, _>("n")?);
            }
            let mut out = HashMap::new();
            for r in sqlx::query(&q).fetch_all(pool).await? {
                let k = row_to_key!(r);
                let n = counts.get(&k.passphrase_alias).copied().unwrap_or(1);
                out.insert(k.passphrase_alias.clone(), (n, k));
            }
            Ok(out)
        }, _rows => Ok(HashMap::new()))
    }

    /// IDs of the keys not sealed under `alias`.
    pub async fn keys_not_under(&self, alias: &str) -> Result<Vec<String>, StoreError> {
        const Q: &str = "SELECT key_id FROM private_keys WHERE passphrase_alias <> $1 AND deleted_at IS NULL ORDER BY id";
        on_sql!(self, pool => {
            let mut out = Vec::new();
            for r in sqlx::query(Q).bind(alias).fetch_all(pool).await? {
                out.push(r.try_get::<String, _>("key_id")?);
            }
            Ok(out)
        }, _rows => Ok(Vec::new()))
    }

    /// Replaces a key's sealed bytes and alias if it is still sealed under
    /// `old_alias` (so two re-sealers never overwrite each other). Returns whether it
    /// changed.
    pub async fn reseal(
        &self,
        key_id: &str,
        old_alias: &str,
        new_alias: &str,
        private: &[u8],
    ) -> Result<bool, StoreError> {
        const Q: &str = "UPDATE private_keys SET private = $1, passphrase_alias = $2, updated_at = CURRENT_TIMESTAMP WHERE key_id = $3 AND passphrase_alias = $4";
        on_sql!(self, pool => {
            let n = sqlx::query(Q)
                .bind(private)
                .bind(new_alias)
                .bind(key_id)
                .bind(old_alias)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n == 1)
        }, _rows => Ok(false))
    }

    /// A cheap query proving the database answers.
    pub async fn health(&self) -> Result<(), StoreError> {
        on_sql!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        }, _rows => {});
        Ok(())
    }
}
