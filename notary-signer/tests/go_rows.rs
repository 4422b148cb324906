//! The rows of a real Go notary-signer database (fixture `signer-db/private_keys.json`,
//! alias `passwordalias1`) open with our JWE code, parse as keys whose public part and
//! key ID match the row, and can be stored and used through our key service.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use notary_core::keyfile::private_key_from_tuf;
use notary_core::{KeyType, PublicKey};
use notary_signer::jwe;
use notary_signer::keys::{KeyService, Passphrases};
use notary_signer::store::{KeyRow, KeyStore};

const PASS: &str = "signerpass-alias1";

fn rows() -> Vec<serde_json::Value> {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/go-notary-0.7/signer-db/private_keys.json"
    );
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

#[test]
fn every_go_row_opens_and_matches_its_public_key_and_id() {
    let rows = rows();
    assert!(rows.len() >= 3);
    for r in &rows {
        let jwe_text = r["private_jwe"].as_str().unwrap();
        let raw = jwe::open(jwe_text, PASS).unwrap();
        let alg = r["algorithm"].as_str().unwrap();
        if alg == "ecdsa" {
            assert_eq!(raw.len(), 121, "SEC1 P-256 key");
        }
        let key = private_key_from_tuf(alg, &raw).unwrap();
        assert_eq!(
            key.public().public_bytes(),
            b64(&r["public_b64"]).as_slice()
        );
        let kt = if alg == "ecdsa" {
            KeyType::Ecdsa
        } else {
            KeyType::Ed25519
        };
        let id = PublicKey::new(kt, b64(&r["public_b64"])).key_id();
        assert_eq!(id.as_str(), r["key_id"].as_str().unwrap());
        assert!(matches!(
            jwe::open(jwe_text, "wrong"),
            Err(jwe::JweError::Decrypt)
        ));
    }
}

#[tokio::test]
async fn go_rows_sign_through_the_key_service_and_wrong_passphrase_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signer.db");
    let store = KeyStore::open_sqlite(db.to_str().unwrap()).await.unwrap();
    for r in rows() {
        store
            .insert(&KeyRow {
                key_id: r["key_id"].as_str().unwrap().into(),
                algorithm: r["algorithm"].as_str().unwrap().into(),
                passphrase_alias: r["passphrase_alias"].as_str().unwrap().into(),
                gun: r["gun"].as_str().unwrap().into(),
                role: r["role"].as_str().unwrap().into(),
                public: b64(&r["public_b64"]),
                private: r["private_jwe"].as_str().unwrap().as_bytes().to_vec(),
                used: false,
            })
            .await
            .unwrap();
    }
    // Right passphrase: start-up check passes, every key signs verifiably.
    let ok = KeyService::new(
        store.clone(),
        "passwordalias1".into(),
        Passphrases::with_lookup(|k| {
            (k == "NOTARY_SIGNER_PASSWORDALIAS1").then(|| PASS.to_owned())
        }),
    );
    ok.check_passphrases().await.unwrap();
    for r in rows() {
        let id = r["key_id"].as_str().unwrap();
        let (key, method, sig) = ok.sign(id, b"{\"_type\":\"Timestamp\"}").await.unwrap();
        key.key
            .public()
            .verify(
                &notary_core::SigMethod::parse(&method),
                b"{\"_type\":\"Timestamp\"}",
                &sig,
            )
            .unwrap();
    }
    // Wrong passphrase: a clear start-up error naming alias and variable.
    let bad = KeyService::new(
        store.clone(),
        "passwordalias1".into(),
        Passphrases::with_lookup(|_| Some("nope".to_owned())),
    );
    let e = bad.check_passphrases().await.unwrap_err().to_string();
    assert!(
        e.contains("passwordalias1") && e.contains("NOTARY_SIGNER_PASSWORDALIAS1"),
        "{e}"
    );
    // Missing variable: Go's message.
    let missing = KeyService::new(
        store,
        "passwordalias1".into(),
        Passphrases::with_lookup(|_| None),
    );
    let e = missing.check_passphrases().await.unwrap_err().to_string();
    assert!(
        e.contains("expected env variable to not be empty: passwordalias1"),
        "{e}"
    );
}
