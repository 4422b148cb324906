//! Tag lists and the catalog (`n` / `last` / `Link`, byte order, `[]` never `null`),
//! and the referrers API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{authorize, check_name, hv, parse_digest, query_get, query_pairs};
use crate::Registry;
use crate::access::{Action, Need};
use crate::error::{Code, RegistryError, Result};
use crate::manifest::OCI_INDEX;

fn pagination(q: &[(String, String)], max: i64) -> Result<(i64, bool, String)> {
    let last = query_get(q, "last").unwrap_or("").to_owned();
    match query_get(q, "n") {
        None | Some("") => Ok((max, false, last)),
        Some(n) => {
            let n: i64 = n.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                RegistryError::new(
                    Code::PaginationNumberInvalid,
                    "n must be a non-negative integer",
                )
            })?;
            Ok((n.min(max), true, last))
        }
    }
}

fn link(path: &str, last: &str, n: i64) -> HeaderValue {
    let enc: String = last
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    hv(&format!("<{path}?last={enc}&n={n}>; rel=\"next\""))
}

fn json_response(body: Value, content_type: &'static str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body.to_string(),
    )
        .into_response()
}

/// `GET /v2/<name>/tags/list`.
pub(super) async fn list(reg: &Registry, name: &str, req: Request) -> Result<Response> {
    check_name(name)?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on tags",
        ));
    }
    authorize(reg, req.headers(), name, &[Action::Pull]).await?;
    let q = query_pairs(req.uri());
    let (n, _, last) = pagination(&q, reg.options.max_page)?;
    let Some(repo_id) = reg.db.repository_id(name).await? else {
        return Err(RegistryError::detail(
            Code::NameUnknown,
            "repository name not known to registry",
            json!({"name": name}),
        ));
    };
    let mut tags = if n == 0 {
        Vec::new()
    } else {
        reg.db.tags(repo_id, &last, n + 1).await?
    };
    let more = tags.len() as i64 > n;
    tags.truncate(n as usize);
    let mut resp = json_response(json!({"name": name, "tags": tags}), "application/json");
    if more {
        if let Some(l) = tags.last() {
            resp.headers_mut()
                .insert(header::LINK, link(&format!("/v2/{name}/tags/list"), l, n));
        }
    }
    Ok(resp)
}

/// `GET /v2/_catalog`.
pub(super) async fn catalog(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    catalog_inner(&reg, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn catalog_inner(reg: &Registry, req: Request) -> Result<Response> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on the catalog",
        ));
    }
    let identity = reg.access.check(req.headers(), &[Need::Catalog]).await?;
    let q = query_pairs(req.uri());
    let (n, _, last) = pagination(&q, reg.options.max_page)?;
    // A caller's readable repositories come sorted in catalog order: page through them
    // directly rather than through every repository of the registry.
    let mut repos = match reg.access.catalog_filter(&identity).await {
        Some(readable) => {
            let from = readable.partition_point(|r| r.as_str() <= last.as_str());
            readable
                .into_iter()
                .skip(from)
                .take(n as usize + 1)
                .collect()
        }
        None if n == 0 => Vec::new(),
        None => reg.db.catalog(&last, n + 1).await?,
    };
    let more = repos.len() as i64 > n;
    repos.truncate(n as usize);
    let mut resp = json_response(json!({"repositories": repos}), "application/json");
    if more {
        if let Some(l) = repos.last() {
            resp.headers_mut()
                .insert(header::LINK, link("/v2/_catalog", l, n));
        }
    }
    Ok(resp)
}

/// `GET /v2/<name>/referrers/<digest>[?artifactType=]`.
pub(super) async fn referrers(
    reg: &Registry,
    name: &str,
    digest: &str,
    req: Request,
) -> Result<Response> {
    check_name(name)?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on referrers",
        ));
    }
    authorize(reg, req.headers(), name, &[Action::Pull]).await?;
    let digest = parse_digest(digest)?;
    let q = query_pairs(req.uri());
    let filter = query_get(&q, "artifactType").filter(|t| !t.is_empty());
    let rows = reg.db.referrers(name, &digest.to_string()).await?;
    let manifests: Vec<Value> = rows
        .into_iter()
        .filter(|r| filter.is_none_or(|f| r.artifact_type.as_deref() == Some(f)))
        .map(|r| {
            let mut d = json!({"mediaType": r.media_type, "digest": r.digest, "size": r.size});
            if let Some(t) = r.artifact_type {
                d["artifactType"] = json!(t);
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let mut resp = json_response(
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}),
        OCI_INDEX,
    );
    if filter.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}
