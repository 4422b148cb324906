//! The daemon around the registry routes: configuration (embedded defaults, a JSON
//! file, `NOTARY_REGISTRY_*` environment variables, flags), the data directory, TLS,
//! health, metrics and the serve loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::access::{Access, AllowAll, Open, Policy};
use crate::meta::Db;
use crate::storage::BlobStore;
use crate::{Options, Registry};

/// Where blobs are stored.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A local directory (default `DATA_DIR/blobs`).
    Filesystem {
        /// The directory.
        #[serde(default)]
        root: Option<PathBuf>,
    },
    /// S3-compatible object storage (shared by replicas). Secrets are never logged.
    S3 {
        /// Bucket (created beforehand).
        bucket: String,
        /// Endpoint URL (`http://minio:9000`); absent: AWS.
        #[serde(default)]
        endpoint: Option<String>,
        /// Region (default `us-east-1`).
        #[serde(default)]
        region: Option<String>,
        /// Access key id (absent: the AWS credential chain).
        #[serde(default)]
        access_key_id: Option<String>,
        /// Secret access key (prefer `secret_access_key_file` or the environment).
        #[serde(default)]
        secret_access_key: Option<crate::storage::s3::Secret>,
        /// A file holding the secret access key.
        #[serde(default)]
        secret_access_key_file: Option<PathBuf>,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: Option<String>,
        /// Allow a plain-HTTP endpoint.
        #[serde(default)]
        allow_http: bool,
        /// Multipart part size in bytes (at least 5 MiB; default 8 MiB).
        #[serde(default)]
        part_size: Option<usize>,
    },
}

impl StorageConfig {
    /// Applies `NOTARY_REGISTRY_S3_*` variables; `NOTARY_REGISTRY_S3_BUCKET` switches the
    /// storage to S3.
    pub fn apply_env<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &notary_daemon::env::Overrides<F>,
    ) -> anyhow::Result<()> {
        if let Some(b) = env.get("S3_BUCKET") {
            match self {
                StorageConfig::S3 { bucket, .. } => *bucket = b,
                StorageConfig::Filesystem { .. } => {
                    *self = StorageConfig::S3 {
                        bucket: b,
                        endpoint: None,
                        region: None,
                        access_key_id: None,
                        secret_access_key: None,
                        secret_access_key_file: None,
                        prefix: None,
                        allow_http: false,
                        part_size: None,
                    }
                }
            }
        }
        if let StorageConfig::S3 {
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            secret_access_key_file,
            prefix,
            allow_http,
            part_size,
            ..
        } = self
        {
            let opt = |key: &str, slot: &mut Option<String>| {
                if let Some(v) = env.get(key) {
                    *slot = (!v.is_empty()).then_some(v);
                }
            };
            opt("S3_ENDPOINT", endpoint);
            opt("S3_REGION", region);
            opt("S3_ACCESS_KEY_ID", access_key_id);
            opt("S3_PREFIX", prefix);
            if let Some(v) = env.get("S3_SECRET_ACCESS_KEY") {
                *secret_access_key = Some(crate::storage::s3::Secret::new(v));
            }
            env.path("S3_SECRET_ACCESS_KEY_FILE", secret_access_key_file);
            env.parsed("S3_ALLOW_HTTP", allow_http)?;
            if let Some(v) = env.get("S3_PART_SIZE") {
                let mut n = 0usize;
                env.parsed("S3_PART_SIZE", &mut n)?;
                *part_size = (!v.is_empty()).then_some(n);
            }
        }
        Ok(())
    }
}

/// The S3 settings of a configuration (the secret read from its file if one is named).
pub fn s3_options(
    storage: &StorageConfig,
) -> anyhow::Result<Option<crate::storage::s3::S3Options>> {
    let StorageConfig::S3 {
        bucket,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        secret_access_key_file,
        prefix,
        allow_http,
        part_size,
    } = storage
    else {
        return Ok(None);
    };
    let secret = match (secret_access_key, secret_access_key_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(f)) => {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?,
            );
            Some(crate::storage::s3::Secret::new(text.trim().to_owned()))
        }
        (None, None) => None,
    };
    Ok(Some(crate::storage::s3::S3Options {
        bucket: bucket.clone(),
        endpoint: endpoint.clone(),
        region: region.clone(),
        access_key_id: access_key_id.clone(),
        secret_access_key: secret,
        prefix: prefix.clone().unwrap_or_default(),
        allow_http: *allow_http,
        part_size: *part_size,
    }))
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Filesystem { root: None }
    }
}

