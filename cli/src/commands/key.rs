//! `notary key …`: the key store, key rotation, and public keys read from files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::{Algorithm, Gun, PrivateKey, PublicKey, RoleName};
use time::OffsetDateTime;

use super::signing_keys;
use super::{Outcome, confirmed, gun_arg, table, truncate_left, update_error};
use crate::client::{KeyStore, MetadataCache, Passphrases, Server, Settings, fetch_repo};
/// `notary key …`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Lists the signing keys in the trust directory.
    List,
    /// Rotates the key of a base role (snapshot or timestamp to the server with -r) and
    /// publishes the new root.
    Rotate {
        /// The collection.
        gun: String,
        /// targets, snapshot or timestamp.
        role: String,
        /// Let the server manage the key (snapshot, timestamp).
        #[arg(short = 'r', long = "server-managed")]
        server_managed: bool,
        /// Private key files to rotate to (imported first) instead of new keys.
        #[arg(short = 'k', long = "key", value_delimiter = ',')]
        keys: Vec<PathBuf>,
        /// Also sign the new root with the root keys of this many previous root versions
        /// (for clients that still trust them).
        #[arg(short = 'l', long = "legacy", default_value_t = 0)]
        legacy: u64,
    },
    /// Generates a key: into the trust directory, or with -o into PREFIX-key.pem
    /// (encrypted private key) and PREFIX.pem (public key).
    Generate {
        /// Algorithm (only ecdsa).
        #[arg(default_value = "ecdsa")]
        algorithm: String,
        /// Role of the key.
        #[arg(short = 'r', long, default_value = "root")]
        role: String,
        /// Write PREFIX-key.pem and PREFIX.pem instead of storing the key.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Exports private keys (as stored, with a `path` header) by ID or GUN.
    Export {
        /// Key IDs.
        #[arg(long = "key", value_delimiter = ',')]
        keys: Vec<String>,
        /// GUNs.
        #[arg(long = "gun", value_delimiter = ',')]
        guns: Vec<String>,
        /// Output file (default stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
    },
    /// Removes a key from the trust directory (asks for confirmation).
    Remove {
        /// Key ID.
        key_id: String,
    },
    /// Changes the passphrase of a key.
    Passwd {
        /// Key ID.
        key_id: String,
    },
    /// Imports private keys (PEM) into the trust directory.
    Import {
        /// Key files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Role when the file has no `role` header.
        #[arg(short = 'r', long)]
        role: Option<String>,
        /// GUN when the file has no `gun` header.
        #[arg(short = 'g', long)]
        gun: Option<String>,
    },
}

