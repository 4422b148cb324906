//! Authentication and authorisation end to end: the registry served in process on a
//! `127.0.0.1:0` listener (plain HTTP), driven over HTTP: token GET/POST/refresh flows
//! and their claims, Docker's login/push sequence, anonymous access, a table of every
//! route against callers with and without the permission, the attacks on the token
//! path, the first-start administrator and the CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, Method, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use notary_registry::Registry;
use notary_registry::access::AllowAll;
use notary_registry::admin::client::{Client, Reply};
use notary_registry::auth::jwt::{Claims, ResourceActions, SigningKey};
use notary_registry::auth::{AuthService, TokenAccess};
use notary_registry::server::{self, Config};
use serde_json::{Value, json};
use sha2::Digest as _;

const ADMIN_PW: &str = "admin-password-1";

struct Reg {
    url: String,
    svc: Arc<AuthService>,
    config: Config,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Reg {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Reg {
    fn client(&self) -> Client {
        Client::new(&self.url, None).unwrap()
    }
    fn as_user(&self, user: &str, pw: &str) -> Client {
        self.client().basic(user, pw)
    }
    fn admin(&self) -> Client {
        self.as_user("admin", ADMIN_PW)
    }
}

fn base_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        plain_http: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    config.auth.audiences = vec!["notary-server".into()];
    config
}

async fn serve(registry: Arc<Registry>) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(
        server::app(registry),
        listener,
        None,
        async move {
            let _ = rx.await;
        },
    ));
    (format!("http://{addr}"), tx)
}

async fn start_with(tweak: impl FnOnce(&mut Config)) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    tweak(&mut config);
    let (db, store) = server::open_backends(&config).await.unwrap();
    let svc = AuthService::new(config.auth.clone(), db.clone(), &config.data_dir, false).unwrap();
    notary_registry::auth::bootstrap_admin(
        svc.store(),
        &config.data_dir,
        Some(ADMIN_PW.to_owned().into()),
    )
    .await
    .unwrap();
    let registry = Arc::new(Registry::new(
        db,
        store,
        Arc::new(TokenAccess::new(Arc::clone(&svc))),
        Arc::new(AllowAll),
        notary_registry::Options::default(),
    ));
    let (url, stop) = serve(registry).await;
    Reg {
        url,
        svc,
        config,
        _dir: dir,
        stop: Some(stop),
    }
}

async fn start() -> Reg {
    start_with(|_| {}).await
}

fn claims_of(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

fn q(s: &str) -> String {
    serde_urlencoded::to_string([("x", s)]).unwrap()[2..].to_owned()
}

async fn get_token(c: &Client, service: &str, scopes: &[&str]) -> Reply {
    let mut path = format!("/auth/token?service={}", q(service));
    for s in scopes {
        path.push_str(&format!("&scope={}", q(s)));
    }
    c.get(&path).await.unwrap()
}

async fn token_for(c: &Client, scopes: &[&str]) -> String {
    let r = get_token(c, "notary-registry", scopes).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["token"].as_str().unwrap().to_owned()
}

async fn post_form(c: &Client, pairs: &[(&str, &str)]) -> Reply {
    let body = serde_urlencoded::to_string(pairs).unwrap();
    c.request(
        Method::POST,
        "/auth/token",
        &[(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        )],
        body,
    )
    .await
    .unwrap()
}

fn bearer(t: &str) -> Vec<(HeaderName, HeaderValue)> {
    vec![(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    )]
}

async fn call(
    c: &Client,
    method: Method,
    path: &str,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
) -> Reply {
    c.request(method, path, headers, body.to_vec())
        .await
        .unwrap()
}

async fn admin_json(c: &Client, method: Method, path: &str, body: Value) -> Reply {
    c.json(method, path, &body).await.unwrap()
}

async fn add_user(reg: &Reg, name: &str, pw: &str) {
    let r = admin_json(
        &reg.admin(),
        Method::POST,
        "/api/v0/users",
        json!({"name": name, "password": pw}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

/// Pushes a small image (config + one layer + manifest tagged `tag`) with `c`;
/// returns the manifest digest.
async fn push_image(
    c: &Client,
    auth: &[(HeaderName, HeaderValue)],
    repo: &str,
    tag: &str,
) -> String {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = format!("layer of {repo}").into_bytes();
    for blob in [&config, &layer] {
        let r = call(
            c,
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={}", sha(blob)),
            auth,
            blob,
        )
        .await;
        assert_eq!(r.status, 201, "blob upload: {}", r.text());
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer), "size": layer.len()}],
    })
    .to_string();
    let mut h = auth.to_vec();
    h.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json"),
    ));
    let r = call(
        c,
        Method::PUT,
        &format!("/v2/{repo}/manifests/{tag}"),
        &h,
        manifest.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "manifest: {}", r.text());
    sha(manifest.as_bytes())
}

fn basic(user: &str, pw: &str) -> Vec<(HeaderName, HeaderValue)> {
    let v = STANDARD.encode(format!("{user}:{pw}"));
    vec![(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
    )]
}

fn challenge_param(r: &Reply, key: &str) -> Option<String> {
    let h = r.header("www-authenticate")?;
    let start = h.find(&format!("{key}=\""))? + key.len() + 2;
    let end = h[start..].find('"')? + start;
    Some(h[start..end].to_owned())
}

// ------------------------------------------------------------------------ token flows

