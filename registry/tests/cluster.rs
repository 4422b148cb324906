//! `/api/v0/meta/cluster_status` in-process (SQLite, filesystem): admins only, this
//! replica registered, silent replicas reported unreachable and forgotten after a day.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use notary_registry::access::{Access, AllowAll, Identity, Need, Open};
use notary_registry::cluster::{self, Replica};
use notary_registry::error::{Code, RegistryError};
use notary_registry::meta::{Db, now};
use notary_registry::storage::fs::FsStore;
use notary_registry::{Options, Registry};
use tower::ServiceExt as _;

/// Signed-in users who are not administrators.
struct NotAdmin;

#[async_trait]
impl Access for NotAdmin {
    async fn check(&self, _headers: &HeaderMap, needs: &[Need]) -> Result<Identity, RegistryError> {
        if needs.contains(&Need::Admin) {
            return Err(RegistryError::new(Code::Denied, "administrators only"));
        }
        Ok(Identity {
            user: Some("dev".into()),
            admin: false,
        })
    }
}

async fn registry(dir: &std::path::Path, access: Arc<dyn Access>) -> Arc<Registry> {
    let db = Db::open_sqlite(dir.join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    let store = Arc::new(FsStore::open(&dir.join("blobs")).unwrap());
    let reg = Arc::new(Registry::new(
        db,
        store,
        access,
        Arc::new(AllowAll),
        Options::default(),
    ));
    cluster::start(&reg, "127.0.0.1:5000", 5).await.unwrap();
    reg
}

async fn status(reg: &Arc<Registry>, method: Method) -> (StatusCode, serde_json::Value) {
    let app = notary_registry::server::app(Arc::clone(reg));
    let req = Request::builder()
        .method(method)
        .uri("/api/v0/meta/cluster_status")
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (
        code,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn cluster_status_requires_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Arc::new(NotAdmin)).await;
    let (code, body) = status(&reg, Method::GET).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert!(body.get("replicas").is_none());
}

#[tokio::test]
async fn cluster_status_lists_this_replica_and_reports_silent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path(), Arc::new(Open)).await;
    let (code, body) = status(&reg, Method::GET).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let me = reg.replica_id.clone();
    assert_eq!(body["replica_id"], me.as_str());
    assert_eq!(body["replica_health"][&me], "OK");
    assert_eq!(body["current_issues"], serde_json::json!([]));
    assert_eq!(body["replicas"][0]["address"], "127.0.0.1:5000");

    // A replica that stopped heartbeating a minute ago (interval 5 s), and one silent
    // for more than a day.
    let t = now();
    let silent = Replica {
        id: "0123456789ab".into(),
        address: "10.0.0.9:5000".into(),
        started_at: t - 600,
        heartbeat_at: t - 60,
        heartbeat_interval: 5,
        version: "0.1.0".into(),
    };
    cluster::register(&reg.db, &silent).await.unwrap();
    let ancient = Replica {
        id: "ba9876543210".into(),
        heartbeat_at: t - 2 * 86_400,
        ..silent.clone()
    };
    cluster::register(&reg.db, &ancient).await.unwrap();
    let (_, body) = status(&reg, Method::GET).await;
    assert_eq!(
        body["replica_health"]["0123456789ab"], "unreachable",
        "{body}"
    );
    assert_eq!(body["replica_health"][&me], "OK");
    let issues = body["current_issues"].as_array().unwrap();
    assert!(
        issues.iter().any(|i| i["critical"] == false
            && i["description"].as_str().unwrap().contains("0123456789ab")),
        "{body}"
    );
    assert_eq!(
        cluster::forget_silent(&reg.db, t - 86_400).await.unwrap(),
        1
    );
    let listed: Vec<String> = cluster::replicas(&reg.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert!(
        listed.contains(&me) && listed.contains(&"0123456789ab".to_owned()) && listed.len() == 2
    );

    let (code, _) = status(&reg, Method::POST).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}
