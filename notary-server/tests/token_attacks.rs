//! Hostile bearer tokens (security review item 6): cyclic and padded `x5c` chains,
//! oversize headers, expired or non-CA links. Each attack is refused with bounded work,
//! counted by `VerifyWork` (signature checks, certificates parsed, path steps), never
//! timed; valid chains and the libtrust `kid` path keep working.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use notary_server::auth::{
    Access, AuthFailure, CertRef, MAX_AUTHORIZATION_LEN, MAX_X5C_CERTS, Rejection, TokenAuth,
    TokenError, VerifyWork, libtrust_kid,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const GUN: &str = "example.com/test/app";

/// A key usable by rcgen (certificates) and ring (raw r‖s ES256 token signatures).
struct Key {
    rcgen: KeyPair,
    ring: EcdsaKeyPair,
}

fn key() -> Key {
    let rcgen = KeyPair::generate().unwrap();
    let ring = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &rcgen.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    Key { rcgen, ring }
}

#[derive(Clone, Copy)]
enum Kind {
    /// CA:true with keyCertSign.
    Ca,
    /// CA:true, keyUsage digitalSignature only.
    CaWithoutCertSign,
    /// basicConstraints CA:false, keyUsage keyCertSign.
    NotCa,
    /// No basicConstraints, no keyUsage.
    Leaf,
}

fn params(
    cn: &str,
    kind: Kind,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.not_before = not_before;
    p.not_after = not_after;
    match kind {
        Kind::Ca => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        Kind::CaWithoutCertSign => {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        Kind::NotCa => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        }
        Kind::Leaf => {}
    }
    p
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn valid(cn: &str, kind: Kind) -> CertificateParams {
    params(
        cn,
        kind,
        now() - Duration::days(1),
        now() + Duration::days(30),
    )
}

/// `params` signed by `(issuer params, issuer key)`, DER.
fn issue(p: &CertificateParams, subject: &Key, issuer: (&CertificateParams, &Key)) -> Vec<u8> {
    let issuer = Issuer::from_params(issuer.0, &issuer.1.rcgen);
    p.signed_by(&subject.rcgen, &issuer).unwrap().der().to_vec()
}

/// A bundle with one self-signed CA root.
struct Pki {
    root_params: CertificateParams,
    root_key: Key,
    root_der: Vec<u8>,
    auth: TokenAuth,
}

fn pki() -> Pki {
    let root_key = key();
    let root_params = valid("test root", Kind::Ca);
    let root = root_params.self_signed(&root_key.rcgen).unwrap();
    let auth = TokenAuth::from_pem(
        "https://auth.example.test/token",
        "notary-test",
        "test-issuer",
        root.pem().as_bytes(),
    )
    .unwrap();
    Pki {
        root_der: root.der().to_vec(),
        root_params,
        root_key,
        auth,
    }
}

fn claims() -> Value {
    let now = now().unix_timestamp();
    json!({"iss": "test-issuer", "aud": "notary-test", "sub": "alice", "exp": now + 300,
        "nbf": now - 5, "iat": now,
        "access": [{"type": "repository", "name": GUN, "actions": ["pull"]}]})
}

/// `Authorization: Bearer <ES256 JWS>` with the given JOSE header fields.
fn bearer(signer: &Key, header: Value, claims: &Value) -> HeaderValue {
    let mut h = json!({"typ": "JWT", "alg": "ES256"});
    if let (Some(h), Some(extra)) = (h.as_object_mut(), header.as_object()) {
        h.extend(extra.clone());
    }
    let h = URL_SAFE_NO_PAD.encode(h.to_string());
    let p = URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = signer
        .ring
        .sign(&SystemRandom::new(), format!("{h}.{p}").as_bytes())
        .unwrap();
    let v = format!("Bearer {h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    HeaderValue::from_str(&v).unwrap()
}

fn x5c(certs: &[&[u8]]) -> Value {
    json!({"x5c": certs.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>()})
}

fn authorize(auth: &TokenAuth, value: &HeaderValue) -> (Result<(), AuthFailure>, VerifyWork) {
    let mut work = VerifyWork::default();
    let r = auth.authorize(
        Some(value),
        &[Access::repo(GUN, "pull")],
        now().unix_timestamp(),
        &mut work,
    );
    (r, work)
}

fn rejected(r: &Result<(), AuthFailure>) -> &[(CertRef, Rejection)] {
    match r {
        Err(AuthFailure::Invalid(TokenError::NoChain { rejected })) => rejected,
        other => panic!("expected NoChain, got {other:?}"),
    }
}

#[test]
fn valid_chain_through_intermediate_accepted() {
    let pki = pki();
    let (inter_key, leaf_key) = (key(), key());
    let inter_params = valid("intermediate", Kind::Ca);
    let inter = issue(&inter_params, &inter_key, (&pki.root_params, &pki.root_key));
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&inter_params, &inter_key),
    );
    let (r, work) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &inter]), &claims()),
    );
    assert_eq!(r, Ok(()));
    assert!(work.signature_checks <= 2, "{work:?}");

    // Leaf issued by the root directly; the root itself as the leaf (Go's
    // `Roots.contains`); the bundle key named by its libtrust kid.
    let direct = issue(
        &valid("direct signer", Kind::Leaf),
        &leaf_key,
        (&pki.root_params, &pki.root_key),
    );
    let (r, _) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&[&direct]), &claims()));
    assert_eq!(r, Ok(()));
    let (r, work) = authorize(
        &pki.auth,
        &bearer(&pki.root_key, x5c(&[&pki.root_der]), &claims()),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(work.signature_checks, 0);
    let kid = libtrust_kid(&notary_core::x509::spki_der(&pki.root_der).unwrap());
    let (r, _) = authorize(
        &pki.auth,
        &bearer(&pki.root_key, json!({ "kid": kid }), &claims()),
    );
    assert_eq!(r, Ok(()));

    // Insufficient scope is still told apart from an invalid token.
    let mut work = VerifyWork::default();
    let r = pki.auth.authorize(
        Some(&bearer(&leaf_key, x5c(&[&leaf, &inter]), &claims())),
        &[Access::repo(GUN, "push")],
        now().unix_timestamp(),
        &mut work,
    );
    assert_eq!(r, Err(AuthFailure::Insufficient));
}

