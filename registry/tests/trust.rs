//! The all-in-one `notary-registry`: registry API, Notary API under `/v2/<gun>/_trust/`,
//! token service and admin API on one port, with one login for both.
//!
//! - In process (plain HTTP on a loopback port): Notary access follows the repository's
//!   permission level (pull → read, push → read-write, `*` → admin), with registry tokens
//!   and with Basic credentials; the all-repository changefeed is for administrators;
//!   the Go `notary` CLI publishes with registry credentials (a wrong password is
//!   refused) and the verified trust data is what `Registry::trust_service` hands out;
//!   keys sealed with another passphrase stop the start; on PostgreSQL the Notary tables
//!   live in the registry's database, schema `notary_tuf`.
//! - The binary: the first start creates the data directory and prints the setup lines
//!   once; docker content trust end to end with a real dockerd and docker CLI 28 (the
//!   scenario of `shared/anchors/dct-e2e.sh`, written out here, and the script itself when
//!   the anchors are present). First-start time and RSS are printed, not asserted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use notary_registry::Registry;
use notary_registry::admin::client::{Client, Reply};
use notary_registry::auth::password::hash_password;
use notary_registry::auth::store::{AuthStore, Level};
use notary_registry::server::{self, Config};
use notary_tests::{Postgres, Proc};
use serde_json::Value;

// ------------------------------------------------------------------ in process

