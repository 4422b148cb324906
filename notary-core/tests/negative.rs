//! Each way metadata must be refused, one named test each.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{NOW, TestRepo, sign_with};
use notary_core::metadata::{
    Bytes, FileMeta, HashError, RoleKeys, RoleMetadata, Root, Signature, Signed, Targets,
};
use notary_core::repo::{EditError, Expiries};
use notary_core::update::{Cache, UpdateError};
use notary_core::verify::{self, TrustPinning, VerifyError};
use notary_core::{Algorithm, Gun, KeyId, PrivateKey, PublicKey, RoleName, Signer};
use time::Duration;

fn verify_err(r: Result<notary_core::Repository, UpdateError>) -> (String, VerifyError) {
    match r {
        Err(UpdateError::Verify { file, source }) => (file, source),
        Err(other) => panic!("expected a verification error, got: {other}"),
        Ok(_) => panic!("expected a verification error, got a verified repository"),
    }
}

#[test]
fn sanity_built_repository_verifies() {
    let mut repo = TestRepo::new();
    repo.editor
        .add_target(&RoleName::targets(), "v1", FileMeta::from_bytes(b"payload"))
        .unwrap();
    repo.publish(&[]);
    let verified = repo.update().unwrap();
    assert_eq!(verified.lookup("v1").unwrap().meta.length, 7);
    for f in ["root", "targets", "snapshot", "timestamp"] {
        assert!(repo.remote.files.contains_key(&format!("{f}.json")));
    }
}

