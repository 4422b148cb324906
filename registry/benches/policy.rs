//! The pull gate's own cost: one enforced decision (team policy: qa AND security, both
//! satisfied) for a signed tag, from the cache (with and without queueing an audit
//! entry), computed afresh (team keys from the database, or cached), the one-off
//! conversion of verified trust data (signature checks) per trust data version, and
//! the whole manifest GET by tag route in process with and without the policy.
//!
//! `cargo bench -p notary-registry --bench policy`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use notary_core::metadata::{Bytes as MetaBytes, FileMeta};
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::{Algorithm, Gun, PrivateKey, RoleName};
use notary_registry::access::{Decision, Identity, Operation, Policy, PolicyRequest};
use notary_registry::auth::store::AuthStore;
use notary_registry::meta::{Db, NewManifest};
use notary_registry::policy::source::{NotaryV1Source, from_notary};
use notary_registry::policy::{EngineOptions, PolicyEngine};
use notary_server::service::Service;
use time::OffsetDateTime;

const GUN: &str = "127.0.0.1:5000/org/app";

struct Setup {
    cached: Arc<PolicyEngine>,
    uncached: Arc<PolicyEngine>,
    keys_cached: Arc<PolicyEngine>,
    app: axum::Router,
    app_no_policy: axum::Router,
    app_no_audit: axum::Router,
    quiet: Arc<PolicyEngine>,
    notary: Arc<Service>,
    digest: String,
    _dir: tempfile::TempDir,
}

