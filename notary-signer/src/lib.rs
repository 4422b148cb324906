//! notary-signer: holds timestamp and snapshot keys sealed at rest and signs for
//! notary-server over mutually authenticated gRPC, wire-compatible with Go Notary 0.7
//! (spec §8): package `proto`, services `KeyManagement` and `Signer`, the
//! `grpc.health.v1` service, keys sealed as Go's JWE rows.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod client;
pub mod config;
pub mod jwe;
pub mod keys;
pub mod proto;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::keys::{KeyError, KeyService, Passphrases};
use crate::proto::key_management_server::{KeyManagement, KeyManagementServer};
use crate::proto::signer_server::{Signer, SignerServer};
use crate::store::KeyStore;

/// Largest gRPC message accepted (a Sign request carries a whole snapshot's signed part).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

impl From<KeyError> for Status {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound(_) => Status::not_found(e.to_string()),
            // Go answers UNKNOWN here.
            KeyError::Algorithm(_) => Status::unknown(e.to_string()),
            KeyError::Store(ref inner) => {
                tracing::error!(error = %inner, "storage failure");
                Status::unavailable("key storage unavailable")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal(other.to_string())
            }
        }
    }
}

/// The gRPC front of a [`KeyService`].
#[derive(Clone)]
pub struct Grpc {
    keys: Arc<KeyService>,
}

impl Grpc {
    /// Wraps a key service.
    pub fn new(keys: Arc<KeyService>) -> Self {
        Grpc { keys }
    }
}

fn key_id_of(k: Option<proto::KeyId>) -> Result<String, Status> {
    match k {
        Some(k) if !k.id.is_empty() && k.id.len() <= 256 => Ok(k.id),
        _ => Err(Status::invalid_argument("missing or invalid key ID")),
    }
}

#[tonic::async_trait]
impl KeyManagement for Grpc {
    async fn create_key(
        &self,
        req: Request<proto::CreateKeyRequest>,
    ) -> Result<Response<proto::PublicKey>, Status> {
        let r = req.into_inner();
        let info = self.keys.create_key(&r.algorithm, &r.gun, &r.role).await?;
        Ok(Response::new(proto::PublicKey {
            key_info: Some(proto::KeyInfo::new(&info.key_id, &info.algorithm)),
            public_key: info.public,
        }))
    }

    async fn delete_key(
        &self,
        req: Request<proto::KeyId>,
    ) -> Result<Response<proto::Void>, Status> {
        let id = key_id_of(Some(req.into_inner()))?;
        self.keys.delete_key(&id).await?;
        Ok(Response::new(proto::Void {}))
    }

    async fn get_key_info(
        &self,
        req: Request<proto::KeyId>,
    ) -> Result<Response<proto::GetKeyInfoResponse>, Status> {
        let id = key_id_of(Some(req.into_inner()))?;
        let info = self.keys.key_info(&id).await?;
        tracing::debug!(key_id = %id, "GetKeyInfo: returning the public key");
        Ok(Response::new(proto::GetKeyInfoResponse {
            key_info: Some(proto::KeyInfo::new(&info.key_id, &info.algorithm)),
            public_key: info.public,
            role: info.role,
        }))
    }
}

#[tonic::async_trait]
impl Signer for Grpc {
    async fn sign(
        &self,
        req: Request<proto::SignatureRequest>,
    ) -> Result<Response<proto::Signature>, Status> {
        let r = req.into_inner();
        let id = key_id_of(r.key_id)?;
        let (key, method, sig) = self.keys.sign(&id, &r.content).await?;
        tracing::debug!(key_id = %id, bytes = r.content.len(), "Sign: signed");
        Ok(Response::new(proto::Signature {
            key_info: Some(proto::KeyInfo::new(&id, &key.algorithm)),
            algorithm: Some(proto::Algorithm { algorithm: method }),
            content: sig,
        }))
    }
}

/// Opens the configured storage.
pub async fn open_store(config: &Config) -> anyhow::Result<KeyStore> {
    Ok(match config.storage.backend.as_str() {
        "memory" => KeyStore::memory(),
        "sqlite3" => KeyStore::open_sqlite(&config.storage.db_url)
            .await
            .with_context(|| format!("opening SQLite database {}", config.storage.db_url))?,
        "postgres" => KeyStore::open_postgres(&config.storage.db_url)
            .await
            .context("connecting to PostgreSQL")?,
        other => anyhow::bail!("unsupported storage backend {other:?}"),
    })
}

/// Builds the key service for a configuration and checks its passphrases.
pub async fn key_service(
    config: &Config,
    passphrases: Passphrases,
) -> anyhow::Result<Arc<KeyService>> {
    let store = open_store(config).await?;
    let keys = KeyService::new(store, config.storage.default_alias.clone(), passphrases);
    keys.check_passphrases().await?;
    Ok(Arc::new(keys))
}

/// TLS settings from the configuration: our certificate, and client certificates
/// required and verified against `client_ca_file`.
pub fn tls_config(config: &Config) -> anyhow::Result<ServerTlsConfig> {
    let read = |p: &Option<std::path::PathBuf>, what: &str| -> anyhow::Result<Vec<u8>> {
        let p = p.as_ref().with_context(|| format!("{what} is required"))?;
        std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))
    };
    let cert = read(&config.server.tls_cert_file, "server.tls_cert_file")?;
    let key = read(&config.server.tls_key_file, "server.tls_key_file")?;
    let ca = read(&config.server.client_ca_file, "server.client_ca_file")?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false))
}

/// Serves the signer's gRPC services (with `grpc.health.v1`) on `listener` until
/// `shutdown` completes. Health reports both of Go's service names as SERVING while the
/// database answers, NOT_SERVING otherwise.
pub async fn serve(
    keys: Arc<KeyService>,
    tls: ServerTlsConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in proto::HEALTH_SERVICES {
        reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // The database check Go runs every minute, here every 10 s.
    let watched = Arc::clone(&keys);
    let watcher = tokio::spawn(async move {
        let mut last_ok = true;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
            let ok =
                tokio::time::timeout(std::time::Duration::from_secs(5), watched.store().health())
                    .await
                    .is_ok_and(|r| r.is_ok());
            if ok != last_ok {
                let status = if ok {
                    tracing::info!("database reachable again");
                    tonic_health::ServingStatus::Serving
                } else {
                    tracing::error!("database unreachable: reporting NOT_SERVING");
                    tonic_health::ServingStatus::NotServing
                };
                for name in proto::HEALTH_SERVICES {
                    reporter.set_service_status(name, status).await;
                }
                last_ok = ok;
            }
        }
    });
    let grpc = Grpc::new(keys);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let result = Server::builder()
        .tls_config(tls)
        .context("TLS configuration")?
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(health)
        .add_service(
            KeyManagementServer::new(grpc.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(SignerServer::new(grpc).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .context("gRPC server");
    watcher.abort();
    result
}

/// Binds `addr` (port 0: the OS picks) and returns the listener and its address.
pub async fn bind(addr: &str) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let a = l.local_addr()?;
    Ok((l, a))
}
