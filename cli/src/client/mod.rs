//! The client's local state and transport: configuration (`~/.notary/config.json` and the
//! global flags), the trust directory (key files, metadata cache, changelists, all in Go
//! Notary's formats so Go's `notary` can work on the same directory), passphrases and the
//! HTTPS connection to a Notary server.

mod auth;
mod passphrase;
mod settings;
mod transport;
mod trust_dir;

pub use passphrase::Passphrases;
pub use settings::{GlobalOpts, Settings};
pub use transport::{Server, fetch_repo};
pub use trust_dir::{Changelist, KeyStore, MetadataCache, write_private_durable};
