//! notary-server: the Notary v1 metadata server (spec §4-7) as a library: an axum
//! [`Router`] over a [`service::Service`], so the registry can mount it. The binary is a
//! thin `main` over [`run`].
//!
//! Storage is SQLite (a file in WAL mode, or in memory) or PostgreSQL shared by several
//! replicas (each follows the changefeed to drop cached state another replica
//! changed); the trust service signing
//! timestamps and server-managed snapshots is a trait ([`trust::TrustService`]) with an
//! in-process implementation whose keys are sealed in the database.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod auth;
pub mod config;
pub mod error;
pub mod routes;
pub mod service;
pub mod storage;
pub mod trust;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use notary_core::{Algorithm, Gun};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::service::Service;
use crate::storage::Store;
use crate::trust::{LocalTrust, RemoteTrust, TrustService};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// The metadata service.
    pub service: Arc<Service>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Token authentication, when `auth.type` is `token`.
    pub auth: Option<Arc<auth::TokenAuth>>,
    metrics: Option<PrometheusHandle>,
}

impl AppState {
    /// State over a service and configuration.
    pub fn new(
        service: Arc<Service>,
        config: Arc<Config>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        AppState {
            service,
            config,
            auth: None,
            metrics,
        }
    }

    /// Whether the GUN passes `repositories.gun_prefixes`.
    pub fn prefix_allowed(&self, gun: &Gun) -> bool {
        let prefixes = &self.config.repositories.gun_prefixes;
        prefixes.is_empty()
            || prefixes
                .iter()
                .any(|p| gun.as_str().starts_with(p.as_str()))
    }
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(h) => h.render().into_response(),
        None => String::new().into_response(),
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let size = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let start = Instant::now();
    let resp = next.run(req).await;
    let op = resp
        .extensions()
        .get::<routes::Operation>()
        .map_or("Other", |o| o.0);
    let code = resp.status().as_u16().to_string();
    let labels = [
        ("code", code),
        ("method", method),
        ("operation", op.to_owned()),
    ];
    metrics::counter!("notary_server_http_requests_total", &labels).increment(1);
    metrics::histogram!("notary_server_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    metrics::histogram!("notary_server_http_request_size_bytes", &labels).record(size);
    resp
}

/// The server's router.
pub fn app(state: AppState) -> Router {
    let limit = state.config.max_update_bytes;
    Router::new()
        .route("/_notary_server/health", get(routes::health))
        .route("/metrics", get(metrics_page))
        .route("/v2", any(routes::dispatch))
        .route("/v2/", any(routes::dispatch))
        .route("/v2/{*rest}", any(routes::dispatch))
        .fallback(routes::dispatch)
        .layer(DefaultBodyLimit::max(limit))
        // A request that takes longer (a stalled upload, a hung database) is answered 408
        // instead of holding its connection and GUN lock forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(120),
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Installs the global Prometheus recorder once per process.
pub fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Fixed buckets (histograms, not per-label quantile sketches) keep memory flat.
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("notary_server_http_request_duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("notary_server_http_request_size_bytes".into()),
                        &[
                            256.0,
                            1024.0,
                            4096.0,
                            16384.0,
                            65536.0,
                            262_144.0,
                            1_048_576.0,
                            8_388_608.0,
                        ],
                    )
                })
                .ok()?
                .install_recorder()
                .ok()?;
            // Samples are buffered until drained; without regular upkeep every request
            // would grow the process (a few MB per million requests).
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The notary-signer client of a `remote` trust service configuration.
pub fn remote_trust(config: &Config) -> anyhow::Result<RemoteTrust> {
    let t = &config.trust_service;
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading trust_service.{what} {}", p.display()))
    };
    let ca_pem = match &t.tls_ca_file {
        Some(p) => read(p, "tls_ca_file")?,
        None => anyhow::bail!("trust_service.tls_ca_file is required"),
    };
    let client_identity = match (&t.tls_client_cert, &t.tls_client_key) {
        (Some(c), Some(k)) => Some((read(c, "tls_client_cert")?, read(k, "tls_client_key")?)),
        _ => None,
    };
    let client = notary_signer::client::RemoteSigner::new(&notary_signer::client::ClientConfig {
        hostname: t.hostname.clone(),
        port: t.port_number()?,
        ca_pem,
        client_identity,
        timeout: std::time::Duration::from_secs(10),
    })?;
    tracing::info!(signer = %format!("{}:{}", t.hostname, t.port_number()?), "using a remote trust service");
    Ok(RemoteTrust::new(client, &t.key_algorithm))
}

