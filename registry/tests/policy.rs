//! The signed-image policy end to end, in process: a Notary service (in-memory store,
//! server-held snapshot and timestamp keys) whose trust data is published with
//! `RepoEditor` as Docker and the Go client would, a registry whose policy is the
//! `PolicyEngine` over that service, users, organisations and teams in the auth store,
//! and the application driven with tower `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use notary_core::metadata::{Bytes as MetaBytes, FileMeta};
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::{Algorithm, Gun, PrivateKey, RoleName};
use notary_registry::access::{Identity, Policy};
use notary_registry::auth::store::Level;
use notary_registry::auth::{AuthConfig, AuthService, TokenAccess};
use notary_registry::meta::Db;
use notary_registry::policy::source::{
    NotaryV1Source, RepoSignatures, SignatureSource, SourceError,
};
use notary_registry::policy::{EngineOptions, Gate, ImagePolicy, PolicyEngine};
use notary_registry::storage::fs::FsStore;
use notary_registry::{Options, Registry};
use notary_server::service::Service;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt as _;

const PASSWORD: &str = "password-123";
const GUN: &str = "127.0.0.1:5000/org/app";
const PREFIXES: [&str; 2] = ["127.0.0.1:5000", "localhost:5000"];

// ---------------------------------------------------------------------- environment

struct Env {
    dir: tempfile::TempDir,
    svc: Arc<AuthService>,
    notary: Arc<Service>,
    engine: Arc<PolicyEngine>,
    reg: Arc<Registry>,
    app: Router,
    /// Added to the real time by the engine's clock.
    skew: Arc<Mutex<time::Duration>>,
}

async fn notary_service() -> Arc<Service> {
    let store = notary_server::storage::Store::memory().await.unwrap();
    let trust = notary_server::trust::LocalTrust::new(
        store.clone(),
        Algorithm::EcdsaP256,
        zeroize::Zeroizing::new("test-passphrase".into()),
    );
    Arc::new(Service::new(store, Arc::new(trust)))
}

fn options(skew: &Arc<Mutex<time::Duration>>) -> EngineOptions {
    let s = Arc::clone(skew);
    EngineOptions {
        clock: Arc::new(move || OffsetDateTime::now_utc() + *s.lock().unwrap()),
        ..EngineOptions::default()
    }
}

async fn env_with(
    source: Option<Arc<dyn SignatureSource>>,
    tune: impl FnOnce(&mut EngineOptions),
) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(dir.path().join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    let svc = AuthService::new(AuthConfig::default(), db.clone(), dir.path(), false).unwrap();
    let notary = notary_service().await;
    let skew = Arc::new(Mutex::new(time::Duration::ZERO));
    let mut opts = options(&skew);
    tune(&mut opts);
    let source = source.unwrap_or_else(|| {
        Arc::new(NotaryV1Source::new(
            Arc::clone(&notary),
            PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
            opts.negative_ttl,
        ))
    });
    let engine = PolicyEngine::new(db.clone(), source, opts).await.unwrap();
    let store = Arc::new(FsStore::open(&dir.path().join("blobs")).unwrap());
    let reg = Arc::new(Registry::new(
        db.clone(),
        store,
        Arc::new(TokenAccess::new(Arc::clone(&svc))),
        Arc::clone(&engine) as Arc<dyn Policy>,
        Options::default(),
    ));
    let app = notary_registry::server::app(Arc::clone(&reg));
    let env = Env {
        dir,
        svc,
        notary,
        engine,
        reg,
        app,
        skew,
    };
    env.people().await;
    env
}

async fn env() -> Env {
    env_with(None, |_| {}).await
}

impl Env {
    /// admin (system administrator); org with owner `owner`, teams qa (alice),
    /// security (bob), ops (ops); `writer` read-write and `reader` read-only on org/app.
    async fn people(&self) {
        let st = self.svc.store();
        let hash = notary_registry::auth::password::hash_password(PASSWORD).unwrap();
        for (name, admin) in [
            ("admin", true),
            ("owner", false),
            ("alice", false),
            ("bob", false),
            ("ops", false),
            ("writer", false),
            ("reader", false),
        ] {
            st.create_user(name, &hash, admin).await.unwrap();
        }
        st.create_org("org").await.unwrap();
        st.set_org_member("org", "owner", true).await.unwrap();
        for (team, member) in [("qa", "alice"), ("security", "bob"), ("ops", "ops")] {
            st.create_team("org", team, "").await.unwrap();
            st.add_team_member("org", team, member).await.unwrap();
        }
        st.set_repo_user_access("org/app", "writer", Level::ReadWrite)
            .await
            .unwrap();
        st.set_repo_user_access("org/app", "reader", Level::ReadOnly)
            .await
            .unwrap();
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        user: Option<&str>,
        body: Body,
        headers: &[(&str, &str)],
    ) -> Resp {
        call(&self.app, method, uri, user, body, headers).await
    }

    async fn get(&self, uri: &str, user: Option<&str>) -> Resp {
        self.call(Method::GET, uri, user, Body::empty(), &[]).await
    }

    async fn put_json(&self, uri: &str, user: Option<&str>, v: &Value) -> Resp {
        self.call(
            Method::PUT,
            uri,
            user,
            Body::from(v.to_string()),
            &[("content-type", "application/json")],
        )
        .await
    }

