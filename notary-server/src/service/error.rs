//! Why reads and updates fail, in the service's own terms (mapped to the API's errors in
//! `crate::error`).

use notary_core::RoleName;
use notary_core::verify::VerifyError;

use crate::storage::StoreError;
use crate::trust::TrustError;

/// Why an update was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Spec §4.9 `INVALID_UPDATE`: `name` is Go's error type name.
    #[error("{name}: {msg}")]
    Invalid {
        /// `ErrValidation`, `ErrBadRoot`, `ErrBadTargets`, `ErrBadSnapshot`, `ErrBadHierarchy`.
        name: &'static str,
        /// Message.
        msg: String,
        /// For `ErrBadHierarchy`, the missing role.
        missing: Option<&'static str>,
    },
    /// Spec §4.9 `VERSION`.
    #[error("a newer version is already stored")]
    Version,
    /// Storage failure.
    #[error(transparent)]
    Store(StoreError),
    /// Trust service failure.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The update took longer than its limit and was abandoned (nothing stored).
    #[error("update abandoned after {0:?}")]
    TimedOut(std::time::Duration),
}

impl From<StoreError> for UpdateError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Version { .. } => UpdateError::Version,
            other => UpdateError::Store(other),
        }
    }
}

pub(super) fn invalid(name: &'static str, msg: impl std::fmt::Display) -> UpdateError {
    UpdateError::Invalid {
        name,
        msg: msg.to_string(),
        missing: None,
    }
}

/// Errors reading current metadata.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing stored.
    #[error("not found")]
    NotFound,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data no longer usable (e.g. expired root on regeneration).
    #[error("{0}")]
    Broken(String),
    /// The stored trust data does not verify (for [`super::Service::trusted`]).
    #[error("stored trust data does not verify: {0}")]
    Untrusted(String),
    /// Trust service failure while regenerating.
    #[error(transparent)]
    Trust(#[from] TrustError),
}

pub(super) fn bad_targets(role: &RoleName, e: VerifyError) -> UpdateError {
    match e {
        VerifyError::Threshold { .. } | VerifyError::NoSignatures { .. } => invalid(
            "ErrBadTargets",
            format!("valid signatures did not meet threshold for {role}"),
        ),
        other => invalid("ErrBadTargets", other),
    }
}
