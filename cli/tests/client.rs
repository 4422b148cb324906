//! Our `notary` (issue 5, part 1) against the Go notary-server and ours, and side by side
//! with the Go `notary` on the same trust directory: what one publishes the other lists,
//! changes staged by one are published by the other, keys made by one sign for the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use notary_tests::{GoNotaryServer, Proc, ok, output_with_stdin, require, workspace_bin};

const ENV: [(&str, &str); 4] = [
    ("NOTARY_DELEGATION_PASSPHRASE", "delegation-pass-1"),
    ("NOTARY_ROOT_PASSPHRASE", "root-pass-1"),
    ("NOTARY_TARGETS_PASSPHRASE", "targets-pass-1"),
    ("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot-pass-1"),
];

/// A server to talk to: URL and, for HTTPS, the CA to trust.
struct Target {
    url: String,
    ca: Option<PathBuf>,
}

fn run(bin: &str, t: &Target, trust: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg("-s").arg(&t.url).arg("-d").arg(trust);
    if let Some(ca) = &t.ca {
        cmd.arg("--tlscacert").arg(ca);
    }
    cmd.args(args)
        .envs(ENV)
        .env("HOME", trust.parent().unwrap());
    output_with_stdin(cmd, stdin)
}

/// Ours with environment changes (`None` removes a variable), stdin closed.
fn ours_env(t: &Target, trust: &Path, args: &[&str], env: &[(&str, Option<&str>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
    cmd.arg("-s")
        .arg(&t.url)
        .arg("-d")
        .arg(trust)
        .args(args)
        .envs(ENV);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    output_with_stdin(cmd, None)
}

fn ours(t: &Target, trust: &Path, args: &[&str]) -> Output {
    run(env!("CARGO_BIN_EXE_notary"), t, trust, args, None)
}

fn go(t: &Target, trust: &Path, args: &[&str]) -> Output {
    require("notary");
    run("notary", t, trust, args, None)
}

fn fails(out: Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with status 1: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The scenario of notary-cli-e2e.sh that this CLI covers, with Go's `notary` reading and
/// writing the same repository in between.
fn scenario(t: &Target, gun: &str) {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    let f1 = dir.path().join("f1");
    std::fs::write(&f1, b"hello\n").unwrap();
    let f1s = f1.to_str().unwrap();

    ok(ours(t, &trust, &["init", gun, "-p"]), "init -p");
    let out = ok(ours(t, &trust, &["add", gun, "v1", f1s, "-p"]), "add -p");
    assert!(
        out.contains(&format!(
            "Addition of target \"v1\" to repository \"{gun}\" staged for next publish."
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("Auto-publishing changes to {gun}"))
            && out.contains(&format!(
                "Successfully published changes for repository {gun}"
            )),
        "{out}"
    );
    let sha = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let list = ok(ours(t, &trust, &["list", gun]), "list");
    assert_eq!(
        list,
        format!(
            "NAME    DIGEST                                                              SIZE (BYTES)    ROLE\n\
             ----    ------                                                              ------------    ----\n\
             v1      {sha}    6               targets\n"
        )
    );
    // Go reads what we published, byte for byte the same table.
    assert_eq!(ok(go(t, &trust, &["list", gun]), "go list"), list);
    assert_eq!(
        ok(ours(t, &trust, &["lookup", gun, "v1"]), "lookup"),
        format!("v1 sha256:{sha} 6\n")
    );
    let v = run(
        env!("CARGO_BIN_EXE_notary"),
        t,
        &trust,
        &["verify", gun, "v1"],
        Some(b"hello\n"),
    );
    assert_eq!(ok(v, "verify"), "hello\n");
    let v = run(
        env!("CARGO_BIN_EXE_notary"),
        t,
        &trust,
        &["verify", gun, "v1"],
        Some(b"tampered\n"),
    );
    let e = fails(v, "verify of other data");
    assert!(
        e.contains("* fatal: data not present in the trusted collection"),
        "{e}"
    );

    // addhash, staged; status; reset one; publish by Go (our changelist, Go's publish).
    ok(
        ours(
            t,
            &trust,
            &["addhash", gun, "v2", "0x10", "--sha256", &"ab".repeat(32)],
        ),
        "addhash",
    );
    ok(
        ours(
            t,
            &trust,
            &["addhash", gun, "v3", "3", "--sha512", &"cd".repeat(64)],
        ),
        "addhash sha512",
    );
    let st = ok(ours(t, &trust, &["status", gun]), "status");
    assert_eq!(
        st,
        format!(
            "Unpublished changes for {gun}:\n\n\
             #    ACTION    SCOPE      TYPE      PATH\n\
             -    ------    -----      ----      ----\n\
             0    create    targets    target    v2\n\
             1    create    targets    target    v3\n"
        )
    );
    assert_eq!(st, ok(go(t, &trust, &["status", gun]), "go status"));
    ok(ours(t, &trust, &["reset", gun, "-n", "1"]), "reset -n 1");
    ok(
        go(t, &trust, &["publish", gun]),
        "go publish of our staged change",
    );
    let list = ok(ours(t, &trust, &["list", gun]), "list after go publish");
    assert!(
        list.contains("v2")
            && list.contains(&"ab".repeat(32))
            && list.contains("16 ")
            && !list.contains("v3"),
        "{list}"
    );

    // Go stages and publishes; ours lists. Go stages, ours publishes.
    ok(go(t, &trust, &["add", gun, "go1", f1s, "-p"]), "go add -p");
    ok(go(t, &trust, &["remove", gun, "v2"]), "go remove");
    ok(
        ours(t, &trust, &["publish", gun]),
        "our publish of Go's staged change",
    );
    let list = ok(go(t, &trust, &["list", gun]), "go list");
    assert!(
        list.contains("go1") && list.contains("v1") && !list.contains("v2"),
        "{list}"
    );

    // remove -p, and a fresh client (trust on first use).
    ok(ours(t, &trust, &["remove", gun, "go1", "-p"]), "remove -p");
    let fresh = dir.path().join("fresh");
    let list = ok(ours(t, &fresh, &["list", gun]), "fresh list");
    assert!(list.contains("v1") && !list.contains("go1"), "{list}");

    // key list: same keys, same table as Go's.
    let keys = ok(ours(t, &trust, &["key", "list"]), "key list");
    assert_eq!(keys, ok(go(t, &trust, &["key", "list"]), "go key list"));
    assert!(
        keys.contains("root") && keys.contains("targets") && keys.contains("snapshot"),
        "{keys}"
    );

    // delete --remote; then there is nothing to list.
    ok(
        ours(t, &trust, &["delete", gun, "--remote"]),
        "delete --remote",
    );
    assert!(!trust.join("tuf").join(gun).exists());
    let e = fails(
        ours(t, &dir.path().join("fresh2"), &["list", gun]),
        "list after delete",
    );
    assert!(
        e.contains(&format!("does not have trust data for {gun}")),
        "{e}"
    );
}

#[test]
fn against_go_notary_server() {
    let server = GoNotaryServer::start();
    scenario(
        &Target {
            url: server.url.clone(),
            ca: None,
        },
        "example.com/client/go-server",
    );
}

/// Our notary-server on embedded defaults (SQLite, generated TLS certificate).
fn on_our_server() -> (Proc, Target, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(workspace_bin("notary-server"));
    cmd.arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"]);
    let mut p = Proc::spawn(cmd, dir.path().join("server.log"));
    let url = p.banner().rsplit(' ').next().unwrap().to_owned();
    let t = Target {
        url,
        ca: Some(dir.path().join("notary-server.crt")),
    };
    (p, t, dir)
}

#[test]
fn against_our_notary_server_over_tls() {
    let (_p, t, _dir) = on_our_server();
    scenario(&t, "example.com/client/our-server");
}

/// A Go notary-server (memory, HTTP), its target and a scratch directory.
fn on_go_server() -> (GoNotaryServer, Target, tempfile::TempDir) {
    let server = GoNotaryServer::start();
    let t = Target {
        url: server.url.clone(),
        ca: None,
    };
    (server, t, tempfile::tempdir().unwrap())
}

#[test]
fn go_created_repository_is_used_by_ours() {
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    let f = dir.path().join("f");
    std::fs::write(&f, b"payload").unwrap();
    let gun = "example.com/client/from-go";
    ok(go(&t, &trust, &["init", gun, "-p"]), "go init");
    ok(
        go(&t, &trust, &["add", gun, "a", f.to_str().unwrap(), "-p"]),
        "go add",
    );
    // Ours signs with Go's keys.
    ok(
        ours(&t, &trust, &["add", gun, "b", f.to_str().unwrap(), "-p"]),
        "our add with Go's keys",
    );
    let list = ok(go(&t, &trust, &["list", gun]), "go list");
    assert!(list.contains("a ") && list.contains("b "), "{list}");
    // Our init reuses Go's root key, as Go does.
    let out = ok(
        ours(&t, &trust, &["init", "example.com/client/second"]),
        "init with an existing root key",
    );
    assert!(out.contains("Root key found, using: "), "{out}");
    ok(
        go(&t, &trust, &["publish", "example.com/client/second"]),
        "go publishes our init",
    );
    assert!(
        ok(
            ours(&t, &trust, &["list", "example.com/client/second"]),
            "list"
        )
        .contains("No targets present")
    );
}

#[test]
fn errors_are_actionable() {
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    // No passphrase in the environment and no terminal.
    let out = ours_env(
        &t,
        &trust,
        &["init", "example.com/client/nopass"],
        &[
            ("NOTARY_ROOT_PASSPHRASE", None),
            ("NOTARY_TARGETS_PASSPHRASE", None),
            ("NOTARY_SNAPSHOT_PASSPHRASE", None),
        ],
    );
    let e = fails(out, "init without passphrases");
    assert!(e.contains("Please either use environment variables or STDIN with a terminal to provide key passphrases"), "{e}");
    // A wrong passphrase names the variable.
    let gun = "example.com/client/wrongpass";
    ok(ours(&t, &trust, &["init", gun, "-p"]), "init");
    ok(
        ours(
            &t,
            &trust,
            &["addhash", gun, "x", "1", "--sha256", &"00".repeat(32)],
        ),
        "addhash",
    );
    let out = ours_env(
        &t,
        &trust,
        &["publish", gun],
        &[("NOTARY_TARGETS_PASSPHRASE", Some("nope"))],
    );
    let e = fails(out, "publish with a wrong passphrase");
    assert!(
        e.contains("wrong passphrase in NOTARY_TARGETS_PASSPHRASE"),
        "{e}"
    );
    // Unknown repository, bad GUN, bad hash, unreachable server.
    let e = fails(
        ours(&t, &trust, &["list", "example.com/client/none"]),
        "list unknown",
    );
    assert!(
        e.starts_with("* fatal: ")
            && e.contains("does not have trust data for example.com/client/none"),
        "{e}"
    );
    let e = fails(ours(&t, &trust, &["list", "bad//gun"]), "bad gun");
    assert!(e.contains("invalid GUN"), "{e}");
    let e = fails(
        ours(&t, &trust, &["addhash", gun, "y", "1", "--sha256", "zz"]),
        "bad hash",
    );
    assert!(e.contains("invalid sha256 hex contents provided"), "{e}");
    let down = Target {
        url: "http://127.0.0.1:9".into(),
        ca: None,
    };
    let e = fails(
        ours(&down, &dir.path().join("empty"), &["list", gun]),
        "server down",
    );
    assert!(e.contains("could not reach 127.0.0.1:9"), "{e}");
}

/// The whole notary-cli-e2e.sh scenario with our binary in place of Go's; the delegation
/// certificate and key come from `notary pki`. Go's CLI checks the result.
fn e2e(t: &Target, gun: &str) {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_owned()
    };
    let (f1, _f2, f3, f4) = (
        file("file1", "one\n"),
        file("file2", "two!\n"),
        file("file3", "3\n"),
        file("file4", "four\n"),
    );
    let n = |args: &[&str]| {
        let what = args.join(" ");
        ok(ours(t, &trust, args), &what)
    };
    n(&["init", gun, "-p"]);
    n(&["add", gun, "t1", &f1]);
    let sha2 = hex_sha256(b"two!\n");
    n(&["addhash", gun, "t2", "5", "--sha256", &sha2]);
    assert!(n(&["status", gun]).contains("create    targets    target    t2"));
    n(&["publish", gun]);
    let list = n(&["list", gun]);
    assert!(list.contains("t1 ") && list.contains(&sha2), "{list}");
    assert!(n(&["lookup", gun, "t1"]).starts_with("t1 sha256:"));
    let v = run(
        env!("CARGO_BIN_EXE_notary"),
        t,
        &trust,
        &["verify", gun, "t1"],
        Some(b"one\n"),
    );
    assert_eq!(ok(v, "verify"), "one\n");
    n(&["key", "rotate", gun, "snapshot", "-r"]);
    n(&["add", gun, "t3", &f3, "-p"]);
    assert!(n(&["list", gun]).lines().any(|l| l.starts_with("t3 ")));
    n(&["key", "rotate", gun, "timestamp", "-r"]);
    // A delegation certificate and key from our PKI tool.
    let pki = dir.path().join("pki");
    let pki_s = pki.to_str().unwrap();
    ok(
        ours(
            t,
            &trust,
            &[
                "pki",
                "ca",
                "init",
                "--cn",
                "Release CA",
                "--out-dir",
                pki_s,
            ],
        ),
        "pki ca",
    );
    ok(
        ours(
            t,
            &trust,
            &[
                "pki",
                "issue",
                "delegation",
                "--ca-dir",
                pki_s,
                "--cn",
                "releases",
                "--out-dir",
                pki_s,
            ],
        ),
        "pki issue",
    );
    let key = pki.join("releases.key");
    let crt = pki.join("releases.crt");
    n(&[
        "key",
        "import",
        key.to_str().unwrap(),
        "--role",
        "targets/releases",
    ]);
    n(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        crt.to_str().unwrap(),
        "--all-paths",
    ]);
    n(&["publish", gun]);
    let deleg = n(&["delegation", "list", gun]);
    assert!(
        deleg.contains("targets/releases    \"\" <all paths>"),
        "{deleg}"
    );
    assert_eq!(
        deleg,
        ok(
            go(t, &trust, &["delegation", "list", gun]),
            "go delegation list"
        )
    );
    n(&["add", gun, "t4", &f4, "--roles", "targets/releases", "-p"]);
    let rel = n(&["list", gun, "--roles", "targets/releases"]);
    assert!(
        rel.contains("t4 ") && rel.contains("targets/releases") && !rel.contains("t1 "),
        "{rel}"
    );
    n(&["witness", gun, "targets/releases", "-p"]);
    n(&["remove", gun, "t1", "-p"]);
    // A fresh client (ours and Go's) sees the final state.
    let fresh = dir.path().join("fresh");
    let list = ok(ours(t, &fresh, &["list", gun]), "fresh list");
    for name in ["t2", "t3", "t4"] {
        assert!(list.contains(&format!("{name} ")), "{name}: {list}");
    }
    assert!(!list.contains("t1 "), "{list}");
    let go_fresh = dir.path().join("go-fresh");
    assert_eq!(list, ok(go(t, &go_fresh, &["list", gun]), "go fresh list"));
    n(&["delete", gun, "--remote"]);
    let e = fails(
        ours(t, &dir.path().join("after"), &["list", gun]),
        "list after delete",
    );
    assert!(e.contains("does not have trust data"), "{e}");
}

fn hex_sha256(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let d = notary_core::crypto::sha256(b);
    d.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[test]
fn e2e_scenario_against_go_notary_server() {
    let (_server, t, _dir) = on_go_server();
    e2e(&t, "example.com/e2e/ours-on-go");
}

#[test]
fn e2e_scenario_against_our_notary_server() {
    let (_p, t, _dir) = on_our_server();
    e2e(&t, "example.com/e2e/ours-on-ours");
}

/// A Docker token service on a loopback port: Basic `alice:secret` gets an ES256 token
/// (x5c = the fixture token certificate) granting the scopes asked for; anything else 401.
fn token_service() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use notary_core::Signer as _;
    use std::io::{BufRead as _, Write as _};
    let fixtures = notary_tests::fixtures();
    let key = notary_core::keyfile::KeyFile::decode(
        &std::fs::read(fixtures.join("tls/token.key")).unwrap(),
        None,
    )
    .unwrap()
    .key;
    let der = notary_core::x509::parse_pem_bundle(
        &std::fs::read(fixtures.join("tls/token.crt")).unwrap(),
    )
    .unwrap()
    .remove(0);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let issued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = issued.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut authorized = false;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if h.to_ascii_lowercase().starts_with("authorization: basic ")
                    && h.trim_end().ends_with(&STANDARD.encode("alice:secret"))
                {
                    authorized = true;
                }
            }
            if !authorized {
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let path = request_line.split(' ').nth(1).unwrap_or("");
            let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut access = Vec::new();
            for kv in query.split('&') {
                if let Some(scope) = kv.strip_prefix("scope=") {
                    let scope = scope
                        .replace("%3A", ":")
                        .replace("%2F", "/")
                        .replace("%2C", ",");
                    let parts: Vec<&str> = scope.splitn(3, ':').collect();
                    if parts.len() == 3 {
                        access.push(serde_json::json!({"type": parts[0], "name": parts[1], "actions": parts[2].split(',').collect::<Vec<_>>()}));
                    }
                }
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let claims = serde_json::json!({"iss": "test-issuer", "sub": "alice", "aud": "notary-test",
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}"), "access": access});
            let header =
                serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(&der)]});
            let h = URL_SAFE_NO_PAD.encode(header.to_string());
            let p = URL_SAFE_NO_PAD.encode(claims.to_string());
            let (_, sig) = key.sign(format!("{h}.{p}").as_bytes()).unwrap();
            let body =
                serde_json::json!({"token": format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig))})
                    .to_string();
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = stream.write_all(
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
            );
        }
    });
    (url, issued)
}

