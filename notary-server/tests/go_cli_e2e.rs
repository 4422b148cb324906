//! The Go `notary` CLI against our server: the scenario of shared/anchors/notary-cli-e2e.sh
//! (init, add/addhash, publish, list, lookup, verify, server-managed snapshot and
//! timestamp rotation, delegation, witness, remove, fresh client, delete --remote), over
//! TLS with the certificate the server generates on embedded defaults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use notary_tests::require;

const GUN: &str = "example.com/e2e/notary-cli";
const ENV: [(&str, &str); 4] = [
    ("NOTARY_ROOT_PASSPHRASE", "e2e-root-pass"),
    ("NOTARY_TARGETS_PASSPHRASE", "e2e-targets-pass"),
    ("NOTARY_SNAPSHOT_PASSPHRASE", "e2e-snapshot-pass"),
    ("NOTARY_DELEGATION_PASSPHRASE", "e2e-delegation-pass"),
];

/// Our server on embedded defaults in a temporary data directory, killed on drop.
pub struct OurServer {
    child: Child,
    pub url: String,
    pub ca: PathBuf,
    pub dir: tempfile::TempDir,
}

impl OurServer {
    /// Embedded defaults (SQLite, generated TLS certificate).
    pub fn start() -> Self {
        Self::spawn(tempfile::tempdir().unwrap(), None)
    }