#[test]
fn tampered_signature() {
    let mut repo = TestRepo::new();
    let t = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    let mut sigs = t.signatures().to_vec();
    sigs[0].sig.0[10] ^= 0x01;
    let tampered = Signed::from_parts(t.signed().clone(), sigs)
        .unwrap()
        .into_file_bytes();
    repo.replace_and_rechain("targets", tampered);
    let (file, err) = verify_err(repo.update());
    assert!(file.starts_with("targets."), "{file}");
    assert!(
        matches!(
            err,
            VerifyError::Threshold {
                valid: 0,
                threshold: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn signature_by_key_not_in_role() {
    let mut repo = TestRepo::new();
    let t = Signed::<Targets>::parse(repo.file("targets"))
        .unwrap()
        .into_signed();
    // Validly signed, but by the snapshot key, which root does not authorise for targets.
    let bytes = sign_with(t, &[&repo.snapshot]);
    repo.replace_and_rechain("targets", bytes);
    let (_, err) = verify_err(repo.update());
    assert!(
        matches!(err, VerifyError::Threshold { valid: 0, .. }),
        "{err}"
    );
}

#[test]
fn threshold_not_met() {
    let mut repo = TestRepo::new();
    let extra = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    // Root now asks for two targets signatures; only the original key signs.
    let ring_keys = vec![repo.targets.public().clone(), extra.public().clone()];
    repo.editor
        .rotate_base_role(&RoleName::targets(), ring_keys)
        .unwrap();
    repo.publish(&[]);
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let mut r = root.signed().clone();
    r.roles.get_mut("targets").unwrap().threshold = 2;
    let v = r.version();
    let e = *r.expires();
    r.set_version_expires(v, e);
    let cert_id = r.roles["root"].keyids[0].clone();
    let root_bytes = Signed::sign(r, &[(cert_id, &repo.root as &dyn Signer)])
        .unwrap()
        .into_file_bytes();
    repo.replace_and_rechain("root", root_bytes);
    let (file, err) = verify_err(repo.update());
    assert!(file.starts_with("targets"), "{file}");
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

#[test]
fn duplicate_key_threshold_bypass() {
    // The same signature twice, and the same key listed under its certificate ID and
    // its plain ID: each counts once toward a threshold of two.
    let repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let cert_id = root.signed().roles["root"].keyids[0].clone();
    let cert_key = root.signed().keys[&cert_id].clone();
    let plain = repo.root.public().clone();
    let mut r = root.signed().clone();
    r.keys.insert(plain.key_id(), plain.clone());
    r.roles.insert(
        "root".into(),
        RoleKeys {
            keyids: vec![cert_id.clone(), plain.key_id()],
            threshold: 2,
        },
    );
    let signed = Signed::sign(
        r.clone(),
        &[
            (cert_id.clone(), &repo.root as &dyn Signer),
            (plain.key_id(), &repo.root),
        ],
    )
    .unwrap();
    assert_eq!(cert_key.canonical_id().unwrap(), plain.key_id());
    let gun = Gun::new(common::GUN).unwrap();
    let err = verify::verify_root(signed, &gun, None, &TrustPinning::default(), NOW).unwrap_err();
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

    let t = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    let mut sigs = t.signatures().to_vec();
    sigs.push(sigs[0].clone());
    let doubled = Signed::from_parts(t.signed().clone(), sigs).unwrap();
    let auth = RoleKeys {
        keyids: vec![repo.targets.public().key_id()],
        threshold: 2,
    };
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(
        repo.targets.public().key_id(),
        repo.targets.public().clone(),
    );
    assert_eq!(verify::count_valid(&doubled, &keys, &auth.keyids), 1);
    let err = verify::verify_role(doubled, &RoleName::targets(), &keys, &auth).unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { valid: 1, .. }),
        "{err}"
    );
}

#[test]
fn expired_role() {
    let expiries = Expiries {
        timestamp: Duration::seconds(-1),
        ..Expiries::default()
    };
    let mut repo = TestRepo::with_expiries(expiries);
    let (file, err) = verify_err(repo.update());
    assert_eq!(file, "timestamp.json");
    assert!(matches!(err, VerifyError::Expired { .. }), "{err}");

    let expiries = Expiries {
        targets: Duration::days(-1),
        ..Expiries::default()
    };
    let mut repo = TestRepo::with_expiries(expiries);
    let (_, err) = verify_err(repo.update());
    assert!(
        matches!(&err, VerifyError::Expired { role, .. } if role == "targets"),
        "{err}"
    );
}

#[test]
fn rolled_back_version() {
    let mut repo = TestRepo::new();
    let old_remote = repo.remote.clone();
    repo.editor
        .add_target(&RoleName::targets(), "v2", FileMeta::from_bytes(b"two"))
        .unwrap();
    repo.publish(&[]);
    let newer = repo.update().unwrap();
    // The client has seen the newer timestamp and snapshot; the server now serves older ones.
    let cache = Cache {
        root: Some(newer.root().file_bytes().to_vec()),
        timestamp: Some(newer.timestamp().file_bytes().to_vec()),
        snapshot: Some(newer.snapshot().file_bytes().to_vec()),
        ..Cache::default()
    };
    repo.remote = old_remote;
    let updater = notary_core::Updater::new(Gun::new(common::GUN).unwrap(), NOW).cache(cache);
    let (file, err) = verify_err(repo.update_with(updater));
    assert_eq!(file, "timestamp.json");
    assert!(
        matches!(
            err,
            VerifyError::Rollback {
                trusted: 2,
                new: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn snapshot_hash_and_length_mismatch() {
    let mut repo = TestRepo::new();
    let good = repo.file("snapshot");
    // Same length, different bytes: the hash check fails.
    let mut tampered = good.clone();
    let pos = tampered.len() - 10;
    tampered[pos] = if tampered[pos] == b'A' { b'B' } else { b'A' };
    repo.remote.files.insert("snapshot.json".into(), tampered);
    let (_, err) = verify_err(repo.update());
    assert!(
        matches!(
            err,
            VerifyError::Meta {
                source: HashError::Mismatch("sha256"),
                ..
            }
        ),
        "{err}"
    );
    // Longer than the timestamp says: refused before parsing.
    let mut longer = good;
    longer.push(b' ');
    repo.remote.files.insert("snapshot.json".into(), longer);
    match repo.update() {
        Err(UpdateError::TooLarge { file, .. }) => assert!(file.starts_with("snapshot."), "{file}"),
        other => panic!("expected TooLarge, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn delegation_path_escape() {
    let mut repo = TestRepo::new();
    let releases = RoleName::new("targets/releases").unwrap();
    let dkey = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    repo.editor
        .add_delegation(
            &releases,
            vec![dkey.public().clone()],
            vec!["releases/".into()],
            1,
        )
        .unwrap();
    repo.editor
        .add_target(&releases, "releases/v1", FileMeta::from_bytes(b"ok"))
        .unwrap();
    // The editor refuses a target outside the delegated paths...
    let err = repo
        .editor
        .add_target(&releases, "other/evil", FileMeta::from_bytes(b"x"))
        .unwrap_err();
    assert!(matches!(err, EditError::PathNotAllowed { .. }), "{err}");
    // ...and a child cannot widen its parent's paths.
    let sub = RoleName::new("targets/releases/sub").unwrap();
    assert!(
        repo.editor
            .add_delegation(&sub, vec![dkey.public().clone()], vec!["other/".into()], 1)
            .is_err()
    );
    repo.publish(&[&dkey]);
    // A delegation that signs a name outside its paths anyway: the name stays invisible.
    let d = Signed::<Targets>::parse(repo.file("targets/releases")).unwrap();
    let mut t = d.signed().clone();
    t.targets
        .insert("other/evil".into(), FileMeta::from_bytes(b"evil"));
    t.version += 1;
    repo.replace_and_rechain("targets/releases", sign_with(t, &[&dkey]));
    let verified = repo.update().unwrap();
    assert!(verified.lookup("releases/v1").is_some());
    assert!(verified.lookup("other/evil").is_none());
    assert!(verified.list().iter().all(|e| e.name != "other/evil"));
}

#[test]
fn root_rotation_without_old_signatures() {
    let mut repo = TestRepo::new();
    let v1 = repo.update().unwrap();
    let gun = Gun::new(common::GUN).unwrap();
    let new_root = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let cert =
        notary_core::x509::root_certificate(&new_root, &gun, NOW, NOW + Duration::days(3650))
            .unwrap();
    let mut r: Root = (**v1.root()).clone();
    r.keys.insert(cert.key_id(), cert.clone());
    r.roles.insert(
        "root".into(),
        RoleKeys {
            keyids: vec![cert.key_id()],
            threshold: 1,
        },
    );
    r.version = 2;
    // Signed by the new key only.
    let v2 = Signed::sign(r.clone(), &[(cert.key_id(), &new_root as &dyn Signer)]).unwrap();
    let err = verify::verify_root(
        v2.clone(),
        &gun,
        Some(v1.root()),
        &TrustPinning::default(),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::RootRotation(_)), "{err}");
    // The engine refuses it too when the client trusts v1.
    repo.replace_and_rechain("root", v2.into_file_bytes());
    let cache = Cache {
        root: Some(v1.root().file_bytes().to_vec()),
        ..Cache::default()
    };
    let updater = notary_core::Updater::new(gun.clone(), NOW)
        .cache(cache)
        .force_root_download(true);
    let (_, err) = verify_err(repo.update_with(updater));
    assert!(matches!(err, VerifyError::RootRotation(_)), "{err}");
    // Cross-signed by old and new keys, it is accepted.
    let old_id = v1.root().roles["root"].keyids[0].clone();
    let both = Signed::sign(
        r,
        &[
            (cert.key_id(), &new_root as &dyn Signer),
            (old_id, &repo.root),
        ],
    )
    .unwrap();
    verify::verify_root(both, &gun, Some(v1.root()), &TrustPinning::default(), NOW).unwrap();
}

#[test]
fn custom_data_not_canonical() {
    // Signing raw, unsorted custom JSON (what Go does with --custom) makes S differ from V.
    let repo = TestRepo::new();
    let mut t = Signed::<Targets>::parse(repo.file("targets"))
        .unwrap()
        .into_signed();
    let mut meta = FileMeta::from_bytes(b"p");
    meta.custom = Some(serde_json::json!({"a": "plain", "z": 1}));
    t.targets.insert("t".into(), meta);
    let s = Signed::<Targets>::signing_bytes(&t, notary_core::Dialect::NotaryV1).unwrap();
    let raw = String::from_utf8(s)
        .unwrap()
        .replace(r#"{"a":"plain","z":1}"#, r#"{"z":1,"a":"plain"}"#);
    let (method, sig) = repo.targets.sign(raw.as_bytes()).unwrap();
    let id = repo.targets.public().key_id();
    let file = format!(
        "{{\"signed\":{raw},\"signatures\":[{{\"keyid\":\"{id}\",\"method\":\"{}\",\"sig\":\"{}\"}}]}}",
        method.as_str(),
        base64_encode(&sig)
    );
    let parsed = Signed::<Targets>::parse(file.into_bytes()).unwrap();
    assert!(!parsed.is_canonical());
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(id.clone(), repo.targets.public().clone());
    let err = verify::verify_role(
        parsed,
        &RoleName::targets(),
        &keys,
        &RoleKeys {
            keyids: vec![id],
            threshold: 1,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, VerifyError::Threshold { valid: 0, .. }),
        "{err}"
    );
    // Custom data with fractions has no canonical form: the editor refuses it.
    let mut repo = TestRepo::new();
    let mut meta = FileMeta::from_bytes(b"p");
    meta.custom = Some(serde_json::json!({"ratio": 1.5}));
    assert!(
        repo.editor
            .add_target(&RoleName::targets(), "t", meta)
            .is_err()
    );
}

#[test]
fn non_canonical_upload_bytes_are_detected() {
    // Pretty-printed but validly signed: verifies, yet is not what Go would store.
    let repo = TestRepo::new();
    let good = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    assert!(good.is_canonical());
    let v: serde_json::Value = serde_json::from_slice(good.file_bytes()).unwrap();
    let pretty = serde_json::to_vec_pretty(&v).unwrap();
    let parsed = Signed::<Targets>::parse(pretty).unwrap();
    assert!(!parsed.is_canonical());
    assert_eq!(parsed.verify_bytes(), good.verify_bytes());
}

#[test]
fn unknown_signature_keys_and_methods_are_skipped_not_fatal() {
    let repo = TestRepo::new();
    let t = Signed::<Targets>::parse(repo.file("targets")).unwrap();
    let mut sigs = t.signatures().to_vec();
    sigs.insert(
        0,
        Signature {
            keyid: KeyId::new(&"0".repeat(64)).unwrap(),
            method: notary_core::SigMethod::parse("ECDSA"),
            sig: Bytes(vec![1; 64]),
        },
    );
    let f = Signed::from_parts(t.signed().clone(), sigs).unwrap();
    let mut keys = std::collections::BTreeMap::new();
    keys.insert(
        repo.targets.public().key_id(),
        repo.targets.public().clone(),
    );
    let auth = RoleKeys {
        keyids: vec![repo.targets.public().key_id()],
        threshold: 1,
    };
    verify::verify_role(f, &RoleName::targets(), &keys, &auth).unwrap();
}

#[test]
fn trust_pinning_certs_and_tofu() {
    let mut repo = TestRepo::new();
    let root = Signed::<Root>::parse(repo.file("root")).unwrap();
    let cert_id = root.signed().roles["root"].keyids[0].clone();
    let gun = Gun::new(common::GUN).unwrap();
    let mut pin = TrustPinning::default();
    pin.certs
        .insert("example.com/neg/*".into(), vec![cert_id.clone()]);
    verify::verify_root(root.clone(), &gun, None, &pin, NOW).unwrap();
    pin.certs.insert(
        common::GUN.into(),
        vec![KeyId::new(&"1".repeat(64)).unwrap()],
    );
    let err = verify::verify_root(root.clone(), &gun, None, &pin, NOW).unwrap_err();
    assert!(matches!(err, VerifyError::TrustPinning(_)), "{err}");
    let strict = TrustPinning {
        disable_tofu: true,
        ..TrustPinning::default()
    };
    assert!(matches!(
        verify::verify_root(root, &gun, None, &strict, NOW),
        Err(VerifyError::TrustPinning(_))
    ));
    let updater = notary_core::Updater::new(gun, NOW).pinning(strict);
    assert!(repo.update_with(updater).is_err());
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A root certificate issued by a CA, for `ca` trust pinning.
fn ca_issued_root(gun: &str, root: &PrivateKey) -> (PublicKey, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "notary-rs test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let pem = notary_core::keyfile::KeyFile::encode(root, "root", None, None).unwrap();
    let subject = rcgen::KeyPair::from_pem(&pem).unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(rcgen::DnType::CommonName, gun);
    leaf.is_ca = rcgen::IsCa::ExplicitNoCa;
    let leaf = leaf.signed_by(&subject, &issuer).unwrap();
    let cert = PublicKey::new(
        notary_core::KeyType::EcdsaX509,
        leaf.pem().replace("\r\n", "\n").into_bytes(),
    );
    (cert, ca_cert.pem())
}

#[test]
fn trust_pinning_ca() {
    use notary_core::repo::{KeyRing, RepoEditor};
    let gun = Gun::new(common::GUN).unwrap();
    let generate = || PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let keys = [generate(), generate(), generate(), generate()];
    let (cert, ca_pem) = ca_issued_root(common::GUN, &keys[0]);
    let mut editor = RepoEditor::create_with_root_cert(
        gun.clone(),
        cert,
        keys[1].public().clone(),
        keys[2].public().clone(),
        keys[3].public().clone(),
        NOW,
    )
    .unwrap();
    let files = editor.sign(&KeyRing::from_keys(&keys), NOW).unwrap();
    let mut remote = common::MapRemote::default();
    for (role, bytes) in files.files {
        remote.files.insert(common::file_name(&role), bytes);
    }
    let pinned = |pem: &str| {
        let mut p = TrustPinning {
            disable_tofu: true,
            ..TrustPinning::default()
        };
        p.ca.insert("example.com/".into(), pem.as_bytes().to_vec());
        p
    };
    common::block_on(
        notary_core::Updater::new(gun.clone(), NOW)
            .pinning(pinned(&ca_pem))
            .update(&mut remote.clone()),
    )
    .unwrap();
    let (_, other_ca) = ca_issued_root(common::GUN, &keys[0]);
    let err = common::block_on(
        notary_core::Updater::new(gun, NOW)
            .pinning(pinned(&other_ca))
            .update(&mut remote),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(
        matches!(err.verify_error(), Some(VerifyError::TrustPinning(_))),
        "{err}"
    );
}
