//! The administration API under `/api/v0/` (DTR-like shapes, spec section 5): users,
//! organisations and their members, teams, repository and namespace grants,
//! repositories with visibility. Callers authenticate with a bearer token from
//! `/auth/token` or Basic credentials; every route checks its own permission (system
//! administrator, organisation owner, repository administrator, or the user themself).
//! The document `/api/v0/openapi.json` describes the routes.
//!
//! Errors are `{"errors":[{"code","message"}]}` with codes `UNAUTHORIZED`, `DENIED`,
//! `NOT_FOUND`, `CONFLICT`, `INVALID_INPUT`, `TOO_MANY_REQUESTS`, `INTERNAL`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::auth::store::{self, Level, Org, RepoInfo, StoreError, Team, User, namespace_of};
use crate::auth::{AuthService, Caller, CallerError, password};

pub mod client;

/// Largest JSON body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Marks an in-process request (the CLI working on a data directory) as coming from
/// the machine's administrator. Only code can set a request extension; nothing that
/// arrives over the network carries one.
#[derive(Clone, Copy, Debug)]
pub struct LocalAdmin;

/// An admin API error.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> AdminError {
        AdminError {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn denied() -> AdminError {
        AdminError::new(StatusCode::FORBIDDEN, "DENIED", "permission denied")
    }
    pub(crate) fn invalid(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
    /// A server-side failure: logged, the caller sees `internal error: <what>`.
    pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> AdminError {
        tracing::error!(error = %e, "admin API: {what}");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("internal error: {what}"),
        )
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => AdminError::not_found(e.to_string()),
            StoreError::Conflict(m) => AdminError::new(StatusCode::CONFLICT, "CONFLICT", m),
            StoreError::Refused(m) => AdminError::new(StatusCode::CONFLICT, "CONFLICT", m),
            StoreError::Db(e) => {
                tracing::error!(error = %e, "admin API database");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "internal error: database",
                )
            }
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message}]});
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"notary-registry\""),
            );
        }
        resp
    }
}

type Result<T, E = AdminError> = std::result::Result<T, E>;

/// The authenticated caller of an admin route.
#[derive(Clone, Debug)]
pub struct Who(pub User);

impl FromRequestParts<Arc<AuthService>> for Who {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        svc: &Arc<AuthService>,
    ) -> Result<Self, Self::Rejection> {
        if parts.extensions.get::<LocalAdmin>().is_some() {
            return Ok(Who(User {
                id: 0,
                name: "(local administrator)".into(),
                password_hash: String::new(),
                admin: true,
                created_at: 0,
            }));
        }
        let unauthorized = || {
            AdminError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            )
        };
        match svc.caller(&parts.headers, true).await {
            Ok(Caller::User(u)) => Ok(Who(u)),
            Ok(Caller::Token(c)) if !c.sub.is_empty() => match svc.store().user(&c.sub).await? {
                Some(u) => Ok(Who(u)),
                None => Err(unauthorized()),
            },
            Ok(_) | Err(CallerError::Invalid(_)) => Err(unauthorized()),
            Err(CallerError::Busy(_)) => Err(AdminError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_REQUESTS",
                "too many logins in progress, retry shortly",
            )),
            Err(CallerError::Store(e)) => Err(e.into()),
        }
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| AdminError::invalid(format!("invalid JSON body: {e}")))
}

pub(crate) fn ok_json(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn account_json(u: &User) -> Value {
    json!({"id": u.id, "name": u.name, "isAdmin": u.admin, "isOrg": false, "createdAt": rfc3339(u.created_at)})
}

fn org_json(o: &Org) -> Value {
    json!({"id": o.id, "name": o.name, "isOrg": true, "createdAt": rfc3339(o.created_at)})
}

fn team_json(t: &Team) -> Value {
    json!({"id": t.id, "orgID": t.org_id, "type": "managed", "name": t.name, "description": t.description})
}

// ---------------------------------------------------------------------- permissions

fn require_admin(who: &Who) -> Result<()> {
    if who.0.admin {
        Ok(())
    } else {
        Err(AdminError::denied())
    }
}

async fn org_membership(svc: &AuthService, who: &Who, org: &str) -> Result<Option<bool>> {
    if who.0.admin {
        return Ok(Some(true));
    }
    Ok(svc.store().org_membership(org, who.0.id).await?)
}

async fn require_org_owner(svc: &AuthService, who: &Who, org: &str) -> Result<()> {
    match org_membership(svc, who, org).await? {
        Some(true) => Ok(()),
        _ => Err(AdminError::denied()),
    }
}

async fn require_org_member(svc: &AuthService, who: &Who, org: &str) -> Result<()> {
    match org_membership(svc, who, org).await? {
        Some(_) => Ok(()),
        None => Err(AdminError::denied()),
    }
}

async fn repo_level(svc: &AuthService, who: &Who, repo: &str) -> Result<Option<Level>> {
    if who.0.admin {
        return Ok(Some(Level::Admin));
    }
    Ok(svc.store().repo_level(&who.0, repo).await?)
}

async fn require_repo_admin(svc: &AuthService, who: &Who, repo: &str) -> Result<()> {
    if repo_level(svc, who, repo).await? == Some(Level::Admin) {
        Ok(())
    } else {
        Err(AdminError::denied())
    }
}

async fn can_read_repo(svc: &AuthService, who: &Who, repo: &RepoInfo) -> Result<bool> {
    Ok(repo.public || repo_level(svc, who, &repo.name).await?.is_some())
}

fn check_account_name(name: &str) -> Result<()> {
    if store::valid_account_name(name) {
        Ok(())
    } else {
        Err(AdminError::invalid(
            "names are lowercase letters and digits separated by '.', '_' or '-', at most 64",
        ))
    }
}

fn check_team_name(name: &str) -> Result<()> {
    if store::valid_team_name(name) {
        Ok(())
    } else {
        Err(AdminError::invalid(
            "team names are letters, digits, '.', '_' or '-', at most 64",
        ))
    }
}

fn check_password(p: &str) -> Result<()> {
    if p.len() < MIN_PASSWORD_LEN || p.len() > password::MAX_PASSWORD_LEN {
        return Err(AdminError::invalid(format!(
            "passwords are {MIN_PASSWORD_LEN} to {} bytes",
            password::MAX_PASSWORD_LEN
        )));
    }
    Ok(())
}

fn hash(p: &str) -> Result<String> {
    password::hash_password(p).map_err(|e| {
        tracing::error!(error = %e, "hashing a password");
        AdminError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error: hashing",
        )
    })
}

