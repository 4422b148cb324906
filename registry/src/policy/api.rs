//! The policy part of the administration API (same error format and authentication as
//! [`crate::admin`]):
//!
//! - `GET|PUT|DELETE /api/v0/policies/global`, `/api/v0/policies/namespaces/{ns}`,
//!   `/api/v0/policies/repositories/{ns}/{repo}` (a repository's own policy;
//!   `?effective=true` shows the one that applies), each with `GET .../history`.
//!   Reading needs read access to the scope; changing needs administration of it
//!   (system administrator for the global policy, namespace administrator or
//!   organisation owner, repository administrator).
//! - `GET /api/v0/audit?repository=&allowed=&limit=&after=`: decisions, oldest first
//!   (system administrators; repository administrators for their repository).
//! - `GET|PUT /api/v0/repositories/{ns}/{repo}/signers`,
//!   `DELETE /api/v0/repositories/{ns}/{repo}/signers/{keyId}`: signing keys bound to
//!   users. System administrators bind keys to anyone; a repository administrator only
//!   to themself (a binding lends a key's signatures to the owner's teams).
//! - `GET /api/v0/repositories/{ns}/{repo}/tags?n=&last=`: tags with their digest and
//!   whether they are signed (and by whom) or quarantined.
//!
//! [`mount`] serves these in front of the rest of the application (the admin API's
//! catch-all `/api/v0/repositories/{*rest}` route cannot share a router with them).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use super::PolicyEngine;
use super::audit::{self, AuditQuery};
use super::keys::{self, SignerKey};
use super::model::{PolicySpec, Scope, valid_role};
use super::store::{HistoryEntry, PolicyStore, PolicyStoreError, StoredPolicy};
use crate::Registry;
use crate::access::{Access, Need};
use crate::admin::{AdminError as ApiError, LocalAdmin, ok_json, respond};
use crate::auth::store::{AuthStore, Level, User, valid_account_name};
use crate::meta::{Backend, Db};

/// Largest JSON body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most tags per page of the tag listing.
pub const MAX_TAGS_PAGE: i64 = 1000;

/// The routes, for the OpenAPI document: method, path, who, body schema, summary.
pub const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    (
        "get",
        "/api/v0/policies/global",
        "any user",
        None,
        "Show the global signed-image policy",
    ),
    (
        "put",
        "/api/v0/policies/global",
        "system administrator",
        Some("Policy"),
        "Set the global signed-image policy",
    ),
    (
        "delete",
        "/api/v0/policies/global",
        "system administrator",
        None,
        "Remove the global signed-image policy",
    ),
    (
        "get",
        "/api/v0/policies/global/history",
        "any user",
        None,
        "Changes of the global policy, newest first (?limit=)",
    ),
    (
        "get",
        "/api/v0/policies/namespaces/{ns}",
        "namespace readers",
        None,
        "Show a namespace's policy",
    ),
    (
        "put",
        "/api/v0/policies/namespaces/{ns}",
        "namespace administrator or organisation owner",
        Some("Policy"),
        "Set a namespace's policy",
    ),
    (
        "delete",
        "/api/v0/policies/namespaces/{ns}",
        "namespace administrator or organisation owner",
        None,
        "Remove a namespace's policy",
    ),
    (
        "get",
        "/api/v0/policies/namespaces/{ns}/history",
        "namespace readers",
        None,
        "Changes of a namespace's policy",
    ),
    (
        "get",
        "/api/v0/policies/repositories/{ns}/{repo}",
        "repository readers",
        None,
        "Show a repository's policy (?effective=true: the one that applies)",
    ),
    (
        "put",
        "/api/v0/policies/repositories/{ns}/{repo}",
        "repository administrator",
        Some("Policy"),
        "Set a repository's policy",
    ),
    (
        "delete",
        "/api/v0/policies/repositories/{ns}/{repo}",
        "repository administrator",
        None,
        "Remove a repository's policy",
    ),
    (
        "get",
        "/api/v0/policies/repositories/{ns}/{repo}/history",
        "repository readers",
        None,
        "Changes of a repository's policy",
    ),
    (
        "get",
        "/api/v0/audit",
        "system administrator, or repository administrator with ?repository=",
        None,
        "Policy decisions (?repository=&allowed=&limit=&after=)",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/signers",
        "repository readers",
        None,
        "Signing keys bound to users",
    ),
    (
        "put",
        "/api/v0/repositories/{ns}/{repo}/signers",
        "system administrator, or repository administrator for themself",
        Some("SignerBinding"),
        "Bind a signing key to a user",
    ),
    (
        "delete",
        "/api/v0/repositories/{ns}/{repo}/signers/{keyId}",
        "system administrator or repository administrator",
        None,
        "Remove a key binding",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/tags",
        "repository readers",
        None,
        "Tags with digest, signature status and quarantine (?n=&last=)",
    ),
];

