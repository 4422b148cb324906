//! Attacks from the security review, one named test each: every test reproduces the
//! attack and fails without its defence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{NOW, TestRepo, sign_with};
use notary_core::crypto::counters;
use notary_core::metadata::Root;
use notary_core::metadata::{
    DelegationRole, Delegations, FileMeta, RoleKeys, RoleMetadata, Signed, Snapshot, Targets,
    Timestamp,
};
use notary_core::update::{Cache, UpdateError};
use notary_core::verify::TrustPinning;
use notary_core::verify::{self, VerifyError};
use notary_core::{
    Algorithm, Gun, KeyId, KeyType, PrivateKey, PublicKey, Repository, RoleName, SigMethod, Signer,
    Updater,
};
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

// ---- Defect 5: CPU burnt by one upload ----------------------------------------------

fn gun() -> Gun {
    Gun::new(common::GUN).unwrap()
}

/// The root-role certificate key ID and key of a test repository's root.
fn root_cert(root: &Root) -> (KeyId, PublicKey) {
    let id = root.roles["root"].keyids[0].clone();
    let key = root.keys[&id].clone();
    (id, key)
}

/// `root.json` with 60 000 copies of its valid signature entry (about 9 MB).
fn root_flood(repo: &TestRepo) -> Vec<u8> {
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let sig = root.signatures()[0].clone();
    let flood = Signed::from_parts(root.signed().clone(), vec![sig; 60_000])
        .unwrap()
        .into_file_bytes();
    assert!(flood.len() > 8 << 20, "{}", flood.len());
    flood
}

#[test]
fn root_signature_flood_is_refused_before_any_verification() {
    let repo = TestRepo::new();
    let trusted = verify::verify_root(
        Signed::<Root>::parse(repo.file("root")).unwrap(),
        &gun(),
        None,
        &TrustPinning::default(),
        NOW,
    )
    .unwrap();
    let flood = Signed::<Root>::parse(root_flood(&repo)).unwrap();
    // First use, and rotation from a trusted root: both paths refuse by counting.
    for prev in [None, Some(&trusted)] {
        counters::reset();
        let err = verify::verify_root(flood.clone(), &gun(), prev, &TrustPinning::default(), NOW)
            .unwrap_err();
        let work = counters::get();
        assert!(
            matches!(err, VerifyError::TooManySignatures { count: 60_000, .. }),
            "{err}"
        );
        assert_eq!(work.verifications, 0, "{work:?}");
        assert!(work.key_ids <= 8, "{work:?}");
        assert!(work.cert_decodes <= 8, "{work:?}");
    }
}

#[test]
fn signature_entries_of_a_counted_key_are_skipped() {
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let sig = root.signatures()[0].clone();
    // Ten entries for one key, within the cap: verified once, identity computed once.
    let ten = Signed::from_parts(root.signed().clone(), vec![sig; 10]).unwrap();
    counters::reset();
    verify::verify_root(ten, &gun(), None, &TrustPinning::default(), NOW).unwrap();
    let work = counters::get();
    assert_eq!(work.verifications, 1, "{work:?}");
    assert!(work.key_ids <= 2, "{work:?}");
    assert!(work.cert_decodes <= 4, "{work:?}");
}

#[test]
fn targets_signature_flood_through_the_update_engine_is_refused() {
    let mut repo = TestRepo::new();
    let t = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    let sig = t.signatures()[0].clone();
    let flood = Signed::from_parts(t.signed().clone(), vec![sig; 60_000])
        .unwrap()
        .into_file_bytes();
    put_and_rechain(&mut repo, &[(RoleName::targets(), flood.clone())]);
    counters::reset();
    let (file, err) = verify_err(repo.update());
    let work = counters::get();
    assert!(file.starts_with("targets."), "{file}");
    assert!(
        matches!(&err, VerifyError::TooManySignatures { role, count: 60_000, .. } if role == "targets"),
        "{err}"
    );
    // Root, timestamp and snapshot (twice: the engine retries after a root refresh).
    assert!(work.verifications <= 8, "{work:?}");
    // The same check guards notary-server's upload validation (verify_role).
    let r = Signed::<Root>::parse(repo.file("root")).unwrap();
    let parsed = Signed::<Targets>::parse(flood).unwrap();
    counters::reset();
    let err = verify::verify_role(
        parsed,
        &RoleName::targets(),
        &r.signed().keys,
        &r.signed().roles["targets"],
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::TooManySignatures { .. }),
        "{err}"
    );
    assert_eq!(counters::get().verifications, 0);
}

/// A root whose only root-role key is `cert`, signed by the repository's root key.
fn root_with_cert(repo: &TestRepo, cert: PublicKey) -> Vec<u8> {
    root_with_cert_entries(repo, cert, 1)
}

