//! The OCI Distribution 1.1 API under `/v2/`. Repository names contain `/` and may
//! have components named `blobs`, `manifests`, ...: routes are matched on their suffix,
//! the name being everything between `/v2/` and it, then validated.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::Registry;
use crate::access::{Action, Need};
use crate::error::{Code, RegistryError, Result};
use crate::names::{self, Digest, DigestError};

mod blobs;
mod manifests;
mod tags;
mod uploads;

/// `Docker-Distribution-API-Version`.
pub const API_VERSION: &str = "registry/2.0";

/// The `/v2/` routes (ping, catalog, everything under a repository).
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/v2", any(ping))
        .route("/v2/", any(ping))
        .route("/v2/_catalog", any(tags::catalog))
        .route("/v2/{*rest}", any(dispatch))
        .layer(axum::middleware::map_response(add_version))
        .with_state(registry)
}

async fn add_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

async fn ping(State(reg): State<Arc<Registry>>, method: Method, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed();
    }
    match reg.access.check(&headers, &[Need::Login]).await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn method_not_allowed() -> Response {
    RegistryError::new(Code::Unsupported, "method not allowed on this route").into_response()
}

/// A parsed `/v2/<name>/...` route.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    let (head, last) = path.rsplit_once('/')?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        return Some(if last.is_empty() {
            Route::Uploads(name)
        } else {
            Route::Upload(name, last)
        });
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        if last == "uploads" {
            return Some(Route::Uploads(name));
        }
        return Some(Route::Blob(name, last));
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        return Some(Route::Manifest(name, last));
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Some(Route::Referrers(name, last));
    }
    None
}

/// Checks a repository name (`NAME_INVALID` otherwise).
fn check_name(name: &str) -> Result<()> {
    if names::valid_name(name) {
        Ok(())
    } else {
        Err(RegistryError::name_invalid(name))
    }
}

/// Parses a digest from a URL or query (`DIGEST_INVALID`, 400, either way).
fn parse_digest(s: &str) -> Result<Digest> {
    Digest::parse(s).map_err(|e| match e {
        DigestError::Malformed => RegistryError::detail(
            Code::DigestInvalid,
            "invalid digest",
            serde_json::json!(s.chars().take(200).collect::<String>()),
        ),
        DigestError::Unsupported => RegistryError::detail(
            Code::DigestInvalid,
            "unsupported digest algorithm",
            serde_json::json!(s.chars().take(200).collect::<String>()),
        ),
    })
}

/// Query parameters as (key, value) pairs, percent-decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .take(64)
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Header value from a string we built (digests, paths we validated).
fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

async fn dispatch(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let path = req
        .uri()
        .path()
        .strip_prefix("/v2/")
        .unwrap_or("")
        .to_owned();
    let Some(r) = route(&path) else {
        return RegistryError::new(Code::NameInvalid, "no such route")
            .with_status(StatusCode::NOT_FOUND)
            .into_response();
    };
    let result = match r {
        Route::Tags(name) => tags::list(&reg, name, req).await,
        Route::Manifest(name, reference) => manifests::handle(&reg, name, reference, req).await,
        Route::Blob(name, digest) => blobs::handle(&reg, name, digest, req).await,
        Route::Uploads(name) => uploads::start(&reg, name, req).await,
        Route::Upload(name, id) => uploads::handle(&reg, name, id, req).await,
        Route::Referrers(name, digest) => tags::referrers(&reg, name, digest, req).await,
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Authorises `actions` on `name` for this request.
async fn authorize(
    reg: &Registry,
    headers: &HeaderMap,
    name: &str,
    actions: &[Action],
) -> Result<crate::access::Identity> {
    reg.access
        .check(
            headers,
            &[Need::Repository(name.to_owned(), actions.to_vec())],
        )
        .await
}

/// What a write request on a repository needs (distribution's mapping).
fn needs_for(method: &Method) -> &'static [Action] {
    match *method {
        Method::GET | Method::HEAD => &[Action::Pull],
        Method::DELETE => &[Action::Delete],
        _ => &[Action::Pull, Action::Push],
    }
}

/// How long a request body may stall before the request is abandoned.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// The next piece of a request body: `None` at its end; a body that stalls for
/// [`BODY_IDLE`] is 408 and one cut short 400, both with `code`.
async fn next_chunk(
    stream: &mut axum::body::BodyDataStream,
    code: Code,
) -> Result<Option<bytes::Bytes>> {
    use futures_util::StreamExt as _;
    let next = tokio::time::timeout(BODY_IDLE, stream.next())
        .await
        .map_err(|_| {
            RegistryError::new(code, "request body stalled")
                .with_status(StatusCode::REQUEST_TIMEOUT)
        })?;
    next.transpose()
        .map_err(|_| RegistryError::new(code, "request body ended early"))
}

/// An empty body response with headers.
fn empty(status: StatusCode, headers: Vec<(header::HeaderName, HeaderValue)>) -> Response {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in headers {
        h.append(k, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_routing() {
        assert_eq!(route("a/b/tags/list"), Some(Route::Tags("a/b")));
        assert_eq!(
            route("a/manifests/x/manifests/v1"),
            Some(Route::Manifest("a/manifests/x", "v1"))
        );
        assert_eq!(route("a/blobs/uploads/"), Some(Route::Uploads("a")));
        assert_eq!(route("a/blobs/uploads"), Some(Route::Uploads("a")));
        assert_eq!(
            route("a/blobs/uploads/xyz"),
            Some(Route::Upload("a", "xyz"))
        );
        assert_eq!(
            route("blobs/blobs/sha256:1"),
            Some(Route::Blob("blobs", "sha256:1"))
        );
        assert_eq!(
            route("a/referrers/sha256:1"),
            Some(Route::Referrers("a", "sha256:1"))
        );
        assert_eq!(route("a/other/x"), None);
        assert_eq!(percent_decode("a%2Fb%zz+c"), "a/b%zz c");
    }
}
