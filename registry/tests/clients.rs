//! The `notary-registry` binary against real clients: skopeo (Debian) copying an OCI
//! layout in and out, a real docker engine pushing and pulling, and curl resuming a
//! chunked upload across a registry restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use notary_tests::{Proc, require};
use serde_json::json;

const ADMIN_PASSWORD: &str = "clients-test-admin-pw";

/// A running `notary-registry` (plain HTTP on a loopback port the OS picked).
struct Running {
    proc: Proc,
    /// `127.0.0.1:PORT`.
    addr: String,
}

fn start(data: &Path, extra: &[&str]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_notary-registry"));
    cmd.args(["--listen", "127.0.0.1:0", "--plain-http"])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("NOTARY_REGISTRY_LOG_LEVEL", "warn")
        .env("NOTARY_REGISTRY_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let mut proc = Proc::spawn(cmd, data.with_extension("log"));
    let banner = proc.banner();
    let addr = banner.rsplit("://").next().unwrap().trim().to_owned();
    Running { proc, addr }
}

fn sha256_hex(data: &[u8]) -> String {
    notary_registry::names::Digest::of(notary_registry::names::Algorithm::Sha256, data)
        .hex()
        .to_owned()
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a one-layer OCI image layout at `dir` tagged `tag`; returns the manifest digest.
fn oci_layout(dir: &Path, tag: &str) -> String {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let h = sha256_hex(data);
        std::fs::write(blobs.join(&h), data).unwrap();
        format!("sha256:{h}")
    };
    let layer: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let l = put(&layer);
    let config =
        json!({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[l]}})
            .to_string();
    let c = put(config.as_bytes());
    let manifest = json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":c,"size":config.len()},
        "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":l,"size":layer.len()}]}).to_string();
    let m = put(manifest.as_bytes());
    let index = json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":m,"size":manifest.len(),"annotations":{"org.opencontainers.image.ref.name":tag}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    m
}

fn skopeo(args: &[&str]) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.args(["--insecure-policy"]).args(args);
    cmd
}

#[test]
fn skopeo_copies_an_oci_layout_in_and_out() {
    require("skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let reg = start(&tmp.path().join("data"), &[]);
    let src = tmp.path().join("src");
    let digest = oci_layout(&src, "v1");
    let dest = format!("docker://{}/skopeo/img:v1", reg.addr);
    let creds = format!("admin:{ADMIN_PASSWORD}");
    // Anonymous push is refused.
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", src.display()),
        &dest,
    ])
    .output()
    .unwrap();
    assert!(!out.status.success(), "anonymous push went through");
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "admin:wrong",
        &format!("oci:{}:v1", src.display()),
        &dest,
    ])
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "push with a wrong password went through"
    );
    run(
        &mut skopeo(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", src.display()),
            &dest,
        ]),
        "skopeo copy in",
    );
    let out = run(
        &mut skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            "--format",
            "{{.Digest}}",
            &dest,
        ]),
        "skopeo inspect",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    let back: PathBuf = tmp.path().join("back");
    run(
        &mut skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &dest,
            &format!("oci:{}:v1", back.display()),
        ]),
        "skopeo copy out",
    );
    // Same manifest bytes and blobs on the way back.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    for entry in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let copied = std::fs::read(back.join("blobs/sha256").join(entry.file_name())).unwrap();
        assert_eq!(copied, std::fs::read(entry.path()).unwrap());
    }
    drop(reg);
}

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-w",
            "%{http_code}",
            "-u",
            &format!("admin:{ADMIN_PASSWORD}"),
        ])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    (code, text)
}

fn header(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .unwrap_or_default()
}

#[test]
fn chunked_upload_resumes_after_the_registry_is_killed_and_restarted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut reg = start(&data, &[]);
    let base = format!("http://{}", reg.addr);
    let (code, h) = curl(&["-X", "POST", &format!("{base}/v2/resume/me/blobs/uploads/")]);
    assert_eq!(code, 202);
    let loc = header(&h, "location");
    let part1 = vec![b'a'; 100_000];
    let f1 = tmp.path().join("p1");
    std::fs::write(&f1, &part1).unwrap();
    let (code, h) = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Content-Range: 0-99999",
        "--data-binary",
        &format!("@{}", f1.display()),
        &format!("{base}{loc}"),
    ]);
    assert_eq!(code, 202);
    assert_eq!(header(&h, "range"), "0-99999");
    // SIGKILL: no graceful shutdown.
    reg.proc.kill();
    let reg = start(&data, &[]);
    let base = format!("http://{}", reg.addr);
    let (code, h) = curl(&[&format!("{base}{loc}")]);
    assert_eq!((code, header(&h, "range")), (204, "0-99999".to_owned()));
    let part2 = vec![b'b'; 50_000];
    let f2 = tmp.path().join("p2");
    std::fs::write(&f2, &part2).unwrap();
    let mut whole = part1.clone();
    whole.extend_from_slice(&part2);
    let digest = format!("sha256:{}", sha256_hex(&whole));
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Range: 100000-149999",
        "--data-binary",
        &format!("@{}", f2.display()),
        &format!("{base}{loc}?digest={digest}"),
    ]);
    assert_eq!(code, 201);
    let out = Command::new("curl")
        .args([
            "-sS",
            "-u",
            &format!("admin:{ADMIN_PASSWORD}"),
            &format!("{base}/v2/resume/me/blobs/{digest}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.stdout, whole);
}

/// A small tarball for `docker import`.
fn rootfs_tar(path: &Path) {
    let dir = path.with_extension("d");
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/hello"), b"hello from notary-registry\n").unwrap();
    run(
        Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .arg("-cf")
            .arg(path)
            .arg("."),
        "tar",
    );
}

#[test]
fn docker_engine_pushes_and_pulls() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(d) = notary_tests::Dockerd::start(tmp.path(), "the docker engine test") else {
        return;
    };
    let reg = start(&tmp.path().join("data"), &[]);
    let docker = |args: &[&str]| {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &d.host)
            .env("DOCKER_CONFIG", tmp.path().join("docker-config"))
            .args(args);
        c
    };
    let tar = tmp.path().join("rootfs.tar");
    rootfs_tar(&tar);
    let image = format!("{}/engine/hello:v1", reg.addr);
    run(
        &mut docker(&["import", tar.to_str().unwrap(), &image]),
        "docker import",
    );
    let out = docker(&["push", &image]).output().unwrap();
    assert!(!out.status.success(), "push without login went through");
    let login = docker(&["login", "-u", "admin", "--password-stdin", &reg.addr]);
    let out = notary_tests::output_with_stdin(login, Some(ADMIN_PASSWORD.as_bytes()));
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&mut docker(&["push", &image]), "docker push");
    let pushed = String::from_utf8_lossy(&out.stdout).into_owned();
    let digest = pushed
        .split("digest: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_owned();
    run(&mut docker(&["rmi", &image]), "docker rmi");
    let out = run(&mut docker(&["pull", &image]), "docker pull");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    run(
        &mut docker(&["pull", &format!("{}/engine/hello@{digest}", reg.addr)]),
        "docker pull by digest",
    );
}
