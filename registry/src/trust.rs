//! The trusted registry's Notary side: notary-server's API mounted in process under
//! `/v2/<gun>/_trust/…` on the registry's own port (as DTR did: docker's default trust
//! server for a registry is `https://<registry host>`), with one login for both.
//!
//! - Storage: its own SQLite file (`DATA_DIR/notary.db`), or with a PostgreSQL registry
//!   database the same database in schema `notary_tuf` (or `trust.database`).
//! - Signing of timestamps and server-managed snapshots: in process, keys sealed in the
//!   Notary database with a passphrase ([`key_passphrase`]), or a remote `notary-signer`
//!   (`trust.remote`).
//! - Authorisation ([`NotaryAuthorizer`] and the request guard): the registry's bearer
//!   tokens, whose `repository:<host>/<repo>` scopes the token service grants from the
//!   repository's permissions (pull → read, push → read-write, `*` → repository admin),
//!   or Basic credentials (exchanged for such a token in process). The 401 challenges
//!   name the registry's realm and service. The all-repository changefeed is for system
//!   administrators only (it would list every repository's name).
//! - After each successful publish, [`on_publish`] runs (the policy engine binds new
//!   delegation keys to the publishing user there).
//!
//! The verified trust data the policy engine evaluates comes from
//! [`Trust::service`] → [`notary_server::service::Service::trusted`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use notary_core::Gun;
use notary_server::api::{ApiOptions, Authorize, CacheAges};
use notary_server::auth::Access as NotaryAccess;
use notary_server::config::KeyAlgorithm;
use notary_server::error::ApiError;
use notary_server::service::{Service, UploadLimits};
use notary_server::storage::Store;
use notary_server::trust::{LocalTrust, TrustService};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::Registry;
use crate::auth::jwt::ResourceActions;
use crate::auth::{AuthService, parse_basic, request_host};

/// The PostgreSQL schema the Notary tables live in when they share the registry's
/// database (their migrations are separate from the registry's). Not `notary`: a
/// schema named like the database user is on every connection's default
/// `search_path` (`"$user", public`), and would capture the registry's own tables.
pub const POSTGRES_SCHEMA: &str = "notary_tuf";
/// The variable holding the passphrase sealing the in-process signer's keys.
pub const PASSPHRASE_VAR: &str = "NOTARY_REGISTRY_TRUST_PASSPHRASE";
/// Seconds a Notary request may take before it is answered 408.
pub const REQUEST_TIMEOUT_SECS: u64 = 120;

fn default_true() -> bool {
    true
}
fn default_algorithm() -> KeyAlgorithm {
    KeyAlgorithm::Ecdsa
}

/// A remote `notary-signer` (notary-server's `trust_service` remote options).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteSignerConfig {
    /// Signer host name (its certificate's SAN must match).
    pub hostname: String,
    /// gRPC port (7899 by convention).
    pub port: u16,
    /// CA of the signer's certificate (the only trust root for it).
    pub tls_ca_file: PathBuf,
    /// Client certificate presented to the signer.
    #[serde(default)]
    pub tls_client_cert: Option<PathBuf>,
    /// Its key.
    #[serde(default)]
    pub tls_client_key: Option<PathBuf>,
}

/// The `trust` section of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrustConfig {
    /// Serve the Notary API (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Notary database: a SQLite path or `postgres://…`. Default: `DATA_DIR/notary.db`,
    /// or with a PostgreSQL registry database, that database in schema `notary_tuf`.
    pub database: Option<String>,
    /// A file holding the key passphrase (default: `NOTARY_REGISTRY_TRUST_PASSPHRASE`,
    /// else `DATA_DIR/trust-passphrase`, generated once).
    pub passphrase_file: Option<PathBuf>,
    /// `ecdsa` (default) or `ed25519`, for server-managed keys.
    #[serde(default = "default_algorithm")]
    pub key_algorithm: KeyAlgorithm,
    /// Sign with a remote notary-signer instead of in process.
    pub remote: Option<RemoteSignerConfig>,
    /// Accepted GUN prefixes (each ending in `/`); empty accepts all.
    pub gun_prefixes: Vec<String>,
    /// Largest update body in bytes (default 16 MiB).
    pub max_update_bytes: usize,
    /// Largest metadata file in an update (default 5 MiB).
    pub max_role_bytes: usize,
    /// Seconds an update may take (default 30).
    pub update_timeout_secs: u64,
    /// `Cache-Control` max-age of `{role}.json`, seconds (default 300).
    pub cache_current_secs: u64,
    /// `Cache-Control` max-age of checksum and version addressed files (default 30 days).
    pub cache_consistent_secs: u64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        let limits = UploadLimits::default();
        let cache = CacheAges::default();
        TrustConfig {
            enabled: true,
            database: None,
            passphrase_file: None,
            key_algorithm: KeyAlgorithm::Ecdsa,
            remote: None,
            gun_prefixes: Vec::new(),
            max_update_bytes: limits.max_body_bytes,
            max_role_bytes: limits.max_role_bytes,
            update_timeout_secs: limits.update_timeout.as_secs(),
            cache_current_secs: cache.current,
            cache_consistent_secs: cache.consistent,
        }
    }
}

