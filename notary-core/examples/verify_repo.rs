//! Verifies a Go client's metadata cache (`tuf/<gun>/metadata/`) with the update engine.
//!
//! ```text
//! cargo run -p notary-core --example verify_repo -- --gun GUN --dir DIR [--root-ca PEM] [--now RFC3339]
//! ```
//! Prints one JSON line `{"name","sha256","length","role"}` per verified target and exits
//! 0; on failure prints one line naming the file and the reason and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use notary_core::update::{FetchRequest, Remote};
use notary_core::{Gun, TrustPinning, Updater};

/// Serves `<role>.json` (checksum names too: the engine checks hashes) from a directory.
struct DirRemote(PathBuf);

impl Remote for DirRemote {
    type Error = std::io::Error;
    async fn fetch(&mut self, req: &FetchRequest) -> Result<Option<Vec<u8>>, std::io::Error> {
        let name = match req.version {
            Some(v) => format!("{v}.{}.json", req.role),
            None => format!("{}.json", req.role),
        };
        match std::fs::read(self.0.join(name)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn run() -> Result<(), String> {
    let (mut gun, mut dir, mut ca, mut now) = (None, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gun" => gun = Some(Gun::new(&value).map_err(|e| e.to_string())?),
            "--dir" => dir = Some(PathBuf::from(value)),
            "--root-ca" => ca = Some(std::fs::read(&value).map_err(|e| format!("{value}: {e}"))?),
            "--now" => {
                let t = time::OffsetDateTime::parse(
                    &value,
                    &time::format_description::well_known::Rfc3339,
                );
                now = Some(t.map_err(|e| format!("--now: {e}"))?);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let (gun, dir) = (
        gun.ok_or("--gun is required")?,
        dir.ok_or("--dir is required")?,
    );
    let mut pinning = TrustPinning::default();
    if let Some(ca) = ca {
        pinning.ca.insert(gun.to_string(), ca);
        pinning.disable_tofu = true;
    }
    let updater =
        Updater::new(gun, now.unwrap_or_else(time::OffsetDateTime::now_utc)).pinning(pinning);
    let repo = block_on(updater.update(&mut DirRemote(dir))).map_err(|e| e.to_string())?;
    for t in repo.list() {
        let sha256 = t
            .meta
            .hashes
            .get("sha256")
            .map(|h| hex::encode(&h.0))
            .unwrap_or_default();
        let line = serde_json::json!({"name": t.name, "sha256": sha256, "length": t.meta.length, "role": t.role.as_str()});
        println!("{line}");
    }
    Ok(())
}

/// The engine's futures never wait when the remote is a directory.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
