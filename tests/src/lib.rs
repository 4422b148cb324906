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

/// Runs `cmd` with `stdin` fed to it (or an empty, closed stdin), capturing output.
pub fn output_with_stdin(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
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

/// A private PostgreSQL server on a loopback port, in a temporary directory, stopped
/// (fast shutdown) when dropped. Run as root, it runs as the `postgres` user.
/// Needs Debian's `postgresql` package (`scripts/test.sh` installs it).
pub struct Postgres {
    child: Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| panic!("PostgreSQL server binaries not found: run ./scripts/test.sh (it installs Debian's postgresql)"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Postgres {
    fn cmd(&self, program: &str) -> Command {
        pg_command(&self.bin, program, self.as_postgres)
    }

    /// Initialises a cluster (trust auth, user `notary`) and starts it.
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("notary-rs-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if as_postgres {
            let st = Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
            assert!(st.success());
        }
        let out = pg_command(&bin, "initdb", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "notary", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let log = dir.path().join("postgres.log");
        let mut child = pg_command(&bin, "postgres", as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(&data)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        let pg = Postgres {
            child,
            port,
            bin,
            as_postgres,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !pg.psql("postgres", "SELECT 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not accept connections"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    fn psql(&self, db: &str, sql: &str) -> Output {
        self.cmd("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "notary",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap()
    }

    /// Creates a database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let out = self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        assert!(
            out.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://notary@127.0.0.1:{}/{name}", self.port)
    }
}

fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    if as_postgres {
        // setpriv execs (no fork), so the PID we hold is the server's own.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (disconnects clients, releases shared memory).
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A binary of this workspace (built by `cargo build --workspace --all-targets`, which
/// `scripts/test.sh` runs before the tests), next to the test executable's `deps/`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --workspace --all-targets` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A child process killed (and reaped) when dropped, with its stderr in a file.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Its stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stderr to `log` and stdout piped.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    /// The first stdout line (a start-up banner); panics with the log if the process
    /// exits first.
    pub fn banner(&mut self) -> String {
        use std::io::BufRead as _;
        let stdout = self.child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        assert!(
            !line.is_empty(),
            "process exited before its banner: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        line.trim().to_owned()
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private S3 server (moto, from PyPI's `moto[server]`: `scripts/test.sh` installs it)
/// on a loopback port, in memory, killed by PID when dropped. It accepts any credentials.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts the server and waits until it answers.
    pub fn start() -> Moto {
        let found = Command::new("sh")
            .arg("-c")
            .arg("command -v moto_server")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`moto_server` is not installed: run ./scripts/test.sh (it runs pip install 'moto[server]')"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        // pyenv's shim and the script exec: the PID we hold is the server's own.
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.path().join("moto.out")).unwrap(),
            ))
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, &log);
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
            _dir: dir,
        }
    }

    /// Creates a bucket (object stores have no create-bucket call: plain S3 `PUT /bucket`).
    pub fn create_bucket(&self, name: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .arg(format!("{}/{name}", self.url))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && code == "200",
            "creating bucket {name}: {code} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private docker engine (`dockerd` with vfs storage and no networking, its socket,
/// data and exec roots under a test directory), killed when dropped.
pub struct Dockerd {
    /// `unix://…/docker.sock`, for `DOCKER_HOST`.
    pub host: String,
    _proc: Proc,
}

impl Dockerd {
    /// Starts one under `root` and waits until it answers; `None` (with a loud message
    /// naming `what` is skipped) when the docker CLI, dockerd or root is missing here.
    pub fn start(root: &Path, what: &str) -> Option<Dockerd> {
        let have = |c: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {c}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !(have("docker") && have("dockerd") && is_root) {
            eprintln!("\n!!! SKIPPING {what}: docker CLI, dockerd or root missing !!!\n");
            return None;
        }
        let sock = root.join("docker.sock");
        let mut cmd = Command::new("dockerd");
        cmd.args([
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ])
        .arg("--data-root")
        .arg(root.join("docker-root"))
        .arg("--exec-root")
        .arg(root.join("docker-exec"))
        .arg("--pidfile")
        .arg(root.join("docker.pid"))
        .arg("-H")
        .arg(format!("unix://{}", sock.display()));
        let proc = Proc::spawn(cmd, root.join("dockerd.log"));
        let host = format!("unix://{}", sock.display());
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("docker")
            .env("DOCKER_HOST", &host)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(root.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(Dockerd { host, _proc: proc })
    }
}