impl TrustConfig {
    /// Applies `NOTARY_REGISTRY_TRUST_*` variables (`TRUST_ENABLED`, `TRUST_DATABASE`,
    /// `TRUST_PASSPHRASE_FILE`, `TRUST_KEY_ALGORITHM`, `TRUST_GUN_PREFIXES`, and
    /// `TRUST_REMOTE_HOSTNAME` / `_PORT` / `_TLS_CA_FILE` / `_TLS_CLIENT_CERT` /
    /// `_TLS_CLIENT_KEY`, the hostname switching to a remote signer).
    pub fn apply_env<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &notary_daemon::env::Overrides<F>,
    ) -> anyhow::Result<()> {
        env.parsed("TRUST_ENABLED", &mut self.enabled)?;
        if let Some(d) = env.get("TRUST_DATABASE") {
            self.database = (!d.is_empty()).then_some(d);
        }
        env.path("TRUST_PASSPHRASE_FILE", &mut self.passphrase_file);
        if let Some(a) = env.get("TRUST_KEY_ALGORITHM") {
            self.key_algorithm = a
                .parse()
                .map_err(|e: String| anyhow::anyhow!("{}: {e}", env.var("TRUST_KEY_ALGORITHM")))?;
        }
        env.list("TRUST_GUN_PREFIXES", &mut self.gun_prefixes);
        env.parsed("TRUST_MAX_UPDATE_BYTES", &mut self.max_update_bytes)?;
        if let Some(h) = env.get("TRUST_REMOTE_HOSTNAME") {
            if h.is_empty() {
                self.remote = None;
            } else {
                let r = self.remote.get_or_insert_with(|| RemoteSignerConfig {
                    hostname: String::new(),
                    port: 7899,
                    tls_ca_file: PathBuf::new(),
                    tls_client_cert: None,
                    tls_client_key: None,
                });
                r.hostname = h;
            }
        }
        if let Some(r) = &mut self.remote {
            env.parsed("TRUST_REMOTE_PORT", &mut r.port)?;
            if let Some(p) = env.get("TRUST_REMOTE_TLS_CA_FILE") {
                r.tls_ca_file = PathBuf::from(p);
            }
            env.path("TRUST_REMOTE_TLS_CLIENT_CERT", &mut r.tls_client_cert);
            env.path("TRUST_REMOTE_TLS_CLIENT_KEY", &mut r.tls_client_key);
        }
        Ok(())
    }

    /// Checks values that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(p) = self.gun_prefixes.iter().find(|p| !p.ends_with('/')) {
            anyhow::bail!("trust.gun_prefixes: {p:?} must end with '/'");
        }
        if self.max_update_bytes < 1024 || self.max_role_bytes < 1024 {
            anyhow::bail!("trust.max_update_bytes and trust.max_role_bytes must be at least 1024");
        }
        if let Some(r) = &self.remote {
            if r.hostname.is_empty() || r.port == 0 || r.tls_ca_file.as_os_str().is_empty() {
                anyhow::bail!("trust.remote needs hostname, port and tls_ca_file");
            }
            if r.tls_client_cert.is_some() != r.tls_client_key.is_some() {
                anyhow::bail!("trust.remote.tls_client_cert and tls_client_key go together");
            }
        }
        Ok(())
    }

    fn limits(&self) -> UploadLimits {
        UploadLimits {
            max_body_bytes: self.max_update_bytes,
            max_role_bytes: self.max_role_bytes,
            update_timeout: std::time::Duration::from_secs(self.update_timeout_secs.max(1)),
            ..UploadLimits::default()
        }
    }
}

/// Where the Notary tables live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotaryDatabase {
    /// A SQLite file.
    Sqlite(String),
    /// A PostgreSQL URL; `schema`: created first when set (the registry's own database).
    Postgres {
        /// Connection URL (with the schema's `search_path` when `schema` is set).
        url: String,
        /// Schema to create before migrating.
        schema: Option<String>,
    },
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The Notary database of a configuration.
pub fn notary_database(config: &crate::server::Config) -> NotaryDatabase {
    if let Some(d) = &config.trust.database {
        return if is_postgres(d) {
            NotaryDatabase::Postgres {
                url: d.clone(),
                schema: None,
            }
        } else {
            NotaryDatabase::Sqlite(d.clone())
        };
    }
    let registry = config.database_url();
    if is_postgres(&registry) {
        let sep = if registry.contains('?') { '&' } else { '?' };
        NotaryDatabase::Postgres {
            url: format!("{registry}{sep}options[search_path]={POSTGRES_SCHEMA}"),
            schema: Some(POSTGRES_SCHEMA.to_owned()),
        }
    } else {
        NotaryDatabase::Sqlite(config.data_dir.join("notary.db").display().to_string())
    }
}