/// Two CAs that cross-sign each other (A issued by B, B issued by A), neither reaching
/// the bundle, plus `decoys` certificates named B under other keys, so that a naive
/// walker re-scans the list at every step around the A→B→A cycle.
struct Cycle {
    leaf_key: Key,
    leaf: Vec<u8>,
    a_by_b: Vec<u8>,
    b_by_a: Vec<u8>,
    decoy: Vec<u8>,
}

fn cycle() -> Cycle {
    let (a_key, b_key, leaf_key, decoy_key) = (key(), key(), key(), key());
    let a_params = valid("cross CA A", Kind::Ca);
    let b_params = valid("cross CA B", Kind::Ca);
    Cycle {
        a_by_b: issue(&a_params, &a_key, (&b_params, &b_key)),
        b_by_a: issue(&b_params, &b_key, (&a_params, &a_key)),
        // Named B, but its key signed nothing.
        decoy: issue(&b_params, &decoy_key, (&a_params, &a_key)),
        leaf: issue(
            &valid("cycle signer", Kind::Leaf),
            &leaf_key,
            (&a_params, &a_key),
        ),
        leaf_key,
    }
}

#[test]
fn cyclic_x5c_chain_refused_with_bounded_work() {
    let pki = pki();
    let c = cycle();

    // The review's token: the cycle padded with decoys beyond the x5c cap (20 decoys
    // still fit in the header limit, 60 do not). Refused before any certificate is
    // parsed or signature checked.
    for decoys in [20, 60] {
        let mut certs: Vec<&[u8]> = vec![&c.leaf, &c.a_by_b];
        certs.extend(std::iter::repeat_n(c.decoy.as_slice(), decoys));
        certs.push(&c.b_by_a);
        let value = bearer(&c.leaf_key, x5c(&certs), &claims());
        let (r, work) = authorize(&pki.auth, &value);
        assert!(r.is_err(), "accepted a chain that leads nowhere");
        assert_eq!(work, VerifyWork::default(), "{decoys} decoys");
        let expected = if value.len() > MAX_AUTHORIZATION_LEN {
            TokenError::TooLarge {
                len: value.len(),
                max: MAX_AUTHORIZATION_LEN,
            }
        } else {
            TokenError::TooManyCertificates {
                count: certs.len(),
                max: MAX_X5C_CERTS,
            }
        };
        assert_eq!(r, Err(AuthFailure::Invalid(expected)));
    }

    // Within the x5c cap: the cycle repeated. Three distinct certificates, each parsed
    // once, each (certificate, issuer) signature checked at most once.
    let mut certs: Vec<&[u8]> = vec![&c.leaf];
    while certs.len() < MAX_X5C_CERTS {
        certs.push(&c.a_by_b);
        certs.push(&c.b_by_a);
    }
    certs.truncate(MAX_X5C_CERTS);
    let (r, work) = authorize(&pki.auth, &bearer(&c.leaf_key, x5c(&certs), &claims()));
    assert!(rejected(&r).is_empty(), "{r:?}");
    assert_eq!(work.certificates_parsed, 3, "{work:?}");
    assert!(work.signature_checks <= 2, "{work:?}");
    assert!(work.path_steps <= 3, "{work:?}");

    // Within the cap with decoys: still one check per (certificate, candidate issuer).
    let mut certs: Vec<&[u8]> = vec![&c.leaf, &c.a_by_b];
    let decoys: Vec<Vec<u8>> = (0..MAX_X5C_CERTS - 3)
        .map(|i| {
            let mut p = valid("cross CA B", Kind::Ca);
            p.serial_number = Some(rcgen::SerialNumber::from(vec![1, i as u8 + 1]));
            let (k, a) = (key(), key());
            issue(&p, &k, (&valid("cross CA A", Kind::Ca), &a))
        })
        .collect();
    certs.extend(decoys.iter().map(Vec::as_slice));
    certs.push(&c.b_by_a);
    let (r, work) = authorize(&pki.auth, &bearer(&c.leaf_key, x5c(&certs), &claims()));
    assert!(
        matches!(r, Err(AuthFailure::Invalid(TokenError::NoChain { .. }))),
        "{r:?}"
    );
    let n = certs.len();
    assert!(work.signature_checks <= n * (n - 1), "{work:?}");
    assert!(work.path_steps <= n, "{work:?}");
}

