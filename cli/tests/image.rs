//! `notary image …` (issue 5, part 2) with a real registry (Debian's docker-registry,
//! distribution 2.8), our notary-server, dockerd and the docker 28 CLI: what `notary image
//! sign` signs, `DOCKER_CONTENT_TRUST=1 docker pull` accepts; what docker signs on a
//! trusted push, `notary image inspect` reads; revoke, signers and keys as docker does.
//! The notary server runs on a certificate made by `notary pki`, which docker trusts.
//! dockerd runs as root; without it (or without docker 28) the docker half is skipped
//! with a loud message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use notary_tests::{Proc, free_port, ok, output_with_stdin, require, wait_for_port, workspace_bin};

const PASS: [(&str, &str); 2] = [
    ("DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE", "docker-root-pass"),
    (
        "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
        "docker-repo-pass",
    ),
];

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    docker_config: PathBuf,
    registry: String,
    notary_url: String,
    _procs: Vec<Proc>,
    _docker: Option<notary_tests::Dockerd>,
    docker_host: Option<String>,
}

fn sha256_hex(b: &[u8]) -> String {
    notary_core::crypto::sha256(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes a one-layer image through the registry API; returns the manifest digest.
fn push_image(registry: &str, repo: &str, tag: &str, dir: &Path) -> String {
    let work = dir.join(format!("img-{}-{tag}", repo.replace('/', "-")));
    std::fs::create_dir_all(work.join("rootfs")).unwrap();
    std::fs::write(
        work.join("rootfs/hello.txt"),
        format!("hello from {repo}\n"),
    )
    .unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(work.join("rootfs"))
        .arg("-cf")
        .arg(work.join("layer.tar"))
        .arg("hello.txt")
        .status()
        .unwrap();
    assert!(st.success());
    let tar = std::fs::read(work.join("layer.tar")).unwrap();
    let st = Command::new("gzip")
        .arg("-kn")
        .arg(work.join("layer.tar"))
        .status()
        .unwrap();
    assert!(st.success());
    let layer = std::fs::read(work.join("layer.tar.gz")).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]}
    })
    .to_string();
    std::fs::write(work.join("config.json"), &config).unwrap();
    let base = format!("http://{registry}/v2/{repo}");
    for (file, bytes) in [
        ("layer.tar.gz", &layer),
        ("config.json", &config.as_bytes().to_vec()),
    ] {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        let headers = curl(&[
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            &format!("{base}/blobs/uploads/"),
        ]);
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("Location: ")
                    .or_else(|| l.strip_prefix("location: "))
            })
            .unwrap()
            .trim()
            .to_owned();
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{registry}{location}")
        };
        curl(&[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", work.join(file).display()),
            &format!("{url}{sep}digest={digest}"),
        ]);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(),
                   "digest": format!("sha256:{}", sha256_hex(config.as_bytes()))},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": layer.len(),
                    "digest": format!("sha256:{}", sha256_hex(&layer))}]
    })
    .to_string();
    std::fs::write(work.join("manifest.json"), &manifest).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.docker.distribution.manifest.v2+json",
        "--data-binary",
        &format!("@{}", work.join("manifest.json").display()),
        &format!("{base}/manifests/{tag}"),
    ]);
    sha256_hex(manifest.as_bytes())
}