/// The same with `entries` copies of the signature entry.
fn root_with_cert_entries(repo: &TestRepo, cert: PublicKey, entries: usize) -> Vec<u8> {
    let mut r = Signed::<Root>::parse(repo.file("root"))
        .unwrap()
        .into_signed();
    let (old_id, _) = root_cert(&r);
    r.keys.remove(&old_id);
    let id = cert.key_id();
    r.keys.insert(id.clone(), cert);
    r.roles.insert(
        "root".into(),
        RoleKeys {
            keyids: vec![id.clone()],
            threshold: 1,
        },
    );
    let one = Signed::sign(r, &[(id, &repo.root as &dyn Signer)]).unwrap();
    let sig = one.signatures()[0].clone();
    Signed::from_parts(one.into_signed(), vec![sig; entries])
        .unwrap()
        .into_file_bytes()
}

#[test]
fn padded_certificate_key_is_refused_at_parse() {
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let (_, cert) = root_cert(root.signed());
    // 6 MB of text after the certificate block.
    let mut pem = cert.public_bytes().to_vec();
    pem.extend(b"padding padding padding padding\n".repeat(6 << 20 >> 5));
    let padded = PublicKey::new(KeyType::EcdsaX509, pem);
    let file = root_with_cert(&repo, padded);
    assert!(file.len() > 6 << 20);
    counters::reset();
    let err = Signed::<Root>::parse(file).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert_eq!(counters::get(), counters::Counts::default());
}

#[test]
fn certificate_key_with_text_around_the_pem_block_is_refused() {
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let (_, cert) = root_cert(root.signed());
    let pem = std::str::from_utf8(cert.public_bytes()).unwrap();
    for junk in [format!("hello\n{pem}"), format!("{pem}trailing text\n")] {
        let key = PublicKey::new(KeyType::EcdsaX509, junk.into_bytes());
        assert!(key.canonical_id().is_err());
        let file = root_with_cert(&repo, key);
        let parsed = Signed::<Root>::parse(file).unwrap();
        let err =
            verify::verify_root(parsed, &gun(), None, &TrustPinning::default(), NOW).unwrap_err();
        assert!(matches!(err, VerifyError::NoValidRootCerts(_)), "{err}");
    }
    // Whitespace around the block is not junk.
    let spaced = PublicKey::new(KeyType::EcdsaX509, format!("\n{pem}\n").into_bytes());
    assert_eq!(spaced.canonical_id().unwrap(), cert.canonical_id().unwrap());
}

/// DER SubjectPublicKeyInfo of an RSA key with a `bits`-bit modulus (not a real key).
fn rsa_spki(bits: usize) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = body.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let b = len.to_be_bytes();
            let skip = b.iter().take_while(|x| **x == 0).count();
            out.push(0x80 | (b.len() - skip) as u8);
            out.extend_from_slice(&b[skip..]);
        }
        out.extend_from_slice(body);
        out
    }
    let mut n = vec![0u8];
    n.extend(std::iter::repeat_n(0xC5u8, bits / 8));
    let mut pkcs1 = tlv(0x02, &n);
    pkcs1.extend(tlv(0x02, &[1, 0, 1]));
    let pkcs1 = tlv(0x30, &pkcs1);
    let mut alg = tlv(
        0x06,
        &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01],
    );
    alg.extend([0x05, 0x00]);
    let mut body = tlv(0x30, &alg);
    let mut bits_body = vec![0u8];
    bits_body.extend(pkcs1);
    body.extend(tlv(0x03, &bits_body));
    tlv(0x30, &body)
}

#[test]
fn rsa_key_above_4096_bits_is_refused_before_any_arithmetic() {
    let big = PublicKey::new(KeyType::Rsa, rsa_spki(8192));
    let err = big
        .verify(&SigMethod::RsaPss, b"m", &[1u8; 1024])
        .unwrap_err();
    assert!(err.to_string().contains("4096"), "{err}");
    // 4096 bits is still usable (the signature is simply wrong).
    let ok = PublicKey::new(KeyType::Rsa, rsa_spki(4096));
    assert!(matches!(
        ok.verify(&SigMethod::RsaPss, b"m", &[1u8; 512]),
        Err(notary_core::crypto::SignatureError::Invalid)
    ));
}

// ---- Defect 9: one key, two encodings ----------------------------------------------

/// The same P-256 SubjectPublicKeyInfo with a non-minimal outer length (`30 81 59`).
fn non_minimal(spki: &[u8]) -> Vec<u8> {
    assert_eq!(spki[..2], [0x30, 0x59]);
    let mut v = vec![0x30, 0x81, 0x59];
    v.extend_from_slice(&spki[2..]);
    v
}

/// The same key with a NULL after the curve OID.
fn extra_null(spki: &[u8]) -> Vec<u8> {
    assert_eq!(spki[..4], [0x30, 0x59, 0x30, 0x13]);
    let mut v = vec![0x30, 0x5B, 0x30, 0x15];
    v.extend_from_slice(&spki[4..4 + 0x13]);
    v.extend([0x05, 0x00]);
    v.extend_from_slice(&spki[4 + 0x13..]);
    v
}