/// The registry's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (database, blobs, TLS material, secrets).
    pub data_dir: PathBuf,
    /// Serve plain HTTP (tests, or behind a TLS proxy).
    pub plain_http: bool,
    /// Serve without authentication.
    pub no_auth: bool,
    /// Database URL: a SQLite path (default `DATA_DIR/registry.db`) or `postgres://…`.
    pub database: Option<String>,
    /// Blob storage.
    pub storage: StorageConfig,
    /// TLS certificate chain (default: generated under `DATA_DIR/tls`).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key.
    pub tls_key: Option<PathBuf>,
    /// Largest manifest in bytes.
    pub max_manifest_bytes: usize,
    /// Log filter (`info`, `debug`, `notary_registry=debug`, ...).
    pub log_level: String,
    /// JSON logs.
    pub log_json: bool,
    /// Token service, users and permissions.
    pub auth: crate::auth::AuthConfig,
    /// Garbage collection and upload expiry (`{"gc": {"interval_secs": …}}`).
    pub gc: crate::gc::GcSettings,
    /// Seconds between this replica's heartbeats in the `replicas` table (a replica is
    /// reported unreachable after three missed ones).
    pub cluster_heartbeat_secs: u64,
    /// The Kubernetes admission webhook (deploy gate).
    pub admission: crate::admission::AdmissionConfig,
    /// The Notary API on the registry's port: storage, signer, limits.
    pub trust: crate::trust::TrustConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            data_dir: PathBuf::from("notary-registry-data"),
            plain_http: false,
            no_auth: false,
            database: None,
            storage: StorageConfig::default(),
            tls_cert: None,
            tls_key: None,
            max_manifest_bytes: 4 << 20,
            log_level: "info".into(),
            log_json: false,
            auth: crate::auth::AuthConfig::default(),
            gc: crate::gc::GcSettings::default(),
            cluster_heartbeat_secs: 5,
            admission: crate::admission::AdmissionConfig::default(),
            trust: crate::trust::TrustConfig::default(),
        }
    }
}

impl Config {
    /// Loads a JSON configuration file over the defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Applies `NOTARY_REGISTRY_*` environment variables.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let env = notary_daemon::env::Overrides::new("NOTARY_REGISTRY", lookup);
        env.parsed("LISTEN", &mut self.listen)?;
        if let Some(d) = env.get("DATA_DIR") {
            self.data_dir = PathBuf::from(d);
        }
        env.parsed("PLAIN_HTTP", &mut self.plain_http)?;
        env.parsed("NO_AUTH", &mut self.no_auth)?;
        if let Some(d) = env.get("DATABASE") {
            self.database = Some(d);
        }
        env.path("TLS_CERT", &mut self.tls_cert);
        env.path("TLS_KEY", &mut self.tls_key);
        env.parsed("MAX_MANIFEST_BYTES", &mut self.max_manifest_bytes)?;
        env.string("LOG_LEVEL", &mut self.log_level);
        env.parsed("LOG_JSON", &mut self.log_json)?;
        if let Some(r) = env.get("AUTH_REALM") {
            self.auth.realm = Some(r);
        }
        env.string("AUTH_SERVICE", &mut self.auth.service);
        env.string("AUTH_ISSUER", &mut self.auth.issuer);
        env.list("AUTH_AUDIENCES", &mut self.auth.audiences);
        env.list("AUTH_HOSTNAMES", &mut self.auth.hostnames);
        env.parsed("AUTH_TOKEN_TTL_SECS", &mut self.auth.token_ttl_secs)?;
        env.path("AUTH_SIGNING_CERT", &mut self.auth.signing_cert);
        env.path("AUTH_SIGNING_KEY", &mut self.auth.signing_key);
        env.parsed("GC_INTERVAL_SECS", &mut self.gc.interval_secs)?;
        env.parsed("GC_GRACE_SECS", &mut self.gc.grace_secs)?;
        env.parsed("GC_UNTAGGED_DAYS", &mut self.gc.untagged_days)?;
        env.parsed("UPLOAD_EXPIRY_SECS", &mut self.gc.upload_expiry_secs)?;
        env.parsed("GC_BATCH_SIZE", &mut self.gc.batch_size)?;
        env.parsed("GC_PAUSE_MS", &mut self.gc.pause_ms)?;
        env.parsed("CLUSTER_HEARTBEAT_SECS", &mut self.cluster_heartbeat_secs)?;
        self.storage.apply_env(&env)?;
        self.admission.apply_env(&env)?;
        self.trust.apply_env(&env)?;
        Ok(())
    }

    /// The database URL.
    pub fn database_url(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.data_dir.join("registry.db").display().to_string())
    }
}

