//! The OCI distribution API driven in-process (tower `oneshot`, no socket), with the
//! checks of the OCI conformance suite that distribution 2.8 fails, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use notary_registry::access::{AllowAll, Decision, Open, Policy, PolicyRequest};
use notary_registry::meta::Db;
use notary_registry::names::{Algorithm, Digest};
use notary_registry::storage::fs::FsStore;
use notary_registry::{Options, Registry};
use serde_json::{Value, json};
use tower::ServiceExt as _;

struct Env {
    app: Router,
    reg: Arc<Registry>,
    dir: tempfile::TempDir,
}

async fn registry_in(dir: &std::path::Path, policy: Arc<dyn Policy>) -> Arc<Registry> {
    let db = Db::open_sqlite(dir.join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    let store = Arc::new(FsStore::open(&dir.join("blobs")).unwrap());
    let options = Options {
        max_manifest_bytes: 64 << 10,
        ..Options::default()
    };
    Arc::new(Registry::new(db, store, Arc::new(Open), policy, options))
}

async fn env_with(policy: Arc<dyn Policy>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_in(dir.path(), policy).await;
    Env {
        app: notary_registry::server::app(Arc::clone(&reg)),
        reg,
        dir,
    }
}

async fn env() -> Env {
    env_with(Arc::new(AllowAll)).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Resp {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Resp {
    call(app, Method::GET, uri, &[], Body::empty()).await
}

fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

/// POST + PUT monolithic upload; returns the digest.
async fn push_blob(app: &Router, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = call(
        app,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location");
    // As HTTP clients do: the body's length is declared.
    let len = data.len().to_string();
    let r = call(
        app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[("content-length", &len)],
        Body::from(data.to_vec()),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    d
}

fn image_manifest(config: &str, config_len: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": config_len},
        "layers": layers.iter().map(|(d, n)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes()
}

/// Pushes config + one layer + manifest under `tag`; returns the manifest digest.
async fn push_image(app: &Router, repo: &str, tag: &str, layer: &[u8]) -> String {
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = push_blob(app, repo, cfg).await;
    let l = push_blob(app, repo, layer).await;
    let m = image_manifest(&c, cfg.len(), &[(&l, layer.len())]);
    let r = call(
        app,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(m.clone()),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), sha256(&m));
    sha256(&m)
}

#[tokio::test]
async fn ping_and_version_header() {
    let e = env().await;
    let r = get(&e.app, "/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    let r = get(&e.app, "/health").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn monolithic_upload_then_get_head_and_ranges() {
    let e = env().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let d = push_blob(&e.app, "a/b", &data).await;
    let r = get(&e.app, &format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    assert_eq!(r.header("docker-content-digest"), d);
    let r = call(
        &e.app,
        Method::HEAD,
        &format!("/v2/a/b/blobs/{d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "100000");
    assert!(r.body.is_empty());
    let r = call(
        &e.app,
        Method::GET,
        &format!("/v2/a/b/blobs/{d}"),
        &[("range", "bytes=10-19")],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, data[10..20]);
    assert_eq!(r.header("content-range"), "bytes 10-19/100000");
    let r = call(
        &e.app,
        Method::GET,
        &format!("/v2/a/b/blobs/{d}"),
        &[("range", "bytes=100000-")],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */100000");
    // The suite's odd range: answered cleanly with the whole blob.
    let r = call(
        &e.app,
        Method::GET,
        &format!("/v2/a/b/blobs/{d}"),
        &[("range", "bytes=500-0")],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), 100_000);
    // Repository scoping: the blob is not served from another repository.
    let r = get(&e.app, &format!("/v2/other/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN")
    );
}

#[tokio::test]
async fn single_post_and_zero_byte_blob() {
    let e = env().await;
    let d = sha256(b"");
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/z/blobs/uploads/?digest={d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), format!("/v2/z/blobs/{d}"));
    let r = get(&e.app, &format!("/v2/z/blobs/{d}")).await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
    let d2 = sha256(b"single");
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/z/blobs/uploads/?digest={d2}"),
        &[],
        Body::from("single"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn chunked_upload_out_of_order_chunk_is_416_and_session_survives() {
    let e = env().await;
    let r = call(
        &e.app,
        Method::POST,
        "/v2/c/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await;
    let loc = r.header("location");
    assert_eq!(r.header("range"), "0-0");
    assert!(!r.header("docker-upload-uuid").is_empty());
    let r = call(
        &e.app,
        Method::PATCH,
        &loc,
        &[("content-range", "0-4"), ("content-length", "5")],
        Body::from("hello"),
    )
    .await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::ACCEPTED, "0-4".to_owned())
    );
    // Skipping ahead, and re-sending a received chunk: 416, session intact.
    let r = call(
        &e.app,
        Method::PATCH,
        &loc,
        &[("content-range", "7-9")],
        Body::from("abc"),
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), "0-4");
    let r = call(
        &e.app,
        Method::PATCH,
        &loc,
        &[("content-range", "0-4")],
        Body::from("hello"),
    )
    .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = get(&e.app, &loc).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::NO_CONTENT, "0-4".to_owned())
    );
    // A chunk whose length disagrees with its Content-Range is refused, nothing kept.
    let r = call(
        &e.app,
        Method::PATCH,
        &loc,
        &[("content-range", "5-9")],
        Body::from(" wo"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&e.app, &loc).await.header("range"), "0-4");
    // Streamed PATCH (no Content-Range) appends; the final PUT carries the last chunk.
    let r = call(&e.app, Method::PATCH, &loc, &[], Body::from(" wor")).await;
    assert_eq!(
        (r.status, r.header("range")),
        (StatusCode::ACCEPTED, "0-8".to_owned())
    );
    let d = sha256(b"hello world!");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[("content-range", "9-11")],
        Body::from("ld!"),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        get(&e.app, &format!("/v2/c/blobs/{d}")).await.body,
        b"hello world!"
    );
    // The finished session is gone.
    assert_eq!(get(&e.app, &loc).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_digest_discards_the_upload() {
    let e = env().await;
    let r = call(
        &e.app,
        Method::POST,
        "/v2/w/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await;
    let loc = r.header("location");
    let wrong = sha256(b"something else");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={wrong}"),
        &[],
        Body::from("data"),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(get(&e.app, &loc).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&e.app, &format!("/v2/w/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&e.app, &format!("/v2/w/blobs/{}", sha256(b"data")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Malformed and unsupported digests are 400, never 500.
    let r = call(
        &e.app,
        Method::POST,
        "/v2/w/blobs/uploads/?digest=sha256:xyz",
        &[],
        Body::from("x"),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/w/blobs/uploads/?digest=blake3:{}", "a".repeat(64)),
        &[],
        Body::from("x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&e.app, Method::PUT, &loc, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn body_cut_mid_stream_stores_nothing() {
    let e = env().await;
    let r = call(
        &e.app,
        Method::POST,
        "/v2/cut/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await;
    let loc = r.header("location");
    let r = call(&e.app, Method::PATCH, &loc, &[], Body::from("abc")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // A body that fails after some bytes, as a dropped connection does.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
        Ok(bytes::Bytes::from_static(b"defgh")),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "cut",
        )),
    ];
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let r = call(&e.app, Method::PATCH, &loc, &[], body).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    assert_eq!(get(&e.app, &loc).await.header("range"), "0-2");
    // The session continues from its last complete request.
    let d = sha256(b"abcXYZ");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[],
        Body::from("XYZ"),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        get(&e.app, &format!("/v2/cut/blobs/{d}")).await.body,
        b"abcXYZ"
    );
}

#[tokio::test]
async fn upload_resumes_after_registry_restart() {
    let dir = tempfile::tempdir().unwrap();
    let loc;
    {
        let reg = registry_in(dir.path(), Arc::new(AllowAll)).await;
        let app = notary_registry::server::app(reg);
        loc = call(
            &app,
            Method::POST,
            "/v2/r/blobs/uploads/",
            &[],
            Body::empty(),
        )
        .await
        .header("location");
        let r = call(
            &app,
            Method::PATCH,
            &loc,
            &[("content-range", "0-5")],
            Body::from("first "),
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let reg = registry_in(dir.path(), Arc::new(AllowAll)).await;
    let app = notary_registry::server::app(reg);
    assert_eq!(get(&app, &loc).await.header("range"), "0-5");
    let r = call(
        &app,
        Method::PATCH,
        &loc,
        &[("content-range", "6-11")],
        Body::from("second"),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let d = sha256(b"first second");
    let r = call(
        &app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn upload_cancel_and_foreign_session() {
    let e = env().await;
    let loc = call(
        &e.app,
        Method::POST,
        "/v2/x/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await
    .header("location");
    // Another repository cannot touch the session.
    let foreign = loc.replace("/v2/x/", "/v2/y/");
    assert_eq!(get(&e.app, &foreign).await.status, StatusCode::NOT_FOUND);
    let r = call(&e.app, Method::DELETE, &loc, &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = get(&e.app, &loc).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN")
    );
    let r = get(&e.app, "/v2/x/blobs/uploads/../../etc").await;
    assert!(r.status.is_client_error());
}

#[tokio::test]
async fn cross_repository_mount() {
    let e = env().await;
    let d = push_blob(&e.app, "src/repo", b"shared layer").await;
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), d);
    assert_eq!(
        get(&e.app, &format!("/v2/dst/blobs/{d}")).await.body,
        b"shared layer"
    );
    // Without `from`, or from a repository without it: a normal session (202).
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/third/blobs/uploads/?mount={d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let missing = sha256(b"nope");
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src/repo"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn manifests_put_get_head_delete() {
    let e = env().await;
    let md = push_image(&e.app, "app", "v1", b"layer-1").await;
    let r = get(&e.app, "/v2/app/manifests/v1").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(r.header("docker-content-digest"), md);
    assert_eq!(sha256(&r.body), md);
    let r = call(
        &e.app,
        Method::HEAD,
        &format!("/v2/app/manifests/{md}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-length").parse::<usize>().unwrap(),
        get(&e.app, "/v2/app/manifests/v1").await.body.len()
    );
    // Tag delete removes only the tag.
    let r = call(
        &e.app,
        Method::DELETE,
        "/v2/app/manifests/v1",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        get(&e.app, "/v2/app/manifests/v1").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        get(&e.app, &format!("/v2/app/manifests/{md}")).await.status,
        StatusCode::OK
    );
    // Manifest delete removes it and every tag on it.
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/app/manifests/v2",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(get(&e.app, &format!("/v2/app/manifests/{md}")).await.body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = call(
        &e.app,
        Method::DELETE,
        &format!("/v2/app/manifests/{md}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        get(&e.app, "/v2/app/manifests/v2").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&e.app, &format!("/v2/app/manifests/{md}")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(
        &e.app,
        Method::DELETE,
        &format!("/v2/app/manifests/{md}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&e.app, "/v2/nosuchrepo/manifests/latest").await.code(),
        "NAME_UNKNOWN"
    );
}

#[tokio::test]
async fn bad_manifests_are_client_errors() {
    let e = env().await;
    let cfg = push_blob(&e.app, "bad", b"{}").await;
    let missing = sha256(b"never pushed");
    let put = |uri: String, body: Vec<u8>, ct: &'static str| {
        let app = e.app.clone();
        async move {
            call(
                &app,
                Method::PUT,
                &uri,
                &[("content-type", ct)],
                Body::from(body),
            )
            .await
        }
    };
    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    // Missing layer: MANIFEST_BLOB_UNKNOWN naming it; nothing stored.
    let m = image_manifest(&cfg, 2, &[(&missing, 12)]);
    let r = put("/v2/bad/manifests/t".into(), m.clone(), OCI).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(r.json()["errors"][0]["detail"], json!(missing));
    assert_eq!(
        get(&e.app, "/v2/bad/manifests/t").await.status,
        StatusCode::NOT_FOUND
    );
    // Not JSON; wrong schema; schema1; media type disagreeing with Content-Type.
    for (body, ct) in [
        (b"{not json".to_vec(), OCI),
        (br#"{"schemaVersion":3}"#.to_vec(), OCI),
        (
            br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#.to_vec(),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
        (
            image_manifest(&cfg, 2, &[]),
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let r = put("/v2/bad/manifests/t".into(), body, ct).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // Push by digest with a digest that is not the content's.
    let good = image_manifest(&cfg, 2, &[]);
    let r = put(format!("/v2/bad/manifests/{missing}"), good.clone(), OCI).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    // Malformed references and names.
    let r = put(
        "/v2/bad/manifests/sha256:totallywrong".into(),
        good.clone(),
        OCI,
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = get(&e.app, "/v2/bad/manifests/sha256:totallywrong").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = get(&e.app, "/v2/bad/manifests/-bad-tag").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "TAG_INVALID")
    );
    let r = get(&e.app, "/v2/Bad/Name/manifests/latest").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    let r = get(&e.app, &format!("/v2/{}/tags/list", "a".repeat(300))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "NAME_INVALID")
    );
    // Over the size limit (64 KiB in these tests): 413, with or without Content-Length.
    let mut big = image_manifest(&cfg, 2, &[]);
    big.truncate(big.len() - 1);
    big.extend_from_slice(
        format!(r#","annotations":{{"x":"{}"}}}}"#, "y".repeat(70_000)).as_bytes(),
    );
    let r = put("/v2/bad/manifests/big".into(), big.clone(), OCI).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let stream = futures_util::stream::iter(
        big.chunks(4096)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/bad/manifests/big",
        &[("content-type", OCI)],
        Body::from_stream(stream),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    // Unsupported methods: 405 UNSUPPORTED.
    let r = call(
        &e.app,
        Method::POST,
        "/v2/bad/manifests/t",
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED")
    );
    // The good manifest still goes in afterwards.
    let r = put("/v2/bad/manifests/t".into(), good, OCI).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn non_distributable_layers_need_not_be_pushed() {
    let e = env().await;
    let cfg = push_blob(&e.app, "nd", b"{}").await;
    let foreign = sha256(b"foreign layer");
    let m = json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":cfg,"size":2},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":foreign,"size":13}]}).to_string();
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/nd/manifests/v1",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(m),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[tokio::test]
async fn tags_and_catalog_pagination() {
    let e = env().await;
    let md = push_image(&e.app, "p/q", "a", b"x").await;
    let body = get(&e.app, &format!("/v2/p/q/manifests/{md}")).await.body;
    for t in ["b", "c", "d", "B"] {
        let r = call(
            &e.app,
            Method::PUT,
            &format!("/v2/p/q/manifests/{t}"),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            Body::from(body.clone()),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = get(&e.app, "/v2/p/q/tags/list").await;
    assert_eq!(r.json(), json!({"name":"p/q","tags":["B","a","b","c","d"]}));
    let r = get(&e.app, "/v2/p/q/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["B", "a"]));
    assert_eq!(
        r.header("link"),
        "</v2/p/q/tags/list?last=a&n=2>; rel=\"next\""
    );
    let r = get(&e.app, "/v2/p/q/tags/list?n=2&last=a").await;
    assert_eq!(r.json()["tags"], json!(["b", "c"]));
    let r = get(&e.app, "/v2/p/q/tags/list?last=bb").await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    assert_eq!(r.header("link"), "");
    let r = get(&e.app, "/v2/p/q/tags/list?n=0").await;
    assert_eq!(
        (r.json()["tags"].clone(), r.header("link")),
        (json!([]), String::new())
    );
    let r = get(&e.app, "/v2/p/q/tags/list?n=-1").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID")
    );
    push_blob(&e.app, "p/a", b"1").await;
    push_blob(&e.app, "z", b"1").await;
    let r = get(&e.app, "/v2/_catalog?n=2").await;
    assert_eq!(r.json(), json!({"repositories":["p/a","p/q"]}));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?last=p%2Fq&n=2>; rel=\"next\""
    );
    let r = get(&e.app, "/v2/_catalog?last=p%2Fq").await;
    assert_eq!(r.json(), json!({"repositories":["z"]}));
    assert_eq!(
        get(&e.app, "/v2/nothere/tags/list").await.code(),
        "NAME_UNKNOWN"
    );
}

#[tokio::test]
async fn subject_referrers_and_artifact_type_filter() {
    let e = env().await;
    let subject = push_image(&e.app, "ref", "v1", b"img").await;
    let empty = push_blob(&e.app, "ref", b"{}").await;
    let mut refs = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":at,
            "config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":empty,"size":2},
            "layers":[], "subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":subject,"size":1},
            "annotations":{"n": i.to_string()}}).to_string();
        let d = sha256(m.as_bytes());
        let r = call(
            &e.app,
            Method::PUT,
            &format!("/v2/ref/manifests/{d}"),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            Body::from(m),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("oci-subject"), subject);
        refs.push(d);
    }
    let r = get(&e.app, &format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
    let r = get(
        &e.app,
        &format!("/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sig"),
    )
    .await;
    let list = r.json()["manifests"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(list[0]["annotations"]["n"], "1");
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    // Unknown subject: 200 and an empty index; malformed digest: 400.
    let r = get(&e.app, &format!("/v2/ref/referrers/{}", sha256(b"unknown"))).await;
    assert_eq!(
        (r.status, r.json()["manifests"].clone()),
        (StatusCode::OK, json!([]))
    );
    assert_eq!(
        get(&e.app, "/v2/ref/referrers/sha256:zz").await.status,
        StatusCode::BAD_REQUEST
    );
    // Deleting a referrer drops it from the list.
    call(
        &e.app,
        Method::DELETE,
        &format!("/v2/ref/manifests/{}", refs[0]),
        &[],
        Body::empty(),
    )
    .await;
    let r = get(&e.app, &format!("/v2/ref/referrers/{subject}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    let e = env().await;
    let data = b"sha512 content";
    let d = Digest::of(Algorithm::Sha512, data).to_string();
    let loc = call(
        &e.app,
        Method::POST,
        "/v2/s5/blobs/uploads/?digest-algorithm=sha512",
        &[],
        Body::empty(),
    )
    .await
    .header("location");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[],
        Body::from(&data[..]),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("docker-content-digest"), d);
    let r = get(&e.app, &format!("/v2/s5/blobs/{d}")).await;
    assert_eq!(
        (r.status, r.header("docker-content-digest")),
        (StatusCode::OK, d.clone())
    );
    let single = Digest::of(Algorithm::Sha512, b"{}").to_string();
    let r = call(
        &e.app,
        Method::POST,
        &format!("/v2/s5/blobs/uploads/?digest={single}"),
        &[],
        Body::from("{}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let m = image_manifest(&single, 2, &[(&d, data.len())]);
    let md = Digest::of(Algorithm::Sha512, &m).to_string();
    let r = call(
        &e.app,
        Method::PUT,
        &format!("/v2/s5/manifests/{md}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(m),
    )
    .await;
    assert_eq!(
        (r.status, r.header("docker-content-digest")),
        (StatusCode::CREATED, md.clone())
    );
    assert_eq!(
        get(&e.app, &format!("/v2/s5/manifests/{md}"))
            .await
            .header("docker-content-digest"),
        md
    );
}

#[tokio::test]
async fn tag_query_parameters() {
    let e = env().await;
    let md = push_image(&e.app, "tp", "first", b"l").await;
    let body = get(&e.app, &format!("/v2/tp/manifests/{md}")).await.body;
    let r = call(
        &e.app,
        Method::PUT,
        &format!("/v2/tp/manifests/{md}?tag=1.0&tag=latest"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-tag"), "1.0, latest");
    assert_eq!(
        get(&e.app, "/v2/tp/manifests/latest")
            .await
            .header("docker-content-digest"),
        md
    );
    let many: String = (0..40).map(|i| format!("tag=t{i}&")).collect();
    let r = call(
        &e.app,
        Method::PUT,
        &format!("/v2/tp/manifests/{md}?{many}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(body),
    )
    .await;
    assert!(r.status.is_client_error());
}

#[tokio::test]
async fn blob_delete() {
    let e = env().await;
    let d = push_blob(&e.app, "del", b"bye").await;
    let r = call(
        &e.app,
        Method::DELETE,
        &format!("/v2/del/blobs/{d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        get(&e.app, &format!("/v2/del/blobs/{d}")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = call(
        &e.app,
        Method::DELETE,
        &format!("/v2/del/blobs/{d}"),
        &[],
        Body::empty(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

struct DenyTag;

#[async_trait::async_trait]
impl Policy for DenyTag {
    async fn decide(&self, r: &PolicyRequest<'_>) -> Decision {
        match r.tag {
            Some("unsigned") => {
                Decision::Deny(format!("tag unsigned of {} is not signed", r.repository))
            }
            Some("warn") => Decision::Warn("tag warn is not signed yet".into()),
            _ => Decision::Allow,
        }
    }
}

#[tokio::test]
async fn policy_decision_point_gates_manifest_routes() {
    let e = env_with(Arc::new(DenyTag)).await;
    let md = push_image(&e.app, "pol", "ok", b"l").await;
    let body = get(&e.app, &format!("/v2/pol/manifests/{md}")).await.body;
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/pol/manifests/unsigned",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(body.clone()),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    assert!(
        r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not signed")
    );
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/pol/manifests/warn",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = get(&e.app, "/v2/pol/manifests/warn").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("warning"), "299 - \"tag warn is not signed yet\"");
    let _ = &e.reg;
    let _ = e.dir.path();
}

fn files_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        files_under(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn small_blobs_are_kept_in_the_database_and_large_ones_in_files() {
    let e = env().await;
    let blobs = e.dir.path().join("blobs/blobs");
    let small = vec![7u8; 64 << 10];
    let d = push_blob(&e.app, "inline", &small).await;
    assert_eq!(files_under(&blobs), 0);
    let r = call(
        &e.app,
        Method::GET,
        &format!("/v2/inline/blobs/{d}"),
        &[("range", "bytes=65530-")],
        Body::empty(),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (StatusCode::PARTIAL_CONTENT, 6));
    assert_eq!(
        get(&e.app, &format!("/v2/inline/blobs/{d}")).await.body,
        small
    );
    let large = vec![8u8; (64 << 10) + 1];
    let d = push_blob(&e.app, "inline", &large).await;
    assert_eq!(files_under(&blobs), 1);
    assert_eq!(
        get(&e.app, &format!("/v2/inline/blobs/{d}")).await.body,
        large
    );
    // The same small content pushed again (another repository) is stored once.
    push_blob(&e.app, "inline2", &small).await;
    assert_eq!(files_under(&blobs), 1);
    // Inline path refusals: wrong digest, body longer than declared.
    let loc = call(
        &e.app,
        Method::POST,
        "/v2/inline/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await
    .header("location");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={}", sha256(b"other")),
        &[("content-length", "3")],
        Body::from("abc"),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert_eq!(get(&e.app, &loc).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        get(&e.app, &format!("/v2/inline/blobs/{}", sha256(b"abc")))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let loc = call(
        &e.app,
        Method::POST,
        "/v2/inline/blobs/uploads/",
        &[],
        Body::empty(),
    )
    .await
    .header("location");
    let r = call(
        &e.app,
        Method::PUT,
        &format!("{loc}?digest={}", sha256(b"abcd")),
        &[("content-length", "3")],
        Body::from("abcd"),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "SIZE_INVALID")
    );
    let left: Vec<_> = std::fs::read_dir(e.dir.path().join("blobs/uploads"))
        .unwrap()
        .flatten()
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_manifest_naming_more_descriptors_than_allowed_is_refused_before_any_lookup() {
    // The default 4 MiB manifest limit (the other tests use 64 KiB).
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(dir.path().join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    let store = Arc::new(FsStore::open(&dir.path().join("blobs")).unwrap());
    let reg = Arc::new(Registry::new(
        db,
        store,
        Arc::new(Open),
        Arc::new(AllowAll),
        Options::default(),
    ));
    let e = Env {
        app: notary_registry::server::app(Arc::clone(&reg)),
        reg,
        dir,
    };
    let cfg = push_blob(&e.app, "many", b"{}").await;
    // 4 097 distinct (never pushed) layers: refused as invalid before the presence check
    // (which would answer MANIFEST_BLOB_UNKNOWN for each of them).
    let layers: Vec<String> = (0..=notary_registry::manifest::MAX_REFERENCES)
        .map(|i| sha256(&(i as u64).to_be_bytes()))
        .collect();
    let refs: Vec<(&str, usize)> = layers.iter().map(|d| (d.as_str(), 1)).collect();
    let m = image_manifest(&cfg, 2, &refs);
    assert!(m.len() < 1 << 20);
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/many/manifests/t",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(m),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    assert!(r.json()["errors"].as_array().unwrap().len() == 1);
    // Just under the limit, the references are checked in batches and every missing one
    // is named.
    let refs: Vec<(&str, usize)> = layers[..1000].iter().map(|d| (d.as_str(), 1)).collect();
    let r = call(
        &e.app,
        Method::PUT,
        "/v2/many/manifests/t",
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        Body::from(image_manifest(&cfg, 2, &refs)),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
}