/// Builds the state from configuration: storage, trust service, metrics.
pub async fn build_state(
    config: Config,
    key_passphrase: Zeroizing<String>,
) -> anyhow::Result<AppState> {
    let store = match config.storage.backend.as_str() {
        "memory" => Store::memory().await?,
        "postgres" => Store::open_postgres(&config.storage.db_url).await?,
        _ => Store::open_sqlite(&config.storage.db_url).await?,
    };
    let algorithm = match config.trust_service.key_algorithm.as_str() {
        "ed25519" => Algorithm::Ed25519,
        _ => Algorithm::EcdsaP256,
    };
    let trust: Arc<dyn TrustService> = match config.trust_service.kind.as_str() {
        "remote" => Arc::new(remote_trust(&config)?),
        _ => Arc::new(LocalTrust::new(store.clone(), algorithm, key_passphrase)),
    };
    let service = Arc::new(Service::new(store.clone(), trust));
    if store.is_shared() {
        service
            .follow_changefeed(std::time::Duration::from_millis(500))
            .await?;
    }
    let auth = match &config.auth {
        Some(a) if a.kind == "token" => Some(Arc::new(auth::TokenAuth::load(&a.options)?)),
        _ => None,
    };
    let mut state = AppState::new(service, Arc::new(config), prometheus());
    state.auth = auth;
    Ok(state)
}

/// Writes a self-signed certificate for `localhost`/127.0.0.1 into `dir` unless present.
pub fn ensure_self_signed(cert: &Path, key: &Path) -> anyhow::Result<()> {
    if cert.exists() && key.exists() {
        return Ok(());
    }
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "notary-server".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(cert, certified.cert.pem())?;
    write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// The passphrase sealing server keys: `NOTARY_SERVER_KEY_PASSPHRASE`, else a random one
/// kept (0600) in `data_dir/key-passphrase`.
pub fn key_passphrase(data_dir: &Path) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("NOTARY_SERVER_KEY_PASSPHRASE") {
        if !p.is_empty() {
            return Ok(Zeroizing::new(p));
        }
    }
    let file = data_dir.join("key-passphrase");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return Ok(Zeroizing::new(p.trim().to_owned()));
    }
    std::fs::create_dir_all(data_dir)?;
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let p = Zeroizing::new(hex::encode(raw));
    write_private(&file, p.as_bytes())?;
    Ok(p)
}

/// A running server's address and scheme.
#[derive(Clone, Debug)]
pub struct Listening {
    /// Bound address.
    pub addr: SocketAddr,
    /// Whether TLS is on.
    pub tls: bool,
}

/// Serves `state` on `listener` until `shutdown` resolves; in-flight requests finish.
pub async fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<(PathBuf, PathBuf)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = app(state).into_make_service();
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h2.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    listener.set_nonblocking(true)?;
    match tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let cfg = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            // TCP_NODELAY: a response written in two pieces must not wait for the
            // client's delayed ACK (40 ms stalls otherwise).
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(cfg)
                .acceptor(axum_server::accept::NoDelayAcceptor::new());
            axum_server::from_tcp(listener)
                .acceptor(acceptor)
                .handle(handle)
                .serve(app)
                .await?;
        }
        None => {
            axum_server::from_tcp(listener)
                .acceptor(axum_server::accept::NoDelayAcceptor::new())
                .handle(handle)
                .serve(app)
                .await?;
        }
    }
    Ok(())
}