/// The passphrase sealing the in-process signer's keys: `NOTARY_REGISTRY_TRUST_PASSPHRASE`,
/// else `trust.passphrase_file`, else a random one generated once and kept 0600 in
/// `DATA_DIR/trust-passphrase`. Returns it and where it came from.
pub fn key_passphrase(
    config: &crate::server::Config,
    env: Option<String>,
) -> anyhow::Result<(Zeroizing<String>, String)> {
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        return Ok((Zeroizing::new(p), PASSPHRASE_VAR.to_owned()));
    }
    if let Some(f) = &config.trust.passphrase_file {
        let text = Zeroizing::new(
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
        );
        let p = text.trim();
        if p.is_empty() {
            anyhow::bail!("{} is empty", f.display());
        }
        return Ok((Zeroizing::new(p.to_owned()), f.display().to_string()));
    }
    let file = config.data_dir.join("trust-passphrase");
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            if text.trim().is_empty() {
                anyhow::bail!("{} is empty", file.display());
            }
            return Ok((
                Zeroizing::new(text.trim().to_owned()),
                file.display().to_string(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    notary_daemon::fs::private_dir(&config.data_dir)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), raw.as_mut())
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    let p = Zeroizing::new(hex::encode(raw.as_ref()));
    notary_daemon::fs::write_private(&file, p.as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    tracing::info!(file = %file.display(), "generated the passphrase sealing the Notary signing keys");
    Ok((p, file.display().to_string()))
}

/// The Notary side of the registry: the metadata service and the API's options.
pub struct Trust {
    service: Arc<Service>,
    options: ApiOptions,
    auth: Option<Arc<AuthService>>,
    description: String,
    /// Host names (`host:port`) this registry is known by, for GUNs.
    hostnames: RwLock<Vec<String>>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("backend", &self.description)
            .finish_non_exhaustive()
    }
}

impl Trust {
    /// The Notary metadata service: [`Service::trusted`] gives a GUN's verified trust
    /// data (what the policy engine evaluates).
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Storage and signer, for logs (`sqlite …, in-process signer`).
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// `(healthy, detail)`: the Notary database must answer (2 s); a signer that does
    /// not is reported but does not make the registry unhealthy (reads and pulls still
    /// work; publishes answer 503 until it returns).
    pub async fn health(&self) -> (bool, Value) {
        let limit = std::time::Duration::from_secs(2);
        let db = match tokio::time::timeout(limit, self.service.store().health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 2s".to_owned()),
        };
        let signer = match tokio::time::timeout(limit, self.service.trust().health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 2s".to_owned()),
        };
        let show = |r: &Result<(), String>| match r {
            Ok(()) => Value::from("OK"),
            Err(e) => Value::from(e.as_str()),
        };
        (
            db.is_ok(),
            serde_json::json!({"database": show(&db), "signer": show(&signer)}),
        )
    }

    /// The repository a GUN designates: `<one of our host names>/<repo>` → `<repo>`
    /// (the token service's mapping); other GUNs are taken as repository names.
    pub fn repository_of<'a>(&self, gun: &'a str, request_host: Option<&str>) -> &'a str {
        let Some((first, rest)) = gun.split_once('/') else {
            return gun;
        };
        let ours = request_host.is_some_and(|h| h.eq_ignore_ascii_case(first))
            || self
                .hostnames()
                .iter()
                .any(|n| n.eq_ignore_ascii_case(first))
            || self
                .auth
                .as_ref()
                .is_some_and(|a| a.local_name(gun, None) != gun);
        if ours { rest } else { gun }
    }

    /// The host names (`host:port`) clients may use for this registry: configured
    /// `auth.hostnames`, then `localhost`, `127.0.0.1` and the machine's name with the
    /// listening port.
    pub fn hostnames(&self) -> Vec<String> {
        self.hostnames.read().map(|h| h.clone()).unwrap_or_default()
    }

    /// Records the port actually bound (the configured one may be 0).
    pub fn set_port(&self, port: u16) {
        let configured = self
            .auth
            .as_ref()
            .map(|a| a.config().hostnames.clone())
            .unwrap_or_default();
        if let Ok(mut h) = self.hostnames.write() {
            *h = default_hostnames(&configured, port);
        }
    }

    /// The GUNs docker would use for `repository` through each of our host names, in
    /// [`Trust::hostnames`] order (trust data is stored per GUN: a repository pushed as
    /// `localhost:5000/app` and as `127.0.0.1:5000/app` has two).
    pub fn guns(&self, repository: &str) -> Vec<Gun> {
        self.hostnames()
            .iter()
            .filter_map(|h| Gun::new(&format!("{h}/{repository}")).ok())
            .collect()
    }

    /// The Notary API for paths of [`notary_server::api::is_trust_path`], with the
    /// registry's authorisation and the publish hook; mount it with
    /// [`notary_server::api::mount`].
    pub fn router(self: &Arc<Self>, registry: Arc<Registry>) -> Router {
        let api = notary_server::api::router(Arc::clone(&self.service), self.options.clone());
        let guard = GuardState {
            trust: Arc::clone(self),
            registry,
        };
        api.layer(axum::middleware::from_fn_with_state(guard, guard_layer))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                std::time::Duration::from_secs(REQUEST_TIMEOUT_SECS),
            ))
    }
}

