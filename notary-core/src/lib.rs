//! notary-core: the TUF library of notary-rs, byte-compatible with Go Notary 0.7.
//!
//! What it does: parses and produces Notary v1 metadata (canonical JSON, envelopes,
//! roles), computes key IDs, signs and verifies (ECDSA P-256, Ed25519, RSA-PSS), checks
//! root certificates and trust pinning, runs the client update algorithm, edits
//! repositories, and reads and writes Go-compatible private key files.
//!
//! What it does not do: any IO. No network, no filesystem, no clock: bytes, the current
//! time and fetchers come in as parameters or through the [`update::Remote`] trait.
//! Randomness comes from the operating system only when generating keys, salts and
//! certificate serials.
//!
//! ```no_run
//! use notary_core::{metadata::{Signed, Root}, names::Gun, verify};
//! # fn f(bytes: Vec<u8>, now: time::OffsetDateTime) -> Result<(), Box<dyn std::error::Error>> {
//! let root = Signed::<Root>::parse(bytes)?;
//! let gun = Gun::new("docker.io/library/alpine")?;
//! let trusted = verify::verify_root(root, &gun, None, &verify::TrustPinning::default(), now)?;
//! println!("root v{} trusted", trusted.version);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub(crate) mod asn1;
pub(crate) mod canonical_ser;
pub mod changelist;
pub mod cjson;
pub mod crypto;
pub mod dialect;
pub mod expires;
pub mod keyfile;
pub mod metadata;
pub mod names;
pub mod pem;
pub mod repo;
pub mod update;
pub mod verify;
pub mod x509;

pub use crypto::{Algorithm, KeyType, PrivateKey, PublicKey, SigMethod, Signer};
pub use dialect::Dialect;
pub use expires::Expires;
pub use metadata::{FileMeta, Root, Signed, Snapshot, Targets, Timestamp};
pub use names::{Gun, KeyId, RoleName};
pub use update::{Remote, Repository, Updater};
pub use verify::{TrustPinning, Verified};
