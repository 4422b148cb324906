//! The trust service boundary: create a key, get a public key, sign. The server signs
//! timestamps (and server-managed snapshots) only through this trait. `LocalTrust`
//! generates keys in process and keeps them sealed (encrypted PKCS#8, PBES2/AES-256) in
//! the server's database, so a restart keeps serving the same keys.

use std::collections::HashMap;
use std::sync::Arc;

use notary_core::keyfile::KeyFile;
use notary_core::{Algorithm, Gun, KeyId, PrivateKey, PublicKey, RoleName, SigMethod, Signer as _};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::storage::{KeyRow, Store, StoreError};

/// Trust service failures.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The key is not held.
    #[error("key {0} not found")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key material failed.
    #[error("key error: {0}")]
    Key(String),
    /// The service is unreachable.
    #[error("trust service unavailable: {0}")]
    Unavailable(String),
}

/// Creates keys, returns public keys and signs, for server-managed roles.
#[async_trait::async_trait]
pub trait TrustService: Send + Sync + 'static {
    /// Creates (or returns a never-used) key for `gun`/`role`.
    async fn create_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, TrustError>;
    /// The public key for an ID, if held.
    async fn public_key(&self, key_id: &KeyId) -> Result<Option<PublicKey>, TrustError>;
    /// Signs `msg` with the key `key_id`.
    async fn sign(&self, key_id: &KeyId, msg: &[u8]) -> Result<(SigMethod, Vec<u8>), TrustError>;
    /// Health check.
    async fn health(&self) -> Result<(), TrustError>;
}

/// Public keys already looked up (keys never change, so entries stay valid).
#[derive(Default)]
struct PublicCache(std::sync::RwLock<HashMap<String, PublicKey>>);

impl PublicCache {
    fn get(&self, key_id: &str) -> Option<PublicKey> {
        self.0.read().ok().and_then(|m| m.get(key_id).cloned())
    }

    fn put(&self, key_id: &str, k: &PublicKey) {
        if let Ok(mut m) = self.0.write() {
            m.insert(key_id.to_owned(), k.clone());
        }
    }
}

/// In-process keys, sealed at rest in the server's database.
pub struct LocalTrust {
    store: Store,
    algorithm: Algorithm,
    passphrase: Zeroizing<String>,
    unsealed: Mutex<HashMap<String, Arc<PrivateKey>>>,
    publics: PublicCache,
    /// Keys whose first use is already recorded.
    used: std::sync::RwLock<std::collections::HashSet<String>>,
}

impl LocalTrust {
    /// A local trust service generating `algorithm` keys, sealing them with `passphrase`.
    pub fn new(store: Store, algorithm: Algorithm, passphrase: Zeroizing<String>) -> Self {
        LocalTrust {
            store,
            algorithm,
            passphrase,
            unsealed: Mutex::new(HashMap::new()),
            publics: PublicCache::default(),
            used: std::sync::RwLock::new(std::collections::HashSet::new()),
        }
    }

    fn alg_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::EcdsaP256 => "ecdsa",
            Algorithm::Ed25519 => "ed25519",
        }
    }

    fn public_from_row(row: &KeyRow) -> Result<PublicKey, TrustError> {
        serde_json::from_slice(&row.public).map_err(|e| TrustError::Key(e.to_string()))
    }

    async fn private(&self, key_id: &str) -> Result<Arc<PrivateKey>, TrustError> {
        let mut cache = self.unsealed.lock().await;
        if let Some(k) = cache.get(key_id) {
            return Ok(k.clone());
        }
        let row = self
            .store
            .key(key_id)
            .await?
            .ok_or_else(|| TrustError::NotFound(key_id.to_owned()))?;
        let kf = KeyFile::decode(row.sealed.as_bytes(), Some(&self.passphrase))
            .map_err(|e| TrustError::Key(format!("cannot unseal key {key_id}: {e}")))?;
        let key = Arc::new(kf.key);
        cache.insert(key_id.to_owned(), key.clone());
        Ok(key)
    }
}