    async fn set_policy(&self, repo: &str, v: Value) {
        let r = self
            .put_json(
                &format!("/api/v0/policies/repositories/{repo}"),
                Some("admin"),
                &v,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }

    /// Pushes an image (config + one layer + manifest) as admin; digest and manifest size.
    async fn push(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, u64) {
        let r = self.push_as(repo, tag, layer, "admin").await;
        assert_eq!(r.0.status, StatusCode::CREATED, "{}", r.0.text());
        (r.1, r.2)
    }

    async fn push_as(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
        user: &str,
    ) -> (Resp, String, u64) {
        let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
        let c = self.blob(repo, cfg, user).await;
        let l = self.blob(repo, layer, user).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        self.put_manifest(
            repo,
            tag,
            &m,
            "application/vnd.oci.image.manifest.v1+json",
            user,
        )
        .await
    }

    async fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        m: &[u8],
        media: &str,
        user: &str,
    ) -> (Resp, String, u64) {
        let r = self
            .call(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{tag}"),
                Some(user),
                Body::from(m.to_vec()),
                &[("content-type", media)],
            )
            .await;
        (r, sha256(m), m.len() as u64)
    }

    async fn blob(&self, repo: &str, data: &[u8], user: &str) -> String {
        let d = sha256(data);
        let r = self
            .call(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
                Some(user),
                Body::from(data.to_vec()),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        d
    }

    async fn pull(&self, repo: &str, reference: &str, user: &str) -> Resp {
        self.get(&format!("/v2/{repo}/manifests/{reference}"), Some(user))
            .await
    }

    // ------------------------------------------------------------------ trust data

    async fn init_trust(&self, gun: &str) -> Trust {
        let g = Gun::new(gun).unwrap();
        let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let sn = self
            .notary
            .get_or_create_key(&g, &RoleName::snapshot())
            .await
            .unwrap();
        let ts = self
            .notary
            .get_or_create_key(&g, &RoleName::timestamp())
            .await
            .unwrap();
        let mut editor = RepoEditor::create(
            g.clone(),
            &root,
            targets.public().clone(),
            sn,
            ts,
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        let mut ring = KeyRing::new();
        ring.add(&root);
        ring.add(&targets);
        let files = editor.sign(&ring, OffsetDateTime::now_utc()).unwrap();
        self.notary.update(&g, files.files).await.unwrap();
        let after = self.notary.trusted(&g).await.unwrap();
        self.engine
            .published(gun, "admin", None, &after)
            .await
            .unwrap();
        Trust {
            gun: gun.to_owned(),
            targets,
        }
    }

    /// Publishes an edit signed with `keys`, as `user` (then tells the engine, as the
    /// all-in-one does after a publish).
    async fn publish(
        &self,
        t: &Trust,
        user: &str,
        keys: &[&PrivateKey],
        edit: impl FnOnce(&mut RepoEditor),
    ) {
        let g = Gun::new(&t.gun).unwrap();
        let before = self.notary.trusted(&g).await.unwrap();
        let mut editor = RepoEditor::from_repository(&before);
        edit(&mut editor);
        let mut ring = KeyRing::new();
        for k in keys {
            ring.add(*k);
        }
        let files = editor.sign(&ring, OffsetDateTime::now_utc()).unwrap();
        self.notary.update(&g, files.files).await.unwrap();
        let after = self.notary.trusted(&g).await.unwrap();
        self.engine
            .published(&t.gun, user, Some(&before), &after)
            .await
            .unwrap();
    }

    /// `docker trust signer add NAME`: targets/NAME and targets/releases get the key
    /// (published by the repository administrator, who holds the targets key).
    async fn add_signer(&self, t: &Trust, name: &str, key: &PrivateKey) {
        let public = key.public().clone();
        self.publish(t, "admin", &[&t.targets], |e| {
            for role in [format!("targets/{name}"), "targets/releases".to_owned()] {
                e.add_delegation(
                    &RoleName::new(&role).unwrap(),
                    vec![public.clone()],
                    vec![String::new()],
                    1,
                )
                .unwrap();
            }
        })
        .await;
    }

    /// `docker trust sign` by a signer: the tag goes into each of `roles`.
    async fn sign(
        &self,
        t: &Trust,
        user: &str,
        key: &PrivateKey,
        roles: &[&str],
        tag: &str,
        (digest, size): (&str, u64),
    ) {
        let meta = file_meta(digest, size);
        self.publish(t, user, &[key], |e| {
            for r in roles {
                e.add_target(&RoleName::new(r).unwrap(), tag, meta.clone())
                    .unwrap();
            }
        })
        .await;
    }
}

struct Trust {
    gun: String,
    targets: PrivateKey,
}

fn file_meta(digest: &str, size: u64) -> FileMeta {
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        MetaBytes(hex::decode(digest.trim_start_matches("sha256:")).unwrap()),
    );
    FileMeta {
        custom: None,
        hashes,
        length: size,
    }
}

fn key() -> PrivateKey {
    PrivateKey::generate(Algorithm::EcdsaP256).unwrap()
}

fn sha256(data: &[u8]) -> String {
    notary_registry::names::Digest::of(notary_registry::names::Algorithm::Sha256, data).to_string()
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    fn message(&self) -> String {
        self.json()["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    fn warning(&self) -> String {
        self.headers
            .get("warning")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    user: Option<&str>,
    body: Body,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:5000");
    if let Some(u) = user {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{PASSWORD}"));
        req = req.header("authorization", format!("Basic {b}"));
    }
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

fn denied(r: &Resp) -> String {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(r.code(), "DENIED");
    r.message()
}

/// A signed image: trust data with signers alice (qa) and bob (security), `v1`
/// pushed and signed by alice into targets/alice and targets/releases.
struct Signed {
    trust: Trust,
    alice: PrivateKey,
    bob: PrivateKey,
    d1: String,
    s1: u64,
}

async fn signed_v1(env: &Env) -> Signed {
    let (d1, s1) = env.push("org/app", "v1", b"layer one").await;
    let trust = env.init_trust(GUN).await;
    let alice = key();
    let bob = key();
    env.add_signer(&trust, "alice", &alice).await;
    env.add_signer(&trust, "bob", &bob).await;
    env.sign(
        &trust,
        "alice",
        &alice,
        &["targets/alice", "targets/releases"],
        "v1",
        (&d1, s1),
    )
    .await;
    Signed {
        trust,
        alice,
        bob,
        d1,
        s1,
    }
}

// ---------------------------------------------------------------------- policies

#[tokio::test]
async fn team_policy_requires_every_team() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"team": "qa"}, {"team": "security"}]}),
    )
    .await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(
        msg.contains("tag v1 is signed by team qa but the policy also requires team security"),
        "{msg}"
    );
    let head = env
        .call(
            Method::HEAD,
            "/v2/org/app/manifests/v1",
            Some("reader"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(head.status, StatusCode::FORBIDDEN);
    // bob (security) signs the same digest: both teams now.
    env.sign(
        &s.trust,
        "bob",
        &s.bob,
        &["targets/bob", "targets/releases"],
        "v1",
        (&s.d1, s.s1),
    )
    .await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.headers
            .get("docker-content-digest")
            .unwrap()
            .to_str()
            .unwrap(),
        s.d1
    );
    assert!(r.warning().is_empty());
}

