//! The deploy gate: AdmissionReview v1 requests driven in process (tower `oneshot`)
//! against the admission webhook, with real images pushed into the registry so tags
//! resolve to the digests it serves, and a policy with deterministic verdicts (a set of
//! signed (repository, tag, digest)). The real policy engine is tested end to end after
//! the merge.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use notary_registry::access::{AllowAll, Identity, Open};
use notary_registry::admission::{
    self, AdmissionConfig, CallerAuth, Mode, OtherRegistries, Settings,
};
use notary_registry::meta::Db;
use notary_registry::names::{Algorithm, Digest};
use notary_registry::policy::{Gate, ImagePolicy, PolicyError, Verdict};
use notary_registry::storage::fs::FsStore;
use notary_registry::{Options, Registry};
use serde_json::{Value, json};
use tower::ServiceExt as _;

const HOST: &str = "127.0.0.1:5000";

/// One recorded evaluation: repository, tag, digest, user, gate.
type Call = (String, Option<String>, Option<String>, Option<String>, Gate);

/// Deterministic verdicts: allowed when (repo, tag, digest) is signed (by digest: when
/// some signed tag points at it), allowed with a warning for the permissive tags.
#[derive(Default)]
struct TestPolicy {
    signed: HashSet<(String, String, String)>,
    permissive: HashSet<(String, String)>,
    /// Never answers (a stuck trust server).
    hang: bool,
    /// Fails (trust data unreadable).
    fail: bool,
    calls: Mutex<Vec<Call>>,
}

#[async_trait]
impl ImagePolicy for TestPolicy {
    async fn evaluate(
        &self,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        identity: &Identity,
        gate: Gate,
    ) -> Result<Verdict, PolicyError> {
        self.calls.lock().unwrap().push((
            repository.to_owned(),
            tag.map(str::to_owned),
            digest.map(str::to_owned),
            identity.user.clone(),
            gate,
        ));
        if self.hang {
            std::future::pending::<()>().await;
        }
        if self.fail {
            return Err(PolicyError(
                "trust data for the repository is unreadable".into(),
            ));
        }
        let digest = digest.unwrap_or_default().to_owned();
        let verdict = |allowed: bool, warn: bool, reason: String| Verdict {
            allowed,
            warn,
            digest: Some(digest.clone()),
            reason,
            policy_version: 7,
        };
        Ok(match tag {
            Some(t)
                if self
                    .signed
                    .contains(&(repository.to_owned(), t.to_owned(), digest.clone())) =>
            {
                verdict(true, false, format!("tag {t} is signed"))
            }
            Some(t)
                if self
                    .permissive
                    .contains(&(repository.to_owned(), t.to_owned())) =>
            {
                verdict(
                    true,
                    true,
                    format!("tag {t} is not signed (permissive policy)"),
                )
            }
            Some(t) => verdict(
                false,
                false,
                format!("tag {t} of {repository} is not signed by team qa"),
            ),
            None if self
                .signed
                .iter()
                .any(|(r, _, d)| r == repository && *d == digest) =>
            {
                verdict(true, false, "the digest is signed".into())
            }
            None => verdict(
                false,
                false,
                format!("{digest} is not the signed target of any tag"),
            ),
        })
    }
}

struct Env {
    reg: Arc<Registry>,
    /// org/app:v1 (signed), org/app:v2 (unsigned), org/app:v3 (permissive), org/tools:1.0 (signed).
    v1: String,
    v2: String,
    v3: String,
    tools: String,
    _dir: tempfile::TempDir,
}

impl Env {
    fn policy(&self) -> TestPolicy {
        TestPolicy {
            signed: [
                ("org/app".to_owned(), "v1".to_owned(), self.v1.clone()),
                ("org/tools".to_owned(), "1.0".to_owned(), self.tools.clone()),
            ]
            .into(),
            permissive: [("org/app".to_owned(), "v3".to_owned())].into(),
            ..TestPolicy::default()
        }
    }

    fn hook(&self, policy: Arc<dyn ImagePolicy>, settings: Settings) -> Router {
        admission::router(Arc::clone(&self.reg), policy, Arc::new(settings))
    }

    /// The webhook with the test policy and `settings` over [`settings()`].
    fn webhook(&self, settings: Settings) -> (Router, Arc<TestPolicy>) {
        let p = Arc::new(self.policy());
        (self.hook(p.clone(), settings), p)
    }
}