#[async_trait::async_trait]
impl TrustService for LocalTrust {
    async fn create_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, TrustError> {
        if let Some(row) = self
            .store
            .unused_key(gun.as_str(), role.as_str(), self.alg_name())
            .await?
        {
            return Self::public_from_row(&row);
        }
        let key =
            PrivateKey::generate(self.algorithm).map_err(|e| TrustError::Key(e.to_string()))?;
        let sealed = KeyFile::encode(&key, role.as_str(), Some(gun), Some(&self.passphrase))
            .map_err(|e| TrustError::Key(e.to_string()))?;
        let public = key.public().clone();
        let row = KeyRow {
            key_id: public.key_id().to_string(),
            gun: gun.to_string(),
            role: role.to_string(),
            algorithm: self.alg_name().to_owned(),
            public: serde_json::to_vec(&public).map_err(|e| TrustError::Key(e.to_string()))?,
            sealed: sealed.to_string(),
            used: false,
        };
        self.store.insert_key(&row).await?;
        self.unsealed
            .lock()
            .await
            .insert(row.key_id.clone(), Arc::new(key));
        Ok(public)
    }

    async fn public_key(&self, key_id: &KeyId) -> Result<Option<PublicKey>, TrustError> {
        if let Some(k) = self.publics.get(key_id.as_str()) {
            return Ok(Some(k));
        }
        match self.store.key(key_id.as_str()).await? {
            Some(row) => {
                let k = Self::public_from_row(&row)?;
                self.publics.put(key_id.as_str(), &k);
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    async fn sign(&self, key_id: &KeyId, msg: &[u8]) -> Result<(SigMethod, Vec<u8>), TrustError> {
        let key = self.private(key_id.as_str()).await?;
        let sig = key.sign(msg).map_err(|e| TrustError::Key(e.to_string()))?;
        let known = self.used.read().is_ok_and(|u| u.contains(key_id.as_str()));
        if !known {
            self.store.mark_key_used(key_id.as_str()).await?;
            if let Ok(mut u) = self.used.write() {
                u.insert(key_id.to_string());
            }
        }
        Ok(sig)
    }

    async fn health(&self) -> Result<(), TrustError> {
        Ok(())
    }
}

/// Keys held by a notary-signer (ours or Go's), reached over mutually authenticated
/// gRPC (`trust_service.type = "remote"`). Public keys are cached (keys are immutable);
/// the connection is shared by all requests and re-opened after the signer returns.
pub struct RemoteTrust {
    client: notary_signer::client::RemoteSigner,
    algorithm: String,
    publics: PublicCache,
}

impl RemoteTrust {
    /// A remote trust service creating `algorithm` (`ecdsa`, `ed25519`) keys.
    pub fn new(client: notary_signer::client::RemoteSigner, algorithm: &str) -> Self {
        RemoteTrust {
            client,
            algorithm: if algorithm.is_empty() {
                "ecdsa".into()
            } else {
                algorithm.to_owned()
            },
            publics: PublicCache::default(),
        }
    }
}

impl From<notary_signer::client::ClientError> for TrustError {
    fn from(e: notary_signer::client::ClientError) -> Self {
        use notary_signer::client::ClientError as C;
        match e {
            C::NotFound(id) => TrustError::NotFound(id),
            C::Unavailable(m) => TrustError::Unavailable(m),
            other => TrustError::Key(other.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl TrustService for RemoteTrust {
    async fn create_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, TrustError> {
        let k = self
            .client
            .create_key(&self.algorithm, gun.as_str(), role.as_str())
            .await?;
        self.publics.put(k.key_id().as_str(), &k);
        Ok(k)
    }

    async fn public_key(&self, key_id: &KeyId) -> Result<Option<PublicKey>, TrustError> {
        if let Some(k) = self.publics.get(key_id.as_str()) {
            return Ok(Some(k));
        }
        match self.client.key_info(key_id.as_str()).await? {
            Some((k, _role)) => {
                self.publics.put(key_id.as_str(), &k);
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }

    async fn sign(&self, key_id: &KeyId, msg: &[u8]) -> Result<(SigMethod, Vec<u8>), TrustError> {
        Ok(self.client.sign(key_id.as_str(), msg).await?)
    }

    async fn health(&self) -> Result<(), TrustError> {
        Ok(self.client.health().await?)
    }
}