#[tokio::test]
async fn keys_are_bound_to_the_users_who_sign_with_them() {
    let env = env().await;
    let s = signed_v1(&env).await;
    let r = env
        .get("/api/v0/repositories/org/app/signers", Some("reader"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let signers = r.json()["signers"].as_array().cloned().unwrap();
    let alice_id = s.alice.public().key_id().to_string();
    let bob_id = s.bob.public().key_id().to_string();
    let owner = |id: &str| {
        signers
            .iter()
            .find(|k| k["keyId"] == id)
            .map(|k| k["user"].as_str().unwrap().to_owned())
    };
    // The administrator added both signers' keys, but only alice signed with hers.
    assert_eq!(owner(&alice_id).as_deref(), Some("alice"));
    assert_eq!(owner(&bob_id), None);
    assert_eq!(
        owner(s.trust.targets.public().key_id().as_str()).as_deref(),
        Some("admin")
    );
    // Trust data naming bob as a signer does not make the administrator's publish his.
    let entry = signers
        .iter()
        .find(|k| k["keyId"] == alice_id.as_str())
        .unwrap();
    assert_eq!(entry["role"], "targets/alice");
}

#[tokio::test]
async fn role_policy_checks_the_named_delegation() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"role": "targets/bob"}]}),
    )
    .await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(msg.contains("targets/bob has not signed v1"), "{msg}");
    env.sign(
        &s.trust,
        "bob",
        &s.bob,
        &["targets/bob"],
        "v1",
        (&s.d1, s.s1),
    )
    .await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"role": "targets/bob", "min": 2}]}),
    )
    .await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(
        msg.contains("carries 1 valid signatures, the policy requires 2"),
        "{msg}"
    );
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"role": "targets/nobody"}]}),
    )
    .await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(msg.contains("targets/nobody does not exist"), "{msg}");
}