fn settings() -> Settings {
    Settings {
        hosts: vec![HOST.to_owned(), "registry.example.com".to_owned()],
        ..Settings::default()
    }
}

fn sha256(data: &[u8]) -> String {
    Digest::of(Algorithm::Sha256, data).to_string()
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
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
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    (status, body)
}

async fn push_blob(app: &Router, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/v2/{repo}/blobs/uploads/"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = resp.headers()["location"].to_str().unwrap().to_owned();
    let len = data.len().to_string();
    let (status, body) = call(
        app,
        Method::PUT,
        &format!("{loc}?digest={d}"),
        &[("content-length", &len)],
        data.to_vec(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    d
}

/// Pushes a one-layer image under `repo:tag`; returns the manifest digest.
async fn push_image(app: &Router, repo: &str, tag: &str, layer: &[u8]) -> String {
    let cfg = br#"{"architecture":"amd64","os":"linux"}"#;
    let c = push_blob(app, repo, cfg).await;
    let l = push_blob(app, repo, layer).await;
    let m = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    let (status, body) = call(
        app,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
        m.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    sha256(&m)
}

async fn env() -> Env {
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
    let api = notary_registry::server::app(Arc::clone(&reg));
    let v1 = push_image(&api, "org/app", "v1", b"layer one").await;
    let v2 = push_image(&api, "org/app", "v2", b"layer two").await;
    let v3 = push_image(&api, "org/app", "v3", b"layer three").await;
    let tools = push_image(&api, "org/tools", "1.0", b"tools layer").await;
    Env {
        reg,
        v1,
        v2,
        v3,
        tools,
        _dir: dir,
    }
}

fn img(s: &str) -> String {
    format!("{HOST}/{s}")
}

fn containers(list: &[(&str, &str)]) -> Value {
    list.iter()
        .map(|(n, i)| json!({"name": n, "image": i, "imagePullPolicy": "IfNotPresent"}))
        .collect()
}

fn pod_spec(main: &[(&str, &str)], init: &[(&str, &str)]) -> Value {
    let mut spec = json!({"containers": containers(main), "restartPolicy": "Always"});
    if !init.is_empty() {
        spec["initContainers"] = containers(init);
    }
    spec
}

fn pod(main: &[(&str, &str)], init: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "apps", "labels": {"app": "web"}},
           "spec": pod_spec(main, init), "status": {}})
}

fn deployment(main: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "apps"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec(main, &[])}}})
}

fn cronjob(main: &[(&str, &str)]) -> Value {
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": "apps"},
           "spec": {"schedule": "0 3 * * *",
                    "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                        "containers": containers(main)}}}}}})
}

/// An AdmissionReview for `object` (its kind read from it).
fn review(operation: &str, object: &Value, old: Option<&Value>) -> Value {
    let o = if object.is_null() {
        old.unwrap()
    } else {
        object
    };
    let api = o["apiVersion"].as_str().unwrap();
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let kind = o["kind"].as_str().unwrap();
    let resource = format!("{}s", kind.to_lowercase());
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": o["metadata"]["name"], "namespace": o["metadata"]["namespace"],
        "operation": operation,
        "userInfo": {"username": "alice", "uid": "u-1", "groups": ["system:authenticated"]},
        "object": object, "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": false, "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}})
}

async fn post(app: &Router, path: &str, body: &Value) -> Value {
    let (status, bytes) = call(
        app,
        Method::POST,
        path,
        &[("content-type", "application/json")],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], body["request"]["uid"], "uid echoed");
    v["response"].clone()
}

async fn mutate(app: &Router, body: &Value) -> Value {
    post(app, "/admission/mutate", body).await
}

async fn validate(app: &Router, body: &Value) -> Value {
    post(app, "/admission/validate", body).await
}

/// Decodes the response's base64 JSON patch and applies it to `object`.
fn patched(object: &Value, response: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    doc
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_denied(response: &Value, code: u64) -> String {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], code, "{response}");
    assert!(response.get("patch").is_none(), "a denial carries no patch");
    message(response)
}