#[test]
fn token_auth_with_notary_auth_and_docker_config() {
    let (realm, issued) = token_service();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("server.json");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0"},
            "trust_service": {"type": "local"},
            "storage": {"backend": "memory"},
            "auth": {"type": "token", "options": {"realm": realm, "service": "notary-test", "issuer": "test-issuer",
                     "rootcertbundle": notary_tests::fixtures().join("tls/token.crt")}}
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new(workspace_bin("notary-server"));
    cmd.arg("-config")
        .arg(&cfg)
        .args(["--data-dir"])
        .arg(dir.path());
    let mut p = Proc::spawn(cmd, dir.path().join("server.log"));
    let url = p.banner().rsplit(' ').next().unwrap().to_owned();
    let t = Target { url, ca: None };
    let trust = dir.path().join("trust");
    let gun = "example.com/client/auth";
    let f = dir.path().join("f");
    std::fs::write(&f, b"secret stuff").unwrap();
    use base64::Engine as _;
    let good = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    // Without credentials: a clear refusal.
    let e = fails(
        ours_env(
            &t,
            &trust,
            &["init", gun, "-p"],
            &[
                ("NOTARY_AUTH", None),
                ("HOME", Some(dir.path().to_str().unwrap())),
            ],
        ),
        "init without credentials",
    );
    assert!(
        e.contains("token service refused") && e.contains("NOTARY_AUTH"),
        "{e}"
    );
    // NOTARY_AUTH.
    let auth = [
        ("NOTARY_AUTH", Some(good.as_str())),
        ("HOME", Some(dir.path().to_str().unwrap())),
    ];
    ok(
        ours_env(&t, &trust, &["init", gun, "-p"], &auth),
        "init with NOTARY_AUTH",
    );
    ok(
        ours_env(
            &t,
            &trust,
            &["add", gun, "t", f.to_str().unwrap(), "-p"],
            &auth,
        ),
        "add with NOTARY_AUTH",
    );
    assert!(issued.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    // Credentials from a docker config (auths for the server host).
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    let host = t.url.trim_start_matches("http://").to_owned();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": good}}}).to_string(),
    )
    .unwrap();
    let list = ok(
        ours_env(
            &t,
            &dir.path().join("fresh"),
            &["list", gun],
            &[
                ("NOTARY_AUTH", None),
                ("DOCKER_CONFIG", Some(docker.to_str().unwrap())),
            ],
        ),
        "list with docker config credentials",
    );
    assert!(list.contains("t ") && list.contains("targets"), "{list}");
    // Credentials from a docker credential helper (credsStore).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread host\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"secret\"}' \"$host\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_cfg = dir.path().join("docker-helper");
    std::fs::create_dir(&helper_cfg).unwrap();
    std::fs::write(
        helper_cfg.join("config.json"),
        serde_json::json!({"credsStore": "fake"}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let list = ok(
        ours_env(
            &t,
            &dir.path().join("fresh-helper"),
            &["list", gun],
            &[
                ("NOTARY_AUTH", None),
                ("DOCKER_CONFIG", Some(helper_cfg.to_str().unwrap())),
                ("PATH", Some(path.as_str())),
            ],
        ),
        "list with a credential helper",
    );
    assert!(list.contains("t "), "{list}");
    // Wrong password: refused, nothing published.
    let bad = base64::engine::general_purpose::STANDARD.encode("alice:wrong");
    let e = fails(
        ours_env(
            &t,
            &trust,
            &["remove", gun, "t", "-p"],
            &[("NOTARY_AUTH", Some(bad.as_str()))],
        ),
        "remove with a wrong password",
    );
    assert!(e.contains("token service refused"), "{e}");
}

/// A fake notary server whose token challenge names a plain-http realm on a name that is
/// not loopback (`notary-test.invalid`). The same listener is the HTTP proxy (`ALL_PROXY`)
/// that makes that name reachable, so a client that sends its credentials there is seen
/// doing it. Returns the server URL, the proxy URL and the realm requests (with their
/// `Authorization` header, if any).
fn plain_http_realm_server() -> (
    String,
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use std::io::{BufRead as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let realm = format!("http://notary-test.invalid:{}/token", addr.port());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            // A proxied request, after a CONNECT (ureq tunnels plain http too).
            let mut target = String::new();
            let (request_line, auth) = loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    break (String::new(), None);
                }
                let mut auth = None;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if h.to_ascii_lowercase().starts_with("authorization:") {
                        auth = Some(h.trim_end().to_owned());
                    }
                }
                if request_line.starts_with("CONNECT ") {
                    target = request_line.clone();
                    let _ = stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                    continue;
                }
                break (request_line, auth);
            };
            if request_line.is_empty() {
                continue;
            }
            if target.contains("notary-test.invalid") || request_line.contains("/token") {
                record.lock().unwrap().push(auth);
                let body = r#"{"token":"not-a-real-token"}"#;
                let _ = stream.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                );
            } else {
                let _ = stream.write_all(
                    format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"notary-test\",scope=\"repository:example.com/client/realm:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
                );
            }
        }
    });
    (format!("http://{addr}"), format!("http://{addr}"), seen)
}

