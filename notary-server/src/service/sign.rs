//! Server-held keys: the keys `GET/POST {role}.key` hand out, and signing of snapshot and
//! timestamp with them.

use notary_core::metadata::{RoleMetadata, Root, Signature, Signed};
use notary_core::{Gun, PublicKey, RoleName};

use super::error::invalid;
use super::{Service, UpdateError};

impl Service {
    /// `GET {role}.key`: the key listed in the current root that this server holds, else
    /// a created (or reused unused) one.
    pub async fn get_or_create_key(
        &self,
        gun: &Gun,
        role: &RoleName,
    ) -> Result<PublicKey, UpdateError> {
        // The current root through the cached chain (no store read when cached).
        let root = match self.current(gun).await {
            Ok(cur) => self.file_in(&cur, gun, &RoleName::root()).await.ok(),
            Err(_) => None,
        };
        if let Some(root) = root.and_then(|f| Signed::<Root>::parse(f.data.to_vec()).ok()) {
            let keyids = root
                .signed()
                .role(role.as_str())
                .map(|r| r.keyids.clone())
                .unwrap_or_default();
            for id in keyids {
                let Some(Ok(canonical)) = root.signed().keys.get(&id).map(PublicKey::canonical_id)
                else {
                    continue;
                };
                if let Some(pk) = self.trust.public_key(gun, role, &canonical).await? {
                    return Ok(pk);
                }
                // A key of the stored root the signer holds without a recorded scope.
                if self.trust.adopt(gun, role, &canonical).await? {
                    if let Some(pk) = self.trust.public_key(gun, role, &canonical).await? {
                        return Ok(pk);
                    }
                }
            }
        }
        Ok(self.trust.create_key(gun, role).await?)
    }

    /// `POST {role}.key`: a new key for rotation.
    pub async fn rotate_key(&self, gun: &Gun, role: &RoleName) -> Result<PublicKey, UpdateError> {
        Ok(self.trust.create_key(gun, role).await?)
    }

    /// Signs a role object with every key of `role` in `root` that the trust service holds
    /// for this GUN and role. `anchor` is the GUN's stored root (already validated): a
    /// key it lists for `role` that the trust service holds without a recorded scope is
    /// adopted (keys created before scopes were recorded); a key only the new `root`
    /// lists must have been created for this GUN and role.
    pub(super) async fn sign_role<T: RoleMetadata>(
        &self,
        gun: &Gun,
        root: &Root,
        anchor: Option<&Root>,
        role: &RoleName,
        obj: T,
    ) -> Result<Signed<T>, UpdateError> {
        let auth = root
            .role(role.as_str())
            .ok_or_else(|| invalid("ErrValidation", format!("root has no {role} role")))?;
        let s = Signed::<T>::signing_bytes(&obj, notary_core::Dialect::NotaryV1)
            .map_err(|e| invalid("ErrValidation", e))?;
        let anchored = |id: &notary_core::KeyId| {
            anchor.is_some_and(|a| {
                a.role(role.as_str()).is_some_and(|r| r.keyids.contains(id))
                    && a.keys.get(id) == root.keys.get(id)
            })
        };
        let mut sigs = Vec::new();
        for id in &auth.keyids {
            let Some(key) = root.keys.get(id) else {
                continue;
            };
            let Ok(canonical) = key.canonical_id() else {
                continue;
            };
            if self
                .trust
                .public_key(gun, role, &canonical)
                .await?
                .is_none()
                && !(anchored(id) && self.trust.adopt(gun, role, &canonical).await?)
            {
                continue;
            }
            let (method, sig) = self.trust.sign(gun, role, &canonical, &s).await?;
            sigs.push(Signature {
                keyid: id.clone(),
                method,
                sig: notary_core::metadata::Bytes(sig),
            });
        }
        if sigs.is_empty() {
            return Err(match role.as_str() {
                "snapshot" => UpdateError::Invalid {
                    name: "ErrBadHierarchy",
                    msg: "no snapshot was included in update and server does not hold current snapshot key for repository".into(),
                    missing: Some("snapshot"),
                },
                _ => invalid("ErrBadRoot", format!("no  {role} keys exist on the server")),
            });
        }
        Signed::from_parts(obj, sigs).map_err(|e| invalid("ErrValidation", e))
    }
}