#[tokio::test]
async fn pod_with_signed_images_is_pinned_to_the_evaluated_digests() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let object = pod(
        &[("web", &img("org/app:v1"))],
        &[("setup", &img("org/tools:1.0"))],
    );
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none());
    let out = patched(&object, &r);
    assert_eq!(
        out["spec"]["containers"][0]["image"],
        format!("{HOST}/org/app@{}", e.v1)
    );
    assert_eq!(
        out["spec"]["initContainers"][0]["image"],
        format!("{HOST}/org/tools@{}", e.tools)
    );
    // Nothing else changed.
    let mut back = out.clone();
    back["spec"]["containers"][0]["image"] = json!(img("org/app:v1"));
    back["spec"]["initContainers"][0]["image"] = json!(img("org/tools:1.0"));
    assert_eq!(back, object);
    let mut calls = policy.calls.lock().unwrap().clone();
    calls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        calls,
        [
            (
                "org/app".into(),
                Some("v1".into()),
                Some(e.v1.clone()),
                Some("alice".into()),
                Gate::Deploy
            ),
            (
                "org/tools".into(),
                Some("1.0".into()),
                Some(e.tools.clone()),
                Some("alice".into()),
                Gate::Deploy
            ),
        ]
    );
}

#[tokio::test]
async fn pod_with_an_unsigned_image_is_denied_naming_it() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = pod(&[("web", &img("org/app:v2"))], &[]);
    for r in [
        mutate(&hook, &review("CREATE", &object, None)).await,
        validate(&hook, &review("CREATE", &object, None)).await,
    ] {
        let m = assert_denied(&r, 403);
        assert!(
            m.contains(&format!("container web: image {HOST}/org/app:v2 ({}) refused: tag v2 of org/app is not signed by team qa", e.v2)),
            "{m}"
        );
        assert_eq!(r["status"]["reason"], "Forbidden");
    }
}

#[tokio::test]
async fn partly_signed_pod_is_denied_naming_only_the_refused_image() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = pod(
        &[("web", &img("org/app:v1")), ("sidecar", &img("org/app:v2"))],
        &[("setup", &img("org/app:v2"))],
    );
    let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 403);
    assert!(m.starts_with("2 of 3 image reference(s) refused"), "{m}");
    assert!(
        m.contains("container sidecar: image 127.0.0.1:5000/org/app:v2"),
        "{m}"
    );
    assert!(
        m.contains("init container setup: image 127.0.0.1:5000/org/app:v2"),
        "{m}"
    );
    assert!(!m.contains("container web"), "{m}");
}

#[tokio::test]
async fn deployment_in_mutate_and_validate_modes() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = deployment(&[
        ("web", &img("org/app:v1")),
        ("tools", &img("org/tools:1.0")),
    ]);
    let body = review("CREATE", &object, None);
    let r = mutate(&hook, &body).await;
    assert_eq!(r["allowed"], true);
    let ops: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ops[0],
        json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": format!("{HOST}/org/app@{}", e.v1)})
    );
    let out = patched(&object, &r);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][1]["image"],
        format!("{HOST}/org/tools@{}", e.tools)
    );
    let r = validate(&hook, &body).await;
    assert_eq!(r["allowed"], true);
    assert!(
        r.get("patch").is_none() && r.get("patchType").is_none(),
        "validate never patches: {r}"
    );

    let partly = deployment(&[("web", &img("org/app:v1")), ("tools", &img("org/app:v2"))]);
    for r in [
        mutate(&hook, &review("CREATE", &partly, None)).await,
        validate(&hook, &review("CREATE", &partly, None)).await,
    ] {
        let m = assert_denied(&r, 403);
        assert!(
            m.contains("container tools: image 127.0.0.1:5000/org/app:v2")
                && !m.contains("container web"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn cronjob_in_mutate_and_validate_modes() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = cronjob(&[("job", &img("org/tools:1.0"))]);
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    let out = patched(&object, &r);
    assert_eq!(
        out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{HOST}/org/tools@{}", e.tools)
    );
    let r = validate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    let unsigned = cronjob(&[("job", &img("org/app:v2"))]);
    let m = assert_denied(
        &validate(&hook, &review("CREATE", &unsigned, None)).await,
        403,
    );
    assert!(
        m.contains("container job: image 127.0.0.1:5000/org/app:v2"),
        "{m}"
    );
    let partly = cronjob(&[
        ("job", &img("org/tools:1.0")),
        ("report", &img("org/app:v2")),
    ]);
    let m = assert_denied(&mutate(&hook, &review("CREATE", &partly, None)).await, 403);
    assert!(
        m.contains("container report") && !m.contains("container job"),
        "{m}"
    );
}

#[tokio::test]
async fn other_workload_kinds_are_checked() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    for (api, kind) in [
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("v1", "ReplicationController"),
    ] {
        let mut object = deployment(&[("web", &img("org/app:v2"))]);
        object["apiVersion"] = json!(api);
        object["kind"] = json!(kind);
        let m = assert_denied(
            &validate(&hook, &review("CREATE", &object, None)).await,
            403,
        );
        assert!(m.contains("container web"), "{kind}: {m}");
    }
}

#[tokio::test]
async fn validate_mode_never_patches_and_the_plain_endpoint_follows_the_mode() {
    let e = env().await;
    let object = pod(&[("web", &img("org/app:v1"))], &[]);
    let body = review("CREATE", &object, None);
    let (hook, _) = e.webhook(Settings {
        mode: Mode::Validate,
        ..settings()
    });
    for path in ["/admission", "/admission/mutate", "/admission/validate"] {
        let r = post(&hook, path, &body).await;
        assert_eq!(r["allowed"], true);
        assert!(r.get("patch").is_none(), "{path}: {r}");
    }
    let (hook, _) = e.webhook(settings());
    let r = post(&hook, "/admission", &body).await;
    assert_eq!(
        patched(&object, &r)["spec"]["containers"][0]["image"],
        format!("{HOST}/org/app@{}", e.v1)
    );
}

#[tokio::test]
async fn mutate_pods_only_leaves_pod_templates_alone() {
    let e = env().await;
    let (hook, _) = e.webhook(Settings {
        mutate_pods_only: true,
        ..settings()
    });
    let r = mutate(
        &hook,
        &review("CREATE", &deployment(&[("web", &img("org/app:v1"))]), None),
    )
    .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none(), "{r}");
    let object = pod(&[("web", &img("org/app:v1"))], &[]);
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(
        patched(&object, &r)["spec"]["containers"][0]["image"],
        format!("{HOST}/org/app@{}", e.v1)
    );
}

