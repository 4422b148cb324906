//! Hot paths: canonicalising and verifying a 10 000-target targets.json, signing and
//! verifying with ECDSA P-256 and Ed25519, key ID computation.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use notary_core::metadata::{FileMeta, RoleKeys, Signed, Targets};
use notary_core::{Algorithm, Expires, PrivateKey, RoleName, Signer, verify};

fn big_targets(key: &PrivateKey) -> Vec<u8> {
    let mut t = Targets::new(Expires::parse("2029-11-21T10:05:02.201546701Z").unwrap());
    t.version = 7;
    for i in 0..10_000 {
        let name = format!("releases/app-{i:05}.tar.gz");
        t.targets
            .insert(name.clone(), FileMeta::from_bytes(name.as_bytes()));
    }
    Signed::sign(t, &[(key.public().key_id(), key as &dyn Signer)])
        .unwrap()
        .into_file_bytes()
}

fn targets_10k(c: &mut Criterion) {
    let key = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    let file = big_targets(&key);
    let mut keys = BTreeMap::new();
    keys.insert(key.public().key_id(), key.public().clone());
    let auth = RoleKeys {
        keyids: vec![key.public().key_id()],
        threshold: 1,
    };
    let mut g = c.benchmark_group("targets_10k");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("parse_and_canonicalise", |b| {
        b.iter(|| Signed::<Targets>::parse(file.clone()).unwrap())
    });
    g.bench_function("parse_and_verify", |b| {
        b.iter(|| {
            let parsed = Signed::<Targets>::parse(file.clone()).unwrap();
            verify::verify_role(parsed, &RoleName::targets(), &keys, &auth).unwrap()
        })
    });
    let parsed = Signed::<Targets>::parse(file.clone()).unwrap();
    g.bench_function("reserialise", |b| b.iter(|| parsed.reserialize().unwrap()));
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let msg = vec![0x5au8; 1024];
    for (name, alg) in [
        ("ecdsa_p256", Algorithm::EcdsaP256),
        ("ed25519", Algorithm::Ed25519),
    ] {
        let key = PrivateKey::generate(alg).unwrap();
        let (method, sig) = key.sign(&msg).unwrap();
        c.bench_function(&format!("{name}/sign"), |b| {
            b.iter(|| key.sign(&msg).unwrap())
        });
        c.bench_function(&format!("{name}/verify"), |b| {
            b.iter(|| key.public().verify(&method, &msg, &sig).unwrap())
        });
    }
}

fn key_ids(c: &mut Criterion) {
    let key = PrivateKey::generate(Algorithm::EcdsaP256).unwrap();
    c.bench_function("key_id/ecdsa", |b| b.iter(|| key.public().key_id()));
    let gun = notary_core::Gun::new("example.com/bench/app").unwrap();
    let now = time::OffsetDateTime::now_utc();
    let cert =
        notary_core::x509::root_certificate(&key, &gun, now, now + time::Duration::days(3650))
            .unwrap();
    c.bench_function("key_id/ecdsa-x509", |b| b.iter(|| cert.key_id()));
    c.bench_function("canonical_id/ecdsa-x509", |b| {
        b.iter(|| cert.canonical_id().unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = targets_10k, signatures, key_ids, alternatives
}
criterion_main!(benches);

/// The pure-Rust alternatives the issue names, measured beside ring on the same input,
/// to justify the backend choice.
fn alternatives(c: &mut Criterion) {
    use ed25519_dalek::{Signer as _, Verifier as _};
    let msg = vec![0x5au8; 1024];
    let p = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
    let psig: p256::ecdsa::Signature = p.sign(&msg);
    let pv = *p.verifying_key();
    c.bench_function("alt_p256_crate/sign", |b| {
        b.iter(|| -> p256::ecdsa::Signature { p.sign(&msg) })
    });
    c.bench_function("alt_p256_crate/verify", |b| {
        b.iter(|| pv.verify(&msg, &psig).unwrap())
    });
    let e = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let esig = e.sign(&msg);
    let ev = e.verifying_key();
    c.bench_function("alt_ed25519_dalek/sign", |b| b.iter(|| e.sign(&msg)));
    c.bench_function("alt_ed25519_dalek/verify", |b| {
        b.iter(|| ev.verify(&msg, &esig).unwrap())
    });
}