#[test]
fn oversize_authorization_header_refused() {
    let pki = pki();
    let leaf_key = key();
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&pki.root_params, &pki.root_key),
    );
    // A correctly signed, otherwise valid token, padded past the limit.
    let mut c = claims();
    c["pad"] = Value::from("x".repeat(MAX_AUTHORIZATION_LEN));
    let value = bearer(&leaf_key, x5c(&[&leaf]), &c);
    let (r, work) = authorize(&pki.auth, &value);
    assert_eq!(
        r,
        Err(AuthFailure::Invalid(TokenError::TooLarge {
            len: value.len(),
            max: MAX_AUTHORIZATION_LEN
        }))
    );
    assert_eq!(work, VerifyWork::default());
    // The same token without the padding is fine.
    let (r, _) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&[&leaf]), &claims()));
    assert_eq!(r, Ok(()));
}

#[test]
fn too_many_x5c_entries_refused() {
    let pki = pki();
    let (inter_key, leaf_key) = (key(), key());
    let inter_params = valid("intermediate", Kind::Ca);
    let inter = issue(&inter_params, &inter_key, (&pki.root_params, &pki.root_key));
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&inter_params, &inter_key),
    );
    // A valid chain with the intermediate repeated up to one over the cap.
    let mut certs: Vec<&[u8]> = vec![&leaf];
    certs.extend(std::iter::repeat_n(inter.as_slice(), MAX_X5C_CERTS));
    let (r, work) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&certs), &claims()));
    assert_eq!(
        r,
        Err(AuthFailure::Invalid(TokenError::TooManyCertificates {
            count: MAX_X5C_CERTS + 1,
            max: MAX_X5C_CERTS
        }))
    );
    assert_eq!(work, VerifyWork::default());
    // At the cap it is accepted.
    certs.pop();
    let (r, _) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&certs), &claims()));
    assert_eq!(r, Ok(()));
}

#[test]
fn expired_leaf_refused() {
    let pki = pki();
    let leaf_key = key();
    let expired = params(
        "expired signer",
        Kind::Leaf,
        now() - Duration::days(30),
        now() - Duration::days(1),
    );
    let leaf = issue(&expired, &leaf_key, (&pki.root_params, &pki.root_key));
    let (r, work) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&[&leaf]), &claims()));
    assert_eq!(r, Err(AuthFailure::Invalid(TokenError::LeafNotValidNow)));
    assert_eq!(work.signature_checks, 0);

    let future = params(
        "future signer",
        Kind::Leaf,
        now() + Duration::days(1),
        now() + Duration::days(30),
    );
    let leaf = issue(&future, &leaf_key, (&pki.root_params, &pki.root_key));
    let (r, _) = authorize(&pki.auth, &bearer(&leaf_key, x5c(&[&leaf]), &claims()));
    assert_eq!(r, Err(AuthFailure::Invalid(TokenError::LeafNotValidNow)));
}

#[test]
fn expired_intermediate_refused() {
    let pki = pki();
    let (inter_key, leaf_key) = (key(), key());
    let inter_params = params(
        "old intermediate",
        Kind::Ca,
        now() - Duration::days(30),
        now() - Duration::days(1),
    );
    let inter = issue(&inter_params, &inter_key, (&pki.root_params, &pki.root_key));
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&inter_params, &inter_key),
    );
    let (r, _) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &inter]), &claims()),
    );
    assert_eq!(rejected(&r), &[(CertRef::X5c(1), Rejection::NotValidNow)]);
}