/// The CLI never sends credentials (NOTARY_AUTH, docker config `auths`, a credential
/// helper) to a token realm over plain http unless the realm is on loopback; it says so.
#[test]
fn credentials_never_sent_to_plain_http_realm() {
    use base64::Engine as _;
    let (url, proxy, seen) = plain_http_realm_server();
    let dir = tempfile::tempdir().unwrap();
    let t = Target { url, ca: None };
    let gun = "example.com/client/realm";
    let good = base64::engine::general_purpose::STANDARD.encode("alice:secret");
    let host = t.url.trim_start_matches("http://").to_owned();
    let proxy_env = [
        ("ALL_PROXY", Some(proxy.as_str())),
        ("all_proxy", None),
        ("HTTPS_PROXY", None),
        ("https_proxy", None),
        ("HTTP_PROXY", None),
        ("http_proxy", None),
        ("NO_PROXY", None),
        ("no_proxy", None),
    ];
    let home = dir.path().to_str().unwrap().to_owned();
    // Without credentials the realm is asked anonymously: the proxy does make it
    // reachable, so the checks below are not vacuous.
    let mut env = proxy_env.to_vec();
    env.extend([("NOTARY_AUTH", None), ("HOME", Some(home.as_str()))]);
    let _ = ours_env(&t, &dir.path().join("anon"), &["list", gun], &env);
    {
        let seen = seen.lock().unwrap();
        assert!(
            !seen.is_empty(),
            "the realm was not reached through the proxy"
        );
        assert!(seen.iter().all(Option::is_none), "{seen:?}");
    }
    // Credentials from NOTARY_AUTH, a docker config and a credential helper.
    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {host: {"auth": good}}}).to_string(),
    )
    .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-fake");
    std::fs::write(
        &helper,
        "#!/bin/sh\nread host\nprintf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"secret\"}' \"$host\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let helper_cfg = dir.path().join("docker-helper");
    std::fs::create_dir(&helper_cfg).unwrap();
    std::fs::write(
        helper_cfg.join("config.json"),
        serde_json::json!({"credsStore": "fake"}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sources = [
        (
            "NOTARY_AUTH",
            vec![
                ("NOTARY_AUTH", Some(good.as_str())),
                ("HOME", Some(home.as_str())),
            ],
        ),
        (
            "docker config auths",
            vec![
                ("NOTARY_AUTH", None),
                ("DOCKER_CONFIG", Some(docker.to_str().unwrap())),
            ],
        ),
        (
            "credential helper",
            vec![
                ("NOTARY_AUTH", None),
                ("DOCKER_CONFIG", Some(helper_cfg.to_str().unwrap())),
                ("PATH", Some(path.as_str())),
            ],
        ),
    ];
    for (what, extra) in sources {
        seen.lock().unwrap().clear();
        let mut env = proxy_env.to_vec();
        env.extend(extra);
        let errors: Vec<String> = [&["list", gun][..], &["init", gun, "-p"][..]]
            .into_iter()
            .map(|args| {
                fails(
                    ours_env(&t, &dir.path().join(what), args, &env),
                    &format!("{args:?} with {what}"),
                )
            })
            .collect();
        {
            let seen = seen.lock().unwrap();
            assert!(
                seen.iter().all(Option::is_none),
                "{what}: credentials sent to a plain-http realm: {seen:?}"
            );
        }
        for e in errors {
            assert!(
                e.contains("refusing to send credentials")
                    && e.contains("http://notary-test.invalid"),
                "{what}: {e}"
            );
        }
    }
}

#[test]
fn key_generate_export_import_remove_passwd_with_go() {
    let (_server, t, dir) = on_go_server();
    let ours_dir = dir.path().join("ours");
    let go_dir = dir.path().join("go");
    // generate into the store; Go lists it.
    let out = ok(
        ours(
            &t,
            &ours_dir,
            &["key", "generate", "ecdsa", "--role", "root"],
        ),
        "key generate",
    );
    let id = out.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        out.starts_with("Generated new ecdsa root key with keyID: "),
        "{out}"
    );
    assert!(ok(go(&t, &ours_dir, &["key", "list"]), "go key list").contains(&id));
    // generate -o: an encrypted private key with a role header and its public key.
    let prefix = dir.path().join("gen");
    ok(
        ours(
            &t,
            &ours_dir,
            &[
                "key",
                "generate",
                "-o",
                prefix.to_str().unwrap(),
                "--role",
                "targets/releases",
            ],
        ),
        "key generate -o",
    );
    let priv_pem = std::fs::read_to_string(dir.path().join("gen-key.pem")).unwrap();
    let pub_pem = std::fs::read_to_string(dir.path().join("gen.pem")).unwrap();
    assert!(
        priv_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\nrole: targets/releases\n"),
        "{priv_pem}"
    );
    assert!(
        pub_pem.starts_with("-----BEGIN PUBLIC KEY-----\nrole: targets/releases\n"),
        "{pub_pem}"
    );
    // export from ours, import into Go; and the reverse.
    let exported = dir.path().join("export.pem");
    ok(
        ours(
            &t,
            &ours_dir,
            &[
                "key",
                "export",
                "--key",
                &id,
                "-o",
                exported.to_str().unwrap(),
            ],
        ),
        "key export",
    );
    assert!(
        std::fs::read_to_string(&exported)
            .unwrap()
            .contains(&format!("path: {id}"))
    );
    ok(
        go(&t, &go_dir, &["key", "import", exported.to_str().unwrap()]),
        "go key import of our export",
    );
    assert!(ok(go(&t, &go_dir, &["key", "list"]), "go key list").contains(&id));
    ok(
        go(
            &t,
            &go_dir,
            &["key", "generate", "ecdsa", "--role", "targets/qa"],
        ),
        "go key generate",
    );
    let go_export = dir.path().join("go-export.pem");
    ok(
        go(
            &t,
            &go_dir,
            &["key", "export", "-o", go_export.to_str().unwrap()],
        ),
        "go key export",
    );
    let fresh = dir.path().join("fresh");
    ok(
        ours(&t, &fresh, &["key", "import", go_export.to_str().unwrap()]),
        "our import of Go's export",
    );
    assert_eq!(
        ok(ours(&t, &fresh, &["key", "list"]), "key list").replace(fresh.to_str().unwrap(), "X"),
        ok(go(&t, &go_dir, &["key", "list"]), "go key list").replace(go_dir.to_str().unwrap(), "X")
    );
    // passwd: the root key now opens with the new passphrase (Go uses it to init).
    let out = ours_env(
        &t,
        &ours_dir,
        &["key", "passwd", &id],
        &[("NOTARY_NEW_PASSPHRASE", Some("brand-new-pass"))],
    );
    assert!(ok(out, "key passwd").contains("Successfully updated passphrase"));
    let out = Command::new("notary")
        .arg("-s")
        .arg(&t.url)
        .arg("-d")
        .arg(&ours_dir)
        .args(["init", "example.com/client/passwd"])
        .envs(ENV)
        .env("NOTARY_ROOT_PASSPHRASE", "brand-new-pass")
        .output()
        .unwrap();
    let text = ok(out, "go init with the new root passphrase");
    assert!(
        text.contains(&format!("Root key found, using: {id}")),
        "{text}"
    );
    // remove: asks, honours "no" and "yes".
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
    cmd.arg("-d").arg(&ours_dir).args(["key", "remove", &id]);
    let out = output_with_stdin(cmd, Some(b"no\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(ours_dir.join("private").join(format!("{id}.key")).exists());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
    cmd.arg("-d").arg(&ours_dir).args(["key", "remove", &id]);
    let out = ok(output_with_stdin(cmd, Some(b"yes\n")), "key remove");
    assert!(out.contains(&format!("Deleted {id} (role root)")), "{out}");
    assert!(!ours_dir.join("private").join(format!("{id}.key")).exists());
}

#[test]
fn delegation_remove_and_purge_match_go() {
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    let gun = "example.com/client/delegations";
    let n = |args: &[&str]| ok(ours(&t, &trust, args), &args.join(" "));
    n(&["init", gun, "-p"]);
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    n(&["pki", "ca", "init", "--cn", "Delegation CA", "--out-dir", p]);
    let mut ids = Vec::new();
    for who in ["alice", "bob"] {
        n(&[
            "pki",
            "issue",
            "delegation",
            "--ca-dir",
            p,
            "--cn",
            who,
            "--out-dir",
            p,
        ]);
        n(&[
            "key",
            "import",
            pki.join(format!("{who}.key")).to_str().unwrap(),
            "--role",
            "targets/releases",
        ]);
    }
    let add = n(&[
        "delegation",
        "add",
        gun,
        "targets/releases",
        pki.join("alice.crt").to_str().unwrap(),
        pki.join("bob.crt").to_str().unwrap(),
        "--paths",
        "a/,b/",
        "-p",
    ]);
    let start = add.find("with keys [").unwrap() + "with keys [".len();
    let end = add[start..].find(']').unwrap() + start;
    ids.extend(add[start..end].split(' ').map(str::to_owned));
    assert_eq!(ids.len(), 2, "{add}");
    let same = |what: &str| {
        let mine = ok(ours(&t, &trust, &["delegation", "list", gun]), what);
        assert_eq!(
            mine,
            ok(go(&t, &trust, &["delegation", "list", gun]), what),
            "{what}"
        );
        mine
    };
    let l = same("after add");
    assert!(
        l.contains(&ids[0]) && l.contains(&ids[1]) && l.contains("a/") && l.contains("b/"),
        "{l}"
    );
    // Remove one key and one path.
    n(&[
        "delegation",
        "remove",
        gun,
        "targets/releases",
        &ids[0],
        "--paths",
        "b/",
        "-p",
    ]);
    let l = same("after remove key and path");
    assert!(
        !l.contains(&ids[0]) && l.contains(&ids[1]) && l.contains("a/") && !l.contains("b/"),
        "{l}"
    );
    // A second delegation with alice; purge bob from all delegations.
    n(&[
        "delegation",
        "add",
        gun,
        "targets/qa",
        pki.join("alice.crt").to_str().unwrap(),
        "--all-paths",
        "-p",
    ]);
    n(&["delegation", "purge", gun, "--key", &ids[1], "-p"]);
    let l = same("after purge");
    assert!(!l.contains(&ids[1]) && l.contains("targets/qa"), "{l}");
    // Remove a whole delegation (confirmation skipped with -y).
    n(&["delegation", "remove", gun, "targets/qa", "-y", "-p"]);
    let l = same("after removing targets/qa");
    assert!(!l.contains("targets/qa"), "{l}");
}

#[test]
fn root_rotation_is_followed_by_go_clients() {
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    let gun = "example.com/client/root-rotation";
    let f = dir.path().join("f");
    std::fs::write(&f, b"before").unwrap();
    ok(ours(&t, &trust, &["init", gun, "-p"]), "init");
    ok(
        ours(
            &t,
            &trust,
            &["add", gun, "before", f.to_str().unwrap(), "-p"],
        ),
        "add",
    );
    // A Go client caches root v1.
    let go_trust = dir.path().join("go");
    assert!(ok(go(&t, &go_trust, &["list", gun]), "go list").contains("before"));
    // "no" aborts, "yes" rotates.
    let rotate = |answer: &[u8]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
        cmd.arg("-s")
            .arg(&t.url)
            .arg("-d")
            .arg(&trust)
            .args(["key", "rotate", gun, "root"])
            .envs(ENV);
        output_with_stdin(cmd, Some(answer))
    };
    let e = fails(rotate(b"no\n"), "rotation refused");
    assert!(e.contains("aborting root key rotation"), "{e}");
    ok(rotate(b"yes\n"), "root rotation");
    ok(
        ours(
            &t,
            &trust,
            &["add", gun, "after", f.to_str().unwrap(), "-p"],
        ),
        "add after rotation",
    );
    // The Go client holding root v1 follows the rotation (cross-signed root), and a fresh
    // Go client trusts the new root on first use.
    let list = ok(go(&t, &go_trust, &["list", gun]), "go list after rotation");
    assert!(list.contains("before") && list.contains("after"), "{list}");
    let fresh = ok(
        go(&t, &dir.path().join("go-fresh"), &["list", gun]),
        "fresh go list",
    );
    assert_eq!(list, fresh);
    // Two root keys now in the store (the old one is kept, as Go keeps it).
    let keys = ok(ours(&t, &trust, &["key", "list"]), "key list");
    assert_eq!(
        keys.lines().filter(|l| l.starts_with("root ")).count(),
        2,
        "{keys}"
    );
    // A second rotation with --legacy 2: root v3 is signed by the new key, the previous one
    // and the key of root v1 (for clients still holding v1).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
    cmd.arg("-s")
        .arg(&t.url)
        .arg("-d")
        .arg(&trust)
        .args(["key", "rotate", gun, "root", "--legacy", "2"])
        .envs(ENV);
    ok(
        output_with_stdin(cmd, Some(b"yes\n")),
        "root rotation --legacy 2",
    );
    let fresh2 = dir.path().join("fresh-after-legacy");
    ok(
        ours(&t, &fresh2, &["list", gun]),
        "list after legacy rotation",
    );
    let root: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fresh2.join("tuf").join(gun).join("metadata/root.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(root["signed"]["version"], 3);
    assert_eq!(root["signatures"].as_array().unwrap().len(), 3, "{root}");
    let list = ok(
        go(&t, &go_trust, &["list", gun]),
        "go client after a legacy rotation",
    );
    assert!(list.contains("after"), "{list}");
}

#[test]
fn init_with_rootkey_and_a_ca_issued_rootcert_pinned_by_go() {
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    // --rootkey: an encrypted key made by `key generate -o`.
    let prefix = dir.path().join("myroot");
    ok(
        ours_env(
            &t,
            &trust,
            &[
                "key",
                "generate",
                "-o",
                prefix.to_str().unwrap(),
                "--role",
                "root",
            ],
            &[("NOTARY_DELEGATION_PASSPHRASE", Some("root-pass-1"))],
        ),
        "key generate -o",
    );
    let gun = "example.com/client/rootkey";
    ok(
        ours(
            &t,
            &trust,
            &[
                "init",
                gun,
                "--rootkey",
                dir.path().join("myroot-key.pem").to_str().unwrap(),
                "-p",
            ],
        ),
        "init --rootkey",
    );
    assert!(ok(go(&t, &trust, &["list", gun]), "go list").contains("No targets present"));
    // --rootcert: a root certificate for the GUN issued by our CA; a Go client pinning
    // that CA (trust_pinning.ca) accepts the repository.
    let pki = dir.path().join("pki");
    let p = pki.to_str().unwrap();
    let gun2 = "example.com/client/pinned";
    ok(
        ours(
            &t,
            &trust,
            &[
                "pki",
                "ca",
                "init",
                "--cn",
                "Pinned Root CA",
                "--out-dir",
                p,
            ],
        ),
        "pki ca",
    );
    let out = ours_env(
        &t,
        &trust,
        &[
            "pki",
            "issue",
            "root",
            "--ca-dir",
            p,
            "--cn",
            gun2,
            "--encrypt",
            "--out-dir",
            p,
        ],
        &[("NOTARY_PKI_PASSPHRASE", Some("root-pass-1"))],
    );
    ok(out, "pki issue root certificate");
    let stem = gun2.replace('/', "_");
    let key = pki.join(format!("{stem}.key"));
    let crt = pki.join(format!("{stem}.crt"));
    ok(
        ours(
            &t,
            &trust,
            &[
                "init",
                gun2,
                "--rootkey",
                key.to_str().unwrap(),
                "--rootcert",
                crt.to_str().unwrap(),
                "-p",
            ],
        ),
        "init --rootcert",
    );
    let cfg = dir.path().join("go-config.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"trust_pinning": {"ca": {"example.com/client/": pki.join("ca.crt")}}})
            .to_string(),
    )
    .unwrap();
    let fresh = dir.path().join("pinned-client");
    let out = go(&t, &fresh, &["-c", cfg.to_str().unwrap(), "list", gun2]);
    assert!(ok(out, "go list with CA pinning").contains("No targets present"));
    // The same pinning refuses the first repository (self-signed root certificate).
    let out = go(
        &t,
        &dir.path().join("pinned-2"),
        &["-c", cfg.to_str().unwrap(), "list", gun],
    );
    assert!(
        !out.status.success(),
        "CA pinning accepted a self-signed root"
    );
}

/// Passphrases typed at a terminal (a pseudo-terminal from util-linux `script`): Go's
/// prompts, confirmation of new passphrases, and each passphrase asked once per process.
#[test]
fn passphrase_prompts_on_a_terminal() {
    require("script");
    let (_server, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    let gun = "example.com/client/tty";
    let cmd = format!(
        "{} -s {} -d {} init {gun} -p",
        env!("CARGO_BIN_EXE_notary"),
        t.url,
        trust.display()
    );
    let feed = [
        "root-pass-1",
        "root-pass-1",
        "targets-pass-1",
        "targets-pass-1",
        "snapshot-pass-1",
        "snapshot-pass-1",
    ]
    .iter()
    .map(|p| format!("sleep 0.5; printf '%s\\n' '{p}'; "))
    .collect::<String>();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("({feed} sleep 2) | script -qec \"$CMD\" /dev/null"))
        .env("CMD", &cmd)
        .env_remove("NOTARY_ROOT_PASSPHRASE")
        .env_remove("NOTARY_TARGETS_PASSPHRASE")
        .env_remove("NOTARY_SNAPSHOT_PASSPHRASE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        text.contains("Enter passphrase for new root key with ID "),
        "{text}"
    );
    assert_eq!(
        text.matches("Repeat passphrase for new").count(),
        3,
        "{text}"
    );
    assert!(
        !text.contains("Enter passphrase for targets key"),
        "asked twice: {text}"
    );
    assert!(
        text.contains(&format!(
            "Successfully published changes for repository {gun}"
        )),
        "{text}"
    );
    // The passphrases typed are the ones Go's notary opens the keys with.
    let f = dir.path().join("f");
    std::fs::write(&f, b"typed").unwrap();
    ok(
        go(
            &t,
            &trust,
            &["add", gun, "typed", f.to_str().unwrap(), "-p"],
        ),
        "go add with the typed passphrases",
    );
}

/// Modes of everything under `dir` (relative path → mode bits).
fn modes(dir: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            out.push((rel, m.permissions().mode() & 0o777));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The private key directory is 0700 (also when it existed with looser bits), key files,
/// cached metadata and changelist files are 0600, directories the CLI makes are 0700, and
/// no temporary file is left behind.
#[test]
fn trust_dir_modes_after_init_and_key_generate() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_s, t, dir) = on_go_server();
    let trust = dir.path().join("trust");
    let gun = "example.com/client/modes";
    let f = dir.path().join("f");
    std::fs::write(&f, b"modes\n").unwrap();
    ok(ours(&t, &trust, &["init", gun]), "init");
    ok(
        ours(&t, &trust, &["add", gun, "t", f.to_str().unwrap()]),
        "add",
    );
    ok(
        ours(&t, &trust, &["key", "generate", "-r", "targets/releases"]),
        "key generate",
    );
    let out = dir.path().join("out");
    let prefix = out.join("k");
    ok(
        ours(
            &t,
            &trust,
            &["key", "generate", "-o", prefix.to_str().unwrap()],
        ),
        "key generate -o",
    );
    let export = dir.path().join("export.pem");
    ok(
        ours(
            &t,
            &trust,
            &["key", "export", "-o", export.to_str().unwrap()],
        ),
        "key export -o",
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&trust), 0o700, "trust directory");
    let all = modes(&trust);
    let keys = all.iter().filter(|(p, _)| p.ends_with(".key")).count();
    assert!(keys >= 4, "{all:?}");
    let changes = all.iter().filter(|(p, _)| p.ends_with(".change")).count();
    assert_eq!(changes, 1, "{all:?}");
    for (p, m) in &all {
        assert!(!p.contains(".tmp"), "temporary file left: {p}");
        let dir = trust.join(p).is_dir();
        let want = if dir { 0o700 } else { 0o600 };
        assert_eq!(*m, want, "{p}: {m:o} (all: {all:?})");
    }
    assert_eq!(mode(&out.join("k-key.pem")), 0o600);
    assert_eq!(mode(&export), 0o600);
    // A trust directory whose private/ was made with looser bits (another tool, umask).
    let loose = dir.path().join("loose");
    std::fs::create_dir_all(loose.join("private")).unwrap();
    std::fs::set_permissions(
        loose.join("private"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    ok(ours(&t, &loose, &["key", "generate"]), "key generate");
    assert_eq!(mode(&loose.join("private")), 0o700, "{:?}", modes(&loose));
    for (p, m) in modes(&loose.join("private")) {
        assert_eq!(m, 0o600, "{p}");
    }
}
