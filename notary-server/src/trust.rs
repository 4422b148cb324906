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

/// Creates keys, returns public keys and signs, for server-managed roles. Every key
/// belongs to the GUN and role it was created for and is used for nothing else: a
/// tenant listing another repository's timestamp key in its root must not get the
/// server to sign with it.
#[async_trait::async_trait]
pub trait TrustService: Send + Sync + 'static {
    /// Creates (or returns a never-used) key for `gun`/`role`.
    async fn create_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, TrustError>;
    /// The public key `key_id`, if held for `gun`/`role`.
    async fn public_key(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
    ) -> Result<Option<PublicKey>, TrustError>;
    /// Signs `msg` with `key_id`, which must be held for `gun`/`role`
    /// ([`TrustError::NotFound`] otherwise).
    async fn sign(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
        msg: &[u8],
    ) -> Result<(SigMethod, Vec<u8>), TrustError>;
    /// Records that `key_id`, held but with no recorded scope, belongs to `gun`/`role`.
    /// Only for keys a stored (already validated) root of `gun` lists for `role`: keys
    /// a remote signer created before scopes were recorded, or for Go's notary-server.
    /// Returns whether the key is now usable for `gun`/`role`.
    async fn adopt(&self, gun: &Gun, role: &RoleName, key_id: &KeyId) -> Result<bool, TrustError>;
    /// Health check.
    async fn health(&self) -> Result<(), TrustError>;
}

/// The GUN and role a key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Scope {
    gun: String,
    role: String,
}

impl Scope {
    fn of(gun: &Gun, role: &RoleName) -> Self {
        Scope {
            gun: gun.to_string(),
            role: role.to_string(),
        }
    }
}

/// Public keys already looked up with their scope (keys and scopes never change, so
/// entries stay valid).
#[derive(Default)]
struct PublicCache(std::sync::RwLock<HashMap<String, (Scope, PublicKey)>>);

impl PublicCache {
    fn get(&self, key_id: &str) -> Option<(Scope, PublicKey)> {
        self.0.read().ok().and_then(|m| m.get(key_id).cloned())
    }

    fn put(&self, key_id: &str, scope: Scope, k: &PublicKey) {
        if let Ok(mut m) = self.0.write() {
            m.insert(key_id.to_owned(), (scope, k.clone()));
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

    async fn public_key(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
    ) -> Result<Option<PublicKey>, TrustError> {
        let scope = Scope::of(gun, role);
        if let Some((s, k)) = self.publics.get(key_id.as_str()) {
            return Ok((s == scope).then_some(k));
        }
        match self.store.key(key_id.as_str()).await? {
            Some(row) => {
                let k = Self::public_from_row(&row)?;
                let s = Scope {
                    gun: row.gun.clone(),
                    role: row.role.clone(),
                };
                self.publics.put(key_id.as_str(), s.clone(), &k);
                Ok((s == scope).then_some(k))
            }
            None => Ok(None),
        }
    }

    async fn sign(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
        msg: &[u8],
    ) -> Result<(SigMethod, Vec<u8>), TrustError> {
        if self.public_key(gun, role, key_id).await?.is_none() {
            return Err(TrustError::NotFound(key_id.to_string()));
        }
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

    async fn adopt(
        &self,
        _gun: &Gun,
        _role: &RoleName,
        _key_id: &KeyId,
    ) -> Result<bool, TrustError> {
        // Local keys always carry the GUN and role they were created for.
        Ok(false)
    }

    async fn health(&self) -> Result<(), TrustError> {
        Ok(())
    }
}

/// Keys held by a notary-signer (ours or Go's), reached over mutually authenticated
/// gRPC (`trust_service.type = "remote"`). Public keys are cached (keys are immutable);
/// the connection is shared by all requests and re-opened after the signer returns.
///
/// The signer's protocol does not report a key's GUN, so the server records the GUN and
/// role of every key it creates in its own database (`remote_key_scopes`).
pub struct RemoteTrust {
    client: notary_signer::client::RemoteSigner,
    store: Store,
    algorithm: String,
    publics: PublicCache,
}

impl RemoteTrust {
    /// A remote trust service creating `algorithm` (`ecdsa`, `ed25519`) keys, recording
    /// their scopes in `store`.
    pub fn new(client: notary_signer::client::RemoteSigner, store: Store, algorithm: &str) -> Self {
        RemoteTrust {
            client,
            store,
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
        let id = k.key_id();
        self.store
            .insert_key_scope(id.as_str(), gun.as_str(), role.as_str())
            .await?;
        // A reused key keeps its first scope: report it only if that is this one.
        match self.store.key_scope(id.as_str()).await? {
            Some((g, r)) if g == gun.as_str() && r == role.as_str() => {
                self.publics.put(id.as_str(), Scope::of(gun, role), &k);
                Ok(k)
            }
            _ => Err(TrustError::Key(format!(
                "the signer returned key {id}, which belongs to another repository"
            ))),
        }
    }

    async fn public_key(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
    ) -> Result<Option<PublicKey>, TrustError> {
        let scope = Scope::of(gun, role);
        if let Some((s, k)) = self.publics.get(key_id.as_str()) {
            return Ok((s == scope).then_some(k));
        }
        let Some((g, r)) = self.store.key_scope(key_id.as_str()).await? else {
            return Ok(None);
        };
        let recorded = Scope { gun: g, role: r };
        match self.client.key_info(key_id.as_str()).await? {
            Some((k, _role)) => {
                self.publics.put(key_id.as_str(), recorded.clone(), &k);
                Ok((recorded == scope).then_some(k))
            }
            None => Ok(None),
        }
    }

    async fn sign(
        &self,
        gun: &Gun,
        role: &RoleName,
        key_id: &KeyId,
        msg: &[u8],
    ) -> Result<(SigMethod, Vec<u8>), TrustError> {
        if self.public_key(gun, role, key_id).await?.is_none() {
            return Err(TrustError::NotFound(key_id.to_string()));
        }
        Ok(self.client.sign(key_id.as_str(), msg).await?)
    }

    async fn adopt(&self, gun: &Gun, role: &RoleName, key_id: &KeyId) -> Result<bool, TrustError> {
        if self.store.key_scope(key_id.as_str()).await?.is_some() {
            return Ok(self.public_key(gun, role, key_id).await?.is_some());
        }
        match self.client.key_info(key_id.as_str()).await? {
            Some((_, signer_role)) if signer_role == role.as_str() => {
                tracing::info!(gun = %gun, role = %role, key = %key_id, "recording the scope of a signer key listed by the stored root");
                self.store
                    .insert_key_scope(key_id.as_str(), gun.as_str(), role.as_str())
                    .await?;
                Ok(self.public_key(gun, role, key_id).await?.is_some())
            }
            _ => Ok(false),
        }
    }

    async fn health(&self) -> Result<(), TrustError> {
        Ok(self.client.health().await?)
    }
}