// ---------------------------------------------------------------------- router

/// The `/api/v0/` routes.
pub fn router(svc: Arc<AuthService>) -> Router {
    Router::new()
        .route("/api/v0/openapi.json", get(openapi))
        .route("/api/v0/users", get(list_users).post(create_user))
        .route("/api/v0/users/{user}", get(get_user).delete(delete_user))
        .route("/api/v0/users/{user}/password", put(set_password))
        .route("/api/v0/users/{user}/admin", put(set_admin))
        .route("/api/v0/organizations", get(list_orgs).post(create_org))
        .route(
            "/api/v0/organizations/{org}",
            get(get_org).delete(delete_org),
        )
        .route("/api/v0/organizations/{org}/members", get(list_org_members))
        .route(
            "/api/v0/organizations/{org}/members/{user}",
            put(put_org_member).delete(delete_org_member),
        )
        .route(
            "/api/v0/organizations/{org}/teams",
            get(list_teams).post(create_team),
        )
        .route(
            "/api/v0/organizations/{org}/teams/{team}",
            get(get_team).delete(delete_team),
        )
        .route(
            "/api/v0/organizations/{org}/teams/{team}/members",
            get(list_team_members),
        )
        .route(
            "/api/v0/organizations/{org}/teams/{team}/members/{user}",
            put(put_team_member).delete(delete_team_member),
        )
        .route(
            "/api/v0/repositoryNamespaces/{ns}/teamAccess",
            get(list_namespace_access),
        )
        .route(
            "/api/v0/repositoryNamespaces/{ns}/teamAccess/{team}",
            get(get_namespace_access)
                .put(put_namespace_access)
                .delete(delete_namespace_access),
        )
        .route("/api/v0/repositories", get(list_all_repositories))
        .route("/api/v0/repositories/{*rest}", any(repositories))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(svc)
}