#[tokio::test]
async fn other_registries_are_denied_by_default_and_allowed_when_configured() {
    let e = env().await;
    let object = pod(
        &[
            ("web", &img("org/app:v1")),
            ("proxy", "nginx:1.27"),
            ("cache", "quay.io/org/cache:2"),
        ],
        &[],
    );
    let (hook, policy) = e.webhook(settings());
    let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 403);
    assert!(
        m.contains(
            "container proxy: image nginx:1.27 refused: registry docker.io is not served here"
        ),
        "{m}"
    );
    assert!(
        m.contains("container cache: image quay.io/org/cache:2 refused: registry quay.io"),
        "{m}"
    );
    assert!(m.contains("127.0.0.1:5000, registry.example.com"), "{m}");
    assert_eq!(
        policy.calls.lock().unwrap().len(),
        1,
        "foreign images are not evaluated"
    );

    let (hook, _) = e.webhook(Settings {
        other_registries: OtherRegistries::Allow,
        ..settings()
    });
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let out = patched(&object, &r);
    assert_eq!(
        out["spec"]["containers"][0]["image"],
        format!("{HOST}/org/app@{}", e.v1)
    );
    assert_eq!(
        out["spec"]["containers"][1]["image"], "nginx:1.27",
        "foreign images are not rewritten"
    );
}

#[tokio::test]
async fn registry_hosts_match_case_insensitively() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = pod(&[("web", "Registry.Example.COM/org/app:v1")], &[]);
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true, "{r}");
    // The rewrite keeps the name as written.
    assert_eq!(
        patched(&object, &r)["spec"]["containers"][0]["image"],
        format!("Registry.Example.COM/org/app@{}", e.v1)
    );
}