#[tokio::test]
async fn signatures_only_in_other_delegations_do_not_count() {
    let env = env().await;
    let s = signed_v1(&env).await;
    let (d2, s2) = env.push("org/app", "v2", b"layer two").await;
    // Signed only into targets/alice: Docker reads targets/releases, then targets.
    env.sign(
        &s.trust,
        "alice",
        &s.alice,
        &["targets/alice"],
        "v2",
        (&d2, s2),
    )
    .await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    let msg = denied(&env.pull("org/app", "v2", "reader").await);
    assert!(msg.contains("only targets/alice name it"), "{msg}");
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn expired_trust_data_is_refused_when_configured() {
    let env = env().await;
    signed_v1(&env).await;
    env.set_policy("org/app", json!({"mode": "enforced", "denyExpired": true}))
        .await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    // Four years on: targets (3 years) and the timestamp (14 days) have expired.
    *env.skew.lock().unwrap() = time::Duration::days(4 * 365);
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "denyExpired": true, "tags": ["v*"]}),
    )
    .await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(
        msg.contains(&format!("trust data for {GUN} expired on")),
        "{msg}"
    );
    assert!(msg.contains("targets on"), "{msg}");
    // Not configured: expiry is not the policy's business.
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_tag_moved_to_an_unsigned_digest_is_refused() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    let (d2, _) = env.push("org/app", "v1", b"something else").await;
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(
        msg.contains(&format!("tag v1 points at {d2} but is signed for {}", s.d1)),
        "{msg}"
    );
    // The signed digest itself stays pullable by digest.
    assert_eq!(
        env.pull("org/app", &s.d1, "reader").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn another_signed_tag_of_the_same_digest_does_not_help() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    // The same manifest under an unsigned tag.
    let (r, d, _) = env.push_as("org/app", "copy", b"layer one", "admin").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(d, s.d1);
    let msg = denied(&env.pull("org/app", "copy", "reader").await);
    assert!(msg.contains("tag copy is not signed"), "{msg}");
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn digest_pulls_follow_the_policy_setting() {
    let env = env().await;
    let s = signed_v1(&env).await;
    let (d2, _) = env.push("org/app", "unsigned", b"not signed").await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "digestPulls": "signed"}),
    )
    .await;
    assert_eq!(
        env.pull("org/app", &s.d1, "reader").await.status,
        StatusCode::OK
    );
    let msg = denied(&env.pull("org/app", &d2, "reader").await);
    assert!(
        msg.contains("is not the signed digest of any tag the policy covers"),
        "{msg}"
    );
    // A signed tag outside the policy's tags does not make its digest pullable.
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "tags": ["release-*"]}),
    )
    .await;
    denied(&env.pull("org/app", &s.d1, "reader").await);
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "digestPulls": "always"}),
    )
    .await;
    assert_eq!(
        env.pull("org/app", &d2, "reader").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn children_of_a_signed_index_are_pullable_by_digest() {
    let env = env().await;
    let (child, child_size) = env.push("org/app", "amd64", b"platform layer").await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": child, "size": child_size,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string()
    .into_bytes();
    let (r, idx, idx_size) = env
        .put_manifest(
            "org/app",
            "multi",
            &index,
            "application/vnd.oci.image.index.v1+json",
            "admin",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let trust = env.init_trust(GUN).await;
    let alice = key();
    env.add_signer(&trust, "alice", &alice).await;
    env.sign(
        &trust,
        "alice",
        &alice,
        &["targets/alice", "targets/releases"],
        "multi",
        (&idx, idx_size),
    )
    .await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    assert_eq!(
        env.pull("org/app", "multi", "reader").await.status,
        StatusCode::OK
    );
    let r = env.pull("org/app", &child, "reader").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The platform tag itself is not signed.
    denied(&env.pull("org/app", "amd64", "reader").await);
}

#[tokio::test]
async fn permissive_mode_allows_with_a_warning() {
    let env = env().await;
    env.push("org/app", "v1", b"layer").await;
    env.set_policy("org/app", json!({"mode": "permissive"}))
        .await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::OK);
    let w = r.warning();
    assert!(w.starts_with("299 - \""), "{w}");
    assert!(
        w.contains("tag v1 is not signed") && w.contains("permissive"),
        "{w}"
    );
}

#[tokio::test]
async fn unsigned_pushes_are_quarantined_until_signed() {
    let env = env().await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    let (r, d, size) = env.push_as("org/app", "v1", b"fresh layer", "writer").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(r.warning().contains("quarantined"), "{}", r.warning());
    let msg = denied(&env.pull("org/app", "v1", "reader").await);
    assert!(msg.contains("has no trust data"), "{msg}");
    let tags = env
        .get("/api/v0/repositories/org/app/tags", Some("reader"))
        .await;
    assert_eq!(tags.status, StatusCode::OK, "{}", tags.text());
    let t = &tags.json()["tags"][0];
    assert_eq!(
        (
            t["name"].as_str(),
            t["status"].as_str(),
            t["quarantined"].as_bool()
        ),
        (Some("v1"), Some("unsigned"), Some(true))
    );
    assert_eq!(t["digest"], d.as_str());

    let trust = env.init_trust(GUN).await;
    let alice = key();
    env.add_signer(&trust, "alice", &alice).await;
    env.sign(
        &trust,
        "alice",
        &alice,
        &["targets/alice", "targets/releases"],
        "v1",
        (&d, size),
    )
    .await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let tags = env
        .get("/api/v0/repositories/org/app/tags", Some("reader"))
        .await;
    let t = &tags.json()["tags"][0];
    assert_eq!(
        (t["status"].as_str(), t["quarantined"].as_bool()),
        (Some("signed"), Some(false))
    );
    let signers = t["signers"].as_array().unwrap();
    assert!(
        signers
            .iter()
            .any(|s| s["role"] == "targets/alice" && s["keys"][0]["user"] == "alice"),
        "{signers:?}"
    );
    assert_eq!(tags.json()["trustData"]["gun"], GUN);
}

#[tokio::test]
async fn writers_read_quarantined_tags_with_a_warning() {
    let env = env().await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    env.push("org/app", "v1", b"to be signed").await;
    // `notary image sign` fetches the manifest it signs: the writer may.
    let r = env.pull("org/app", "v1", "writer").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.warning().contains("served because you may push"),
        "{}",
        r.warning()
    );
    denied(&env.pull("org/app", "v1", "reader").await);
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "writersReadQuarantined": false}),
    )
    .await;
    denied(&env.pull("org/app", "v1", "writer").await);
}

#[tokio::test]
async fn signed_tags_cannot_be_deleted_while_trust_data_names_them() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    let r = env
        .call(
            Method::DELETE,
            "/v2/org/app/manifests/v1",
            Some("admin"),
            Body::empty(),
            &[],
        )
        .await;
    let msg = denied(&r);
    assert!(
        msg.contains(&format!("remove it with `notary remove {GUN} v1 --roles targets/alice --roles targets/releases --publish` first")),
        "{msg}"
    );
    // Deleting the manifest by digest would delete the signed tag too.
    let r = env
        .call(
            Method::DELETE,
            &format!("/v2/org/app/manifests/{}", s.d1),
            Some("admin"),
            Body::empty(),
            &[],
        )
        .await;
    denied(&r);
    // Remove the signature (every role), then the tag can go.
    env.publish(&s.trust, "alice", &[&s.alice], |e| {
        for r in ["targets/alice", "targets/releases"] {
            e.remove_target(&RoleName::new(r).unwrap(), "v1").unwrap();
        }
    })
    .await;
    let r = env
        .call(
            Method::DELETE,
            "/v2/org/app/manifests/v1",
            Some("admin"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
}

#[tokio::test]
async fn signed_tags_can_be_made_immutable() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "immutableSignedTags": true}),
    )
    .await;
    let (r, _, _) = env.push_as("org/app", "v1", b"replacement", "writer").await;
    let msg = denied(&r);
    assert!(
        msg.contains(&format!(
            "tag v1 is signed for {} and the policy keeps signed tags immutable",
            s.d1
        )),
        "{msg}"
    );
    // Pushing the signed content again is fine.
    let (r, _, _) = env.push_as("org/app", "v1", b"layer one", "writer").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Without the setting, the push is stored (and the tag refused on pull).
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    let (r, _, _) = env.push_as("org/app", "v1", b"replacement", "writer").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    denied(&env.pull("org/app", "v1", "reader").await);
}

