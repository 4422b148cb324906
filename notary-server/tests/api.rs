//! The HTTP API driven in-process (tower `oneshot`, no socket): routes, error JSON,
//! validation outcomes, bad input, and racing publishers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use notary_core::metadata::{FileMeta, Signed, Targets};
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::{FetchRequest, Remote};
use notary_core::{Algorithm, Gun, PrivateKey, PublicKey, RoleName, Updater};
use notary_server::config::Config;
use serde_json::Value;
use tower::ServiceExt as _;
use zeroize::Zeroizing;

async fn app() -> Router {
    let config = Config {
        storage: notary_server::config::StorageSection {
            backend: notary_server::config::Backend::Memory,
            db_url: String::new(),
        },
        max_update_bytes: 1 << 20,
        ..Config::embedded(std::path::Path::new("/nonexistent"))
    };
    let state =
        notary_server::daemon::build_state(config, Zeroizing::new("test-passphrase".into()))
            .await
            .unwrap();
    notary_server::daemon::app(state)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Body,
    content_type: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Vec<u8>) {
    let (s, _, b) = call(app, Method::GET, uri, Body::empty(), None).await;
    (s, b)
}

const BOUNDARY: &str = "notaryrsboundary";

fn multipart(parts: &[(Option<&str>, &[u8])]) -> Body {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match name {
            Some(n) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"files\"; filename=\"{n}\"\r\n")
                    .as_bytes(),
            ),
            None => body.extend_from_slice(b"Content-Disposition: form-data; name=\"files\"\r\n"),
        }
        body.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    Body::from(body)
}