fn default_hostnames(configured: &[String], port: u16) -> Vec<String> {
    let mut names: Vec<String> = configured.to_vec();
    if port != 0 {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        for h in ["localhost", "127.0.0.1", host.as_str()] {
            if h.is_empty() {
                continue;
            }
            let n = format!("{h}:{port}");
            if !names.iter().any(|x| x.eq_ignore_ascii_case(&n)) {
                names.push(n);
            }
        }
    }
    names
}

/// Opens the Notary storage and signer of a configuration (`None` when
/// `trust.enabled` is false). `auth`: the registry's token service (`None` with
/// `--no-auth`: the Notary API is then open too).
pub async fn open(
    config: &crate::server::Config,
    auth: Option<Arc<AuthService>>,
) -> anyhow::Result<Option<Arc<Trust>>> {
    let tc = &config.trust;
    if !tc.enabled {
        return Ok(None);
    }
    tc.validate()?;
    let db = notary_database(config);
    let (store, where_) = match &db {
        NotaryDatabase::Sqlite(path) => {
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                notary_daemon::fs::private_dir(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let store = Store::open_sqlite(path)
                .await
                .with_context(|| format!("opening the Notary database {path}"))?;
            (store, format!("sqlite {path}"))
        }
        NotaryDatabase::Postgres { url, schema } => {
            if let Some(schema) = schema {
                create_schema(url, schema).await?;
            }
            let store = Store::open_postgres(url)
                .await
                .context("opening the Notary database (PostgreSQL)")?;
            let shown = match schema {
                Some(s) => format!("postgres (registry database, schema {s})"),
                None => "postgres".to_owned(),
            };
            (store, shown)
        }
    };
    let (trust, signer): (Arc<dyn TrustService>, String) = match &tc.remote {
        Some(r) => {
            let mut nc = notary_server::config::Config::default();
            nc.trust_service.kind = notary_server::config::TrustKind::Remote;
            nc.trust_service.hostname = r.hostname.clone();
            nc.trust_service.port = Value::from(r.port);
            nc.trust_service.key_algorithm = tc.key_algorithm;
            nc.trust_service.tls_ca_file = Some(r.tls_ca_file.clone());
            nc.trust_service.tls_client_cert = r.tls_client_cert.clone();
            nc.trust_service.tls_client_key = r.tls_client_key.clone();
            let remote = notary_server::daemon::remote_trust(&nc, store.clone())
                .context("configuring the remote notary-signer")?;
            (
                Arc::new(remote),
                format!("notary-signer at {}:{}", r.hostname, r.port),
            )
        }
        None => {
            let (passphrase, source) = key_passphrase(config, std::env::var(PASSPHRASE_VAR).ok())?;
            if matches!(db, NotaryDatabase::Postgres { .. }) && source != PASSPHRASE_VAR {
                tracing::warn!(
                    source = %source,
                    "replicas sharing the Notary database must seal keys with the same passphrase: set {PASSPHRASE_VAR} (or trust.passphrase_file) to the same value on every replica"
                );
            }
            check_passphrase(&db, &passphrase, &source).await?;
            let algorithm = match tc.key_algorithm {
                KeyAlgorithm::Ecdsa => notary_core::Algorithm::EcdsaP256,
                KeyAlgorithm::Ed25519 => notary_core::Algorithm::Ed25519,
            };
            (
                Arc::new(LocalTrust::new(store.clone(), algorithm, passphrase)),
                "in-process signer".to_owned(),
            )
        }
    };
    let service = Arc::new(Service::new(store.clone(), trust));
    if store.is_shared() {
        service
            .follow_changefeed(std::time::Duration::from_millis(500))
            .await
            .context("following the Notary changefeed")?;
    }
    let options = ApiOptions {
        auth: auth.as_ref().map(|svc| {
            Arc::new(NotaryAuthorizer {
                svc: Arc::clone(svc),
            }) as Arc<dyn Authorize>
        }),
        gun_prefixes: tc.gun_prefixes.clone(),
        cache: CacheAges {
            current: tc.cache_current_secs,
            consistent: tc.cache_consistent_secs,
        },
        limits: tc.limits(),
    };
    let configured = auth
        .as_ref()
        .map(|a| a.config().hostnames.clone())
        .unwrap_or_default();
    let hostnames = default_hostnames(&configured, config.listen.port());
    let description = format!("{where_}, {signer}");
    tracing::info!(notary = %description, "Notary API enabled");
    Ok(Some(Arc::new(Trust {
        service,
        options,
        auth,
        description,
        hostnames: RwLock::new(hostnames),
    })))
}

/// `CREATE SCHEMA IF NOT EXISTS` on the registry's PostgreSQL database.
async fn create_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    if !schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        anyhow::bail!("invalid schema name {schema:?}");
    }
    let opts: sqlx::postgres::PgConnectOptions = url.parse().context("the PostgreSQL URL")?;
    if opts.get_username() == schema {
        anyhow::bail!(
            "the PostgreSQL user is named {schema:?} like the Notary schema, which would then shadow the registry's tables: \
             use another user, or give the Notary tables their own database (trust.database)"
        );
    }
    let mut conn = sqlx::PgConnection::connect_with(&opts)
        .await
        .context("connecting to PostgreSQL for the Notary schema")?;
    if let Err(e) = sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .execute(&mut conn)
        .await
    {
        // Two replicas starting at once race on the catalog (a unique violation for
        // the loser): what matters is that the schema exists now.
        let exists: Option<(i32,)> =
            sqlx::query_as("SELECT 1 FROM pg_namespace WHERE nspname = $1")
                .bind(schema)
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
        if exists.is_none() {
            return Err(e).with_context(|| format!("creating schema {schema}"));
        }
    }
    conn.close().await.ok();
    Ok(())
}