#[tokio::test]
async fn exempt_principals_and_tags_bypass_the_policy() {
    let env = env().await;
    env.push("org/app", "v1", b"unsigned").await;
    env.push("org/app", "dev", b"unsigned dev").await;
    env.set_policy("org/app", json!({"mode": "enforced", "exemptUsers": ["reader"], "exemptTeams": ["ops"], "exemptTags": ["dev"]})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    env.svc
        .store()
        .set_repo_user_access("org/app", "ops", Level::ReadOnly)
        .await
        .unwrap();
    env.svc
        .store()
        .set_repo_user_access("org/app", "bob", Level::ReadOnly)
        .await
        .unwrap();
    assert_eq!(
        env.pull("org/app", "v1", "ops").await.status,
        StatusCode::OK
    );
    denied(&env.pull("org/app", "v1", "bob").await);
    assert_eq!(
        env.pull("org/app", "dev", "bob").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn namespace_and_global_policies_apply_most_specific_first() {
    let env = env().await;
    env.push("org/app", "v1", b"unsigned").await;
    let r = env
        .put_json(
            "/api/v0/policies/global",
            Some("admin"),
            &json!({"mode": "enforced"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    denied(&env.pull("org/app", "v1", "reader").await);
    let r = env
        .put_json(
            "/api/v0/policies/namespaces/org",
            Some("owner"),
            &json!({"mode": "permissive"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    env.set_policy("org/app", json!({"mode": "disabled"})).await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.warning().is_empty());
    let r = env
        .get(
            "/api/v0/policies/repositories/org/app?effective=true",
            Some("reader"),
        )
        .await;
    assert_eq!(r.json()["scope"]["kind"], "repository");
    let r = env
        .call(
            Method::DELETE,
            "/api/v0/policies/repositories/org/app",
            Some("admin"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = env
        .get(
            "/api/v0/policies/repositories/org/app?effective=true",
            Some("reader"),
        )
        .await;
    assert_eq!(
        r.json()["scope"],
        json!({"kind": "namespace", "name": "org"})
    );
}

#[tokio::test]
async fn trust_data_under_the_second_gun_prefix_is_found() {
    let env = env().await;
    let (d, size) = env.push("org/app", "v1", b"layer").await;
    let trust = env.init_trust("localhost:5000/org/app").await;
    env.sign(
        &trust,
        "admin",
        &trust.targets,
        &["targets"],
        "v1",
        (&d, size),
    )
    .await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    let tags = env
        .get("/api/v0/repositories/org/app/tags", Some("reader"))
        .await;
    assert_eq!(tags.json()["trustData"]["gun"], "localhost:5000/org/app");
}

#[tokio::test]
async fn the_deploy_gate_evaluates_the_same_way() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.push("org/app", "unsigned", b"no").await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "gates": ["deploy"], "signers": [{"team": "qa"}]}),
    )
    .await;
    let who = Identity {
        user: Some("kube".into()),
        admin: false,
    };
    let v = env
        .engine
        .evaluate("org/app", Some("v1"), None, &who, Gate::Deploy)
        .await
        .unwrap();
    assert!(v.allowed && !v.warn, "{v:?}");
    assert_eq!(v.digest.as_deref(), Some(s.d1.as_str()));
    let v = env
        .engine
        .evaluate("org/app", Some("unsigned"), None, &who, Gate::Deploy)
        .await
        .unwrap();
    assert!(!v.allowed);
    assert!(
        v.reason.contains("tag unsigned is not signed"),
        "{}",
        v.reason
    );
    let v = env
        .engine
        .evaluate("org/app", None, Some(&s.d1), &who, Gate::Deploy)
        .await
        .unwrap();
    assert!(v.allowed, "{v:?}");
    // The pull gate is off in this policy.
    assert_eq!(
        env.pull("org/app", "unsigned", "reader").await.status,
        StatusCode::OK
    );
}

// ---------------------------------------------------------------------- failures

/// A source that is down.
struct Down;

#[async_trait::async_trait]
impl SignatureSource for Down {
    async fn signatures(
        &self,
        _repository: &str,
    ) -> Result<Option<Arc<RepoSignatures>>, SourceError> {
        Err(SourceError::Unavailable(
            "the trust database is unreachable".into(),
        ))
    }
}

#[tokio::test]
async fn unavailable_signatures_fail_closed_when_enforced_and_open_when_permissive() {
    let env = env_with(Some(Arc::new(Down)), |_| {}).await;
    env.push("org/app", "v1", b"layer").await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.code(), "UNAVAILABLE");
    assert!(
        r.message().contains("could not be evaluated"),
        "{}",
        r.message()
    );
    env.set_policy("org/app", json!({"mode": "permissive"}))
        .await;
    let r = env.pull("org/app", "v1", "reader").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.warning().contains("could not be evaluated"),
        "{}",
        r.warning()
    );
}

#[tokio::test]
async fn an_unreadable_stored_policy_fails_closed() {
    let env = env().await;
    env.push("org/app", "v1", b"layer").await;
    env.set_policy("org/app", json!({"mode": "disabled"})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    // Another writer (a newer version?) leaves a body this version cannot read.
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        env.dir.path().join("registry.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE policies SET body = '{\"mode\": \"enforced\", \"fancy\": 1}'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE policy_state SET version = version + 1")
        .execute(&pool)
        .await
        .unwrap();
    env.engine.store().refresh().await.unwrap();
    denied(&env.pull("org/app", "v1", "reader").await);
}

#[tokio::test]
async fn concurrent_identical_evaluations_are_computed_once() {
    let env = env_with(None, |o| o.decision_ttl = Duration::from_secs(600)).await;
    signed_v1(&env).await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"team": "qa"}]}),
    )
    .await;
    let before = env.engine.computations();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let app = env.app.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &app,
                Method::GET,
                "/v2/org/app/manifests/v1",
                Some("reader"),
                Body::empty(),
                &[],
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(env.engine.computations() - before, 1);
}