/// Schemas of the bodies, for the OpenAPI document.
pub fn openapi_schemas() -> Vec<(&'static str, Value)> {
    let names = json!({"type": "array", "items": {"type": "string"}});
    vec![
        (
            "Policy",
            json!({"type": "object", "required": ["mode"], "properties": {
                "mode": {"type": "string", "enum": ["disabled", "permissive", "enforced"]},
                "gates": {"type": "array", "items": {"type": "string", "enum": ["pull", "push", "deploy"]}},
                "signers": {"type": "array", "items": {"type": "object", "properties": {
                    "team": {"type": "string"}, "role": {"type": "string"}, "min": {"type": "integer", "minimum": 1}}}},
                "tags": names, "exemptTags": names, "exemptUsers": names, "exemptTeams": names,
                "digestPulls": {"type": "string", "enum": ["signed", "always"]},
                "denyExpired": {"type": "boolean"},
                "immutableSignedTags": {"type": "boolean"},
                "writersReadQuarantined": {"type": "boolean"}
            }}),
        ),
        (
            "SignerBinding",
            json!({"type": "object", "required": ["keyId", "user"], "properties": {
                "keyId": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "user": {"type": "string"}, "role": {"type": "string"}, "gun": {"type": "string"}
            }}),
        ),
    ]
}

// ---------------------------------------------------------------------- errors

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal("database", e)
    }
}

impl From<PolicyStoreError> for ApiError {
    fn from(e: PolicyStoreError) -> Self {
        match e {
            PolicyStoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            other => ApiError::internal("policies", other),
        }
    }
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------- state

/// Shared state of the routes.
#[derive(Clone)]
pub struct ApiState {
    db: Db,
    registry: Option<Arc<Registry>>,
    access: Option<Arc<dyn Access>>,
    store: Arc<tokio::sync::OnceCell<Arc<PolicyStore>>>,
}

impl ApiState {
    fn engine(&self) -> Option<&PolicyEngine> {
        self.registry
            .as_ref()
            .and_then(|r| r.policy.as_any())
            .and_then(|a| a.downcast_ref::<PolicyEngine>())
    }

    async fn store(&self) -> Result<Arc<PolicyStore>> {
        if let Some(e) = self.engine() {
            return Ok(Arc::clone(e.store()));
        }
        let db = self.db.clone();
        self.store
            .get_or_try_init(|| async move { PolicyStore::open(db).await })
            .await
            .cloned()
            .map_err(ApiError::from)
    }

    fn auth(&self) -> AuthStore {
        AuthStore::new(self.db.clone())
    }
}

/// The caller.
struct Who {
    name: String,
    user: Option<User>,
    admin: bool,
}

impl FromRequestParts<ApiState> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &ApiState) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<LocalAdmin>().is_some() {
            return Ok(Who {
                name: "(local administrator)".into(),
                user: None,
                admin: true,
            });
        }
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            )
        };
        let Some(access) = &st.access else {
            return Err(unauthorized());
        };
        let identity = match access.check(&parts.headers, &[Need::Login]).await {
            Ok(i) => i,
            Err(e) => {
                return Err(match e.status() {
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => unauthorized(),
                    StatusCode::TOO_MANY_REQUESTS => ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TOO_MANY_REQUESTS",
                        "too many logins in progress, retry shortly",
                    ),
                    s => ApiError::new(s, "INTERNAL", "authentication unavailable"),
                });
            }
        };
        let user = match &identity.user {
            Some(n) => st.auth().user(n).await?,
            None => None,
        };
        let admin = identity.admin || user.as_ref().is_some_and(|u| u.admin);
        if user.is_none() && !admin {
            return Err(unauthorized());
        }
        Ok(Who {
            name: identity
                .user
                .unwrap_or_else(|| "(anonymous administrator)".into()),
            user,
            admin,
        })
    }
}

