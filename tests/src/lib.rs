//! Helpers for real-client tests: start the Go reference programs from Debian's
//! `notary` package on loopback ports, talk HTTP through `curl`, run the Go CLI.
//! Every process is started on 127.0.0.1 and killed by PID when its guard drops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails with a clear message when a reference program is missing.
pub fn require(bin: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{bin}` is not installed: run ./scripts/test.sh (it installs Debian's notary package)"
    );
}

/// A port the OS considers free right now (bound to 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "process exited with {status}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "nothing listened on port {port}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A running Go `notary-server` (memory storage, `local` trust service, plain HTTP).
pub struct GoNotaryServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl GoNotaryServer {
    /// Starts the server and waits until it listens.
    pub fn start() -> Self {
        require("notary-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = serde_json::json!({
            "server": {"http_addr": format!("127.0.0.1:{port}")},
            "trust_service": {"type": "local"},
            "logging": {"level": "info"},
            "storage": {"backend": "memory"}
        });
        let cfg = dir.path().join("server.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let log = dir.path().join("server.log");
        let mut child = Command::new("notary-server")
            .arg("-config")
            .arg(&cfg)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("server.err")).unwrap(),
            ))
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &dir.path().join("server.err"));
        GoNotaryServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for GoNotaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET through curl: `(status, body)`.
pub fn http_get(url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (code, std::fs::read(body.path()).unwrap())
}

/// The multipart atomic update, as the Go client sends it: one `files` part per role,
/// the part's filename being the role name.
pub fn http_post_files(url: &str, files: &[(String, Vec<u8>)]) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-w", "\n%{http_code}", "-X", "POST"]);
    for (i, (role, bytes)) in files.iter().enumerate() {
        let p = dir.path().join(format!("part{i}"));
        std::fs::write(&p, bytes).unwrap();
        cmd.arg("-F").arg(format!(
            "files=@{};filename={role};type=application/octet-stream",
            p.display()
        ));
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Runs the Go `notary` CLI with a trust directory and server.
pub fn go_notary(trust_dir: &Path, server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    require("notary");
    let mut cmd = Command::new("notary");
    cmd.arg("-d")
        .arg(trust_dir)
        .arg("-s")
        .arg(server)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Asserts success and returns stdout.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go-notary-0.7")
}