/// Refuses to start when keys already sealed in the Notary database do not open with
/// `passphrase` (another replica's passphrase, or a changed variable): otherwise every
/// timestamp refresh of existing repositories would fail later, one request at a time.
async fn check_passphrase(
    db: &NotaryDatabase,
    passphrase: &Zeroizing<String>,
    source: &str,
) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    const Q: &str = "SELECT key_id, sealed FROM server_keys ORDER BY created_at LIMIT 1";
    let row: Option<(String, String)> = match db {
        NotaryDatabase::Sqlite(path) => {
            let opts = notary_daemon::sqlite_options(path)?;
            let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
            let row = sqlx::query_as(Q).fetch_optional(&mut conn).await?;
            conn.close().await.ok();
            row
        }
        NotaryDatabase::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let row = sqlx::query_as(Q).fetch_optional(&mut conn).await?;
            conn.close().await.ok();
            row
        }
    };
    if let Some((key_id, sealed)) = row {
        if notary_core::keyfile::KeyFile::decode(sealed.as_bytes(), Some(passphrase.as_str()))
            .is_err()
        {
            anyhow::bail!(
                "the Notary signing keys in the database (key {key_id}) do not open with the passphrase from {source}: \
                 every replica must use the passphrase the keys were sealed with (set {PASSPHRASE_VAR})"
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Authorisation

/// [`Authorize`] over the registry's token service: a bearer token it issued (for the
/// registry's own `service`) must grant each access the route needs, by exact name
/// (`repository:<gun>:<action>`, `*` granting every action, as in Notary). Basic
/// credentials were exchanged for such a token by the guard before this runs.
pub struct NotaryAuthorizer {
    svc: Arc<AuthService>,
}

impl NotaryAuthorizer {
    /// Over a token service.
    pub fn new(svc: Arc<AuthService>) -> NotaryAuthorizer {
        NotaryAuthorizer { svc }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    Missing,
    Invalid,
    Insufficient,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn granted(access: &[ResourceActions], need: &NotaryAccess) -> bool {
    access.iter().any(|r| {
        r.kind == need.kind
            && r.name == need.name
            && r.actions.iter().any(|a| a == need.action || a == "*")
    })
}

/// The 401 in Notary's format, pointing at the registry's realm.
fn challenge(
    svc: &AuthService,
    headers: &HeaderMap,
    required: &[NotaryAccess],
    failure: Failure,
) -> ApiError {
    let error = match failure {
        Failure::Missing => None,
        Failure::Invalid => Some("invalid_token"),
        Failure::Insufficient => Some("insufficient_scope"),
    };
    notary_server::auth::unauthorized(&svc.realm(headers), &svc.config().service, required, error)
}

impl Authorize for NotaryAuthorizer {
    fn authorize(
        &self,
        headers: &HeaderMap,
        required: &[NotaryAccess],
        now: i64,
    ) -> Result<(), ApiError> {
        let failure = match bearer(headers) {
            None => Failure::Missing,
            Some(token) => {
                match self
                    .svc
                    .verify_token(token, &[self.svc.config().service.as_str()], now)
                {
                    Ok(claims) if required.iter().all(|n| granted(&claims.access, n)) => {
                        return Ok(());
                    }
                    Ok(_) => Failure::Insufficient,
                    Err(e) => {
                        tracing::info!(reason = %e, "refused bearer token on the Notary API");
                        Failure::Invalid
                    }
                }
            }
        };
        metrics::counter!("registry_notary_refusals_total").increment(1);
        Err(challenge(&self.svc, headers, required, failure))
    }
}

/// What a Notary path addresses, as notary-server classifies it.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `/v2/_trust/changefeed`.
    AllChanges,
    /// A path under a GUN; `update`: `…/_trust/tuf/` itself.
    Gun { gun: String, update: bool },
    /// Anything else.
    Other,
}

fn classify(raw_path: &str) -> Target {
    let Some(path) = notary_server::api::percent_decode(raw_path) else {
        return Target::Other;
    };
    if path == "/v2/_trust/changefeed" {
        return Target::AllChanges;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Target::Other;
    };
    if let Some(gun) = rest.strip_suffix("/_trust/changefeed") {
        return Target::Gun {
            gun: gun.to_owned(),
            update: false,
        };
    }
    if let Some(gun) = rest.strip_suffix("/_trust/tuf/") {
        return Target::Gun {
            gun: gun.to_owned(),
            update: true,
        };
    }
    match rest.rfind("/_trust/tuf/") {
        Some(i) if i > 0 => Target::Gun {
            gun: rest[..i].to_owned(),
            update: false,
        },
        _ => Target::Other,
    }
}

#[derive(Clone)]
struct GuardState {
    trust: Arc<Trust>,
    registry: Arc<Registry>,
}

fn refuse(e: ApiError) -> Response {
    let mut resp = e.into_response();
    resp.extensions_mut()
        .insert(notary_server::api::Operation("Unauthorized"));
    resp
}

/// Runs around every Notary request: exchanges Basic credentials for a token granting
/// what the user may do on the GUN's repository, keeps the all-repository changefeed
/// for administrators, counts requests, and calls [`on_publish`] after a successful
/// update.
async fn guard_layer(State(st): State<GuardState>, mut req: Request, next: Next) -> Response {
    let target = classify(req.uri().path());
    let method = req.method().clone();
    let mut user: Option<String> = None;
    if let Some(svc) = &st.trust.auth {
        match identify(svc, &mut req, &target).await {
            Ok(u) => user = u,
            Err(resp) => return resp,
        }
    }
    // The verified trust data before an update, for the publish hook's key diff.
    let before = match (&target, &method) {
        (Target::Gun { gun, update: true }, &Method::POST) => match Gun::new(gun) {
            Ok(g) => st.trust.service.trusted(&g).await.ok(),
            Err(_) => None,
        },
        _ => None,
    };
    let resp = next.run(req).await;
    let op = resp
        .extensions()
        .get::<notary_server::api::Operation>()
        .map_or("Other", |o| o.0);
    metrics::counter!(
        "registry_notary_requests_total",
        "operation" => op,
        "code" => resp.status().as_u16().to_string()
    )
    .increment(1);
    if let (Target::Gun { gun, update: true }, &Method::POST) = (&target, &method) {
        if resp.status() == StatusCode::OK {
            if let Ok(gun) = Gun::new(gun) {
                tracing::info!(gun = %gun, user = user.as_deref().unwrap_or(""), "trust data published");
                // In its own task, awaited: the answer waits for the hook, and a client
                // hanging up does not cancel it half-way (the update is committed).
                let (registry, service) = (Arc::clone(&st.registry), Arc::clone(&st.trust.service));
                let hook = tokio::spawn(async move {
                    on_publish(&registry, &service, &gun, user.as_deref(), before).await;
                });
                if let Err(e) = hook.await {
                    tracing::error!(error = %e, "the publish hook failed");
                }
            }
        }
    }
    resp
}

/// Establishes who is calling (for the publish hook) and turns Basic credentials into
/// a bearer token the authoriser checks like any other.
async fn identify(
    svc: &Arc<AuthService>,
    req: &mut Request,
    target: &Target,
) -> Result<Option<String>, Response> {
    let headers = req.headers();
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return match target {
            Target::AllChanges => Err(refuse(challenge(
                svc,
                headers,
                &[NotaryAccess::catalog()],
                Failure::Missing,
            ))),
            _ => Ok(None),
        };
    };
    let value = raw.to_str().unwrap_or("");
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let needs_for = |t: &Target| match t {
        Target::Gun { gun, .. } => vec![NotaryAccess::repo(gun, "pull")],
        _ => vec![NotaryAccess::catalog()],
    };
    if scheme.eq_ignore_ascii_case("basic") {
        if !svc.config().basic_on_registry || raw.len() > 4096 {
            return Err(refuse(challenge(
                svc,
                headers,
                &needs_for(target),
                Failure::Invalid,
            )));
        }
        let Some((name, password)) = parse_basic(rest) else {
            return Err(refuse(challenge(
                svc,
                headers,
                &needs_for(target),
                Failure::Invalid,
            )));
        };
        let found = match svc.login(&name, &password).await {
            Ok(Some(u)) => u,
            Ok(None) => {
                return Err(refuse(challenge(
                    svc,
                    headers,
                    &needs_for(target),
                    Failure::Invalid,
                )));
            }
            Err(e) => return Err(e.into_registry_error().into_response()),
        };
        let access = match target {
            Target::Gun { gun, .. } => {
                let host = request_host(headers);
                let repo = svc.local_name(gun, host.as_deref());
                let actions = svc
                    .repository_actions(Some(&found), repo)
                    .await
                    .map_err(|e| crate::auth::store_error(e).into_response())?;
                vec![ResourceActions {
                    kind: "repository".into(),
                    name: gun.clone(),
                    actions: actions.iter().map(|a| a.as_str().to_owned()).collect(),
                }]
            }
            Target::AllChanges if found.admin => vec![ResourceActions {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            }],
            Target::AllChanges => {
                return Err(refuse(challenge(
                    svc,
                    headers,
                    &[NotaryAccess::catalog()],
                    Failure::Insufficient,
                )));
            }
            Target::Other => Vec::new(),
        };
        let (token, _) = svc
            .issue(Some(&found), &svc.config().service, access)
            .map_err(|e| {
                crate::error::RegistryError::internal("signing a token", e).into_response()
            })?;
        let v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| {
            crate::error::RegistryError::internal("token header", e).into_response()
        })?;
        req.headers_mut().insert(header::AUTHORIZATION, v);
        return Ok(Some(found.name));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let now = crate::meta::now();
        let Ok(claims) = svc.verify_token(rest.trim(), &[svc.config().service.as_str()], now)
        else {
            // The authoriser answers with the challenge.
            return Ok(None);
        };
        let sub = (!claims.sub.is_empty()).then(|| claims.sub.clone());
        if *target == Target::AllChanges {
            let admin = claims.grants("registry", "admin", "*")
                || match &sub {
                    Some(s) => svc
                        .store()
                        .user(s)
                        .await
                        .map_err(|e| crate::auth::store_error(e).into_response())?
                        .is_some_and(|u| u.admin),
                    None => false,
                };
            if !admin {
                return Err(refuse(challenge(
                    svc,
                    headers,
                    &[NotaryAccess::catalog()],
                    Failure::Insufficient,
                )));
            }
        }
        return Ok(sub);
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------
// The publish hook

/// Called after every successful Notary publish (`POST /v2/<gun>/_trust/tuf/`
/// answered 200), with the GUN, the publishing user (`None` when anonymous or without
/// authentication) and the metadata service (its [`Service::trusted`] already sees the
/// new data). The update is committed: this hook cannot undo it, only record things
/// (the policy engine binds delegation keys new in this publish to `user` here) and log
/// its own failures.
///
/// `before` is the verified trust data as it was before the update (`None` for a new
/// repository): the policy engine binds the keys of changed roles to `user` and forgets
/// what it cached about the repository.
pub async fn on_publish(
    registry: &Registry,
    service: &Arc<Service>,
    gun: &Gun,
    user: Option<&str>,
    before: Option<Arc<notary_core::update::Repository>>,
) {
    let Some(engine) = registry.policy_engine() else {
        return;
    };
    engine.trust_changed(gun.as_str());
    let (Some(user), Ok(after)) = (user, service.trusted(gun).await) else {
        return;
    };
    match engine
        .published(gun.as_str(), user, before.as_deref(), &after)
        .await
    {
        Ok(added) if !added.is_empty() => {
            tracing::info!(gun = %gun, user, keys = added.len(), "signing keys bound to the publisher");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(gun = %gun, error = %e, "could not bind the publisher's signing keys")
        }
    }
}

// ---------------------------------------------------------------------------------
// First start

/// The lines a user needs after the first start: the CA for dockerd and for the docker
/// CLI (content trust reads `~/.docker/tls/<host:port>/`), `docker login`, and the
/// content-trust variables. `host_port` as clients will type it (`127.0.0.1:5000`).
pub fn setup_instructions(
    host_port: &str,
    ca: &Path,
    data_dir: &Path,
    password_file: Option<&Path>,
) -> String {
    let ca = ca.canonicalize().unwrap_or_else(|_| ca.to_path_buf());
    let data = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let mut s = String::new();
    s.push_str(&format!(
        "notary-registry: first start; data directory {} (SQLite databases, CA, admin user)\n",
        data.display()
    ));
    s.push_str("To use it from docker with content trust, run:\n");
    s.push_str(&format!(
        "  sudo mkdir -p /etc/docker/certs.d/{hp} && sudo cp {ca} /etc/docker/certs.d/{hp}/ca.crt\n",
        hp = host_port,
        ca = ca.display()
    ));
    s.push_str(&format!(
        "  mkdir -p ~/.docker/tls/{hp} && cp {ca} ~/.docker/tls/{hp}/ca.crt\n",
        hp = host_port,
        ca = ca.display()
    ));
    match password_file {
        Some(f) => s.push_str(&format!(
            "  docker login {host_port} -u admin    # password: in {}\n",
            f.display()
        )),
        None => s.push_str(&format!("  docker login {host_port} -u admin\n")),
    }
    s.push_str(&format!(
        "  export DOCKER_CONTENT_TRUST=1 DOCKER_CONTENT_TRUST_SERVER=https://{host_port}\n"
    ));
    s
}

/// The `host:port` clients use for a listening address (`127.0.0.1` for `0.0.0.0`).
pub fn client_host_port(addr: std::net::SocketAddr) -> String {
    let ip = addr.ip();
    if ip.is_unspecified() {
        return format!("127.0.0.1:{}", addr.port());
    }
    addr.to_string()
}

/// Base64 of `user:password`, as `NOTARY_AUTH` wants it.
pub fn notary_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn classifies_like_notary_server() {
        assert_eq!(classify("/v2/_trust/changefeed"), Target::AllChanges);
        assert_eq!(
            classify("/v2/127.0.0.1:5000/org/app/_trust/tuf/"),
            Target::Gun {
                gun: "127.0.0.1:5000/org/app".into(),
                update: true
            }
        );
        assert_eq!(
            classify("/v2/h/a/_trust/tuf/targets/releases.json"),
            Target::Gun {
                gun: "h/a".into(),
                update: false
            }
        );
        assert_eq!(
            classify("/v2/h%2Fa/_trust/changefeed"),
            Target::Gun {
                gun: "h/a".into(),
                update: false
            }
        );
        assert_eq!(classify("/v2/_trust/tuf/"), Target::Other);
        assert_eq!(classify("/v2/%zz/_trust/tuf/"), Target::Other);
    }

    #[test]
    fn grants_need_the_exact_name() {
        let access = vec![ResourceActions {
            kind: "repository".into(),
            name: "h:1/a".into(),
            actions: vec!["pull".into()],
        }];
        assert!(granted(&access, &NotaryAccess::repo("h:1/a", "pull")));
        assert!(!granted(&access, &NotaryAccess::repo("h:1/a", "push")));
        assert!(!granted(&access, &NotaryAccess::repo("a", "pull")));
        let admin = vec![ResourceActions {
            kind: "repository".into(),
            name: "h:1/a".into(),
            actions: vec!["*".into()],
        }];
        assert!(granted(&admin, &NotaryAccess::repo("h:1/a", "push")));
    }

    #[test]
    fn instructions_name_every_step() {
        let s = setup_instructions(
            "127.0.0.1:5000",
            Path::new("/d/tls/ca.crt"),
            Path::new("/d"),
            Some(Path::new("/d/admin-password")),
        );
        assert!(s.contains("/etc/docker/certs.d/127.0.0.1:5000/ca.crt"));
        assert!(s.contains("~/.docker/tls/127.0.0.1:5000/ca.crt"));
        assert!(s.contains("docker login 127.0.0.1:5000"));
        assert!(s.contains(
            "export DOCKER_CONTENT_TRUST=1 DOCKER_CONTENT_TRUST_SERVER=https://127.0.0.1:5000"
        ));
        assert_eq!(
            client_host_port("0.0.0.0:5000".parse().unwrap()),
            "127.0.0.1:5000"
        );
        assert_eq!(
            client_host_port("10.1.2.3:443".parse().unwrap()),
            "10.1.2.3:443"
        );
    }

    #[test]
    fn postgres_registry_shares_its_database() {
        let mut c = crate::server::Config {
            database: Some("postgres://u@h/reg".into()),
            ..Default::default()
        };
        assert_eq!(
            notary_database(&c),
            NotaryDatabase::Postgres {
                url: "postgres://u@h/reg?options[search_path]=notary_tuf".into(),
                schema: Some("notary_tuf".into())
            }
        );
        c.database = Some("postgres://u@h/reg?sslmode=disable".into());
        assert!(
            matches!(notary_database(&c), NotaryDatabase::Postgres { url, .. } if url.ends_with("&options[search_path]=notary_tuf"))
        );
        c.trust.database = Some("postgres://u@other/notary".into());
        assert_eq!(
            notary_database(&c),
            NotaryDatabase::Postgres {
                url: "postgres://u@other/notary".into(),
                schema: None
            }
        );
        c.database = None;
        c.trust.database = None;
        c.data_dir = "/d".into();
        assert_eq!(
            notary_database(&c),
            NotaryDatabase::Sqlite("/d/notary.db".into())
        );
    }
}
