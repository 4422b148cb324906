//! The key service: creates keys, seals them at rest, unseals them to sign.
//!
//! Private key bytes are decrypted only when a key first signs (or right after it is
//! generated) and then kept in memory as a parsed key whose secret parts live in
//! `Zeroizing` buffers; nothing here formats key material into logs or errors.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use notary_core::keyfile::{private_key_from_tuf, tuf_private_bytes};
use notary_core::{Algorithm, PrivateKey, Signer as _};
use zeroize::Zeroizing;

use crate::config::alias_env_var;
use crate::jwe;
use crate::store::{KeyRow, KeyStore, StoreError};

/// Failures, mapped to gRPC status codes by the service layer.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unknown key ID (gRPC NotFound).
    #[error("key {0} not found")]
    NotFound(String),
    /// Unsupported algorithm in CreateKey (gRPC InvalidArgument... Go: Unknown).
    #[error("algorithm {0} not supported for create key")]
    Algorithm(String),
    /// The passphrase of an alias is not in the environment.
    #[error("expected env variable to not be empty: {alias} (set {var})")]
    MissingPassphrase {
        /// The alias.
        alias: String,
        /// Its environment variable.
        var: String,
    },
    /// A sealed key does not open.
    #[error("cannot unseal key {key_id} (alias {alias}): {cause}")]
    Unseal {
        /// Key ID.
        key_id: String,
        /// Alias.
        alias: String,
        /// Cause (never key material).
        cause: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (key generation, signing).
    #[error("{0}")]
    Internal(String),
}

/// Reads an environment variable (or a test's stand-in).
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Passphrases by alias, read from `NOTARY_SIGNER_<ALIAS>` on first need.
pub struct Passphrases {
    lookup: Lookup,
    cache: RwLock<HashMap<String, Zeroizing<String>>>,
}

impl Passphrases {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::with_lookup(|k| std::env::var(k).ok())
    }

    /// From any lookup (tests).
    pub fn with_lookup(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Passphrases {
            lookup: Box::new(lookup),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The passphrase of `alias`.
    pub fn get(&self, alias: &str) -> Result<Zeroizing<String>, KeyError> {
        if let Some(p) = self.cache.read().ok().and_then(|c| c.get(alias).cloned()) {
            return Ok(p);
        }
        let var = alias_env_var(alias);
        match (self.lookup)(&var) {
            Some(p) if !p.is_empty() => {
                let p = Zeroizing::new(p);
                if let Ok(mut c) = self.cache.write() {
                    c.insert(alias.to_owned(), p.clone());
                }
                Ok(p)
            }
            _ => Err(KeyError::MissingPassphrase {
                alias: alias.to_owned(),
                var,
            }),
        }
    }
}

/// A key ready to sign.
pub struct LoadedKey {
    /// The parsed private key.
    pub key: PrivateKey,
    /// TUF key type (`ecdsa`, `ed25519`).
    pub algorithm: String,
    /// Role it was created for.
    pub role: String,
}

/// What `GetKeyInfo` and `CreateKey` return.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// TUF key ID.
    pub key_id: String,
    /// TUF key type.
    pub algorithm: String,
    /// Raw public bytes.
    pub public: Vec<u8>,
    /// Role.
    pub role: String,
}

impl From<&KeyRow> for KeyInfo {
    fn from(r: &KeyRow) -> Self {
        KeyInfo {
            key_id: r.key_id.clone(),
            algorithm: r.algorithm.clone(),
            public: r.public.clone(),
            role: r.role.clone(),
        }
    }
}

/// Creates, seals, unseals and uses keys.
pub struct KeyService {
    store: KeyStore,
    default_alias: String,
    passphrases: Passphrases,
    loaded: RwLock<HashMap<String, Arc<LoadedKey>>>,
    /// When each key's `last_used` was last written.
    used: RwLock<HashMap<String, Instant>>,
}

/// `last_used` is written on a key's first signature, then at most this often (Go
/// writes it on every signature, a database write per signing request).
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