async fn repo_level(st: &ApiState, who: &Who, repo: &str) -> Result<Option<Level>> {
    if who.admin {
        return Ok(Some(Level::Admin));
    }
    match &who.user {
        Some(u) => Ok(st.auth().repo_level(u, repo).await?),
        None => Ok(None),
    }
}

async fn require_repo_read(st: &ApiState, who: &Who, repo: &str) -> Result<()> {
    if repo_level(st, who, repo).await?.is_some() || st.db.is_public(repo).await? {
        Ok(())
    } else {
        // Private repositories are not revealed.
        Err(ApiError::not_found(format!(
            "repository {repo} does not exist"
        )))
    }
}

async fn require_repo_admin(st: &ApiState, who: &Who, repo: &str) -> Result<()> {
    if repo_level(st, who, repo).await? == Some(Level::Admin) {
        Ok(())
    } else {
        Err(ApiError::denied())
    }
}

async fn namespace_level(st: &ApiState, who: &Who, ns: &str) -> Result<Option<Level>> {
    if who.admin {
        return Ok(Some(Level::Admin));
    }
    let Some(u) = &who.user else { return Ok(None) };
    let level = st.auth().namespace_level(u, ns).await?;
    if level.is_some() {
        return Ok(level);
    }
    // Plain organisation members may read.
    Ok(st
        .auth()
        .org_membership(ns, u.id)
        .await?
        .map(|_| Level::ReadOnly))
}

async fn require_read(st: &ApiState, who: &Who, scope: &Scope) -> Result<()> {
    match scope {
        Scope::Global => Ok(()),
        Scope::Namespace(ns) => {
            if namespace_level(st, who, ns).await?.is_some() {
                Ok(())
            } else {
                Err(ApiError::denied())
            }
        }
        Scope::Repository(r) => require_repo_read(st, who, r).await,
    }
}

async fn require_admin_of(st: &ApiState, who: &Who, scope: &Scope) -> Result<()> {
    let ok = match scope {
        Scope::Global => who.admin,
        Scope::Namespace(ns) => {
            who.admin
                || (who.user.is_some()
                    && st
                        .auth()
                        .namespace_level(who.user.as_ref().ok_or_else(ApiError::denied)?, ns)
                        .await?
                        == Some(Level::Admin))
        }
        Scope::Repository(r) => repo_level(st, who, r).await? == Some(Level::Admin),
    };
    if ok { Ok(()) } else { Err(ApiError::denied()) }
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default()
}

fn query_get<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

fn int_param(q: &[(String, String)], k: &str) -> Result<Option<i64>> {
    match query_get(q, k) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .ok()
            .filter(|n| n.is_some_and(|n| n >= 0))
            .ok_or_else(|| ApiError::invalid(format!("{k} must be a non-negative integer"))),
    }
}

fn check_repo(name: &str) -> Result<()> {
    if crate::names::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::invalid("invalid repository name"))
    }
}

// ---------------------------------------------------------------------- router

/// The routes over a registry's state (its database, access control and, when its
/// policy is a [`PolicyEngine`], that engine's cache).
pub fn router(registry: Arc<Registry>) -> Router {
    let st = ApiState {
        db: registry.db.clone(),
        access: Some(Arc::clone(&registry.access)),
        registry: Some(registry),
        store: Arc::default(),
    };
    routes(st)
}

/// The routes for in-process use by the CLI on a data directory (only requests
/// carrying [`LocalAdmin`] are served).
pub fn local_router(db: Db) -> Router {
    routes(ApiState {
        db,
        registry: None,
        access: None,
        store: Arc::default(),
    })
}

/// Serves the policy routes, and `inner` (the rest of the application) for everything
/// else.
pub fn mount(registry: Arc<Registry>, inner: Router) -> Router {
    router(registry).fallback_service(inner)
}

fn routes(st: ApiState) -> Router {
    Router::new()
        .route("/api/v0/policies/global", any(global))
        .route("/api/v0/policies/global/history", get(global_history))
        .route("/api/v0/policies/namespaces/{ns}", any(namespace))
        .route(
            "/api/v0/policies/namespaces/{ns}/history",
            get(namespace_history),
        )
        .route("/api/v0/policies/repositories/{*rest}", any(repository))
        .route("/api/v0/audit", get(audit_route))
        .route("/api/v0/repositories/{ns}/{repo}/signers", any(signers))
        .route(
            "/api/v0/repositories/{ns}/{repo}/signers/{key}",
            any(signer),
        )
        .route("/api/v0/repositories/{ns}/{repo}/tags", get(tags))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(st)
}

fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}

// ---------------------------------------------------------------------- policies

fn scope_json(s: &Scope) -> Value {
    json!({"kind": s.kind(), "name": s.name()})
}

fn policy_json(p: &StoredPolicy) -> Value {
    json!({
        "scope": scope_json(&p.scope),
        "policy": p.spec,
        "version": p.version,
        "updatedBy": p.updated_by,
        "updatedAt": rfc3339(p.updated_at),
    })
}

fn history_json(h: &HistoryEntry) -> Value {
    json!({
        "version": h.version,
        "scope": scope_json(&h.scope),
        "action": h.action,
        "policy": h.policy,
        "previous": h.previous,
        "changedBy": h.changed_by,
        "changedAt": rfc3339(h.changed_at),
    })
}

async fn policy_route(
    st: &ApiState,
    who: &Who,
    method: &Method,
    scope: Scope,
    uri: &Uri,
    body: &[u8],
) -> Result<Response> {
    let store = st.store().await?;
    match *method {
        Method::GET => {
            require_read(st, who, &scope).await?;
            let effective = matches!(
                query_get(&query_pairs(uri), "effective"),
                Some("true" | "1")
            );
            if let (true, Scope::Repository(r)) = (effective, &scope) {
                // Read the database, not the cache: show what was stored last.
                store.refresh().await?;
                let set = store.snapshot();
                let p = set
                    .effective(r)
                    .ok_or_else(|| ApiError::not_found(format!("no policy applies to {r}")))?;
                return Ok(ok_json(StatusCode::OK, policy_json(p)));
            }
            let p = store.get(&scope).await?.ok_or_else(|| {
                ApiError::not_found(format!("{} does not exist", scope.describe()))
            })?;
            Ok(ok_json(StatusCode::OK, policy_json(&p)))
        }
        Method::PUT => {
            require_admin_of(st, who, &scope).await?;
            let spec: PolicySpec = serde_json::from_slice(body)
                .map_err(|e| ApiError::invalid(format!("invalid policy: {e}")))?;
            spec.validate().map_err(ApiError::invalid)?;
            let p = store.set(&scope, &spec, &who.name).await?;
            Ok(ok_json(StatusCode::OK, policy_json(&p)))
        }
        Method::DELETE => {
            require_admin_of(st, who, &scope).await?;
            store.delete(&scope, &who.name).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(method_not_allowed()),
    }
}

async fn history_route(st: &ApiState, who: &Who, scope: Scope, uri: &Uri) -> Result<Response> {
    require_read(st, who, &scope).await?;
    let q = query_pairs(uri);
    let limit = int_param(&q, "limit")?.unwrap_or(100);
    let h = st.store().await?.history(&scope, limit).await?;
    Ok(ok_json(
        StatusCode::OK,
        json!({"history": h.iter().map(history_json).collect::<Vec<_>>()}),
    ))
}

async fn global(
    State(st): State<ApiState>,
    who: Who,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    respond(policy_route(&st, &who, &method, Scope::Global, &uri, &body).await)
}

async fn global_history(State(st): State<ApiState>, who: Who, uri: Uri) -> Response {
    respond(history_route(&st, &who, Scope::Global, &uri).await)
}

fn check_namespace(ns: &str) -> Result<()> {
    if valid_account_name(ns) {
        Ok(())
    } else {
        Err(ApiError::invalid("invalid namespace"))
    }
}

async fn namespace(
    State(st): State<ApiState>,
    who: Who,
    method: Method,
    Path(ns): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    respond(
        async {
            check_namespace(&ns)?;
            policy_route(&st, &who, &method, Scope::Namespace(ns), &uri, &body).await
        }
        .await,
    )
}

async fn namespace_history(
    State(st): State<ApiState>,
    who: Who,
    Path(ns): Path<String>,
    uri: Uri,
) -> Response {
    respond(
        async {
            check_namespace(&ns)?;
            history_route(&st, &who, Scope::Namespace(ns), &uri).await
        }
        .await,
    )
}

/// `…/repositories/<name>` or `GET …/repositories/<name>/history` (a GET of
/// `…/<x>/history` is always the history of `<x>`).
async fn repository(
    State(st): State<ApiState>,
    who: Who,
    method: Method,
    Path(rest): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Response {
    respond(
        async {
            let rest = rest.trim_end_matches('/');
            if method == Method::GET {
                if let Some(repo) = rest.strip_suffix("/history") {
                    check_repo(repo)?;
                    return history_route(&st, &who, Scope::Repository(repo.to_owned()), &uri)
                        .await;
                }
            }
            check_repo(rest)?;
            policy_route(
                &st,
                &who,
                &method,
                Scope::Repository(rest.to_owned()),
                &uri,
                &body,
            )
            .await
        }
        .await,
    )
}

// ---------------------------------------------------------------------- audit

fn audit_json(e: &audit::AuditEntry) -> Value {
    json!({
        "id": e.id, "at": rfc3339(e.at), "gate": e.gate, "operation": e.operation,
        "repository": e.repository, "tag": e.tag, "digest": e.digest, "user": e.user,
        "allowed": e.allowed, "warned": e.warned, "reason": e.reason, "policyVersion": e.policy_version,
    })
}

async fn audit_route(State(st): State<ApiState>, who: Who, uri: Uri) -> Response {
    respond(async {
        let q = query_pairs(&uri);
        let repository = query_get(&q, "repository").filter(|r| !r.is_empty()).map(str::to_owned);
        match &repository {
            Some(r) => {
                check_repo(r)?;
                require_repo_admin(&st, &who, r).await?;
            }
            None if !who.admin => return Err(ApiError::denied()),
            None => {}
        }
        let allowed = match query_get(&q, "allowed") {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::invalid("allowed is true or false")),
        };
        let query = AuditQuery {
            repository,
            allowed,
            after: int_param(&q, "after")?,
            limit: int_param(&q, "limit")?.unwrap_or(100),
        };
        let entries = audit::query(&st.db, &query).await?;
        let next = entries.last().map(|e| e.id);
        Ok(ok_json(StatusCode::OK, json!({"entries": entries.iter().map(audit_json).collect::<Vec<_>>(), "next": next})))
    }.await)
}

// ---------------------------------------------------------------------- signers

fn signer_json(k: &SignerKey) -> Value {
    json!({"keyId": k.key_id, "user": k.user, "role": k.role, "gun": k.gun, "addedBy": k.added_by, "addedAt": rfc3339(k.added_at)})
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Binding {
    key_id: String,
    user: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    gun: Option<String>,
}

async fn signers(
    State(st): State<ApiState>,
    who: Who,
    method: Method,
    Path((ns, repo)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(async {
        let repo = format!("{ns}/{repo}");
        check_repo(&repo)?;
        match method {
            Method::GET => {
                require_repo_read(&st, &who, &repo).await?;
                let list = keys::list(&st.db, &repo).await?;
                Ok(ok_json(StatusCode::OK, json!({"repository": repo, "signers": list.iter().map(signer_json).collect::<Vec<_>>()})))
            }
            Method::PUT => {
                require_repo_admin(&st, &who, &repo).await?;
                let b: Binding = serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
                if !keys::valid_key_id(&b.key_id) {
                    return Err(ApiError::invalid("keyId is 64 lowercase hex digits (the key id the trust data lists)"));
                }
                if !who.admin && who.user.as_ref().map(|u| u.name.as_str()) != Some(b.user.as_str()) {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, "DENIED", "only a system administrator may bind a key to another user"));
                }
                if !valid_account_name(&b.user) || st.auth().user(&b.user).await?.is_none() {
                    return Err(ApiError::not_found(format!("user {} does not exist", b.user.chars().take(64).collect::<String>())));
                }
                let role = b.role.unwrap_or_else(|| "targets".into());
                if !valid_role(&role) {
                    return Err(ApiError::invalid("role is targets or targets/<name>"));
                }
                let gun = b.gun.unwrap_or_default();
                if gun.len() > 255 || keys::repository_of_gun(&gun) != repo && !gun.is_empty() {
                    return Err(ApiError::invalid(format!("gun must name {repo} (with the registry host)")));
                }
                let k = SignerKey {
                    repository: repo.clone(),
                    key_id: b.key_id,
                    gun,
                    role,
                    user: b.user,
                    added_by: who.name.clone(),
                    added_at: crate::meta::now(),
                };
                keys::bind(&st.db, &k).await?;
                if let Some(e) = st.engine() {
                    e.signers_changed(&repo);
                }
                tracing::info!(repository = %repo, key = %k.key_id, user = %k.user, by = %who.name, "signing key bound");
                Ok(ok_json(StatusCode::OK, signer_json(&k)))
            }
            _ => Err(method_not_allowed()),
        }
    }.await)
}

async fn signer(
    State(st): State<ApiState>,
    who: Who,
    method: Method,
    Path((ns, repo, key)): Path<(String, String, String)>,
) -> Response {
    respond(async {
        let repo = format!("{ns}/{repo}");
        check_repo(&repo)?;
        if !keys::valid_key_id(&key) {
            return Err(ApiError::invalid("invalid key id"));
        }
        match method {
            Method::GET => {
                require_repo_read(&st, &who, &repo).await?;
                let k = keys::list(&st.db, &repo).await?.into_iter().find(|k| k.key_id == key).ok_or_else(|| ApiError::not_found("no such binding"))?;
                Ok(ok_json(StatusCode::OK, signer_json(&k)))
            }
            Method::DELETE => {
                require_repo_admin(&st, &who, &repo).await?;
                if !keys::unbind(&st.db, &repo, &key).await? {
                    return Err(ApiError::not_found("no such binding"));
                }
                if let Some(e) = st.engine() {
                    e.signers_changed(&repo);
                }
                tracing::info!(repository = %repo, key = %key, by = %who.name, "signing key unbound");
                Ok(StatusCode::NO_CONTENT.into_response())
            }
            _ => Err(method_not_allowed()),
        }
    }.await)
}

// ---------------------------------------------------------------------- tags

async fn tag_page(
    db: &Db,
    repo: &str,
    last: &str,
    n: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = match db.backend() {
        Backend::Sqlite(pool) => sqlx::query("SELECT t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3")
            .bind(repo).bind(last).bind(n).fetch_all(pool).await?
            .iter().map(|r| (r.get(0), r.get(1))).collect(),
        Backend::Postgres(pool) => sqlx::query("SELECT t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.name = $1 AND t.name COLLATE \"C\" > $2 ORDER BY t.name COLLATE \"C\" LIMIT $3")
            .bind(repo).bind(last).bind(n).fetch_all(pool).await?
            .iter().map(|r| (r.get(0), r.get(1))).collect(),
    };
    Ok(rows)
}

async fn tags(
    State(st): State<ApiState>,
    who: Who,
    Path((ns, repo)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    respond(async {
        let repo = format!("{ns}/{repo}");
        check_repo(&repo)?;
        require_repo_read(&st, &who, &repo).await?;
        if st.db.repository_id(&repo).await?.is_none() {
            return Err(ApiError::not_found(format!("repository {repo} does not exist")));
        }
        let q = query_pairs(&uri);
        let n = int_param(&q, "n")?.unwrap_or(100).clamp(1, MAX_TAGS_PAGE);
        let last = query_get(&q, "last").unwrap_or("");
        let page = tag_page(&st.db, &repo, last, n).await?;
        let Some(engine) = st.engine() else {
            let v: Vec<Value> = page.iter().map(|(t, d)| json!({"name": t, "digest": d, "status": "unknown"})).collect();
            return Ok(ok_json(StatusCode::OK, json!({"repository": repo, "tags": v})));
        };
        let (sigs, reports) = engine.tag_reports(&repo, &page).await.map_err(|e| {
            tracing::warn!(error = %e, "tag statuses");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "signature status temporarily unavailable")
        })?;
        let v: Vec<Value> = reports
            .iter()
            .map(|r| {
                let status = if r.signed {
                    "signed"
                } else if r.signed_digest.is_some() {
                    "moved"
                } else {
                    "unsigned"
                };
                json!({
                    "name": r.tag,
                    "digest": r.digest,
                    "status": status,
                    "signedDigest": r.signed_digest,
                    "quarantined": r.quarantined,
                    "policySatisfied": r.policy_satisfied,
                    "reason": r.reason,
                    "signers": r.signers.iter().map(|s| json!({
                        "role": s.role,
                        "keys": s.keys.iter().map(|(id, user)| json!({"id": id, "user": user})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(ok_json(StatusCode::OK, json!({
            "repository": repo,
            "trustData": sigs.as_ref().map(|s| json!({"source": s.source, "gun": s.subject, "version": s.version})),
            "tags": v,
        })))
    }.await)
}
