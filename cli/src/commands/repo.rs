//! Creating and deleting collections: `notary init`, `notary delete`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::{Algorithm, Gun, PrivateKey};
use time::OffsetDateTime;

use super::key::certificate_key;
use super::{Outcome, gun_arg};
use crate::client::{KeyStore, MetadataCache, Passphrases, Server, Settings};

/// Initializes a local trusted collection.
#[derive(clap::Args, Debug)]
pub struct Init {
    /// Globally unique name of the collection (e.g. docker.io/library/alpine).
    pub gun: String,
    /// Root key to initialize the repository with (an encrypted private key PEM).
    #[arg(long)]
    pub rootkey: Option<PathBuf>,
    /// Certificate for the root key (issued by a CA that clients pin).
    #[arg(long)]
    pub rootcert: Option<PathBuf>,
    /// Publish right away.
    #[arg(short = 'p', long)]
    pub publish: bool,
}

/// Deletes the local trust data of a collection (and the server's with --remote).
#[derive(clap::Args, Debug)]
pub struct Delete {
    /// The collection.
    pub gun: String,
    /// Also delete the trust data on the server.
    #[arg(long)]
    pub remote: bool,
}

/// `notary init`.
pub(super) fn init(s: &Settings, a: Init) -> anyhow::Result<Outcome> {
    let Init {
        gun,
        rootkey,
        rootcert,
        publish: p,
    } = a;
    let gun = gun_arg(&gun)?;
    init_local(s, &gun, rootkey.as_deref(), rootcert.as_deref())?;
    Ok(Outcome::Staged { gun, publish: p })
}

/// `notary delete`.
pub(super) fn delete(s: &Settings, a: Delete) -> anyhow::Result<Outcome> {
    let Delete { gun, remote } = a;
    let gun = gun_arg(&gun)?;
    println!("Deleting trust data for repository {gun}");
    if remote {
        Server::new(s)?.delete(&gun)?;
    }
    let dir = s.gun_dir(&gun);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if remote {
        println!("Successfully deleted local and remote trust data for repository {gun}");
    } else {
        println!("Successfully deleted local trust data for repository {gun}");
    }
    Ok(Outcome::Done)
}

fn generate_into(
    store: &KeyStore,
    pass: &mut Passphrases,
    role: &str,
    gun: &Gun,
) -> anyhow::Result<PrivateKey> {
    let key = PrivateKey::generate(Algorithm::EcdsaP256)?;
    store.add(&key, role, Some(gun), pass)?;
    Ok(key)
}

/// `notary init` (spec §10.3): keys, root certificate, root/targets/snapshot v1 in the
/// local cache; nothing is uploaded.
fn init_local(
    s: &Settings,
    gun: &Gun,
    rootkey: Option<&std::path::Path>,
    rootcert: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let server = Server::new(s)?;
    let store = KeyStore::new(s);
    let mut pass = Passphrases::default();
    let now = OffsetDateTime::now_utc();
    // The server's timestamp key first: fail before creating anything locally.
    let timestamp = server.get_key(gun, "timestamp")?;
    let root_key = match rootkey {
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            if !notary_core::keyfile::KeyFile::is_encrypted(&pem)? {
                bail!("the root key {} must be encrypted", p.display());
            }
            let kf = pass.open(&pem, "root", &p.display().to_string())?;
            let id = kf.key.public().canonical_id()?.to_string();
            if store.load(&id, &mut pass)?.is_none() {
                store.add(&kf.key, "root", None, &mut pass)?;
            }
            kf.key
        }
        None => {
            let (found, key) = store.root_key_or_new(&mut pass)?;
            if let Some(id) = found {
                println!("Root key found, using: {id}");
            }
            key
        }
    };
    let targets = generate_into(&store, &mut pass, "targets", gun)?;
    let snapshot = generate_into(&store, &mut pass, "snapshot", gun)?;
    let mut editor = match rootcert {
        None => RepoEditor::create(
            gun.clone(),
            &root_key,
            targets.public().clone(),
            snapshot.public().clone(),
            timestamp,
            now,
        )?,
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            // Go rebuilds the key from the certificates in its own PEM form: use that form.
            let der = notary_core::x509::parse_pem_bundle(&pem)?;
            let cert = certificate_key(notary_core::x509::to_pem(&der).as_bytes())?;
            if cert.canonical_id()? != root_key.public().canonical_id()? {
                bail!(
                    "the certificate {} does not match the root key",
                    p.display()
                );
            }
            RepoEditor::create_with_root_cert(
                gun.clone(),
                cert,
                targets.public().clone(),
                snapshot.public().clone(),
                timestamp,
                now,
            )?
        }
    };
    let keys = [root_key, targets, snapshot];
    let signed = editor.sign(&KeyRing::from_keys(&keys), now)?;
    let cache = MetadataCache::new(s, gun);
    for (role, bytes) in &signed.files {
        cache.put(role.as_str(), bytes)?;
    }
    Ok(())
}
