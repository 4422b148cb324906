//! Property tests: canonicalisation is idempotent, and for everything we produce the
//! signing bytes S equal the verification bytes V and files re-serialise exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;

use notary_core::cjson::to_canonical;
use notary_core::metadata::{Bytes, FileMeta, Signed, Targets};
use notary_core::{Algorithm, Dialect, Expires, PrivateKey, Signer};
use proptest::prelude::*;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
        "[^\\x00-\\x1f]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[^\\x00-\\x1f]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn canonicalisation_is_idempotent(v in json_value()) {
        let once = to_canonical(&v).unwrap();
        let reparsed: Value = serde_json::from_slice(&once).unwrap();
        prop_assert_eq!(&reparsed, &v);
        prop_assert_eq!(to_canonical(&reparsed).unwrap(), once);
    }

    #[test]
    fn produced_files_have_s_equal_to_v(
        targets in prop::collection::btree_map("[^\\x00-\\x1f]{1,24}", (0u64..1 << 40, prop::option::of(json_value())), 0..8),
        version in 1u64..1000,
        nanos in 0u32..1_000_000_000,
    ) {
        let key = PrivateKey::generate(Algorithm::Ed25519).unwrap();
        let expires = Expires::new(time::macros::datetime!(2030-01-01 00:00 UTC).replace_nanosecond(nanos).unwrap()).unwrap();
        let mut t = Targets::new(expires);
        t.version = version;
        for (name, (len, custom)) in targets {
            let mut hashes = BTreeMap::new();
            hashes.insert("sha256".to_owned(), Bytes(vec![7; 32]));
            t.targets.insert(name, FileMeta { custom, hashes, length: len });
        }
        let signed = Signed::sign(t, &[(key.public().key_id(), &key as &dyn Signer)]).unwrap();
        let s = Signed::<Targets>::signing_bytes(signed.signed(), Dialect::NotaryV1).unwrap();
        let parsed = Signed::<Targets>::parse(signed.file_bytes().to_vec()).unwrap();
        prop_assert_eq!(parsed.verify_bytes(), &s[..]);
        prop_assert_eq!(parsed.reserialize().unwrap(), signed.file_bytes());
        prop_assert!(parsed.is_canonical());
        let (_, sig) = (0, &parsed.signatures()[0]);
        prop_assert!(key.public().verify(&sig.method, parsed.verify_bytes(), &sig.sig.0).is_ok());
    }
}