#[tokio::test]
async fn malformed_references_are_denied() {
    let e = env().await;
    let (hook, policy) = e.webhook(Settings {
        other_registries: OtherRegistries::Allow,
        ..settings()
    });
    for bad in [
        "127.0.0.1:5000/Org/App:v1",
        "127.0.0.1:5000/org/app:v1:v2",
        "nginx@sha256:1234",
        "bad image",
        "",
    ] {
        let object = pod(&[("web", bad)], &[]);
        let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 403);
        assert!(
            m.contains(&format!(
                "container web: image {bad} refused: not a valid image reference"
            )),
            "{bad:?}: {m}"
        );
    }
    // A non-string image is a malformed object.
    let mut object = pod(&[("web", "x")], &[]);
    object["spec"]["containers"][0]["image"] = json!(42);
    let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 403);
    assert!(
        m.contains("spec.containers[0].image is not a string"),
        "{m}"
    );
    assert!(policy.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn digest_references_are_evaluated_without_tag_and_not_rewritten() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let object = pod(&[("web", &format!("{HOST}/org/app@{}", e.v1))], &[]);
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("patch").is_none());
    assert_eq!(policy.calls.lock().unwrap()[0].1, None);
    assert_eq!(
        policy.calls.lock().unwrap()[0].2.as_deref(),
        Some(e.v1.as_str())
    );

    // Unsigned digest: denied with the reason.
    let object = pod(&[("web", &format!("{HOST}/org/app@{}", e.v2))], &[]);
    let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 403);
    assert!(m.contains("is not the signed target of any tag"), "{m}");

    // Tag and digest: both go to the policy; the digest is what runs.
    let (hook, policy) = e.webhook(settings());
    let object = pod(&[("web", &format!("{HOST}/org/app:v1@{}", e.v1))], &[]);
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    let c = policy.calls.lock().unwrap()[0].clone();
    assert_eq!(
        (c.1.as_deref(), c.2.as_deref()),
        (Some("v1"), Some(e.v1.as_str()))
    );
}

#[tokio::test]
async fn unknown_tags_repositories_and_digests_are_denied() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let missing = format!("sha256:{}", "0".repeat(64));
    for (image, why) in [
        (
            img("org/app:v9"),
            "tag v9 does not exist in repository org/app".to_owned(),
        ),
        (
            img("org/nothing"),
            "tag latest does not exist in repository org/nothing".to_owned(),
        ),
        (
            format!("{HOST}/org/app@{missing}"),
            format!("manifest {missing} does not exist in repository org/app"),
        ),
        // A digest of another repository is not in this one.
        (
            format!("{HOST}/org/app@{}", e.tools),
            format!("manifest {} does not exist in repository org/app", e.tools),
        ),
    ] {
        let m = assert_denied(
            &mutate(
                &hook,
                &review("CREATE", &pod(&[("web", &image)], &[]), None),
            )
            .await,
            403,
        );
        assert!(m.contains(&why), "{image}: {m}");
    }
    assert!(policy.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn permissive_verdicts_are_allowed_with_warnings() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let object = pod(
        &[
            ("web", &img("org/app:v3")),
            ("tools", &img("org/tools:1.0")),
        ],
        &[],
    );
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["warnings"],
        json!([format!(
            "container web: image {HOST}/org/app:v3: tag v3 is not signed (permissive policy)"
        )])
    );
    // What was allowed is what runs: the permissive tag is pinned too.
    let out = patched(&object, &r);
    assert_eq!(
        out["spec"]["containers"][0]["image"],
        format!("{HOST}/org/app@{}", e.v3)
    );
}

#[tokio::test]
async fn policy_timeout_fails_closed_by_default() {
    let e = env().await;
    let policy = Arc::new(TestPolicy {
        hang: true,
        ..e.policy()
    });
    let hook = e.hook(
        policy,
        Settings {
            timeout: Duration::from_millis(100),
            ..settings()
        },
    );
    let m = assert_denied(
        &mutate(
            &hook,
            &review("CREATE", &pod(&[("web", &img("org/app:v1"))], &[]), None),
        )
        .await,
        503,
    );
    assert!(
        m.contains("did not finish within 100 ms") && m.contains("fail_open is not set"),
        "{m}"
    );
}

#[tokio::test]
async fn policy_timeout_fails_open_with_a_warning_when_configured() {
    let e = env().await;
    let policy = Arc::new(TestPolicy {
        hang: true,
        ..e.policy()
    });
    let hook = e.hook(
        policy,
        Settings {
            timeout: Duration::from_millis(100),
            fail_open: true,
            ..settings()
        },
    );
    let r = mutate(
        &hook,
        &review("CREATE", &pod(&[("web", &img("org/app:v2"))], &[]), None),
    )
    .await;
    assert_eq!(r["allowed"], true);
    assert!(
        r.get("patch").is_none(),
        "nothing evaluated, nothing pinned"
    );
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("allowed because admission.fail_open is set"),
        "{r}"
    );
}

