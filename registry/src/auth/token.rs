//! The token endpoint (spec 3.2, 3.3): `GET /auth/token` (Basic credentials or
//! anonymous; repeated `scope`; `offline_token=true` with `client_id` adds a refresh
//! token) and `POST /auth/token` (OAuth2 form: `grant_type=password|refresh_token`).
//! Each requested scope is granted the intersection of what was asked and what the
//! caller may do; only wrong credentials are an error (401).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::jwt::ResourceActions;
use super::store::User;
use super::{AuthService, CallerError, MAX_SCOPES, Scope, parse_basic, request_host, store_error};
use crate::error::{Code, RegistryError, Result};

/// Largest POST form accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// Longest GET query accepted.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// `/auth/token`.
pub fn router(svc: Arc<AuthService>) -> Router {
    Router::new()
        .route("/auth/token", get(get_token).post(post_token))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(svc)
}

fn bad_request(msg: &str) -> RegistryError {
    RegistryError::new(Code::Unsupported, msg).with_status(StatusCode::BAD_REQUEST)
}

fn unauthorized(svc: &AuthService, headers: &HeaderMap) -> RegistryError {
    let realm = svc.realm(headers);
    let err = RegistryError::new(Code::Unauthorized, "incorrect username or password");
    match HeaderValue::from_str(&format!("Basic realm=\"{realm}\"")) {
        Ok(v) => err.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => err,
    }
}

fn caller_error(svc: &AuthService, headers: &HeaderMap, e: CallerError) -> RegistryError {
    match e {
        CallerError::Invalid(_) => unauthorized(svc, headers),
        other => other.into_registry_error(),
    }
}

/// Form or query pairs, percent-decoded.
fn pairs(s: &str) -> Result<Vec<(String, String)>> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(s)
        .map_err(|_| bad_request("malformed form or query"))
}

fn last<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

async fn get_token(State(svc): State<Arc<AuthService>>, uri: Uri, headers: HeaderMap) -> Response {
    get_inner(&svc, &uri, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn get_inner(svc: &AuthService, uri: &Uri, headers: &HeaderMap) -> Result<Response> {
    let query = uri.query().unwrap_or("");
    if query.len() > MAX_QUERY_BYTES {
        return Err(RegistryError::new(Code::TooLarge, "query too long"));
    }
    let q = pairs(query)?;
    let scopes: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    let user = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(raw) => {
            let value = raw
                .to_str()
                .ok()
                .filter(|v| v.len() <= 4096)
                .ok_or_else(|| unauthorized(svc, headers))?;
            let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(unauthorized(svc, headers));
            }
            let (name, password) = parse_basic(rest).ok_or_else(|| unauthorized(svc, headers))?;
            match svc.login(&name, &password).await {
                Ok(Some(u)) => Some(u),
                Ok(None) => return Err(unauthorized(svc, headers)),
                Err(e) => return Err(caller_error(svc, headers, e)),
            }
        }
    };
    let offline = last(&q, "offline_token") == Some("true");
    let client_id = last(&q, "client_id").unwrap_or("");
    let refresh = match (&user, offline) {
        (Some(u), true) => {
            if client_id.is_empty() {
                return Err(bad_request("client_id is required with offline_token=true"));
            }
            Some(
                svc.issue_refresh_token(u, client_id)
                    .await
                    .map_err(|e| caller_error(svc, headers, e))?,
            )
        }
        _ => None,
    };
    respond(
        svc,
        headers,
        user.as_ref(),
        last(&q, "service"),
        &scopes,
        refresh,
        false,
    )
    .await
}