impl KeyService {
    /// A service over `store`, sealing new keys under `default_alias`.
    pub fn new(store: KeyStore, default_alias: String, passphrases: Passphrases) -> Self {
        KeyService {
            store,
            default_alias,
            passphrases,
            loaded: RwLock::new(HashMap::new()),
            used: RwLock::new(HashMap::new()),
        }
    }

    /// The store.
    pub fn store(&self) -> &KeyStore {
        &self.store
    }

    /// Start-up check: the default alias has a passphrase, and every alias used in the
    /// database opens one of its keys. Fails with a message naming the alias and its
    /// variable, instead of failing on the first signature later.
    pub async fn check_passphrases(&self) -> Result<(), KeyError> {
        if self.store.is_memory() {
            return Ok(());
        }
        self.passphrases.get(&self.default_alias)?;
        for (alias, (n, row)) in self.store.aliases().await? {
            let pass = self.passphrases.get(&alias)?;
            self.unseal(&row, &pass).map_err(|e| match e {
                KeyError::Unseal {
                    key_id,
                    alias,
                    cause,
                } => KeyError::Unseal {
                    key_id,
                    alias: alias.clone(),
                    cause: format!(
                        "{cause}; {n} key(s) are sealed under alias {alias}: check {}",
                        alias_env_var(&alias)
                    ),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    fn unseal(&self, row: &KeyRow, pass: &str) -> Result<PrivateKey, KeyError> {
        let err = |cause: String| KeyError::Unseal {
            key_id: row.key_id.clone(),
            alias: row.passphrase_alias.clone(),
            cause,
        };
        let text = std::str::from_utf8(&row.private).map_err(|_| err("not a JWE".into()))?;
        let raw = jwe::open(text, pass).map_err(|e| err(e.to_string()))?;
        let key = private_key_from_tuf(&row.algorithm, &raw).map_err(|e| err(e.to_string()))?;
        if key.public().public_bytes() != row.public.as_slice() {
            return Err(err(
                "private key does not match the stored public key".into()
            ));
        }
        Ok(key)
    }

    /// `CreateKey`: a never-used key for (gun, role, algorithm) if one exists, else a new
    /// one (ECDSA P-256 or Ed25519), sealed and stored.
    pub async fn create_key(
        &self,
        algorithm: &str,
        gun: &str,
        role: &str,
    ) -> Result<KeyInfo, KeyError> {
        let alg = match algorithm {
            "ecdsa" => Algorithm::EcdsaP256,
            "ed25519" => Algorithm::Ed25519,
            other => return Err(KeyError::Algorithm(other.to_owned())),
        };
        if let Some(row) = self.store.unused(gun, role, algorithm).await? {
            tracing::info!(key_id = %row.key_id, gun, role, "CreateKey: reusing an unused key");
            return Ok(KeyInfo::from(&row));
        }
        let key = PrivateKey::generate(alg).map_err(|e| KeyError::Internal(e.to_string()))?;
        let raw = tuf_private_bytes(&key);
        let (private, alias) = if self.store.is_memory() {
            (raw.to_vec(), String::new())
        } else {
            let pass = self.passphrases.get(&self.default_alias)?;
            let sealed = jwe::seal(&raw, &pass).map_err(|e| KeyError::Internal(e.to_string()))?;
            (sealed.into_bytes(), self.default_alias.clone())
        };
        let public = key.public();
        let row = KeyRow {
            key_id: public.key_id().to_string(),
            algorithm: algorithm.to_owned(),
            passphrase_alias: alias,
            gun: gun.to_owned(),
            role: role.to_owned(),
            public: public.public_bytes().to_vec(),
            private,
            used: false,
        };
        self.store.insert(&row).await?;
        tracing::info!(key_id = %row.key_id, gun, role, algorithm, "CreateKey: created a key");
        let info = KeyInfo::from(&row);
        if let Ok(mut m) = self.loaded.write() {
            m.insert(
                row.key_id.clone(),
                Arc::new(LoadedKey {
                    key,
                    algorithm: row.algorithm,
                    role: row.role,
                }),
            );
        }
        Ok(info)
    }

    /// `GetKeyInfo`.
    pub async fn key_info(&self, key_id: &str) -> Result<KeyInfo, KeyError> {
        if let Some(k) = self.loaded.read().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok(KeyInfo {
                key_id: key_id.to_owned(),
                algorithm: k.algorithm.clone(),
                public: k.key.public().public_bytes().to_vec(),
                role: k.role.clone(),
            });
        }
        match self.store.get(key_id).await? {
            Some(row) => Ok(KeyInfo::from(&row)),
            None => Err(KeyError::NotFound(key_id.to_owned())),
        }
    }

    /// `DeleteKey`: succeeds for unknown IDs.
    pub async fn delete_key(&self, key_id: &str) -> Result<(), KeyError> {
        self.store.delete(key_id).await?;
        if let Ok(mut m) = self.loaded.write() {
            m.remove(key_id);
        }
        tracing::info!(key_id, "DeleteKey: deleted");
        Ok(())
    }

    async fn load(&self, key_id: &str) -> Result<Arc<LoadedKey>, KeyError> {
        if let Some(k) = self.loaded.read().ok().and_then(|m| m.get(key_id).cloned()) {
            return Ok(k);
        }
        let row = self
            .store
            .get(key_id)
            .await?
            .ok_or_else(|| KeyError::NotFound(key_id.to_owned()))?;
        let key = if self.store.is_memory() {
            private_key_from_tuf(&row.algorithm, &row.private)
                .map_err(|e| KeyError::Internal(e.to_string()))?
        } else {
            let pass = self.passphrases.get(&row.passphrase_alias)?;
            self.unseal(&row, &pass)?
        };
        let loaded = Arc::new(LoadedKey {
            key,
            algorithm: row.algorithm,
            role: row.role,
        });
        if let Ok(mut m) = self.loaded.write() {
            m.insert(key_id.to_owned(), Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// `Sign`: signs the full message; returns the key, the signature method name
    /// (`ecdsa`, `eddsa`) and the signature bytes (ECDSA raw r‖s). The first signature
    /// of a key records `last_used`, so `CreateKey` no longer hands it out; later ones
    /// refresh it at most once a minute.
    pub async fn sign(
        &self,
        key_id: &str,
        msg: &[u8],
    ) -> Result<(Arc<LoadedKey>, String, Vec<u8>), KeyError> {
        let k = self.load(key_id).await?;
        let (method, sig) = k
            .key
            .sign(msg)
            .map_err(|e| KeyError::Internal(e.to_string()))?;
        let fresh = self
            .used
            .read()
            .is_ok_and(|u| u.get(key_id).is_some_and(|t| t.elapsed() < LAST_USED_EVERY));
        if !fresh {
            self.store.mark_used(key_id).await?;
            if let Ok(mut u) = self.used.write() {
                u.insert(key_id.to_owned(), Instant::now());
            }
        }
        Ok((k, method.as_str().to_owned(), sig))
    }

    /// Re-seals every key not under `new_alias` with that alias's passphrase, one row at
    /// a time (each an atomic conditional update), so signers keep running. Returns how
    /// many keys changed.
    pub async fn reseal_all(
        &self,
        new_alias: &str,
        progress: impl Fn(usize, usize),
    ) -> Result<usize, KeyError> {
        if self.store.is_memory() {
            return Ok(0);
        }
        let new_pass = self.passphrases.get(new_alias)?;
        let ids = self.store.keys_not_under(new_alias).await?;
        let mut changed = 0;
        for (i, id) in ids.iter().enumerate() {
            let Some(row) = self.store.get(id).await? else {
                continue;
            };
            if row.passphrase_alias == new_alias {
                continue;
            }
            let old_pass = self.passphrases.get(&row.passphrase_alias)?;
            let key = self.unseal(&row, &old_pass)?;
            let raw = tuf_private_bytes(&key);
            let sealed =
                jwe::seal(&raw, &new_pass).map_err(|e| KeyError::Internal(e.to_string()))?;
            if self
                .store
                .reseal(id, &row.passphrase_alias, new_alias, sealed.as_bytes())
                .await?
            {
                changed += 1;
            }
            progress(i + 1, ids.len());
        }
        Ok(changed)
    }
}