#[tokio::test]
async fn policy_errors_fail_closed_or_open() {
    let e = env().await;
    let object = pod(&[("web", &img("org/app:v1"))], &[]);
    let hook = e.hook(
        Arc::new(TestPolicy {
            fail: true,
            ..e.policy()
        }),
        settings(),
    );
    let m = assert_denied(&mutate(&hook, &review("CREATE", &object, None)).await, 503);
    assert!(m.contains("container web: image 127.0.0.1:5000/org/app:v1 could not be evaluated: the image policy failed: trust data for the repository is unreadable"), "{m}");

    let hook = e.hook(
        Arc::new(TestPolicy {
            fail: true,
            ..e.policy()
        }),
        Settings {
            fail_open: true,
            ..settings()
        },
    );
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("was not evaluated"),
        "{r}"
    );

    // Fail-open never hides a real refusal.
    let partly = pod(&[("web", &img("org/app:v2"))], &[]);
    let hook = e.hook(
        Arc::new(e.policy()),
        Settings {
            fail_open: true,
            ..settings()
        },
    );
    assert_denied(&mutate(&hook, &review("CREATE", &partly, None)).await, 403);
}

#[tokio::test]
async fn delete_connect_other_kinds_and_subresources_are_allowed_unchecked() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let unsigned = pod(&[("web", &img("org/app:v2"))], &[]);
    let r = mutate(&hook, &review("DELETE", &Value::Null, Some(&unsigned))).await;
    assert_eq!(r["allowed"], true);
    let r = mutate(&hook, &review("CONNECT", &unsigned, None)).await;
    assert_eq!(r["allowed"], true);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"},
                    "data": {"spec": "x"}, "spec": {"containers": [{"name": "x", "image": "nginx"}]}});
    assert_eq!(
        mutate(&hook, &review("CREATE", &cm, None)).await["allowed"],
        true
    );
    let mut status = review(
        "UPDATE",
        &unsigned,
        Some(&pod(&[("web", &img("org/app:v1"))], &[])),
    );
    status["request"]["subResource"] = json!("status");
    assert_eq!(mutate(&hook, &status).await["allowed"], true);
    assert!(policy.calls.lock().unwrap().is_empty());
    // An ephemeral debug container is a subresource that is checked.
    let mut debug = pod(&[("web", &img("org/app:v1"))], &[]);
    debug["spec"]["ephemeralContainers"] = containers(&[("debugger", &img("org/app:v2"))]);
    let mut body = review(
        "UPDATE",
        &debug,
        Some(&pod(&[("web", &img("org/app:v1"))], &[])),
    );
    body["request"]["subResource"] = json!("ephemeralcontainers");
    let m = assert_denied(&mutate(&hook, &body).await, 403);
    assert!(m.contains("ephemeral container debugger"), "{m}");
}