/// Opens the database and blob store of a configuration.
pub async fn open_backends(config: &Config) -> anyhow::Result<(Db, Arc<dyn BlobStore>)> {
    notary_daemon::fs::private_dir(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let db = Db::open(&config.database_url())
        .await
        .context("opening the registry database")?;
    let store: Arc<dyn BlobStore> = match &config.storage {
        StorageConfig::Filesystem { root } => {
            let root = root
                .clone()
                .unwrap_or_else(|| config.data_dir.join("blobs"));
            Arc::new(crate::storage::fs::FsStore::open(&root).context("opening blob storage")?)
        }
        StorageConfig::S3 { .. } => {
            let options = s3_options(&config.storage)?
                .ok_or_else(|| anyhow::anyhow!("S3 storage without settings"))?;
            Arc::new(
                crate::storage::s3::S3Store::open(&options).context("opening S3 blob storage")?,
            )
        }
    };
    Ok((db, store))
}

/// Builds the registry state of a configuration.
pub async fn build(config: &Config) -> anyhow::Result<Arc<Registry>> {
    let (db, store) = open_backends(config).await?;
    let mut auth_service = None;
    let access: Arc<dyn Access> = if config.no_auth {
        tracing::warn!(
            "serving WITHOUT authentication (--no-auth): anyone can push, pull and delete"
        );
        Arc::new(Open)
    } else {
        let svc = crate::auth::AuthService::new(
            config.auth.clone(),
            db.clone(),
            &config.data_dir,
            !config.plain_http,
        )?;
        let env_password = std::env::var("NOTARY_REGISTRY_ADMIN_PASSWORD")
            .ok()
            .map(zeroize::Zeroizing::new);
        crate::auth::bootstrap_admin(svc.store(), &config.data_dir, env_password).await?;
        auth_service = Some(Arc::clone(&svc));
        Arc::new(crate::auth::TokenAccess::new(svc))
    };
    // The Notary API's storage and signer; its service is what the policy engine reads
    // verified trust data from (`trust.as_ref().map(|t| t.service())`).
    let trust = crate::trust::open(config, auth_service).await?;
    // With trust data served, the signed-image policy engine is the decision point of
    // every manifest route and of the admission webhook (no policy set: it allows).
    let engine = match &trust {
        Some(t) => {
            let hosts = Arc::clone(t);
            Some(
                crate::policy::engine::engine_with_prefixes(
                    db.clone(),
                    Arc::clone(t.service()),
                    Arc::new(move || hosts.hostnames()),
                )
                .await
                .map_err(|e| anyhow::anyhow!("policy engine: {e}"))?,
            )
        }
        None => None,
    };
    let policy: Arc<dyn Policy> = match &engine {
        Some(e) => Arc::clone(e) as Arc<dyn Policy>,
        None => Arc::new(AllowAll),
    };
    let options = Options {
        max_manifest_bytes: config.max_manifest_bytes,
        ..Options::default()
    };
    config.gc.validate().map_err(anyhow::Error::msg)?;
    let mut registry = Registry::new(db, store, access, policy, options);
    registry.trust = trust;
    let registry = Arc::new(registry);
    if let Some(e) = engine {
        registry.set_policy_engine(e);
    }
    if config.admission.enabled {
        let settings = config
            .admission
            .settings(config.listen, false, &config.auth.hostnames)
            .context("admission configuration")?;
        registry.set_admission_settings(settings);
    }
    crate::jobs::start(&registry, &config.gc);
    crate::cluster::start(
        &registry,
        &config.listen.to_string(),
        config.cluster_heartbeat_secs,
    )
    .await
    .context("registering this replica")?;
    Ok(registry)
}

/// Installs the Prometheus recorder once per process.
pub fn prometheus() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .ok()
        })
        .clone()
}

