//! Online garbage collection and the jobs API, with the registry in process (the
//! `/v2/` router driven with `oneshot`), a filesystem blob store in a temporary
//! directory, and SQLite (or a throwaway PostgreSQL for the replica tests).
//!
//! Grace periods are tested with an injected clock, never by sleeping; rows are aged
//! or rejuvenated with direct SQL where a test needs two ages at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{BTreeSet, HashSet};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use sha2::Digest as _;
use sqlx::Row as _;
use tower::ServiceExt as _;

use notary_registry::access::{Access, AllowAll, Identity, Need, Open};
use notary_registry::error::{Code, RegistryError};
use notary_registry::gc::{self, GcOptions, GcSettings, GcStats, Phase, Progress};
use notary_registry::jobs::{self, Runner, RunnerSettings, Status};
use notary_registry::meta::Db;
use notary_registry::storage::BlobStore;
use notary_registry::storage::fs::FsStore;
use notary_registry::{Options, Registry};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DAY: i64 = 86_400;

// ------------------------------------------------------------------------ harness

/// Denies `Need::Admin` unless the request carries `x-test-admin: yes`.
struct AdminHeader;

#[async_trait]
impl Access for AdminHeader {
    async fn check(&self, headers: &HeaderMap, needs: &[Need]) -> Result<Identity, RegistryError> {
        let admin = headers.get("x-test-admin").is_some_and(|v| v == "yes");
        if needs.contains(&Need::Admin) && !admin {
            return Err(RegistryError::new(Code::Denied, "administrators only"));
        }
        Ok(Identity {
            user: Some("tester".into()),
            admin,
        })
    }
}

/// Direct SQL on the registry's database (to age rows and to check invariants).
#[derive(Clone)]
enum Sql {
    Lite(sqlx::SqlitePool),
    Pg(sqlx::PgPool),
}

macro_rules! on {
    ($s:expr, $p:ident => $e:expr) => {
        match $s {
            Sql::Lite($p) => $e,
            Sql::Pg($p) => $e,
        }
    };
}

impl Sql {
    /// Runs `q` with `$1` = `n` and `$2` = `s`.
    async fn exec(&self, q: &str, n: i64, s: &str) -> u64 {
        on!(self, p => sqlx::query(q).bind(n).bind(s).execute(p).await.unwrap().rows_affected())
    }
    async fn count(&self, q: &str) -> i64 {
        on!(self, p => sqlx::query(q).fetch_one(p).await.unwrap().get::<i64, _>(0))
    }
    async fn strings(&self, q: &str) -> Vec<String> {
        on!(self, p => sqlx::query(q).fetch_all(p).await.unwrap().iter().map(|r| r.get::<String, _>(0)).collect())
    }
    async fn pairs(&self, q: &str) -> Vec<(String, String)> {
        on!(self, p => sqlx::query(q).fetch_all(p).await.unwrap().iter().map(|r| (r.get::<String, _>(0), r.get::<String, _>(1))).collect())
    }
    /// Moves a blob's row and links `secs` into the future (younger, as GC sees it).
    async fn shift_blob(&self, digest: &str, secs: i64) {
        self.exec(
            "UPDATE blobs SET created_at = created_at + $1 WHERE digest = $2",
            secs,
            digest,
        )
        .await;
        self.exec(
            "UPDATE repository_blobs SET created_at = created_at + $1 WHERE digest = $2",
            secs,
            digest,
        )
        .await;
    }
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: Db,
    store: Arc<FsStore>,
    _reg: Arc<Registry>,
    app: Router,
    sql: Sql,
}

impl Env {
    async fn sqlite(access: Arc<dyn Access>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let db = Db::open_sqlite(path.to_str().unwrap()).await.unwrap();
        let sql = Sql::Lite(
            sqlx::SqlitePool::connect_with(
                sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(10)),
            )
            .await
            .unwrap(),
        );
        Env::with(dir, db, sql, access)
    }

    async fn postgres(url: &str, access: Arc<dyn Access>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_postgres(url, 16).await.unwrap();
        let sql = Sql::Pg(sqlx::PgPool::connect(url).await.unwrap());
        Env::with(dir, db, sql, access)
    }

    fn with(dir: tempfile::TempDir, db: Db, sql: Sql, access: Arc<dyn Access>) -> Env {
        let root = dir.path().join("blobs");
        let store = Arc::new(FsStore::open(&root).unwrap());
        let reg = Arc::new(Registry::new(
            db.clone(),
            Arc::clone(&store) as Arc<dyn BlobStore>,
            access,
            Arc::new(AllowAll),
            Options::default(),
        ));
        let app = notary_registry::server::app(Arc::clone(&reg));
        Env {
            _dir: dir,
            root,
            db,
            store,
            _reg: reg,
            app,
            sql,
        }
    }

    async fn gc(&self, opts: &GcOptions) -> gc::GcReport {
        gc::run(&self.db, self.store.as_ref(), opts, &mut gc::LogProgress)
            .await
            .unwrap()
    }

    fn path_of(&self, location: &str) -> PathBuf {
        self.root.join(location)
    }
}

/// GC options with a clock `offset` seconds ahead of the system clock.
fn opts_at(offset: i64, grace: i64) -> GcOptions {
    GcOptions {
        grace: Duration::from_secs(grace as u64),
        clock: Arc::new(move || notary_registry::meta::now() + offset),
        ..GcOptions::default()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

const ADMIN: (&str, &str) = ("x-test-admin", "yes");

async fn admin_json(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (s, _, b) = call(
        app,
        method,
        uri,
        &[ADMIN, ("content-type", "application/json")],
        body,
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Deterministic pseudo-random bytes.
fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(&sha2::Sha256::digest(format!("{seed}/{i}").as_bytes()));
        i += 1;
    }
    out.truncate(len);
    out
}

/// sha256 digest, computed here (not by the registry).
fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// A unique label for generated content.
fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Monolithic upload; returns the status and the digest.
async fn push_blob(app: &Router, repo: &str, data: &[u8]) -> (StatusCode, String) {
    let d = digest(data);
    let (s, _, _) = call(
        app,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[("content-type", "application/octet-stream")],
        data.to_vec(),
    )
    .await;
    (s, d)
}

async fn push_blob_ok(app: &Router, repo: &str, data: &[u8]) -> String {
    let (s, d) = push_blob(app, repo, data).await;
    assert_eq!(s, StatusCode::CREATED, "blob upload");
    d
}

fn image(config: &[u8], layers: &[&[u8]], subject: Option<(&str, usize)>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(l), "size": l.len()})).collect::<Vec<_>>(),
    });
    if let Some((d, n)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n});
        m["artifactType"] = json!("application/vnd.example.signature");
    }
    serde_json::to_vec(&m).unwrap()
}

fn index(children: &[(&str, usize)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, n)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": n})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

async fn put_manifest(
    app: &Router,
    repo: &str,
    reference: &str,
    body: &[u8],
    media_type: &str,
) -> (StatusCode, Vec<u8>) {
    let (s, _, b) = call(
        app,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("content-type", media_type)],
        body.to_vec(),
    )
    .await;
    (s, b)
}

async fn put_manifest_ok(
    app: &Router,
    repo: &str,
    reference: &str,
    body: &[u8],
    media_type: &str,
) -> String {
    let (s, b) = put_manifest(app, repo, reference, body, media_type).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "manifest PUT: {}",
        String::from_utf8_lossy(&b)
    );
    digest(body)
}

