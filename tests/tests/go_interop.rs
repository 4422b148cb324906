//! notary-core against the real Go programs: key files we write are read by Go
//! `notary`, a repository we create is accepted by Go `notary-server` and listed by the
//! Go client, and what the Go client then publishes verifies in our update engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use notary_core::keyfile::KeyFile;
use notary_core::metadata::FileMeta;
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::{FetchRequest, Remote, Updater};
use notary_core::{Algorithm, Gun, PrivateKey, PublicKey, RoleName};
use notary_tests::{GoNotaryServer, go_notary, http_get, http_post_files, ok};

const ENV: [(&str, &str); 4] = [
    ("NOTARY_ROOT_PASSPHRASE", "root-pass-1"),
    ("NOTARY_TARGETS_PASSPHRASE", "targets-pass-1"),
    ("NOTARY_SNAPSHOT_PASSPHRASE", "snapshot-pass-1"),
    ("NOTARY_DELEGATION_PASSPHRASE", "delegation-pass-1"),
];

fn write_key(trust: &Path, key: &PrivateKey, role: &str, gun: Option<&Gun>, pass: &str) {
    let dir = trust.join("private");
    std::fs::create_dir_all(&dir).unwrap();
    let pem = KeyFile::encode(key, role, gun, Some(pass)).unwrap();
    std::fs::write(
        dir.join(format!("{}.key", key.public().key_id())),
        pem.as_bytes(),
    )
    .unwrap();
}

#[test]
fn go_notary_key_list_reads_keys_we_write() {
    let trust = tempfile::tempdir().unwrap();
    let gun = Gun::new("example.com/interop/keys").unwrap();
    let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let deleg = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    write_key(trust.path(), &root, "root", None, ENV[0].1);
    write_key(trust.path(), &targets, "targets", Some(&gun), ENV[1].1);
    write_key(trust.path(), &deleg, "targets/releases", None, ENV[3].1);
    let out = ok(
        go_notary(trust.path(), "http://127.0.0.1:9", &["key", "list"], &ENV),
        "notary key list",
    );
    for (key, role) in [
        (&root, "root"),
        (&targets, "targets"),
        (&deleg, "targets/releases"),
    ] {
        let id = key.public().key_id().to_string();
        let line = out
            .lines()
            .find(|l| l.contains(&id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"));
        assert!(line.split_whitespace().next() == Some(role), "{line}");
    }
    assert!(out.lines().any(|l| l.contains(&targets.public().key_id().to_string()) && l.contains(gun.as_str())));
}

/// A [`Remote`] over HTTP via curl, for reading what the Go server stores.
struct CurlRemote {
    base: String,
}

#[derive(Debug)]
struct HttpError(u16);
impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.0)
    }
}
impl std::error::Error for HttpError {}

