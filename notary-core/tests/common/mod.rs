//! Helpers shared by notary-core's integration tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

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
            let rel = entry
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            files.insert(rel, std::fs::read(&entry).unwrap());
        }
        MapRemote {
            files,
            requests: Vec::new(),
        }
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

use notary_core::metadata::{FileMeta, RoleMetadata, Signed, Snapshot, Timestamp};
use notary_core::repo::{Expiries, KeyRing, RepoEditor, SignedFiles};
use notary_core::{Algorithm, Gun, KeyId, PrivateKey, RoleName, Signer};

pub const GUN: &str = "example.com/neg/repo";

/// A complete repository built with local keys for every role.
pub struct TestRepo {
    pub root: PrivateKey,
    pub targets: PrivateKey,
    pub snapshot: PrivateKey,
    pub timestamp: PrivateKey,
    pub editor: RepoEditor,
    pub remote: MapRemote,
}

pub fn file_name(role: &RoleName) -> String {
    format!("{role}.json")
}

impl TestRepo {
    pub fn new() -> Self {
        Self::with_expiries(Expiries::default())
    }

    pub fn with_expiries(expiries: Expiries) -> Self {
        let generate = || PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
        let (root, targets, snapshot, timestamp) = (generate(), generate(), generate(), generate());
        let editor = RepoEditor::create(
            Gun::new(GUN).unwrap(),
            &root,
            targets.public().clone(),
            snapshot.public().clone(),
            timestamp.public().clone(),
            NOW,
        )
        .unwrap()
        .with_expiries(expiries);
        let mut repo = TestRepo {
            root,
            targets,
            snapshot,
            timestamp,
            editor,
            remote: MapRemote::default(),
        };
        repo.publish(&[]);
        repo
    }

    /// Signs staged changes with every base key plus `extra`, storing the files.
    pub fn publish(&mut self, extra: &[&PrivateKey]) -> SignedFiles {
        let mut ring = KeyRing::new();
        ring.add(&self.root)
            .add(&self.targets)
            .add(&self.snapshot)
            .add(&self.timestamp);
        for k in extra {
            ring.add(*k);
        }
        let out = self.editor.sign(&ring, NOW).unwrap();
        for (role, bytes) in &out.files {
            self.remote.files.insert(file_name(role), bytes.clone());
        }
        out
    }

    pub fn file(&self, role: &str) -> Vec<u8> {
        self.remote.files[&format!("{role}.json")].clone()
    }

    /// Replaces a role's file and re-signs snapshot and timestamp over it, so only the
    /// replaced file is wrong.
    pub fn replace_and_rechain(&mut self, role: &str, bytes: Vec<u8>) {
        self.remote
            .files
            .insert(format!("{role}.json"), bytes.clone());
        let sn = Signed::<Snapshot>::parse(self.file("snapshot")).unwrap();
        let mut s = sn.signed().clone();
        s.meta.insert(role.to_owned(), FileMeta::from_bytes(&bytes));
        let v = s.version() + 1;
        let e = *s.expires();
        s.set_version_expires(v, e);
        let sn = sign_with(s, &[&self.snapshot]);
        self.remote.files.insert("snapshot.json".into(), sn.clone());
        let ts = Signed::<Timestamp>::parse(self.file("timestamp")).unwrap();
        let mut t = ts.signed().clone();
        t.meta.insert("snapshot".into(), FileMeta::from_bytes(&sn));
        let v = t.version() + 1;
        let e = *t.expires();
        t.set_version_expires(v, e);
        let ts = sign_with(t, &[&self.timestamp]);
        self.remote.files.insert("timestamp.json".into(), ts);
    }

    pub fn update(&mut self) -> Result<notary_core::Repository, notary_core::update::UpdateError> {
        block_on(notary_core::Updater::new(Gun::new(GUN).unwrap(), NOW).update(&mut self.remote))
    }

    pub fn update_with(
        &mut self,
        u: notary_core::Updater,
    ) -> Result<notary_core::Repository, notary_core::update::UpdateError> {
        block_on(u.update(&mut self.remote))
    }
}

/// Signs `role` with plain keys (key ID = the key's own ID).
pub fn sign_with<T: RoleMetadata>(role: T, keys: &[&PrivateKey]) -> Vec<u8> {
    let signers: Vec<(KeyId, &dyn Signer)> = keys
        .iter()
        .map(|k| (k.public().key_id(), *k as &dyn Signer))
        .collect();
    Signed::sign(role, &signers).unwrap().into_file_bytes()
}