/// Pushes an image (config + layers) tagged `tag`; returns (manifest digest, size, blob digests).
async fn push_image(
    app: &Router,
    repo: &str,
    tag: Option<&str>,
    seed: &str,
) -> (String, usize, Vec<String>) {
    let config = bytes(&format!("{seed}/config"), 64);
    let layer = bytes(&format!("{seed}/layer"), 3000);
    let c = push_blob_ok(app, repo, &config).await;
    let l = push_blob_ok(app, repo, &layer).await;
    let m = image(&config, &[&layer], None);
    let d = digest(&m);
    put_manifest_ok(app, repo, tag.unwrap_or(&d), &m, OCI_MANIFEST).await;
    (d, m.len(), vec![c, l])
}

async fn get_blob(app: &Router, repo: &str, d: &str) -> (StatusCode, Vec<u8>) {
    let (s, _, b) = call(
        app,
        Method::GET,
        &format!("/v2/{repo}/blobs/{d}"),
        &[],
        Vec::new(),
    )
    .await;
    (s, b)
}

/// Every manifest still stored is served, and every blob it references is served with
/// bytes that hash to its digest. Returns how many blobs were checked.
async fn verify_all_manifests(env: &Env) -> usize {
    let manifests = env
        .sql
        .pairs("SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id")
        .await;
    let mut checked = 0;
    for (repo, d) in manifests {
        let (s, _, body) = call(
            &env.app,
            Method::GET,
            &format!("/v2/{repo}/manifests/{d}"),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "manifest {repo}@{d}");
        let m: Value = serde_json::from_slice(&body).unwrap();
        let mut refs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
        for l in m["layers"].as_array().unwrap() {
            refs.push(l["digest"].as_str().unwrap().to_owned());
        }
        for b in refs {
            let (s, data) = get_blob(&env.app, &repo, &b).await;
            assert_eq!(s, StatusCode::OK, "blob {b} of {repo}@{d} is gone");
            assert_eq!(
                digest(&data),
                b,
                "blob {b} of {repo}@{d} has the wrong bytes"
            );
            checked += 1;
        }
    }
    checked
}

/// Files under the store's `blobs/` directory, as object keys.
fn stored_objects(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeSet<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root.join("blobs"), root, &mut out);
    out
}

/// After a complete GC with no grace: nothing queued, every blob row referenced, the
/// objects on disk exactly the blob rows' locations, no upload left.
async fn assert_no_leaks(env: &Env) {
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM pending_deletes").await,
        0
    );
    assert_eq!(
        env.sql
            .count("SELECT COUNT(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM manifest_references r WHERE r.child_digest = b.digest)")
            .await,
        0,
        "unreferenced blob rows left"
    );
    let rows: BTreeSet<String> = env
        .sql
        .strings("SELECT location FROM blobs")
        .await
        .into_iter()
        .collect();
    assert_eq!(
        stored_objects(&env.root),
        rows,
        "objects on disk differ from blob rows"
    );
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM uploads").await, 0);
    let uploads: Vec<_> = std::fs::read_dir(env.root.join("uploads"))
        .unwrap()
        .collect();
    assert!(uploads.is_empty(), "upload files left: {}", uploads.len());
}

// ------------------------------------------------------------------------ (a) basics

