//! The two decision points every registry route goes through: [`Access`] (who is
//! calling, and may they pull / push / delete here) and [`Policy`] (may this manifest
//! be served, stored or deleted: the content-trust gate).

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::error::RegistryError;

/// A repository action, as token scopes name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read.
    Pull,
    /// Write.
    Push,
    /// Delete manifests, tags, blobs.
    Delete,
    /// `*`: administer (Notary: delete trust data, rotate server keys).
    All,
}

impl Action {
    /// The scope string.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::All => "*",
        }
    }
    /// Parses a scope action.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "pull" => Some(Action::Pull),
            "push" => Some(Action::Push),
            "delete" => Some(Action::Delete),
            "*" => Some(Action::All),
            _ => None,
        }
    }
}

/// What a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Actions on a repository.
    Repository(String, Vec<Action>),
    /// `registry:catalog:*`.
    Catalog,
    /// Only a valid identity (the `/v2/` ping).
    Login,
    /// A system administrator (admin API, jobs, cluster status).
    Admin,
}

impl Need {
    /// The scope string for a challenge (`repository:name:pull,push`).
    pub fn scope(&self) -> Option<String> {
        match self {
            Need::Repository(name, actions) => Some(format!(
                "repository:{name}:{}",
                actions
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            Need::Catalog => Some("registry:catalog:*".to_owned()),
            Need::Login | Need::Admin => None,
        }
    }
}

/// Who is calling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// User name; `None` for anonymous callers.
    pub user: Option<String>,
    /// Whether the caller is a system administrator.
    pub admin: bool,
}

impl Identity {
    /// An anonymous caller.
    pub fn anonymous() -> Identity {
        Identity::default()
    }
}

/// Authentication and authorisation of registry requests.
#[async_trait]
pub trait Access: Send + Sync + 'static {
    /// Authenticates the request and checks every need; on refusal, the error is the
    /// protocol's (401 with a `WWW-Authenticate` challenge naming the scope, or 403).
    async fn check(&self, headers: &HeaderMap, needs: &[Need]) -> Result<Identity, RegistryError>;

    /// Whether an already authenticated caller may also perform `actions` on `repo`
    /// (a cross-repository mount's source), without failing the request.
    async fn allows(&self, headers: &HeaderMap, repo: &str, actions: &[Action]) -> bool {
        self.check(
            headers,
            &[Need::Repository(repo.to_owned(), actions.to_vec())],
        )
        .await
        .is_ok()
    }

    /// Repositories the caller may list in the catalog (`None`: all of them).
    async fn catalog_filter(&self, _identity: &Identity) -> Option<Vec<String>> {
        None
    }

    /// Routes this implementation serves beside `/v2/` (a token endpoint, an admin
    /// API); `server::app` mounts them.
    fn routes(&self) -> Option<axum::Router> {
        None
    }
}

/// No authentication: every caller may do everything (`--no-auth`).
#[derive(Clone, Debug, Default)]
pub struct Open;

#[async_trait]
impl Access for Open {
    async fn check(
        &self,
        _headers: &HeaderMap,
        _needs: &[Need],
    ) -> Result<Identity, RegistryError> {
        Ok(Identity {
            user: None,
            admin: true,
        })
    }
}

/// What the policy is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Manifest GET.
    Pull,
    /// Manifest HEAD.
    Head,
    /// Manifest PUT.
    Push,
    /// Manifest or tag DELETE.
    Delete,
}

/// One policy question: a manifest operation in a repository.
#[derive(Clone, Copy, Debug)]
pub struct PolicyRequest<'a> {
    /// Repository name.
    pub repository: &'a str,
    /// The tag named in the request (`None` for requests by digest).
    pub tag: Option<&'a str>,
    /// The digest served, stored or deleted.
    pub digest: &'a str,
    /// The caller.
    pub identity: &'a Identity,
    /// What is being done.
    pub operation: Operation,
}

/// A policy answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead, with a `Warning` header (permissive mode).
    Warn(String),
    /// Refuse (403 `DENIED`) with a reason a person can act on.
    Deny(String),
    /// Refuse for now (503 `UNAVAILABLE`): the decision could not be made (trust data
    /// or database unreachable) and the policy fails closed.
    Unavailable(String),
}

/// The one policy decision point every manifest route calls.
#[async_trait]
pub trait Policy: Send + Sync + 'static {
    /// Decides.
    async fn decide(&self, request: &PolicyRequest<'_>) -> Decision;

    /// The implementation, for routes that need more than decisions (the policy admin
    /// API finds the [`crate::policy::PolicyEngine`] through it).
    fn as_any(&self) -> Option<&(dyn std::any::Any + Send + Sync)> {
        None
    }
}

/// The default policy: everything is allowed.
#[derive(Clone, Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl Policy for AllowAll {
    async fn decide(&self, _request: &PolicyRequest<'_>) -> Decision {
        Decision::Allow
    }
}