async fn post_token(
    State(svc): State<Arc<AuthService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    post_inner(&svc, &headers, &body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn post_inner(svc: &AuthService, headers: &HeaderMap, body: &[u8]) -> Result<Response> {
    let text = std::str::from_utf8(body).map_err(|_| bad_request("form is not UTF-8"))?;
    let form = pairs(text)?;
    let client_id = last(&form, "client_id").unwrap_or("");
    if client_id.is_empty() {
        return Err(bad_request("client_id is required"));
    }
    let scopes: Vec<&str> = last(&form, "scope")
        .map(|s| s.split(' ').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let (user, refresh) = match last(&form, "grant_type") {
        Some("password") => {
            let name = last(&form, "username").unwrap_or("");
            let password = last(&form, "password").unwrap_or("");
            let user = match svc.login(name, password).await {
                Ok(Some(u)) => u,
                Ok(None) => return Err(unauthorized(svc, headers)),
                Err(e) => return Err(caller_error(svc, headers, e)),
            };
            let refresh = if last(&form, "access_type") == Some("offline") {
                Some(
                    svc.issue_refresh_token(&user, client_id)
                        .await
                        .map_err(|e| caller_error(svc, headers, e))?,
                )
            } else {
                None
            };
            (user, refresh)
        }
        Some("refresh_token") => {
            let token = last(&form, "refresh_token").unwrap_or("");
            match svc.refresh_token_user(token).await.map_err(store_error)? {
                Some(u) => (u, None),
                None => {
                    metrics::counter!("registry_auth_failures_total", "reason" => "bad_refresh_token").increment(1);
                    return Err(unauthorized(svc, headers));
                }
            }
        }
        _ => return Err(bad_request("grant_type must be password or refresh_token")),
    };
    respond(
        svc,
        headers,
        Some(&user),
        last(&form, "service"),
        &scopes,
        refresh,
        true,
    )
    .await
}

/// Grants the scopes and answers with a signed token.
async fn respond(
    svc: &AuthService,
    headers: &HeaderMap,
    user: Option<&User>,
    service: Option<&str>,
    scopes: &[&str],
    refresh: Option<String>,
    oauth: bool,
) -> Result<Response> {
    let service = service
        .filter(|s| !s.is_empty())
        .unwrap_or(&svc.config.service);
    if !svc.knows_service(service) {
        return Err(bad_request("unknown service"));
    }
    if scopes.len() > MAX_SCOPES {
        metrics::counter!("registry_auth_failures_total", "reason" => "too_many_scopes")
            .increment(1);
        return Err(bad_request(&format!(
            "at most {MAX_SCOPES} scopes per token"
        )));
    }
    // One entry per resource: repeated scopes for the same resource are merged.
    let mut wanted: Vec<Scope> = Vec::new();
    for s in scopes {
        let scope = Scope::parse(s).ok_or_else(|| bad_request("malformed scope"))?;
        match wanted
            .iter_mut()
            .find(|w| w.kind == scope.kind && w.name == scope.name)
        {
            Some(w) => {
                for a in scope.actions {
                    if !w.actions.contains(&a) {
                        w.actions.push(a);
                    }
                }
            }
            None => wanted.push(scope),
        }
    }
    let host = request_host(headers);
    let mut access = Vec::new();
    let mut granted_scopes = Vec::new();
    for scope in &wanted {
        let actions = svc
            .grant(user, scope, host.as_deref())
            .await
            .map_err(store_error)?;
        if actions.is_empty() {
            continue;
        }
        let entry = ResourceActions {
            kind: scope.kind.clone(),
            name: scope.name.clone(),
            actions,
        };
        granted_scopes.push(format!(
            "{}:{}:{}",
            entry.kind,
            entry.name,
            entry.actions.join(",")
        ));
        access.push(entry);
    }
    let (token, claims) = svc
        .issue(user, service, access)
        .map_err(|e| RegistryError::internal("signing a token", e))?;
    tracing::debug!(
        user = %claims.sub,
        service,
        granted = %granted_scopes.join(" "),
        "issued a token"
    );
    let issued_at = time::OffsetDateTime::from_unix_timestamp(claims.iat)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let mut body = json!({
        "token": token,
        "access_token": token,
        "expires_in": claims.exp - claims.iat,
        "issued_at": issued_at,
    });
    if oauth {
        body["scope"] = Value::from(granted_scopes.join(" "));
    }
    if let Some(r) = refresh {
        body["refresh_token"] = Value::from(r);
    }
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body.to_string(),
    )
        .into_response())
}
