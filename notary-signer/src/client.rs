//! The client side of the signer protocol, as notary-server uses it for
//! `trust_service.type = "remote"`: one HTTP/2 connection (reconnected on demand), TLS
//! with the configured CA as the only root, an optional client certificate, a deadline on
//! every call, and the health check Go's server runs.

use std::time::Duration;

use notary_core::{KeyType, PublicKey, SigMethod};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::proto;
use crate::proto::key_management_client::KeyManagementClient;
use crate::proto::signer_client::SignerClient;

/// Client failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The signer does not hold the key.
    #[error("key {0} not found on the signer")]
    NotFound(String),
    /// The signer cannot be reached or timed out.
    #[error("signer unavailable: {0}")]
    Unavailable(String),
    /// The signer answered with an error.
    #[error("signer error: {0}")]
    Remote(String),
    /// Bad settings (files, names).
    #[error("signer client configuration: {0}")]
    Config(String),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        match s.code() {
            tonic::Code::NotFound => ClientError::NotFound(s.message().to_owned()),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                ClientError::Unavailable(format!("{}: {}", s.code(), s.message()))
            }
            _ => ClientError::Remote(format!("{}: {}", s.code(), s.message())),
        }
    }
}

/// Where and how to reach a signer.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Host name or IP address; also the name the signer's certificate must carry.
    pub hostname: String,
    /// Port.
    pub port: u16,
    /// PEM of the CA(s) trusted for the signer's certificate (the only roots used).
    pub ca_pem: Vec<u8>,
    /// PEM client certificate and key, for mutual TLS.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Deadline of each call.
    pub timeout: Duration,
}

/// A connection to a notary-signer.
#[derive(Clone, Debug)]
pub struct RemoteSigner {
    channel: Channel,
    timeout: Duration,
}

impl RemoteSigner {
    /// Prepares the connection; it is opened on first use and re-opened after failures.
    pub fn new(cfg: &ClientConfig) -> Result<Self, ClientError> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&cfg.ca_pem))
            .domain_name(cfg.hostname.clone());
        if let Some((cert, key)) = &cfg.client_identity {
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        let host = if cfg.hostname.contains(':') {
            format!("[{}]", cfg.hostname)
        } else {
            cfg.hostname.clone()
        };
        let endpoint = Endpoint::from_shared(format!("https://{host}:{}", cfg.port))
            .map_err(|e| ClientError::Config(e.to_string()))?
            .tls_config(tls)
            .map_err(|e| ClientError::Config(e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .timeout(cfg.timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        Ok(RemoteSigner {
            channel: endpoint.connect_lazy(),
            timeout: cfg.timeout,
        })
    }

    /// The underlying gRPC channel (for raw calls with the generated clients).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn km(&self) -> KeyManagementClient<Channel> {
        KeyManagementClient::new(self.channel.clone())
            .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
    }

    /// `CreateKey`: the signer's (possibly reused, never-used) key for gun/role.
    pub async fn create_key(
        &self,
        algorithm: &str,
        gun: &str,
        role: &str,
    ) -> Result<PublicKey, ClientError> {
        let r = self
            .km()
            .create_key(proto::CreateKeyRequest {
                algorithm: algorithm.to_owned(),
                gun: gun.to_owned(),
                role: role.to_owned(),
            })
            .await?
            .into_inner();
        public_key(r.key_info.as_ref(), r.public_key)
    }

    /// `GetKeyInfo`: the public key and role, or `None` when the signer lacks the key.
    pub async fn key_info(&self, key_id: &str) -> Result<Option<(PublicKey, String)>, ClientError> {
        match self
            .km()
            .get_key_info(proto::KeyId {
                id: key_id.to_owned(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Some((
                    public_key(r.key_info.as_ref(), r.public_key)?,
                    r.role,
                )))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s.into()),
        }
    }

    /// `DeleteKey`.
    pub async fn delete_key(&self, key_id: &str) -> Result<(), ClientError> {
        self.km()
            .delete_key(proto::KeyId {
                id: key_id.to_owned(),
            })
            .await?;
        Ok(())
    }

    /// `Sign`: the signature over the full message, with the method for the key type
    /// (ecdsa → `ecdsa`, ed25519 → `eddsa`, rsa → `rsapss`), as Go's server builds it.
    pub async fn sign(
        &self,
        key_id: &str,
        msg: &[u8],
    ) -> Result<(SigMethod, Vec<u8>), ClientError> {
        let r = SignerClient::new(self.channel.clone())
            .sign(proto::SignatureRequest {
                key_id: Some(proto::KeyId {
                    id: key_id.to_owned(),
                }),
                content: msg.to_vec(),
            })
            .await?
            .into_inner();
        let alg = r
            .key_info
            .and_then(|k| k.algorithm)
            .map(|a| a.algorithm)
            .unwrap_or_default();
        let method = match KeyType::parse(&alg) {
            KeyType::Ecdsa | KeyType::EcdsaX509 => SigMethod::Ecdsa,
            KeyType::Ed25519 => SigMethod::EdDsa,
            KeyType::Rsa | KeyType::RsaX509 => SigMethod::RsaPss,
            _ => match r.algorithm {
                Some(a) => SigMethod::parse(&a.algorithm),
                None => return Err(ClientError::Remote(format!("unknown key type {alg:?}"))),
            },
        };
        Ok((method, r.content))
    }

    /// Go's server-side check: both signer services report SERVING through
    /// `grpc.health.v1`.
    pub async fn health(&self) -> Result<(), ClientError> {
        let mut h = HealthClient::new(self.channel.clone());
        for name in proto::HEALTH_SERVICES {
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: name.to_owned(),
            });
            req.set_timeout(self.timeout);
            let status = h.check(req).await?.into_inner().status;
            if status != ServingStatus::Serving as i32 {
                return Err(ClientError::Unavailable(format!("{name} is not serving")));
            }
        }
        Ok(())
    }
}

fn public_key(info: Option<&proto::KeyInfo>, public: Vec<u8>) -> Result<PublicKey, ClientError> {
    let alg = info
        .and_then(|k| k.algorithm.as_ref())
        .map(|a| a.algorithm.as_str())
        .ok_or_else(|| ClientError::Remote("key without algorithm".into()))?;
    if public.is_empty() {
        return Err(ClientError::Remote("key without public bytes".into()));
    }
    Ok(PublicKey::new(KeyType::parse(alg), public))
}