fn setup(with_docker: bool) -> Env {
    require("docker-registry");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut procs = Vec::new();
    // Registry.
    let rport = free_port();
    let cfg = root.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{rport}\n",
            root.join("registry-data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("docker-registry");
    cmd.arg("serve").arg(&cfg);
    let mut reg = Proc::spawn(cmd, root.join("registry.log"));
    let log = reg.log.clone();
    wait_for_port(rport, &mut reg.child, &log);
    procs.push(reg);
    // Our notary server, on a certificate from our own CA (`notary pki`): docker must
    // trust it through $DOCKER_CONFIG/tls/<host>/ca.crt.
    let pki = root.join("pki");
    let p = pki.to_str().unwrap();
    let n = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_notary"))
            .args(args)
            .output()
            .unwrap();
        ok(out, &args.join(" "))
    };
    n(&["pki", "ca", "init", "--cn", "Image Test CA", "--out-dir", p]);
    n(&[
        "pki",
        "issue",
        "server",
        "--ca-dir",
        p,
        "--cn",
        "notary",
        "--san",
        "IP:127.0.0.1,DNS:localhost",
        "--out-dir",
        p,
    ]);
    let server_cfg = root.join("notary-server.json");
    std::fs::write(
        &server_cfg,
        serde_json::json!({
            "server": {"http_addr": "127.0.0.1:0", "tls_cert_file": pki.join("notary.crt"), "tls_key_file": pki.join("notary.key")},
            "trust_service": {"type": "local"},
            "storage": {"backend": "sqlite3", "db_url": root.join("notary.db")},
            "logging": {"level": "warn"}
        })
        .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new(workspace_bin("notary-server"));
    cmd.arg("-config")
        .arg(&server_cfg)
        .arg("--data-dir")
        .arg(root.join("notary"));
    let mut srv = Proc::spawn(cmd, root.join("notary.log"));
    let notary_url = srv.banner().rsplit(' ').next().unwrap().to_owned();
    procs.push(srv);
    let docker_config = root.join("docker");
    let host = notary_url.trim_start_matches("https://");
    std::fs::create_dir_all(docker_config.join("tls").join(host)).unwrap();
    std::fs::copy(
        pki.join("ca.crt"),
        docker_config.join("tls").join(host).join("ca.crt"),
    )
    .unwrap();
    let docker = if with_docker {
        notary_tests::Dockerd::start(&root, "the docker half of this test")
    } else {
        None
    };
    let docker_host = docker.as_ref().map(|d| d.host.clone());
    Env {
        _dir: dir,
        root,
        docker_config,
        registry: format!("127.0.0.1:{rport}"),
        notary_url,
        _procs: procs,
        _docker: docker,
        docker_host,
    }
}

impl Env {
    fn notary(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary"));
        cmd.args(args)
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.notary_url)
            .envs(PASS);
        output_with_stdin(cmd, None)
    }

    fn docker(&self, args: &[&str], trust: bool) -> Output {
        let mut cmd = Command::new("docker");
        cmd.args(args)
            .env("DOCKER_HOST", self.docker_host.as_ref().unwrap())
            .env("DOCKER_CONFIG", &self.docker_config)
            .env("DOCKER_CONTENT_TRUST_SERVER", &self.notary_url)
            .envs(PASS);
        if trust {
            cmd.env("DOCKER_CONTENT_TRUST", "1");
        } else {
            cmd.env_remove("DOCKER_CONTENT_TRUST");
        }
        output_with_stdin(cmd, None)
    }

    fn inspect(&self, reference: &str) -> serde_json::Value {
        let out = ok(
            self.notary(&["image", "inspect", reference]),
            "image inspect",
        );
        serde_json::from_str(&out).unwrap()
    }
}