pub(crate) fn respond(r: Result<Response>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

// ---------------------------------------------------------------------- users

async fn list_users(State(svc): State<Arc<AuthService>>, who: Who) -> Response {
    respond(
        async {
            require_admin(&who)?;
            let users = svc.store().users().await?;
            Ok(ok_json(
                StatusCode::OK,
                json!({"users": users.iter().map(account_json).collect::<Vec<_>>()}),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    is_admin: bool,
}

async fn create_user(State(svc): State<Arc<AuthService>>, who: Who, body: Bytes) -> Response {
    respond(
        async {
            require_admin(&who)?;
            let b: NewUser = parse(&body)?;
            check_account_name(&b.name)?;
            check_password(&b.password)?;
            let u = svc
                .store()
                .create_user(&b.name, &hash(&b.password)?, b.is_admin)
                .await?;
            tracing::info!(user = %u.name, admin = u.admin, by = %who.0.name, "user created");
            Ok(ok_json(StatusCode::CREATED, account_json(&u)))
        }
        .await,
    )
}

async fn get_user(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(user): Path<String>,
) -> Response {
    respond(
        async {
            if !who.0.admin && who.0.name != user {
                return Err(AdminError::denied());
            }
            let u = svc
                .store()
                .user(&user)
                .await?
                .ok_or_else(|| AdminError::not_found(format!("user {user} does not exist")))?;
            Ok(ok_json(StatusCode::OK, account_json(&u)))
        }
        .await,
    )
}

async fn delete_user(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(user): Path<String>,
) -> Response {
    respond(
        async {
            require_admin(&who)?;
            svc.store().delete_user(&user).await?;
            svc.users_changed();
            tracing::info!(user = %user, by = %who.0.name, "user deleted");
            Ok(no_content())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewPassword {
    password: String,
    #[serde(default)]
    old_password: Option<String>,
}

async fn set_password(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let b: NewPassword = parse(&body)?;
            if !who.0.admin {
                // Users change their own password, proving the old one.
                if who.0.name != user {
                    return Err(AdminError::denied());
                }
                let old = b.old_password.as_deref().unwrap_or("");
                if svc.login(&user, old).await.ok().flatten().is_none() {
                    return Err(AdminError::new(
                        StatusCode::FORBIDDEN,
                        "DENIED",
                        "oldPassword is wrong",
                    ));
                }
            }
            check_password(&b.password)?;
            svc.store().set_password(&user, &hash(&b.password)?).await?;
            svc.users_changed();
            tracing::info!(user = %user, by = %who.0.name, "password changed");
            Ok(no_content())
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdminFlag {
    is_admin: bool,
}

async fn set_admin(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(user): Path<String>,
    body: Bytes,
) -> Response {
    respond(async {
        require_admin(&who)?;
        let b: AdminFlag = parse(&body)?;
        svc.store().set_admin(&user, b.is_admin).await?;
        svc.users_changed();
        tracing::info!(user = %user, admin = b.is_admin, by = %who.0.name, "admin flag changed");
        let u = svc.store().user(&user).await?.ok_or_else(|| AdminError::not_found("user"))?;
        Ok(ok_json(StatusCode::OK, account_json(&u)))
    }.await)
}

// ---------------------------------------------------------------------- organisations

async fn list_orgs(State(svc): State<Arc<AuthService>>, _who: Who) -> Response {
    respond(
        async {
            let orgs = svc.store().orgs().await?;
            Ok(ok_json(
                StatusCode::OK,
                json!({"organizations": orgs.iter().map(org_json).collect::<Vec<_>>()}),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewOrg {
    name: String,
}

async fn create_org(State(svc): State<Arc<AuthService>>, who: Who, body: Bytes) -> Response {
    respond(
        async {
            require_admin(&who)?;
            let b: NewOrg = parse(&body)?;
            check_account_name(&b.name)?;
            let o = svc.store().create_org(&b.name).await?;
            tracing::info!(org = %o.name, by = %who.0.name, "organization created");
            Ok(ok_json(StatusCode::CREATED, org_json(&o)))
        }
        .await,
    )
}

async fn get_org(
    State(svc): State<Arc<AuthService>>,
    _who: Who,
    Path(org): Path<String>,
) -> Response {
    respond(
        async {
            let o = svc.store().org(&org).await?.ok_or_else(|| {
                AdminError::not_found(format!("organization {org} does not exist"))
            })?;
            Ok(ok_json(StatusCode::OK, org_json(&o)))
        }
        .await,
    )
}

async fn delete_org(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(org): Path<String>,
) -> Response {
    respond(
        async {
            require_admin(&who)?;
            svc.store().delete_org(&org).await?;
            tracing::info!(org = %org, by = %who.0.name, "organization deleted");
            Ok(no_content())
        }
        .await,
    )
}

async fn list_org_members(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(org): Path<String>,
) -> Response {
    respond(
        async {
            require_org_member(&svc, &who, &org).await?;
            let members = svc.store().org_members(&org).await?;
            let v: Vec<Value> = members
                .iter()
                .map(|m| json!({"member": {"name": m.user}, "isAdmin": m.owner}))
                .collect();
            Ok(ok_json(StatusCode::OK, json!({"members": v})))
        }
        .await,
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemberFlags {
    #[serde(default, alias = "isAdmin")]
    is_owner: bool,
}

async fn put_org_member(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, user)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(async {
        require_org_owner(&svc, &who, &org).await?;
        let b: MemberFlags = if body.is_empty() { MemberFlags::default() } else { parse(&body)? };
        svc.store().set_org_member(&org, &user, b.is_owner).await?;
        tracing::info!(org = %org, user = %user, owner = b.is_owner, by = %who.0.name, "organization member set");
        Ok(ok_json(StatusCode::OK, json!({"member": {"name": user}, "isAdmin": b.is_owner})))
    }.await)
}

async fn delete_org_member(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, user)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            require_org_owner(&svc, &who, &org).await?;
            svc.store().remove_org_member(&org, &user).await?;
            Ok(no_content())
        }
        .await,
    )
}

// ---------------------------------------------------------------------- teams

async fn list_teams(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(org): Path<String>,
) -> Response {
    respond(
        async {
            require_org_member(&svc, &who, &org).await?;
            let teams = svc.store().teams(&org).await?;
            Ok(ok_json(
                StatusCode::OK,
                json!({"teams": teams.iter().map(team_json).collect::<Vec<_>>()}),
            ))
        }
        .await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewTeam {
    name: String,
    #[serde(default)]
    description: String,
}

async fn create_team(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(org): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            require_org_owner(&svc, &who, &org).await?;
            let b: NewTeam = parse(&body)?;
            check_team_name(&b.name)?;
            if b.description.len() > 1024 {
                return Err(AdminError::invalid("description longer than 1024 bytes"));
            }
            let t = svc
                .store()
                .create_team(&org, &b.name, &b.description)
                .await?;
            tracing::info!(org = %org, team = %t.name, by = %who.0.name, "team created");
            Ok(ok_json(StatusCode::CREATED, team_json(&t)))
        }
        .await,
    )
}

async fn get_team(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, team)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            require_org_member(&svc, &who, &org).await?;
            let t = svc.store().team(&org, &team).await?.ok_or_else(|| {
                AdminError::not_found(format!("team {org}/{team} does not exist"))
            })?;
            Ok(ok_json(StatusCode::OK, team_json(&t)))
        }
        .await,
    )
}

async fn delete_team(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, team)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            require_org_owner(&svc, &who, &org).await?;
            svc.store().delete_team(&org, &team).await?;
            Ok(no_content())
        }
        .await,
    )
}

async fn list_team_members(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, team)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            require_org_member(&svc, &who, &org).await?;
            let members = svc.store().team_members(&org, &team).await?;
            let v: Vec<Value> = members
                .iter()
                .map(|m| json!({"member": {"name": m}}))
                .collect();
            Ok(ok_json(StatusCode::OK, json!({"members": v})))
        }
        .await,
    )
}

async fn put_team_member(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    respond(async {
        require_org_owner(&svc, &who, &org).await?;
        svc.store().add_team_member(&org, &team, &user).await?;
        tracing::info!(org = %org, team = %team, user = %user, by = %who.0.name, "team member added");
        Ok(ok_json(StatusCode::OK, json!({"member": {"name": user}})))
    }.await)
}

async fn delete_team_member(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((org, team, user)): Path<(String, String, String)>,
) -> Response {
    respond(
        async {
            require_org_owner(&svc, &who, &org).await?;
            svc.store().remove_team_member(&org, &team, &user).await?;
            Ok(no_content())
        }
        .await,
    )
}

// ---------------------------------------------------------------------- namespace grants

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessBody {
    access_level: String,
}

fn level_of(body: &[u8]) -> Result<Level> {
    let b: AccessBody = parse(body)?;
    Level::parse(&b.access_level)
        .ok_or_else(|| AdminError::invalid("accessLevel is read-only, read-write or admin"))
}

fn namespace_json(o: &Org) -> Value {
    json!({"id": o.id, "type": "organization", "name": o.name})
}

async fn org_required(svc: &AuthService, name: &str) -> Result<Org> {
    svc.store()
        .org(name)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("organization {name} does not exist")))
}

async fn list_namespace_access(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path(ns): Path<String>,
) -> Response {
    respond(async {
        require_org_owner(&svc, &who, &ns).await?;
        let o = org_required(&svc, &ns).await?;
        let grants = svc.store().namespace_team_access(&ns).await?;
        let v: Vec<Value> = grants.iter().map(|(t, l)| json!({"accessLevel": l.as_str(), "team": team_json(t), "namespace": namespace_json(&o)})).collect();
        Ok(ok_json(StatusCode::OK, json!({"namespace": namespace_json(&o), "teamAccessList": v})))
    }.await)
}

async fn get_namespace_access(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((ns, team)): Path<(String, String)>,
) -> Response {
    respond(async {
        require_org_owner(&svc, &who, &ns).await?;
        let o = org_required(&svc, &ns).await?;
        let grants = svc.store().namespace_team_access(&ns).await?;
        let (t, l) = grants.into_iter().find(|(t, _)| t.name == team).ok_or_else(|| AdminError::not_found("no such grant"))?;
        Ok(ok_json(StatusCode::OK, json!({"accessLevel": l.as_str(), "team": team_json(&t), "namespace": namespace_json(&o)})))
    }.await)
}

async fn put_namespace_access(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((ns, team)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(async {
        require_org_owner(&svc, &who, &ns).await?;
        let level = level_of(&body)?;
        let o = org_required(&svc, &ns).await?;
        let t = svc.store().set_namespace_team_access(&ns, &team, level).await?;
        tracing::info!(namespace = %ns, team = %team, level = level.as_str(), by = %who.0.name, "namespace grant set");
        Ok(ok_json(StatusCode::OK, json!({"accessLevel": level.as_str(), "team": team_json(&t), "namespace": namespace_json(&o)})))
    }.await)
}

async fn delete_namespace_access(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    Path((ns, team)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            require_org_owner(&svc, &who, &ns).await?;
            svc.store().remove_namespace_team_access(&ns, &team).await?;
            Ok(no_content())
        }
        .await,
    )
}

// ---------------------------------------------------------------------- repositories

async fn repo_json(svc: &AuthService, r: &RepoInfo) -> Result<Value> {
    let (ns, name) = r.name.rsplit_once('/').unwrap_or(("", r.name.as_str()));
    let top = namespace_of(&r.name).unwrap_or("");
    let ns_type = if top.is_empty() {
        "global"
    } else if svc.store().org(top).await?.is_some() {
        "organization"
    } else {
        "user"
    };
    Ok(json!({
        "id": r.id,
        "namespace": ns,
        "namespaceType": ns_type,
        "name": name,
        "fullName": r.name,
        "shortDescription": r.short_description,
        "longDescription": r.long_description,
        "visibility": if r.public { "public" } else { "private" },
        "status": "ok",
    }))
}

async fn list_readable(svc: &AuthService, who: &Who, prefix: &str) -> Result<Response> {
    let all = svc.store().repositories(prefix, 100_000).await?;
    let mut out = Vec::new();
    for r in &all {
        if can_read_repo(svc, who, r).await? {
            out.push(repo_json(svc, r).await?);
        }
    }
    Ok(ok_json(StatusCode::OK, json!({"repositories": out})))
}

async fn list_all_repositories(State(svc): State<Arc<AuthService>>, who: Who) -> Response {
    respond(list_readable(&svc, &who, "").await)
}

/// What a `/api/v0/repositories/...` path names. Repository names are lowercase, so
/// the `teamAccess` / `userAccess` segments can never be part of one.
#[derive(Debug, PartialEq, Eq)]
enum RepoRoute<'a> {
    Namespace(&'a str),
    Repo(&'a str),
    TeamAccessList(&'a str),
    TeamAccess(&'a str, &'a str),
    UserAccessList(&'a str),
    UserAccess(&'a str, &'a str),
}

fn repo_route(rest: &str) -> Option<RepoRoute<'_>> {
    let rest = rest.trim_end_matches('/');
    for (marker, team) in [("/teamAccess", true), ("/userAccess", false)] {
        if let Some(i) = rest.find(marker) {
            let (repo, tail) = (&rest[..i], &rest[i + marker.len()..]);
            return match (tail.strip_prefix('/'), team) {
                (None, true) if tail.is_empty() => Some(RepoRoute::TeamAccessList(repo)),
                (None, false) if tail.is_empty() => Some(RepoRoute::UserAccessList(repo)),
                (Some(sub), true) if !sub.is_empty() && !sub.contains('/') => {
                    Some(RepoRoute::TeamAccess(repo, sub))
                }
                (Some(sub), false) if !sub.is_empty() && !sub.contains('/') => {
                    Some(RepoRoute::UserAccess(repo, sub))
                }
                _ => None,
            };
        }
    }
    if rest.is_empty() {
        None
    } else if rest.contains('/') {
        Some(RepoRoute::Repo(rest))
    } else {
        Some(RepoRoute::Namespace(rest))
    }
}

async fn repositories(
    State(svc): State<Arc<AuthService>>,
    who: Who,
    method: Method,
    Path(rest): Path<String>,
    body: Bytes,
) -> Response {
    respond(repositories_inner(&svc, &who, &method, &rest, &body).await)
}

fn method_not_allowed() -> AdminError {
    AdminError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "method not allowed on this route",
    )
}

fn check_repo_name(name: &str) -> Result<()> {
    if crate::names::valid_name(name) {
        Ok(())
    } else {
        Err(AdminError::invalid("invalid repository name"))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewRepo {
    name: String,
    #[serde(default)]
    short_description: String,
    #[serde(default)]
    long_description: String,
    #[serde(default)]
    visibility: Option<String>,
    /// DTR fields accepted and ignored.
    #[serde(default)]
    immutable_tags: Option<bool>,
    #[serde(default)]
    enable_manifest_lists: Option<bool>,
    #[serde(default)]
    scan_on_push: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RepoPatch {
    #[serde(default)]
    short_description: Option<String>,
    #[serde(default)]
    long_description: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
}

fn visibility(v: Option<&str>) -> Result<Option<bool>> {
    match v {
        None => Ok(None),
        Some("public") => Ok(Some(true)),
        Some("private") => Ok(Some(false)),
        Some(_) => Err(AdminError::invalid("visibility is public or private")),
    }
}

fn check_descriptions(short: Option<&str>, long: Option<&str>) -> Result<()> {
    if short.is_some_and(|s| s.len() > 140) || long.is_some_and(|s| s.len() > 16 * 1024) {
        return Err(AdminError::invalid(
            "shortDescription is at most 140 bytes, longDescription 16 KiB",
        ));
    }
    Ok(())
}

async fn repo_required(svc: &AuthService, name: &str) -> Result<RepoInfo> {
    svc.store()
        .repository(name)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("repository {name} does not exist")))
}

async fn repositories_inner(
    svc: &AuthService,
    who: &Who,
    method: &Method,
    rest: &str,
    body: &[u8],
) -> Result<Response> {
    let route = repo_route(rest).ok_or_else(|| AdminError::not_found("no such route"))?;
    match (route, method.clone()) {
        (RepoRoute::Namespace(ns), Method::GET) => list_readable(svc, who, &format!("{ns}/")).await,
        (RepoRoute::Namespace(ns), Method::POST) => {
            let b: NewRepo = parse(body)?;
            let _ = (b.immutable_tags, b.enable_manifest_lists, b.scan_on_push);
            let full = format!("{ns}/{}", b.name);
            check_repo_name(&full)?;
            check_descriptions(Some(&b.short_description), Some(&b.long_description))?;
            let allowed = who.0.admin
                || svc.store().namespace_level(&who.0, ns).await? >= Some(Level::ReadWrite);
            if !allowed {
                return Err(AdminError::denied());
            }
            let public = visibility(b.visibility.as_deref())?.unwrap_or(false);
            let r = svc
                .store()
                .create_repository(&full, public, &b.short_description, &b.long_description)
                .await?;
            tracing::info!(repository = %full, public, by = %who.0.name, "repository created");
            Ok(ok_json(StatusCode::CREATED, repo_json(svc, &r).await?))
        }
        (RepoRoute::Namespace(_), _) => Err(method_not_allowed()),
        (RepoRoute::Repo(name), Method::GET) => {
            let r = repo_required(svc, name).await?;
            if !can_read_repo(svc, who, &r).await? {
                // Do not reveal private repositories.
                return Err(AdminError::not_found(format!(
                    "repository {name} does not exist"
                )));
            }
            Ok(ok_json(StatusCode::OK, repo_json(svc, &r).await?))
        }
        (RepoRoute::Repo(name), Method::PATCH) => {
            require_repo_admin(svc, who, name).await?;
            let b: RepoPatch = parse(body)?;
            check_descriptions(
                b.short_description.as_deref(),
                b.long_description.as_deref(),
            )?;
            let public = visibility(b.visibility.as_deref())?;
            let r = svc
                .store()
                .update_repository(
                    name,
                    public,
                    b.short_description.as_deref(),
                    b.long_description.as_deref(),
                )
                .await?;
            tracing::info!(repository = %name, public = r.public, by = %who.0.name, "repository updated");
            Ok(ok_json(StatusCode::OK, repo_json(svc, &r).await?))
        }
        (RepoRoute::Repo(name), Method::DELETE) => {
            require_repo_admin(svc, who, name).await?;
            svc.store().delete_repository(name).await?;
            tracing::info!(repository = %name, by = %who.0.name, "repository deleted");
            Ok(no_content())
        }
        (RepoRoute::Repo(_), _) => Err(method_not_allowed()),
        (RepoRoute::TeamAccessList(name), Method::GET) => {
            require_repo_admin(svc, who, name).await?;
            let r = repo_required(svc, name).await?;
            let rj = repo_json(svc, &r).await?;
            let v: Vec<Value> = svc
                .store()
                .repo_team_access(name)
                .await?
                .iter()
                .map(|(t, l)| json!({"accessLevel": l.as_str(), "team": team_json(t)}))
                .collect();
            Ok(ok_json(
                StatusCode::OK,
                json!({"repository": rj, "teamAccessList": v}),
            ))
        }
        (RepoRoute::TeamAccess(name, team), m) => {
            require_repo_admin(svc, who, name).await?;
            check_repo_name(name)?;
            let org = namespace_of(name).ok_or_else(|| {
                AdminError::invalid("teams only have access to organisation repositories")
            })?;
            match m {
                Method::GET => {
                    let grants = svc.store().repo_team_access(name).await?;
                    let (t, l) = grants
                        .into_iter()
                        .find(|(t, _)| t.org == org && t.name == team)
                        .ok_or_else(|| AdminError::not_found("no such grant"))?;
                    Ok(ok_json(
                        StatusCode::OK,
                        json!({"accessLevel": l.as_str(), "team": team_json(&t)}),
                    ))
                }
                Method::PUT => {
                    let level = level_of(body)?;
                    let t = svc
                        .store()
                        .set_repo_team_access(name, org, team, level)
                        .await?;
                    tracing::info!(repository = %name, team = %team, level = level.as_str(), by = %who.0.name, "repository team grant set");
                    let r = repo_required(svc, name).await?;
                    Ok(ok_json(
                        StatusCode::OK,
                        json!({"accessLevel": level.as_str(), "team": team_json(&t), "repository": repo_json(svc, &r).await?}),
                    ))
                }
                Method::DELETE => {
                    svc.store().remove_repo_team_access(name, org, team).await?;
                    Ok(no_content())
                }
                _ => Err(method_not_allowed()),
            }
        }
        (RepoRoute::UserAccessList(name), Method::GET) => {
            require_repo_admin(svc, who, name).await?;
            let v: Vec<Value> = svc
                .store()
                .repo_user_access(name)
                .await?
                .iter()
                .map(|g| json!({"accessLevel": g.level.as_str(), "user": {"name": g.name}}))
                .collect();
            Ok(ok_json(StatusCode::OK, json!({"userAccessList": v})))
        }
        (RepoRoute::UserAccess(name, user), m) => {
            require_repo_admin(svc, who, name).await?;
            check_repo_name(name)?;
            match m {
                Method::GET => {
                    let g = svc
                        .store()
                        .repo_user_access(name)
                        .await?
                        .into_iter()
                        .find(|g| g.name == user)
                        .ok_or_else(|| AdminError::not_found("no such grant"))?;
                    Ok(ok_json(
                        StatusCode::OK,
                        json!({"accessLevel": g.level.as_str(), "user": {"name": g.name}}),
                    ))
                }
                Method::PUT => {
                    let level = level_of(body)?;
                    svc.store().set_repo_user_access(name, user, level).await?;
                    tracing::info!(repository = %name, user = %user, level = level.as_str(), by = %who.0.name, "repository user grant set");
                    Ok(ok_json(
                        StatusCode::OK,
                        json!({"accessLevel": level.as_str(), "user": {"name": user}}),
                    ))
                }
                Method::DELETE => {
                    svc.store().remove_repo_user_access(name, user).await?;
                    Ok(no_content())
                }
                _ => Err(method_not_allowed()),
            }
        }
        (RepoRoute::TeamAccessList(_) | RepoRoute::UserAccessList(_), _) => {
            Err(method_not_allowed())
        }
    }
}

// ---------------------------------------------------------------------- OpenAPI

/// Every admin route: method, path, who may call it, request body schema, summary.
pub const ROUTES: &[(&str, &str, &str, Option<&str>, &str)] = &[
    (
        "get",
        "/api/v0/users",
        "system administrator",
        None,
        "List users",
    ),
    (
        "post",
        "/api/v0/users",
        "system administrator",
        Some("NewUser"),
        "Create a user",
    ),
    (
        "get",
        "/api/v0/users/{user}",
        "system administrator or the user",
        None,
        "Show a user",
    ),
    (
        "delete",
        "/api/v0/users/{user}",
        "system administrator",
        None,
        "Delete a user (never the last administrator)",
    ),
    (
        "put",
        "/api/v0/users/{user}/password",
        "system administrator, or the user with oldPassword",
        Some("NewPassword"),
        "Set a password (revokes refresh tokens)",
    ),
    (
        "put",
        "/api/v0/users/{user}/admin",
        "system administrator",
        Some("AdminFlag"),
        "Make a user a system administrator or not",
    ),
    (
        "get",
        "/api/v0/organizations",
        "any user",
        None,
        "List organisations",
    ),
    (
        "post",
        "/api/v0/organizations",
        "system administrator",
        Some("NewOrg"),
        "Create an organisation",
    ),
    (
        "get",
        "/api/v0/organizations/{org}",
        "any user",
        None,
        "Show an organisation",
    ),
    (
        "delete",
        "/api/v0/organizations/{org}",
        "system administrator",
        None,
        "Delete an organisation",
    ),
    (
        "get",
        "/api/v0/organizations/{org}/members",
        "organisation member",
        None,
        "List members",
    ),
    (
        "put",
        "/api/v0/organizations/{org}/members/{user}",
        "organisation owner",
        Some("MemberFlags"),
        "Add a member or set their owner flag",
    ),
    (
        "delete",
        "/api/v0/organizations/{org}/members/{user}",
        "organisation owner",
        None,
        "Remove a member",
    ),
    (
        "get",
        "/api/v0/organizations/{org}/teams",
        "organisation member",
        None,
        "List teams",
    ),
    (
        "post",
        "/api/v0/organizations/{org}/teams",
        "organisation owner",
        Some("NewTeam"),
        "Create a team",
    ),
    (
        "get",
        "/api/v0/organizations/{org}/teams/{team}",
        "organisation member",
        None,
        "Show a team",
    ),
    (
        "delete",
        "/api/v0/organizations/{org}/teams/{team}",
        "organisation owner",
        None,
        "Delete a team",
    ),
    (
        "get",
        "/api/v0/organizations/{org}/teams/{team}/members",
        "organisation member",
        None,
        "List team members",
    ),
    (
        "put",
        "/api/v0/organizations/{org}/teams/{team}/members/{user}",
        "organisation owner",
        None,
        "Add a team member",
    ),
    (
        "delete",
        "/api/v0/organizations/{org}/teams/{team}/members/{user}",
        "organisation owner",
        None,
        "Remove a team member",
    ),
    (
        "get",
        "/api/v0/repositoryNamespaces/{ns}/teamAccess",
        "organisation owner",
        None,
        "List namespace-wide team grants",
    ),
    (
        "get",
        "/api/v0/repositoryNamespaces/{ns}/teamAccess/{team}",
        "organisation owner",
        None,
        "Show a namespace-wide team grant",
    ),
    (
        "put",
        "/api/v0/repositoryNamespaces/{ns}/teamAccess/{team}",
        "organisation owner",
        Some("AccessLevel"),
        "Grant a team a level on every repository of the namespace",
    ),
    (
        "delete",
        "/api/v0/repositoryNamespaces/{ns}/teamAccess/{team}",
        "organisation owner",
        None,
        "Revoke a namespace-wide team grant",
    ),
    (
        "get",
        "/api/v0/repositories",
        "any user (readable repositories)",
        None,
        "List repositories",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}",
        "any user (readable repositories)",
        None,
        "List a namespace's repositories",
    ),
    (
        "post",
        "/api/v0/repositories/{ns}",
        "namespace read-write or admin",
        Some("NewRepo"),
        "Create a repository",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}",
        "readers",
        None,
        "Show a repository",
    ),
    (
        "patch",
        "/api/v0/repositories/{ns}/{repo}",
        "repository admin",
        Some("RepoPatch"),
        "Change visibility or descriptions",
    ),
    (
        "delete",
        "/api/v0/repositories/{ns}/{repo}",
        "repository admin",
        None,
        "Delete a repository",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/teamAccess",
        "repository admin",
        None,
        "List team grants",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/teamAccess/{team}",
        "repository admin",
        None,
        "Show a team grant",
    ),
    (
        "put",
        "/api/v0/repositories/{ns}/{repo}/teamAccess/{team}",
        "repository admin",
        Some("AccessLevel"),
        "Grant a team of the namespace's organisation a level",
    ),
    (
        "delete",
        "/api/v0/repositories/{ns}/{repo}/teamAccess/{team}",
        "repository admin",
        None,
        "Revoke a team grant",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/userAccess",
        "repository admin",
        None,
        "List user grants",
    ),
    (
        "get",
        "/api/v0/repositories/{ns}/{repo}/userAccess/{user}",
        "repository admin",
        None,
        "Show a user grant",
    ),
    (
        "put",
        "/api/v0/repositories/{ns}/{repo}/userAccess/{user}",
        "repository admin",
        Some("AccessLevel"),
        "Grant a user a level",
    ),
    (
        "delete",
        "/api/v0/repositories/{ns}/{repo}/userAccess/{user}",
        "repository admin",
        None,
        "Revoke a user grant",
    ),
];

/// The OpenAPI 3 document of the admin API.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, who, body, summary) in ROUTES.iter().chain(crate::policy::api::ROUTES) {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "summary": summary,
            "description": format!("Allowed to: {who}."),
            "parameters": params,
            "responses": {
                "200": {"description": "OK"},
                "201": {"description": "Created"},
                "204": {"description": "Done"},
                "400": {"$ref": "#/components/responses/Error"},
                "401": {"$ref": "#/components/responses/Error"},
                "403": {"$ref": "#/components/responses/Error"},
                "404": {"$ref": "#/components/responses/Error"},
                "409": {"$ref": "#/components/responses/Error"}
            }
        });
        if let Some(b) = body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    let level = json!({"type": "string", "enum": ["read-only", "read-write", "admin"]});
    let mut doc = json!({
        "openapi": "3.0.3",
        "info": {"title": "notary-registry administration API", "version": "v0"},
        "security": [{"basic": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT from /auth/token"}
            },
            "responses": {
                "Error": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}
            },
            "schemas": {
                "Errors": {"type": "object", "properties": {"errors": {"type": "array", "items": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}},
                "NewUser": {"type": "object", "required": ["name", "password"], "properties": {"name": {"type": "string"}, "password": {"type": "string", "minLength": MIN_PASSWORD_LEN}, "isAdmin": {"type": "boolean"}}},
                "NewPassword": {"type": "object", "required": ["password"], "properties": {"password": {"type": "string"}, "oldPassword": {"type": "string"}}},
                "AdminFlag": {"type": "object", "required": ["isAdmin"], "properties": {"isAdmin": {"type": "boolean"}}},
                "NewOrg": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                "MemberFlags": {"type": "object", "properties": {"isOwner": {"type": "boolean"}}},
                "NewTeam": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "description": {"type": "string"}}},
                "AccessLevel": {"type": "object", "required": ["accessLevel"], "properties": {"accessLevel": level}},
                "NewRepo": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "shortDescription": {"type": "string"}, "longDescription": {"type": "string"}, "visibility": {"type": "string", "enum": ["public", "private"]}}},
                "RepoPatch": {"type": "object", "properties": {"shortDescription": {"type": "string"}, "longDescription": {"type": "string"}, "visibility": {"type": "string", "enum": ["public", "private"]}}}
            }
        }
    });
    for (name, schema) in crate::policy::api::openapi_schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    doc
}

