//! Attacks from the security review, one named test each: every test reproduces the
//! attack and fails without its defence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{NOW, TestRepo, sign_with};
use notary_core::metadata::{
    DelegationRole, Delegations, FileMeta, RoleKeys, RoleMetadata, Signed, Snapshot, Targets,
    Timestamp,
};
use notary_core::update::{Cache, UpdateError};
use notary_core::verify::{self, VerifyError};
use notary_core::{Algorithm, Gun, PrivateKey, Repository, RoleName, Updater};
use time::Duration;

fn role(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

fn verify_err(r: Result<Repository, UpdateError>) -> (String, VerifyError) {
    match r {
        Err(UpdateError::Verify { file, source }) => (file, source),
        Err(other) => panic!("expected a verification error, got: {other}"),
        Ok(_) => panic!("expected a verification error, got a verified repository"),
    }
}

/// What the CLI caches after a successful update: every file, delegations included.
fn cache_of(repo: &Repository) -> Cache {
    Cache {
        root: Some(repo.root().file_bytes().to_vec()),
        timestamp: Some(repo.timestamp().file_bytes().to_vec()),
        snapshot: Some(repo.snapshot().file_bytes().to_vec()),
        targets: repo
            .roles()
            .map(|(r, l)| (r.clone(), l.metadata.file_bytes().to_vec()))
            .collect(),
    }
}

fn updater() -> Updater {
    Updater::new(Gun::new(common::GUN).unwrap(), NOW)
}

/// Stores `files` and re-signs snapshot and timestamp over them (what a server holding
/// the snapshot and timestamp keys, docker's default, can do).
fn put_and_rechain(repo: &mut TestRepo, files: &[(RoleName, Vec<u8>)]) {
    let sn = Signed::<Snapshot>::parse(repo.file("snapshot")).unwrap();
    let mut s = sn.signed().clone();
    for (r, bytes) in files {
        repo.remote
            .files
            .insert(common::file_name(r), bytes.clone());
        s.meta.insert(r.to_string(), FileMeta::from_bytes(bytes));
    }
    let (v, e) = (s.version() + 1, *s.expires());
    s.set_version_expires(v, e);
    let sn = sign_with(s, &[&repo.snapshot]);
    repo.remote.files.insert("snapshot.json".into(), sn.clone());
    let ts = Signed::<Timestamp>::parse(repo.file("timestamp")).unwrap();
    let mut t = ts.signed().clone();
    t.meta.insert("snapshot".into(), FileMeta::from_bytes(&sn));
    let (v, e) = (t.version() + 1, *t.expires());
    t.set_version_expires(v, e);
    let ts = sign_with(t, &[&repo.timestamp]);
    repo.remote.files.insert("timestamp.json".into(), ts);
}

fn key() -> PrivateKey {
    PrivateKey::generate(Algorithm::EcdsaP256).unwrap()
}

// ---- Defect 2: targets rollback under a fresh snapshot and timestamp ----------------

#[test]
fn targets_rollback_under_fresh_snapshot_is_refused() {
    let mut repo = TestRepo::new();
    repo.editor
        .add_target(&RoleName::targets(), "app", FileMeta::from_bytes(b"old"))
        .unwrap();
    repo.publish(&[]);
    let old_targets = repo.file("targets");
    repo.editor
        .add_target(&RoleName::targets(), "app", FileMeta::from_bytes(b"new"))
        .unwrap();
    repo.publish(&[]);
    let newer = repo.update().unwrap();
    let trusted = newer.role(&RoleName::targets()).unwrap().metadata.version;
    let old_version = Signed::<Targets>::parse(old_targets.clone())
        .unwrap()
        .signed()
        .version;
    assert!(old_version < trusted);
    // Validly signed, unexpired, older targets under a fresh snapshot and timestamp.
    put_and_rechain(&mut repo, &[(RoleName::targets(), old_targets)]);
    let (file, err) = verify_err(repo.update_with(updater().cache(cache_of(&newer))));
    assert!(file.starts_with("targets."), "{file}");
    assert!(
        matches!(&err, VerifyError::Rollback { role, trusted: t, new, .. }
            if role == "targets" && *t == trusted && *new == old_version),
        "{err}"
    );
}

#[test]
fn delegation_rollback_under_fresh_snapshot_is_refused() {
    let mut repo = TestRepo::new();
    let releases = role("targets/releases");
    let dkey = key();
    repo.editor
        .add_delegation(
            &releases,
            vec![dkey.public().clone()],
            vec![String::new()],
            1,
        )
        .unwrap();
    repo.editor
        .add_target(&releases, "app", FileMeta::from_bytes(b"old"))
        .unwrap();
    repo.publish(&[&dkey]);
    let old = repo.file("targets/releases");
    repo.editor
        .add_target(&releases, "app", FileMeta::from_bytes(b"new"))
        .unwrap();
    repo.publish(&[&dkey]);
    let newer = repo.update().unwrap();
    assert_eq!(
        newer.lookup("app").unwrap().meta,
        &FileMeta::from_bytes(b"new")
    );
    put_and_rechain(&mut repo, &[(releases.clone(), old)]);
    let (file, err) = verify_err(repo.update_with(updater().cache(cache_of(&newer))));
    assert!(file.starts_with("targets/releases."), "{file}");
    assert!(
        matches!(&err, VerifyError::Rollback { role, .. } if role == "targets/releases"),
        "{err}"
    );
}

// ---- Defect 3: delegation failures other than expiry/threshold abort ----------------

/// Two delegations that both sign `app` with different digests; `targets/a` wins.
fn two_delegations() -> (TestRepo, PrivateKey, PrivateKey) {
    let mut repo = TestRepo::new();
    let (ka, kb) = (key(), key());
    for (name, k, body) in [("targets/a", &ka, b"from-a"), ("targets/b", &kb, b"from-b")] {
        repo.editor
            .add_delegation(
                &role(name),
                vec![k.public().clone()],
                vec![String::new()],
                1,
            )
            .unwrap();
        repo.editor
            .add_target(&role(name), "app", FileMeta::from_bytes(body))
            .unwrap();
    }
    repo.publish(&[&ka, &kb]);
    let ok = repo.update().unwrap();
    assert_eq!(ok.lookup("app").unwrap().role.as_str(), "targets/a");
    (repo, ka, kb)
}

#[test]
fn delegation_hash_mismatch_aborts_instead_of_letting_a_sibling_win() {
    let (mut repo, _, _) = two_delegations();
    // Same length, one byte changed: the snapshot's hash no longer matches.
    let mut bad = repo.file("targets/a");
    let i = bad.len() - 3;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    repo.remote.files.insert("targets/a.json".into(), bad);
    let (file, err) = verify_err(repo.update());
    assert!(file.starts_with("targets/a."), "{file}");
    assert!(matches!(err, VerifyError::Meta { .. }), "{err}");
}

#[test]
fn delegation_with_bad_structure_aborts_instead_of_letting_a_sibling_win() {
    let (mut repo, ka, _) = two_delegations();
    // Validly signed and listed, but delegating to a role that is not its child.
    let mut t = Signed::<Targets>::parse(repo.file("targets/a"))
        .unwrap()
        .into_signed();
    t.delegations
        .keys
        .insert(ka.public().key_id(), ka.public().clone());
    t.delegations.roles.push(DelegationRole {
        keyids: vec![ka.public().key_id()],
        name: role("targets/b/x"),
        paths: vec![String::new()],
        threshold: 1,
    });
    t.version += 1;
    put_and_rechain(&mut repo, &[(role("targets/a"), sign_with(t, &[&ka]))]);
    let (_, err) = verify_err(repo.update());
    assert!(matches!(err, VerifyError::Structure { .. }), "{err}");
}

#[test]
fn expired_or_under_threshold_delegation_is_skipped_with_a_warning() {
    let (mut repo, ka, kb) = two_delegations();
    let mut t = Signed::<Targets>::parse(repo.file("targets/a"))
        .unwrap()
        .into_signed();
    let e = notary_core::Expires::new(NOW - Duration::days(1)).unwrap();
    let v = t.version + 1;
    t.set_version_expires(v, e);
    put_and_rechain(
        &mut repo,
        &[(role("targets/a"), sign_with(t.clone(), &[&ka]))],
    );
    let r = repo.update().unwrap();
    assert_eq!(r.lookup("app").unwrap().role.as_str(), "targets/b");
    assert!(
        r.warnings().iter().any(|w| w.contains("targets/a")),
        "{:?}",
        r.warnings()
    );
    // Signed by the wrong key: below threshold, skipped too (Go: ErrRoleThreshold).
    let mut t2 = Signed::<Targets>::parse(repo.file("targets/b"))
        .unwrap()
        .into_signed();
    t2.version += 1;
    put_and_rechain(&mut repo, &[(role("targets/b"), sign_with(t2, &[&ka]))]);
    let r = repo.update().unwrap();
    assert!(r.lookup("app").is_none());
    assert!(
        r.warnings().iter().any(|w| w.contains("targets/b")),
        "{:?}",
        r.warnings()
    );
    let _ = kb;
}

// ---- Defect 4: duplicated delegations -----------------------------------------------

/// `targets` → `targets/a` → `targets/a/a` → … `depth` levels, each parent listing its
/// child twice.
fn duplicated_chain(repo: &mut TestRepo, depth: usize, dkey: &PrivateKey) {
    let mut files = Vec::new();
    let mut name = String::from("targets");
    for level in 0..=depth {
        let child = format!("{name}/a");
        let mut t = Targets::new(notary_core::Expires::new(NOW + Duration::days(30)).unwrap());
        t.version = 2;
        if level < depth {
            let d = DelegationRole {
                keyids: vec![dkey.public().key_id()],
                name: role(&child),
                paths: vec![String::new()],
                threshold: 1,
            };
            t.delegations = Delegations {
                keys: [(dkey.public().key_id(), dkey.public().clone())].into(),
                roles: vec![d.clone(), d],
            };
        }
        t.targets
            .insert(format!("t{level}"), FileMeta::from_bytes(b"x"));
        let signer = if level == 0 { &repo.targets } else { dkey };
        files.push((role(&name), sign_with(t, &[signer])));
        name = child;
    }
    put_and_rechain(repo, &files);
}

#[test]
fn duplicated_delegations_are_refused_at_once() {
    let mut repo = TestRepo::new();
    let dkey = key();
    duplicated_chain(&mut repo, 12, &dkey);
    repo.remote.requests.clear();
    let (file, err) = verify_err(repo.update());
    assert!(file.starts_with("targets."), "{file}");
    assert!(
        matches!(&err, VerifyError::Structure { reason, .. } if reason.contains("more than once")),
        "{err}"
    );
    // root, timestamp, snapshot, targets, then the one retry after a root refresh
    // (spec §10.2 step 5): nothing below `targets` is fetched (before the fix the update
    // succeeded after fetching every one of the 2^13 - 1 paths).
    assert!(
        repo.remote.requests.len() <= 8,
        "{:?}",
        repo.remote.requests
    );
    assert!(
        repo.remote
            .requests
            .iter()
            .all(|r| !r.starts_with("targets/")),
        "{:?}",
        repo.remote.requests
    );
}

#[test]
fn duplicated_delegation_names_fail_structural_validation() {
    // What notary-server's upload validation relies on.
    let mut repo = TestRepo::new();
    let dkey = key();
    duplicated_chain(&mut repo, 1, &dkey);
    let parsed = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    let r = Signed::<notary_core::Root>::parse(repo.file("root")).unwrap();
    let auth: RoleKeys = r.signed().roles["targets"].clone();
    let err =
        verify::verify_role(parsed, &RoleName::targets(), &r.signed().keys, &auth).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Structure { reason, .. } if reason.contains("more than once")),
        "{err}"
    );
}
