//! The `notary` commands of Go Notary 0.7 (spec §11): same names, flags, messages,
//! tables and exit codes, on the same trust directory.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::UpdateError;
use notary_core::{Algorithm, FileMeta, Gun, PrivateKey, PublicKey, RoleName};
use time::OffsetDateTime;

use crate::client::{
    Change, Changelist, GlobalOpts, KeyStore, MetadataCache, Passphrases, Server, Settings,
    fetch_repo,
};

/// The repository commands.
#[derive(Subcommand, Debug)]
pub enum RepoCmd {
    /// Initializes a local trusted collection.
    Init {
        /// Globally unique name of the collection (e.g. docker.io/library/alpine).
        gun: String,
        /// Root key to initialize the repository with (an encrypted private key PEM).
        #[arg(long)]
        rootkey: Option<PathBuf>,
        /// Certificate for the root key (issued by a CA that clients pin).
        #[arg(long)]
        rootcert: Option<PathBuf>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Adds the file as a target to the trusted collection.
    Add {
        /// The collection.
        gun: String,
        /// Target name.
        target: String,
        /// The file whose hashes and size are signed.
        file: PathBuf,
        /// Delegation roles to add this target to (default: targets).
        #[arg(short = 'r', long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Path to a file of JSON to attach as custom data.
        #[arg(long)]
        custom: Option<PathBuf>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Adds a target by its hashes and size.
    Addhash {
        /// The collection.
        gun: String,
        /// Target name.
        target: String,
        /// Size in bytes (`0x` prefixes allowed).
        size: String,
        /// Hex SHA-256.
        #[arg(long)]
        sha256: Option<String>,
        /// Hex SHA-512.
        #[arg(long)]
        sha512: Option<String>,
        /// Delegation roles to add this target to (default: targets).
        #[arg(short = 'r', long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Path to a file of JSON to attach as custom data.
        #[arg(long)]
        custom: Option<PathBuf>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Removes a target from the trusted collection.
    Remove {
        /// The collection.
        gun: String,
        /// Target name.
        target: String,
        /// Roles to remove the target from (default: targets).
        #[arg(short = 'r', long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Publishes the staged changes of a trusted collection.
    Publish {
        /// The collection.
        gun: String,
    },
    /// Lists the targets of a trusted collection.
    List {
        /// The collection.
        gun: String,
        /// Roles to list (those first win for duplicate names).
        #[arg(short = 'r', long, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Looks up a target.
    Lookup {
        /// The collection.
        gun: String,
        /// Target name.
        target: String,
    },
    /// Verifies that data is a signed target; echoes it on success.
    Verify {
        /// The collection.
        gun: String,
        /// Target name.
        target: String,
        /// Input file (default stdin).
        #[arg(short = 'i', long)]
        input: Option<PathBuf>,
        /// Output file (default stdout).
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// No output on success.
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Shows the staged changes.
    Status {
        /// The collection.
        gun: String,
    },
    /// Drops staged changes.
    Reset {
        /// The collection.
        gun: String,
        /// Drop every staged change.
        #[arg(long)]
        all: bool,
        /// Numbers of the changes to drop (as `status` shows them).
        #[arg(short = 'n', long = "number", value_delimiter = ',')]
        number: Vec<usize>,
    },
    /// Deletes the local trust data of a collection (and the server's with --remote).
    Delete {
        /// The collection.
        gun: String,
        /// Also delete the trust data on the server.
        #[arg(long)]
        remote: bool,
    },
    /// Marks roles to be re-signed at the next publish.
    Witness {
        /// The collection.
        gun: String,
        /// Roles to witness.
        #[arg(required = true)]
        roles: Vec<String>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Key operations.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Delegation operations.
    #[command(subcommand)]
    Delegation(DelegationCmd),
    /// Prints the version.
    Version,
}

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

/// `notary delegation …`
#[derive(Subcommand, Debug)]
pub enum DelegationCmd {
    /// Stages a delegation: keys (certificate or public key PEM files) and paths.
    Add {
        /// The collection.
        gun: String,
        /// Delegation role, e.g. targets/releases.
        role: String,
        /// Certificate or public key files.
        keys: Vec<PathBuf>,
        /// Paths the role may sign (prefixes).
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Every path.
        #[arg(long)]
        all_paths: bool,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Stages the removal of keys or paths from a delegation, or (given only the role)
    /// of the whole delegation.
    Remove {
        /// The collection.
        gun: String,
        /// Delegation role.
        role: String,
        /// Canonical key IDs to remove.
        key_ids: Vec<String>,
        /// Paths to remove.
        #[arg(long, value_delimiter = ',')]
        paths: Vec<String>,
        /// Remove every path.
        #[arg(long)]
        all_paths: bool,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Stages the removal of keys from every delegation of a collection.
    Purge {
        /// The collection.
        gun: String,
        /// Canonical key IDs.
        #[arg(long = "key", value_delimiter = ',', required = true)]
        keys: Vec<String>,
        /// Publish right away.
        #[arg(short = 'p', long)]
        publish: bool,
    },
    /// Lists the delegations of a collection.
    List {
        /// The collection.
        gun: String,
    },
}

pub(crate) fn gun_arg(s: &str) -> anyhow::Result<Gun> {
    Gun::new(s).map_err(|e| anyhow::anyhow!("invalid GUN {s:?}: {e}"))
}

fn role_arg(s: &str) -> anyhow::Result<RoleName> {
    let r = RoleName::new(s).map_err(|e| anyhow::anyhow!("invalid role {s:?}: {e}"))?;
    if !r.is_targets_like() {
        bail!("invalid role {s}: only targets and delegations (targets/…) hold targets");
    }
    Ok(r)
}

fn scopes(roles: &[String]) -> anyhow::Result<Vec<RoleName>> {
    if roles.is_empty() {
        return Ok(vec![RoleName::targets()]);
    }
    roles.iter().map(|r| role_arg(r)).collect()
}

/// Go's tabwriter output: columns padded by 4 spaces, a dashed rule under the header.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}", w = widths[i] + 4));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    out.push_str(&line(header.iter().map(|h| "-".repeat(h.len())).collect()));
    for r in rows {
        out.push_str(&line(r.clone()));
    }
    out
}

/// The changelist JSON of a target (Go's field order: length, hashes, custom).
fn target_change_data(meta: &FileMeta) -> String {
    let hashes: BTreeMap<&String, String> = meta
        .hashes
        .iter()
        .map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(&v.0)))
        .collect();
    let mut s = format!(
        "{{\"length\":{},\"hashes\":{}",
        meta.length,
        serde_json::to_string(&hashes).unwrap_or_else(|_| "{}".into())
    );
    if let Some(c) = &meta.custom {
        s.push_str(&format!(",\"custom\":{c}"));
    }
    s.push('}');
    s
}

fn read_custom(path: &Option<PathBuf>) -> anyhow::Result<Option<serde_json::Value>> {
    match path {
        None => Ok(None),
        Some(p) => {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("{}: not JSON", p.display()))?,
            ))
        }
    }
}

fn stage_targets(
    s: &Settings,
    gun: &Gun,
    target: &str,
    meta: &FileMeta,
    roles: &[String],
) -> anyhow::Result<()> {
    let cl = Changelist::new(s, gun);
    let data = base64::engine::general_purpose::STANDARD.encode(target_change_data(meta));
    for role in scopes(roles)? {
        cl.add(&Change::new(
            "create",
            role.to_string(),
            "target",
            target.to_owned(),
            Some(data.clone()),
        ))?;
    }
    Ok(())
}

/// Runs one command; returns the exit status.
pub fn run(cmd: RepoCmd, g: &GlobalOpts) -> anyhow::Result<i32> {
    let s = Settings::load(g)?;
    match cmd {
        RepoCmd::Version => {
            println!(
                "notary\n Version:    {}\n Git commit: notary-rs\n",
                env!("CARGO_PKG_VERSION")
            );
        }
        RepoCmd::Init {
            gun,
            rootkey,
            rootcert,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            init(&s, &gun, rootkey.as_deref(), rootcert.as_deref())?;
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Add {
            gun,
            target,
            file,
            roles,
            custom,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let mut meta = hash_file(&file)?;
            meta.custom = read_custom(&custom)?;
            stage_targets(&s, &gun, &target, &meta, &roles)?;
            println!(
                "Addition of target \"{target}\" to repository \"{gun}\" staged for next publish."
            );
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Addhash {
            gun,
            target,
            size,
            sha256,
            sha512,
            roles,
            custom,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let length = parse_size(&size)?;
            let mut hashes = BTreeMap::new();
            let mut names = Vec::new();
            for (name, value, len) in [("sha256", &sha256, 32), ("sha512", &sha512, 64)] {
                if let Some(h) = value {
                    let b = hex::decode(h)
                        .ok()
                        .filter(|b| b.len() == len)
                        .with_context(|| format!("invalid {name} hex contents provided"))?;
                    hashes.insert(name.to_owned(), notary_core::metadata::Bytes(b));
                    names.push(name);
                }
            }
            if hashes.is_empty() {
                bail!(
                    "Must specify a GUN, target, byte size of target data, and at least one hash"
                );
            }
            let meta = FileMeta {
                custom: read_custom(&custom)?,
                hashes,
                length,
            };
            stage_targets(&s, &gun, &target, &meta, &roles)?;
            println!(
                "Addition of target \"{target}\" by {} hash to repository \"{gun}\" staged for next publish.",
                names.join(", ")
            );
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Remove {
            gun,
            target,
            roles,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let cl = Changelist::new(&s, &gun);
            for role in scopes(&roles)? {
                cl.add(&Change::new(
                    "delete",
                    role.to_string(),
                    "target",
                    target.clone(),
                    None,
                ))?;
            }
            println!("Removal of {target} from {gun} staged for next publish.");
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Publish { gun } => publish(&s, &gun_arg(&gun)?, false)?,
        RepoCmd::List { gun, roles } => {
            let gun = gun_arg(&gun)?;
            let repo = load(&s, &gun)?;
            let wanted = if roles.is_empty() {
                Vec::new()
            } else {
                scopes(&roles)?
            };
            let mut rows = Vec::new();
            for e in repo.list() {
                if !wanted.is_empty()
                    && !wanted
                        .iter()
                        .any(|w| e.role == w || e.role.as_str().starts_with(&format!("{w}/")))
                {
                    continue;
                }
                let digest = e
                    .meta
                    .hashes
                    .get("sha256")
                    .map(|h| hex::encode(&h.0))
                    .unwrap_or_default();
                rows.push(vec![
                    e.name.to_owned(),
                    digest,
                    e.meta.length.to_string(),
                    e.role.to_string(),
                ]);
            }
            rows.sort();
            if rows.is_empty() {
                println!("\nNo targets present in this repository.\n");
            } else {
                print!(
                    "{}",
                    table(&["NAME", "DIGEST", "SIZE (BYTES)", "ROLE"], &rows)
                );
            }
        }
        RepoCmd::Lookup { gun, target } => {
            let gun = gun_arg(&gun)?;
            let repo = load(&s, &gun)?;
            let e = repo
                .lookup(&target)
                .with_context(|| format!("No trust data for {target}"))?;
            let digest = e
                .meta
                .hashes
                .get("sha256")
                .map(|h| hex::encode(&h.0))
                .unwrap_or_default();
            println!("{} sha256:{digest} {}", e.name, e.meta.length);
        }
        RepoCmd::Verify {
            gun,
            target,
            input,
            output,
            quiet,
        } => {
            let gun = gun_arg(&gun)?;
            let mut data = Vec::new();
            match &input {
                Some(p) => {
                    data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                }
                None => {
                    std::io::stdin().read_to_end(&mut data)?;
                }
            }
            let repo = load(&s, &gun)?;
            let e = repo
                .lookup(&target)
                .with_context(|| format!("No trust data for {target}"))?;
            let actual = FileMeta::from_bytes(&data);
            if e.meta.length != actual.length {
                bail!("data not present in the trusted collection, length mismatch");
            }
            let mut checked = 0;
            for (alg, want) in &e.meta.hashes {
                if let Some(got) = actual.hashes.get(alg) {
                    if got != want {
                        bail!(
                            "data not present in the trusted collection, {alg} checksum did not match"
                        );
                    }
                    checked += 1;
                }
            }
            if checked == 0 {
                bail!("data not present in the trusted collection, no supported hash");
            }
            if !quiet {
                match &output {
                    Some(p) => std::fs::write(p, &data)
                        .with_context(|| format!("writing {}", p.display()))?,
                    None => std::io::stdout().write_all(&data)?,
                }
            }
        }
        RepoCmd::Status { gun } => {
            let gun = gun_arg(&gun)?;
            let changes = Changelist::new(&s, &gun).list()?;
            if changes.is_empty() {
                println!("No unpublished changes for {gun}");
            } else {
                println!("Unpublished changes for {gun}:\n");
                let rows: Vec<Vec<String>> = changes
                    .iter()
                    .enumerate()
                    .map(|(i, (_, c))| {
                        vec![
                            i.to_string(),
                            c.action.clone(),
                            c.role.clone(),
                            c.kind.clone(),
                            c.path.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["#", "ACTION", "SCOPE", "TYPE", "PATH"], &rows)
                );
            }
        }
        RepoCmd::Reset { gun, all, number } => {
            let gun = gun_arg(&gun)?;
            if !all && number.is_empty() {
                bail!("must specify either --all or a list of changes to reset with -n");
            }
            let changes = Changelist::new(&s, &gun).list()?;
            for n in &number {
                if *n >= changes.len() {
                    bail!(
                        "no change number {n} (status shows 0 to {})",
                        changes.len().saturating_sub(1)
                    );
                }
            }
            for (i, (f, _)) in changes.iter().enumerate() {
                if all || number.contains(&i) {
                    std::fs::remove_file(f)?;
                }
            }
            println!("Successfully reset specified changes for repository {gun}");
        }
        RepoCmd::Delete { gun, remote } => {
            let gun = gun_arg(&gun)?;
            println!("Deleting trust data for repository {gun}");
            if remote {
                Server::new(&s)?.delete(&gun)?;
            }
            let dir = s.gun_dir(&gun);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            if remote {
                println!("Successfully deleted local and remote trust data for repository {gun}");
            } else {
                println!("Successfully deleted local trust data for repository {gun}");
            }
        }
        RepoCmd::Witness {
            gun,
            roles,
            publish: p,
        } => {
            let gun = gun_arg(&gun)?;
            let cl = Changelist::new(&s, &gun);
            let roles = scopes(&roles)?;
            for role in &roles {
                cl.add(&Change::new(
                    "update",
                    role.to_string(),
                    "witness",
                    String::new(),
                    None,
                ))?;
            }
            println!(
                "The following roles were successfully marked for witnessing on the next publish:"
            );
            for r in &roles {
                println!("\t- {r}");
            }
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Key(KeyCmd::Rotate {
            gun,
            role,
            server_managed,
            keys,
            legacy,
        }) => {
            let gun = gun_arg(&gun)?;
            if server_managed && !keys.is_empty() {
                bail!("-r and -k cannot be combined: the server makes its own keys");
            }
            rotate(&s, &gun, &role, server_managed, &keys, legacy)?;
            println!("Successfully rotated {role} key for repository {gun}");
        }
        RepoCmd::Key(KeyCmd::Generate {
            algorithm,
            role,
            output,
        }) => {
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
                    KeyStore::new(&s).add(&key, &role, None, &mut pass)?;
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
        }
        RepoCmd::Key(KeyCmd::Export { keys, guns, output }) => {
            if !keys.is_empty() && !guns.is_empty() {
                bail!("Only the --gun or --key flag may be provided, not a mix of the two flags");
            }
            let store = KeyStore::new(&s);
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
        }
        RepoCmd::Key(KeyCmd::Remove { key_id }) => {
            let store = KeyStore::new(&s);
            let k = store.find(&key_id)?;
            let loc = store.dir().display().to_string();
            print!(
                "Are you sure you want to remove {key_id} (role {}) from {loc}?  (yes/no)  ",
                k.role
            );
            if !confirmed()? {
                println!("\nAborting action.");
                return Ok(1);
            }
            store.remove(&key_id)?;
            println!("\nDeleted {key_id} (role {}) from {loc}.", k.role);
        }
        RepoCmd::Key(KeyCmd::Passwd { key_id }) => {
            let store = KeyStore::new(&s);
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
        }
        RepoCmd::Key(KeyCmd::Import { files, role, gun }) => {
            let store = KeyStore::new(&s);
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
        }
        RepoCmd::Delegation(DelegationCmd::Add {
            gun,
            role,
            keys,
            paths,
            all_paths,
            publish: p,
        }) => {
            let gun = gun_arg(&gun)?;
            let role = role_arg(&role)?;
            if !role.is_delegation() {
                bail!("{role} is not a delegation role (targets/<name>)");
            }
            let mut pubs = Vec::new();
            for f in &keys {
                pubs.push(public_key_file(f)?);
            }
            let mut paths = paths;
            if all_paths {
                paths = vec![String::new()];
            }
            if pubs.is_empty() && paths.is_empty() {
                bail!("need at least one key or path for delegation {role}");
            }
            let cl = Changelist::new(&s, &gun);
            let b64 = |v: String| base64::engine::general_purpose::STANDARD.encode(v);
            let mut ids = Vec::new();
            if !pubs.is_empty() {
                let objs: Vec<String> = pubs.iter().map(key_object).collect();
                for k in &pubs {
                    ids.push(k.canonical_id()?.to_string());
                }
                cl.add(&Change {
                    action: "create".into(),
                    role: role.to_string(),
                    kind: "delegation".into(),
                    path: String::new(),
                    data: Some(b64(format!(
                        "{{\"threshold\":1,\"add_keys\":[{}]}}",
                        objs.join(",")
                    ))),
                })?;
            }
            if !paths.is_empty() {
                cl.add(&Change {
                    action: "create".into(),
                    role: role.to_string(),
                    kind: "delegation".into(),
                    path: String::new(),
                    data: Some(b64(format!(
                        "{{\"add_paths\":{}}}",
                        serde_json::to_string(&paths)?
                    ))),
                })?;
            }
            let mut msg = format!("\nAddition of delegation role {role}");
            if !ids.is_empty() {
                msg.push_str(&format!(" with keys [{}]", ids.join(" ")));
            }
            if !paths.is_empty() {
                let shown: Vec<String> = paths
                    .iter()
                    .map(|p| {
                        if p.is_empty() {
                            "\"\" <all paths>".to_owned()
                        } else {
                            p.clone()
                        }
                    })
                    .collect();
                msg.push_str(&format!(", with paths [{}]", shown.join("\n")));
            }
            println!("{msg}, to repository \"{gun}\" staged for next publish.\n");
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Delegation(DelegationCmd::Remove {
            gun,
            role,
            key_ids,
            paths,
            all_paths,
            yes,
            publish: p,
        }) => {
            let gun = gun_arg(&gun)?;
            let role = role_arg(&role)?;
            let cl = Changelist::new(&s, &gun);
            if key_ids.is_empty() && paths.is_empty() && !all_paths {
                if !yes {
                    println!(
                        "Are you sure you want to remove all data for this delegation? (yes/no)"
                    );
                    if !confirmed()? {
                        println!("Aborting action.");
                        return Ok(1);
                    }
                }
                cl.add(&Change::new(
                    "delete",
                    role.to_string(),
                    "delegation",
                    String::new(),
                    None,
                ))?;
                println!(
                    "\nForced removal (including all keys and paths) of delegation role {role} to repository \"{gun}\" staged for next publish.\n"
                );
            } else {
                let mut data = serde_json::Map::new();
                if !key_ids.is_empty() {
                    data.insert("remove_keys".into(), serde_json::json!(key_ids));
                }
                if !paths.is_empty() {
                    data.insert("remove_paths".into(), serde_json::json!(paths));
                }
                if all_paths {
                    data.insert("clear_paths".into(), serde_json::json!(true));
                }
                cl.add(&Change {
                    action: "update".into(),
                    role: role.to_string(),
                    kind: "delegation".into(),
                    path: String::new(),
                    data: Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(serde_json::Value::Object(data).to_string()),
                    ),
                })?;
                let mut msg = format!("\nRemoval of delegation role {role}");
                if !key_ids.is_empty() {
                    msg.push_str(&format!(" with keys [{}]", key_ids.join(" ")));
                }
                if all_paths {
                    msg.push_str(", with all paths");
                } else if !paths.is_empty() {
                    msg.push_str(&format!(", with paths [{}]", paths.join("\n")));
                }
                println!("{msg}, to repository \"{gun}\" staged for next publish.\n");
            }
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Delegation(DelegationCmd::Purge {
            gun,
            keys,
            publish: p,
        }) => {
            let gun = gun_arg(&gun)?;
            Changelist::new(&s, &gun).add(&Change {
                action: "update".into(),
                role: "targets/*".into(),
                kind: "delegation".into(),
                path: String::new(),
                data: Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(serde_json::json!({ "remove_keys": keys }).to_string()),
                ),
            })?;
            println!(
                "Removal of the following keys from all delegations in {gun} staged for next publish:"
            );
            for k in &keys {
                println!("\t- {k}");
            }
            if p {
                publish(&s, &gun, true)?;
            }
        }
        RepoCmd::Delegation(DelegationCmd::List { gun }) => {
            let gun = gun_arg(&gun)?;
            let repo = load(&s, &gun)?;
            let mut entries: Vec<(String, Vec<String>, Vec<String>, u32)> = Vec::new();
            for (_, loaded) in repo.roles() {
                for d in &loaded.metadata.delegations.roles {
                    let mut ids = Vec::new();
                    for id in &d.keyids {
                        match loaded.metadata.delegations.keys.get(id) {
                            Some(k) => ids.push(k.canonical_id()?.to_string()),
                            None => ids.push(id.to_string()),
                        }
                    }
                    let paths: Vec<String> = d
                        .paths
                        .iter()
                        .map(|p| {
                            if p.is_empty() {
                                "\"\" <all paths>".to_owned()
                            } else {
                                p.clone()
                            }
                        })
                        .collect();
                    entries.push((d.name.to_string(), paths, ids, d.threshold));
                }
            }
            entries.sort();
            if entries.is_empty() {
                println!("\nNo delegations present in this repository.\n");
            } else {
                // Multi-valued cells continue on the next lines, as Go's tabwriter shows them.
                let mut rows = Vec::new();
                for (name, paths, ids, threshold) in entries {
                    let n = paths.len().max(ids.len()).max(1);
                    for i in 0..n {
                        rows.push(vec![
                            if i == 0 { name.clone() } else { String::new() },
                            paths.get(i).cloned().unwrap_or_default(),
                            ids.get(i).cloned().unwrap_or_default(),
                            if i == 0 {
                                threshold.to_string()
                            } else {
                                String::new()
                            },
                        ]);
                    }
                }
                println!();
                print!(
                    "{}",
                    table(&["ROLE", "PATHS", "KEY IDS", "THRESHOLD"], &rows)
                );
                println!();
            }
        }
        RepoCmd::Key(KeyCmd::List) => {
            let keys = KeyStore::new(&s).list()?;
            let dir = KeyStore::new(&s).dir().to_path_buf();
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
        }
    }
    Ok(0)
}

/// Reads the answer to a yes/no question (after flushing the question) from stdin.
fn confirmed() -> anyhow::Result<bool> {
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// Go's `truncateWithEllipsis(s, width, true)`: long values keep their end.
fn truncate_left(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_owned();
    }
    let keep: String = chars[chars.len() - (width - 3)..].iter().collect();
    format!("...{keep}")
}

/// Length, SHA-256 and SHA-512 of a file, streamed (any size), with a progress line on
/// a terminal for files over 64 MiB.
fn hash_file(path: &std::path::Path) -> anyhow::Result<FileMeta> {
    use ring::digest::{Context, SHA256, SHA512};
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let show = total > 64 << 20 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (mut a, mut b) = (Context::new(&SHA256), Context::new(&SHA512));
    let mut buf = vec![0u8; 1 << 20];
    let mut length = 0u64;
    let mut shown = 101;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        a.update(&buf[..n]);
        b.update(&buf[..n]);
        length += n as u64;
        if show {
            let pct = (length * 100 / total.max(1)) as usize;
            if pct != shown {
                shown = pct;
                eprint!("\rHashing {}: {pct}%", path.display());
            }
        }
    }
    if show {
        eprintln!();
    }
    let mut hashes = BTreeMap::new();
    hashes.insert(
        "sha256".to_owned(),
        notary_core::metadata::Bytes(a.finish().as_ref().to_vec()),
    );
    hashes.insert(
        "sha512".to_owned(),
        notary_core::metadata::Bytes(b.finish().as_ref().to_vec()),
    );
    Ok(FileMeta {
        custom: None,
        hashes,
        length,
    })
}

/// Sizes as Go's `strconv.ParseInt(s, 0, 64)`: decimal, `0x`, `0o`/`0`, `0b`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let bad = || anyhow::anyhow!("invalid size {s:?}");
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (b, 2)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (o, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    u64::from_str_radix(digits, radix).map_err(|_| bad())
}

/// [`load`] for other modules.
pub(crate) fn load_repo(s: &Settings, gun: &Gun) -> anyhow::Result<notary_core::Repository> {
    load(s, gun)
}

/// Downloads and verifies the repository (spec §10.2), caching what was fetched.
fn load(s: &Settings, gun: &Gun) -> anyhow::Result<notary_core::Repository> {
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let repo = fetch_repo(
        &server,
        &cache,
        gun,
        OffsetDateTime::now_utc(),
        s.pinning.clone(),
        false,
    )
    .map_err(|e| update_error(s, e))?;
    for w in repo.warnings() {
        eprintln!("WARN: {w}");
    }
    cache.store(&repo)?;
    Ok(repo)
}

pub(crate) fn update_error(s: &Settings, e: UpdateError) -> anyhow::Error {
    match e {
        UpdateError::NoTrustData { gun } => {
            anyhow::anyhow!("{} does not have trust data for {gun}", s.server_host())
        }
        other => anyhow::Error::new(other),
    }
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
fn init(
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

/// The `ecdsa-x509` or `rsa-x509` key of a PEM certificate (bundle).
fn certificate_key(pem: &[u8]) -> anyhow::Result<PublicKey> {
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
            let k = certificate_key(&pem).with_context(|| path.display().to_string())?;
            let der = notary_core::x509::parse_pem_bundle(&pem)?;
            let first = der.first().context("empty certificate file")?;
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

/// A key object as Go writes it in changelists (`keytype`, then `keyval` with `public`
/// before `private`).
fn key_object(k: &PublicKey) -> String {
    format!(
        "{{\"keytype\":{},\"keyval\":{{\"public\":\"{}\",\"private\":null}}}}",
        serde_json::Value::from(k.key_type().as_str()),
        base64::engine::general_purpose::STANDARD.encode(k.public_bytes())
    )
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

/// Loads, decrypted, the local keys able to sign for the roles of `editor` that need
/// signing (targets roles, and the snapshot if this client holds its key).
pub(crate) fn signing_keys(
    store: &KeyStore,
    pass: &mut Passphrases,
    editor: &RepoEditor,
    roles: &[RoleName],
) -> anyhow::Result<Vec<PrivateKey>> {
    let root = editor.root();
    let mut ids: Vec<PublicKey> = Vec::new();
    let mut want = |keyids: &[notary_core::KeyId],
                    keys: &BTreeMap<notary_core::KeyId, PublicKey>| {
        for id in keyids {
            if let Some(k) = keys.get(id) {
                ids.push(k.clone());
            }
        }
    };
    for name in ["targets", "snapshot"] {
        if let Some(r) = root.roles.get(name) {
            want(&r.keyids, &root.keys);
        }
    }
    for role in roles.iter().filter(|r| **r != RoleName::targets()) {
        if let Some(parent) = role.parent() {
            if let Some(t) = editor.targets(&parent) {
                if let Some(entry) = t.delegation(role) {
                    want(&entry.keyids, &t.delegations.keys);
                }
            }
        }
    }
    let mut out = Vec::new();
    for k in ids {
        let id = k.canonical_id()?.to_string();
        if let Some(kf) = store.load(&id, pass)? {
            out.push(kf.key);
        }
    }
    Ok(out)
}

/// The data of a delegation change (Go's `TUFDelegation`).
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DelegationChange {
    new_name: Option<String>,
    threshold: Option<u32>,
    add_keys: Vec<PublicKey>,
    remove_keys: Vec<String>,
    add_paths: Vec<String>,
    remove_paths: Vec<String>,
    clear_paths: bool,
}

/// `notary publish` (spec §10.4).
fn publish(s: &Settings, gun: &Gun, auto: bool) -> anyhow::Result<()> {
    if auto {
        println!("Auto-publishing changes to {gun}");
    } else {
        println!("Pushing changes to {gun}");
    }
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let cl = Changelist::new(s, gun);
    let changes = cl.list()?;
    let now = OffsetDateTime::now_utc();
    let (mut editor, initial) = match fetch_repo(&server, &cache, gun, now, s.pinning.clone(), true)
    {
        Ok(repo) => {
            cache.store(&repo)?;
            (RepoEditor::from_repository(&repo), false)
        }
        Err(UpdateError::NoTrustData { .. }) => {
            let (Some(root), Some(targets)) = (cache.get("root"), cache.get("targets")) else {
                bail!(
                    "{} does not have trust data for {gun}: initialize it with `notary init {gun}`",
                    s.server_host()
                );
            };
            let snapshot = cache.get("snapshot");
            (
                RepoEditor::from_unpublished(
                    gun.clone(),
                    &root,
                    &targets,
                    snapshot.as_deref(),
                    now,
                )?,
                true,
            )
        }
        Err(e) => return Err(update_error(s, e)),
    };
    let mut touched = vec![RoleName::targets()];
    for (_, c) in &changes {
        if c.role == "targets/*" && c.kind == "delegation" {
            let data = c.data_bytes()?.context("delegation change without data")?;
            let d: DelegationChange =
                serde_json::from_slice(&data).context("bad delegation data in the changelist")?;
            editor.purge_delegation_keys(&d.remove_keys)?;
            continue;
        }
        let role = RoleName::new(&c.role)
            .map_err(|e| anyhow::anyhow!("bad scope {:?} in the changelist: {e}", c.role))?;
        match (c.action.as_str(), c.kind.as_str()) {
            ("create" | "update", "target") => {
                let data = c.data_bytes()?.context("target change without data")?;
                let meta: FileMeta =
                    serde_json::from_slice(&data).context("bad target data in the changelist")?;
                editor.add_target(&role, &c.path, meta)?;
            }
            ("delete", "target") => {
                editor.remove_target(&role, &c.path)?;
            }
            ("update", "witness") => editor.witness(&role)?,
            ("create" | "update", "delegation") => {
                let data = c.data_bytes()?.context("delegation change without data")?;
                let d: DelegationChange = serde_json::from_slice(&data)
                    .context("bad delegation data in the changelist")?;
                if d.new_name.is_some() {
                    bail!("renaming delegation {} is not supported", c.role);
                }
                if !d.remove_keys.is_empty() || !d.remove_paths.is_empty() || d.clear_paths {
                    editor.edit_delegation(
                        &role,
                        &d.remove_keys,
                        &d.remove_paths,
                        d.clear_paths,
                    )?;
                }
                if d.add_keys.is_empty() && d.add_paths.is_empty() && d.threshold.is_none() {
                    touched.push(role);
                    continue;
                }
                let threshold = match d.threshold {
                    Some(t) => t,
                    None => editor
                        .targets(&role.parent().unwrap_or_else(RoleName::targets))
                        .and_then(|t| t.delegation(&role))
                        .map_or(1, |e| e.threshold),
                };
                editor.add_delegation(&role, d.add_keys, d.add_paths, threshold)?;
            }
            ("delete", "delegation") => editor.remove_delegation(&role)?,
            (action, kind) => bail!(
                "staged change {action} {kind} on {} is not supported by this notary yet",
                c.role
            ),
        }
        touched.push(role);
    }
    if changes.is_empty() && !initial {
        println!("No changes to publish for {gun}");
        return Ok(());
    }
    let store = KeyStore::new(s);
    let mut pass = Passphrases::default();
    let keys = signing_keys(&store, &mut pass, &editor, &touched)?;
    let mut signed = editor.sign(&KeyRing::from_keys(&keys), now)?;
    if initial {
        if let Some(root) = cache.get("root") {
            signed.files.entry(RoleName::root()).or_insert(root);
        }
    }
    server.publish(gun, &signed.files)?;
    cl.clear()?;
    println!("Successfully published changes for repository {gun}");
    Ok(())
}
