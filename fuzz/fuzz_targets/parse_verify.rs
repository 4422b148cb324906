//! Metadata parsing and verification on arbitrary bytes: never panics.
//! Run from `fuzz/` with `RUSTC_BOOTSTRAP=1 cargo fuzz run parse_verify` (not in CI).
#![no_main]

use libfuzzer_sys::fuzz_target;
use notary_core::metadata::{Root, Signed, Snapshot, Targets, Timestamp};
use notary_core::{Gun, RoleName, TrustPinning, verify};

fuzz_target!(|data: &[u8]| {
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_780);
    let gun = Gun::new("example.com/fuzz").unwrap_or_else(|_| unreachable!());
    if let Ok(root) = Signed::<Root>::parse(data.to_vec()) {
        let _ = root.is_canonical();
        if let Ok(v) = verify::verify_root(root, &gun, None, &TrustPinning::default(), now) {
            if let Some(auth) = v.role("targets") {
                if let Ok(t) = Signed::<Targets>::parse(data.to_vec()) {
                    let _ = verify::verify_role(t, &RoleName::targets(), &v.keys, auth);
                }
            }
        }
    }
    let _ = Signed::<Targets>::parse(data.to_vec()).map(|t| t.reserialize());
    let _ = Signed::<Snapshot>::parse(data.to_vec());
    let _ = Signed::<Timestamp>::parse(data.to_vec());
    let _ = notary_core::keyfile::KeyFile::decode(data, Some("passphrase"));
});