#[tokio::test]
async fn unreferenced_blob_past_grace_is_collected_referenced_and_fresh_ones_stay() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let app = &env.app;
    let (_, _, referenced) = push_image(app, "lib/app", Some("v1"), "a-ref").await;
    let old = push_blob_ok(app, "lib/app", &bytes("a-old", 5000)).await;
    let fresh = push_blob_ok(app, "lib/app", &bytes("a-fresh", 700)).await;
    // An old blob mounted into another repository a moment ago: its link is fresh.
    let remounted = push_blob_ok(app, "lib/app", &bytes("a-remounted", 900)).await;
    let (s, _, _) = call(
        app,
        Method::POST,
        &format!("/v2/lib/other/blobs/uploads/?mount={remounted}&from=lib/app"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let old_location = env.db.blob(&old).await.unwrap().unwrap().location;
    assert!(env.path_of(&old_location).exists());

    // Now, as far as GC knows, is two days on: with one day of grace everything pushed
    // above is old, except what we make young again.
    env.sql.shift_blob(&fresh, 2 * DAY).await;
    env.sql
        .exec("UPDATE repository_blobs SET created_at = created_at + $1 WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = 'lib/other')", 2 * DAY, &remounted)
        .await;

    // Within the grace period nothing goes.
    let r = env.gc(&opts_at(0, DAY)).await;
    assert!(r.finished);
    assert_eq!(r.stats.blobs_deleted, 0);
    assert_eq!(r.stats.blobs_examined, 5);

    let r = env.gc(&opts_at(2 * DAY, DAY)).await;
    assert!(r.finished);
    assert_eq!(r.stats.phase, Phase::Done);
    assert_eq!(r.stats.blobs_deleted, 1, "{:?}", r.stats);
    assert_eq!(r.stats.bytes_freed, 5000);
    assert_eq!(r.stats.objects_deleted, 1);
    assert!(env.db.blob(&old).await.unwrap().is_none(), "row gone");
    assert!(!env.path_of(&old_location).exists(), "object gone");
    assert_eq!(
        get_blob(app, "lib/app", &old).await.0,
        StatusCode::NOT_FOUND
    );
    for d in referenced.iter().chain([&fresh, &remounted]) {
        let (s, data) = get_blob(app, "lib/app", d).await;
        assert_eq!(s, StatusCode::OK, "{d} must stay");
        assert_eq!(&digest(&data), d);
    }
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM pending_deletes").await,
        0
    );

    // Deleting the image makes its blobs garbage too.
    let (s, _, _) = call(
        app,
        Method::DELETE,
        "/v2/lib/app/manifests/v1",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let r = env.gc(&opts_at(2 * DAY, DAY)).await;
    assert_eq!(
        r.stats.blobs_deleted, 0,
        "untagged manifests are kept by default"
    );
    let (_, _, m) = call(app, Method::GET, "/v2/lib/app/tags/list", &[], Vec::new()).await;
    assert!(!String::from_utf8_lossy(&m).contains("v1"));
    let digest_of_manifest = env.sql.strings("SELECT digest FROM manifests").await;
    for d in digest_of_manifest {
        call(
            app,
            Method::DELETE,
            &format!("/v2/lib/app/manifests/{d}"),
            &[],
            Vec::new(),
        )
        .await;
    }
    let r = env.gc(&opts_at(2 * DAY, DAY)).await;
    assert_eq!(r.stats.blobs_deleted, 2, "{:?}", r.stats);
    for d in &referenced {
        assert_eq!(get_blob(app, "lib/app", d).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn dry_run_counts_without_deleting() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let d = push_blob_ok(&env.app, "dry/run", &bytes("dry", 1234)).await;
    let mut opts = opts_at(2 * DAY, DAY);
    opts.dry_run = true;
    let r = env.gc(&opts).await;
    assert!(r.finished && r.stats.dry_run);
    assert_eq!((r.stats.blobs_deleted, r.stats.bytes_freed), (1, 1234));
    assert_eq!(get_blob(&env.app, "dry/run", &d).await.0, StatusCode::OK);
    assert!(env.db.blob(&d).await.unwrap().is_some());
}

#[tokio::test]
async fn untagged_manifests_are_deleted_only_when_enabled_and_unreferenced() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let app = &env.app;
    let repo = "lib/untagged";
    let (tagged, tagged_len, tagged_blobs) =
        push_image(app, repo, Some("latest"), "u-tagged").await;
    let (loose, loose_len, loose_blobs) = push_image(app, repo, None, "u-loose").await;
    let (child, child_len, _) = push_image(app, repo, None, "u-child").await;
    let idx = index(&[(&child, child_len)]);
    let idx_digest = put_manifest_ok(app, repo, &digest(&idx), &idx, OCI_INDEX).await;
    // A signature of the tagged image (kept: its subject is alive) and one of the loose
    // image (goes once its subject is gone).
    let sig_cfg = bytes("u-sig-config", 2);
    push_blob_ok(app, repo, &sig_cfg).await;
    let sig_kept = image(&sig_cfg, &[], Some((&tagged, tagged_len)));
    let sig_kept = put_manifest_ok(app, repo, &digest(&sig_kept), &sig_kept, OCI_MANIFEST).await;
    let sig_orphan = image(&sig_cfg, &[], Some((&loose, loose_len)));
    let sig_orphan =
        put_manifest_ok(app, repo, &digest(&sig_orphan), &sig_orphan, OCI_MANIFEST).await;

    // Off by default.
    let r = env.gc(&opts_at(30 * DAY, DAY)).await;
    assert_eq!(r.stats.manifests_deleted, 0);
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM manifests").await, 6);

    // On, but the manifests are younger than the age limit.
    let mut opts = opts_at(DAY, DAY);
    opts.untagged_after = Some(Duration::from_secs(2 * DAY as u64));
    assert_eq!(env.gc(&opts).await.stats.manifests_deleted, 0);

    let mut opts = opts_at(3 * DAY, DAY);
    opts.untagged_after = Some(Duration::from_secs(2 * DAY as u64));
    let r = env.gc(&opts).await;
    assert!(r.finished);
    // The loose image, the index, then (next pass) the index's child and the orphaned
    // signature.
    assert_eq!(r.stats.manifests_deleted, 4, "{:?}", r.stats);
    let left: HashSet<String> = env
        .sql
        .strings("SELECT digest FROM manifests")
        .await
        .into_iter()
        .collect();
    assert_eq!(left, HashSet::from([tagged.clone(), sig_kept]));
    for gone in [&loose, &child, &idx_digest, &sig_orphan] {
        assert!(!left.contains(gone));
    }
    // Their blobs went in the same run; the tagged image's stayed.
    for d in &loose_blobs {
        assert_eq!(get_blob(app, repo, d).await.0, StatusCode::NOT_FOUND);
    }
    for d in &tagged_blobs {
        assert_eq!(get_blob(app, repo, d).await.0, StatusCode::OK);
    }
    assert_eq!(
        get_blob(app, repo, &digest(&sig_cfg)).await.0,
        StatusCode::OK
    );
    verify_all_manifests(&env).await;
}

#[tokio::test]
async fn upload_sessions_expire_after_the_configured_idle_time() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let app = &env.app;
    let (s, h, _) = call(
        app,
        Method::POST,
        "/v2/up/load/blobs/uploads/",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let location = h["location"].to_str().unwrap().to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let (s, _, _) = call(
        app,
        Method::PATCH,
        &location,
        &[("content-type", "application/octet-stream")],
        bytes("chunk", 4096),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let file = env.root.join("uploads").join(&id);
    assert!(file.exists());

    // Six days idle: kept (the default expiry is seven).
    let r = env.gc(&opts_at(6 * DAY, DAY)).await;
    assert_eq!(r.stats.uploads_expired, 0);
    assert_eq!(
        call(app, Method::GET, &location, &[], Vec::new()).await.0,
        StatusCode::NO_CONTENT
    );

    let r = env.gc(&opts_at(8 * DAY, DAY)).await;
    assert!(r.finished);
    assert_eq!(r.stats.uploads_expired, 1);
    assert!(!file.exists(), "upload data discarded");
    assert!(
        env.db.upload(&id).await.unwrap().is_none(),
        "session row gone"
    );
    assert_eq!(
        call(app, Method::GET, &location, &[], Vec::new()).await.0,
        StatusCode::NOT_FOUND
    );
}

// ------------------------------------------------------------------------ (c) interruption

/// Stops the run after `after` batch reports that deleted something.
struct StopAfter {
    after: usize,
    seen: usize,
    last: GcStats,
}

#[async_trait]
impl Progress for StopAfter {
    async fn report(
        &mut self,
        stats: &GcStats,
        _message: &str,
        milestone: bool,
    ) -> ControlFlow<()> {
        self.last = stats.clone();
        if !milestone && stats.blobs_deleted > 0 {
            self.seen += 1;
            if self.seen >= self.after {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    }
}

#[tokio::test]
async fn interrupted_run_is_resumed_by_the_next_one() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let mut digests = Vec::new();
    for i in 0..25 {
        digests
            .push(push_blob_ok(&env.app, "stop/here", &bytes(&format!("stop-{i}"), 100 + i)).await);
    }
    let mut locations = Vec::new();
    for d in &digests {
        locations.push(env.db.blob(d).await.unwrap().unwrap().location);
    }
    let mut opts = opts_at(2 * DAY, DAY);
    opts.batch = 10;

    // "Killed" right after the first batch committed: 10 rows gone and queued, their
    // objects not yet deleted.
    let mut stop = StopAfter {
        after: 1,
        seen: 0,
        last: GcStats::default(),
    };
    let r = gc::run(&env.db, env.store.as_ref(), &opts, &mut stop)
        .await
        .unwrap();
    assert!(!r.finished);
    assert_eq!(r.stats.phase, Phase::Sweep);
    assert_eq!(r.stats.blobs_deleted, 10);
    assert_eq!(r.stats.objects_deleted, 0);
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM blobs").await, 15);
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM pending_deletes").await,
        10
    );
    let on_disk = locations.iter().filter(|l| env.path_of(l).exists()).count();
    assert_eq!(on_disk, 25, "objects are only deleted after the rows");
    // The collected blobs are already unavailable through the API.
    let gone = {
        let mut n = 0;
        for d in &digests {
            if get_blob(&env.app, "stop/here", d).await.0 == StatusCode::NOT_FOUND {
                n += 1;
            }
        }
        n
    };
    assert_eq!(gone, 10);

    // A crash between deleting an object and forgetting it: the next run must not
    // trip over the missing object.
    let queued = env.db.pending_deletes(1).await.unwrap();
    std::fs::remove_file(env.path_of(&queued[0])).unwrap();

    let r = env.gc(&opts).await;
    assert!(r.finished);
    assert_eq!(r.stats.blobs_deleted, 15);
    assert_eq!(
        r.stats.objects_deleted, 25,
        "the queue of the interrupted run is processed"
    );
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM blobs").await, 0);
    assert!(locations.iter().all(|l| !env.path_of(l).exists()));
    assert_no_leaks(&env).await;
}

#[tokio::test]
async fn gc_never_deletes_an_object_a_blob_row_still_serves() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let (_, _, blobs) = push_image(&env.app, "keep/me", Some("v1"), "live").await;
    let location = env.db.blob(&blobs[1]).await.unwrap().unwrap().location;
    // A bug elsewhere queues a live object.
    env.db.queue_delete(&location).await.unwrap();
    let r = env.gc(&opts_at(2 * DAY, DAY)).await;
    assert!(r.finished);
    assert_eq!(r.stats.objects_deleted, 0);
    assert!(env.path_of(&location).exists());
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM pending_deletes").await,
        0,
        "dequeued"
    );
    verify_all_manifests(&env).await;
}

// ------------------------------------------------------------------------ (b) churn

#[derive(Default)]
struct ChurnStats {
    manifests_pushed: u64,
    manifest_retries: u64,
    upload_retries: u64,
    deletes: u64,
    gc_runs: u64,
    blobs_collected: u64,
}

/// One pusher: pushes images (one shared layer from a small pool, so pushes dedupe
/// against blobs GC is about to collect), untags some, deletes others. Returns the
/// images it expects to still be tagged.
async fn pusher(
    app: Router,
    who: usize,
    iterations: usize,
    stats: Arc<std::sync::Mutex<ChurnStats>>,
) -> Vec<(String, String, String)> {
    let repo = format!("churn/r{}", who % 2);
    let mut alive: Vec<(String, String, String)> = Vec::new();
    let mut untagged: Vec<String> = Vec::new();
    for it in 0..iterations {
        let seed = unique(&format!("p{who}-{it}"));
        let config = bytes(&format!("{seed}/c"), 80);
        let layer = bytes(&format!("{seed}/l"), 2048);
        let shared = bytes(&format!("shared-{}", (who + it) % 4), 1500);
        let m = image(&config, &[&layer, &shared], None);
        let tag = format!("p{who}-{it}");
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 500, "push of {tag} never succeeded");
            for b in [&config, &layer, &shared] {
                loop {
                    let (s, _) = push_blob(&app, &repo, b).await;
                    if s == StatusCode::CREATED {
                        break;
                    }
                    // PostgreSQL: an upload of a digest whose row the sweep is deleting
                    // fails cleanly (commit_blob's link insert hits the foreign key once
                    // the sweep commits: 500); the client uploads again.
                    assert!(s.is_server_error(), "upload: {s}");
                    stats.lock().unwrap().upload_retries += 1;
                }
            }
            let (s, body) = put_manifest(&app, &repo, &tag, &m, OCI_MANIFEST).await;
            if s == StatusCode::CREATED {
                break;
            }
            // The only acceptable failure: GC took an unreferenced blob between our
            // upload and the manifest (grace 0); the client pushes it again.
            assert_eq!(
                s,
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(&body)
            );
            assert!(String::from_utf8_lossy(&body).contains("MANIFEST_BLOB_UNKNOWN"));
            stats.lock().unwrap().manifest_retries += 1;
        }
        stats.lock().unwrap().manifests_pushed += 1;
        alive.push((repo.clone(), tag, digest(&m)));
        // Untag an older image (its manifest stays, so do its blobs).
        if it % 3 == 2 && alive.len() > 2 {
            let (r, t, d) = alive.remove(0);
            let (s, _, _) = call(
                &app,
                Method::DELETE,
                &format!("/v2/{r}/manifests/{t}"),
                &[],
                Vec::new(),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED);
            untagged.push(d);
            stats.lock().unwrap().deletes += 1;
        }
        // Delete an untagged manifest (its unique blobs become garbage).
        if it % 4 == 3 && !untagged.is_empty() {
            let d = untagged.remove(0);
            let (s, _, _) = call(
                &app,
                Method::DELETE,
                &format!("/v2/{repo}/manifests/{d}"),
                &[],
                Vec::new(),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED);
            stats.lock().unwrap().deletes += 1;
        }
    }
    alive
}