async fn post(app: &Router, gun: &str, parts: &[(Option<&str>, &[u8])]) -> (StatusCode, Value) {
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let (s, _, b) = call(
        app,
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        multipart(parts),
        Some(&ct),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn error_code(v: &Value) -> &str {
    v["errors"][0]["code"].as_str().unwrap_or("")
}

/// A repository with local root/targets keys and server-held snapshot and timestamp keys.
struct Repo {
    keys: Vec<PrivateKey>,
    editor: RepoEditor,
}

async fn server_key(app: &Router, gun: &str, role: &str) -> PublicKey {
    let (s, body) = get(app, &format!("/v2/{gun}/_trust/tuf/{role}.key")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn new_repo(app: &Router, gun: &str) -> Repo {
    let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let sn = server_key(app, gun, "snapshot").await;
    let ts = server_key(app, gun, "timestamp").await;
    let editor = RepoEditor::create(
        Gun::new(gun).unwrap(),
        &root,
        targets.public().clone(),
        sn,
        ts,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    Repo {
        keys: vec![root, targets],
        editor,
    }
}

impl Repo {
    fn sign(&mut self) -> BTreeMap<String, Vec<u8>> {
        let files = self
            .editor
            .sign(
                &KeyRing::from_keys(&self.keys),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        files
            .files
            .into_iter()
            .map(|(r, b)| (r.to_string(), b))
            .collect()
    }
}

async fn publish(
    app: &Router,
    gun: &str,
    files: &BTreeMap<String, Vec<u8>>,
) -> (StatusCode, Value) {
    let parts: Vec<(Option<&str>, &[u8])> = files
        .iter()
        .map(|(r, b)| (Some(r.as_str()), b.as_slice()))
        .collect();
    post(app, gun, &parts).await
}

/// Reads the repository back through the update engine.
struct RouterRemote(Router, String);

#[derive(Debug)]
struct Status(u16);
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.0)
    }
}
impl std::error::Error for Status {}

impl Remote for RouterRemote {
    type Error = Status;
    async fn fetch(&mut self, req: &FetchRequest) -> Result<Option<Vec<u8>>, Status> {
        let (s, b) = get(
            &self.0,
            &format!("/v2/{}/_trust/tuf/{}", self.1, req.file_name()),
        )
        .await;
        match s.as_u16() {
            200 => Ok(Some(b)),
            404 => Ok(None),
            c => Err(Status(c)),
        }
    }
}

async fn verified(app: &Router, gun: &str) -> notary_core::Repository {
    let mut remote = RouterRemote(app.clone(), gun.to_owned());
    Updater::new(Gun::new(gun).unwrap(), time::OffsetDateTime::now_utc())
        .update(&mut remote)
        .await
        .unwrap()
}

#[tokio::test]
async fn ping_health_metrics_and_catch_all() {
    let app = app().await;
    assert_eq!(get(&app, "/v2/").await, (StatusCode::OK, b"{}".to_vec()));
    let (s, b) = get(&app, "/_notary_server/health").await;
    assert_eq!((s, b.as_slice()), (StatusCode::OK, b"{}".as_slice()));
    let (s, b) = get(&app, "/v2/nothing/here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(error_code(&v), "METADATA_NOT_FOUND");
    assert!(v["errors"][0].get("detail").is_none());
    assert_eq!(get(&app, "/v2").await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = call(
        &app,
        Method::PATCH,
        "/v2/a/_trust/tuf/",
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        get(&app, "/v2/a/b/_trust/tuf/targets.key").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, metrics) = get(&app, "/metrics").await;
    let text = String::from_utf8(metrics).unwrap();
    assert!(text.contains("notary_server_http_requests_total"), "{text}");
    // Histograms with fixed buckets (drained by the upkeep thread), not unbounded sample
    // buffers or per-label quantile sketches.
    assert!(
        text.contains("notary_server_http_request_duration_seconds_bucket{")
            && text.contains("le=\"0.005\""),
        "{text}"
    );
    assert!(
        text.contains("# TYPE notary_server_http_request_size_bytes histogram"),
        "{text}"
    );
}

#[tokio::test]
async fn publish_then_read_every_way() {
    let app = app().await;
    let gun = "example.com/api/app";
    let mut repo = new_repo(&app, gun).await;
    repo.editor
        .add_target(&RoleName::targets(), "v1", FileMeta::from_bytes(b"one"))
        .unwrap();
    let files = repo.sign();
    assert!(
        !files.contains_key("snapshot"),
        "snapshot is server-managed"
    );
    let (s, v) = publish(&app, gun, &files).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, h, root) = call(
        &app,
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(root, files["root"]);
    assert_eq!(
        h["cache-control"],
        "public, max-age=300, s-maxage=300, must-revalidate"
    );
    assert!(h["last-modified"].to_str().unwrap().ends_with(" GMT"));
    let sum = hex::encode(notary_core::crypto::sha256(&root));
    let (s, h, b) = call(
        &app,
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.{sum}.json"),
        Body::empty(),
        None,
    )
    .await;
    assert_eq!((s, b), (StatusCode::OK, root.clone()));
    assert_eq!(
        h["cache-control"],
        "public, max-age=2592000, s-maxage=2592000"
    );
    assert_eq!(
        get(
            &app,
            &format!("/v2/{gun}/_trust/tuf/root.{}.json", sum.to_uppercase())
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/1.root.json"))
            .await
            .1,
        root
    );
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/01.root.json"))
            .await
            .1,
        root
    );
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/0.root.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Percent-encoded slashes address the same resource.
    let enc = gun.replace('/', "%2F");
    assert_eq!(
        get(&app, &format!("/v2/{enc}/_trust/tuf/root.json"))
            .await
            .1,
        root
    );
    // The engine verifies the whole chain, with the server-signed snapshot and timestamp.
    let r = verified(&app, gun).await;
    assert_eq!(r.lookup("v1").unwrap().meta.length, 3);
    // GET .key returns the key root lists.
    let ts_key = server_key(&app, gun, "timestamp").await;
    assert_eq!(r.root().roles["timestamp"].keyids[0], ts_key.key_id());
    // Changefeed.
    let (s, b) = get(&app, "/v2/_trust/changefeed?records=0").await;
    assert_eq!(s, StatusCode::OK);
    let feed: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(feed["count"], 1);
    assert_eq!(feed["records"][0]["GUN"], gun);
    assert_eq!(feed["records"][0]["Category"], "update");
    assert!(feed["records"][0]["ID"].is_string());
    // Delete.
    let (s, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/v2/{gun}/_trust/tuf/"),
        Body::empty(),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/root.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, b) = get(
        &app,
        &format!("/v2/{gun}/_trust/changefeed?records=-1&change_id=-1"),
    )
    .await;
    let feed: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(feed["records"][0]["Category"], "deletion");
}

#[tokio::test]
async fn bad_uploads_are_4xx_with_error_json_and_store_nothing() {
    let app = app().await;
    let gun = "example.com/api/bad";
    let mut repo = new_repo(&app, gun).await;
    let files = repo.sign();
    let ct = "application/json";
    let (s, _, b) = call(
        &app,
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        Body::from("{}"),
        Some(ct),
    )
    .await;
    assert_eq!(
        (s, error_code(&serde_json::from_slice(&b).unwrap())),
        (StatusCode::BAD_REQUEST, "MALFORMED_UPLOAD")
    );
    let (s, v) = post(&app, gun, &[(None, b"{}")]).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "NO_FILENAME")
    );
    let (s, v) = post(&app, gun, &[(Some("Targets/X"), b"{}")]).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_ROLE")
    );
    assert_eq!(v["errors"][0]["detail"], "Targets/X");
    let (s, v) = post(&app, gun, &[(Some("root.json"), b"{not json")]).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "MALFORMED_JSON")
    );
    let big = vec![b'x'; 2 << 20];
    let (s, _) = post(&app, gun, &[(Some("targets"), &big)]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    for bad_gun in ["a%20b", "a/../b", "x%2A"] {
        let (s, v) = post(&app, bad_gun, &[(Some("root"), &files["root"])]).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "INVALID_GUN"),
            "{bad_gun}"
        );
    }
    // No root anywhere.
    let (s, v) = publish(
        &app,
        gun,
        &files
            .iter()
            .filter(|(r, _)| *r != "root")
            .map(|(r, b)| (r.clone(), b.clone()))
            .collect(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["detail"]["Name"], "ErrValidation");
    // Pretty-printed (valid signatures, not Go's bytes): refused, unlike Go.
    let mut pretty = files.clone();
    let t: Value = serde_json::from_slice(&files["targets"]).unwrap();
    pretty.insert("targets".into(), serde_json::to_vec_pretty(&t).unwrap());
    let (s, v) = publish(&app, gun, &pretty).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_UPDATE"),
        "{v}"
    );
    assert!(
        v["errors"][0]["detail"]["Error"]["Msg"]
            .as_str()
            .unwrap()
            .contains("canonical")
    );
    // Tampered targets signature.
    let signed = Signed::<Targets>::parse(files["targets"].clone()).unwrap();
    let mut sigs = signed.signatures().to_vec();
    sigs[0].sig.0[5] ^= 1;
    let mut tampered = files.clone();
    tampered.insert(
        "targets".into(),
        Signed::from_parts(signed.signed().clone(), sigs)
            .unwrap()
            .into_file_bytes(),
    );
    let (s, v) = publish(&app, gun, &tampered).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["detail"]["Name"], "ErrBadTargets");
    assert_eq!(
        v["errors"][0]["detail"]["Error"]["Msg"],
        "valid signatures did not meet threshold for targets"
    );
    // Nothing was stored by any of these.
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/root.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // The good upload works, and replaying it is a VERSION conflict.
    assert_eq!(publish(&app, gun, &files).await.0, StatusCode::OK);
    let (s, v) = publish(&app, gun, &files).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "VERSION"),
        "{v}"
    );
    // A root that skips a version.
    let (s, v) = publish(
        &app,
        gun,
        &BTreeMap::from([("root".to_owned(), files["root"].clone())]),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_stops_serving() {
    let config = Config {
        storage: notary_server::config::StorageSection {
            backend: notary_server::config::Backend::Memory,
            db_url: String::new(),
        },
        ..Config::embedded(std::path::Path::new("/nonexistent"))
    };
    let state = notary_server::daemon::build_state(config, Zeroizing::new("p".into()))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(notary_server::daemon::serve(
        state,
        listener,
        None,
        async move {
            let _ = rx.await;
        },
    ));
    // Serving: a raw HTTP/1.1 ping gets 200.
    let ping = || async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
    };
    assert!(ping().await.unwrap().starts_with("HTTP/1.1 200"));
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ping().await.is_none(), "still accepting after shutdown");
}