async fn metrics_route() -> Response {
    match prometheus() {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/health` and `/_ping`: the database and the blob store answer.
async fn health(State(reg): State<Arc<Registry>>) -> Response {
    let db = reg.db.ping().await;
    let store = reg.store.health().await;
    let notary = match &reg.trust {
        Some(t) => Some(t.health().await),
        None => None,
    };
    let ok = db.is_ok() && store.is_ok() && notary.as_ref().is_none_or(|(ok, _)| *ok);
    let mut body = serde_json::json!({
        "status": if ok { "OK" } else { "unhealthy" },
        "database": db.err().map(|e| e.to_string()).unwrap_or_else(|| "OK".into()),
        "storage": store.err().map(|e| e.to_string()).unwrap_or_else(|| "OK".into()),
    });
    if let Some((_, n)) = notary {
        body["notary"] = n;
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The whole application: registry API, health and metrics.
pub fn app(registry: Arc<Registry>) -> Router {
    let policy = Arc::clone(&registry);
    let ops = Router::new()
        .route("/health", get(health))
        .route("/_ping", get(health))
        .route("/metrics", get(metrics_route))
        .with_state(Arc::clone(&registry));
    let jobs = crate::jobs::router(Arc::clone(&registry));
    let cluster = crate::cluster::router(Arc::clone(&registry));
    let extra = registry.access.routes();
    let admission = match (registry.image_policy(), registry.admission_settings()) {
        (Some(policy), Some(settings)) => Some(crate::admission::router(
            Arc::clone(&registry),
            policy,
            settings,
        )),
        _ => None,
    };
    let notary = registry
        .trust
        .as_ref()
        .map(|t| t.router(Arc::clone(&registry)));
    let app = crate::api::router(registry)
        .merge(ops)
        .merge(jobs)
        .merge(cluster);
    let app = match admission {
        Some(routes) => app.merge(routes),
        None => app,
    };
    let app = match extra {
        Some(routes) => app.merge(routes),
        None => app,
    };
    let app = crate::policy::mount(policy, app);
    // `/v2/<gun>/_trust/…` goes to the Notary API, everything else to the registry.
    let app = match notary {
        Some(api) => notary_server::api::mount(app, api),
        None => app,
    };
    app.layer(axum::middleware::map_request(host_from_authority))
}

/// HTTP/2 requests carry the host in the URI's authority, not in a `Host` header: copy
/// it, so the realm of challenges and the host-name mapping of scopes derived from
/// `Host` are the same over both protocols (curl speaks HTTP/2 over TLS).
async fn host_from_authority(mut req: axum::extract::Request) -> axum::extract::Request {
    if !req.headers().contains_key(header::HOST) {
        if let Some(v) = req
            .uri()
            .authority()
            .and_then(|a| header::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, v);
        }
    }
    req
}

/// TLS files for a configuration: the configured ones, or a CA and a server
/// certificate for localhost generated once under `DATA_DIR/tls`.
pub fn tls_files(config: &Config) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(c), Some(k)) = (&config.tls_cert, &config.tls_key) {
        return Ok((c.clone(), k.clone()));
    }
    let dir = config.data_dir.join("tls");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    if !cert.exists() || !key.exists() {
        generate_tls(&dir).context("generating a TLS certificate")?;
    }
    Ok((cert, key))
}

/// Writes `ca.crt`, `ca.key`, `server.crt` (chain) and `server.key` into `dir`.
pub fn generate_tls(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    notary_daemon::fs::private_dir(dir)?;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "notary-registry CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !host.is_empty() && host != "localhost" {
        sans.push(host);
    }
    let mut leaf = CertificateParams::new(sans)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "notary-registry");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    notary_daemon::fs::write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    std::fs::write(
        dir.join("server.crt"),
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
    )?;
    notary_daemon::fs::write_private(&dir.join("server.key"), leaf_key.serialize_pem().as_bytes())?;
    Ok(())
}

/// Serves `app` on `listener` until `shutdown` resolves (in-flight requests get 30 s).
pub async fn serve(
    app: Router,
    listener: std::net::TcpListener,
    tls: Option<(PathBuf, PathBuf)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = match tls {
        Some((cert, key)) => {
            let files = notary_server::daemon::tls::TlsFiles {
                cert,
                key,
                client_ca: None,
            };
            Some(Arc::new(
                notary_server::daemon::tls::server_config(&files).context("TLS configuration")?,
            ))
        }
        None => None,
    };
    notary_server::daemon::serve_router(
        app.layer(tower_http::trace::TraceLayer::new_for_http()),
        listener,
        tls,
        std::time::Duration::from_secs(30),
        shutdown,
    )
    .await
}