    /// A Go-format config file with PostgreSQL storage and TLS.
    pub fn start_postgres(db_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("notary-server.crt");
        let key = dir.path().join("notary-server.key");
        notary_server::daemon::ensure_self_signed(&cert, &key).unwrap();
        let cfg = serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0", "tls_cert_file": "notary-server.crt", "tls_key_file": "notary-server.key"},
            "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
            "storage": {"backend": "postgres", "db_url": db_url},
            "logging": {"level": "warn"}
        });
        let path = dir.path().join("server.json");
        std::fs::write(&path, cfg.to_string()).unwrap();
        Self::spawn(dir, Some(path))
    }

    fn spawn(dir: tempfile::TempDir, config: Option<PathBuf>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary-server"));
        if let Some(c) = &config {
            cmd.arg("-config").arg(c);
        }
        let mut child = cmd
            .args(["--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "notary_server=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(
            url.starts_with("https://127.0.0.1:"),
            "unexpected banner {line:?}"
        );
        let ca = dir.path().join("notary-server.crt");
        OurServer {
            child,
            url,
            ca,
            dir,
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client<'a> {
    server: &'a OurServer,
    trust: PathBuf,
}

impl Client<'_> {
    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new("notary");
        cmd.arg("-s")
            .arg(&self.server.url)
            .arg("--tlscacert")
            .arg(&self.server.ca)
            .arg("-d")
            .arg(&self.trust)
            .args(args);
        for (k, v) in ENV {
            cmd.env(k, v);
        }
        notary_tests::output_with_stdin(cmd, stdin)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args, None);
        assert!(
            out.status.success(),
            "notary {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn curl(server: &OurServer, path: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&server.ca)
        .arg("-o")
        .arg(body.path())
        .args(["-w", "%{http_code}"])
        .arg(format!("{}{path}", server.url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).parse().unwrap(),
        std::fs::read(body.path()).unwrap(),
    )
}

fn meta(server: &OurServer, role: &str) -> serde_json::Value {
    let (code, body) = curl(server, &format!("/v2/{GUN}/_trust/tuf/{role}.json"));
    assert_eq!(code, 200, "{role}.json: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn sha256(path: &Path) -> String {
    hex::encode(notary_core::crypto::sha256(&std::fs::read(path).unwrap()))
}

#[test]
fn go_notary_cli_full_scenario_against_our_server() {
    scenario(&OurServer::start());
}

#[test]
fn go_notary_cli_full_scenario_against_our_server_on_postgres() {
    let pg = notary_tests::Postgres::start();
    scenario(&OurServer::start_postgres(&pg.database("e2e")));
}

fn scenario(server: &OurServer) {
    require("notary");
    require("openssl");
    let w = server.dir.path().join("work");
    std::fs::create_dir_all(&w).unwrap();
    let files: Vec<PathBuf> = (1..=4)
        .map(|i| {
            let p = w.join(format!("file{i}"));
            std::fs::write(&p, format!("target file {i} {}\n", i * 7919)).unwrap();
            p
        })
        .collect();
    let n = Client {
        server,
        trust: w.join("trust"),
    };
    let n2 = Client {
        server,
        trust: w.join("trust2"),
    };
    let f = |i: usize| files[i].to_str().unwrap().to_owned();
    let size = |i: usize| std::fs::metadata(&files[i]).unwrap().len().to_string();

    assert_eq!(curl(server, "/v2/").0, 200, "preflight");

    // init and publish
    n.ok(&["init", GUN, "-p"]);
    meta(server, "root");
    meta(server, "timestamp");

    // add, addhash, status, publish
    n.ok(&["add", GUN, "t1", &f(0)]);
    n.ok(&[
        "addhash",
        GUN,
        "t2",
        &size(1),
        "--sha256",
        &sha256(&files[1]),
    ]);
    n.ok(&["status", GUN]);
    n.ok(&["publish", GUN]);

    // list and lookup
    let list = n.ok(&["list", GUN]);
    let t1 = list
        .lines()
        .find(|l| l.starts_with("t1 "))
        .unwrap_or_else(|| panic!("t1 missing:\n{list}"));
    let cols: Vec<&str> = t1.split_whitespace().collect();
    assert_eq!(cols, ["t1", &sha256(&files[0]), &size(0), "targets"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("t2 ") && l.contains(&sha256(&files[1]))),
        "{list}"
    );
    let lookup = n.ok(&["lookup", GUN, "t1"]);
    assert!(
        lookup.contains(&format!("sha256:{} {}", sha256(&files[0]), size(0))),
        "{lookup}"
    );

    // verify content
    let good = std::fs::read(&files[0]).unwrap();
    let out = n.run(&["verify", GUN, "t1"], Some(&good));
    assert!(
        out.status.success() && out.stdout == good,
        "verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = std::fs::read(&files[1]).unwrap();
    assert!(
        !n.run(&["verify", GUN, "t1"], Some(&bad)).status.success(),
        "verify of wrong content must fail"
    );

    // server-managed snapshot
    let before = meta(server, "root")["signed"]["roles"]["snapshot"]["keyids"][0].clone();
    n.ok(&["key", "rotate", GUN, "snapshot", "-r"]);
    let after = meta(server, "root")["signed"]["roles"]["snapshot"]["keyids"][0].clone();
    assert_ne!(before, after);
    let sn = meta(server, "snapshot");
    assert!(
        sn["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["keyid"] == after),
        "snapshot not signed by {after}"
    );
    n.ok(&["add", GUN, "t3", &f(2), "-p"]);
    assert!(n.ok(&["list", GUN]).lines().any(|l| l.starts_with("t3 ")));

    // server-managed timestamp rotation
    let before = meta(server, "root")["signed"]["roles"]["timestamp"]["keyids"][0].clone();
    n.ok(&["key", "rotate", GUN, "timestamp", "-r"]);
    let after = meta(server, "root")["signed"]["roles"]["timestamp"]["keyids"][0].clone();
    assert_ne!(before, after);
    let ts = meta(server, "timestamp");
    assert!(
        ts["signatures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["keyid"] == after)
    );

    // delegation from an x509 certificate
    let key = w.join("releases.key");
    let crt = w.join("releases.crt");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(st.status.success());
    let st = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-x509",
            "-sha256",
            "-days",
            "365",
            "-subj",
            "/CN=releases-signer",
            "-key",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(st.status.success());
    n.ok(&[
        "key",
        "import",
        key.to_str().unwrap(),
        "--role",
        "targets/releases",
    ]);
    n.ok(&[
        "delegation",
        "add",
        GUN,
        "targets/releases",
        crt.to_str().unwrap(),
        "--all-paths",
    ]);
    n.ok(&["publish", GUN]);
    let dl = n.ok(&["delegation", "list", GUN]);
    assert!(
        dl.lines().any(|l| l.starts_with("targets/releases ")),
        "{dl}"
    );
    let targets = meta(server, "targets");
    assert!(
        targets["signed"]["delegations"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "targets/releases")
    );

    // a target in the delegation
    n.ok(&["add", GUN, "t4", &f(3), "--roles", "targets/releases", "-p"]);
    let rel = n.ok(&["list", GUN, "--roles", "targets/releases"]);
    assert!(
        rel.lines().any(|l| l.starts_with("t4 ")
            && l.contains(&sha256(&files[3]))
            && l.contains("targets/releases")),
        "{rel}"
    );
    assert!(meta(server, "targets/releases")["signed"]["targets"]["t4"].is_object());

    // witness bumps the delegation's version
    let v1 = meta(server, "targets/releases")["signed"]["version"]
        .as_u64()
        .unwrap();
    n.ok(&["witness", GUN, "targets/releases", "-p"]);
    let v2 = meta(server, "targets/releases")["signed"]["version"]
        .as_u64()
        .unwrap();
    assert_eq!(v2, v1 + 1);

    // remove a target
    n.ok(&["remove", GUN, "t1", "-p"]);
    assert!(!n.ok(&["list", GUN]).lines().any(|l| l.starts_with("t1 ")));

    // a fresh client: trust on first use, full walk
    let fresh = n2.ok(&["list", GUN]);
    for t in ["t2 ", "t3 ", "t4 "] {
        assert!(
            fresh.lines().any(|l| l.starts_with(t)),
            "{t} missing:\n{fresh}"
        );
    }
    assert!(!fresh.lines().any(|l| l.starts_with("t1 ")));

    // delete --remote
    n.ok(&["delete", GUN, "--remote"]);
    assert_eq!(
        curl(server, &format!("/v2/{GUN}/_trust/tuf/root.json")).0,
        404
    );
    std::fs::remove_dir_all(w.join("trust2")).unwrap();
    let out = n2.run(&["list", GUN], None);
    assert!(!out.status.success(), "list after delete must fail");
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("does not have trust data")
            || err.contains("not found")
            || err.contains("No trust data"),
        "{err}"
    );
}