impl Remote for CurlRemote {
    type Error = HttpError;
    async fn fetch(&mut self, req: &FetchRequest) -> Result<Option<Vec<u8>>, HttpError> {
        match http_get(&format!("{}{}", self.base, req.file_name())) {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (code, _) => Err(HttpError(code)),
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[test]
fn go_server_and_client_accept_repository_we_create() {
    let server = GoNotaryServer::start();
    let gun = Gun::new("example.com/interop/repo").unwrap();
    let base = format!("{}/v2/{gun}/_trust/tuf/", server.url);

    // The server's timestamp key (its local trust service uses Ed25519).
    let (code, body) = http_get(&format!("{base}timestamp.key"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let ts_key: PublicKey = serde_json::from_slice(&body).unwrap();

    let root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let targets = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let snapshot = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let mut editor = RepoEditor::create(
        gun.clone(),
        &root,
        targets.public().clone(),
        snapshot.public().clone(),
        ts_key,
        now,
    )
    .unwrap();
    let payload = b"hello from notary-rs\n";
    editor
        .add_target(&RoleName::targets(), "v1.0", FileMeta::from_bytes(payload))
        .unwrap();
    editor
        .add_target(
            &RoleName::targets(),
            "html<&>name/ünï",
            FileMeta::from_bytes(b"x"),
        )
        .unwrap();
    let keys = [root, targets, snapshot];
    let signed = editor.sign(&KeyRing::from_keys(&keys), now).unwrap();
    let parts: Vec<(String, Vec<u8>)> = signed
        .files
        .iter()
        .map(|(r, b)| (r.to_string(), b.clone()))
        .collect();
    assert_eq!(parts.len(), 3, "root, targets, snapshot");
    let (code, body) = http_post_files(&base, &parts);
    assert_eq!(code, 200, "Go notary-server refused our upload: {body}");
    // The server serves our bytes unchanged and has generated a timestamp over them.
    for (role, bytes) in &parts {
        assert_eq!(
            &http_get(&format!("{base}{role}.json")).1,
            bytes,
            "{role}.json"
        );
    }

    // The Go client lists the repository with trust on first use, using our key files.
    let trust = tempfile::tempdir().unwrap();
    let [root, targets, snapshot] = keys;
    write_key(trust.path(), &root, "root", None, ENV[0].1);
    write_key(trust.path(), &targets, "targets", Some(&gun), ENV[1].1);
    write_key(trust.path(), &snapshot, "snapshot", Some(&gun), ENV[2].1);
    let listing = ok(
        go_notary(trust.path(), &server.url, &["list", gun.as_str()], &ENV),
        "notary list",
    );
    assert!(
        listing.contains("v1.0") && listing.contains("html<&>name/ünï"),
        "{listing}"
    );

    // The Go client signs with our key files and publishes; we verify the result.
    let file = trust.path().join("payload2");
    std::fs::write(&file, b"second payload").unwrap();
    ok(
        go_notary(
            trust.path(),
            &server.url,
            &["add", "-p", gun.as_str(), "v2.0", file.to_str().unwrap()],
            &ENV,
        ),
        "notary add -p",
    );
    let mut remote = CurlRemote { base };
    let repo =
        block_on(Updater::new(gun, time::OffsetDateTime::now_utc()).update(&mut remote)).unwrap();
    let names: BTreeMap<&str, u64> = repo
        .list()
        .iter()
        .map(|e| (e.name, e.meta.length))
        .collect();
    assert_eq!(names.get("v2.0"), Some(&14));
    assert_eq!(names.get("v1.0"), Some(&(payload.len() as u64)));
    assert_eq!(repo.role(&RoleName::targets()).unwrap().metadata.version, 2);
}

#[test]
fn go_client_trusts_our_root_cert_and_reads_fixture_keys_we_reencrypt() {
    // A fixture key decrypted and re-encrypted by us with a new passphrase is still read by Go.
    let pem = std::fs::read(notary_tests::fixtures().join(
        "client-trust/private/b99a12aea23aa4bfb4f3266f73644420f0e9385c42ee9713e2491b520247d5e8.key",
    ))
    .unwrap();
    let kf = KeyFile::decode(&pem, Some("root-passphrase-1")).unwrap();
    let trust = tempfile::tempdir().unwrap();
    write_key(trust.path(), &kf.key, &kf.role, None, ENV[0].1);
    let out = ok(
        go_notary(trust.path(), "http://127.0.0.1:9", &["key", "list"], &ENV),
        "notary key list",
    );
    assert!(
        out.contains("b99a12aea23aa4bfb4f3266f73644420f0e9385c42ee9713e2491b520247d5e8"),
        "{out}"
    );
    // Go can export it again with the new passphrase (proves it decrypts our PBES2 file).
    let export = trust.path().join("exported.pem");
    ok(
        go_notary(
            trust.path(),
            "http://127.0.0.1:9",
            &[
                "key",
                "export",
                "--key",
                "b99a12aea23aa4bfb4f3266f73644420f0e9385c42ee9713e2491b520247d5e8",
                "-o",
                export.to_str().unwrap(),
            ],
            &ENV,
        ),
        "notary key export",
    );
    let back = KeyFile::decode(&std::fs::read(&export).unwrap(), Some(ENV[0].1)).unwrap();
    assert_eq!(back.key.public(), kf.key.public());
}
