//! Our responses against the Go server's recorded ones (fixtures `server-http/`), for
//! every capture that does not depend on keys, times or stored state: status,
//! Content-Type, the 401 challenge and the body, byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt as _;
use notary_core::metadata::{FileMeta, Signed, Targets};
use notary_core::{Algorithm, Expires, PrivateKey, Signer};
use notary_server::config::{AuthOptions, AuthSection, Config, StorageSection};
use tower::ServiceExt as _;
use zeroize::Zeroizing;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go-notary-0.7")
}

struct Recorded {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

fn recorded(name: &str) -> Recorded {
    let raw = std::fs::read(fixtures().join("server-http").join(name)).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Recorded {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

async fn app(auth: bool, prefixes: &[&str]) -> Router {
    let mut config = Config {
        storage: StorageSection {
            backend: notary_server::config::Backend::Memory,
            db_url: String::new(),
        },
        ..Config::embedded(Path::new("/nonexistent"))
    };
    config.repositories.gun_prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
    if auth {
        config.auth = Some(AuthSection {
            kind: Some(notary_server::config::AuthKind::Token),
            options: AuthOptions {
                realm: "https://auth.example.test/token".into(),
                service: "notary-test".into(),
                issuer: "test-issuer".into(),
                rootcertbundle: Some(fixtures().join("tls/token.crt")),
            },
        });
    }
    let state = notary_server::daemon::build_state(config, Zeroizing::new("p".into()))
        .await
        .unwrap();
    notary_server::daemon::app(state)
}

const B: &str = "replayboundary";

fn multipart(parts: &[(&str, &[u8])]) -> (Body, String) {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(
            format!("--{B}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{B}--\r\n").as_bytes());
    (
        Body::from(body),
        format!("multipart/form-data; boundary={B}"),
    )
}

async fn check(
    app: &Router,
    fixture: &str,
    method: Method,
    uri: &str,
    body: Body,
    content_type: Option<String>,
    token: Option<&str>,
) {
    let want = recorded(fixture);
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    assert_eq!(resp.status().as_u16(), want.status, "{fixture}: status");
    for h in ["content-type", "www-authenticate"] {
        let got = resp
            .headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_ref(), want.headers.get(h), "{fixture}: {h}");
    }
    let got = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want.body),
        "{fixture}: body"
    );
}

/// A validly signed, canonical targets file (its keys are not in any root).
fn targets_file() -> Vec<u8> {
    let key = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let mut t = Targets::new(Expires::parse("2030-01-01T00:00:00Z").unwrap());
    t.version = 1;
    t.targets.insert("a".into(), FileMeta::from_bytes(b"a"));
    Signed::sign(t, &[(key.public().key_id(), &key as &dyn Signer)])
        .unwrap()
        .into_file_bytes()
}

#[tokio::test]
async fn deterministic_responses_match_go() {
    let app = app(false, &[]).await;
    let gun = "example.com/test/app";
    check(
        &app,
        "01-ping.http",
        Method::GET,
        "/v2/",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "02-health.http",
        Method::GET,
        "/_notary_server/health",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "10-err-metadata-not-found.http",
        Method::GET,
        "/v2/example.com/none/_trust/tuf/root.json",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "11-err-targets-key-catchall.http",
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/targets.key"),
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "12-err-malformed-upload.http",
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        Body::from("x"),
        Some("text/plain".into()),
        None,
    )
    .await;
    let (b, ct) = multipart(&[("foo", b"{}")]);
    check(
        &app,
        "13-err-invalid-role.http",
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        b,
        Some(ct),
        None,
    )
    .await;
    let (b, ct) = multipart(&[("root", b"{this is not json")]);
    check(
        &app,
        "14-err-malformed-json.http",
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        b,
        Some(ct),
        None,
    )
    .await;
    let targets = targets_file();
    let (b, ct) = multipart(&[("targets", &targets)]);
    check(
        &app,
        "17-err-invalid-update-noroot.http",
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        b,
        Some(ct),
        None,
    )
    .await;
    check(
        &app,
        "20-err-changefeed-missing-records.http",
        Method::GET,
        "/v2/_trust/changefeed",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "21-err-changefeed-bad-changeid.http",
        Method::GET,
        "/v2/_trust/changefeed?records=10&change_id=abc",
        Body::empty(),
        None,
        None,
    )
    .await;
}

#[tokio::test]
async fn gun_prefix_refusal_matches_go() {
    let app = app(false, &["docker.io/", "example.com/"]).await;
    let (b, ct) = multipart(&[("root", b"{}")]);
    check(
        &app,
        "22-err-invalid-gun.http",
        Method::POST,
        "/v2/other.org/x/_trust/tuf/",
        b,
        Some(ct),
        None,
    )
    .await;
}

#[tokio::test]
async fn auth_challenges_match_go() {
    let app = app(true, &[]).await;
    let gun = "example.com/test/app";
    check(
        &app,
        "23-auth-401-ping.http",
        Method::GET,
        "/v2/",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "24-auth-401-pull.http",
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
        Body::empty(),
        None,
        None,
    )
    .await;
    let (b, ct) = multipart(&[("root", b"{}")]);
    check(
        &app,
        "25-auth-401-push.http",
        Method::POST,
        &format!("/v2/{gun}/_trust/tuf/"),
        b,
        Some(ct),
        None,
    )
    .await;
    check(
        &app,
        "26-auth-401-delete.http",
        Method::DELETE,
        &format!("/v2/{gun}/_trust/tuf/"),
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "27-auth-401-changefeed-all.http",
        Method::GET,
        "/v2/_trust/changefeed?records=10",
        Body::empty(),
        None,
        None,
    )
    .await;
    check(
        &app,
        "29-auth-401-invalid-token.http",
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
        Body::empty(),
        None,
        Some("not-a-token"),
    )
    .await;
    // The recorded pull-only token has expired since; it is refused as invalid now.
    let old = String::from_utf8(
        std::fs::read(fixtures().join("server-http/28-auth-token-pull-only.jwt")).unwrap(),
    )
    .unwrap();
    check(
        &app,
        "29-auth-401-invalid-token.http",
        Method::GET,
        &format!("/v2/{gun}/_trust/tuf/root.json"),
        Body::empty(),
        None,
        Some(old.trim()),
    )
    .await;
}