struct Aio {
    url: String,
    /// `127.0.0.1:PORT`, the host part of GUNs.
    host: String,
    registry: Arc<Registry>,
    admin_pw: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Aio {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Aio {
    fn client(&self) -> Client {
        Client::new(&self.url, None).unwrap()
    }
    fn as_user(&self, user: &str, pw: &str) -> Client {
        self.client().basic(user, pw)
    }
    fn admin(&self) -> Client {
        self.as_user("admin", &self.admin_pw)
    }
    fn gun(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }
    async fn user(&self, name: &str, pw: &str) {
        let store = AuthStore::new(self.registry.db.clone());
        store
            .create_user(name, &hash_password(pw).unwrap(), false)
            .await
            .unwrap();
    }
    async fn grant(&self, repo: &str, user: &str, level: Level) {
        let store = AuthStore::new(self.registry.db.clone());
        store.set_repo_user_access(repo, user, level).await.unwrap();
    }
}

fn base_config(data: &Path) -> Config {
    Config {
        data_dir: data.to_path_buf(),
        plain_http: true,
        listen: "127.0.0.1:0".parse().unwrap(),
        log_level: "warn".into(),
        ..Config::default()
    }
}

/// `server::build` (the binary's wiring, the Notary side included) served on a loopback
/// port.
async fn start(config: &Config) -> Aio {
    let registry = server::build(config).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    registry.trust.as_ref().unwrap().set_port(addr.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve(
        server::app(Arc::clone(&registry)),
        listener,
        None,
        async move {
            let _ = rx.await;
        },
    ));
    // Empty for a replica joining a database another one bootstrapped.
    let admin_pw = std::fs::read_to_string(config.data_dir.join("admin-password"))
        .map(|p| p.trim().to_owned())
        .unwrap_or_default();
    Aio {
        url: format!("http://{addr}"),
        host: addr.to_string(),
        registry,
        admin_pw,
        stop: Some(tx),
    }
}

async fn get(c: &Client, path: &str) -> Reply {
    c.get(path).await.unwrap()
}

async fn send(c: &Client, method: Method, path: &str) -> Reply {
    c.request(method, path, &[], bytes::Bytes::new())
        .await
        .unwrap()
}

fn challenge(r: &Reply) -> String {
    r.header("www-authenticate").unwrap_or_default().to_owned()
}

async fn token(aio: &Aio, c: &Client, scopes: &[&str]) -> String {
    let mut path = "/auth/token?service=notary-registry".to_owned();
    for s in scopes {
        path.push_str(&format!(
            "&scope={}",
            s.replace(':', "%3A")
                .replace('/', "%2F")
                .replace('*', "%2A")
                .replace(',', "%2C")
        ));
    }
    let r = get(c, &path).await;
    assert_eq!(
        r.status,
        200,
        "token for {scopes:?} from {}: {}",
        aio.url,
        r.text()
    );
    r.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notary_access_follows_the_repository_permission_level() {
    let dir = tempfile::tempdir().unwrap();
    let aio = start(&base_config(&dir.path().join("data"))).await;
    for (u, level) in [
        ("reader", Level::ReadOnly),
        ("writer", Level::ReadWrite),
        ("owner", Level::Admin),
    ] {
        aio.user(u, &format!("{u}-password")).await;
        aio.grant("team/app", u, level).await;
    }
    aio.user("stranger", "stranger-password").await;
    let gun = aio.gun("team/app");
    let root = format!("/v2/{gun}/_trust/tuf/root.json");
    let key = format!("/v2/{gun}/_trust/tuf/timestamp.key");
    let update = format!("/v2/{gun}/_trust/tuf/");
    let user = |u: &str| aio.as_user(u, &format!("{u}-password"));

    // Anonymous: the challenge points at our realm and service, naming the GUN.
    let r = get(&aio.client(), &root).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        challenge(&r),
        format!(
            "Bearer realm=\"http://{}/auth/token\",service=\"notary-registry\",scope=\"repository:{gun}:pull\"",
            aio.host
        )
    );
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    // The ping docker sends to the trust server first is the registry's.
    let r = get(&aio.client(), "/v2/").await;
    assert_eq!(r.status, 401);
    assert!(
        challenge(&r).starts_with(&format!("Bearer realm=\"http://{}/auth/token\"", aio.host)),
        "{}",
        challenge(&r)
    );

    // pull → read-only.
    assert_eq!(
        get(&user("reader"), &root).await.status,
        404,
        "readers may read (nothing published yet)"
    );
    let r = get(&user("reader"), &key).await;
    assert_eq!(r.status, 401, "reading a server key needs push");
    assert!(
        challenge(&r).contains(&format!("scope=\"repository:{gun}:push,pull\"")),
        "{}",
        challenge(&r)
    );
    assert!(
        challenge(&r).ends_with("error=\"insufficient_scope\""),
        "{}",
        challenge(&r)
    );
    // push → read-write: server keys and updates, but not deletion.
    assert_eq!(get(&user("writer"), &key).await.status, 200);
    let r = send(&user("writer"), Method::POST, &update).await;
    assert_eq!(
        r.status,
        400,
        "authorised, then refused as a malformed upload: {}",
        r.text()
    );
    let r = send(&user("writer"), Method::DELETE, &update).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).contains(&format!("scope=\"repository:{gun}:*\"")));
    // `*` → repository admin.
    assert_eq!(
        send(&user("owner"), Method::DELETE, &update).await.status,
        200
    );
    // No grant, wrong password.
    assert_eq!(get(&user("stranger"), &root).await.status, 401);
    let r = get(&aio.as_user("writer", "wrong"), &root).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).ends_with("error=\"invalid_token\""));

    // Tokens from the token service: the grant is the intersection with the level.
    let t = token(
        &aio,
        &user("writer"),
        &[&format!("repository:{gun}:pull,push,*")],
    )
    .await;
    let writer = aio.client().bearer(&t);
    assert_eq!(get(&writer, &key).await.status, 200);
    assert_eq!(send(&writer, Method::DELETE, &update).await.status, 401);
    let t = token(&aio, &user("owner"), &[&format!("repository:{gun}:*")]).await;
    assert_eq!(
        send(&aio.client().bearer(&t), Method::DELETE, &update)
            .await
            .status,
        200
    );
    let r = get(&aio.client().bearer("not.a.token"), &root).await;
    assert_eq!(r.status, 401);
    assert!(challenge(&r).ends_with("error=\"invalid_token\""));

    // A public repository: anonymous callers get a pull token for the GUN (docker pulls
    // with content trust without logging in), and nothing more.
    aio.registry.db.set_public("team/app", true).await.unwrap();
    let t = token(
        &aio,
        &aio.client(),
        &[&format!("repository:{gun}:pull,push")],
    )
    .await;
    let anon = aio.client().bearer(&t);
    assert_eq!(get(&anon, &root).await.status, 404);
    assert_eq!(get(&anon, &key).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_one_gun_does_not_open_another() {
    let dir = tempfile::tempdir().unwrap();
    let aio = start(&base_config(&dir.path().join("data"))).await;
    aio.user("writer", "writer-password").await;
    aio.grant("team/app", "writer", Level::ReadWrite).await;
    let writer = aio.as_user("writer", "writer-password");
    let gun = aio.gun("team/app");
    // A GUN under another host name is not this repository.
    let other = "/v2/elsewhere.example:5000/team/app/_trust/tuf/timestamp.key";
    assert_eq!(get(&writer, other).await.status, 401);
    // The token names the GUN it was asked for; it does not stretch to a sibling.
    let t = token(&aio, &writer, &[&format!("repository:{gun}:pull,push")]).await;
    let bearer = aio.client().bearer(&t);
    assert_eq!(
        get(&bearer, &format!("/v2/{gun}/_trust/tuf/timestamp.key"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(
            &bearer,
            &format!("/v2/{}/_trust/tuf/timestamp.key", aio.gun("team/other"))
        )
        .await
        .status,
        401
    );
    // A registry-scope token (repository `team/app`) is not a Notary grant for the GUN.
    let t = token(&aio, &writer, &["repository:team/app:pull,push"]).await;
    assert_eq!(
        get(
            &aio.client().bearer(&t),
            &format!("/v2/{gun}/_trust/tuf/root.json")
        )
        .await
        .status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_all_repository_changefeed_is_for_administrators() {
    let dir = tempfile::tempdir().unwrap();
    let aio = start(&base_config(&dir.path().join("data"))).await;
    aio.user("writer", "writer-password").await;
    aio.grant("team/app", "writer", Level::ReadWrite).await;
    let writer = aio.as_user("writer", "writer-password");
    let feed = "/v2/_trust/changefeed?records=10";
    // Any logged-in user gets `registry:catalog:*`, which Notary asks for here: the
    // feed would list every repository's name to them.
    let r = get(&writer, feed).await;
    assert_eq!(r.status, 401, "{}", r.text());
    let t = token(&aio, &writer, &["registry:catalog:*"]).await;
    assert_eq!(get(&aio.client().bearer(&t), feed).await.status, 401);
    assert_eq!(get(&aio.client(), feed).await.status, 401);
    let r = get(&aio.admin(), feed).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["count"], 0);
    let t = token(&aio, &aio.admin(), &["registry:catalog:*"]).await;
    assert_eq!(get(&aio.client().bearer(&t), feed).await.status, 200);
    // The per-GUN feed follows the repository's pull permission.
    let gun_feed = format!("/v2/{}/_trust/changefeed?records=10", aio.gun("team/app"));
    assert_eq!(get(&writer, &gun_feed).await.status, 200);
}

fn go_notary(trust: &Path, url: &str, auth: Option<&str>, args: &[&str]) -> Output {
    notary_tests::require("notary");
    let mut cmd = Command::new("notary");
    cmd.arg("-s")
        .arg(url)
        .arg("-d")
        .arg(trust)
        .args(args)
        .stdin(Stdio::null());
    cmd.env("NOTARY_ROOT_PASSPHRASE", "go-root-pass")
        .env("NOTARY_TARGETS_PASSPHRASE", "go-targets-pass")
        .env("NOTARY_SNAPSHOT_PASSPHRASE", "go-snapshot-pass")
        .env_remove("NOTARY_AUTH");
    if let Some(a) = auth {
        cmd.env("NOTARY_AUTH", a);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_notary_cli_publishes_with_registry_credentials_and_the_policy_side_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let aio = start(&base_config(&dir.path().join("data"))).await;
    aio.user("carol", "carol-password").await;
    aio.grant("go/cli", "carol", Level::ReadWrite).await;
    let gun = aio.gun("go/cli");
    let url = aio.url.clone();
    let trust = dir.path().join("trust");
    let file = dir.path().join("payload");
    std::fs::write(&file, b"signed with the Go client\n").unwrap();
    let good = notary_registry::trust::notary_auth("carol", "carol-password");
    let bad = notary_registry::trust::notary_auth("carol", "nope");
    let (g, u, t, f) = (gun.clone(), url.clone(), trust.clone(), file.clone());
    let listed = tokio::task::spawn_blocking(move || {
        let g = g.as_str();
        let out = go_notary(&t, &u, Some(&bad), &["init", g, "-p"]);
        assert!(!out.status.success(), "a wrong password published");
        ok(
            &go_notary(&t, &u, Some(&good), &["init", g, "-p"]),
            "notary init -p",
        );
        ok(
            &go_notary(&t, &u, Some(&good), &["add", g, "v1", f.to_str().unwrap()]),
            "notary add",
        );
        ok(
            &go_notary(&t, &u, Some(&good), &["publish", g]),
            "notary publish",
        );
        // A private repository: anonymous reading is refused, registry credentials work.
        let fresh = t.with_file_name("trust-anon");
        let out = go_notary(&fresh, &u, None, &["list", g]);
        assert!(
            !out.status.success(),
            "anonymous list of a private repository worked"
        );
        ok(&go_notary(&t, &u, Some(&good), &["list", g]), "notary list")
    })
    .await
    .unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("v1 ") && l.contains("targets")),
        "{listed}"
    );

    // What the policy engine reads: verified trust data from the same service.
    let service = aio
        .registry
        .trust_service()
        .expect("the Notary service is exposed");
    let repo = service
        .trusted(&notary_core::Gun::new(&gun).unwrap())
        .await
        .unwrap();
    let target = repo.lookup("v1").expect("v1 signed");
    assert_eq!((target.meta.length, target.role.as_str()), (26, "targets"));
    let trust = aio.registry.trust.as_ref().unwrap();
    assert_eq!(trust.repository_of(&gun, None), "go/cli");
    assert!(
        trust.guns("go/cli").iter().any(|g| g.as_str() == gun),
        "{:?}",
        trust.guns("go/cli")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sealed_with_another_passphrase_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (pa, pb) = (dir.path().join("pass-a"), dir.path().join("pass-b"));
    std::fs::write(&pa, "passphrase-a\n").unwrap();
    std::fs::write(&pb, "passphrase-b\n").unwrap();
    let mut config = base_config(&data);
    config.trust.passphrase_file = Some(pa.clone());
    let aio = start(&config).await;
    // The first key of a GUN is created (and sealed) on demand.
    let r = get(
        &aio.admin(),
        &format!("/v2/{}/_trust/tuf/timestamp.key", aio.gun("sealed/app")),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    drop(aio);
    config.trust.passphrase_file = Some(pb);
    let err = server::build(&config).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("do not open with the passphrase"),
        "{err:#}"
    );
    // The right one starts, and the key still signs.
    config.trust.passphrase_file = Some(pa);
    let aio = start(&config).await;
    assert_eq!(
        get(
            &aio.admin(),
            &format!("/v2/{}/_trust/tuf/timestamp.key", aio.gun("sealed/app"))
        )
        .await
        .status,
        200
    );
}

#[test]
fn a_generated_trust_passphrase_is_kept_private_and_reused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(&dir.path().join("data"));
    let (p1, src) = notary_registry::trust::key_passphrase(&config, None).unwrap();
    let file = config.data_dir.join("trust-passphrase");
    assert_eq!(src, file.display().to_string());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&config.data_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let (p2, _) = notary_registry::trust::key_passphrase(&config, None).unwrap();
    assert_eq!(p1.as_str(), p2.as_str());
    assert!(p1.len() >= 64);
    let (p3, src) =
        notary_registry::trust::key_passphrase(&config, Some("from-env".into())).unwrap();
    assert_eq!(
        (p3.as_str(), src.as_str()),
        ("from-env", "NOTARY_REGISTRY_TRUST_PASSPHRASE")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_the_notary_tables_live_in_the_registry_database() {
    use sqlx::Connection as _;
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let url = pg.database("aio");
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "shared-passphrase").unwrap();
    let mut config = base_config(&dir.path().join("one"));
    config.database = Some(url.clone());
    config.trust.passphrase_file = Some(pass.clone());
    let one = start(&config).await;
    let gun = one.gun("pg/app");
    assert_eq!(
        get(&one.admin(), &format!("/v2/{gun}/_trust/tuf/timestamp.key"))
            .await
            .status,
        200
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let (keys,): (i64,) = sqlx::query_as("SELECT count(*) FROM notary_tuf.server_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, 1);
    let (public_tuf,): (Option<String>,) =
        sqlx::query_as("SELECT to_regclass('public.tuf_files')::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(public_tuf, None, "Notary tables outside their schema");
    let (repos,): (Option<String>,) =
        sqlx::query_as("SELECT to_regclass('public.repositories')::text")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(repos.is_some());
    // A second replica with its own data directory and no shared passphrase would seal
    // with another one: it refuses to start rather than fail every timestamp later.
    let mut two = base_config(&dir.path().join("two"));
    two.database = Some(url.clone());
    let err = server::build(&two).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("NOTARY_REGISTRY_TRUST_PASSPHRASE"),
        "{err:#}"
    );
    // With the shared passphrase it serves the same trust data (behind a balancer both
    // answer to one public name: here the first replica's address).
    two.trust.passphrase_file = Some(pass);
    two.auth.hostnames = vec![one.host.clone()];
    let two = start(&two).await;
    let admin_one = one.admin_pw.clone();
    let key_one = get(&one.admin(), &format!("/v2/{gun}/_trust/tuf/timestamp.key")).await;
    let key_two = get(
        &two.as_user("admin", &admin_one),
        &format!("/v2/{gun}/_trust/tuf/timestamp.key"),
    )
    .await;
    assert_eq!((key_two.status, key_two.body.clone()), (200, key_one.body));
    drop((one, two));
    drop(pg);
}

// ------------------------------------------------------------------ the binary

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_notary-registry"))
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn curl_status(args: &[&str]) -> u16 {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Starts the binary on HTTPS (its defaults) on a loopback port; returns it, its
/// `127.0.0.1:PORT`, the stdout reader (after the banner) and the time to the banner.
fn start_binary(
    data: &Path,
    admin_pw: Option<&str>,
) -> (
    Proc,
    String,
    std::io::BufReader<std::process::ChildStdout>,
    Duration,
) {
    let mut cmd = Command::new(bin());
    cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("NOTARY_REGISTRY_LOG_LEVEL", "warn");
    cmd.env_remove("NOTARY_REGISTRY_ADMIN_PASSWORD")
        .env_remove("NOTARY_REGISTRY_TRUST_PASSPHRASE");
    if let Some(p) = admin_pw {
        cmd.env("NOTARY_REGISTRY_ADMIN_PASSWORD", p);
    }
    let t0 = Instant::now();
    let mut proc = Proc::spawn(cmd, data.with_extension("log"));
    let mut out = std::io::BufReader::new(proc.child.stdout.take().unwrap());
    let mut banner = String::new();
    out.read_line(&mut banner).unwrap();
    let elapsed = t0.elapsed();
    assert!(
        banner.starts_with("notary-registry listening on https://"),
        "banner {banner:?}: {}",
        std::fs::read_to_string(&proc.log).unwrap_or_default()
    );
    let addr = banner.trim().rsplit("://").next().unwrap().to_owned();
    (proc, addr, out, elapsed)
}

#[test]
fn the_first_start_creates_everything_and_prints_the_setup_lines_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut proc, addr, mut out, to_banner) = start_binary(&data, None);
    let ca = data.join("tls/ca.crt");
    let ca_str = ca.canonicalize().unwrap().display().to_string();
    // The lines a user needs, exactly, with this host and port.
    let mut text = String::new();
    while !text.contains("DOCKER_CONTENT_TRUST_SERVER") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "stdout ended early: {text}"
        );
        text.push_str(&line);
    }
    let t0 = Instant::now();
    let mut status = 0;
    while status != 401 && t0.elapsed() < Duration::from_secs(10) {
        status = curl_status(&[
            "--cacert",
            ca.to_str().unwrap(),
            &format!("https://{addr}/v2/"),
        ]);
    }
    let to_serving = to_banner + t0.elapsed();
    assert_eq!(
        status, 401,
        "the registry does not answer over HTTPS with the generated CA"
    );
    let rss = rss_kib(proc.child.id());
    for want in [
        format!(
            "sudo mkdir -p /etc/docker/certs.d/{addr} && sudo cp {ca_str} /etc/docker/certs.d/{addr}/ca.crt"
        ),
        format!("mkdir -p ~/.docker/tls/{addr} && cp {ca_str} ~/.docker/tls/{addr}/ca.crt"),
        format!("docker login {addr} -u admin"),
        format!("export DOCKER_CONTENT_TRUST=1 DOCKER_CONTENT_TRUST_SERVER=https://{addr}"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    let password_file = data.join("admin-password");
    assert!(
        text.contains(&password_file.canonicalize().unwrap().display().to_string()),
        "{text}"
    );
    for f in [
        "registry.db",
        "notary.db",
        "tls/ca.crt",
        "tls/server.crt",
        "admin-password",
        "trust-passphrase",
    ] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    for f in [
        "tls/ca.key",
        "tls/server.key",
        "admin-password",
        "trust-passphrase",
    ] {
        assert_eq!(
            std::fs::metadata(data.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600,
            "{f}"
        );
    }
    // The admin password printed once works on the Notary API (Basic over HTTPS).
    let pw = std::fs::read_to_string(&password_file)
        .unwrap()
        .trim()
        .to_owned();
    let root = format!("https://{addr}/v2/{addr}/first/start/_trust/tuf/root.json");
    assert_eq!(
        curl_status(&[
            "--cacert",
            ca.to_str().unwrap(),
            "-u",
            &format!("admin:{pw}"),
            &root
        ]),
        404
    );
    assert_eq!(curl_status(&["--cacert", ca.to_str().unwrap(), &root]), 401);
    proc.kill();
    eprintln!(
        "MEASURED first start (new data directory, CA, databases, admin, Notary keys' passphrase): banner after {:.0} ms, serving HTTPS after {:.0} ms; RSS {} KiB",
        to_banner.as_secs_f64() * 1000.0,
        to_serving.as_secs_f64() * 1000.0,
        rss.unwrap_or(0)
    );

    // Second start: the same data, nothing printed after the banner.
    let (mut proc, _addr, mut out, to_banner) = start_binary(&data, None);
    proc.kill();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "", "the setup lines were printed again");
    eprintln!(
        "MEASURED restart: banner after {:.0} ms",
        to_banner.as_secs_f64() * 1000.0
    );
}

/// A docker engine to talk to: the one the environment points at when it answers, else
/// one of our own (vfs, no networking) when this machine can run it.
struct Engine {
    host: String,
    _proc: Option<notary_tests::Dockerd>,
}

fn have(c: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {c}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn engine(root: &Path) -> Option<Engine> {
    if !have("docker") {
        eprintln!("\n!!! SKIPPING the docker content trust test: no docker CLI !!!\n");
        return None;
    }
    let existing =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let answers = |host: &str| {
        Command::new("docker")
            .env("DOCKER_HOST", host)
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if answers(&existing) {
        return Some(Engine {
            host: existing,
            _proc: None,
        });
    }
    let d = notary_tests::Dockerd::start(root, "the docker content trust test")?;
    Some(Engine {
        host: d.host.clone(),
        _proc: Some(d),
    })
}

/// The all-in-one and a docker client set up as the first-start lines say: CA for
/// dockerd and for the CLI, logged in, content trust pointed at the registry's host.
struct DockerSetup {
    _engine: Engine,
    proc: Proc,
    addr: String,
    ca: PathBuf,
    config_dir: PathBuf,
    host: String,
    work: PathBuf,
}

const DCT_ADMIN_PW: &str = "dct-admin-password";

impl DockerSetup {
    fn new(root: &Path) -> Option<DockerSetup> {
        let engine = engine(root)?;
        let data = root.join("data");
        let (proc, addr, _out, _) = start_binary(&data, Some(DCT_ADMIN_PW));
        let ca = data.join("tls/ca.crt");
        let certs = PathBuf::from(format!("/etc/docker/certs.d/{addr}"));
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
        let config_dir = root.join("docker-config");
        std::fs::create_dir_all(config_dir.join("tls").join(&addr)).unwrap();
        std::fs::copy(&ca, config_dir.join("tls").join(&addr).join("ca.crt")).unwrap();
        let setup = DockerSetup {
            host: engine.host.clone(),
            _engine: engine,
            proc,
            addr,
            ca,
            config_dir,
            work: root.to_path_buf(),
        };
        let login = setup.docker(&["login", "-u", "admin", "--password-stdin", &setup.addr]);
        let out = notary_tests::output_with_stdin(login, Some(DCT_ADMIN_PW.as_bytes()));
        assert!(
            out.status.success(),
            "docker login: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(setup)
    }

    fn docker(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config_dir)
            .env(
                "DOCKER_CONTENT_TRUST_SERVER",
                format!("https://{}", self.addr),
            )
            .env(
                "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
                "dct-root-passphrase",
            )
            .env(
                "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
                "dct-repo-passphrase",
            )
            .env("DOCKER_CONTENT_TRUST", "0")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn dct(&self, args: &[&str]) -> Command {
        let mut c = self.docker(args);
        c.env("DOCKER_CONTENT_TRUST", "1");
        c
    }

    fn inspect(&self, reference: &str) -> Value {
        let out = self
            .docker(&["trust", "inspect", reference])
            .output()
            .unwrap();
        serde_json::from_str(&ok(&out, "docker trust inspect")).unwrap()
    }
}

impl Drop for DockerSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/etc/docker/certs.d/{}", self.addr));
    }
}

fn signers_of(inspect: &Value, tag: &str) -> Vec<String> {
    inspect[0]["SignedTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["SignedTag"] == tag)
        .flat_map(|t| t["Signers"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

fn rootfs_tar(path: &Path, text: &str) {
    let dir = path.with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), text).unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(path)
        .arg(".")
        .output()
        .unwrap();
    ok(&out, "tar");
}

fn fails_with(out: &Output, pattern: &[&str], what: &str) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{what} succeeded:\n{text}");
    assert!(
        pattern.iter().any(|p| text.contains(p)),
        "{what}: unexpected output:\n{text}"
    );
}

/// `shared/anchors/dct-e2e.sh`, step by step, with the docker CLI.
#[test]
fn docker_content_trust_end_to_end_against_the_all_in_one() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s) = DockerSetup::new(tmp.path()) else {
        return;
    };
    let img = format!("{}/e2e/hello", s.addr);
    let (tag1, tag2, unsigned) = (
        format!("{img}:1"),
        format!("{img}:2"),
        format!("{img}:unsigned"),
    );
    let rmi = |r: &str| {
        let _ = s.docker(&["rmi", "-f", r]).output();
    };
    for r in [&tag1, &tag2, &unsigned] {
        rmi(r);
    }
    let tar = s.work.join("rootfs.tar");
    rootfs_tar(&tar, &format!("dct end to end {:?}\n", Instant::now()));
    ok(
        &s.docker(&[
            "import",
            "-c",
            "CMD [\"/hello.txt\"]",
            tar.to_str().unwrap(),
            &tag1,
        ])
        .output()
        .unwrap(),
        "docker import",
    );

    // DCT push: the image goes to the registry, the signature to the Notary API on the
    // same host, with the same login.
    let pushed = ok(&s.dct(&["push", &tag1]).output().unwrap(), "DCT push");
    assert!(pushed.contains("Successfully signed"), "{pushed}");
    let digest = pushed
        .split("1: digest: ")
        .nth(1)
        .and_then(|x| x.split_whitespace().next())
        .unwrap()
        .to_owned();
    // The server holds the four roles; targets names the pushed manifest.
    let ca = s.ca.to_str().unwrap();
    for role in ["root", "targets", "snapshot", "timestamp"] {
        let url = format!("https://{}/v2/{img}/_trust/tuf/{role}.json", s.addr);
        assert_eq!(
            curl_status(&["--cacert", ca, "-u", &format!("admin:{DCT_ADMIN_PW}"), &url]),
            200,
            "{role}"
        );
    }

    // DCT pull by tag resolves through the trust data.
    rmi(&tag1);
    ok(&s.dct(&["pull", &tag1]).output().unwrap(), "DCT pull");
    let out = s
        .docker(&[
            "image",
            "inspect",
            "-f",
            "{{range .RepoDigests}}{{.}} {{end}}",
            &tag1,
        ])
        .output()
        .unwrap();
    assert!(ok(&out, "image inspect").contains(&digest));
    let inspect = s.inspect(&tag1);
    let signed = inspect[0]["SignedTags"].as_array().unwrap();
    assert!(
        signed
            .iter()
            .any(|t| t["SignedTag"] == "1" && t["Digest"] == digest.trim_start_matches("sha256:")),
        "{inspect}"
    );

    // An unsigned tag is pushed without DCT and refused with it.
    ok(
        &s.docker(&["tag", &tag1, &unsigned]).output().unwrap(),
        "docker tag",
    );
    ok(
        &s.docker(&["push", &unsigned]).output().unwrap(),
        "plain push",
    );
    rmi(&unsigned);
    fails_with(
        &s.dct(&["pull", &unsigned]).output().unwrap(),
        &[
            "No valid trust data for unsigned",
            "does not have trust data",
            "no trust data",
        ],
        "DCT pull of an unsigned tag",
    );

    // Signers.
    let keys = s.work.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    ok(
        &s.docker(&[
            "trust",
            "key",
            "generate",
            "alice",
            "--dir",
            keys.to_str().unwrap(),
        ])
        .output()
        .unwrap(),
        "key generate",
    );
    let pubkey = keys.join("alice.pub");
    ok(
        &s.docker(&[
            "trust",
            "signer",
            "add",
            "--key",
            pubkey.to_str().unwrap(),
            "alice",
            &img,
        ])
        .output()
        .unwrap(),
        "signer add",
    );
    let inspect = s.inspect(&img);
    assert!(
        inspect[0]["Signers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["Name"] == "alice"),
        "{inspect}"
    );
    // Sign an existing tag without the image locally (trust data only).
    rmi(&tag1);
    ok(
        &s.docker(&["trust", "sign", &tag1]).output().unwrap(),
        "trust sign 1",
    );
    assert!(signers_of(&s.inspect(&tag1), "1").contains(&"alice".to_owned()));
    // Sign a new tag: pushed and signed into alice's delegation.
    ok(
        &s.docker(&["import", tar.to_str().unwrap(), &tag2])
            .output()
            .unwrap(),
        "import 2",
    );
    ok(
        &s.docker(&["trust", "sign", &tag2]).output().unwrap(),
        "trust sign 2",
    );
    assert!(signers_of(&s.inspect(&tag2), "2").contains(&"alice".to_owned()));
    rmi(&tag2);
    ok(&s.dct(&["pull", &tag2]).output().unwrap(), "DCT pull 2");
    ok(
        &s.docker(&["trust", "inspect", "--pretty", &img])
            .output()
            .unwrap(),
        "inspect --pretty",
    );

    // Revoke.
    ok(
        &s.docker(&["trust", "revoke", "-y", &tag2])
            .output()
            .unwrap(),
        "revoke 2",
    );
    rmi(&tag2);
    fails_with(
        &s.dct(&["pull", &tag2]).output().unwrap(),
        &[
            "No valid trust data for 2",
            "does not have trust data",
            "no trust data",
        ],
        "DCT pull of a revoked tag",
    );
    ok(
        &s.docker(&["trust", "revoke", "-y", &tag1])
            .output()
            .unwrap(),
        "revoke 1",
    );
    assert!(!signers_of(&s.inspect(&tag1), "1").contains(&"alice".to_owned()));
    // Remove the signer (the CLI asks; `--force` is a no-op in docker 28). Go writes
    // targets/releases with `"keyids":null` here.
    let remove = s.docker(&["trust", "signer", "remove", "alice", &img]);
    let out = notary_tests::output_with_stdin(remove, Some(b"y\n"));
    ok(&out, "signer remove");
    let inspect = s.inspect(&img);
    assert!(
        !inspect[0]["Signers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .any(|x| x["Name"] == "alice"),
        "{inspect}"
    );

    for r in [&tag1, &tag2, &unsigned] {
        rmi(r);
    }
    eprintln!(
        "MEASURED RSS of the all-in-one after the DCT scenario: {} KiB",
        rss_kib(s.proc.child.id()).unwrap_or(0)
    );
}

/// The shared anchor script, unchanged, against the all-in-one.
#[test]
fn the_anchor_dct_e2e_script_passes_against_the_all_in_one() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors/dct-e2e.sh");
    if !script.exists() {
        eprintln!(
            "\n!!! SKIPPING the anchor script: {} is not there !!!\n",
            script.display()
        );
        return;
    }
    for c in ["curl", "jq", "tar"] {
        if !have(c) {
            eprintln!("\n!!! SKIPPING the anchor script: `{c}` missing !!!\n");
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(s) = DockerSetup::new(tmp.path()) else {
        return;
    };
    let ca = s.ca.to_str().unwrap();
    let out = Command::new("bash")
        .arg(&script)
        .env("DOCKER_HOST", &s.host)
        .env("NOTARY_URL", format!("https://{}", s.addr))
        .env("REGISTRY", &s.addr)
        .env("CA_CERT", ca)
        .env("REGISTRY_CA_CERT", ca)
        .env("REGISTRY_USER", "admin")
        .env("REGISTRY_PASSWORD", DCT_ADMIN_PW)
        .env("E2E_WORKDIR", tmp.path().join("e2e"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dct-e2e.sh failed:\n{text}");
    assert!(text.contains(", 0 failed"), "{text}");
    assert!(!text.contains("FAIL "), "{text}");
    // Run twice: the second run resets the GUN first (DELETE needs `*`, repository admin).
    let again = Command::new("bash")
        .arg(&script)
        .env("DOCKER_HOST", &s.host)
        .env("NOTARY_URL", format!("https://{}", s.addr))
        .env("REGISTRY", &s.addr)
        .env("CA_CERT", ca)
        .env("REGISTRY_CA_CERT", ca)
        .env("REGISTRY_USER", "admin")
        .env("REGISTRY_PASSWORD", DCT_ADMIN_PW)
        .env("E2E_WORKDIR", tmp.path().join("e2e-again"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        again.status.success(),
        "second dct-e2e.sh run failed:\n{text}"
    );
}

/// `trust.remote`: timestamps signed by a notary-signer (Go's, from Debian, over mutual
/// TLS with the fixture certificates) instead of in process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_notary_signer_signs_the_timestamps() {
    notary_tests::require("notary-signer");
    let dir = tempfile::tempdir().unwrap();
    let tls = notary_tests::fixtures().join("tls");
    let port = notary_tests::free_port();
    let signer_cfg = dir.path().join("signer.json");
    std::fs::write(
        &signer_cfg,
        serde_json::json!({
            "server": {"grpc_addr": format!("127.0.0.1:{port}"),
                       "tls_cert_file": tls.join("notary-signer.crt"), "tls_key_file": tls.join("notary-signer.key"),
                       "client_ca_file": tls.join("root-ca.crt")},
            "storage": {"backend": "memory", "db_url": "", "default_alias": "alias1"},
            "logging": {"level": "info"},
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new("notary-signer");
    cmd.arg("-config")
        .arg(&signer_cfg)
        .env("NOTARY_SIGNER_ALIAS1", "signer-pass-1");
    let mut signer = Proc::spawn(cmd, dir.path().join("signer.log"));
    let log = signer.log.clone();
    notary_tests::wait_for_port(port, &mut signer.child, &log);

    let mut config = base_config(&dir.path().join("data"));
    config.trust.remote = Some(notary_registry::trust::RemoteSignerConfig {
        hostname: "127.0.0.1".into(),
        port,
        tls_ca_file: tls.join("root-ca.crt"),
        tls_client_cert: Some(tls.join("notary-server.crt")),
        tls_client_key: Some(tls.join("notary-server.key")),
    });
    let aio = start(&config).await;
    assert!(
        aio.registry
            .trust
            .as_ref()
            .unwrap()
            .describe()
            .contains("notary-signer at 127.0.0.1")
    );
    assert!(
        !config.data_dir.join("trust-passphrase").exists(),
        "no local keys, no passphrase"
    );
    let gun = aio.gun("remote/app");
    let (url, trust, auth, g) = (
        aio.url.clone(),
        dir.path().join("trust"),
        notary_registry::trust::notary_auth("admin", &aio.admin_pw),
        gun.clone(),
    );
    tokio::task::spawn_blocking(move || {
        ok(
            &go_notary(&trust, &url, Some(&auth), &["init", &g, "-p"]),
            "notary init -p",
        )
    })
    .await
    .unwrap();
    // The timestamp key is the signer's: the verified repository's timestamp role
    // lists a key the signer holds (and no key sits in the Notary database).
    let repo = aio
        .registry
        .trust_service()
        .unwrap()
        .trusted(&notary_core::Gun::new(&gun).unwrap())
        .await
        .unwrap();
    assert_eq!(repo.timestamp().version, 1);
    let ts_key = repo.root().roles["timestamp"].keyids[0].to_string();
    {
        use sqlx::Connection as _;
        let db = config.data_dir.join("notary.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let (local,): (i64,) = sqlx::query_as("SELECT count(*) FROM server_keys")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let (scoped,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM remote_key_scopes WHERE gun = $1 AND role = 'timestamp'",
        )
        .bind(&gun)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!((local, scoped), (0, 1), "timestamp key {ts_key}");
    }
    let health = get(&aio.client(), "/health").await;
    assert_eq!(health.json()["notary"]["signer"], "OK", "{}", health.text());
    // The signer gone: reads still work, the registry stays healthy, the signer is
    // reported.
    signer.kill();
    let r = get(&aio.admin(), &format!("/v2/{gun}/_trust/tuf/root.json")).await;
    assert_eq!(r.status, 200);
    let health = get(&aio.client(), "/health").await;
    assert_eq!(health.status, 200, "{}", health.text());
    assert_ne!(health.json()["notary"]["signer"], "OK", "{}", health.text());
}

/// `docker trust signer remove` (Go) publishes `targets/releases` with `"keyids":null`
/// once its last key is gone: such a file must parse and count as canonical, or the
/// server refuses the removal ("trust server rejected operation").
#[test]
fn delegations_without_keys_keep_gos_null() {
    use notary_core::metadata::{Signed, Targets};
    let signed: Targets = serde_json::from_value(serde_json::json!({
        "delegations": {"keys": {}, "roles": [{"keyids": null, "name": "targets/releases", "paths": [""], "threshold": 1}]},
        "expires": "2030-01-01T00:00:00Z", "targets": {}, "version": 3
    }))
    .unwrap();
    assert!(signed.delegations.roles[0].keyids.is_empty());
    let file = Signed::from_parts(signed, Vec::new())
        .unwrap()
        .into_file_bytes();
    assert!(
        String::from_utf8_lossy(&file).contains(r#""keyids":null"#),
        "{}",
        String::from_utf8_lossy(&file)
    );
    let parsed = Signed::<Targets>::parse(file).unwrap();
    assert!(parsed.is_canonical());
}

fn curl_json(ca: &str, user: &str, method: &str, url: &str, body: &str) -> u16 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca,
            "-u",
            user,
            "-X",
            method,
        ])
        .args(["-H", "Content-Type: application/json", "--data", body, url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// docker ≥ 29 has no content trust: a plain `docker push`, then `notary image sign`, and
/// the registry itself refuses plain pulls of what is not signed in an enforced repository.
#[test]
fn docker_29_flow_plain_push_notary_image_sign_and_the_registry_enforces() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s) = DockerSetup::new(tmp.path()) else {
        return;
    };
    let ca = s.ca.to_str().unwrap().to_owned();
    let admin = format!("admin:{DCT_ADMIN_PW}");
    let api = format!("https://{}", s.addr);
    // A reader (read-only on the repository) and an enforced policy on it.
    assert_eq!(
        curl_json(
            &ca,
            &admin,
            "POST",
            &format!("{api}/api/v0/users"),
            r#"{"name":"reader","password":"reader-password-1"}"#
        ),
        201
    );
    let st = curl_json(
        &ca,
        &admin,
        "PUT",
        &format!("{api}/api/v0/repositories/org29/app/userAccess/reader"),
        r#"{"accessLevel":"read-only"}"#,
    );
    assert!(st == 200 || st == 201, "grant: {st}");
    let st = curl_json(
        &ca,
        &admin,
        "PUT",
        &format!("{api}/api/v0/policies/repositories/org29/app"),
        r#"{"mode":"enforced"}"#,
    );
    assert!(st == 200 || st == 201, "policy: {st}");

    let img = format!("{}/org29/app", s.addr);
    let (signed, unsigned) = (format!("{img}:v1"), format!("{img}:v2"));
    let tar = s.work.join("rootfs29.tar");
    rootfs_tar(&tar, "docker 29 flow\n");
    for t in [&signed, &unsigned] {
        ok(
            &s.docker(&["import", tar.to_str().unwrap(), t])
                .output()
                .unwrap(),
            "docker import",
        );
        ok(
            &s.docker(&["push", t]).output().unwrap(),
            "plain docker push",
        );
    }
    // `notary image sign` (our CLI) signs v1 with the docker login and trust directory.
    let mut sign = Command::new(notary_tests::workspace_bin("notary"));
    sign.args(["image", "sign", &signed])
        .env("DOCKER_CONFIG", &s.config_dir)
        .env("DOCKER_CONTENT_TRUST_SERVER", format!("https://{}", s.addr))
        .env(
            "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE",
            "dct-root-passphrase",
        )
        .env(
            "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
            "dct-repo-passphrase",
        )
        // Credentials: the identity (refresh) token `docker login` stored, exchanged
        // with the OAuth2 refresh grant.
        .env_remove("NOTARY_AUTH")
        .stdin(Stdio::null());
    ok(&sign.output().unwrap(), "notary image sign");

    // The reader pulls with plain docker (no content trust anywhere on the client).
    let reader_cfg = s.work.join("reader-config");
    std::fs::create_dir_all(&reader_cfg).unwrap();
    let reader = |args: &[&str]| {
        let mut c = s.docker(args);
        c.env("DOCKER_CONFIG", &reader_cfg);
        c
    };
    let out = notary_tests::output_with_stdin(
        reader(&["login", "-u", "reader", "--password-stdin", &s.addr]),
        Some(b"reader-password-1"),
    );
    assert!(
        out.status.success(),
        "reader login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [&signed, &unsigned] {
        let _ = s.docker(&["rmi", "-f", t]).output();
    }
    ok(
        &reader(&["pull", &signed]).output().unwrap(),
        "plain pull of the signed tag",
    );
    fails_with(
        &reader(&["pull", &unsigned]).output().unwrap(),
        &["denied", "DENIED", "not signed", "signed"],
        "plain pull of the unsigned tag",
    );
    for t in [&signed, &unsigned] {
        let _ = s.docker(&["rmi", "-f", t]).output();
    }
}
