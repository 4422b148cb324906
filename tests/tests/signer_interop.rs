//! notary-signer against real programs (issue 4): Go notary-server on our signer, our
//! notary-server on Go's signer, ours on ours (SQLite and PostgreSQL, two signer
//! replicas), mutual TLS refusals, start-up passphrase errors, and a signer killed and
//! restarted under a running server. The Go `notary` CLI publishes with a
//! server-managed snapshot in every pairing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use notary_signer::client::{ClientConfig, RemoteSigner};
use notary_tests::{Postgres, Proc, fixtures, free_port, require, wait_for_port, workspace_bin};

const ALIAS: &str = "alias1";
const PASS: &str = "signer-pass-1";
const ENV: [(&str, &str); 4] = [
    ("NOTARY_ROOT_PASSPHRASE", "root-pass"),
    ("NOTARY_TARGETS_PASSPHRASE", "targets-pass"),
    ("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot-pass"),
    ("NOTARY_DELEGATION_PASSPHRASE", "delegation-pass"),
];

fn tls(name: &str) -> PathBuf {
    fixtures().join("tls").join(name)
}

/// Writes `v` to a fresh file (names get a sequence number: logs sit next to them).
fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("{n}-{name}"));
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

/// A signer configuration: TLS with the fixture certificate (SAN 127.0.0.1), client
/// certificates required from the fixture CA.
fn signer_config(dir: &Path, port: u16, backend: &str, db_url: &str) -> PathBuf {
    write_json(
        dir,
        &format!("signer-{port}.json"),
        &serde_json::json!({
            "server": {
                "grpc_addr": format!("127.0.0.1:{port}"),
                "tls_cert_file": tls("notary-signer.crt"),
                "tls_key_file": tls("notary-signer.key"),
                "client_ca_file": tls("root-ca.crt"),
            },
            "storage": {"backend": backend, "db_url": db_url, "default_alias": ALIAS},
            "logging": {"level": "info"},
        }),
    )
}