async fn publish(
    notary: &Service,
    gun: &Gun,
    keys: &[&PrivateKey],
    edit: impl FnOnce(&mut RepoEditor),
) {
    let before = notary.trusted(gun).await.unwrap();
    let mut editor = RepoEditor::from_repository(&before);
    edit(&mut editor);
    let mut ring = KeyRing::new();
    for k in keys {
        ring.add(*k);
    }
    let files = editor.sign(&ring, OffsetDateTime::now_utc()).unwrap();
    notary.update(gun, files.files).await.unwrap();
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_sqlite(dir.path().join("registry.db").to_str().unwrap())
        .await
        .unwrap();
    // Users, teams.
    let auth = AuthStore::new(db.clone());
    auth.create_user("alice", "x", false).await.unwrap();
    auth.create_user("bob", "x", false).await.unwrap();
    auth.create_org("org").await.unwrap();
    auth.create_team("org", "qa", "").await.unwrap();
    auth.create_team("org", "security", "").await.unwrap();
    auth.add_team_member("org", "qa", "alice").await.unwrap();
    auth.add_team_member("org", "security", "bob")
        .await
        .unwrap();
    // A manifest tagged v1.
    let body = bytes::Bytes::from_static(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#);
    let digest =
        notary_registry::names::Digest::of(notary_registry::names::Algorithm::Sha256, &body)
            .to_string();
    let m = NewManifest {
        digest: digest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject: None,
        annotations: None,
        body: body.clone(),
        required_blobs: Vec::new(),
        optional_blobs: Vec::new(),
        children: Vec::new(),
        children_required: false,
    };
    db.put_manifest("org/app", &m, &["v1".to_owned()])
        .await
        .map_err(|_| "put")
        .unwrap();
    // Trust data: signers alice and bob, both sign v1.
    let store = notary_server::storage::Store::memory().await.unwrap();
    let trust = notary_server::trust::LocalTrust::new(
        store.clone(),
        Algorithm::EcdsaP256,
        zeroize::Zeroizing::new("p".into()),
    );
    let notary = Arc::new(Service::new(store, Arc::new(trust)));
    let gun = Gun::new(GUN).unwrap();
    let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let sn = notary
        .get_or_create_key(&gun, &RoleName::snapshot())
        .await
        .unwrap();
    let ts = notary
        .get_or_create_key(&gun, &RoleName::timestamp())
        .await
        .unwrap();
    let mut editor = RepoEditor::create(
        gun.clone(),
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
    notary
        .update(
            &gun,
            editor.sign(&ring, OffsetDateTime::now_utc()).unwrap().files,
        )
        .await
        .unwrap();
    let alice = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let bob = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    for (name, k) in [("alice", &alice), ("bob", &bob)] {
        let public = k.public().clone();
        publish(&notary, &gun, &[&targets], |e| {
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
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        MetaBytes(hex::decode(digest.trim_start_matches("sha256:")).unwrap()),
    );
    let meta = FileMeta {
        custom: None,
        hashes,
        length: body.len() as u64,
    };
    for (name, k) in [("alice", &alice), ("bob", &bob)] {
        let before = notary.trusted(&gun).await.unwrap();
        publish(&notary, &gun, &[k], |e| {
            for role in [format!("targets/{name}"), "targets/releases".to_owned()] {
                e.add_target(&RoleName::new(&role).unwrap(), "v1", meta.clone())
                    .unwrap();
            }
        })
        .await;
        let after = notary.trusted(&gun).await.unwrap();
        notary_registry::policy::keys::record_update(&db, GUN, name, Some(&before), &after)
            .await
            .unwrap();
    }
    let engine = |ttl: Duration, keys_ttl: Duration| {
        let db = db.clone();
        let notary = Arc::clone(&notary);
        async move {
            let options = EngineOptions {
                decision_ttl: ttl,
                directory_ttl: keys_ttl,
                ..EngineOptions::default()
            };
            let source = Arc::new(NotaryV1Source::new(
                notary,
                vec!["127.0.0.1:5000".into()],
                options.negative_ttl,
            ));
            PolicyEngine::new(db, source, options).await.unwrap()
        }
    };
    let hour = Duration::from_secs(3600);
    let cached = engine(hour, hour).await;
    let uncached = engine(Duration::ZERO, Duration::ZERO).await;
    let keys_cached = engine(Duration::ZERO, hour).await;
    let mut spec = notary_registry::policy::model::PolicySpec::new(
        notary_registry::policy::model::Mode::Enforced,
    );
    spec.signers = vec![
        notary_registry::policy::model::SignerSpec::team("qa", 1),
        notary_registry::policy::model::SignerSpec::team("security", 1),
    ];
    cached
        .store()
        .set(
            &notary_registry::policy::model::Scope::Repository("org/app".into()),
            &spec,
            "bench",
        )
        .await
        .unwrap();
    uncached.store().refresh().await.unwrap();
    keys_cached.store().refresh().await.unwrap();
    // The whole route: manifest GET by tag through the application (no socket).
    let store =
        Arc::new(notary_registry::storage::fs::FsStore::open(&dir.path().join("blobs")).unwrap());
    let reg = Arc::new(notary_registry::Registry::new(
        db.clone(),
        store,
        Arc::new(notary_registry::access::Open),
        Arc::clone(&cached) as Arc<dyn Policy>,
        notary_registry::Options::default(),
    ));
    let app = notary_registry::server::app(reg);
    let registry = |policy: Arc<dyn Policy>| {
        let store = Arc::new(
            notary_registry::storage::fs::FsStore::open(&dir.path().join("blobs")).unwrap(),
        );
        notary_registry::server::app(Arc::new(notary_registry::Registry::new(
            db.clone(),
            store,
            Arc::new(notary_registry::access::Open),
            policy,
            notary_registry::Options::default(),
        )))
    };
    let app_no_policy = registry(Arc::new(notary_registry::access::AllowAll));
    let quiet = {
        let options = EngineOptions {
            audit_allowed_pulls: false,
            decision_ttl: hour,
            directory_ttl: hour,
            ..EngineOptions::default()
        };
        let source = Arc::new(NotaryV1Source::new(
            Arc::clone(&notary),
            vec!["127.0.0.1:5000".into()],
            options.negative_ttl,
        ));
        PolicyEngine::new(db.clone(), source, options)
            .await
            .unwrap()
    };
    let app_no_audit = registry(Arc::clone(&quiet) as Arc<dyn Policy>);
    Setup {
        cached,
        uncached,
        keys_cached,
        app,
        app_no_policy,
        app_no_audit,
        quiet,
        notary,
        digest,
        _dir: dir,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let s = rt.block_on(setup());
    let identity = Identity {
        user: Some("reader".into()),
        admin: false,
    };
    let request = PolicyRequest {
        repository: "org/app",
        tag: Some("v1"),
        digest: &s.digest,
        identity: &identity,
        operation: Operation::Pull,
    };
    for e in [&s.cached, &s.uncached, &s.keys_cached] {
        let d = rt.block_on(e.decide(&request));
        assert_eq!(
            d,
            Decision::Allow,
            "the benchmark decision must be an allowed, enforced one"
        );
    }
    let mut g = c.benchmark_group("policy_pull_gate");
    let get = || {
        axum::http::Request::builder()
            .uri("/v2/org/app/manifests/v1")
            .body(axum::body::Body::empty())
            .unwrap()
    };
    // Without audit writes first: the audit writer drains its queue in the background
    // and would slow whatever runs next.
    for (name, app) in [
        ("manifest_get_by_tag_route_without_policy", &s.app_no_policy),
        (
            "manifest_get_by_tag_route_no_audit_of_allowed_pulls",
            &s.app_no_audit,
        ),
        ("manifest_get_by_tag_route", &s.app),
    ] {
        let status = rt
            .block_on(tower::ServiceExt::oneshot(app.clone(), get()))
            .unwrap()
            .status();
        assert_eq!(status, axum::http::StatusCode::OK);
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(tower::ServiceExt::oneshot(app.clone(), get()))
                    .map(|r| r.status())
            })
        });
    }
    g.bench_function("enforced_cached_without_audit", |b| {
        b.iter(|| rt.block_on(s.quiet.decide(&request)))
    });
    assert_eq!(
        s.quiet.computations(),
        1,
        "every decision after the first came from the cache"
    );
    let drain = || {
        rt.block_on(async {
            s.cached.flush_audit().await;
            s.uncached.flush_audit().await;
            s.keys_cached.flush_audit().await;
        })
    };
    drain();
    g.bench_function("enforced_cached", |b| {
        b.iter(|| rt.block_on(s.cached.decide(&request)))
    });
    drain();
    g.bench_function("enforced_uncached", |b| {
        b.iter(|| rt.block_on(s.uncached.decide(&request)))
    });
    drain();
    g.bench_function("enforced_uncached_keys_cached", |b| {
        b.iter(|| rt.block_on(s.keys_cached.decide(&request)))
    });
    drain();
    let repo = rt
        .block_on(s.notary.trusted(&Gun::new(GUN).unwrap()))
        .unwrap();
    g.bench_function("trust_data_conversion", |b| {
        b.iter(|| from_notary(&repo, 1))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