#[tokio::test]
async fn changefeed_parameters() {
    let app = app().await;
    let (s, b) = get(&app, "/v2/_trust/changefeed").await;
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "INVALID_PARAMETERS")
    );
    assert_eq!(
        v["errors"][0]["detail"],
        "invalid records parameter: strconv.ParseInt: parsing \"\": invalid syntax"
    );
    let (s, _) = get(&app, "/v2/_trust/changefeed?records=10&change_id=abc").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = get(&app, "/v2/_trust/changefeed?records=10").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_publishers_over_eight_guns() {
    let app = app().await;
    let mut handles = Vec::new();
    let successes = Arc::new(std::sync::Mutex::new(BTreeMap::<String, usize>::new()));
    for g in 0..8 {
        let gun = format!("example.com/race/r{g}");
        let mut repo = new_repo(&app, &gun).await;
        assert_eq!(publish(&app, &gun, &repo.sign()).await.0, StatusCode::OK);
        let keys = Arc::new(repo.keys);
        for p in 0..8 {
            let (app, gun, keys, successes) =
                (app.clone(), gun.clone(), keys.clone(), successes.clone());
            handles.push(tokio::spawn(async move {
                for i in 0..3 {
                    // Each attempt starts from the verified current state; losers of a race
                    // get 400 VERSION and try again.
                    for _attempt in 0..50 {
                        let current = verified(&app, &gun).await;
                        let mut editor = RepoEditor::from_repository(&current);
                        editor
                            .add_target(
                                &RoleName::targets(),
                                &format!("p{p}-{i}"),
                                FileMeta::from_bytes(b"x"),
                            )
                            .unwrap();
                        let files = editor
                            .sign(&KeyRing::from_keys(&keys), time::OffsetDateTime::now_utc())
                            .unwrap();
                        let files: BTreeMap<String, Vec<u8>> = files
                            .files
                            .into_iter()
                            .map(|(r, b)| (r.to_string(), b))
                            .collect();
                        let (s, v) = publish(&app, &gun, &files).await;
                        match s {
                            StatusCode::OK => {
                                *successes.lock().unwrap().entry(gun.clone()).or_default() += 1;
                                break;
                            }
                            StatusCode::BAD_REQUEST => assert_eq!(error_code(&v), "VERSION", "{v}"),
                            other => panic!("unexpected {other}: {v}"),
                        }
                    }
                }
            }));
        }
        let _ = &mut repo.editor;
    }
    for h in handles {
        h.await.unwrap();
    }
    for g in 0..8 {
        let gun = format!("example.com/race/r{g}");
        let repo = verified(&app, &gun).await;
        let n = successes.lock().unwrap()[&gun];
        assert_eq!(n, 24, "every publisher eventually landed all three targets");
        assert_eq!(repo.list().len(), 24);
        assert_eq!(
            repo.role(&RoleName::targets()).unwrap().metadata.version as usize,
            1 + n
        );
    }
}