/// Runs `notary key …`.
pub(super) fn run(cmd: KeyCmd, s: &Settings) -> anyhow::Result<Outcome> {
    let outcome = match cmd {
        KeyCmd::Rotate {
            gun,
            role,
            server_managed,
            keys,
            legacy,
        } => {
            let gun = gun_arg(&gun)?;
            if server_managed && !keys.is_empty() {
                bail!("-r and -k cannot be combined: the server makes its own keys");
            }
            rotate(s, &gun, &role, server_managed, &keys, legacy)?;
            println!("Successfully rotated {role} key for repository {gun}");
            Outcome::Done
        }
        KeyCmd::Generate {
            algorithm,
            role,
            output,
        } => {
            if !algorithm.eq_ignore_ascii_case("ecdsa") {
                bail!("Algorithm not allowed, possible values are: ECDSA");
            }
            let key = PrivateKey::generate(Algorithm::EcdsaP256)?;
            let id = key.public().canonical_id()?.to_string();
            let mut pass = Passphrases::default();
            match output {
                None => {
                    if matches!(role.as_str(), "targets" | "snapshot" | "timestamp") {
                        bail!(
                            "only root and delegation keys can be generated without a GUN; use init or key rotate for {role}"
                        );
                    }
                    KeyStore::new(s).add(&key, &role, None, &mut pass)?;
                    println!("Generated new ecdsa {role} key with keyID: {id}");
                }
                Some(prefix) => {
                    let p = pass.for_new_key("", &id)?;
                    let priv_pem =
                        notary_core::keyfile::KeyFile::encode(&key, &role, None, Some(&p))?;
                    let base = prefix.display().to_string();
                    let priv_path = PathBuf::from(format!("{base}-key.pem"));
                    let pub_path = PathBuf::from(format!("{base}.pem"));
                    crate::client::write_private_durable(&priv_path, priv_pem.as_bytes())?;
                    let pub_pem = notary_core::pem::encode(
                        "PUBLIC KEY",
                        &[("role", role.as_str())],
                        key.public().public_bytes(),
                    );
                    std::fs::write(&pub_path, pub_pem.as_bytes())
                        .with_context(|| format!("writing {}", pub_path.display()))?;
                    println!(
                        "Generated new ecdsa {role} key with keyID: {id} in {} and {}",
                        priv_path.display(),
                        pub_path.display()
                    );
                }
            }
            Outcome::Done
        }
        KeyCmd::Export { keys, guns, output } => {
            if !keys.is_empty() && !guns.is_empty() {
                bail!("Only the --gun or --key flag may be provided, not a mix of the two flags");
            }
            let store = KeyStore::new(s);
            let mut out = String::new();
            for k in store.list()? {
                let wanted = (keys.is_empty() && guns.is_empty())
                    || keys.contains(&k.id)
                    || k.gun.as_ref().is_some_and(|g| guns.iter().any(|w| w == g));
                if !wanted {
                    continue;
                }
                let pem = std::fs::read(store.dir().join(format!("{}.key", k.id)))?;
                let block = notary_core::pem::decode_one(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", k.id))?;
                let mut headers: Vec<(&str, &str)> = block
                    .headers
                    .iter()
                    .filter(|(n, _)| n != "path")
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                headers.push(("path", k.id.as_str()));
                out.push_str(&notary_core::pem::encode(
                    &block.label,
                    &headers,
                    &block.body,
                ));
            }
            if out.is_empty() {
                bail!("no matching keys found");
            }
            match output {
                Some(p) => crate::client::write_private_durable(&p, out.as_bytes())?,
                None => print!("{out}"),
            }
            Outcome::Done
        }
        KeyCmd::Remove { key_id } => {
            let store = KeyStore::new(s);
            let k = store.find(&key_id)?;
            let loc = store.dir().display().to_string();
            print!(
                "Are you sure you want to remove {key_id} (role {}) from {loc}?  (yes/no)  ",
                k.role
            );
            if !confirmed()? {
                println!("\nAborting action.");
                return Ok(Outcome::Declined);
            }
            store.remove(&key_id)?;
            println!("\nDeleted {key_id} (role {}) from {loc}.", k.role);
            Outcome::Done
        }
        KeyCmd::Passwd { key_id } => {
            let store = KeyStore::new(s);
            let k = store.find(&key_id)?;
            let mut pass = Passphrases::default();
            let kf = store
                .load(&key_id, &mut pass)?
                .with_context(|| format!("key {key_id} not found"))?;
            let mut fresh = Passphrases::default();
            let gun = k.gun.as_deref().map(gun_arg).transpose()?;
            fresh.forget_env();
            store.add(&kf.key, &k.role, gun.as_ref(), &mut fresh)?;
            println!("Successfully updated passphrase for key ID: {key_id}");
            Outcome::Done
        }
        KeyCmd::Import { files, role, gun } => {
            let store = KeyStore::new(s);
            let mut pass = Passphrases::default();
            for f in files {
                let text = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
                let blocks = notary_core::pem::decode_all(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
                if blocks.is_empty() {
                    bail!("{}: no PEM blocks", f.display());
                }
                // Go's `key export` writes several keys into one file.
                for block in blocks {
                    let headers: Vec<(&str, &str)> = block
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let pem = notary_core::pem::encode(&block.label, &headers, &block.body);
                    let pem = pem.as_bytes();
                    let role = block
                        .header("role")
                        .map(str::to_owned)
                        .or_else(|| role.clone())
                        .unwrap_or_else(|| "delegation".to_owned());
                    let encrypted = notary_core::keyfile::KeyFile::is_encrypted(pem)?;
                    if encrypted && block.header("path").is_none() {
                        bail!(
                            "Invalid key generated, key may be encrypted and does not contain path header"
                        );
                    }
                    let kf = pass.open(pem, &role, &f.display().to_string())?;
                    let base =
                        matches!(role.as_str(), "root" | "targets" | "snapshot" | "timestamp");
                    let key_gun = block
                        .header("gun")
                        .map(str::to_owned)
                        .or_else(|| gun.clone());
                    let key_gun = match (base && role != "root", key_gun) {
                        (true, Some(g)) => Some(gun_arg(&g)?),
                        (true, None) => {
                            bail!("{}: a {role} key needs a GUN (--gun)", f.display())
                        }
                        (false, _) => None,
                    };
                    store.add(&kf.key, &role, key_gun.as_ref(), &mut pass)?;
                }
            }
            Outcome::Done
        }
        KeyCmd::List => {
            let keys = KeyStore::new(s).list()?;
            let dir = KeyStore::new(s).dir().to_path_buf();
            let loc = std::path::absolute(&dir)
                .unwrap_or(dir)
                .display()
                .to_string();
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.role.clone(),
                        truncate_left(k.gun.as_deref().unwrap_or_default(), 25),
                        k.id.clone(),
                        truncate_left(&loc, 40),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("\nNo signing keys found.\n");
            } else {
                println!();
                print!("{}", table(&["ROLE", "GUN", "KEY ID", "LOCATION"], &rows));
                println!();
            }
            Outcome::Done
        }
    };
    Ok(outcome)
}

/// The `ecdsa-x509` or `rsa-x509` key of a PEM certificate (bundle).
pub(super) fn certificate_key(pem: &[u8]) -> anyhow::Result<PublicKey> {
    use notary_core::KeyType;
    for (kt, plain) in [
        (KeyType::EcdsaX509, KeyType::Ecdsa),
        (KeyType::RsaX509, KeyType::Rsa),
    ] {
        let k = PublicKey::new(kt, pem.to_vec());
        if k.to_plain().is_ok_and(|p| *p.key_type() == plain) {
            return Ok(k);
        }
    }
    bail!("not a usable ECDSA or RSA certificate")
}

/// A public key from a file: a `CERTIFICATE` (→ `ecdsa-x509`/`rsa-x509`, valid now) or a
/// `PUBLIC KEY` (→ `ecdsa`/`rsa`/`ed25519`).
pub(crate) fn public_key_file(path: &std::path::Path) -> anyhow::Result<PublicKey> {
    use notary_core::KeyType;
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let block = notary_core::pem::decode_one(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    match block.label.as_str() {
        "CERTIFICATE" => {
            // The key is the first certificate re-encoded as Go does (files from openssl
            // may carry "Bag Attributes" text or further certificates around it).
            let der = notary_core::x509::parse_pem_bundle(&pem)?;
            let first = der.first().context("empty certificate file")?;
            let clean = notary_core::x509::to_pem(std::slice::from_ref(first));
            let k =
                certificate_key(clean.as_bytes()).with_context(|| path.display().to_string())?;
            let (_, cert) = x509_parser::parse_x509_certificate(first)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if !cert.validity().is_valid() {
                bail!(
                    "{}: the certificate is expired or not yet valid",
                    path.display()
                );
            }
            Ok(k)
        }
        "PUBLIC KEY" => {
            let (_, spki) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<_>>::from_der(&block.body)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let kt = match spki.algorithm.algorithm.to_id_string().as_str() {
                "1.2.840.10045.2.1" => KeyType::Ecdsa,
                "1.2.840.113549.1.1.1" => KeyType::Rsa,
                "1.3.101.112" => {
                    return Ok(PublicKey::new(
                        KeyType::Ed25519,
                        spki.subject_public_key.data.to_vec(),
                    ));
                }
                other => bail!("{}: unsupported key algorithm {other}", path.display()),
            };
            Ok(PublicKey::new(kt, block.body.to_vec()))
        }
        other => bail!(
            "{}: expected a CERTIFICATE or PUBLIC KEY, found {other}",
            path.display()
        ),
    }
}

/// `notary key rotate` (spec §10.5): root (new key in a new certificate, the new root
/// cross-signed by the old key; asks for confirmation), targets and snapshot (local), or
/// snapshot and timestamp (`-r`, server-managed); publishes the new root right away.
fn rotate(
    s: &Settings,
    gun: &Gun,
    role: &str,
    server_managed: bool,
    key_files: &[PathBuf],
    legacy: u64,
) -> anyhow::Result<()> {
    let role_name = match role {
        "root" | "targets" | "snapshot" | "timestamp" => {
            RoleName::new(role).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        other => {
            bail!("invalid role {other}: only targets, snapshot and timestamp keys can be rotated")
        }
    };
    if role == "timestamp" && !server_managed {
        bail!("notary does not support client-managed timestamp keys: use -r");
    }
    if matches!(role, "root" | "targets") && server_managed {
        bail!("notary does not support server-managed {role} keys");
    }
    if role == "root" {
        println!(
            "Warning: you are about to rotate your root key.\n\nYou must use your old key to sign this root rotation.\nAre you sure you want to proceed?  (yes/no)"
        );
        if !confirmed()? {
            bail!("aborting root key rotation");
        }
    }
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let now = OffsetDateTime::now_utc();
    let repo = fetch_repo(&server, &cache, gun, now, s.pinning.clone(), true)
        .map_err(|e| update_error(s, e))?;
    cache.store(&repo)?;
    let mut editor = RepoEditor::from_repository(&repo);
    let old: Vec<PublicKey> = editor
        .root()
        .roles
        .get(role)
        .map(|r| {
            r.keyids
                .iter()
                .filter_map(|id| editor.root().keys.get(id).cloned())
                .collect()
        })
        .unwrap_or_default();
    let store = KeyStore::new(s);
    let mut pass = Passphrases::default();
    // The current root keys sign the new root (for a root rotation: cross-signing).
    let mut keys = Vec::new();
    if let Some(r) = editor.root().roles.get("root") {
        for id in &r.keyids {
            if let Some(k) = editor.root().keys.get(id) {
                if let Some(kf) = store.load(k.canonical_id()?.as_str(), &mut pass)? {
                    keys.push(kf.key);
                }
            }
        }
    }
    if keys.is_empty() {
        bail!("could not find the root key of {gun}: a key rotation must be signed with it");
    }
    let mut imported = Vec::new();
    for f in key_files {
        let pem = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        imported.push(pass.open(&pem, role, &f.display().to_string())?.key);
    }
    let new_key = if server_managed {
        server.rotate_key(gun, role)?
    } else if role == "root" {
        let k = match imported.pop() {
            Some(k) => k,
            None => PrivateKey::generate(Algorithm::EcdsaP256)?,
        };
        store.add(&k, "root", None, &mut pass)?;
        let cert = notary_core::x509::root_certificate(
            &k,
            gun,
            now,
            now + notary_core::x509::ROOT_CERT_VALIDITY,
        )?;
        keys.push(k);
        cert
    } else {
        let k = match imported.pop() {
            Some(k) => k,
            None => PrivateKey::generate(Algorithm::EcdsaP256)?,
        };
        store.add(&k, role, Some(gun), &mut pass)?;
        k.public().clone()
    };
    editor.rotate_base_role(&role_name, vec![new_key])?;
    keys.extend(signing_keys(&store, &mut pass, &editor, &[])?);
    if legacy > 0 {
        // Root keys of the previous `legacy` root versions, as far as this store has them.
        let current = editor.root().version;
        let mut old_keys = BTreeMap::new();
        for v in current.saturating_sub(legacy).max(1)..current {
            let Some(bytes) = server.get(gun, &format!("{v}.root.json"), 100 << 20)? else {
                continue;
            };
            let old = notary_core::Signed::<notary_core::Root>::parse(bytes)
                .with_context(|| format!("root version {v}"))?;
            let root = old.signed();
            for id in root
                .roles
                .get("root")
                .map(|r| r.keyids.clone())
                .unwrap_or_default()
            {
                if let Some(k) = root.keys.get(&id) {
                    if let Some(kf) = store.load(k.canonical_id()?.as_str(), &mut pass)? {
                        if !keys.iter().any(|p| p.public() == kf.key.public()) {
                            keys.push(kf.key);
                        }
                        old_keys.insert(id.clone(), k.clone());
                    }
                }
            }
        }
        editor.sign_root_with_legacy_keys(old_keys);
    }
    let signed = editor.sign(&KeyRing::from_keys(&keys), now)?;
    server.publish(gun, &signed.files)?;
    // Go drops the replaced keys from the local store (root keys are kept).
    if role != "root" {
        for k in old {
            store.remove(k.canonical_id()?.as_str())?;
        }
    }
    Ok(())
}