#[tokio::test]
async fn token_get_grants_the_intersection_with_verifiable_claims() {
    let reg = start().await;
    add_user(&reg, "bob", "bob-password").await;
    let r = admin_json(
        &reg.admin(),
        Method::PUT,
        "/api/v0/repositories/team1/app/userAccess/bob",
        json!({"accessLevel": "read-only"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Partial grant: push asked, pull granted; the repository of another user: nothing.
    let r = get_token(
        &reg.as_user("bob", "bob-password"),
        "notary-registry",
        &[
            "repository:team1/app:pull,push",
            "repository:alice/x:pull",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("refresh_token").is_none());
    let c = claims_of(token);
    assert_eq!(c["iss"], "notary-registry");
    assert_eq!(c["sub"], "bob");
    assert_eq!(c["aud"], "notary-registry", "aud is a plain string");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert!(!c["jti"].as_str().unwrap().is_empty());
    assert_eq!(
        c["access"],
        json!([
            {"type": "repository", "name": "team1/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    // Own namespace: everything.
    let t = token_for(
        &reg.as_user("bob", "bob-password"),
        &["repository:bob/tools:pull,push,delete,*"],
    )
    .await;
    assert_eq!(
        claims_of(&t)["access"][0]["actions"],
        json!(["pull", "push", "delete", "*"])
    );

    // The header: ES256, libtrust kid, x5c = the token certificate; a Notary 0.7-style
    // verifier with that certificate as rootcertbundle accepts the token.
    let h = header_of(token);
    assert_eq!(h["alg"], "ES256");
    assert_eq!(h["kid"].as_str().unwrap().split(':').count(), 12);
    assert_eq!(h["kid"], reg.svc.signing_key().kid());
    let pem = reg.svc.signing_key().cert_pem();
    let der = STANDARD.decode(h["x5c"][0].as_str().unwrap()).unwrap();
    assert!(pem.contains(&STANDARD.encode(&der)[..64]));
    let verifier = notary_server::auth::TokenAuth::from_pem(
        "realm",
        "notary-registry",
        "notary-registry",
        pem.as_bytes(),
    )
    .unwrap();
    let now = notary_registry::meta::now();
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    verifier
        .check(
            Some(&auth),
            &[notary_server::auth::Access::repo("team1/app", "pull")],
            now,
        )
        .expect("notary-server's verifier accepts our token");
    assert!(
        verifier
            .check(
                Some(&auth),
                &[notary_server::auth::Access::repo("team1/app", "push")],
                now
            )
            .is_err()
    );

    // Anonymous: 200 with an empty grant on a private repository.
    let r = get_token(
        &reg.client(),
        "notary-registry",
        &["repository:team1/app:pull"],
    )
    .await;
    assert_eq!(r.status, 200);
    let c = claims_of(r.json()["token"].as_str().unwrap());
    assert_eq!(c["sub"], "");
    assert_eq!(c["access"], json!([]));

    // Wrong password: 401; unknown service: 400.
    let r = get_token(
        &reg.as_user("bob", "nope-nope-nope"),
        "notary-registry",
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = get_token(&reg.as_user("bob", "bob-password"), "elsewhere", &[]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn notary_scope_with_our_host_prefix_is_authorised_on_the_plain_name() {
    let reg = start_with(|c| c.auth.hostnames = vec!["registry.example.com".into()]).await;
    add_user(&reg, "bob", "bob-password").await;
    let bob = reg.as_user("bob", "bob-password");
    let host = reg.url.trim_start_matches("http://").to_owned();
    let r = get_token(
        &bob,
        "notary-server",
        &[
            "repository:registry.example.com/bob/app:pull,push",
            &format!("repository:{host}/bob/app:pull"),
            "repository:elsewhere.example.org/bob/app:pull",
            "repository(plugin):bob/app:pull",
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let c = claims_of(r.json()["token"].as_str().unwrap());
    assert_eq!(c["aud"], "notary-server");
    // Names stay as requested (Notary checks the GUN with the host); a foreign host
    // prefix is not ours and grants nothing.
    assert_eq!(
        c["access"],
        json!([
            {"type": "repository", "name": "registry.example.com/bob/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": format!("{host}/bob/app"), "actions": ["pull"]},
            {"type": "repository", "name": "bob/app", "actions": ["pull"]},
        ])
    );
}

#[tokio::test]
async fn token_post_password_refresh_and_revocation() {
    token_flows(&start().await).await;
}

async fn token_flows(reg: &Reg) {
    add_user(reg, "bob", "bob-password").await;
    let c = reg.client();
    let r = post_form(
        &c,
        &[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-password"),
            ("client_id", "test"),
            ("access_type", "offline"),
            ("service", "notary-registry"),
            ("scope", "repository:bob/a:pull repository:bob/b:push"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["scope"], "repository:bob/a:pull repository:bob/b:push");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.len() > 40);

    let r = post_form(
        &c,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "test"),
            ("service", "notary-registry"),
            ("scope", "repository:bob/a:pull,push"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&t)["sub"], "bob");
    assert_eq!(
        claims_of(&t)["access"][0]["actions"],
        json!(["pull", "push"])
    );

    // client_id is required; wrong secrets are 401; an unknown grant type is 400.
    assert_eq!(
        post_form(
            &c,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]
        )
        .await
        .status,
        400
    );
    assert_eq!(
        post_form(
            &c,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", "nrr_forged"),
                ("client_id", "x")
            ]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        post_form(
            &c,
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", "wrong-password"),
                ("client_id", "x")
            ]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        post_form(
            &c,
            &[("grant_type", "client_credentials"), ("client_id", "x")]
        )
        .await
        .status,
        400
    );

    // GET with offline_token: a refresh token too.
    let r = reg
        .as_user("bob", "bob-password")
        .get("/auth/token?service=notary-registry&offline_token=true&client_id=docker&account=bob")
        .await
        .unwrap();
    assert!(r.json()["refresh_token"].as_str().is_some());

    // A password change revokes refresh tokens.
    let r = admin_json(
        &reg.admin(),
        Method::PUT,
        "/api/v0/users/bob/password",
        json!({"password": "new-password-2"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        post_form(
            &c,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("client_id", "test")
            ]
        )
        .await
        .status,
        401
    );
    // And the old password (cached a moment ago) no longer works.
    assert_eq!(
        get_token(&reg.as_user("bob", "bob-password"), "notary-registry", &[])
            .await
            .status,
        401
    );
    assert_eq!(
        get_token(
            &reg.as_user("bob", "new-password-2"),
            "notary-registry",
            &[]
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn docker_login_push_pull_flow() {
    let reg = start().await;
    add_user(&reg, "bob", "bob-password").await;
    let c = reg.client();
    // 1. Ping: a challenge without scope.
    let r = c.get("/v2/").await.unwrap();
    assert_eq!(r.status, 401);
    let realm = challenge_param(&r, "realm").unwrap();
    let service = challenge_param(&r, "service").unwrap();
    assert_eq!(realm, format!("{}/auth/token", reg.url));
    assert_eq!(service, "notary-registry");
    assert!(challenge_param(&r, "scope").is_none());
    // 2. Login: credentials at the realm, a refresh (identity) token back.
    let path = realm.trim_start_matches(&reg.url).to_owned();
    let r = reg
        .as_user("bob", "bob-password")
        .get(&format!(
            "{path}?account=bob&client_id=docker&offline_token=true&service={service}"
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let identity = r.json()["refresh_token"].as_str().unwrap().to_owned();
    let t = r.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&c, Method::GET, "/v2/", &bearer(&t), b"").await.status,
        200
    );
    // 3. Push: the first request is refused with the scope to ask for.
    let r = call(
        &c,
        Method::HEAD,
        "/v2/bob/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &bearer(&t),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        challenge_param(&r, "scope").unwrap(),
        "repository:bob/app:pull"
    );
    assert_eq!(challenge_param(&r, "error").unwrap(), "insufficient_scope");
    let r = call(
        &c,
        Method::POST,
        "/v2/bob/app/blobs/uploads/",
        &bearer(&t),
        b"",
    )
    .await;
    assert_eq!(
        challenge_param(&r, "scope").unwrap(),
        "repository:bob/app:pull,push"
    );
    let detail = &r.json()["errors"][0]["detail"];
    assert_eq!(
        detail[0],
        json!({"Type": "repository", "Class": "", "Name": "bob/app", "Action": "pull"})
    );
    assert_eq!(detail[1]["Action"], "push");
    // 4. Docker re-asks with its identity token (OAuth2 POST) and retries.
    let r = post_form(
        &c,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &identity),
            ("client_id", "docker"),
            ("service", &service),
            ("scope", "repository:bob/app:pull,push"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let push = r.json()["access_token"].as_str().unwrap().to_owned();
    let digest = push_image(&c, &bearer(&push), "bob/app", "v1").await;
    // 5. Pull with a pull token.
    let pull = token_for(
        &reg.as_user("bob", "bob-password"),
        &["repository:bob/app:pull"],
    )
    .await;
    let r = call(
        &c,
        Method::GET,
        "/v2/bob/app/manifests/v1",
        &bearer(&pull),
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest").unwrap(), digest);
    // The pull token cannot delete.
    let r = call(
        &c,
        Method::DELETE,
        &format!("/v2/bob/app/manifests/{digest}"),
        &bearer(&pull),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        challenge_param(&r, "scope").unwrap(),
        "repository:bob/app:delete"
    );
    // Basic credentials work directly on /v2/ as well (curl, skopeo).
    assert_eq!(
        call(
            &c,
            Method::GET,
            "/v2/bob/app/tags/list",
            &basic("bob", "bob-password"),
            b""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            "/v2/bob/app/tags/list",
            &basic("bob", "wrong-password"),
            b""
        )
        .await
        .status,
        401
    );
}

#[tokio::test]
async fn anonymous_pulls_public_repositories_only() {
    let reg = start().await;
    let c = reg.client();
    let admin = basic("admin", ADMIN_PW);
    push_image(&c, &admin, "lib/public", "v1").await;
    push_image(&c, &admin, "lib/private", "v1").await;
    let r = admin_json(
        &reg.admin(),
        Method::PATCH,
        "/api/v0/repositories/lib/public",
        json!({"visibility": "public"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["visibility"], "public");

    // Without any token.
    assert_eq!(
        call(&c, Method::GET, "/v2/lib/public/manifests/v1", &[], b"")
            .await
            .status,
        200
    );
    let r = call(&c, Method::GET, "/v2/lib/private/manifests/v1", &[], b"").await;
    assert_eq!(r.status, 401);
    assert!(challenge_param(&r, "error").is_none());
    // With an anonymous token: pull on the public one only.
    let t = token_for(
        &c,
        &["repository:lib/public:pull", "repository:lib/private:pull"],
    )
    .await;
    assert_eq!(
        claims_of(&t)["access"],
        json!([{"type": "repository", "name": "lib/public", "actions": ["pull"]}])
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            "/v2/lib/public/tags/list",
            &bearer(&t),
            b""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(
            &c,
            Method::GET,
            "/v2/lib/private/tags/list",
            &bearer(&t),
            b""
        )
        .await
        .status,
        401
    );
    // Anonymous callers get no catalog and no /v2/ login.
    assert_eq!(
        call(&c, Method::GET, "/v2/_catalog", &[], b"").await.status,
        401
    );
}

#[tokio::test]
async fn anonymous_push_is_refused() {
    let reg = start().await;
    let c = reg.client();
    push_image(&c, &basic("admin", ADMIN_PW), "lib/public", "v1").await;
    admin_json(
        &reg.admin(),
        Method::PATCH,
        "/api/v0/repositories/lib/public",
        json!({"visibility": "public"}),
    )
    .await;
    let r = call(&c, Method::POST, "/v2/lib/public/blobs/uploads/", &[], b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        challenge_param(&r, "scope").unwrap(),
        "repository:lib/public:pull,push"
    );
    let t = token_for(&c, &["repository:lib/public:pull,push,delete"]).await;
    assert_eq!(claims_of(&t)["access"][0]["actions"], json!(["pull"]));
    let r = call(
        &c,
        Method::POST,
        "/v2/lib/public/blobs/uploads/",
        &bearer(&t),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(challenge_param(&r, "error").unwrap(), "insufficient_scope");
    let r = call(
        &c,
        Method::PUT,
        "/v2/lib/public/manifests/v2",
        &bearer(&t),
        b"{}",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        &c,
        Method::DELETE,
        "/v2/lib/public/manifests/v1",
        &bearer(&t),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
}

// ------------------------------------------------------------------------ every route

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Role {
    Anonymous,
    Eve,
    Member,
    Reader,
    Writer,
    Owner,
    Admin,
}

use Role::*;

const PASSWORD: &str = "role-password";

fn creds(role: Role) -> Option<(&'static str, &'static str)> {
    match role {
        Anonymous => None,
        Eve => Some(("eve", PASSWORD)),
        Member => Some(("member", PASSWORD)),
        Reader => Some(("reader", PASSWORD)),
        Writer => Some(("writer", PASSWORD)),
        Owner => Some(("owner", PASSWORD)),
        Admin => Some(("admin", ADMIN_PW)),
    }
}

/// Users: eve (nothing), member (team org1/devs, read-only on org1 namespace-wide),
/// reader (read-only on org1/app), writer (read-write on org1/app), owner (owner of
/// org1). Repository org1/app holds an image; `victim*` users exist to be deleted.
async fn rbac_fixture(reg: &Reg) -> String {
    for u in [
        "eve", "member", "reader", "writer", "owner", "victim", "victim2",
    ] {
        add_user(reg, u, PASSWORD).await;
    }
    let a = reg.admin();
    for (m, p, b) in [
        (
            Method::POST,
            "/api/v0/organizations",
            json!({"name": "org1"}),
        ),
        (
            Method::PUT,
            "/api/v0/organizations/org1/members/owner",
            json!({"isOwner": true}),
        ),
        (
            Method::POST,
            "/api/v0/organizations/org1/teams",
            json!({"name": "devs"}),
        ),
        (
            Method::POST,
            "/api/v0/organizations/org1/teams",
            json!({"name": "ops"}),
        ),
        (
            Method::PUT,
            "/api/v0/organizations/org1/teams/devs/members/member",
            json!(null),
        ),
        (
            Method::PUT,
            "/api/v0/repositoryNamespaces/org1/teamAccess/devs",
            json!({"accessLevel": "read-only"}),
        ),
        (
            Method::PUT,
            "/api/v0/repositories/org1/app/userAccess/reader",
            json!({"accessLevel": "read-only"}),
        ),
        (
            Method::PUT,
            "/api/v0/repositories/org1/app/userAccess/writer",
            json!({"accessLevel": "read-write"}),
        ),
        (
            Method::POST,
            "/api/v0/organizations",
            json!({"name": "org2"}),
        ),
    ] {
        let r = admin_json(&a, m.clone(), p, b).await;
        assert!(r.status < 300, "{m} {p}: {} {}", r.status, r.text());
    }
    push_image(&reg.client(), &basic("admin", ADMIN_PW), "org1/app", "v1").await
}

fn auth_headers(role: Role, token: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    match (token, creds(role)) {
        (Some(t), _) => bearer(t),
        (None, Some((u, p))) => basic(u, p),
        (None, None) => Vec::new(),
    }
}

#[tokio::test]
async fn every_registry_route_refuses_callers_without_the_permission() {
    registry_routes_table(&start().await).await;
}

#[tokio::test]
async fn every_registry_and_admin_route_refuses_callers_without_the_permission_on_postgres() {
    let pg = tokio::task::spawn_blocking(notary_tests::Postgres::start)
        .await
        .unwrap();
    let url = pg.database("registry_routes");
    registry_routes_table(&start_with(|c| c.database = Some(url)).await).await;
    let url = pg.database("admin_routes");
    admin_routes_table(&start_with(|c| c.database = Some(url)).await).await;
    let url = pg.database("token_flows");
    token_flows(&start_with(|c| c.database = Some(url)).await).await;
}

async fn registry_routes_table(reg: &Reg) {
    let manifest = rbac_fixture(reg).await;
    let c = reg.client();
    let layer = sha(b"layer of org1/app");
    let zero = format!("sha256:{}", "0".repeat(64));
    let roles = [Anonymous, Eve, Member, Reader, Writer, Owner, Admin];
    // Who may pull / push / delete org1/app.
    let pull = [Member, Reader, Writer, Owner, Admin];
    let write = [Writer, Owner, Admin];

    for use_tokens in [false, true] {
        // One upload session per run, opened by the administrator.
        let r = call(
            &c,
            Method::POST,
            "/v2/org1/app/blobs/uploads/",
            &basic("admin", ADMIN_PW),
            b"",
        )
        .await;
        assert_eq!(r.status, 202);
        let session = r.header("location").unwrap().to_owned();
        // The ping takes any valid token, an anonymous one included (distribution).
        let ping: &[Role] = if use_tokens {
            &roles
        } else {
            &[Eve, Member, Reader, Writer, Owner, Admin]
        };
        let rows: Vec<(Method, String, &[Role])> = vec![
            (Method::GET, "/v2/".into(), ping),
            (Method::GET, "/v2/org1/app/tags/list".into(), &pull),
            (Method::GET, "/v2/org1/app/manifests/v1".into(), &pull),
            (Method::HEAD, "/v2/org1/app/manifests/v1".into(), &pull),
            (
                Method::GET,
                format!("/v2/org1/app/manifests/{manifest}"),
                &pull,
            ),
            (Method::GET, format!("/v2/org1/app/blobs/{layer}"), &pull),
            (Method::HEAD, format!("/v2/org1/app/blobs/{layer}"), &pull),
            (
                Method::GET,
                format!("/v2/org1/app/referrers/{manifest}"),
                &pull,
            ),
            (Method::POST, "/v2/org1/app/blobs/uploads/".into(), &write),
            (Method::GET, session.clone(), &write),
            (Method::PATCH, session.clone(), &write),
            (Method::PUT, format!("{session}?digest={zero}"), &write),
            (Method::PUT, "/v2/org1/app/manifests/v2".into(), &write),
            (Method::DELETE, format!("/v2/org1/app/blobs/{zero}"), &write),
            (Method::DELETE, "/v2/org1/app/manifests/v9".into(), &write),
            (Method::DELETE, session.clone(), &write),
        ];
        let mut tokens = std::collections::HashMap::new();
        if use_tokens {
            for role in roles {
                let client = match creds(role) {
                    Some((u, p)) => reg.as_user(u, p),
                    None => reg.client(),
                };
                let t = token_for(
                    &client,
                    &[
                        "repository:org1/app:pull,push,delete,*",
                        "registry:catalog:*",
                    ],
                )
                .await;
                tokens.insert(role, t);
            }
        }
        for (method, path, allowed) in &rows {
            for role in roles {
                let h = auth_headers(role, tokens.get(&role).map(String::as_str));
                let r = call(&c, method.clone(), path, &h, b"").await;
                let ok = allowed.contains(&role);
                if ok {
                    assert!(
                        r.status != 401 && r.status != 403,
                        "{method} {path} as {role:?} (tokens {use_tokens}): {} {}",
                        r.status,
                        r.text()
                    );
                } else {
                    assert_eq!(
                        r.status,
                        401,
                        "{method} {path} as {role:?} (tokens {use_tokens}) must be refused: {}",
                        r.text()
                    );
                    assert!(
                        r.header("www-authenticate")
                            .unwrap()
                            .starts_with("Bearer realm=")
                    );
                }
            }
        }
        // The catalog: every user gets one, filtered to what they may read.
        for role in roles {
            let h = auth_headers(role, tokens.get(&role).map(String::as_str));
            let r = call(&c, Method::GET, "/v2/_catalog", &h, b"").await;
            if role == Anonymous {
                assert_eq!(r.status, 401);
                continue;
            }
            assert_eq!(r.status, 200, "catalog as {role:?}: {}", r.text());
            let repos = r.json()["repositories"].clone();
            assert_eq!(
                repos.as_array().unwrap().contains(&json!("org1/app")),
                pull.contains(&role),
                "catalog as {role:?}: {repos}"
            );
        }
    }
    // Finally the destructive one: writers may delete the manifest.
    let r = call(
        &c,
        Method::DELETE,
        &format!("/v2/org1/app/manifests/{manifest}"),
        &basic("reader", PASSWORD),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        &c,
        Method::DELETE,
        &format!("/v2/org1/app/manifests/{manifest}"),
        &basic("writer", PASSWORD),
        b"",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
}

#[tokio::test]
async fn every_admin_route_refuses_callers_without_the_permission() {
    admin_routes_table(&start().await).await;
}

async fn admin_routes_table(reg: &Reg) {
    rbac_fixture(reg).await;
    let lvl = json!({"accessLevel": "read-only"});
    let all = [Eve, Member, Reader, Writer, Owner, Admin];
    let org_members = [Member, Owner, Admin];
    let owners = [Owner, Admin];
    let admins = [Admin];
    // Repository admins of org1/app: the org owner and system administrators.
    let repo_admins = [Owner, Admin];
    let rows: Vec<(Method, &str, Value, &[Role])> = vec![
        (Method::GET, "/api/v0/users", json!(null), &admins),
        (
            Method::POST,
            "/api/v0/users",
            json!({"name": "newbie", "password": "newbie-password"}),
            &admins,
        ),
        (Method::GET, "/api/v0/users/victim", json!(null), &admins),
        (
            Method::PUT,
            "/api/v0/users/victim/password",
            json!({"password": "another-password"}),
            &admins,
        ),
        (
            Method::PUT,
            "/api/v0/users/victim/admin",
            json!({"isAdmin": false}),
            &admins,
        ),
        (Method::DELETE, "/api/v0/users/victim", json!(null), &admins),
        (Method::GET, "/api/v0/organizations", json!(null), &all),
        (
            Method::POST,
            "/api/v0/organizations",
            json!({"name": "neworg"}),
            &admins,
        ),
        (Method::GET, "/api/v0/organizations/org1", json!(null), &all),
        (
            Method::GET,
            "/api/v0/organizations/org1/members",
            json!(null),
            &org_members,
        ),
        (
            Method::PUT,
            "/api/v0/organizations/org1/members/victim2",
            json!({"isOwner": false}),
            &owners,
        ),
        (
            Method::DELETE,
            "/api/v0/organizations/org1/members/victim2",
            json!(null),
            &owners,
        ),
        (
            Method::GET,
            "/api/v0/organizations/org1/teams",
            json!(null),
            &org_members,
        ),
        (
            Method::POST,
            "/api/v0/organizations/org1/teams",
            json!({"name": "qa"}),
            &owners,
        ),
        (
            Method::GET,
            "/api/v0/organizations/org1/teams/devs",
            json!(null),
            &org_members,
        ),
        (
            Method::GET,
            "/api/v0/organizations/org1/teams/devs/members",
            json!(null),
            &org_members,
        ),
        (
            Method::PUT,
            "/api/v0/organizations/org1/teams/ops/members/victim2",
            json!(null),
            &owners,
        ),
        (
            Method::DELETE,
            "/api/v0/organizations/org1/teams/ops/members/victim2",
            json!(null),
            &owners,
        ),
        (
            Method::DELETE,
            "/api/v0/organizations/org1/teams/qa",
            json!(null),
            &owners,
        ),
        (
            Method::GET,
            "/api/v0/repositoryNamespaces/org1/teamAccess",
            json!(null),
            &owners,
        ),
        (
            Method::PUT,
            "/api/v0/repositoryNamespaces/org1/teamAccess/ops",
            lvl.clone(),
            &owners,
        ),
        (
            Method::GET,
            "/api/v0/repositoryNamespaces/org1/teamAccess/ops",
            json!(null),
            &owners,
        ),
        (
            Method::DELETE,
            "/api/v0/repositoryNamespaces/org1/teamAccess/ops",
            json!(null),
            &owners,
        ),
        (Method::GET, "/api/v0/repositories", json!(null), &all),
        (Method::GET, "/api/v0/repositories/org1", json!(null), &all),
        (
            Method::POST,
            "/api/v0/repositories/org1",
            json!({"name": "created", "visibility": "private"}),
            &owners,
        ),
        (
            Method::GET,
            "/api/v0/repositories/org1/app",
            json!(null),
            &[Member, Reader, Writer, Owner, Admin],
        ),
        (
            Method::PATCH,
            "/api/v0/repositories/org1/app",
            json!({"shortDescription": "x"}),
            &repo_admins,
        ),
        (
            Method::GET,
            "/api/v0/repositories/org1/app/teamAccess",
            json!(null),
            &repo_admins,
        ),
        (
            Method::PUT,
            "/api/v0/repositories/org1/app/teamAccess/ops",
            lvl.clone(),
            &repo_admins,
        ),
        (
            Method::GET,
            "/api/v0/repositories/org1/app/teamAccess/ops",
            json!(null),
            &repo_admins,
        ),
        (
            Method::DELETE,
            "/api/v0/repositories/org1/app/teamAccess/ops",
            json!(null),
            &repo_admins,
        ),
        (
            Method::GET,
            "/api/v0/repositories/org1/app/userAccess",
            json!(null),
            &repo_admins,
        ),
        (
            Method::PUT,
            "/api/v0/repositories/org1/app/userAccess/eve",
            lvl.clone(),
            &repo_admins,
        ),
        (
            Method::GET,
            "/api/v0/repositories/org1/app/userAccess/eve",
            json!(null),
            &repo_admins,
        ),
        (
            Method::DELETE,
            "/api/v0/repositories/org1/app/userAccess/eve",
            json!(null),
            &repo_admins,
        ),
        (
            Method::DELETE,
            "/api/v0/repositories/org1/created",
            json!(null),
            &repo_admins,
        ),
        (
            Method::DELETE,
            "/api/v0/organizations/org2",
            json!(null),
            &admins,
        ),
        // The jobs API (Need::Admin through the registry's Access).
        (Method::GET, "/api/v0/jobs", json!(null), &admins),
    ];
    // Each row: every refused role first, then the allowed ones (the first of them must
    // succeed; later ones may find the work done).
    for use_tokens in [false, true] {
        for (i, (method, path, body, allowed)) in rows.iter().enumerate() {
            let mut order = vec![Anonymous, Eve, Member, Reader, Writer, Owner, Admin];
            order.sort_by_key(|r| allowed.contains(r));
            let mut first_allowed = true;
            for role in order {
                let token = if use_tokens {
                    match creds(role) {
                        Some((u, p)) => Some(token_for(&reg.as_user(u, p), &[]).await),
                        None => None,
                    }
                } else {
                    None
                };
                let mut h = auth_headers(role, token.as_deref());
                h.push((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
                let b = if body.is_null() {
                    Vec::new()
                } else {
                    body.to_string().into_bytes()
                };
                let r = call(&reg.client(), method.clone(), path, &h, &b).await;
                let what = format!("row {i}: {method} {path} as {role:?} (tokens {use_tokens})");
                if !allowed.contains(&role) {
                    // The jobs API answers like the registry API: 401 with a challenge.
                    let refused = if role == Anonymous || path.starts_with("/api/v0/jobs") {
                        vec![401]
                    } else {
                        vec![403, 404]
                    };
                    assert!(
                        refused.contains(&r.status),
                        "{what} must be refused: {} {}",
                        r.status,
                        r.text()
                    );
                } else if first_allowed && !use_tokens {
                    assert!(r.status < 300, "{what}: {} {}", r.status, r.text());
                    first_allowed = false;
                } else {
                    assert!(
                        r.status != 401 && r.status != 403,
                        "{what}: {} {}",
                        r.status,
                        r.text()
                    );
                }
            }
        }
    }
    // The OpenAPI document describes the routes.
    let r = reg.client().get("/api/v0/openapi.json").await.unwrap();
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/v0/repositories/{ns}/{repo}/teamAccess/{team}"]["put"].is_object());
}

#[tokio::test]
async fn users_may_change_their_own_password_with_the_old_one() {
    let reg = start().await;
    add_user(&reg, "bob", "bob-password").await;
    let bob = reg.as_user("bob", "bob-password");
    let r = admin_json(
        &bob,
        Method::PUT,
        "/api/v0/users/bob/password",
        json!({"password": "bob-password-2", "oldPassword": "wrong"}),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = admin_json(
        &bob,
        Method::PUT,
        "/api/v0/users/bob/password",
        json!({"password": "bob-password-2", "oldPassword": "bob-password"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = admin_json(
        &reg.as_user("bob", "bob-password-2"),
        Method::PUT,
        "/api/v0/users/admin/password",
        json!({"password": "hijacked-pw", "oldPassword": ADMIN_PW}),
    )
    .await;
    assert_eq!(r.status, 403);
    // The last administrator can neither be removed nor demoted.
    let r = admin_json(
        &reg.admin(),
        Method::DELETE,
        "/api/v0/users/admin",
        json!(null),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = admin_json(
        &reg.admin(),
        Method::PUT,
        "/api/v0/users/admin/admin",
        json!({"isAdmin": false}),
    )
    .await;
    assert_eq!(r.status, 409);
    // Names: users and organisations share the namespace.
    let r = admin_json(
        &reg.admin(),
        Method::POST,
        "/api/v0/organizations",
        json!({"name": "bob"}),
    )
    .await;
    assert_eq!(r.status, 409);
    let r = admin_json(
        &reg.admin(),
        Method::POST,
        "/api/v0/users",
        json!({"name": "Bad/Name", "password": "long-enough"}),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = admin_json(
        &reg.admin(),
        Method::POST,
        "/api/v0/users",
        json!({"name": "shorty", "password": "short"}),
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn need_admin_requires_a_system_administrator() {
    use notary_registry::access::{Access as _, Need};
    let reg = start().await;
    add_user(&reg, "bob", "bob-password").await;
    let access = TokenAccess::new(Arc::clone(&reg.svc));
    let headers = |h: Vec<(HeaderName, HeaderValue)>| {
        let mut m = axum::http::HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_static("registry.test"));
        for (k, v) in h {
            m.insert(k, v);
        }
        m
    };
    let admin_token = token_for(&reg.admin(), &["registry:admin:*"]).await;
    assert_eq!(
        claims_of(&admin_token)["access"],
        json!([{"type": "registry", "name": "admin", "actions": ["*"]}])
    );
    let plain_admin_token = token_for(&reg.admin(), &[]).await;
    let bob_token = token_for(&reg.as_user("bob", "bob-password"), &["registry:admin:*"]).await;
    assert_eq!(
        claims_of(&bob_token)["access"],
        json!([]),
        "only administrators get the admin scope"
    );
    for (h, ok) in [
        (basic("admin", ADMIN_PW), true),
        (bearer(&admin_token), true),
        (bearer(&plain_admin_token), true),
        (basic("bob", "bob-password"), false),
        (bearer(&bob_token), false),
        (Vec::new(), false),
    ] {
        let r = access.check(&headers(h.clone()), &[Need::Admin]).await;
        assert_eq!(r.is_ok(), ok, "{h:?}");
        if let Ok(id) = r {
            assert!(id.admin);
        } else if let Err(e) = r {
            assert_eq!(e.status(), 401);
            let resp = axum::response::IntoResponse::into_response(e);
            let challenge = resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                challenge.starts_with("Bearer realm=\"http://registry.test/auth/token\""),
                "{challenge}"
            );
            assert!(
                challenge.contains("scope=\"registry:admin:*\""),
                "{challenge}"
            );
        }
    }
    // A configured realm wins over the Host header.
    let reg2 = start_with(|c| c.auth.realm = Some("https://auth.example.com/token".into())).await;
    let e = TokenAccess::new(Arc::clone(&reg2.svc))
        .check(&headers(Vec::new()), &[Need::Login])
        .await
        .unwrap_err();
    let resp = axum::response::IntoResponse::into_response(e);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with(
                "Bearer realm=\"https://auth.example.com/token\",service=\"notary-registry\""
            )
    );
}

// ------------------------------------------------------------------------ attacks

fn forge(key: &SigningKey, sub: &str, aud: &str, exp_offset: i64) -> String {
    let now = notary_registry::meta::now();
    key.sign(&Claims {
        iss: "notary-registry".into(),
        sub: sub.into(),
        aud: aud.into(),
        exp: now + exp_offset,
        nbf: now - 10,
        iat: now - 10,
        jti: "forged".into(),
        access: vec![
            ResourceActions {
                kind: "repository".into(),
                name: "org1/app".into(),
                actions: vec!["pull".into(), "push".into(), "delete".into(), "*".into()],
            },
            ResourceActions {
                kind: "registry".into(),
                name: "catalog".into(),
                actions: vec!["*".into()],
            },
        ],
    })
    .unwrap()
}

async fn assert_invalid_token(reg: &Reg, token: &str) {
    for path in ["/v2/", "/v2/org1/app/tags/list", "/v2/_catalog"] {
        let r = call(&reg.client(), Method::GET, path, &bearer(token), b"").await;
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert_eq!(
            challenge_param(&r, "error").as_deref(),
            Some("invalid_token"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn forged_token_signed_by_another_key_is_refused() {
    let reg = start().await;
    let (cert, key) = notary_registry::auth::jwt::generate().unwrap();
    let other = SigningKey::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    let forged = forge(&other, "admin", "notary-registry", 300);
    assert_invalid_token(&reg, &forged).await;
    // Our header (our kid and x5c) over the forger's claims and signature.
    let ours = forge(reg.svc.signing_key(), "admin", "notary-registry", 300);
    let spliced = format!(
        "{}.{}",
        ours.split('.').next().unwrap(),
        forged.split_once('.').unwrap().1
    );
    assert_invalid_token(&reg, &spliced).await;
    // Claims changed after signing.
    let mut parts: Vec<String> = ours.split('.').map(str::to_owned).collect();
    let mut c = claims_of(&ours);
    c["sub"] = json!("mallory");
    parts[1] = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_invalid_token(&reg, &parts.join(".")).await;
    // The genuine one works.
    assert_eq!(
        call(&reg.client(), Method::GET, "/v2/", &bearer(&ours), b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let reg = start().await;
    // A real token from our own service, for the Notary audience.
    let t = {
        let r = get_token(&reg.admin(), "notary-server", &["repository:org1/app:pull"]).await;
        assert_eq!(r.status, 200);
        r.json()["token"].as_str().unwrap().to_owned()
    };
    assert_eq!(claims_of(&t)["aud"], "notary-server");
    assert_invalid_token(&reg, &t).await;
    assert_invalid_token(
        &reg,
        &forge(reg.svc.signing_key(), "admin", "someone-else", 300),
    )
    .await;
}

#[tokio::test]
async fn expired_token_is_refused() {
    let reg = start().await;
    // Past exp by more than the 60 s leeway.
    assert_invalid_token(
        &reg,
        &forge(reg.svc.signing_key(), "admin", "notary-registry", -120),
    )
    .await;
    // Within the leeway it is still accepted.
    let t = forge(reg.svc.signing_key(), "admin", "notary-registry", -30);
    assert_eq!(
        call(&reg.client(), Method::GET, "/v2/", &bearer(&t), b"")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn oversized_authorization_header_is_refused() {
    let reg = start().await;
    let huge = "A".repeat(17 * 1024);
    let r = call(&reg.client(), Method::GET, "/v2/", &bearer(&huge), b"").await;
    assert_eq!(r.status, 401);
    assert_eq!(
        challenge_param(&r, "error").as_deref(),
        Some("invalid_token")
    );
    let r = call(
        &reg.client(),
        Method::GET,
        "/v2/",
        &basic("admin", &"x".repeat(17 * 1024)),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    // At the token endpoint, and no password verification was spent on them.
    let before = reg.svc.password_stats().verifications;
    let r = call(
        &reg.client(),
        Method::GET,
        "/auth/token?service=notary-registry",
        &basic("admin", &"x".repeat(5000)),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    let r = call(
        &reg.client(),
        Method::GET,
        "/v2/",
        &basic(&"u".repeat(200), "pw"),
        b"",
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(reg.svc.password_stats().verifications, before);
    // An over-long query and an over-large form.
    let r = reg
        .client()
        .get(&format!("/auth/token?scope={}", "a".repeat(9000)))
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    let r = post_form(
        &reg.client(),
        &[
            ("grant_type", "password"),
            ("client_id", &"c".repeat(20_000)),
        ],
    )
    .await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let reg = start().await;
    let genuine = forge(reg.svc.signing_key(), "admin", "notary-registry", 300);
    let claims = genuine.split('.').nth(1).unwrap();
    for alg in ["none", "None", "HS256", "RS256", "ES384"] {
        let header = URL_SAFE_NO_PAD.encode(
            json!({"alg": alg, "typ": "JWT", "kid": reg.svc.signing_key().kid()}).to_string(),
        );
        assert_invalid_token(&reg, &format!("{header}.{claims}.")).await;
        let sig = genuine.split('.').nth(2).unwrap();
        assert_invalid_token(&reg, &format!("{header}.{claims}.{sig}")).await;
    }
    // HS256 keyed with the public certificate (the classic key-confusion forgery).
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string());
    let input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        reg.svc.signing_key().cert_pem().as_bytes(),
    );
    let tag = ring::hmac::sign(&key, input.as_bytes());
    assert_invalid_token(
        &reg,
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())),
    )
    .await;
    // Not a JWS at all.
    for junk in ["", "a.b", "a.b.c.d", "!!!.!!!.!!!"] {
        assert_invalid_token(&reg, junk).await;
    }
}

#[tokio::test]
async fn too_many_scopes_are_refused() {
    let reg = start().await;
    let scopes: Vec<String> = (0..17)
        .map(|i| format!("repository:admin/r{i}:pull"))
        .collect();
    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let r = get_token(&reg.admin(), "notary-registry", &refs).await;
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get_token(&reg.admin(), "notary-registry", &refs[..16]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        claims_of(r.json()["token"].as_str().unwrap())["access"]
            .as_array()
            .unwrap()
            .len(),
        16
    );
    // The OAuth2 form's space-separated list counts the same way.
    let joined = scopes.join(" ");
    let r = post_form(
        &reg.client(),
        &[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PW),
            ("client_id", "t"),
            ("scope", &joined),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    // A malformed scope is refused, an over-long one too.
    assert_eq!(
        get_token(&reg.admin(), "notary-registry", &["repository"])
            .await
            .status,
        400
    );
    let long = format!("repository:{}:pull", "a".repeat(600));
    assert_eq!(
        get_token(&reg.admin(), "notary-registry", &[&long])
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn wrong_password_flood_is_bounded_by_the_semaphore() {
    let reg = start_with(|c| {
        c.auth.max_concurrent_verifications = 1;
        c.auth.max_queued_verifications = 2;
        c.auth.credentials_cache_secs = 0;
    })
    .await;
    let before = reg.svc.password_stats();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = reg.as_user(
            if i % 2 == 0 { "admin" } else { "nobody" },
            "wrong-password",
        );
        tasks.push(tokio::spawn(async move {
            get_token(&c, "notary-registry", &[]).await.status
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "the queue bound turned some away: {statuses:?}"
    );
    let after = reg.svc.password_stats();
    assert_eq!(
        after.peak_concurrent, 1,
        "never more than one argon2 at once"
    );
    assert!(after.refused_busy > before.refused_busy);
    // Unknown users cost a verification like known ones (constant work).
    let n = reg.svc.password_stats().verifications;
    assert_eq!(
        get_token(
            &reg.as_user("nobody", "whatever-pw"),
            "notary-registry",
            &[]
        )
        .await
        .status,
        401
    );
    assert_eq!(reg.svc.password_stats().verifications, n + 1);
    // 429s carry Retry-After.
    let r = {
        let mut last = None;
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let c = reg.as_user("admin", "wrong-password");
            tasks.push(tokio::spawn(async move {
                get_token(&c, "notary-registry", &[]).await
            }));
        }
        for t in tasks {
            let r = t.await.unwrap();
            if r.status == 429 {
                last = Some(r);
            }
        }
        last
    };
    if let Some(r) = r {
        assert_eq!(r.header("retry-after"), Some("1"));
    }
}

#[tokio::test]
async fn successful_basic_logins_are_cached_briefly() {
    let reg = start().await;
    let c = reg.admin();
    let s0 = reg.svc.password_stats();
    for _ in 0..5 {
        assert_eq!(
            get_token(&c, "notary-registry", &["repository:a/b:pull"])
                .await
                .status,
            200
        );
    }
    let s1 = reg.svc.password_stats();
    assert_eq!(
        s1.verifications - s0.verifications,
        1,
        "one argon2 for five logins"
    );
    assert!(s1.cache_hits - s0.cache_hits >= 4);
    // Tokens are verified once, then served from the cache (same answer).
    let t = token_for(&c, &["repository:admin/x:pull"]).await;
    for _ in 0..3 {
        assert_eq!(
            call(
                &reg.client(),
                Method::GET,
                "/v2/admin/x/tags/list",
                &bearer(&t),
                b""
            )
            .await
            .status,
            404
        );
    }
}

// ------------------------------------------------------------------------ first start, CLI

#[tokio::test]
async fn first_start_admin_password_file_is_private_and_works() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    // server::build bootstraps (NOTARY_REGISTRY_ADMIN_PASSWORD is not set in tests).
    assert!(std::env::var("NOTARY_REGISTRY_ADMIN_PASSWORD").is_err());
    let registry = server::build(&config).await.unwrap();
    let file = config.data_dir.join("admin-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key_mode = std::fs::metadata(config.data_dir.join("token/token.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key_mode, 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(password.len() >= 20);
    let (url, _stop) = serve(registry).await;
    let c = Client::new(&url, None).unwrap().basic("admin", &password);
    let r = get_token(&c, "notary-registry", &["registry:admin:*"]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        claims_of(r.json()["token"].as_str().unwrap())["access"][0]["name"],
        "admin"
    );
    assert_eq!(c.get("/api/v0/users").await.unwrap().status, 200);
    // A second start neither creates another admin nor rewrites the file.
    drop(_stop);
    let _again = server::build(&config).await.unwrap();
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), password);
}

fn cli(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_notary-registry"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("NOTARY_REGISTRY_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_manages_users_teams_and_grants_offline_and_online() {
    let reg = start().await;
    let data = reg.config.data_dir.clone();
    // Offline: straight into the database (as the local administrator).
    let (ok, out, err) = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            cli(
                &data,
                &["user", "add", "carol", "--new-password-stdin"],
                "carol-password\n",
            )
        }
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(
        get_token(
            &reg.as_user("carol", "carol-password"),
            "notary-registry",
            &[]
        )
        .await
        .status,
        200
    );

    // Online: against the running registry with Basic credentials.
    let url = reg.url.clone();
    let run = move |args: Vec<&'static str>, stdin: String| {
        let data = data.clone();
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut a: Vec<&str> = args.clone();
            a.extend(["--url", url.as_str(), "--password-stdin"]);
            cli(&data, &a, &stdin)
        })
    };
    let pw = format!("{ADMIN_PW}\n");
    for args in [
        vec!["org", "add", "acme", "--owner", "carol"],
        vec!["team", "add", "acme", "devs", "--description", "developers"],
        vec!["team", "member-add", "acme", "devs", "carol"],
        vec![
            "repo",
            "grant",
            "acme",
            "read-write",
            "--team",
            "devs",
            "--namespace",
        ],
        vec!["repo", "set-public", "acme/site"],
        vec!["repo", "grant", "acme/site", "admin", "--account", "carol"],
    ] {
        let (ok, out, err) = run(args.clone(), pw.clone()).await.unwrap();
        assert!(ok, "{args:?}: {out}{err}");
    }
    let (ok, out, _) = run(vec!["team", "list", "acme"], pw.clone()).await.unwrap();
    assert!(ok && out.contains("devs\tdevelopers"), "{out}");
    let (ok, out, _) = run(vec!["repo", "list"], pw.clone()).await.unwrap();
    assert!(ok && out.contains("acme/site\tpublic"), "{out}");
    let (ok, out, _) = run(vec!["user", "list"], pw.clone()).await.unwrap();
    assert!(
        ok && out.contains("admin\tadmin") && out.contains("carol"),
        "{out}"
    );
    let (ok, out, _) = run(vec!["org", "list"], pw.clone()).await.unwrap();
    assert!(ok && out.contains("acme"), "{out}");
    // Wrong admin password: a clear failure.
    let (ok, _, err) = run(vec!["user", "list"], "wrong-password\n".into())
        .await
        .unwrap();
    assert!(!ok && err.contains("401"), "{err}");

    let t = token_for(
        &reg.as_user("carol", "carol-password"),
        &["repository:acme/app:pull,push,delete,*"],
    )
    .await;
    assert_eq!(
        claims_of(&t)["access"][0]["actions"],
        json!(["pull", "push", "delete", "*"]),
        "carol owns acme"
    );
    let (ok, _, err) = run(
        vec!["repo", "revoke", "acme/site", "--account", "carol"],
        pw.clone(),
    )
    .await
    .unwrap();
    assert!(ok, "{err}");
    let (ok, out, _) = run(
        vec!["team", "member-remove", "acme", "devs", "carol"],
        pw.clone(),
    )
    .await
    .unwrap();
    assert!(ok, "{out}");
    let (ok, out, err) = run(
        vec!["user", "passwd", "carol", "--new-password-stdin"],
        format!("{ADMIN_PW}\ncarol-password-2\n"),
    )
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(
        get_token(
            &reg.as_user("carol", "carol-password"),
            "notary-registry",
            &[]
        )
        .await
        .status,
        401
    );
    let (ok, out, err) = run(vec!["user", "remove", "carol"], pw.clone())
        .await
        .unwrap();
    assert!(ok, "{out}{err}");
    assert_eq!(
        get_token(
            &reg.as_user("carol", "carol-password-2"),
            "notary-registry",
            &[]
        )
        .await
        .status,
        401
    );
}

/// Figures for the report (`cargo test --release --test auth measure -- --ignored
/// --nocapture`); asserts nothing about time.
#[tokio::test]
#[ignore = "measurement, run by hand in release mode"]
async fn measure_token_issue_and_verify() {
    use std::time::Instant;
    let reg = start().await;
    let svc = &reg.svc;
    let access = vec![ResourceActions {
        kind: "repository".into(),
        name: "a/b".into(),
        actions: vec!["pull".into(), "push".into()],
    }];
    let n = 2000;
    let t0 = Instant::now();
    let mut tokens = Vec::new();
    for _ in 0..n {
        tokens.push(
            svc.issue(None, "notary-registry", access.clone())
                .unwrap()
                .0,
        );
    }
    let sign = t0.elapsed();
    let now = notary_registry::meta::now();
    let t0 = Instant::now();
    for t in &tokens {
        svc.signing_key()
            .verify(t, "notary-registry", &["notary-registry"], now)
            .unwrap();
    }
    let verify = t0.elapsed();
    let t0 = Instant::now();
    for _ in 0..100_000 {
        svc.verify_token(&tokens[0], &["notary-registry"], now)
            .unwrap();
    }
    let cached = t0.elapsed();
    let h = notary_registry::auth::password::hash_password("some-password").unwrap();
    let t0 = Instant::now();
    for _ in 0..10 {
        assert!(notary_registry::auth::password::verify_password(
            &h,
            "some-password"
        ));
    }
    let argon = t0.elapsed() / 10;
    let c = reg.admin();
    get_token(&c, "notary-registry", &["repository:a/b:pull"]).await;
    let m = 500;
    let t0 = Instant::now();
    for _ in 0..m {
        assert_eq!(
            get_token(&c, "notary-registry", &["repository:a/b:pull,push"])
                .await
                .status,
            200
        );
    }
    let http = t0.elapsed();
    let t = token_for(&c, &["repository:admin/x:pull"]).await;
    let t0 = Instant::now();
    for _ in 0..m {
        call(&reg.client(), Method::GET, "/v2/", &bearer(&t), b"").await;
    }
    let ping = t0.elapsed();
    println!(
        "ES256 sign: {:.0} tokens/s ({:?} each)",
        n as f64 / sign.as_secs_f64(),
        sign / n
    );
    println!("ES256 verify (uncached): {:?} each", verify / n);
    println!("token verify (cached): {:?} each", cached / 100_000);
    println!("argon2id verify: {argon:?}");
    println!(
        "GET /auth/token (cached Basic, new connection each): {:.0} req/s",
        f64::from(m) / http.as_secs_f64()
    );
    println!(
        "GET /v2/ with a bearer token (new connection each): {:.0} req/s",
        f64::from(m) / ping.as_secs_f64()
    );
}

#[tokio::test]
async fn cli_talks_https_with_the_data_directory_ca() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = base_config(dir.path());
    config.plain_http = false;
    let (db, store) = server::open_backends(&config).await.unwrap();
    let svc = AuthService::new(config.auth.clone(), db.clone(), &config.data_dir, true).unwrap();
    notary_registry::auth::bootstrap_admin(
        svc.store(),
        &config.data_dir,
        Some(ADMIN_PW.to_owned().into()),
    )
    .await
    .unwrap();
    let registry = Arc::new(Registry::new(
        db,
        store,
        Arc::new(TokenAccess::new(Arc::clone(&svc))),
        Arc::new(AllowAll),
        notary_registry::Options::default(),
    ));
    let tls = server::tls_files(&config).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(
        server::app(registry),
        listener,
        Some(tls),
        async move {
            let _ = rx.await;
        },
    ));
    let url = format!("https://localhost:{port}");
    // The realm announced over TLS is https.
    let ca = std::fs::read(config.data_dir.join("tls/ca.crt")).unwrap();
    let r = Client::new(&url, Some(&ca))
        .unwrap()
        .get("/v2/")
        .await
        .unwrap();
    assert_eq!(
        challenge_param(&r, "realm").unwrap(),
        format!("https://localhost:{port}/auth/token")
    );
    // Without a CA the client refuses to guess.
    assert!(Client::new(&url, None).is_err());
    let data = config.data_dir.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        cli(
            &data,
            &[
                "user",
                "add",
                "dave",
                "--url",
                &url,
                "--password-stdin",
                "--new-password-stdin",
            ],
            &format!("{ADMIN_PW}\ndave-password\n"),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{out}{err}");
    assert!(svc.store().user("dave").await.unwrap().is_some());
    let _ = tx.send(());
}
