//! notary-registry: an OCI Distribution 1.1 registry whose metadata (repositories,
//! tags, manifests, blob references, uploads) lives in SQLite or PostgreSQL and whose
//! blobs live in a directory or S3-compatible object storage.
//!
//! The library exposes the pieces (database, blob stores, the `/v2/` router, the
//! access and policy decision points) so the trusted registry can mount the Notary API
//! beside them on one host; the binary `notary-registry` wires them up.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

pub mod access;
pub mod admin;
pub mod admission;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod error;
pub mod gc;
pub mod hashing;
pub mod jobs;
pub mod manifest;
pub mod meta;
pub mod names;
pub mod policy;
pub mod server;
pub mod storage;
pub mod trust;

use access::{Access, Policy};
use meta::Db;
use storage::BlobStore;

/// Limits and switches of the registry API.
#[derive(Clone, Debug)]
pub struct Options {
    /// Largest manifest accepted (413 above). Default 4 MiB.
    pub max_manifest_bytes: usize,
    /// Largest blob accepted (`None`: no limit but the disk).
    pub max_blob_bytes: Option<u64>,
    /// Most entries in one tags or catalog page.
    pub max_page: i64,
    /// Whether `DELETE /v2/<name>/blobs/<digest>` is allowed.
    pub allow_blob_delete: bool,
    /// Accept indexes whose children were not pushed (multi-arch mirroring).
    pub sparse_indexes: bool,
    /// Blobs up to this size pushed in one request are kept in the database, committed
    /// with their metadata (no file or object, no fsync). 0 disables.
    pub inline_max_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_manifest_bytes: 4 << 20,
            max_blob_bytes: None,
            max_page: 1000,
            allow_blob_delete: true,
            sparse_indexes: true,
            inline_max_bytes: 64 << 10,
        }
    }
}

/// Shared state of the registry routes.
pub struct Registry {
    /// Metadata.
    pub db: Db,
    /// Blob bytes.
    pub store: Arc<dyn BlobStore>,
    /// Authentication and authorisation.
    pub access: Arc<dyn Access>,
    /// The manifest policy decision point.
    pub policy: Arc<dyn Policy>,
    /// Limits.
    pub options: Options,
    /// Upload sessions with a request in progress (one writer per session).
    busy_uploads: Mutex<HashSet<String>>,
    /// Repositories whose manifests or tags changed (for caches of policy decisions).
    changes: tokio::sync::broadcast::Sender<String>,
    /// This process's id among the replicas (random, new at each start).
    pub replica_id: String,
    /// The image policy the deploy gate (admission webhook) asks; installed by whoever
    /// builds the policy engine ([`Registry::set_image_policy`]).
    image_policy: OnceLock<Arc<dyn policy::ImagePolicy>>,
    /// The admission webhook's settings on the registry's own port.
    admission: OnceLock<Arc<admission::Settings>>,
    /// The Notary side (metadata service, API options), when served.
    pub trust: Option<Arc<trust::Trust>>,
    /// The signed-image policy engine, when trust data is served.
    policy_engine: OnceLock<Arc<policy::PolicyEngine>>,
}

impl Registry {
    /// Builds the state.
    pub fn new(
        db: Db,
        store: Arc<dyn BlobStore>,
        access: Arc<dyn Access>,
        policy: Arc<dyn Policy>,
        options: Options,
    ) -> Registry {
        Registry {
            db,
            store,
            access,
            policy,
            options,
            busy_uploads: Mutex::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
            replica_id: cluster::new_replica_id(),
            image_policy: OnceLock::new(),
            admission: OnceLock::new(),
            trust: None,
            policy_engine: OnceLock::new(),
        }
    }

    /// Installs the policy engine (once), also as the deploy gate's image policy.
    pub fn set_policy_engine(&self, engine: Arc<policy::PolicyEngine>) -> bool {
        let _ = self
            .image_policy
            .set(Arc::clone(&engine) as Arc<dyn policy::ImagePolicy>);
        self.policy_engine.set(engine).is_ok()
    }

    /// The policy engine.
    pub fn policy_engine(&self) -> Option<&Arc<policy::PolicyEngine>> {
        self.policy_engine.get()
    }

    /// Installs the image policy (once; `false` if one was already installed). With
    /// admission settings too, `server::app` mounts the admission webhook.
    pub fn set_image_policy(&self, policy: Arc<dyn policy::ImagePolicy>) -> bool {
        self.image_policy.set(policy).is_ok()
    }

    /// The installed image policy.
    pub fn image_policy(&self) -> Option<Arc<dyn policy::ImagePolicy>> {
        self.image_policy.get().cloned()
    }

    /// Sets the admission webhook's settings for the registry's own port (once).
    pub fn set_admission_settings(&self, settings: admission::Settings) -> bool {
        self.admission.set(Arc::new(settings)).is_ok()
    }

    /// The admission webhook's settings on the registry's own port.
    pub fn admission_settings(&self) -> Option<Arc<admission::Settings>> {
        self.admission.get().cloned()
    }

    /// The Notary metadata service (verified trust data through
    /// [`notary_server::service::Service::trusted`]), when the Notary API is served.
    pub fn trust_service(&self) -> Option<&Arc<notary_server::service::Service>> {
        self.trust.as_ref().map(|t| t.service())
    }

    /// Subscribes to manifest and tag changes (repository names).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    pub(crate) fn notify_manifest_change(&self, repository: &str) {
        let _ = self.changes.send(repository.to_owned());
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("db", &self.db)
            .field("store", &self.store.describe())
            .field("options", &self.options)
            .finish()
    }
}
