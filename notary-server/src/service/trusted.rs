//! The verified read API other crates use: [`Service::trusted`] runs the client's update
//! algorithm (notary-core's [`Updater`]) over this server's own stored chain, so the
//! trust data handed out is verified exactly as a Go client would verify it (root,
//! timestamp, snapshot, targets, delegations, thresholds, expiry), and caches the result
//! with the chain: an update or a changefeed entry for the GUN drops it.

use std::sync::Arc;

use notary_core::update::{FetchRequest, Remote, Repository};
use notary_core::{Gun, Updater};

use super::current::Current;
use super::{ReadError, Service};

/// Reads files from the service's cached chain for the update engine.
struct Local<'a> {
    service: &'a Service,
    gun: &'a Gun,
    current: Arc<Current>,
}

impl Remote for Local<'_> {
    type Error = ReadError;

    async fn fetch(&mut self, req: &FetchRequest) -> Result<Option<Vec<u8>>, ReadError> {
        let found = match (&req.version, &req.checksum) {
            (Some(v), _) => {
                let v = i64::try_from(*v).map_err(|_| ReadError::NotFound)?;
                self.service.get_by_version(self.gun, &req.role, v).await
            }
            (None, Some(sum)) => self.service.get_by_checksum(self.gun, &req.role, sum).await,
            (None, None) => {
                self.service
                    .file_in(&self.current, self.gun, &req.role)
                    .await
            }
        };
        match found {
            Ok(f) if f.data.len() as u64 > req.max_len => Ok(None),
            Ok(f) => Ok(Some(f.data.to_vec())),
            Err(ReadError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl Service {
    /// The GUN's verified trust data: `NotFound` when nothing is stored, `Untrusted` when
    /// the stored data does not verify (an expired targets file, for instance). Served
    /// from the cache until the GUN changes.
    pub async fn trusted(&self, gun: &Gun) -> Result<Arc<Repository>, ReadError> {
        let current = self.current(gun).await?;
        if let Some(repo) = current.trusted.get() {
            return Ok(Arc::clone(repo));
        }
        let now = (self.clock)();
        let mut remote = Local {
            service: self,
            gun,
            current: Arc::clone(&current),
        };
        let repo = Updater::new(gun.clone(), now)
            .update(&mut remote)
            .await
            .map_err(|e| match e {
                notary_core::update::UpdateError::NoTrustData { .. } => ReadError::NotFound,
                other => ReadError::Untrusted(other.to_string()),
            })?;
        let repo = Arc::new(repo);
        // Another task may have verified concurrently: both results are equal.
        let _ = current.trusted.set(Arc::clone(&repo));
        Ok(repo)
    }
}