#[test]
fn one_key_in_two_der_encodings_counts_once_toward_a_threshold() {
    let repo = TestRepo::new();
    let plain = repo.targets.public().public_bytes().to_vec();
    for variant in [non_minimal(&plain), extra_null(&plain)] {
        let a = PublicKey::new(KeyType::Ecdsa, plain.clone());
        let b = PublicKey::new(KeyType::Ecdsa, variant);
        assert_ne!(a.key_id(), b.key_id());
        // A root listing the key twice for `targets`, threshold 2.
        let mut r = Signed::<Root>::parse(repo.file("root"))
            .unwrap()
            .into_signed();
        r.keys.insert(a.key_id(), a.clone());
        r.keys.insert(b.key_id(), b.clone());
        r.roles.insert(
            "targets".into(),
            RoleKeys {
                keyids: vec![a.key_id(), b.key_id()],
                threshold: 2,
            },
        );
        let (cert_id, _) = root_cert(&r);
        let root = Signed::sign(r, &[(cert_id, &repo.root as &dyn Signer)]).unwrap();
        let root = verify::verify_root(root, &gun(), None, &TrustPinning::default(), NOW).unwrap();
        // One signature entry per key ID, both made by the one private key.
        let t = Signed::<Targets>::parse(repo.file("targets"))
            .unwrap()
            .into_signed();
        let t = Signed::sign(
            t,
            &[
                (a.key_id(), &repo.targets as &dyn Signer),
                (b.key_id(), &repo.targets),
            ],
        )
        .unwrap();
        let err = verify::verify_role(t, &RoleName::targets(), &root.keys, &root.roles["targets"])
            .unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Threshold {
                    valid: 1,
                    threshold: 2,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn one_root_key_in_two_certificate_encodings_counts_once() {
    // The root role only counts certificates: the second one carries the same key with a
    // non-minimal SubjectPublicKeyInfo length (its own signature is not checked by TUF).
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let (cert_id, cert) = root_cert(root.signed());
    let der = notary_core::x509::parse_pem_bundle(cert.public_bytes()).unwrap()[0].clone();
    let spki = repo.root.public().public_bytes().to_vec();
    let at = der
        .windows(spki.len())
        .position(|w| w == spki.as_slice())
        .unwrap();
    let mut twin = der[..at].to_vec();
    twin.extend(non_minimal(&spki));
    twin.extend_from_slice(&der[at + spki.len()..]);
    // Certificate and TBSCertificate headers are `30 82 hi lo`: one byte longer each.
    for off in [0, 4] {
        assert_eq!(twin[off..off + 2], [0x30, 0x82]);
        let len = u16::from_be_bytes([twin[off + 2], twin[off + 3]]) + 1;
        twin[off + 2..off + 4].copy_from_slice(&len.to_be_bytes());
    }
    let twin = PublicKey::new(
        KeyType::EcdsaX509,
        notary_core::x509::to_pem(&[twin]).into_bytes(),
    );
    let mut r = root.signed().clone();
    r.keys.insert(twin.key_id(), twin.clone());
    r.roles.insert(
        "root".into(),
        RoleKeys {
            keyids: vec![cert_id.clone(), twin.key_id()],
            threshold: 2,
        },
    );
    let signed = Signed::sign(
        r,
        &[
            (cert_id, &repo.root as &dyn Signer),
            (twin.key_id(), &repo.root),
        ],
    )
    .unwrap();
    let err = verify::verify_root(signed, &gun(), None, &TrustPinning::default(), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Threshold {
                valid: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

/// Wall time of parsing and verifying the flood inputs, printed, never asserted:
/// `cargo test --release -p notary-core --test attacks -- --ignored --nocapture`.
#[test]
#[ignore = "timing report, run in release mode"]
fn flood_inputs_wall_time() {
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let mut bad = root.signatures()[0].clone();
    bad.sig.0[10] ^= 1;
    let invalid = Signed::from_parts(root.signed().clone(), vec![bad; 60_000])
        .unwrap()
        .into_file_bytes();
    let (_, cert) = root_cert(root.signed());
    let mut pem = cert.public_bytes().to_vec();
    pem.extend(b"padding padding padding padding\n".repeat(6 << 20 >> 5));
    let padded = PublicKey::new(KeyType::EcdsaX509, pem);
    let padded_root = root_with_cert(&repo, padded.clone());
    let padded_1000 = root_with_cert_entries(&repo, padded, 1000);
    for (what, file) in [
        ("root, 60 000 copies of a valid entry", root_flood(&repo)),
        ("root, 60 000 invalid entries for one key", invalid),
        ("root, 6 MB padded certificate key, 1 entry", padded_root),
        (
            "root, 6 MB padded certificate key, 1 000 entries",
            padded_1000,
        ),
    ] {
        let len = file.len();
        counters::reset();
        let start = std::time::Instant::now();
        let outcome = Signed::<Root>::parse(file)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                verify::verify_root(p, &gun(), None, &TrustPinning::default(), NOW)
                    .map(|_| "verified".to_owned())
                    .map_err(|e| e.to_string())
            });
        let elapsed = start.elapsed();
        let outcome = outcome.unwrap_or_else(|e| format!("refused: {e}"));
        eprintln!(
            "{what} ({len} bytes): {elapsed:?}, {:?}, {}",
            counters::get(),
            outcome.chars().take(120).collect::<String>()
        );
    }
}