/// Our signer; `port` 0 lets the OS pick. Returns the process and its port.
fn our_signer(cfg: &Path, env: &[(&str, &str)]) -> (Proc, u16) {
    let mut cmd = Command::new(workspace_bin("notary-signer"));
    cmd.arg("-config").arg(cfg);
    cmd.env_remove("NOTARY_SIGNER_ALIAS1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut p = Proc::spawn(cmd, cfg.with_extension("log"));
    let banner = p.banner();
    let port = banner.rsplit(':').next().unwrap().parse().unwrap();
    (p, port)
}

fn pass_env() -> [(&'static str, &'static str); 1] {
    [("NOTARY_SIGNER_ALIAS1", PASS)]
}

/// Go's notary-signer on `port`.
fn go_signer(cfg: &Path, port: u16) -> Proc {
    require("notary-signer");
    let mut cmd = Command::new("notary-signer");
    cmd.arg("-config")
        .arg(cfg)
        .env("NOTARY_SIGNER_ALIAS1", PASS);
    let mut p = Proc::spawn(cmd, cfg.with_extension("log"));
    let log = p.log.clone();
    wait_for_port(port, &mut p.child, &log);
    p
}

/// A notary-server configuration using the signer on `signer_port`, with mutual TLS
/// (client certificate: the fixture server certificate).
fn server_config(
    dir: &Path,
    http_port: u16,
    signer_port: u16,
    storage: serde_json::Value,
) -> PathBuf {
    write_json(
        dir,
        &format!("server-{http_port}.json"),
        &serde_json::json!({
            "server": {
                "http_addr": format!("127.0.0.1:{http_port}"),
                "tls_cert_file": tls("notary-server.crt"),
                "tls_key_file": tls("notary-server.key"),
            },
            "trust_service": {
                "type": "remote",
                "hostname": "127.0.0.1",
                "port": signer_port.to_string(),
                "key_algorithm": "ecdsa",
                "tls_ca_file": tls("root-ca.crt"),
                "tls_client_cert": tls("notary-server.crt"),
                "tls_client_key": tls("notary-server.key"),
            },
            "storage": storage,
            "logging": {"level": "info"},
        }),
    )
}

fn our_server(cfg: &Path) -> (Proc, String) {
    let mut cmd = Command::new(workspace_bin("notary-server"));
    cmd.arg("-config").arg(cfg);
    let mut p = Proc::spawn(cmd, cfg.with_extension("log"));
    let url = p.banner().rsplit(' ').next().unwrap().to_owned();
    (p, url)
}

fn go_server(cfg: &Path, port: u16) -> (Proc, String) {
    require("notary-server");
    let mut cmd = Command::new("notary-server");
    cmd.arg("-config").arg(cfg);
    let mut p = Proc::spawn(cmd, cfg.with_extension("log"));
    let log = p.log.clone();
    wait_for_port(port, &mut p.child, &log);
    (p, format!("https://127.0.0.1:{port}"))
}

fn notary(trust: &Path, url: &str, args: &[&str]) -> Output {
    require("notary");
    let mut cmd = Command::new("notary");
    cmd.arg("-s")
        .arg(url)
        .arg("--tlscacert")
        .arg(tls("root-ca.crt"))
        .arg("-d")
        .arg(trust)
        .args(args)
        .stdin(std::process::Stdio::null());
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn ok(out: Output, what: &str, logs: &[&Path]) -> String {
    if !out.status.success() {
        let logs: Vec<String> = logs
            .iter()
            .map(|p| {
                format!(
                    "--- {}:\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect();
        panic!(
            "{what} failed ({}):\nstdout: {}\nstderr: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            logs.join("\n")
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The publish flow that needs the signer: init (timestamp key created on the signer),
/// snapshot key rotated to the server (created on the signer), a target published
/// (server signs snapshot and timestamp through the signer), lists from the publishing
/// and from a fresh client. Returns the directory holding the publisher's trust dir
/// (`trust/`).
fn publish_scenario(url: &str, gun: &str, logs: &[&Path]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    let payload = dir.path().join("payload");
    std::fs::write(&payload, b"signed through the remote signer").unwrap();
    ok(
        notary(&trust, url, &["init", gun, "-p"]),
        "notary init -p",
        logs,
    );
    ok(
        notary(&trust, url, &["key", "rotate", gun, "snapshot", "-r"]),
        "key rotate snapshot -r",
        logs,
    );
    ok(
        notary(
            &trust,
            url,
            &["add", gun, "v1", payload.to_str().unwrap(), "-p"],
        ),
        "notary add -p",
        logs,
    );
    let list = ok(notary(&trust, url, &["list", gun]), "notary list", logs);
    assert!(list.contains("v1"), "{list}");
    let fresh = dir.path().join("fresh");
    let list = ok(
        notary(&fresh, url, &["list", gun]),
        "fresh notary list",
        logs,
    );
    assert!(list.contains("v1"), "{list}");
    dir
}

fn client(port: u16, identity: Option<(PathBuf, PathBuf)>) -> RemoteSigner {
    RemoteSigner::new(&ClientConfig {
        hostname: "127.0.0.1".into(),
        port,
        ca_pem: std::fs::read(tls("root-ca.crt")).unwrap(),
        client_identity: identity
            .map(|(c, k)| (std::fs::read(c).unwrap(), std::fs::read(k).unwrap())),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn server_identity() -> Option<(PathBuf, PathBuf)> {
    Some((tls("notary-server.crt"), tls("notary-server.key")))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Health of a notary-server: (status, body).
fn health(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(tls("root-ca.crt"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{url}/_notary_server/health"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn wait_health(url: &str, want: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = health(url);
        if code == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {code} {body}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn go_server_on_our_signer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signer.db");
    let (signer, sport) = our_signer(
        &signer_config(dir.path(), 0, "sqlite3", db.to_str().unwrap()),
        &pass_env(),
    );
    let hport = free_port();
    let cfg = server_config(
        dir.path(),
        hport,
        sport,
        serde_json::json!({"backend": "memory"}),
    );
    let (server, url) = go_server(&cfg, hport);
    publish_scenario(
        &url,
        "example.com/signer/go-server",
        &[&server.log, &signer.log],
    );
    // The keys the Go server asked for are sealed in our database in Go's format.
    rt().block_on(async {
        let store = notary_signer::store::KeyStore::open_sqlite(db.to_str().unwrap())
            .await
            .unwrap();
        let aliases = store.aliases().await.unwrap();
        let (n, row) = &aliases[ALIAS];
        assert!(*n >= 2, "timestamp and snapshot keys: {n}");
        let jwe = std::str::from_utf8(&row.private).unwrap();
        assert!(jwe.starts_with(
            "eyJhbGciOiJQQkVTMi1IUzI1NitBMTI4S1ciLCJlbmMiOiJBMjU2R0NNIiwicDJjIjo4MTkyLCJwMnMiOi"
        ));
        assert!(notary_signer::jwe::open(jwe, PASS).is_ok());
        assert!(notary_signer::jwe::open(jwe, "wrong").is_err());
    });
}

#[test]
fn our_server_on_go_signer_reading_a_database_our_signer_created() {
    let pg = Postgres::start();
    let signer_db = pg.database("signer") + "?sslmode=disable";
    let dir = tempfile::tempdir().unwrap();
    // Our signer creates the schema and one key, then stops.
    let (mut ours, oport) = our_signer(
        &signer_config(dir.path(), 0, "postgres", &signer_db),
        &pass_env(),
    );
    let created = rt().block_on(async {
        client(oport, server_identity())
            .create_key("ecdsa", "example.com/handover", "timestamp")
            .await
            .unwrap()
    });
    ours.kill();
    // Go's signer serves from that database, including the key ours sealed.
    let gport = free_port();
    let go = go_signer(
        &signer_config(dir.path(), gport, "postgres", &signer_db),
        gport,
    );
    rt().block_on(async {
        let c = client(gport, server_identity());
        let (public, role) = c
            .key_info(created.key_id().as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(public, created);
        assert_eq!(role, "timestamp");
        let (method, sig) = c
            .sign(created.key_id().as_str(), b"handover")
            .await
            .unwrap();
        created.verify(&method, b"handover", &sig).unwrap();
        c.health().await.unwrap();
    });
    let hport = free_port();
    let cfg = server_config(
        dir.path(),
        hport,
        gport,
        serde_json::json!({"backend": "memory"}),
    );
    let (server, url) = our_server(&cfg);
    publish_scenario(
        &url,
        "example.com/signer/go-signer",
        &[&server.log, &go.log],
    );
    assert_eq!(health(&url).0, 200);
}

/// Our signer and our server, both on SQLite in `dir`: (signer, its port, server, URL).
fn ours_on_sqlite(dir: &Path) -> (Proc, u16, Proc, String) {
    let db = dir.join("signer.db");
    let (signer, sport) = our_signer(
        &signer_config(dir, 0, "sqlite3", db.to_str().unwrap()),
        &pass_env(),
    );
    let cfg = server_config(
        dir,
        0,
        sport,
        serde_json::json!({"backend": "sqlite3", "db_url": dir.join("server.db")}),
    );
    let (server, url) = our_server(&cfg);
    (signer, sport, server, url)
}

#[test]
fn our_server_on_our_signer_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, _, server, url) = ours_on_sqlite(dir.path());
    publish_scenario(
        &url,
        "example.com/signer/sqlite",
        &[&server.log, &signer.log],
    );
    assert_eq!(health(&url), (200, "{}".to_owned()));
}

#[test]
fn our_server_on_two_signer_replicas_sharing_postgres() {
    let pg = Postgres::start();
    let signer_db = pg.database("signer");
    let server_db = pg.database("server");
    let dir = tempfile::tempdir().unwrap();
    let (a, aport) = our_signer(
        &signer_config(dir.path(), 0, "postgres", &signer_db),
        &pass_env(),
    );
    let (b, bport) = our_signer(
        &signer_config(dir.path(), 0, "postgres", &signer_db),
        &pass_env(),
    );
    let cfg = server_config(
        dir.path(),
        0,
        aport,
        serde_json::json!({"backend": "postgres", "db_url": server_db}),
    );
    let (server, url) = our_server(&cfg);
    publish_scenario(
        &url,
        "example.com/signer/postgres",
        &[&server.log, &a.log, &b.log],
    );
    // A key created through one replica signs through the other.
    rt().block_on(async {
        let key = client(aport, server_identity())
            .create_key("ed25519", "example.com/replicas", "snapshot")
            .await
            .unwrap();
        let cb = client(bport, server_identity());
        let (method, sig) = cb.sign(key.key_id().as_str(), b"replica").await.unwrap();
        key.verify(&method, b"replica", &sig).unwrap();
        // Go's semantics: now used, so CreateKey hands out a new key.
        let again = cb
            .create_key("ed25519", "example.com/replicas", "snapshot")
            .await
            .unwrap();
        assert_ne!(again.key_id(), key.key_id());
        // Never used yet: handed out again.
        let third = cb
            .create_key("ed25519", "example.com/replicas", "snapshot")
            .await
            .unwrap();
        assert_eq!(third.key_id(), again.key_id());
        // Unknown keys and algorithms: Go's status codes.
        let e = cb.sign("00ff", b"x").await.unwrap_err();
        assert!(
            matches!(e, notary_signer::client::ClientError::NotFound(_)),
            "{e}"
        );
        assert!(cb.key_info("00ff").await.unwrap().is_none());
        let e = cb
            .create_key("rsa", "g", "timestamp")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Unknown") && e.contains("algorithm rsa not supported"),
            "{e}"
        );
        // Delete: gone from both replicas, and deleting again succeeds.
        cb.delete_key(third.key_id().as_str()).await.unwrap();
        cb.delete_key(third.key_id().as_str()).await.unwrap();
        let ca = client(aport, server_identity());
        assert!(
            ca.key_info(third.key_id().as_str())
                .await
                .unwrap()
                .is_none()
        );
    });
}

#[test]
fn mutual_tls_is_required_and_plain_text_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_signer, port) = our_signer(&signer_config(dir.path(), 0, "memory", ""), &[]);
    // A certificate from another CA (self-signed by openssl).
    let (cert, key) = (
        dir.path().join("intruder.crt"),
        dir.path().join("intruder.key"),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=intruder",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt().block_on(async {
        assert!(
            client(port, None).health().await.is_err(),
            "no client certificate"
        );
        assert!(
            client(port, Some((cert, key))).health().await.is_err(),
            "certificate of another CA"
        );
        let good = client(port, server_identity());
        good.health().await.unwrap();
        let k = good.create_key("ecdsa", "g", "timestamp").await.unwrap();
        let (m, s) = good.sign(k.key_id().as_str(), b"m").await.unwrap();
        k.verify(&m, b"m", &s).unwrap();
    });
    // HTTP/2 in plain text gets no HTTP/2 answer.
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        n < 9 || buf[3] != 0x04,
        "got an HTTP/2 SETTINGS frame over plain text"
    );
}

#[test]
fn passphrase_problems_stop_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signer.db");
    let cfg = signer_config(dir.path(), 0, "sqlite3", db.to_str().unwrap());
    {
        let (_s, port) = our_signer(&cfg, &pass_env());
        rt().block_on(async {
            client(port, server_identity())
                .create_key("ecdsa", "g", "timestamp")
                .await
                .unwrap();
        });
    }
    let start = |env: &[(&str, &str)]| {
        let mut cmd = Command::new(workspace_bin("notary-signer"));
        cmd.arg("-config")
            .arg(&cfg)
            .env_remove("NOTARY_SIGNER_ALIAS1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "signer started anyway");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = start(&[("NOTARY_SIGNER_ALIAS1", "not-the-passphrase")]);
    assert!(
        err.contains("alias1")
            && err.contains("NOTARY_SIGNER_ALIAS1")
            && err.contains("wrong passphrase"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let err = start(&[]);
    assert!(
        err.contains("expected env variable to not be empty: alias1"),
        "{err}"
    );
    // Without client_ca_file: refused (the signer never runs without mutual TLS).
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    v["server"]
        .as_object_mut()
        .unwrap()
        .remove("client_ca_file");
    let open = write_json(dir.path(), "open.json", &v);
    let out = Command::new(workspace_bin("notary-signer"))
        .arg("-config")
        .arg(&open)
        .env("NOTARY_SIGNER_ALIAS1", PASS)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("client_ca_file"));
}

#[test]
fn server_reports_a_dead_signer_and_recovers_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signer.db");
    let (signer, sport, mut server, url) = ours_on_sqlite(dir.path());
    let gun = "example.com/signer/outage";
    let work = publish_scenario(&url, gun, &[&server.log, &signer.log]);
    assert_eq!(health(&url).0, 200);

    drop(signer);
    let body = wait_health(&url, 503, Duration::from_secs(10));
    assert!(body.contains("Trust operational"), "{body}");
    // A publish needing server signatures fails cleanly; the server stays up.
    let trust = work.path().join("trust");
    let payload = work.path().join("p2");
    std::fs::write(&payload, b"second").unwrap();
    ok(
        notary(&trust, &url, &["list", gun]),
        "list while the signer is down (cached metadata)",
        &[&server.log],
    );
    let out = notary(
        &trust,
        &url,
        &["add", gun, "v2", payload.to_str().unwrap(), "-p"],
    );
    assert!(!out.status.success(), "publish without a signer succeeded?");
    assert!(server.child.try_wait().unwrap().is_none(), "server died");
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");

    // The signer comes back on the same port: the server recovers without restart.
    let (signer, _) = our_signer(
        &signer_config(dir.path(), sport, "sqlite3", db.to_str().unwrap()),
        &pass_env(),
    );
    wait_health(&url, 200, Duration::from_secs(20));
    ok(
        notary(&trust, &url, &["publish", gun]),
        "publish after the signer returned",
        &[&server.log, &signer.log],
    );
    let list = ok(notary(&trust, &url, &["list", gun]), "list", &[&server.log]);
    assert!(list.contains("v1") && list.contains("v2"), "{list}");
}

#[test]
fn keys_are_resealed_under_a_new_alias_while_signers_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signer.db");
    let cfg = signer_config(dir.path(), 0, "sqlite3", db.to_str().unwrap());
    let both = [
        ("NOTARY_SIGNER_ALIAS1", PASS),
        ("NOTARY_SIGNER_ALIAS2", "pass-2"),
    ];
    let (running, port) = our_signer(&cfg, &both);
    let keys = rt().block_on(async {
        let c = client(port, server_identity());
        let mut keys = Vec::new();
        for role in ["timestamp", "snapshot"] {
            keys.push(
                c.create_key("ecdsa", "example.com/reseal", role)
                    .await
                    .unwrap(),
            );
        }
        keys
    });
    // Re-seal while the signer runs.
    let out = Command::new(workspace_bin("notary-signer"))
        .arg("-config")
        .arg(&cfg)
        .args(["reseal", "alias2"])
        .envs(both)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 2 key(s) under alias alias2"));
    // The running signer keeps signing.
    rt().block_on(async {
        let c = client(port, server_identity());
        for k in &keys {
            let (m, s) = c.sign(k.key_id().as_str(), b"during").await.unwrap();
            k.verify(&m, b"during", &s).unwrap();
        }
    });
    drop(running);
    // Rows now open with alias2 only: a signer without alias1's variable starts and signs.
    let (_after, port) = our_signer(
        &cfg,
        &[
            ("NOTARY_SIGNER_ALIAS1", "x"),
            ("NOTARY_SIGNER_ALIAS2", "pass-2"),
            ("NOTARY_SIGNER_DEFAULT_ALIAS", "alias2"),
        ],
    );
    rt().block_on(async {
        let c = client(port, server_identity());
        for k in &keys {
            let (m, s) = c.sign(k.key_id().as_str(), b"after").await.unwrap();
            k.verify(&m, b"after", &s).unwrap();
        }
        let store = notary_signer::store::KeyStore::open_sqlite(db.to_str().unwrap())
            .await
            .unwrap();
        let aliases = store.aliases().await.unwrap();
        assert_eq!(aliases.keys().collect::<Vec<_>>(), ["alias2"]);
    });
    // Running it again changes nothing.
    let out = Command::new(workspace_bin("notary-signer"))
        .arg("-config")
        .arg(&cfg)
        .args(["reseal", "alias2"])
        .envs(both)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 0 key(s)"));
}

#[test]
fn malformed_and_oversized_requests_get_grpc_errors_and_the_signer_keeps_serving() {
    use notary_signer::proto;
    let dir = tempfile::tempdir().unwrap();
    let (signer, port) = our_signer(&signer_config(dir.path(), 0, "memory", ""), &[]);
    rt().block_on(async {
        let c = client(port, server_identity());
        let mut raw = proto::signer_client::SignerClient::new(c.channel());
        // No key ID (Go's signer crashes on this one).
        let e = raw
            .sign(proto::SignatureRequest {
                key_id: None,
                content: b"x".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // An absurd key ID.
        let e = raw
            .sign(proto::SignatureRequest {
                key_id: Some(proto::KeyId {
                    id: "a".repeat(10_000),
                }),
                content: b"x".to_vec(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        // Larger than the 32 MiB message limit.
        let e = raw
            .max_encoding_message_size(64 << 20)
            .sign(proto::SignatureRequest {
                key_id: Some(proto::KeyId { id: "00".into() }),
                content: vec![0u8; 33 << 20],
            })
            .await
            .unwrap_err();
        // tonic answers OUT_OF_RANGE ("decoded message length too large"); grpc-go would
        // say RESOURCE_EXHAUSTED.
        assert!(
            matches!(
                e.code(),
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
            ),
            "{e}"
        );
        // Still serving.
        let k = c.create_key("ecdsa", "g", "timestamp").await.unwrap();
        let (m, s) = c.sign(k.key_id().as_str(), b"after").await.unwrap();
        k.verify(&m, b"after", &s).unwrap();
    });
    let log = std::fs::read_to_string(&signer.log).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

fn curl_tls(args: &[&str], url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(tls("root-ca.crt"))
        .args(args)
        .arg("-o")
        .arg(body.path())
        .args(["-w", "%{http_code}", url])
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (code, std::fs::read(body.path()).unwrap_or_default())
}

/// Security review defect 8, through a remote signer: the signer's protocol does not
/// say which GUN a key belongs to, so our server records it. Another tenant's root
/// listing repository A's timestamp key must not get A's key to sign its data.
#[test]
fn remote_signer_keys_sign_only_for_the_gun_they_were_created_for() {
    use notary_core::repo::{KeyRing, RepoEditor};
    use notary_core::{Algorithm, Gun, PrivateKey, PublicKey};
    let dir = tempfile::tempdir().unwrap();
    let (signer, _, server, url) = ours_on_sqlite(dir.path());
    let victim = "example.com/scope/victim";
    publish_scenario(&url, victim, &[&server.log, &signer.log]);
    let key = |gun: &str, role: &str| -> PublicKey {
        let (code, body) = curl_tls(&[], &format!("{url}/v2/{gun}/_trust/tuf/{role}.key"));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let victim_ts = key(victim, "timestamp");
    let attacker = "example.com/scope/attacker";
    let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut editor = RepoEditor::create(
        Gun::new(attacker).unwrap(),
        &root,
        targets.public().clone(),
        key(attacker, "snapshot"),
        victim_ts,
        now,
    )
    .unwrap();
    let files = editor
        .sign(&KeyRing::from_keys(&[root, targets]), now)
        .unwrap()
        .files;
    let parts = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["-X".into(), "POST".into()];
    for (role, bytes) in &files {
        let p = parts.path().join(role.as_str().replace('/', "_"));
        std::fs::write(&p, bytes).unwrap();
        args.push("-F".into());
        args.push(format!(
            "files=@{};filename={role};type=application/octet-stream",
            p.display()
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, body) = curl_tls(&args, &format!("{url}/v2/{attacker}/_trust/tuf/"));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("INVALID_UPDATE"), "{body}");
    let (code, _) = curl_tls(
        &[],
        &format!("{url}/v2/{attacker}/_trust/tuf/timestamp.json"),
    );
    assert_eq!(code, 404, "nothing stored for the attacker");
    // The victim keeps publishing through the signer.
    assert_eq!(health(&url), (200, "{}".to_owned()));
}
