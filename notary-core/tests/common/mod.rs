//! Helpers shared by notary-core's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use notary_core::update::{FetchRequest, Remote};
use time::OffsetDateTime;
use time::macros::datetime;

/// The injected clock for the Go fixtures (generated 2026-11-22, timestamps expire 2026-12-06).
pub const NOW: OffsetDateTime = datetime!(2026-11-23 00:00 UTC);

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go-notary-0.7")
}

pub fn read(rel: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Polls a future that never waits on IO to completion.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A remote backed by a map of file names; checksum names resolve to `<role>.json`
/// (the engine checks hashes itself). Records every request.
#[derive(Default, Clone)]
pub struct MapRemote {
    pub files: BTreeMap<String, Vec<u8>>,
    pub requests: Vec<String>,
}

#[derive(Debug)]
pub struct NoError;
impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unreachable")
    }
}
impl std::error::Error for NoError {}

impl MapRemote {
    pub fn from_dir(dir: &Path) -> Self {
        let mut files = BTreeMap::new();
        for entry in walk(dir) {
            let rel = entry.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            files.insert(rel, std::fs::read(&entry).unwrap());
        }
        MapRemote { files, requests: Vec::new() }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Remote for MapRemote {
    type Error = NoError;
    async fn fetch(&mut self, req: &FetchRequest) -> Result<Option<Vec<u8>>, NoError> {
        self.requests.push(req.file_name());
        let name = match req.version {
            Some(v) => format!("{v}.{}.json", req.role),
            None => format!("{}.json", req.role),
        };
        Ok(self.files.get(&name).cloned())
    }
}