/// Pushers and deleters on `env` while GC runs over and over (through `gc_db`, which
/// may be another replica's pool) with no grace period at all.
async fn churn(env: &Env, gc_db: Db, pushers: usize, iterations: usize) -> ChurnStats {
    let stats = Arc::new(std::sync::Mutex::new(ChurnStats::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let gc_task = {
        let (store, stop, stats) = (
            Arc::clone(&env.store),
            Arc::clone(&stop),
            Arc::clone(&stats),
        );
        tokio::spawn(async move {
            let mut run = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Grace 0 with the real clock (everything older than this second goes),
                // and every third run with the clock ahead (everything unreferenced goes,
                // including what was uploaded a moment ago for a manifest not yet
                // pushed), with short random gaps so pushers also get through.
                run += 1;
                let mut opts = opts_at(if run % 3 == 0 { 10 } else { 0 }, 0);
                opts.batch = 7;
                let r = gc::run(&gc_db, store.as_ref(), &opts, &mut gc::LogProgress)
                    .await
                    .unwrap();
                assert!(r.finished);
                {
                    let mut s = stats.lock().unwrap();
                    s.gc_runs += 1;
                    s.blobs_collected += r.stats.blobs_deleted;
                }
                tokio::time::sleep(Duration::from_millis(run * 7 % 11)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for who in 0..pushers {
        tasks.push(tokio::spawn(pusher(
            env.app.clone(),
            who,
            iterations,
            Arc::clone(&stats),
        )));
    }
    let mut alive = Vec::new();
    for t in tasks {
        alive.extend(t.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    gc_task.await.unwrap();

    // Nothing referenced was lost: every tag still there, every stored manifest's blobs
    // readable with the right bytes.
    for (repo, tag, d) in &alive {
        let (s, h, _) = call(
            &env.app,
            Method::GET,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[],
            Vec::new(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{repo}:{tag}");
        assert_eq!(h["docker-content-digest"].to_str().unwrap(), d);
    }
    let checked = verify_all_manifests(env).await;
    assert!(checked >= alive.len() * 3);

    // One more complete run (uploads too): no leaked rows, objects or sessions.
    let mut opts = opts_at(10, 0);
    opts.upload_expiry = Duration::ZERO;
    let r = env.gc(&opts).await;
    assert!(r.finished);
    verify_all_manifests(env).await;
    assert_no_leaks(env).await;
    let mut s = stats.lock().unwrap();
    s.blobs_collected += r.stats.blobs_deleted;
    std::mem::take(&mut *s)
}

fn print_churn(what: &str, s: &ChurnStats) {
    eprintln!(
        "{what}: {} manifests pushed, {} deletes, {} GC runs collected {} blobs; retries: {} manifest PUTs (MANIFEST_BLOB_UNKNOWN), {} uploads",
        s.manifests_pushed,
        s.deletes,
        s.gc_runs,
        s.blobs_collected,
        s.manifest_retries,
        s.upload_retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_concurrent_pushes_and_deletes_sqlite() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let s = churn(&env, env.db.clone(), 4, 40).await;
    assert!(s.gc_runs > 1);
    assert!(s.blobs_collected > 0);
    print_churn("sqlite churn", &s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_concurrent_pushes_and_deletes_postgres_two_replicas() {
    let pg = tokio::task::spawn_blocking(notary_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.database("gc_churn");
    let env = Env::postgres(&url, Arc::new(Open)).await;
    // GC runs on a second pool: another replica sharing the database and storage.
    let replica = Db::open_postgres(&url, 8).await.unwrap();
    let s = churn(&env, replica, 6, 40).await;
    assert!(s.gc_runs > 1);
    assert!(s.blobs_collected > 0);
    print_churn("postgres churn", &s);
}

/// PostgreSQL, two races forced by holding a transaction open while the sweep runs:
/// an upload of an existing digest refreshes its link without locking the blob row (if
/// the sweep has already judged the blob garbage, its link delete waits, re-checks the
/// age, keeps the fresh link, and the blob stays); and a manifest push holding `FOR
/// SHARE` on its blob (the sweep skips the locked row).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_refreshed_and_manifests_pushed_during_the_sweep_keep_their_blobs_postgres() {
    let pg = tokio::task::spawn_blocking(notary_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.database("gc_refresh");
    let env = Env::postgres(&url, Arc::new(Open)).await;
    let d = push_blob_ok(&env.app, "refresh/repo", &bytes("refresh", 777)).await;
    env.sql.shift_blob(&d, -2 * DAY).await;
    let Sql::Pg(pool) = &env.sql else {
        unreachable!()
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("UPDATE repository_blobs SET created_at = $1 WHERE digest = $2")
        .bind(notary_registry::meta::now())
        .bind(&d)
        .execute(&mut *tx)
        .await
        .unwrap();
    let gc = {
        let (db, store) = (env.db.clone(), Arc::clone(&env.store));
        tokio::spawn(async move {
            gc::run(&db, store.as_ref(), &opts_at(0, DAY), &mut gc::LogProgress)
                .await
                .unwrap()
        })
    };
    // Give the sweep time to reach the link delete (if it gets there later, it simply
    // sees the fresh link in its check: the outcome must be the same).
    tokio::time::sleep(Duration::from_millis(500)).await;
    tx.commit().await.unwrap();
    let r = gc.await.unwrap();
    assert!(r.finished);
    assert_eq!(r.stats.blobs_deleted, 0, "{:?}", r.stats);
    let (s, data) = get_blob(&env.app, "refresh/repo", &d).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(digest(&data), d);

    // A manifest push in flight (what put_manifest does: FOR SHARE on the blob row,
    // then the manifest and its references) while the sweep runs: the blob stays.
    let config = bytes("inflight-config", 40);
    let c = push_blob_ok(&env.app, "refresh/repo", &config).await;
    env.sql.shift_blob(&c, -2 * DAY).await;
    let m = image(&config, &[], None);
    let md = digest(&m);
    let mut tx = pool.begin().await.unwrap();
    let repo_id: i64 = sqlx::query("SELECT id FROM repositories WHERE name = 'refresh/repo'")
        .fetch_one(&mut *tx)
        .await
        .unwrap()
        .get(0);
    let locked = sqlx::query("SELECT 1 FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE rb.repository_id = $1 AND rb.digest = $2 FOR SHARE OF b")
        .bind(repo_id).bind(&c).fetch_optional(&mut *tx).await.unwrap();
    assert!(locked.is_some());
    let gc = {
        let (db, store) = (env.db.clone(), Arc::clone(&env.store));
        tokio::spawn(async move {
            gc::run(&db, store.as_ref(), &opts_at(0, DAY), &mut gc::LogProgress)
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("INSERT INTO manifests (repository_id, digest, media_type, size, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(repo_id).bind(&md).bind(OCI_MANIFEST).bind(m.len() as i64).bind(&m).bind(notary_registry::meta::now())
        .execute(&mut *tx).await.unwrap();
    sqlx::query("INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, kind) VALUES ($1, $2, $3, 'blob')")
        .bind(repo_id).bind(&md).bind(&c).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    let r = gc.await.unwrap();
    assert!(r.finished);
    assert_eq!(r.stats.blobs_deleted, 0, "{:?}", r.stats);
    // And a run after the push sees the reference.
    assert_eq!(env.gc(&opts_at(0, DAY)).await.stats.blobs_deleted, 0);
    verify_all_manifests(&env).await;
}

// ------------------------------------------------------------------------ (d) jobs

fn fast_runner(env: &Env, gc: GcSettings, worker: &str) -> Runner {
    Runner::new(
        env.db.clone(),
        Arc::clone(&env.store) as Arc<dyn BlobStore>,
        gc,
        RunnerSettings {
            worker_id: worker.to_owned(),
            poll: Duration::from_millis(50),
            heartbeat: Duration::from_millis(50),
            ..RunnerSettings::default()
        },
    )
}

async fn wait_for_status(app: &Router, id: &str, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, job) = admin_json(app, Method::GET, &format!("/api/v0/jobs/{id}"), None).await;
        assert_eq!(s, StatusCode::OK);
        if want.contains(&job["status"].as_str().unwrap()) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job never reached {want:?}: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_api_triggers_lists_reports_and_cancels_gc() {
    let env = Env::sqlite(Arc::new(AdminHeader)).await;
    let app = &env.app;
    for i in 0..3 {
        push_blob_ok(
            app,
            "jobs/repo",
            &bytes(&format!("job-garbage-{i}"), 10_000),
        )
        .await;
    }
    push_image(app, "jobs/repo", Some("v1"), "job-kept").await;

    // A job cancelled before any runner claims it never runs.
    let (s, waiting) = admin_json(
        app,
        Method::POST,
        "/api/v0/jobs",
        Some(json!({"action": "gc"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(waiting["status"], "waiting");
    let waiting_id = waiting["id"].as_str().unwrap().to_owned();
    let (s, j) = admin_json(
        app,
        Method::DELETE,
        &format!("/api/v0/jobs/{waiting_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(j["status"], "cancel");
    let (s, j) = admin_json(
        app,
        Method::DELETE,
        &format!("/api/v0/jobs/{waiting_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{j}");

    // A runner whose clock is two days ahead (so the blobs above are past the grace).
    let clock: gc::Clock = Arc::new(|| notary_registry::meta::now() + 2 * DAY);
    let runner = fast_runner(
        &env,
        GcSettings {
            pause_ms: 0,
            ..GcSettings::default()
        },
        "worker-a",
    )
    .with_clock(Arc::clone(&clock))
    .spawn();

    let (s, job) = admin_json(
        app,
        Method::POST,
        "/api/v0/jobs",
        Some(json!({"action": "gc", "parameters": {"grace_secs": 3600}})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(job["action"], "gc");
    assert_eq!(job["parameters"]["grace_secs"], 3600);
    let job = wait_for_status(app, &id, &["done", "error"]).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["workerID"], "worker-a");
    assert_eq!(job["progress"]["blobs_deleted"], 3, "{job}");
    assert_eq!(job["progress"]["bytes_freed"], 30_000);
    assert_eq!(job["progress"]["objects_deleted"], 3);
    assert_eq!(job["progress"]["phase"], "done");
    assert!(job["scheduledAt"].as_str().unwrap().ends_with('Z'));

    let (s, logs) = admin_json(app, Method::GET, &format!("/api/v0/jobs/{id}/logs"), None).await;
    assert_eq!(s, StatusCode::OK);
    let lines: Vec<String> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("started on worker worker-a")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("sweep:") && l.contains("deleted 3")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "ended: done"), "{lines:?}");
    let first_seq = logs["logs"][0]["seq"].as_i64().unwrap();
    let (_, later) = admin_json(
        app,
        Method::GET,
        &format!("/api/v0/jobs/{id}/logs?after={first_seq}"),
        None,
    )
    .await;
    assert_eq!(later["logs"].as_array().unwrap().len(), lines.len() - 1);

    let (s, list) = admin_json(app, Method::GET, "/api/v0/jobs?action=gc", None).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()) && ids.contains(&waiting_id.as_str()));
    let (_, running) = admin_json(app, Method::GET, "/api/v0/jobs?running=true", None).await;
    assert!(running["jobs"].as_array().unwrap().is_empty());
    let (_, none) = admin_json(
        app,
        Method::GET,
        "/api/v0/jobs?action=onlinegc_joblogs",
        None,
    )
    .await;
    assert!(none["jobs"].as_array().unwrap().is_empty());

    // A job already over cannot be cancelled.
    let (s, _) = admin_json(app, Method::DELETE, &format!("/api/v0/jobs/{id}"), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    runner.abort();

    // Cancelling a running job: one blob per batch and a long pause between batches;
    // the cancel request interrupts the pause.
    for i in 0..3 {
        push_blob_ok(app, "jobs/repo", &bytes(&format!("job-garbage-2-{i}"), 100)).await;
    }
    let slow = GcSettings {
        batch_size: 1,
        pause_ms: 600_000,
        ..GcSettings::default()
    };
    let runner = fast_runner(&env, slow, "worker-b")
        .with_clock(clock)
        .spawn();
    let (_, job) = admin_json(
        app,
        Method::POST,
        "/api/v0/jobs",
        Some(json!({"action": "gc"})),
    )
    .await;
    let id = job["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = admin_json(app, Method::GET, &format!("/api/v0/jobs/{id}"), None).await;
        if j["status"] == "running" && j["progress"]["blobs_deleted"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, j) = admin_json(app, Method::DELETE, &format!("/api/v0/jobs/{id}"), None).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(j["status"], "cancel_request");
    let j = wait_for_status(app, &id, &["cancel", "done", "error"]).await;
    assert_eq!(j["status"], "cancel", "{j}");
    assert!(j["progress"]["blobs_deleted"].as_u64().unwrap() < 3, "{j}");
    let (_, logs) = admin_json(app, Method::GET, &format!("/api/v0/jobs/{id}/logs"), None).await;
    let text = logs.to_string();
    assert!(
        text.contains("cancel requested") && text.contains("ended: cancel"),
        "{text}"
    );
    runner.abort();
}

#[tokio::test]
async fn jobs_api_refuses_callers_who_are_not_admins() {
    let env = Env::sqlite(Arc::new(AdminHeader)).await;
    let (_, job) = admin_json(
        &env.app,
        Method::POST,
        "/api/v0/jobs",
        Some(json!({"action": "gc"})),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let routes = [
        (Method::GET, "/api/v0/jobs".to_owned()),
        (Method::POST, "/api/v0/jobs".to_owned()),
        (Method::GET, format!("/api/v0/jobs/{id}")),
        (Method::GET, format!("/api/v0/jobs/{id}/logs")),
        (Method::DELETE, format!("/api/v0/jobs/{id}")),
    ];
    for (method, uri) in routes {
        let body = if method == Method::POST {
            br#"{"action":"gc"}"#.to_vec()
        } else {
            Vec::new()
        };
        let (s, _, b) = call(
            &env.app,
            method.clone(),
            &uri,
            &[("content-type", "application/json")],
            body,
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {uri}");
        assert!(String::from_utf8_lossy(&b).contains("DENIED"));
    }
    // Nothing was queued or cancelled by those requests.
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM jobs").await, 1);
    assert_eq!(
        jobs::get(&env.db, id).await.unwrap().unwrap().status,
        Status::Waiting
    );
}

#[tokio::test]
async fn jobs_api_rejects_bad_requests() {
    let env = Env::sqlite(Arc::new(AdminHeader)).await;
    let app = &env.app;
    let post = |body: Vec<u8>| {
        call(
            app,
            Method::POST,
            "/api/v0/jobs",
            &[ADMIN, ("content-type", "application/json")],
            body,
        )
    };
    // Unknown action, unknown parameter, parameter out of range, not JSON, extra field.
    for body in [
        json!({"action": "rm_rf"}).to_string(),
        json!({"action": "gc", "parameters": {"grace": 1}}).to_string(),
        json!({"action": "gc", "parameters": {"grace_secs": u64::MAX}}).to_string(),
        "{not json".to_owned(),
        json!({"action": "gc", "extra": true}).to_string(),
    ] {
        let (s, _, b) = post(body.clone().into_bytes()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(String::from_utf8_lossy(&b).contains("INVALID_PARAMETERS"));
    }
    // Bodies are capped.
    let mut big = br#"{"action":"gc","parameters":{"dry_run":true},"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 70 << 10));
    big.extend(br#""}"#);
    assert_eq!(post(big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM jobs").await,
        0,
        "nothing queued"
    );
    // Malformed filters and ids.
    for uri in [
        "/api/v0/jobs?running=maybe",
        "/api/v0/jobs?limit=0",
        "/api/v0/jobs?limit=100000",
        "/api/v0/jobs?action=a%20b",
    ] {
        let (s, _) = admin_json(app, Method::GET, uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
    }
    for uri in [
        "/api/v0/jobs/nope",
        "/api/v0/jobs/0123456789abcdef0123456789abcdef",
        "/api/v0/jobs/..%2F..%2Fetc/logs",
    ] {
        let (s, _) = admin_json(app, Method::GET, uri, None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{uri}");
    }
    let (s, _) = admin_json(
        app,
        Method::DELETE,
        "/api/v0/jobs/0123456789abcdef0123456789abcdef",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Several runners on one database: every job runs exactly once.
async fn runners_claim_each_job_once(env: &Env, other: &Db) {
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(
            jobs::enqueue(
                &env.db,
                "gc",
                &json!({"dry_run": true}),
                notary_registry::meta::now(),
            )
            .await
            .unwrap()
            .id,
        );
    }
    let mut tasks = Vec::new();
    for w in 0..4 {
        let db = if w % 2 == 0 {
            env.db.clone()
        } else {
            other.clone()
        };
        let runner = Runner::new(
            db,
            Arc::clone(&env.store) as Arc<dyn BlobStore>,
            GcSettings {
                pause_ms: 0,
                ..GcSettings::default()
            },
            RunnerSettings {
                worker_id: format!("w{w}"),
                ..RunnerSettings::default()
            },
        );
        tasks.push(tokio::spawn(async move {
            let mut ran = Vec::new();
            while let Some(job) = runner.run_once().await.unwrap() {
                ran.push(job.id);
            }
            ran
        }));
    }
    let mut ran = Vec::new();
    for t in tasks {
        ran.extend(t.await.unwrap());
    }
    ran.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(ran, expected, "each job exactly once");
    for id in &ids {
        let job = jobs::get(&env.db, id).await.unwrap().unwrap();
        assert_eq!(job.status, Status::Done);
        let starts = jobs::logs(&env.db, id, 0, 1000)
            .await
            .unwrap()
            .iter()
            .filter(|l| l.message.starts_with("started on worker"))
            .count();
        assert_eq!(starts, 1, "job {id} started {starts} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_claim_each_job_once_sqlite() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let other = env.db.clone();
    runners_claim_each_job_once(&env, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_on_two_replicas_claim_each_job_once_postgres() {
    let pg = tokio::task::spawn_blocking(notary_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.database("jobs_claim");
    let env = Env::postgres(&url, Arc::new(Open)).await;
    let replica = Db::open_postgres(&url, 8).await.unwrap();
    runners_claim_each_job_once(&env, &replica).await;
    // The scheduler: replicas ticking together enqueue once.
    scheduler_enqueues_once_per_interval(&env.db, &replica).await;
}

async fn scheduler_enqueues_once_per_interval(a: &Db, b: &Db) {
    let interval = Duration::from_secs(3600);
    let t0 = notary_registry::meta::now() + 10 * DAY;
    assert!(
        jobs::schedule_tick(a, "gc", &json!({}), interval, t0)
            .await
            .unwrap()
            .is_none(),
        "first due one interval later"
    );
    assert!(
        jobs::schedule_tick(b, "gc", &json!({}), interval, t0 + 10)
            .await
            .unwrap()
            .is_none()
    );
    let due = t0 + 3600;
    let empty = json!({});
    let (x, y) = tokio::join!(
        jobs::schedule_tick(a, "gc", &empty, interval, due),
        jobs::schedule_tick(b, "gc", &empty, interval, due)
    );
    let enqueued: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
    assert_eq!(enqueued.len(), 1, "exactly one replica enqueues");
    assert_eq!(enqueued[0].status, Status::Waiting);
    // Next interval: the previous job still waiting, so none is added.
    assert!(
        jobs::schedule_tick(a, "gc", &json!({}), interval, due + 3600)
            .await
            .unwrap()
            .is_none()
    );
    jobs::cancel(a, &enqueued[0].id, due).await.unwrap();
    assert!(
        jobs::schedule_tick(b, "gc", &json!({}), interval, due + 7200)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn scheduler_enqueues_once_per_interval_sqlite() {
    let env = Env::sqlite(Arc::new(Open)).await;
    scheduler_enqueues_once_per_interval(&env.db, &env.db.clone()).await;
}

#[tokio::test]
async fn a_job_whose_worker_stops_heartbeating_is_declared_dead() {
    let env = Env::sqlite(Arc::new(Open)).await;
    let now = notary_registry::meta::now();
    let job = jobs::enqueue(&env.db, "gc", &json!({}), now).await.unwrap();
    let claimed = jobs::claim(&env.db, "ghost", jobs::ACTIONS, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claimed.id.as_str(), claimed.status),
        (job.id.as_str(), Status::Running)
    );
    assert!(
        jobs::claim(&env.db, "other", jobs::ACTIONS, now)
            .await
            .unwrap()
            .is_none(),
        "claimed once"
    );
    // Within the limit: alive.
    assert_eq!(
        jobs::reap_dead(&env.db, now + 60, Duration::from_secs(120))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        jobs::reap_dead(&env.db, now + 121, Duration::from_secs(120))
            .await
            .unwrap(),
        1
    );
    let dead = jobs::get(&env.db, &job.id).await.unwrap().unwrap();
    assert_eq!(dead.status, Status::WorkerDead);
    // The ghost, should it come back, learns the job is no longer its own.
    assert_eq!(
        jobs::heartbeat(&env.db, &job.id, "ghost", now + 130, None)
            .await
            .unwrap(),
        None
    );
    assert!(
        !jobs::finish(
            &env.db,
            &job.id,
            "ghost",
            now + 130,
            Status::Done,
            &json!({}),
            None
        )
        .await
        .unwrap()
    );
    assert_eq!(
        jobs::get(&env.db, &job.id).await.unwrap().unwrap().status,
        Status::WorkerDead
    );
    let log = jobs::logs(&env.db, &job.id, 0, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|l| l.message.contains("ghost stopped heartbeating"))
    );
    // Ended jobs are purged after their retention.
    assert_eq!(jobs::purge(&env.db, now + 200).await.unwrap(), 1);
    assert!(jobs::get(&env.db, &job.id).await.unwrap().is_none());
    assert!(
        jobs::logs(&env.db, &job.id, 0, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A blob store whose deletes fail (storage outage).
struct DeleteFails(Arc<FsStore>);

#[async_trait]
impl BlobStore for DeleteFails {
    async fn start_upload(
        &self,
        id: &str,
    ) -> Result<String, notary_registry::storage::StorageError> {
        self.0.start_upload(id).await
    }
    async fn open_upload(
        &self,
        id: &str,
        state: &str,
        offset: u64,
    ) -> Result<
        Box<dyn notary_registry::storage::UploadWriter>,
        notary_registry::storage::StorageError,
    > {
        self.0.open_upload(id, state, offset).await
    }
    async fn commit_upload(
        &self,
        id: &str,
        state: &str,
        digest: &notary_registry::names::Digest,
        size: u64,
    ) -> Result<String, notary_registry::storage::StorageError> {
        self.0.commit_upload(id, state, digest, size).await
    }
    async fn abort_upload(
        &self,
        id: &str,
        state: &str,
    ) -> Result<(), notary_registry::storage::StorageError> {
        self.0.abort_upload(id, state).await
    }
    async fn read(
        &self,
        key: &str,
        offset: u64,
        len: u64,
    ) -> Result<notary_registry::storage::ByteStream, notary_registry::storage::StorageError> {
        self.0.read(key, offset, len).await
    }
    async fn delete(&self, _keys: &[String]) -> Result<(), notary_registry::storage::StorageError> {
        Err(notary_registry::storage::StorageError::Unavailable(
            "bucket unreachable".into(),
        ))
    }
    async fn health(&self) -> Result<(), notary_registry::storage::StorageError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "failing".into()
    }
}

#[tokio::test]
async fn a_storage_outage_fails_the_job_and_the_next_run_finishes_the_queue() {
    let env = Env::sqlite(Arc::new(Open)).await;
    for i in 0..4 {
        push_blob_ok(&env.app, "outage/repo", &bytes(&format!("outage-{i}"), 50)).await;
    }
    let clock: gc::Clock = Arc::new(|| notary_registry::meta::now() + 2 * DAY);
    let broken = Runner::new(
        env.db.clone(),
        Arc::new(DeleteFails(Arc::clone(&env.store))),
        GcSettings {
            pause_ms: 0,
            ..GcSettings::default()
        },
        RunnerSettings {
            worker_id: "broken".into(),
            ..RunnerSettings::default()
        },
    )
    .with_clock(Arc::clone(&clock));
    let job = jobs::enqueue(&env.db, "gc", &json!({}), notary_registry::meta::now())
        .await
        .unwrap();
    let ended = broken.run_once().await.unwrap().unwrap();
    assert_eq!(ended.id, job.id);
    assert_eq!(ended.status, Status::Error);
    assert!(
        ended
            .error
            .as_deref()
            .unwrap()
            .contains("bucket unreachable"),
        "{ended:?}"
    );
    // The progress made before the failure is kept on the job.
    assert_eq!(ended.progress["blobs_deleted"], 4, "{ended:?}");
    assert_eq!(env.sql.count("SELECT COUNT(*) FROM blobs").await, 0);
    assert_eq!(
        env.sql.count("SELECT COUNT(*) FROM pending_deletes").await,
        4
    );
    assert_eq!(stored_objects(&env.root).len(), 4);

    let healthy = fast_runner(
        &env,
        GcSettings {
            pause_ms: 0,
            ..GcSettings::default()
        },
        "healthy",
    )
    .with_clock(clock);
    jobs::enqueue(&env.db, "gc", &json!({}), notary_registry::meta::now())
        .await
        .unwrap();
    let ended = healthy.run_once().await.unwrap().unwrap();
    assert_eq!(ended.status, Status::Done);
    assert_eq!(ended.progress["objects_deleted"], 4);
    assert_no_leaks(&env).await;
}

// ------------------------------------------------------------------------ wiring

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_build_starts_the_runner_and_reads_the_gc_section() {
    let dir = tempfile::tempdir().unwrap();
    let text = json!({
        "no_auth": true,
        "plain_http": true,
        "data_dir": dir.path(),
        "gc": {"interval_secs": 0, "grace_secs": 0, "pause_ms": 0, "upload_expiry_secs": 3600}
    });
    let file = dir.path().join("config.json");
    std::fs::write(&file, text.to_string()).unwrap();
    let mut config = notary_registry::server::Config::from_file(&file).unwrap();
    assert_eq!(config.gc.grace_secs, 0);
    assert_eq!(config.gc.untagged_days, 0);
    config
        .apply_env(|k| (k == "NOTARY_REGISTRY_GC_UNTAGGED_DAYS").then(|| "30".to_owned()))
        .unwrap();
    assert_eq!(config.gc.untagged_days, 30);
    let bad = json!({"gc": {"grace_minutes": 1}});
    std::fs::write(&file, bad.to_string()).unwrap();
    assert!(notary_registry::server::Config::from_file(&file).is_err());
    let mut invalid = config.clone();
    invalid.gc.batch_size = 0;
    assert!(notary_registry::server::build(&invalid).await.is_err());

    let reg = notary_registry::server::build(&config).await.unwrap();
    let app = notary_registry::server::app(Arc::clone(&reg));
    let d = push_blob_ok(&app, "wired/up", &bytes("wired", 321)).await;
    // Grace 0: the blob must be at least a second old.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, job) = admin_json(
        &app,
        Method::POST,
        "/api/v0/jobs",
        Some(json!({"action": "gc"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let job = wait_for_status(&app, job["id"].as_str().unwrap(), &["done", "error"]).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["progress"]["blobs_deleted"], 1);
    assert_eq!(
        get_blob(&app, "wired/up", &d).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_subcommand_collects_from_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = notary_registry::server::Config {
        data_dir: dir.path().to_path_buf(),
        no_auth: true,
        gc: GcSettings {
            interval_secs: 0,
            ..GcSettings::default()
        },
        ..notary_registry::server::Config::default()
    };
    let reg = notary_registry::server::build(&config).await.unwrap();
    let app = notary_registry::server::app(Arc::clone(&reg));
    let d = push_blob_ok(&app, "cli/repo", &bytes("cli", 4321)).await;
    let sql = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("registry.db")),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE blobs SET created_at = created_at - 100")
        .execute(&sql)
        .await
        .unwrap();
    sqlx::query("UPDATE repository_blobs SET created_at = created_at - 100")
        .execute(&sql)
        .await
        .unwrap();

    let bin = env!("CARGO_BIN_EXE_notary-registry");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .arg("gc")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("NOTARY_REGISTRY_LOG_LEVEL", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["--dry-run", "--grace-secs", "10"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("dry run") && out.contains("\"blobs_deleted\":1"),
        "{out}"
    );
    assert_eq!(get_blob(&app, "cli/repo", &d).await.0, StatusCode::OK);
    // The default grace (one day) keeps it.
    let (ok, out, _) = run(&[]);
    assert!(ok && out.contains("\"blobs_deleted\":0"), "{out}");
    let (ok, out, err) = run(&["--grace-secs", "10"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("sweep:")
            && out.contains("\"blobs_deleted\":1")
            && out.contains("\"objects_deleted\":1"),
        "{out}"
    );
    assert_eq!(
        get_blob(&app, "cli/repo", &d).await.0,
        StatusCode::NOT_FOUND
    );
    let (ok, _, err) = run(&["--grace-secs", "99999999999999"]);
    assert!(!ok && err.contains("too large"), "{err}");
}

// ------------------------------------------------------------------------ measurement

/// Prints the time of each milestone.
struct Milestones(Instant);

#[async_trait]
impl Progress for Milestones {
    async fn report(
        &mut self,
        _stats: &GcStats,
        message: &str,
        milestone: bool,
    ) -> ControlFlow<()> {
        if milestone {
            eprintln!("  {:>8.3} s  {message}", self.0.elapsed().as_secs_f64());
        }
        ControlFlow::Continue(())
    }
}

/// `cargo test -p notary-registry --test gc -- --ignored --nocapture gc_scale`:
/// GC time for N blobs (default 10 000) and N/10 manifests of 5 blobs each on SQLite
/// (half the blobs referenced, the other half garbage). Prints; asserts only
/// correctness.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn gc_scale_measurement() {
    let n: usize = std::env::var("GC_SCALE_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let env = Env::sqlite(Arc::new(Open)).await;
    let Sql::Lite(pool) = &env.sql else {
        unreachable!()
    };
    let t = Instant::now();
    let now = notary_registry::meta::now() - 10 * DAY;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO repositories (name, public, created_at) VALUES ('scale/repo', 0, $1)")
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut digests = Vec::with_capacity(n);
    for i in 0..n {
        let data = bytes(&format!("scale-{i}"), 64);
        let d = digest(&data);
        let hex = &d[7..];
        let key = format!("blobs/sha256/{}/{hex}.scale{i}", &hex[..2]);
        let path = env.root.join(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &data).unwrap();
        sqlx::query(
            "INSERT INTO blobs (digest, size, location, created_at) VALUES ($1, 64, $2, $3)",
        )
        .bind(&d)
        .bind(&key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES (1, $1, $2)",
        )
        .bind(&d)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        digests.push(d);
    }
    let manifests = n / 10;
    for m in 0..manifests {
        let md = digest(format!("manifest-{m}").as_bytes());
        sqlx::query("INSERT INTO manifests (repository_id, digest, media_type, size, body, created_at) VALUES (1, $1, $2, 2, $3, $4)")
            .bind(&md).bind(OCI_MANIFEST).bind(b"{}".to_vec()).bind(now).execute(&mut *tx).await.unwrap();
        sqlx::query(
            "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (1, $1, $2, $3)",
        )
        .bind(format!("t{m}"))
        .bind(&md)
        .bind(now)
        .execute(&mut *tx)
        .await
        .unwrap();
        for k in 0..5 {
            sqlx::query("INSERT INTO manifest_references (repository_id, manifest_digest, child_digest, kind) VALUES (1, $1, $2, 'blob')")
                .bind(&md).bind(&digests[m * 5 + k]).execute(&mut *tx).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    eprintln!(
        "setup of {n} blobs / {manifests} manifests: {:?}",
        t.elapsed()
    );

    let mut opts = GcOptions {
        grace: Duration::from_secs(DAY as u64),
        batch: 500,
        ..GcOptions::default()
    };
    opts.dry_run = true;
    let r = env.gc(&opts).await;
    eprintln!("dry run: {:?} {:?}", r.elapsed, r.stats);
    opts.dry_run = false;
    let mut timed = Milestones(Instant::now());
    let r = gc::run(&env.db, env.store.as_ref(), &opts, &mut timed)
        .await
        .unwrap();
    eprintln!("collecting run: {:?} {:?}", r.elapsed, r.stats);
    assert_eq!(r.stats.blobs_deleted as usize, n - manifests * 5);
    let r = env.gc(&opts).await;
    eprintln!("run with nothing to collect: {:?} {:?}", r.elapsed, r.stats);
    let mut paced = opts.clone();
    paced.pause = Duration::from_millis(20);
    let r = env.gc(&paced).await;
    eprintln!(
        "same with the default 20 ms pause between batches: {:?}",
        r.elapsed
    );
    assert_eq!(stored_objects(&env.root).len(), manifests * 5);
    eprintln!("total {:?}", t.elapsed());
}