mod postgres {
    use super::*;

    async fn pg_app(url: &str) -> Router {
        let config = Config {
            storage: notary_server::config::StorageSection {
                backend: notary_server::config::Backend::Postgres,
                db_url: url.to_owned(),
            },
            max_update_bytes: 1 << 20,
            ..Config::embedded(std::path::Path::new("/nonexistent"))
        };
        let state =
            notary_server::daemon::build_state(config, Zeroizing::new("test-passphrase".into()))
                .await
                .unwrap();
        notary_server::daemon::app(state)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_on_one_postgres() {
        let pg = notary_tests::Postgres::start();
        let url = pg.database("replicas");
        let a = pg_app(&url).await;
        let b = pg_app(&url).await;
        let gun = "example.com/pg/app";
        // Keys created through replica A are held by B too (same database).
        let mut repo = new_repo(&a, gun).await;
        repo.editor
            .add_target(&RoleName::targets(), "one", FileMeta::from_bytes(b"1"))
            .unwrap();
        assert_eq!(publish(&a, gun, &repo.sign()).await.0, StatusCode::OK);
        assert_eq!(
            verified(&b, gun).await.lookup("one").unwrap().meta.length,
            1
        );
        // B publishes next; A sees it once it follows the changefeed.
        repo.editor
            .add_target(&RoleName::targets(), "two", FileMeta::from_bytes(b"22"))
            .unwrap();
        let files = repo.sign();
        let (s, v) = publish(&b, gun, &files).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let mut seen = false;
        for _ in 0..40 {
            if verified(&a, gun).await.lookup("two").is_some() {
                seen = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(seen, "replica A never saw replica B's update");
        // The same update replayed on A is a VERSION conflict, not a fork.
        let (s, v) = publish(&a, gun, &files).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "VERSION"),
            "{v}"
        );
        // Racing the same next version on both replicas: exactly one winner.
        repo.editor
            .add_target(&RoleName::targets(), "three", FileMeta::from_bytes(b"333"))
            .unwrap();
        let files = repo.sign();
        let (ra, rb) = tokio::join!(publish(&a, gun, &files), publish(&b, gun, &files));
        let statuses = [ra.0, rb.0];
        assert_eq!(
            statuses.iter().filter(|s| **s == StatusCode::OK).count(),
            1,
            "{ra:?} {rb:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::BAD_REQUEST)
        );
        let r = verified(&b, gun).await;
        assert!(r.lookup("three").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_reports_a_lost_database() {
        let pg = notary_tests::Postgres::start();
        let app = pg_app(&pg.database("health")).await;
        assert_eq!(
            get(&app, "/_notary_server/health").await,
            (StatusCode::OK, b"{}".to_vec())
        );
        drop(pg);
        let (s, b) = get(&app, "/_notary_server/health").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert!(v["DB operational"].is_string(), "{v}");
        // Metadata requests fail cleanly (500 with error JSON), the process stays up.
        let (s, b) = get(&app, "/v2/example.com/x/_trust/tuf/root.json").await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(error_code(&serde_json::from_slice(&b).unwrap()), "UNKNOWN");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_upload_stores_nothing_on_postgres() {
        let pg = notary_tests::Postgres::start();
        let app = pg_app(&pg.database("bad")).await;
        let gun = "example.com/pg/bad";
        let mut repo = new_repo(&app, gun).await;
        let mut files = repo.sign();
        let t: Value = serde_json::from_slice(&files["targets"]).unwrap();
        files.insert("targets".into(), serde_json::to_vec_pretty(&t).unwrap());
        let (s, v) = publish(&app, gun, &files).await;
        assert_eq!(
            (s, error_code(&v)),
            (StatusCode::BAD_REQUEST, "INVALID_UPDATE")
        );
        assert_eq!(
            get(&app, &format!("/v2/{gun}/_trust/tuf/root.json"))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (_, b) = get(&app, "/_notary_server/health").await;
        assert_eq!(b, b"{}");
    }
}

mod token_auth {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use notary_core::Signer as _;

    fn fixture(rel: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/go-notary-0.7")
            .join(rel)
    }

    async fn auth_app() -> Router {
        let mut config = Config {
            storage: notary_server::config::StorageSection {
                backend: notary_server::config::Backend::Memory,
                db_url: String::new(),
            },
            ..Config::embedded(std::path::Path::new("/nonexistent"))
        };
        config.auth = Some(notary_server::config::AuthSection {
            kind: Some(notary_server::config::AuthKind::Token),
            options: notary_server::config::AuthOptions {
                realm: "https://auth.example.test/token".into(),
                service: "notary-test".into(),
                issuer: "test-issuer".into(),
                rootcertbundle: Some(fixture("tls/token.crt")),
            },
        });
        let state = notary_server::daemon::build_state(config, Zeroizing::new("p".into()))
            .await
            .unwrap();
        notary_server::daemon::app(state)
    }

    /// Mints an ES256 token as the Docker token service would (x5c = the bundle cert).
    fn token(claims: Value, key: &PrivateKey, cert_der: &[u8]) -> String {
        let header =
            serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert_der)]});
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        let (_, sig) = key.sign(format!("{h}.{p}").as_bytes()).unwrap();
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn issuer() -> (PrivateKey, Vec<u8>) {
        let key = notary_core::keyfile::KeyFile::decode(
            &std::fs::read(fixture("tls/token.key")).unwrap(),
            None,
        )
        .unwrap()
        .key;
        let der =
            notary_core::x509::parse_pem_bundle(&std::fs::read(fixture("tls/token.crt")).unwrap())
                .unwrap()
                .remove(0);
        (key, der)
    }

    fn claims(gun: &str, actions: &[&str], exp_offset: i64) -> Value {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        serde_json::json!({"iss": "test-issuer", "aud": "notary-test", "sub": "alice", "exp": now + exp_offset, "nbf": now - 5, "iat": now,
            "access": [{"type": "repository", "name": gun, "actions": actions}]})
    }

    async fn call_auth(
        app: &Router,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Body,
        ct: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(c) = ct {
            req = req.header("content-type", c);
        }
        let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let (s, h) = (resp.status(), resp.headers().clone());
        (
            s,
            h,
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
    }

    #[tokio::test]
    async fn challenges_match_go_byte_for_byte() {
        let app = auth_app().await;
        // fixture 23: ping without a token
        let (s, h, b) = call_auth(&app, Method::GET, "/v2/", None, Body::empty(), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h["www-authenticate"],
            "Bearer realm=\"https://auth.example.test/token\",service=\"notary-test\",scope=\"registry:catalog:*\""
        );
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\",\"detail\":[{\"Type\":\"registry\",\"Class\":\"\",\"Name\":\"catalog\",\"Action\":\"*\"}]}]}\n"
        );
        // fixture 28: a pull-only token on a push
        let (key, der) = issuer();
        let gun = "example.com/test/app";
        let pull = token(claims(gun, &["pull"], 300), &key, &der);
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let (s, h, b) = call_auth(
            &app,
            Method::POST,
            &format!("/v2/{gun}/_trust/tuf/"),
            Some(&pull),
            multipart(&[(Some("root"), b"{}")]),
            Some(&ct),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(
            h["www-authenticate"],
            "Bearer realm=\"https://auth.example.test/token\",service=\"notary-test\",scope=\"repository:example.com/test/app:push,pull\",error=\"insufficient_scope\""
        );
        assert_eq!(
            String::from_utf8(b).unwrap(),
            concat!(
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Class":"","Name":"example.com/test/app","Action":"push"},{"Type":"repository","Class":"","Name":"example.com/test/app","Action":"pull"}]}]}"#,
                "\n"
            )
        );
        // The pull token reads.
        let (s, _, _) = call_auth(
            &app,
            Method::GET,
            &format!("/v2/{gun}/_trust/tuf/root.json"),
            Some(&pull),
            Body::empty(),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        // Garbage, expired, wrong issuer, wrong audience, foreign signer: invalid_token.
        let (other_key, _) = (
            PrivateKey::generate(notary_core::Algorithm::EcdsaP256).unwrap(),
            (),
        );
        let mut wrong_iss = claims(gun, &["pull"], 300);
        wrong_iss["iss"] = "someone-else".into();
        let mut wrong_aud = claims(gun, &["pull"], 300);
        wrong_aud["aud"] = "other-service".into();
        for bad in [
            "garbage".to_owned(),
            token(claims(gun, &["pull"], -120), &key, &der),
            token(wrong_iss, &key, &der),
            token(wrong_aud, &key, &der),
            token(claims(gun, &["pull"], 300), &other_key, &der),
        ] {
            let (s, h, _) = call_auth(
                &app,
                Method::GET,
                &format!("/v2/{gun}/_trust/tuf/root.json"),
                Some(&bad),
                Body::empty(),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::UNAUTHORIZED);
            assert!(
                h["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .ends_with(",error=\"invalid_token\""),
                "{h:?}"
            );
        }
        // Health and metrics need no token.
        assert_eq!(
            call_auth(
                &app,
                Method::GET,
                "/_notary_server/health",
                None,
                Body::empty(),
                None
            )
            .await
            .0,
            StatusCode::OK
        );
        // DELETE needs `*`.
        let push = token(claims(gun, &["push", "pull"], 300), &key, &der);
        let (s, _, _) = call_auth(
            &app,
            Method::DELETE,
            &format!("/v2/{gun}/_trust/tuf/"),
            Some(&push),
            Body::empty(),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let star = token(claims(gun, &["*"], 300), &key, &der);
        let (s, _, _) = call_auth(
            &app,
            Method::DELETE,
            &format!("/v2/{gun}/_trust/tuf/"),
            Some(&star),
            Body::empty(),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        // A push,pull token gets the server key (GET .key needs push and pull).
        let (s, _, _) = call_auth(
            &app,
            Method::GET,
            &format!("/v2/{gun}/_trust/tuf/timestamp.key"),
            Some(&push),
            Body::empty(),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
}

/// Spec §5.6: an expired timestamp (and an expired server-managed snapshot) is
/// regenerated on GET, with a moved clock.
#[tokio::test]
async fn expired_timestamp_and_snapshot_are_regenerated_on_get() {
    let now = Arc::new(std::sync::Mutex::new(time::OffsetDateTime::now_utc()));
    let clock_now = now.clone();
    let clock: notary_server::service::Clock = Arc::new(move || *clock_now.lock().unwrap());
    let store = notary_server::storage::Store::memory().await.unwrap();
    let trust: Arc<dyn notary_server::trust::TrustService> =
        Arc::new(notary_server::trust::LocalTrust::new(
            store.clone(),
            Algorithm::EcdsaP256,
            Zeroizing::new("p".into()),
        ));
    let service = Arc::new(notary_server::service::Service::new(store, trust).with_clock(clock));
    let config = Config::embedded(std::path::Path::new("/nonexistent"));
    let app = notary_server::daemon::app(notary_server::daemon::AppState::new(
        service,
        Arc::new(config),
        None,
    ));
    let gun = "example.com/api/regen";
    let mut repo = new_repo(&app, gun).await;
    repo.editor
        .add_target(&RoleName::targets(), "v1", FileMeta::from_bytes(b"1"))
        .unwrap();
    assert_eq!(publish(&app, gun, &repo.sign()).await.0, StatusCode::OK);
    let version = |b: &[u8]| {
        serde_json::from_slice::<Value>(b).unwrap()["signed"]["version"]
            .as_u64()
            .unwrap()
    };
    let (_, ts1) = get(&app, &format!("/v2/{gun}/_trust/tuf/timestamp.json")).await;
    let (_, sn1) = get(&app, &format!("/v2/{gun}/_trust/tuf/snapshot.json")).await;
    assert_eq!((version(&ts1), version(&sn1)), (1, 1));

    // 15 days later the 14-day timestamp has expired: a new one is signed and stored.
    let later = *now.lock().unwrap() + time::Duration::days(15);
    *now.lock().unwrap() = later;
    let (s, ts2) = get(&app, &format!("/v2/{gun}/_trust/tuf/timestamp.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(version(&ts2), 2);
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/snapshot.json"))
            .await
            .1,
        sn1,
        "snapshot unchanged"
    );
    let mut remote = RouterRemote(app.clone(), gun.to_owned());
    let r = Updater::new(Gun::new(gun).unwrap(), later)
        .update(&mut remote)
        .await
        .unwrap();
    assert_eq!(r.timestamp().version, 2);
    let (_, b) = get(&app, &format!("/v2/{gun}/_trust/changefeed?records=10")).await;
    assert_eq!(serde_json::from_slice::<Value>(&b).unwrap()["count"], 2);

    // Past the 3-year snapshot expiry: the server-managed snapshot is re-signed too.
    *now.lock().unwrap() = later + time::Duration::days(3 * 365 + 1);
    let (s, sn3) = get(&app, &format!("/v2/{gun}/_trust/tuf/snapshot.json")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&sn3));
    assert_eq!(version(&sn3), 2);
    let (_, ts3) = get(&app, &format!("/v2/{gun}/_trust/tuf/timestamp.json")).await;
    assert_eq!(version(&ts3), 3);
    let ts3: Value = serde_json::from_slice(&ts3).unwrap();
    let want = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        notary_core::crypto::sha256(&sn3),
    );
    assert_eq!(
        ts3["signed"]["meta"]["snapshot"]["hashes"]["sha256"],
        want.as_str()
    );
}

/// Security review defect 8: the server signs a GUN's timestamp and snapshot only with
/// keys it created for that GUN and role. Before, a tenant could list another
/// repository's server-held timestamp (or snapshot) key in its own root and get the
/// server to sign its data with it.
#[tokio::test]
async fn server_signs_only_with_keys_created_for_that_gun_and_role() {
    let app = app().await;
    let victim = "example.com/tenant-a/app";
    let mut a = new_repo(&app, victim).await;
    assert_eq!(publish(&app, victim, &a.sign()).await.0, StatusCode::OK);
    let victim_ts = server_key(&app, victim, "timestamp").await;
    let victim_sn = server_key(&app, victim, "snapshot").await;

    let attacker = "example.com/tenant-b/app";
    for (what, sn, ts) in [
        (
            "timestamp",
            server_key(&app, attacker, "snapshot").await,
            victim_ts.clone(),
        ),
        (
            "snapshot",
            victim_sn.clone(),
            server_key(&app, attacker, "timestamp").await,
        ),
    ] {
        let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let editor = RepoEditor::create(
            Gun::new(attacker).unwrap(),
            &root,
            targets.public().clone(),
            sn,
            ts,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut b = Repo {
            keys: vec![root, targets],
            editor,
        };
        let files = b.sign();
        let (s, body) = publish(&app, attacker, &files).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(error_code(&body), "INVALID_UPDATE", "{what}: {body}");
        assert!(
            get(&app, &format!("/v2/{attacker}/_trust/tuf/timestamp.json"))
                .await
                .0
                == StatusCode::NOT_FOUND,
            "{what}: nothing stored for the attacker"
        );
    }
    // The victim's repository keeps working with its own keys.
    a.editor
        .add_target(&RoleName::targets(), "v2", FileMeta::from_bytes(b"2"))
        .unwrap();
    assert_eq!(publish(&app, victim, &a.sign()).await.0, StatusCode::OK);
    assert!(verified(&app, victim).await.lookup("v2").is_some());
}

async fn app_with_limits(max_role_bytes: usize, max_parts: usize) -> Router {
    let config = Config {
        storage: notary_server::config::StorageSection {
            backend: notary_server::config::Backend::Memory,
            db_url: String::new(),
        },
        max_update_bytes: 8 << 20,
        max_role_bytes,
        max_update_parts: max_parts,
        ..Config::embedded(std::path::Path::new("/nonexistent"))
    };
    let state = notary_server::daemon::build_state(config, Zeroizing::new("p".into()))
        .await
        .unwrap();
    notary_server::daemon::app(state)
}

/// Security review defect 7: each metadata file of an update is held to a per-role cap
/// while it streams in (413 before anything is parsed), and an update carries a
/// bounded number of parts.
#[tokio::test]
async fn oversize_role_file_and_too_many_parts_are_refused_before_parsing() {
    let app = app_with_limits(64 << 10, 5).await;
    let gun = "example.com/limits/app";
    // 100 KiB of JSON in one part: over the 64 KiB role cap, under the body limit.
    let big = format!("{{\"signed\":{{\"pad\":\"{}\"}}}}", "x".repeat(100 << 10));
    let (s, body) = post(&app, gun, &[(Some("targets.json"), big.as_bytes())]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "SIZE_INVALID");
    // Six parts where five are allowed.
    let small = b"{}";
    let names = [
        "root",
        "targets",
        "snapshot",
        "targets/a",
        "targets/b",
        "targets/c",
    ];
    let parts: Vec<(Option<&str>, &[u8])> =
        names.iter().map(|n| (Some(*n), small.as_slice())).collect();
    let (s, body) = post(&app, gun, &parts).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_UPDATE");
    assert!(
        body.to_string().contains("at most 5 metadata files"),
        "{body}"
    );
    // A normal repository still publishes under these limits.
    let mut repo = new_repo(&app, gun).await;
    assert_eq!(publish(&app, gun, &repo.sign()).await.0, StatusCode::OK);
}

/// A service on a private in-memory store with local keys, for mounting the API alone.
async fn memory_service() -> Arc<notary_server::service::Service> {
    let store = notary_server::storage::Store::memory().await.unwrap();
    let trust: Arc<dyn notary_server::trust::TrustService> =
        Arc::new(notary_server::trust::LocalTrust::new(
            store.clone(),
            Algorithm::EcdsaP256,
            Zeroizing::new("p".into()),
        ));
    Arc::new(notary_server::service::Service::new(store, trust))
}

/// `Service::trusted`: the GUN's trust data verified as a client would, served from the
/// cache until the GUN changes.
#[tokio::test]
async fn trusted_returns_verified_data_cached_until_the_next_update() {
    let service = memory_service().await;
    let app = notary_server::router(Arc::clone(&service), notary_server::ApiOptions::default());
    let gun = "example.com/trusted/app";
    let g = Gun::new(gun).unwrap();
    assert!(matches!(
        service.trusted(&g).await,
        Err(notary_server::service::ReadError::NotFound)
    ));
    let mut repo = new_repo(&app, gun).await;
    repo.editor
        .add_target(&RoleName::targets(), "v1", FileMeta::from_bytes(b"one"))
        .unwrap();
    assert_eq!(publish(&app, gun, &repo.sign()).await.0, StatusCode::OK);
    let first = service.trusted(&g).await.unwrap();
    assert_eq!(
        first.lookup("v1").unwrap().meta.sha256(),
        FileMeta::from_bytes(b"one").sha256()
    );
    assert!(Arc::ptr_eq(&first, &service.trusted(&g).await.unwrap()));
    repo.editor
        .add_target(&RoleName::targets(), "v2", FileMeta::from_bytes(b"two"))
        .unwrap();
    assert_eq!(publish(&app, gun, &repo.sign()).await.0, StatusCode::OK);
    let second = service.trusted(&g).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert!(second.lookup("v2").is_some());
    // The router answers only Notary paths: anything else is for whoever mounts it.
    assert!(notary_server::api::is_trust_path(&format!(
        "/v2/{gun}/_trust/tuf/root.json"
    )));
    assert!(!notary_server::api::is_trust_path(
        "/v2/library/alpine/manifests/latest"
    ));
}

/// Security review defect 4 (server side): a targets file naming the same delegation
/// twice is refused on upload, so no client ever has to walk it.
#[tokio::test]
async fn duplicated_delegation_names_are_refused_on_upload() {
    let app = app().await;
    let gun = "example.com/dup/app";
    let mut repo = new_repo(&app, gun).await;
    let files = repo.sign();
    let delegate = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let id = delegate.public().key_id();
    let mut signed: Value = serde_json::from_slice(&files["targets"]).unwrap();
    let entry = serde_json::json!({"name": "targets/a", "keyids": [id.as_str()], "threshold": 1, "paths": [""]});
    signed["signed"]["delegations"] = serde_json::json!({
        "keys": {id.as_str(): serde_json::to_value(delegate.public()).unwrap()},
        "roles": [entry.clone(), entry],
    });
    let targets: Targets = serde_json::from_value(signed["signed"].clone()).unwrap();
    let tkey = &repo.keys[1];
    let tampered = Signed::sign(
        targets,
        &[(tkey.public().key_id(), tkey as &dyn notary_core::Signer)],
    )
    .unwrap()
    .into_file_bytes();
    let parts = [
        (Some("root"), files["root"].as_slice()),
        (Some("targets"), tampered.as_slice()),
    ];
    let (s, body) = post(&app, gun, &parts).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_UPDATE", "{body}");
    assert!(body.to_string().contains("more than once"), "{body}");
}

/// Security review defect 5 (server side): a root whose signature list repeats one
/// key's entry 20 000 times (4 MB, under the role cap) is refused before any signature
/// is checked. Before, every entry was looked at (key IDs recomputed for each) and the
/// root accepted. `release-flood` figures are in the session notes.
#[tokio::test]
async fn root_signature_flood_upload_is_refused() {
    let app = app_with_limits(5 << 20, 100).await;
    let gun = "example.com/flood/app";
    let mut repo = new_repo(&app, gun).await;
    let files = repo.sign();
    let root = Signed::<notary_core::Root>::parse(files["root"].clone()).unwrap();
    let one = root.signatures().to_vec();
    let many: Vec<_> = one.iter().cycle().take(20_000).cloned().collect();
    let flood = Signed::from_parts(root.signed().clone(), many)
        .unwrap()
        .into_file_bytes();
    assert!(
        flood.len() > 2 << 20 && flood.len() < 5 << 20,
        "{}",
        flood.len()
    );
    let parts = [
        (Some("root"), flood.as_slice()),
        (Some("targets"), files["targets"].as_slice()),
    ];
    let started = std::time::Instant::now();
    let (s, body) = post(&app, gun, &parts).await;
    eprintln!(
        "flood of {} bytes answered in {:?}",
        flood.len(),
        started.elapsed()
    );
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_UPDATE", "{body}");
    assert!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/root.json"))
            .await
            .0
            == StatusCode::NOT_FOUND
    );
}

/// Security review defect 5: an update runs under a time limit; one that takes longer
/// is abandoned with nothing stored (503, the client may retry) instead of holding the
/// GUN's lock and a worker for as long as the attacker likes.
#[tokio::test]
async fn update_over_its_time_limit_is_abandoned_and_stores_nothing() {
    let service = memory_service().await;
    let mut opts = notary_server::ApiOptions::default();
    // Far shorter than any update can take: parsing alone runs on another thread.
    opts.limits.update_timeout = std::time::Duration::from_nanos(1);
    let app = notary_server::router(Arc::clone(&service), opts);
    let gun = "example.com/slow/app";
    let mut repo = new_repo(&app, gun).await;
    let (s, body) = publish(&app, gun, &repo.sign()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(error_code(&body), "UNAVAILABLE");
    assert_eq!(
        get(&app, &format!("/v2/{gun}/_trust/tuf/root.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