async fn openapi() -> Response {
    ok_json(StatusCode::OK, openapi_document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_routes() {
        assert_eq!(repo_route("org"), Some(RepoRoute::Namespace("org")));
        assert_eq!(repo_route("org/app"), Some(RepoRoute::Repo("org/app")));
        assert_eq!(repo_route("org/a/b/"), Some(RepoRoute::Repo("org/a/b")));
        assert_eq!(
            repo_route("org/app/teamAccess"),
            Some(RepoRoute::TeamAccessList("org/app"))
        );
        assert_eq!(
            repo_route("org/app/teamAccess/devs"),
            Some(RepoRoute::TeamAccess("org/app", "devs"))
        );
        assert_eq!(
            repo_route("org/app/userAccess/bob"),
            Some(RepoRoute::UserAccess("org/app", "bob"))
        );
        assert_eq!(repo_route("org/app/userAccess/bob/x"), None);
        assert_eq!(repo_route(""), None);
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = openapi_document();
        assert_eq!(doc["openapi"], "3.0.3");
        let n: usize = doc["paths"]
            .as_object()
            .map(|p| {
                p.values()
                    .map(|v| v.as_object().map_or(0, |o| o.len()))
                    .sum()
            })
            .unwrap_or(0);
        assert_eq!(n, ROUTES.len() + crate::policy::api::ROUTES.len());
    }
}
