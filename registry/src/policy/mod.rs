//! Signed-image policy: the interface every gate (pull, push, deploy) calls.
//!
//! One evaluation function decides whether an image — repository, tag, the digest
//! actually served — satisfies its repository's policy, from verified trust data.
//! The registry's manifest routes reach it through [`crate::access::Policy`]; the
//! Kubernetes admission webhook through [`ImagePolicy`] directly. Both are implemented
//! by [`PolicyEngine`] ([`engine`]), built over the in-process Notary service by
//! [`engine_for`].
//!
//! - [`model`]: the policy object (mode, gates, required teams and roles, tag patterns,
//!   exemptions, digest pulls, expiry, immutability) and its validation.
//! - [`store`]: policies per repository, namespace and globally in the database,
//!   versioned, with history; cached in memory and polled for changes by other replicas.
//! - [`source`]: the [`source::SignatureSource`] trait and the Notary v1 source.
//! - [`keys`]: which user owns which signing key (filled after each publish and
//!   through the admin API).
//! - [`audit`]: the decision trail (batched, asynchronous, bounded).
//! - [`api`]: the admin API routes (`/api/v0/policies/...`, `/api/v0/audit`,
//!   `/api/v0/repositories/{ns}/{repo}/signers|tags`).

use async_trait::async_trait;

use crate::access::Identity;

pub mod api;
pub mod audit;
pub mod engine;
pub mod keys;
pub mod model;
pub mod source;
pub mod store;

pub use api::{mount, router};
pub use engine::{EngineOptions, PolicyEngine, engine_for};

/// Which gate is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Manifest GET / HEAD.
    Pull,
    /// Manifest PUT.
    Push,
    /// Kubernetes admission.
    Deploy,
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the operation may proceed.
    pub allowed: bool,
    /// Allowed only because the policy is permissive (a `Warning` is due).
    pub warn: bool,
    /// The digest the decision is about (the tag's signed digest when one exists).
    pub digest: Option<String>,
    /// Why, in words a person can act on ("tag v2 is signed by team qa but the policy
    /// also requires team security").
    pub reason: String,
    /// The version of the policy that decided.
    pub policy_version: i64,
}

/// A policy evaluation failure (trust data unreadable, database down): gates decide
/// whether to fail open or closed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// The evaluation function.
#[async_trait]
pub trait ImagePolicy: Send + Sync + 'static {
    /// Evaluates `repository` at `tag` and/or `digest` (the digest served, or for the
    /// deploy gate the digest the image reference names; `None` when only a tag is
    /// known and the registry should resolve it) for `identity` at `gate`.
    async fn evaluate(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        identity: &Identity,
        gate: Gate,
    ) -> Result<Verdict, PolicyError>;
}