#[tokio::test]
async fn concurrent_lookups_convert_trust_data_once() {
    let env = env().await;
    signed_v1(&env).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let source = Arc::clone(env.engine.source());
        tasks.push(tokio::spawn(async move {
            source.signatures("org/app").await.unwrap().unwrap().version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.dedup();
    assert_eq!(versions.len(), 1, "{versions:?}");
}

// ---------------------------------------------------------------------- audit, API, CLI

#[tokio::test]
async fn decisions_are_audited_and_queryable() {
    let env = env().await;
    signed_v1(&env).await;
    env.push("org/app", "bad", b"unsigned").await;
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    assert_eq!(
        env.pull("org/app", "v1", "reader").await.status,
        StatusCode::OK
    );
    denied(&env.pull("org/app", "bad", "reader").await);
    env.engine.flush_audit().await;
    let r = env
        .get(
            "/api/v0/audit?repository=org/app&allowed=false",
            Some("admin"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let entries = r.json()["entries"].as_array().cloned().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(
        (
            e["tag"].as_str(),
            e["user"].as_str(),
            e["gate"].as_str(),
            e["allowed"].as_bool()
        ),
        (Some("bad"), Some("reader"), Some("pull"), Some(false))
    );
    assert!(
        e["reason"]
            .as_str()
            .unwrap()
            .contains("tag bad is not signed")
    );
    assert!(e["policyVersion"].as_i64().unwrap() >= 1);
    let all = env
        .get("/api/v0/audit?repository=org/app", Some("admin"))
        .await
        .json();
    let n = all["entries"].as_array().unwrap().len();
    assert!(n >= 2, "{all}");
    // Paging forward.
    let first = all["entries"][0]["id"].as_i64().unwrap();
    let next = env
        .get(
            &format!("/api/v0/audit?repository=org/app&after={first}&limit=1"),
            Some("admin"),
        )
        .await
        .json();
    assert_eq!(next["entries"].as_array().unwrap().len(), 1);
    assert!(next["entries"][0]["id"].as_i64().unwrap() > first);
    // Who may read it.
    assert_eq!(
        env.get("/api/v0/audit", Some("owner")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get("/api/v0/audit?repository=org/app", Some("owner"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/v0/audit?repository=org/app", Some("reader"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get("/api/v0/audit?allowed=maybe", Some("admin"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        env.get("/api/v0/audit?limit=-1", Some("admin"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn the_audit_queue_is_bounded_and_reasons_are_capped() {
    use notary_registry::policy::audit::{
        AuditEntry, AuditLog, AuditOptions, AuditQuery, MAX_REASON, query,
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(dir.path().join("a.db").to_str().unwrap())
        .await
        .unwrap();
    let log = AuditLog::start(
        db.clone(),
        AuditOptions {
            queue: 4,
            ..AuditOptions::default()
        },
    );
    let entry = |i: usize| AuditEntry {
        id: 0,
        at: 0,
        gate: "pull".into(),
        operation: "pull".into(),
        repository: "org/app".into(),
        tag: Some(format!("t{i}")),
        digest: None,
        user: None,
        allowed: false,
        warned: false,
        reason: "é".repeat(10_000),
        policy_version: 1,
    };
    // A flood while the writer cannot run (this test's runtime has one thread and the
    // loop never yields): the queue holds 4, the rest is dropped, nothing waits.
    for i in 0..1000 {
        log.record(entry(i));
    }
    log.flush().await;
    let rows = query(
        &db,
        &AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter()
            .all(|r| r.reason.len() <= MAX_REASON && !r.reason.is_empty())
    );
}

#[tokio::test]
async fn the_policy_api_checks_permissions_and_input() {
    let env = env().await;
    let p = json!({"mode": "enforced", "signers": [{"team": "qa"}]});
    assert_eq!(
        env.put_json("/api/v0/policies/global", None, &p)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.put_json("/api/v0/policies/global", Some("owner"), &p)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_json("/api/v0/policies/namespaces/org", Some("writer"), &p)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_json("/api/v0/policies/repositories/org/app", Some("writer"), &p)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_json("/api/v0/policies/repositories/org/app", Some("reader"), &p)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The organisation owner administers the namespace and its repositories.
    assert_eq!(
        env.put_json("/api/v0/policies/namespaces/org", Some("owner"), &p)
            .await
            .status,
        StatusCode::OK
    );
    let r = env
        .put_json("/api/v0/policies/repositories/org/app", Some("owner"), &p)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["updatedBy"], "owner");
    // Users administer their own namespace.
    assert_eq!(
        env.put_json("/api/v0/policies/namespaces/writer", Some("writer"), &p)
            .await
            .status,
        StatusCode::OK
    );
    // Reading.
    assert_eq!(
        env.get("/api/v0/policies/repositories/org/app", Some("reader"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        env.get("/api/v0/policies/repositories/org/other", Some("reader"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get("/api/v0/policies/global", Some("reader"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Bad input.
    for bad in [
        json!({"mode": "strict"}),
        json!({"mode": "enforced", "signers": [{"team": "qa", "role": "targets"}]}),
        json!({"mode": "enforced", "signers": [{"role": "releases"}]}),
        json!({"mode": "enforced", "tags": ["v/../x"]}),
        json!({"mode": "enforced", "bogus": true}),
    ] {
        let r = env
            .put_json("/api/v0/policies/repositories/org/app", Some("admin"), &bad)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
        assert_eq!(r.code(), "INVALID_INPUT");
    }
    let huge = "x".repeat(100 * 1024);
    let r = env
        .call(
            Method::PUT,
            "/api/v0/policies/global",
            Some("admin"),
            Body::from(huge),
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        env.put_json(
            "/api/v0/policies/repositories/Not..Valid",
            Some("admin"),
            &p
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    // History: who changed what, newest first.
    let h = env
        .get(
            "/api/v0/policies/repositories/org/app/history",
            Some("reader"),
        )
        .await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.text());
    let h = h.json()["history"].as_array().cloned().unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(
        (h[0]["action"].as_str(), h[0]["changedBy"].as_str()),
        (Some("set"), Some("owner"))
    );
    env.set_policy("org/app", json!({"mode": "permissive"}))
        .await;
    let h = env
        .get(
            "/api/v0/policies/repositories/org/app/history",
            Some("reader"),
        )
        .await
        .json();
    assert_eq!(h["history"][0]["policy"]["mode"], "permissive");
    assert_eq!(h["history"][0]["previous"]["mode"], "enforced");
    assert!(h["history"][0]["version"].as_i64() > h["history"][1]["version"].as_i64());
    // Key bindings: to oneself as repository administrator, to anyone as system
    // administrator; key ids are checked.
    let kid = "ab".repeat(32);
    let bind = |user: &str| json!({"keyId": kid, "user": user, "role": "targets/releases"});
    assert_eq!(
        env.put_json(
            "/api/v0/repositories/org/app/signers",
            Some("owner"),
            &bind("alice")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_json(
            "/api/v0/repositories/org/app/signers",
            Some("owner"),
            &bind("owner")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        env.put_json(
            "/api/v0/repositories/org/app/signers",
            Some("writer"),
            &bind("writer")
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.put_json(
            "/api/v0/repositories/org/app/signers",
            Some("admin"),
            &bind("alice")
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        env.put_json(
            "/api/v0/repositories/org/app/signers",
            Some("admin"),
            &bind("nobody")
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    let r = env
        .put_json(
            "/api/v0/repositories/org/app/signers",
            Some("admin"),
            &json!({"keyId": "XYZ", "user": "alice"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let list = env
        .get("/api/v0/repositories/org/app/signers", Some("reader"))
        .await
        .json();
    assert_eq!(list["signers"][0]["user"], "alice");
    let r = env
        .call(
            Method::DELETE,
            &format!("/api/v0/repositories/org/app/signers/{kid}"),
            Some("reader"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .call(
            Method::DELETE,
            &format!("/api/v0/repositories/org/app/signers/{kid}"),
            Some("owner"),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // The admin API's own repository routes still answer behind the policy routes.
    let r = env
        .get("/api/v0/repositories/org/app", Some("reader"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The OpenAPI document lists the policy routes.
    let doc = env.get("/api/v0/openapi.json", None).await.json();
    assert!(doc["paths"]["/api/v0/policies/repositories/{ns}/{repo}"]["put"].is_object());
    assert!(doc["components"]["schemas"]["Policy"].is_object());
}

#[tokio::test]
async fn a_policy_change_reaches_another_replica_on_the_same_database() {
    let env = env().await;
    env.push("org/app", "v1", b"layer").await;
    // A second registry process on the same database file.
    let db2 = Db::open_sqlite(env.dir.path().join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    let engine2 = PolicyEngine::new(
        db2.clone(),
        Arc::new(NotaryV1Source::new(
            notary_service().await,
            vec![],
            Duration::from_secs(1),
        )),
        EngineOptions::default(),
    )
    .await
    .unwrap();
    let who = Identity {
        user: Some("reader".into()),
        admin: false,
    };
    let allowed = |e: Arc<PolicyEngine>| {
        let who = who.clone();
        async move {
            e.evaluate("org/app", Some("v1"), None, &who, Gate::Pull)
                .await
                .unwrap()
                .allowed
        }
    };
    assert!(allowed(Arc::clone(&engine2)).await);
    env.set_policy("org/app", json!({"mode": "enforced"})).await;
    // Seen at once here, by the poll there.
    assert!(!allowed(Arc::clone(&env.engine)).await);
    let start = Instant::now();
    while allowed(Arc::clone(&engine2)).await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the second replica never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "policy change seen by the second replica after {:?}",
        start.elapsed()
    );
    let _ = &env.reg;
}

#[tokio::test]
async fn a_policy_change_reaches_another_replica_on_postgresql() {
    let pg = notary_tests::Postgres::start();
    let url = pg.database("policy");
    let a = Db::open_postgres(&url, 4).await.unwrap();
    let b = Db::open_postgres(&url, 4).await.unwrap();
    let source = || -> Arc<dyn SignatureSource> { Arc::new(Down) };
    let ea = PolicyEngine::new(a, source(), EngineOptions::default())
        .await
        .unwrap();
    let eb = PolicyEngine::new(b, source(), EngineOptions::default())
        .await
        .unwrap();
    let mut spec = notary_registry::policy::model::PolicySpec::new(
        notary_registry::policy::model::Mode::Enforced,
    );
    spec.exempt_users.push("ci".into());
    let scope = notary_registry::policy::model::Scope::Repository("org/app".into());
    let stored = ea.store().set(&scope, &spec, "admin").await.unwrap();
    assert_eq!(ea.store().snapshot().version, stored.version);
    let start = Instant::now();
    while eb.store().snapshot().version < stored.version {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the second replica never saw the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "policy change seen by the PostgreSQL replica after {:?}",
        start.elapsed()
    );
    let seen = eb.store().snapshot();
    assert_eq!(seen.effective("org/app").unwrap().spec, spec);
    // The history and the audit tables work on PostgreSQL too.
    let h = eb.store().history(&scope, 10).await.unwrap();
    assert_eq!(h[0].changed_by, "admin");
    let who = Identity {
        user: Some("dev".into()),
        admin: false,
    };
    let err = eb
        .evaluate(
            "org/app",
            Some("v1"),
            Some(&format!("sha256:{}", "0".repeat(64))),
            &who,
            Gate::Pull,
        )
        .await;
    assert!(err.is_err(), "enforced + unavailable source fails closed");
    let v = eb
        .evaluate(
            "org/app",
            Some("v1"),
            Some(&format!("sha256:{}", "0".repeat(64))),
            &Identity {
                user: Some("ci".into()),
                admin: false,
            },
            Gate::Pull,
        )
        .await
        .unwrap();
    assert!(v.allowed);
    eb.flush_audit().await;
    let q = notary_registry::policy::audit::AuditQuery {
        repository: Some("org/app".into()),
        allowed: Some(true),
        after: None,
        limit: 10,
    };
    let rows = notary_registry::policy::audit::query(eb.store().db(), &q)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].user.as_deref(), Some("ci"));
}

fn cli(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_notary-registry"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("NOTARY_REGISTRY_LOG_LEVEL", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_sets_shows_and_lists_history() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = cli(
        dir.path(),
        &[
            "policy",
            "set",
            "org/app",
            "--mode",
            "enforced",
            "--require-team",
            "qa",
            "--require-role",
            "targets/releases",
            "--min",
            "1",
            "--gates",
            "pull,push,deploy",
            "--tags",
            "v*",
            "--exempt-tag",
            "latest",
            "--digest-pulls",
            "signed",
            "--deny-expired",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("the policy of org/app set (version 1)"),
        "{out}"
    );
    let (ok, out, err) = cli(dir.path(), &["policy", "show", "org/app"]);
    assert!(ok, "{err}");
    assert!(out.contains("repository org/app\tversion 1"), "{out}");
    let shown: Value = serde_json::from_str(out.split_once('\n').unwrap().1).unwrap();
    assert_eq!(
        shown,
        json!({"mode": "enforced", "gates": ["pull", "push", "deploy"], "signers": [{"team": "qa", "min": 1}, {"role": "targets/releases", "min": 1}],
               "tags": ["v*"], "exemptTags": ["latest"], "exemptUsers": [], "exemptTeams": [], "digestPulls": "signed", "denyExpired": true,
               "immutableSignedTags": false, "writersReadQuarantined": true})
    );
    let (ok, _, _) = cli(
        dir.path(),
        &[
            "policy",
            "set",
            "--namespace",
            "org",
            "--mode",
            "permissive",
        ],
    );
    assert!(ok);
    let (ok, out, _) = cli(
        dir.path(),
        &[
            "policy",
            "set",
            "org/app",
            "--mode",
            "permissive",
            "--require-team",
            "security:2",
        ],
    );
    assert!(ok, "{out}");
    let (ok, out, _) = cli(dir.path(), &["policy", "history", "org/app"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("v3\t") && lines[0].contains("mode permissive"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("v1\t") && lines[1].contains("(local administrator)"),
        "{out}"
    );
    let (ok, _, err) = cli(
        dir.path(),
        &["policy", "set", "org/app", "--mode", "strict"],
    );
    assert!(
        !ok && err.contains("disabled, permissive or enforced"),
        "{err}"
    );
    let (ok, _, err) = cli(dir.path(), &["policy", "show"]);
    assert!(!ok && err.contains("--namespace NS or --global"), "{err}");
    let (ok, _, _) = cli(dir.path(), &["policy", "delete", "org/app"]);
    assert!(ok);
    let (ok, out, _) = cli(dir.path(), &["policy", "show", "org/app", "--effective"]);
    assert!(ok && out.starts_with("namespace org\t"), "{out}");
}

// ---------------------------------------------------------------------- deploy gate, end to end

async fn admission(app: &Router, path: &str, object: &Value) -> Value {
    let body = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "4b0c1f0e-0000-4000-8000-000000000001",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "web", "namespace": "default", "operation": "CREATE",
        "userInfo": {"username": "kube", "groups": ["system:authenticated"]},
        "object": object, "oldObject": null, "dryRun": false}});
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["response"]["uid"], body["request"]["uid"]);
    v["response"].clone()
}

/// The admission webhook on the real engine and real trust data: a Pod whose images are
/// signed by qa AND security is admitted and pinned to the signed digest; one with an
/// image signed by qa only, or unsigned, is refused naming it.
#[tokio::test]
async fn the_admission_webhook_enforces_real_signatures() {
    let env = env().await;
    let s = signed_v1(&env).await;
    env.push("org/app", "unsigned", b"no signature").await;
    env.set_policy(
        "org/app",
        json!({"mode": "enforced", "signers": [{"team": "qa"}, {"team": "security"}]}),
    )
    .await;
    let settings = notary_registry::admission::Settings {
        hosts: vec![PREFIXES[0].to_owned()],
        ..notary_registry::admission::Settings::default()
    };
    let hook = notary_registry::admission::router(
        Arc::clone(&env.reg),
        Arc::clone(&env.engine) as Arc<dyn ImagePolicy>,
        Arc::new(settings),
    );
    let pod = |images: &[&str]| {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, im)| json!({"name": format!("c{i}"), "image": im}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": containers}})
    };
    let v1 = format!("{}/org/app:v1", PREFIXES[0]);
    let unsigned = format!("{}/org/app:unsigned", PREFIXES[0]);
    // Signed by qa only: refused with the reason.
    let r = admission(&hook, "/admission/validate", &pod(&[&v1])).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap_or("").to_owned();
    assert!(msg.contains("security"), "{msg}");
    // security signs too: admitted, and in mutate mode pinned to the signed digest.
    env.sign(
        &s.trust,
        "bob",
        &s.bob,
        &["targets/bob", "targets/releases"],
        "v1",
        (&s.d1, s.s1),
    )
    .await;
    let r = admission(&hook, "/admission/mutate", &pod(&[&v1])).await;
    assert_eq!(r["allowed"], true, "{r}");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().unwrap())
        .unwrap();
    let patch = String::from_utf8(patch).unwrap();
    assert!(
        patch.contains(&format!("{}/org/app@{}", PREFIXES[0], s.d1)),
        "{patch}"
    );
    // Partly signed: the unsigned container is named, the object refused.
    let r = admission(&hook, "/admission/mutate", &pod(&[&v1, &unsigned])).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap_or("").to_owned();
    assert!(
        msg.contains("org/app:unsigned") && !msg.contains("c0:"),
        "{msg}"
    );
    assert!(r["patch"].is_null());
}