#[tokio::test]
async fn update_evaluates_only_images_the_old_object_did_not_have() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let old = deployment(&[("web", &img("org/app:v2"))]);
    // Scaling or relabelling an object admitted earlier.
    let mut scaled = old.clone();
    scaled["spec"]["replicas"] = json!(5);
    let r = mutate(&hook, &review("UPDATE", &scaled, Some(&old))).await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("patch").is_none());
    assert!(policy.calls.lock().unwrap().is_empty());
    // A new image is evaluated.
    let changed = deployment(&[("web", &img("org/app:v2")), ("side", &img("org/app:v1"))]);
    let r = mutate(&hook, &review("UPDATE", &changed, Some(&old))).await;
    assert_eq!(r["allowed"], true);
    let ops: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(r["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ops.as_array().unwrap().len(), 1);
    assert_eq!(ops[0]["path"], "/spec/template/spec/containers/1/image");
    let back = deployment(&[("web", &img("org/app:v1"))]);
    let unsigned = deployment(&[("web", &img("org/app:v2"))]);
    assert_denied(
        &mutate(&hook, &review("UPDATE", &unsigned, Some(&back))).await,
        403,
    );
}

#[tokio::test]
async fn exempt_namespaces_are_not_checked() {
    let e = env().await;
    let (hook, policy) = e.webhook(settings());
    let mut object = pod(&[("dns", "registry.k8s.io/coredns/coredns:v1.11.1")], &[]);
    object["metadata"]["namespace"] = json!("kube-system");
    let r = mutate(&hook, &review("CREATE", &object, None)).await;
    assert_eq!(r["allowed"], true);
    assert!(policy.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn too_many_images_are_refused_before_any_evaluation() {
    let e = env().await;
    let (hook, policy) = e.webhook(Settings {
        max_images: 3,
        ..settings()
    });
    let img1 = img("org/app:v1");
    let list: Vec<(&str, &str)> = vec![("a", &img1), ("b", &img1), ("c", &img1), ("d", &img1)];
    let m = assert_denied(
        &mutate(&hook, &review("CREATE", &pod(&list, &[]), None)).await,
        403,
    );
    assert!(m.contains("more than 3 container images"), "{m}");
    assert!(policy.calls.lock().unwrap().is_empty());
    // At the bound, a repeated image is evaluated once.
    let r = mutate(&hook, &review("CREATE", &pod(&list[..3], &[]), None)).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(policy.calls.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn oversized_review_is_refused_unread() {
    let e = env().await;
    let (hook, policy) = e.webhook(Settings {
        max_body_bytes: 4096,
        ..settings()
    });
    let mut object = pod(&[("web", &img("org/app:v1"))], &[]);
    object["metadata"]["annotations"] = json!({"big": "x".repeat(8192)});
    let (status, body) = call(
        &hook,
        Method::POST,
        "/admission/mutate",
        &[],
        review("CREATE", &object, None).to_string().into_bytes(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("exceeds 4096 bytes"));
    assert!(policy.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_reviews_are_bad_requests() {
    let e = env().await;
    let (hook, _) = e.webhook(settings());
    let good = review("CREATE", &pod(&[("web", &img("org/app:v1"))], &[]), None);
    let mut wrong_kind = good.clone();
    wrong_kind["kind"] = json!("Pod");
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let mut no_uid = good.clone();
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    for body in [
        b"not json".to_vec(),
        wrong_kind.to_string().into_bytes(),
        no_request.to_string().into_bytes(),
        no_uid.to_string().into_bytes(),
    ] {
        let (status, _) = call(&hook, Method::POST, "/admission/validate", &[], body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn webhook_token_is_required_when_configured() {
    let e = env().await;
    let (hook, policy) = e.webhook(Settings {
        caller: CallerAuth::token("s3cret-token"),
        ..settings()
    });
    let body = review("CREATE", &pod(&[("web", &img("org/app:v1"))], &[]), None)
        .to_string()
        .into_bytes();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic czNjcmV0LXRva2Vu"),
        Some("s3cret-token"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let (status, _) = call(
            &hook,
            Method::POST,
            "/admission/validate",
            &headers,
            body.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    assert!(policy.calls.lock().unwrap().is_empty());
    let (status, r) = call(
        &hook,
        Method::POST,
        "/admission/validate",
        &[("authorization", "Bearer s3cret-token")],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&r));

    // Reachable from other hosts with nothing configured: refused, whatever is sent.
    let (hook, _) = e.webhook(Settings {
        caller: CallerAuth::Unconfigured,
        ..settings()
    });
    let (status, r) = call(
        &hook,
        Method::POST,
        "/admission/validate",
        &[("authorization", "Bearer s3cret-token")],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(String::from_utf8_lossy(&r).contains("admission.token"));
}

#[tokio::test]
async fn server_app_mounts_the_webhook_once_a_policy_is_installed() {
    let e = env().await;
    let body = review("CREATE", &pod(&[("web", &img("org/app:v1"))], &[]), None)
        .to_string()
        .into_bytes();
    let app = notary_registry::server::app(Arc::clone(&e.reg));
    let (status, _) = call(&app, Method::POST, "/admission/validate", &[], body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // As server::build does from the configuration, then the all-in-one's policy.
    let config = AdmissionConfig {
        hosts: vec![HOST.into()],
        ..AdmissionConfig::default()
    };
    assert!(
        e.reg.set_admission_settings(
            config
                .settings("127.0.0.1:5000".parse().unwrap(), false, &[])
                .unwrap()
        )
    );
    assert!(e.reg.set_image_policy(Arc::new(e.policy())));
    assert!(
        !e.reg.set_image_policy(Arc::new(e.policy())),
        "installed once"
    );
    let app = notary_registry::server::app(Arc::clone(&e.reg));
    let (status, r) = call(&app, Method::POST, "/admission/validate", &[], body).await;
    assert_eq!(status, StatusCode::OK);
    let r: Value = serde_json::from_slice(&r).unwrap();
    assert_eq!(r["response"]["allowed"], true);
    // The registry API is still there.
    let (status, _) = call(&app, Method::GET, "/v2/", &[], Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
}

/// A client CA and a client certificate it issued (PEM).
fn client_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn https_client(
    ca_pem: &[u8],
    identity: Option<(&str, &str)>,
    name: &str,
    addr: std::net::SocketAddr,
) -> reqwest::Client {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve(name, addr)
        .build()
        .unwrap()
}

#[tokio::test]
async fn separate_listener_serves_the_service_certificate_and_requires_client_certificates() {
    let e = env().await;
    let data = tempfile::tempdir().unwrap();
    let (client_ca, client_cert, client_key) = client_pki();
    let ca_file = data.path().join("clients.crt");
    std::fs::write(&ca_file, &client_ca).unwrap();
    let config = AdmissionConfig {
        hosts: vec![HOST.into()],
        namespace: "trust".into(),
        client_ca: Some(ca_file),
        ..AdmissionConfig::default()
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hook = admission::listener::start_on(
        Arc::clone(&e.reg),
        Arc::new(e.policy()),
        &config,
        data.path(),
        &[],
        listener,
        async move {
            let _ = stopped.await;
        },
    )
    .unwrap();
    // The caBundle is the data directory's CA, which issued the Service's certificate.
    let ca_pem = std::fs::read(data.path().join("tls/ca.crt")).unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(hook.ca_bundle.as_deref().unwrap())
        .unwrap();
    assert_eq!(bundle, ca_pem);
    let name = "notary-registry.trust.svc";
    let url = format!("https://{name}:{}/admission/validate", hook.addr.port());
    let object = pod(&[("web", &img("org/app:v2"))], &[]);
    let body = review("CREATE", &object, None).to_string();

    let client = https_client(&ca_pem, Some((&client_cert, &client_key)), name, hook.addr);
    let resp = client.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    let r: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(r["response"]["allowed"], false);
    assert!(message(&r["response"]).contains("container web"));

    // Without a client certificate the handshake fails.
    let anonymous = https_client(&ca_pem, None, name, hook.addr);
    assert!(
        anonymous
            .post(&url)
            .body(body.clone())
            .send()
            .await
            .is_err()
    );
    // A name the certificate does not cover fails verification.
    let other = "notary-registry.elsewhere.svc";
    let wrong = https_client(&ca_pem, Some((&client_cert, &client_key)), other, hook.addr);
    assert!(
        wrong
            .post(format!(
                "https://{other}:{}/admission/validate",
                hook.addr.port()
            ))
            .body(body)
            .send()
            .await
            .is_err()
    );
    let _ = stop.send(());
}

/// Allows everything; the first evaluations wait for each other in pairs and the
/// highest number in flight is recorded.
struct PairedPolicy {
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    pair: tokio::sync::Barrier,
}

#[async_trait]
impl ImagePolicy for PairedPolicy {
    async fn evaluate(
        &self,
        _repository: &str,
        _tag: Option<&str>,
        digest: Option<&str>,
        _identity: &Identity,
        _gate: Gate,
    ) -> Result<Verdict, PolicyError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        self.pair.wait().await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(Verdict {
            allowed: true,
            warn: false,
            digest: digest.map(str::to_owned),
            reason: "ok".into(),
            policy_version: 1,
        })
    }
}

#[tokio::test]
async fn images_are_evaluated_concurrently_within_the_bound() {
    let e = env().await;
    let policy = Arc::new(PairedPolicy {
        in_flight: 0.into(),
        most: 0.into(),
        pair: tokio::sync::Barrier::new(2),
    });
    // Four distinct references: evaluated two at a time, each pair waiting for its
    // partner (one at a time would never finish: the review would time out, refused).
    let hook = e.hook(
        policy.clone(),
        Settings {
            concurrency: 2,
            ..settings()
        },
    );
    let by_digest = format!("{HOST}/org/app@{}", e.v1);
    let list = [
        ("a", img("org/app:v1")),
        ("b", img("org/app:v2")),
        ("c", "registry.example.com/org/app:v1".to_owned()),
        ("d", by_digest),
    ];
    let list: Vec<(&str, &str)> = list.iter().map(|(n, i)| (*n, i.as_str())).collect();
    let r = mutate(&hook, &review("CREATE", &pod(&list, &[]), None)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(policy.most.load(std::sync::atomic::Ordering::SeqCst), 2);
}
