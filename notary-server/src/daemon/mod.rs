//! The standalone `notary-server` daemon: Go's configuration, storage and trust service
//! set-up, the routes beside the API (ping, health, metrics, 404 fallback), the
//! Prometheus recorder, timeouts, TLS (with client certificates when
//! `server.client_ca_file` is set) and the serve loop. The binary is a thin `main` over
//! this module; the API itself is [`crate::api`].

pub mod config;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use notary_core::Algorithm;
use serde_json::json;
use zeroize::Zeroizing;

use self::config::{AuthKind, Backend, Config, KeyAlgorithm, TrustKind};
use crate::api::{self, ApiOptions, CacheAges};
use crate::error::{ApiError, Code};
use crate::service::Service;
use crate::storage::Store;
use crate::trust::{LocalTrust, RemoteTrust, TrustService};

/// Shared state of the daemon's own routes.
#[derive(Clone)]
pub struct AppState {
    /// The metadata service.
    pub service: Arc<Service>,
    /// Configuration.
    pub config: Arc<Config>,
    /// Token authentication, when `auth.type` is `token`.
    pub auth: Option<Arc<crate::auth::TokenAuth>>,
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

    /// The API options this configuration gives.
    pub fn api_options(&self) -> ApiOptions {
        let c = &self.config;
        ApiOptions {
            auth: self
                .auth
                .clone()
                .map(|a| a as Arc<dyn crate::api::Authorize>),
            gun_prefixes: c.repositories.gun_prefixes.clone(),
            cache: CacheAges {
                current: c.caching.max_age.current_metadata,
                consistent: c.caching.max_age.consistent_metadata,
            },
            limits: c.upload_limits(),
        }
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
        .get::<crate::api::Operation>()
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

/// Go's server guards `/v2/` and every unmatched path with the catalog scope.
fn catalog_denied(state: &AppState, req: &Request) -> Option<Response> {
    let auth = state.auth.as_ref()?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let e = auth
        .check(
            req.headers().get(header::AUTHORIZATION),
            &[crate::auth::Access::catalog()],
            now,
        )
        .err()?;
    let mut resp = e.into_response();
    resp.extensions_mut().insert(api::Operation("Unauthorized"));
    Some(resp)
}

/// `GET /v2/`: the registry ping Go's server answers.
async fn ping(State(state): State<AppState>, req: Request) -> Response {
    if let Some(denied) = catalog_denied(&state, &req) {
        return denied;
    }
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "{}",
    )
        .into_response();
    resp.extensions_mut().insert(api::Operation("Ping"));
    resp
}

/// Go's catch-all: 404 without detail for GET/POST/PUT/HEAD/DELETE, 405 otherwise.
async fn not_found(State(state): State<AppState>, req: Request) -> Response {
    use axum::http::Method;
    if let Some(denied) = catalog_denied(&state, &req) {
        return denied;
    }
    let mut resp = if matches!(
        *req.method(),
        Method::GET | Method::POST | Method::PUT | Method::HEAD | Method::DELETE
    ) {
        ApiError::new(Code::MetadataNotFound, None).into_response()
    } else {
        StatusCode::METHOD_NOT_ALLOWED.into_response()
    };
    resp.extensions_mut().insert(api::Operation("NotFound"));
    resp
}

/// `GET /_notary_server/health`: `{}` or 503 with the failing checks.
pub async fn health(State(state): State<AppState>) -> Response {
    let mut failing = serde_json::Map::new();
    // Each check is bounded so a hung dependency shows as failing, not as a hung probe.
    let limit = std::time::Duration::from_secs(2);
    match tokio::time::timeout(limit, state.service.store().health()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            failing.insert("DB operational".into(), json!(e.to_string()));
        }
        Err(_) => {
            failing.insert("DB operational".into(), json!("timed out after 2s"));
        }
    }
    match tokio::time::timeout(limit, state.service.trust().health()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            failing.insert("Trust operational".into(), json!(e.to_string()));
        }
        Err(_) => {
            failing.insert("Trust operational".into(), json!("timed out after 2s"));
        }
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        serde_json::Value::Object(failing).to_string(),
    )
        .into_response()
}

/// The daemon's whole router: the Notary API mounted beside ping, health, metrics and
/// Go's 404, with a request timeout, metrics and tracing around everything.
pub fn app(state: AppState) -> Router {
    let api = api::router(Arc::clone(&state.service), state.api_options());
    let own = Router::new()
        .route("/_notary_server/health", get(health))
        .route("/metrics", get(metrics_page))
        .route("/v2/", get(ping))
        .fallback(any(not_found))
        .with_state(state);
    api::mount(own, api)
        // A request that takes longer (a stalled upload, a hung database) is answered 408
        // instead of holding its connection and GUN lock forever.
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            std::time::Duration::from_secs(120),
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(tower_http::trace::TraceLayer::new_for_http())
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

fn algorithm_name(a: KeyAlgorithm) -> &'static str {
    match a {
        KeyAlgorithm::Ecdsa => "ecdsa",
        KeyAlgorithm::Ed25519 => "ed25519",
    }
}

