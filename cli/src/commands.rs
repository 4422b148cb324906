//! The `notary` commands of Go Notary 0.7 (spec §11): same names, flags, messages,
//! tables and exit codes, on the same trust directory.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use clap::Subcommand;
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::{UpdateError, Updater};
use notary_core::{Algorithm, FileMeta, Gun, PrivateKey, PublicKey, RoleName};
use time::OffsetDateTime;

use crate::client::{
    Change, Changelist, GlobalOpts, KeyStore, MetadataCache, Passphrases, Server, ServerRemote,
    Settings, block_on,
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
    /// Key operations.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Prints the version.
    Version,
}

/// `notary key …`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Lists the signing keys in the trust directory.
    List,
}

fn gun_arg(s: &str) -> anyhow::Result<Gun> {
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
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
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
        cl.add(&Change {
            action: "create".into(),
            role: role.to_string(),
            kind: "target".into(),
            path: target.to_owned(),
            data: Some(data.clone()),
        })?;
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
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut meta = FileMeta::from_bytes(&bytes);
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
                cl.add(&Change {
                    action: "delete".into(),
                    role: role.to_string(),
                    kind: "target".into(),
                    path: target.clone(),
                    data: None,
                })?;
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

/// Go's `truncateWithEllipsis(s, width, true)`: long values keep their end.
fn truncate_left(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_owned();
    }
    let keep: String = chars[chars.len() - (width - 3)..].iter().collect();
    format!("...{keep}")
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

/// Downloads and verifies the repository (spec §10.2), caching what was fetched.
fn load(s: &Settings, gun: &Gun) -> anyhow::Result<notary_core::Repository> {
    let server = Server::new(s)?;
    let cache = MetadataCache::new(s, gun);
    let updater = Updater::new(gun.clone(), OffsetDateTime::now_utc())
        .pinning(s.pinning.clone())
        .cache(cache.engine_cache());
    let mut remote = ServerRemote {
        server: &server,
        gun: gun.clone(),
    };
    let repo = block_on(updater.update(&mut remote)).map_err(|e| update_error(s, e))?;
    for w in repo.warnings() {
        eprintln!("WARN: {w}");
    }
    cache.store(&repo)?;
    Ok(repo)
}

fn update_error(s: &Settings, e: UpdateError) -> anyhow::Error {
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
            let existing = store.list()?.into_iter().find(|k| k.role == "root");
            match existing {
                Some(k) => {
                    println!("Root key found, using: {}", k.id);
                    store
                        .load(&k.id, &mut pass)?
                        .with_context(|| format!("root key {} vanished", k.id))?
                        .key
                }
                None => {
                    let k = PrivateKey::generate(Algorithm::EcdsaP256)?;
                    store.add(&k, "root", None, &mut pass)?;
                    k
                }
            }
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
            let cert = certificate_key(&pem)?;
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

/// Loads, decrypted, the local keys able to sign for the roles of `editor` that need
/// signing (targets roles, and the snapshot if this client holds its key).
fn signing_keys(
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
    let updater = Updater::new(gun.clone(), now)
        .pinning(s.pinning.clone())
        .cache(cache.engine_cache())
        .force_root_download(true);
    let mut remote = ServerRemote {
        server: &server,
        gun: gun.clone(),
    };
    let (mut editor, initial) = match block_on(updater.update(&mut remote)) {
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