#[test]
fn sign_inspect_revoke_signers_with_docker_pull() {
    let env = setup(true);
    let image = format!("{}/test/app", env.registry);
    let digest = push_image(&env.registry, "test/app", "v1", &env.root);
    // Sign a tag that is in the registry: a new repository, server-managed snapshot.
    let out = ok(
        env.notary(&["image", "sign", &format!("{image}:v1")]),
        "image sign",
    );
    assert!(
        out.contains(&format!("Successfully signed {image}:v1")),
        "{out}"
    );
    let v = env.inspect(&format!("{image}:v1"));
    assert_eq!(v[0]["SignedTags"][0]["SignedTag"], "v1");
    assert_eq!(v[0]["SignedTags"][0]["Digest"], digest.as_str());
    assert_eq!(v[0]["SignedTags"][0]["Signers"][0], "Repo Admin");
    assert_eq!(v[0]["AdministrativeKeys"][0]["Name"], "Root");
    // The trust data lives where docker keeps it.
    assert!(
        env.docker_config
            .join("trust/private")
            .read_dir()
            .unwrap()
            .count()
            >= 2
    );
    if env.docker_host.is_some() {
        let out = env.docker(&["pull", &format!("{image}:v1")], true);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "trusted pull: {text}");
        assert!(text.contains(&format!("sha256:{digest}")), "{text}");
    }
    // A signer: key generated as docker does, added to targets/alice and targets/releases;
    // signing now goes into targets/releases.
    let keys = env.root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    ok(
        env.notary(&[
            "image",
            "key",
            "generate",
            "alice",
            "--dir",
            keys.to_str().unwrap(),
        ]),
        "key generate",
    );
    let pubkey = keys.join("alice.pub");
    assert!(
        std::fs::read_to_string(&pubkey)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----\nrole: alice\n")
    );
    ok(
        env.notary(&[
            "image",
            "signer",
            "add",
            "alice",
            &image,
            "--key",
            pubkey.to_str().unwrap(),
        ]),
        "signer add",
    );
    let digest2 = push_image(&env.registry, "test/app", "v2", &env.root);
    ok(
        env.notary(&["image", "sign", &format!("{image}:v2")]),
        "sign as alice",
    );
    let v = env.inspect(&image);
    let tags = v[0]["SignedTags"].as_array().unwrap();
    let v2 = tags.iter().find(|t| t["SignedTag"] == "v2").unwrap();
    assert_eq!(v2["Digest"], digest2.as_str());
    assert_eq!(v2["Signers"][0], "alice");
    assert_eq!(v[0]["Signers"][0]["Name"], "alice");
    let pretty = ok(
        env.notary(&["image", "inspect", "--pretty", &image]),
        "inspect --pretty",
    );
    assert!(
        pretty.contains("SIGNED TAG") && pretty.contains("alice") && pretty.contains("Root Key:"),
        "{pretty}"
    );
    if env.docker_host.is_some() {
        let out = env.docker(&["pull", &format!("{image}:v2")], true);
        assert!(
            out.status.success(),
            "trusted pull of a releases tag: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Revoke v2: docker refuses the tag afterwards.
    ok(
        env.notary(&["image", "revoke", &format!("{image}:v2")]),
        "revoke",
    );
    let v = env.inspect(&image);
    assert!(
        v[0]["SignedTags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["SignedTag"] != "v2")
    );
    if env.docker_host.is_some() {
        let out = env.docker(&["pull", &format!("{image}:v2")], true);
        assert!(!out.status.success(), "pull of a revoked tag succeeded");
    }
    // Remove the signer.
    ok(
        env.notary(&["image", "signer", "remove", "alice", &image]),
        "signer remove",
    );
    assert!(
        env.inspect(&image)[0]["Signers"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn docker_signed_push_is_read_by_notary_image() {
    let env = setup(true);
    if env.docker_host.is_none() {
        return;
    }
    let source = format!("{}/test/source", env.registry);
    push_image(&env.registry, "test/source", "v1", &env.root);
    let out = env.docker(&["pull", &format!("{source}:v1")], false);
    assert!(
        out.status.success(),
        "plain pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = format!("{}/test/signed-by-docker", env.registry);
    ok(
        env.docker(
            &["tag", &format!("{source}:v1"), &format!("{target}:v9")],
            false,
        ),
        "docker tag",
    );
    let out = env.docker(&["push", &format!("{target}:v9")], true);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "trusted push: {text}");
    assert!(
        text.contains("Signing and pushing trust metadata"),
        "{text}"
    );
    let v = env.inspect(&format!("{target}:v9"));
    assert_eq!(v[0]["SignedTags"][0]["SignedTag"], "v9", "{v}");
    // And notary image signs another tag of the repository docker created, docker pulls it.
    push_image(&env.registry, "test/signed-by-docker", "v10", &env.root);
    ok(
        env.notary(&["image", "sign", &format!("{target}:v10")]),
        "sign in docker's repository",
    );
    let out = env.docker(&["pull", &format!("{target}:v10")], true);
    assert!(
        out.status.success(),
        "trusted pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_references_and_missing_tags_are_refused() {
    let env = setup(false);
    let e = env.notary(&["image", "sign", &format!("{}/test/none:v1", env.registry)]);
    assert!(!e.status.success());
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("no such manifest"),
        "{}",
        String::from_utf8_lossy(&e.stderr)
    );
    let e = env.notary(&["image", "sign", "example.com/app@sha256:00"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("digest references"));
    let e = env.notary(&["image", "sign", &format!("{}/test/app", env.registry)]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("give the tag"));
    let e = env.notary(&[
        "image", "signer", "add", "releases", "x/y", "--key", "k.pub",
    ]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("reserved"));
}

#[test]
fn key_load_imports_a_private_key_as_a_signer() {
    let env = setup(false);
    let pki = env.root.join("pki-load");
    let p = pki.to_str().unwrap();
    ok(
        env.notary(&["pki", "ca", "init", "--cn", "Load CA", "--out-dir", p]),
        "pki ca",
    );
    ok(
        env.notary(&[
            "pki",
            "issue",
            "delegation",
            "--ca-dir",
            p,
            "--cn",
            "bob",
            "--out-dir",
            p,
        ]),
        "pki issue",
    );
    let key = pki.join("bob.key");
    let out = ok(
        env.notary(&[
            "image",
            "key",
            "load",
            key.to_str().unwrap(),
            "--name",
            "bob",
        ]),
        "key load",
    );
    assert!(out.contains("Successfully imported key from"), "{out}");
    let mut found = false;
    for e in std::fs::read_dir(env.docker_config.join("trust/private")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        found |=
            text.contains("role: bob") && text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----");
    }
    assert!(found, "bob's key is stored encrypted with its role");
    // A key file others can read is refused, as docker refuses it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.notary(&[
        "image",
        "key",
        "load",
        key.to_str().unwrap(),
        "--name",
        "bob2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must not be readable"));
}