/// The notary-signer client of a `remote` trust service configuration.
pub fn remote_trust(config: &Config, store: Store) -> anyhow::Result<RemoteTrust> {
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
    Ok(RemoteTrust::new(
        client,
        store,
        algorithm_name(t.key_algorithm),
    ))
}

/// Builds the state from configuration: storage, trust service, metrics.
pub async fn build_state(
    config: Config,
    key_passphrase: Zeroizing<String>,
) -> anyhow::Result<AppState> {
    let store = match config.storage.backend {
        Backend::Memory => Store::memory().await?,
        Backend::Postgres => Store::open_postgres(&config.storage.db_url).await?,
        Backend::Sqlite => Store::open_sqlite(&config.storage.db_url).await?,
    };
    let algorithm = match config.trust_service.key_algorithm {
        KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
        KeyAlgorithm::Ecdsa => Algorithm::EcdsaP256,
    };
    let trust: Arc<dyn TrustService> = match config.trust_service.kind {
        TrustKind::Remote => Arc::new(remote_trust(&config, store.clone())?),
        TrustKind::Local => Arc::new(LocalTrust::new(store.clone(), algorithm, key_passphrase)),
    };
    let service = Arc::new(Service::new(store.clone(), trust));
    if store.is_shared() {
        service
            .follow_changefeed(std::time::Duration::from_millis(500))
            .await?;
    }
    let auth = match &config.auth {
        Some(a) if a.kind == Some(AuthKind::Token) => {
            Some(Arc::new(crate::auth::TokenAuth::load(&a.options)?))
        }
        _ => {
            tracing::warn!("no auth configured: every client may read and write every repository");
            None
        }
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
        notary_daemon::fs::private_dir(dir)?;
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "notary-server".to_owned(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)?;
    std::fs::write(cert, certified.cert.pem())?;
    notary_daemon::fs::write_private(key, certified.signing_key.serialize_pem().as_bytes())?;
    Ok(())
}

/// The passphrase sealing the keys of a local trust service: `NOTARY_SERVER_KEY_PASSPHRASE`,
/// else a random one kept (0600) in `dir/key-passphrase` (`dir` 0700), created on first
/// use. Without a directory (memory storage, or a PostgreSQL shared by replicas, which
/// must all use the same passphrase) the variable is required, except for memory
/// storage, which gets a random passphrase for the life of the process.
pub fn key_passphrase(dir: Option<&Path>, memory: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("NOTARY_SERVER_KEY_PASSPHRASE") {
        if !p.is_empty() {
            return Ok(Zeroizing::new(p));
        }
    }
    let random = || -> anyhow::Result<Zeroizing<String>> {
        let mut raw = Zeroizing::new([0u8; 32]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut *raw)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Zeroizing::new(hex::encode(*raw)))
    };
    let Some(dir) = dir else {
        if memory {
            return random();
        }
        anyhow::bail!(
            "NOTARY_SERVER_KEY_PASSPHRASE is required: the local trust service seals its keys in the database with it"
        );
    };
    let file = dir.join("key-passphrase");
    if let Ok(p) = std::fs::read_to_string(&file) {
        return Ok(Zeroizing::new(p.trim().to_owned()));
    }
    notary_daemon::fs::private_dir(dir)?;
    let p = random()?;
    notary_daemon::fs::write_private(&file, p.as_bytes())?;
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
/// With `tls`, HTTPS (and client certificates required when the configuration names a
/// `server.client_ca_file`).
pub async fn serve(
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<tls::TlsFiles>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = match tls {
        Some(files) => Some(Arc::new(
            tls::server_config(&files).context("TLS configuration")?,
        )),
        None => None,
    };
    serve_router(app(state), listener, tls, Duration::from_secs(30), shutdown).await
}

/// Serves any router on `listener` (HTTPS with `tls`) until `shutdown` resolves, then
/// gives in-flight requests `grace` to finish. TCP_NODELAY on every connection: a
/// response written in two pieces must not wait for the client's delayed ACK (40 ms
/// stalls otherwise).
pub async fn serve_router(
    app: Router,
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = app.into_make_service();
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h2.graceful_shutdown(Some(grace));
    });
    listener.set_nonblocking(true)?;
    let server = axum_server::from_tcp(listener).handle(handle);
    match tls {
        Some(cfg) => {
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
                axum_server::tls_rustls::RustlsConfig::from_config(cfg),
            )
            .acceptor(axum_server::accept::NoDelayAcceptor::new());
            server.acceptor(acceptor).serve(app).await?;
        }
        None => {
            server
                .acceptor(axum_server::accept::NoDelayAcceptor::new())
                .serve(app)
                .await?;
        }
    }
    Ok(())
}

/// A running server's listening address, for callers that bind port 0.
pub fn local_addr(listener: &std::net::TcpListener) -> std::io::Result<SocketAddr> {
    listener.local_addr()
}
