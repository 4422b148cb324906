//! `notary pki` (issue 5, part 3): every issued chain passes `openssl verify` and carries
//! the right extensions (`openssl x509 -text`), bad input is refused clearly, and the Go
//! notary-server and notary-signer run with mutual TLS on certificates it made while the
//! Go CLI publishes through them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use notary_tests::{Proc, free_port, require, wait_for_port};

fn notary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_notary"))
        .args(args)
        .env_remove("NOTARY_PKI_PASSPHRASE")
        .output()
        .unwrap()
}

/// `notary pki ca init --cn CN --out-dir DIR [extra…]`, which must succeed.
fn ca_init(dir: &Path, cn: &str, extra: &[&str]) {
    let mut args = vec!["pki", "ca", "init", "--cn", cn, "--out-dir", s(dir)];
    args.extend_from_slice(extra);
    ok(notary(&args));
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(out: Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn openssl(args: &[&str]) -> String {
    require("openssl");
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn every_key_type_and_purpose_passes_openssl() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let inter = d.path().join("inter");
    let out = d.path().join("out");
    ca_init(&root, "Test Root CA", &[]);
    assert_eq!(mode(&root.join("ca.key")), 0o600);
    let text = openssl(&["x509", "-in", s(&root.join("ca.crt")), "-noout", "-text"]);
    assert!(
        text.contains("CA:TRUE") && text.contains("Certificate Sign, CRL Sign"),
        "{text}"
    );
    assert!(
        text.contains("Subject: CN = Test Root CA") && text.contains("Issuer: CN = Test Root CA")
    );
    ca_init(
        &inter,
        "Test Issuing CA",
        &["--parent-dir", s(&root), "--key-type", "rsa-2048"],
    );
    let text = openssl(&["x509", "-in", s(&inter.join("ca.crt")), "-noout", "-text"]);
    assert!(
        text.contains("CA:TRUE, pathlen:0") && text.contains("Issuer: CN = Test Root CA"),
        "{text}"
    );
    openssl(&[
        "verify",
        "-CAfile",
        s(&root.join("ca.crt")),
        s(&inter.join("ca.crt")),
    ]);

    // purpose, CN, key type, extra arguments, expected EKU and SAN text.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str, &'a str);
    let cases: [Case<'_>; 5] = [
        (
            "server",
            "notary.test",
            "ecdsa-p256",
            &["--san", "DNS:notary.test,IP:127.0.0.1"],
            "TLS Web Server Authentication",
            "DNS:notary.test, IP Address:127.0.0.1",
        ),
        (
            "server",
            "signer.test",
            "rsa-2048",
            &["--san", "DNS:signer.test", "--san", "IP:::1"],
            "TLS Web Server Authentication",
            "DNS:signer.test, IP Address:0:0:0:0:0:0:0:1",
        ),
        (
            "client",
            "client-one",
            "ed25519",
            &[],
            "TLS Web Client Authentication",
            "",
        ),
        (
            "delegation",
            "releases",
            "rsa-4096",
            &[],
            "Code Signing",
            "",
        ),
        (
            "server",
            "localhost",
            "ecdsa-p256",
            &[],
            "TLS Web Server Authentication",
            "DNS:localhost",
        ),
    ];
    for (purpose, cn, kt, extra, eku, san) in cases {
        for ca in [&root, &inter] {
            let o = out.join(ca.file_name().unwrap());
            let mut args = vec![
                "pki",
                "issue",
                purpose,
                "--ca-dir",
                s(ca),
                "--cn",
                cn,
                "--out-dir",
                s(&o),
                "--key-type",
                kt,
            ];
            args.extend_from_slice(extra);
            ok(notary(&args));
            let crt = o.join(format!("{cn}.crt"));
            let key = o.join(format!("{cn}.key"));
            assert_eq!(mode(&key), 0o600);
            // openssl accepts the chain; intermediates travel in the leaf's file.
            let v = openssl(&[
                "verify",
                "-CAfile",
                s(&root.join("ca.crt")),
                "-untrusted",
                s(&crt),
                s(&crt),
            ]);
            assert!(v.contains(": OK"), "{v}");
            let text = openssl(&["x509", "-in", s(&crt), "-noout", "-text"]);
            assert!(
                text.contains("CA:FALSE")
                    && text.contains(eku)
                    && text.contains(&format!("Subject: CN = {cn}")),
                "{text}"
            );
            assert!(text.contains("Digital Signature"), "{text}");
            if kt.starts_with("rsa") && purpose != "delegation" {
                assert!(text.contains("Key Encipherment"), "{text}");
            }
            if !san.is_empty() {
                assert!(text.contains(san), "{san} in {text}");
            }
            // The key matches the certificate.
            let pub_cert = openssl(&["x509", "-in", s(&crt), "-noout", "-pubkey"]);
            let pub_key = openssl(&["pkey", "-in", s(&key), "-pubout"]);
            assert_eq!(pub_cert, pub_key);
            // And our verifier agrees with openssl.
            let v = ok(notary(&[
                "pki",
                "verify",
                "--ca",
                s(&root.join("ca.crt")),
                s(&crt),
            ]));
            assert!(v.contains("OK"), "{v}");
            let i = ok(notary(&["pki", "inspect", s(&crt)]));
            assert!(i.contains(&format!("Subject:          CN={cn}")), "{i}");
        }
    }
}

#[test]
fn encrypted_keys_need_the_passphrase() {
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca");
    let run = |args: &[&str], pass: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_notary"));
        c.args(args)
            .env_remove("NOTARY_PKI_PASSPHRASE")
            .stdin(std::process::Stdio::null());
        if let Some(p) = pass {
            c.env("NOTARY_PKI_PASSPHRASE", p);
        }
        c.output().unwrap()
    };
    ok(run(
        &[
            "pki",
            "ca",
            "init",
            "--cn",
            "Sealed CA",
            "--out-dir",
            s(&ca),
            "--encrypt",
        ],
        Some("correct horse"),
    ));
    let pem = std::fs::read_to_string(ca.join("ca.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    // openssl opens it with the passphrase.
    openssl(&[
        "pkey",
        "-in",
        s(&ca.join("ca.key")),
        "-passin",
        "pass:correct horse",
        "-noout",
    ]);
    let out = d.path().join("out");
    let args = [
        "pki",
        "issue",
        "server",
        "--ca-dir",
        s(&ca),
        "--cn",
        "a.test",
        "--out-dir",
        s(&out),
    ];
    let e = fails(run(&args, None));
    assert!(e.contains("NOTARY_PKI_PASSPHRASE"), "{e}");
    let e = fails(run(&args, Some("wrong")));
    assert!(e.contains("wrong passphrase"), "{e}");
    ok(run(&args, Some("correct horse")));
    openssl(&[
        "verify",
        "-CAfile",
        s(&ca.join("ca.crt")),
        s(&out.join("a.test.crt")),
    ]);
}

#[test]
fn bad_input_is_refused_clearly() {
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca");
    let other = d.path().join("other");
    let out = d.path().join("out");
    ca_init(&ca, "CA", &[]);
    ca_init(&other, "Other CA", &[]);
    let issue = |extra: &[&str]| {
        let mut a = vec![
            "pki",
            "issue",
            "server",
            "--ca-dir",
            s(&ca),
            "--out-dir",
            s(&out),
        ];
        a.extend_from_slice(extra);
        notary(&a)
    };
    let e = fails(issue(&["--cn", "x.test", "--san", "FOO:bar"]));
    assert!(e.contains("unknown SAN type \"FOO\""), "{e}");
    let e = fails(issue(&["--cn", "x.test", "--san", "IP:300.1.1.1"]));
    assert!(e.contains("not an IP address"), "{e}");
    let e = fails(issue(&["--cn", "x.test", "--san", "DNS:bad host"]));
    assert!(e.contains("not a valid DNS name"), "{e}");
    let e = fails(issue(&["--cn", "My Server"]));
    assert!(e.contains("give --san"), "{e}");
    // Existing files are kept unless --force.
    ok(issue(&["--cn", "x.test"]));
    let e = fails(issue(&["--cn", "x.test"]));
    assert!(e.contains("exists (use --force"), "{e}");
    ok(issue(&["--cn", "x.test", "--force"]));
    // A CA key that does not belong to the CA certificate.
    std::fs::copy(other.join("ca.key"), ca.join("ca.key")).unwrap();
    let e = fails(issue(&["--cn", "y.test"]));
    assert!(e.contains("does not belong to the certificate"), "{e}");
    // An expired CA.
    let old = d.path().join("old");
    ca_init(&old, "Old CA", &["--days", "0"]);
    let e = fails(notary(&[
        "pki",
        "issue",
        "client",
        "--ca-dir",
        s(&old),
        "--cn",
        "c",
        "--out-dir",
        s(&out),
    ]));
    assert!(e.contains("expired"), "{e}");
    // A leaf cannot sign: not a CA directory.
    let fake = d.path().join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::copy(out.join("x.test.crt"), fake.join("ca.crt")).unwrap();
    std::fs::copy(out.join("x.test.key"), fake.join("ca.key")).unwrap();
    let e = fails(notary(&[
        "pki",
        "issue",
        "client",
        "--ca-dir",
        s(&fake),
        "--cn",
        "c",
        "--out-dir",
        s(&out),
    ]));
    assert!(e.contains("not a CA certificate"), "{e}");
    // verify: exit 1 for another CA's chain, for a leaf used as CA, for garbage.
    let e = fails(notary(&[
        "pki",
        "verify",
        "--ca",
        s(&other.join("ca.crt")),
        s(&out.join("x.test.crt")),
    ]));
    assert!(
        e.contains("verification failed") && e.contains("not signed by the given CA"),
        "{e}"
    );
    ca_init(&d.path().join("ca3"), "CA3", &[]);
    ok(notary(&[
        "pki",
        "issue",
        "client",
        "--ca-dir",
        s(&d.path().join("ca3")),
        "--cn",
        "leaf",
        "--out-dir",
        s(&out),
    ]));
    let e = fails(notary(&[
        "pki",
        "verify",
        "--ca",
        s(&out.join("x.test.crt")),
        s(&out.join("leaf.crt")),
    ]));
    assert!(e.contains("verification failed"), "{e}");
    let junk = d.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let e = fails(notary(&[
        "pki",
        "verify",
        "--ca",
        s(&junk),
        s(&out.join("leaf.crt")),
    ]));
    assert!(e.contains("no certificate"), "{e}");
}

/// Go's notary-server and notary-signer with mutual TLS on our certificates; the Go CLI
/// publishes a server-signed snapshot through both.
#[test]
fn go_server_and_signer_run_on_our_certificates() {
    require("notary-server");
    require("notary-signer");
    require("notary");
    let d = tempfile::tempdir().unwrap();
    let ca = d.path().join("ca");
    let certs = d.path().join("certs");
    ca_init(&ca, "Deploy Root", &[]);
    for (purpose, cn) in [
        ("server", "notary-server"),
        ("server", "notary-signer"),
        ("client", "server-to-signer"),
    ] {
        ok(notary(&[
            "pki",
            "issue",
            purpose,
            "--ca-dir",
            s(&ca),
            "--cn",
            cn,
            "--san",
            "DNS:localhost,IP:127.0.0.1",
            "--out-dir",
            s(&certs),
        ]));
    }
    let c = |n: &str| -> PathBuf { certs.join(n) };
    let sport = free_port();
    let signer_cfg = d.path().join("signer.json");
    std::fs::write(
        &signer_cfg,
        serde_json::json!({
            "server": {"grpc_addr": format!("127.0.0.1:{sport}"), "tls_cert_file": c("notary-signer.crt"),
                       "tls_key_file": c("notary-signer.key"), "client_ca_file": ca.join("ca.crt")},
            "storage": {"backend": "memory"}, "logging": {"level": "info"}
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new("notary-signer");
    cmd.arg("-config").arg(&signer_cfg);
    let mut signer = Proc::spawn(cmd, d.path().join("signer.log"));
    let log = signer.log.clone();
    wait_for_port(sport, &mut signer.child, &log);
    let hport = free_port();
    let server_cfg = d.path().join("server.json");
    std::fs::write(
        &server_cfg,
        serde_json::json!({
            "server": {"http_addr": format!("127.0.0.1:{hport}"), "tls_cert_file": c("notary-server.crt"), "tls_key_file": c("notary-server.key")},
            "trust_service": {"type": "remote", "hostname": "127.0.0.1", "port": sport.to_string(), "key_algorithm": "ecdsa",
                              "tls_ca_file": ca.join("ca.crt"), "tls_client_cert": c("server-to-signer.crt"), "tls_client_key": c("server-to-signer.key")},
            "storage": {"backend": "memory"}, "logging": {"level": "info"}
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new("notary-server");
    cmd.arg("-config").arg(&server_cfg);
    let mut server = Proc::spawn(cmd, d.path().join("server.log"));
    let log = server.log.clone();
    wait_for_port(hport, &mut server.child, &log);
    let url = format!("https://127.0.0.1:{hport}");
    let trust = d.path().join("trust");
    let go = |args: &[&str]| {
        let mut cmd = Command::new("notary");
        cmd.arg("-s")
            .arg(&url)
            .arg("--tlscacert")
            .arg(ca.join("ca.crt"))
            .arg("-d")
            .arg(&trust)
            .args(args);
        cmd.env("NOTARY_ROOT_PASSPHRASE", "r-pass")
            .env("NOTARY_TARGETS_PASSPHRASE", "t-pass")
            .env("NOTARY_SNAPSHOT_PASSPHRASE", "s-pass");
        let out = cmd.stdin(std::process::Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "notary {args:?}: {}{}\nserver: {}\nsigner: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&server.log).unwrap_or_default(),
            std::fs::read_to_string(&signer.log).unwrap_or_default()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let gun = "example.com/pki/app";
    let payload = d.path().join("payload");
    std::fs::write(&payload, b"pki").unwrap();
    go(&["init", gun, "-p"]);
    go(&["key", "rotate", gun, "snapshot", "-r"]);
    go(&["add", gun, "v1", s(&payload), "-p"]);
    assert!(go(&["list", gun]).contains("v1"));
}
