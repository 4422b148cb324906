//! Every parser returns a typed error on bad input, never panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use notary_core::keyfile::{KeyFile, KeyFileError};
use notary_core::metadata::{ParseError, Root, Signed, Snapshot, Targets, Timestamp};
use notary_core::{Gun, KeyId, KeyType, PublicKey, SigMethod};

fn targets(signed: &str) -> Result<Signed<Targets>, ParseError> {
    Signed::<Targets>::parse(format!(r#"{{"signed":{signed},"signatures":[]}}"#).into_bytes())
}

const OK_TARGETS: &str = r#"{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2030-01-01T00:00:00Z","targets":{},"version":1}"#;

#[test]
fn malformed_json() {
    for bad in [
        "",
        "{",
        "nul",
        "[]",
        "{\"signed\":",
        "{\"signed\":{}",
        "\u{feff}{}",
        "{\"signed\":{},\"signatures\":[]} x",
    ] {
        assert!(
            Signed::<Targets>::parse(bad.as_bytes().to_vec()).is_err(),
            "{bad:?}"
        );
    }
    assert!(matches!(
        Signed::<Targets>::parse(b"{".to_vec()),
        Err(ParseError::Json(_))
    ));
    assert!(matches!(
        Signed::<Targets>::parse(b"{\"signatures\":[]}".to_vec()),
        Err(ParseError::Envelope(_))
    ));
    assert!(matches!(
        Signed::<Targets>::parse(b"{\"signed\":[1],\"signatures\":[]}".to_vec()),
        Err(ParseError::Envelope(_))
    ));
    // Deep nesting is refused by the JSON parser's recursion limit, not a stack overflow.
    let deep = format!(
        "{{\"signed\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(Signed::<Targets>::parse(deep.into_bytes()).is_err());
    targets(OK_TARGETS).unwrap();
}

#[test]
fn wrong_types() {
    let cases = [
        OK_TARGETS.replace(r#""version":1"#, r#""version":"1""#),
        OK_TARGETS.replace(r#""targets":{}"#, r#""targets":[]"#),
        OK_TARGETS.replace(
            r#""expires":"2030-01-01T00:00:00Z""#,
            r#""expires":20300101"#,
        ),
        OK_TARGETS.replace(
            r#""roles":[]"#,
            r#""roles":[{"keyids":[],"name":"Targets/X","threshold":1}]"#,
        ),
        OK_TARGETS.replace(r#""_type":"Targets""#, r#""_type":"targets""#),
    ];
    for c in &cases {
        assert!(targets(c).is_err(), "{c}");
    }
    let sigs = r#"{"signed":{"_type":"Targets","expires":"2030-01-01T00:00:00Z","version":1},"signatures":[{"keyid":1}]}"#;
    assert!(matches!(
        Signed::<Targets>::parse(sigs.as_bytes().to_vec()),
        Err(ParseError::Schema { .. })
    ));
}

#[test]
fn huge_numbers() {
    let huge = OK_TARGETS.replace(r#""version":1"#, r#""version":99999999999999999999999"#);
    assert!(targets(&huge).is_err());
    let above_2_53 = OK_TARGETS.replace(r#""version":1"#, r#""version":9007199254740993"#);
    assert!(matches!(
        targets(&above_2_53),
        Err(ParseError::Canonical(_))
    ));
    let float = OK_TARGETS.replace(r#""version":1"#, r#""version":1e400"#);
    assert!(targets(&float).is_err());
    let length = OK_TARGETS.replace(
        r#""targets":{}"#,
        r#""targets":{"a":{"hashes":{},"length":-5}}"#,
    );
    assert!(targets(&length).is_err());
}

#[test]
fn invalid_base64_and_hex() {
    let bad_hash = OK_TARGETS.replace(
        r#""targets":{}"#,
        r#""targets":{"a":{"hashes":{"sha256":"!!!"},"length":1}}"#,
    );
    assert!(matches!(targets(&bad_hash), Err(ParseError::Schema { .. })));
    let unpadded = OK_TARGETS.replace(
        r#""targets":{}"#,
        r#""targets":{"a":{"hashes":{"sha256":"YQ"},"length":1}}"#,
    );
    assert!(targets(&unpadded).is_err());
    let bad_key = r#"{"signed":{"_type":"Root","consistent_snapshot":false,"expires":"2030-01-01T00:00:00Z","keys":{"zz":{"keytype":"ecdsa","keyval":{"private":null,"public":"AA=="}}},"roles":{},"version":1},"signatures":[]}"#;
    assert!(
        Signed::<Root>::parse(bad_key.as_bytes().to_vec()).is_err(),
        "key ID that is not hex"
    );
    let bad_sig = r#"{"signed":{"_type":"Timestamp","expires":"2030-01-01T00:00:00Z","meta":{},"version":1},"signatures":[{"keyid":"ab","method":"ecdsa","sig":"AA=="}]}"#;
    assert!(Signed::<Timestamp>::parse(bad_sig.as_bytes().to_vec()).is_err());
    let bad_b64_sig = bad_sig
        .replace(
            r#""keyid":"ab""#,
            &format!(r#""keyid":"{}""#, "a".repeat(64)),
        )
        .replace("AA==", "%%");
    assert!(Signed::<Timestamp>::parse(bad_b64_sig.into_bytes()).is_err());
    assert!(KeyId::new("G".repeat(64).as_str()).is_err());
    let private = r#"{"signed":{"_type":"Snapshot","expires":"2030-01-01T00:00:00Z","meta":{},"version":1},"signatures":[]}"#;
    Signed::<Snapshot>::parse(private.as_bytes().to_vec()).unwrap();
}

#[test]
fn private_material_in_metadata_is_refused() {
    let root = format!(
        r#"{{"signed":{{"_type":"Root","consistent_snapshot":false,"expires":"2030-01-01T00:00:00Z","keys":{{"{}":{{"keytype":"ed25519","keyval":{{"private":"AAAA","public":"AA=="}}}}}},"roles":{{}},"version":1}},"signatures":[]}}"#,
        "a".repeat(64)
    );
    assert!(matches!(
        Signed::<Root>::parse(root.into_bytes()),
        Err(ParseError::Schema { .. })
    ));
}

#[test]
fn unknown_key_type_and_method() {
    let k = PublicKey::new(KeyType::parse("gpg"), vec![1, 2, 3]);
    assert_eq!(k.key_type().as_str(), "gpg");
    assert!(k.verify(&SigMethod::Ecdsa, b"m", &[0; 64]).is_err());
    let ed = PublicKey::new(KeyType::Ed25519, vec![0; 32]);
    assert!(ed.verify(&SigMethod::parse("foo"), b"m", &[0; 64]).is_err());
    assert!(
        PublicKey::new(KeyType::Ed25519, vec![0; 31])
            .verify(&SigMethod::EdDsa, b"m", &[0; 64])
            .is_err()
    );
    assert!(
        PublicKey::new(KeyType::Ecdsa, vec![0x30, 0x03, 0x01])
            .verify(&SigMethod::Ecdsa, b"m", &[0; 64])
            .is_err()
    );
    assert!(
        PublicKey::new(KeyType::EcdsaX509, b"not a pem".to_vec())
            .canonical_id()
            .is_err()
    );
    let gun = Gun::new("a/b").unwrap();
    assert!(
        notary_core::x509::check_root_leaf(
            &PublicKey::new(
                KeyType::EcdsaX509,
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()
            ),
            &gun,
            None
        )
        .is_err()
    );
}

#[test]
fn truncated_pem_and_wrong_passphrase() {
    let pem = std::fs::read(format!(
        "{}/../fixtures/go-notary-0.7/client-trust/private/cb782a222c41485b57fe72487788057b096479827241347541cadd6558d4570c.key",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    KeyFile::decode(&pem, Some("targets-passphrase-1")).unwrap();
    for cut in [0, 10, 60, pem.len() / 2, pem.len() - 30] {
        assert!(
            KeyFile::decode(&pem[..cut], Some("targets-passphrase-1")).is_err(),
            "cut at {cut}"
        );
    }
    assert_eq!(
        KeyFile::decode(&pem, Some("wrong")).unwrap_err(),
        KeyFileError::WrongPassphrase
    );
    assert_eq!(
        KeyFile::decode(&pem, Some("")).unwrap_err(),
        KeyFileError::WrongPassphrase
    );
    // A corrupted ciphertext byte: an error, whatever the passphrase.
    let text = String::from_utf8(pem.clone()).unwrap();
    let corrupted = text.replacen("MIH", "MIG", 1);
    assert!(KeyFile::decode(corrupted.as_bytes(), Some("targets-passphrase-1")).is_err());
    assert!(matches!(
        KeyFile::decode(b"\xff\xfe", None),
        Err(KeyFileError::Pem(_))
    ));
}