#[test]
fn leaf_signed_by_non_ca_refused() {
    let pki = pki();
    let (issuer_key, leaf_key) = (key(), key());
    // Issued by the root and carrying keyCertSign, but basicConstraints CA:false.
    let issuer_params = valid("not a CA", Kind::NotCa);
    let issuer = issue(
        &issuer_params,
        &issuer_key,
        (&pki.root_params, &pki.root_key),
    );
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&issuer_params, &issuer_key),
    );
    let (r, work) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &issuer]), &claims()),
    );
    assert_eq!(rejected(&r), &[(CertRef::X5c(1), Rejection::NotCa)]);
    assert_eq!(work.signature_checks, 0);

    // No basicConstraints at all is no CA either.
    let plain_params = valid("plain cert", Kind::Leaf);
    let plain = issue(
        &plain_params,
        &issuer_key,
        (&pki.root_params, &pki.root_key),
    );
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&plain_params, &issuer_key),
    );
    let (r, _) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &plain]), &claims()),
    );
    assert_eq!(rejected(&r), &[(CertRef::X5c(1), Rejection::NotCa)]);
}

#[test]
fn intermediate_without_key_cert_sign_refused() {
    let pki = pki();
    let (inter_key, leaf_key) = (key(), key());
    let inter_params = valid("signing-only CA", Kind::CaWithoutCertSign);
    let inter = issue(&inter_params, &inter_key, (&pki.root_params, &pki.root_key));
    let leaf = issue(
        &valid("token signer", Kind::Leaf),
        &leaf_key,
        (&inter_params, &inter_key),
    );
    let (r, work) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &inter]), &claims()),
    );
    assert_eq!(rejected(&r), &[(CertRef::X5c(1), Rejection::NoKeyCertSign)]);
    assert_eq!(work.signature_checks, 0);
}

#[test]
fn path_len_constraint_enforced() {
    let pki = pki();
    let (k1, k2, leaf_key) = (key(), key(), key());
    let mut p1 = valid("intermediate 1", Kind::Ca);
    p1.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let i1 = issue(&p1, &k1, (&pki.root_params, &pki.root_key));
    let p2 = valid("intermediate 2", Kind::Ca);
    let i2 = issue(&p2, &k2, (&p1, &k1));
    let leaf = issue(&valid("token signer", Kind::Leaf), &leaf_key, (&p2, &k2));
    let (r, _) = authorize(
        &pki.auth,
        &bearer(&leaf_key, x5c(&[&leaf, &i2, &i1]), &claims()),
    );
    assert_eq!(rejected(&r), &[(CertRef::X5c(2), Rejection::PathLen)]);
}

/// Not a test of speed (no assertion on time): prints how long the review's worst-case
/// token takes, for the record. `cargo test --release --test token_attacks -- --ignored
/// --nocapture worst_case`.
#[test]
#[ignore]
fn worst_case_token_timing() {
    let pki = pki();
    let c = cycle();
    // As large as a default hyper server lets through (~256 KiB of header).
    let mut certs: Vec<&[u8]> = vec![&c.leaf, &c.a_by_b];
    let per_cert = STANDARD.encode(&c.decoy).len() + 3;
    certs.extend(std::iter::repeat_n(
        c.decoy.as_slice(),
        256 * 1024 / per_cert,
    ));
    certs.push(&c.b_by_a);
    let value = bearer(&c.leaf_key, x5c(&certs), &claims());
    let started = std::time::Instant::now();
    let (r, work) = authorize(&pki.auth, &value);
    println!(
        "review token: {} bytes, {} x5c entries: {:?} in {:?}, {work:?}",
        value.len(),
        certs.len(),
        r.err(),
        started.elapsed()
    );

    // The worst token under the caps: the cycle plus distinct decoys, 10 entries.
    let decoys: Vec<Vec<u8>> = (0..MAX_X5C_CERTS - 3)
        .map(|i| {
            let mut p = valid("cross CA B", Kind::Ca);
            p.serial_number = Some(rcgen::SerialNumber::from(vec![2, i as u8 + 1]));
            issue(&p, &key(), (&valid("cross CA A", Kind::Ca), &key()))
        })
        .collect();
    let mut certs: Vec<&[u8]> = vec![&c.leaf, &c.a_by_b];
    certs.extend(decoys.iter().map(Vec::as_slice));
    certs.push(&c.b_by_a);
    let value = bearer(&c.leaf_key, x5c(&certs), &claims());
    let started = std::time::Instant::now();
    let rounds = 100u32;
    let mut last = None;
    for _ in 0..rounds {
        last = Some(authorize(&pki.auth, &value));
    }
    println!(
        "capped worst token: {} bytes, {} x5c entries: {:?} in {:?} each",
        value.len(),
        certs.len(),
        last,
        started.elapsed() / rounds
    );
}
