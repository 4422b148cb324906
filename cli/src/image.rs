//! `notary image …`: Docker content trust for docker versions without `docker trust`
//! (spec §12). Same trust directory (`~/.docker/trust`), passphrase variables, notary
//! server choice and effects on the trust data as docker 28's `docker trust` commands, so
//! `DOCKER_CONTENT_TRUST=1 docker pull` accepts what these sign, and the reverse.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use notary_core::repo::{KeyRing, RepoEditor};
use notary_core::update::UpdateError;
use notary_core::{Algorithm, FileMeta, Gun, PrivateKey, PublicKey, Repository, RoleName};
use time::OffsetDateTime;

use crate::client::{
    GlobalOpts, KeyStore, MetadataCache, Passphrases, Server, Settings, fetch_repo,
};
use crate::commands::{gun_arg, public_key_file, signing_keys, table, update_error};

/// `notary image …`
#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Signs an image tag already in its registry (as `docker trust sign`).
    Sign {
        /// REGISTRY/REPOSITORY:TAG.
        reference: String,
    },
    /// Shows the signatures, signers and keys of images (as `docker trust inspect`).
    Inspect {
        /// REGISTRY/REPOSITORY[:TAG] …
        #[arg(required = true)]
        references: Vec<String>,
        /// Human-readable tables instead of JSON.
        #[arg(long)]
        pretty: bool,
    },
    /// Removes the signature of a tag, or of every tag (as `docker trust revoke`).
    Revoke {
        /// REGISTRY/REPOSITORY[:TAG].
        reference: String,
    },
    /// Signers of a repository.
    #[command(subcommand)]
    Signer(SignerCmd),
    /// Signing keys.
    #[command(subcommand)]
    Key(ImageKeyCmd),
}

/// `notary image signer …`
#[derive(Subcommand, Debug)]
pub enum SignerCmd {
    /// Adds a signer (delegation `targets/NAME`, and its keys to `targets/releases`).
    Add {
        /// Signer name.
        name: String,
        /// REGISTRY/REPOSITORY.
        repository: String,
        /// Public key (or certificate) PEM files of the signer.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Removes a signer.
    Remove {
        /// Signer name.
        name: String,
        /// REGISTRY/REPOSITORY.
        repository: String,
    },
}

/// `notary image key …`
#[derive(Subcommand, Debug)]
pub enum ImageKeyCmd {
    /// Generates a signing key NAME; writes NAME.pub.
    Generate {
        /// Signer name.
        name: String,
        /// Directory for NAME.pub.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Loads a private key as signer NAME.
    Load {
        /// Private key PEM.
        file: PathBuf,
        /// Signer name.
        #[arg(long, default_value = "signer")]
        name: String,
    },
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path in that registry.
    pub repo: String,
    /// Tag, if any.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Docker's rules: the first component is a registry when it has a `.` or `:` or is
    /// `localhost`; Docker Hub names get `library/` when they have one component.
    pub fn parse(s: &str) -> anyhow::Result<ImageRef> {
        if s.contains('@') {
            bail!("{s}: digest references cannot be signed or revoked, use a tag");
        }
        let (name, tag) = match s.rfind(':') {
            Some(i) if !s[i..].contains('/') => (&s[..i], Some(s[i + 1..].to_owned())),
            _ => (s, None),
        };
        if name.is_empty() || tag.as_deref() == Some("") {
            bail!("invalid reference {s:?}");
        }
        let (registry, repo) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ if !name.contains('/') => ("docker.io".to_owned(), format!("library/{name}")),
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        if repo.is_empty()
            || !repo
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        {
            bail!("invalid repository name {repo:?} in {s:?}");
        }
        Ok(ImageRef {
            registry,
            repo,
            tag,
        })
    }

    /// The GUN: the fully qualified repository name.
    pub fn gun(&self) -> anyhow::Result<Gun> {
        gun_arg(&format!("{}/{}", self.registry, self.repo))
    }

    fn display(&self) -> String {
        format!("{}/{}", self.registry, self.repo)
    }
}

fn docker_dir() -> PathBuf {
    std::env::var_os("DOCKER_CONFIG").map_or_else(
        || {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join(".docker")
        },
        PathBuf::from,
    )
}

/// Settings as docker chooses them: trust dir `$DOCKER_CONFIG/trust`, the notary server
/// from `DOCKER_CONTENT_TRUST_SERVER` (https only), `https://notary.docker.io` for Docker
/// Hub, else `https://<registry>`; extra CA from `$DOCKER_CONFIG/tls/<notary host>/*.crt`.
/// The global flags still override.
fn docker_settings(g: &GlobalOpts, r: &ImageRef) -> anyhow::Result<Settings> {
    let mut g = g.clone();
    if g.trust_dir.is_none() {
        g.trust_dir = Some(docker_dir().join("trust"));
    }
    if g.server.is_none() {
        g.server = Some(match std::env::var("DOCKER_CONTENT_TRUST_SERVER") {
            Ok(u) if !u.is_empty() => {
                if !u.starts_with("https://") {
                    bail!("valid https URL required for trust server, got {u}");
                }
                u
            }
            _ if r.registry == "docker.io" => "https://notary.docker.io".to_owned(),
            _ => format!("https://{}", r.registry),
        });
    }
    let mut s = Settings::load(&g)?;
    if s.root_ca.is_none() {
        let dir = docker_dir().join("tls").join(s.server_host());
        if let Ok(rd) = std::fs::read_dir(&dir) {
            let mut crts: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect();
            crts.sort();
            s.root_ca = crts.into_iter().next();
        }
    }
    Ok(s)
}

/// A connection to the image's registry (HTTPS, or HTTP on loopback addresses as the
/// docker daemon allows by default, or with `NOTARY_REGISTRY_INSECURE=1`).
fn registry(r: &ImageRef) -> anyhow::Result<Server> {
    let host = r
        .registry
        .rsplit_once(':')
        .map_or(r.registry.as_str(), |(h, _)| h);
    let insecure = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
        || std::env::var("NOTARY_REGISTRY_INSECURE").is_ok_and(|v| v == "1");
    let registry = if r.registry == "docker.io" {
        "registry-1.docker.io".to_owned()
    } else {
        r.registry.clone()
    };
    // As dockerd: a CA installed for the registry (`/etc/docker/certs.d/<host>/ca.crt`,
    // or the CLI's `$DOCKER_CONFIG/tls/<host>/ca.crt`) means it speaks TLS, even on
    // loopback (the all-in-one trusted registry does).
    let docker_config = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    let root_ca = [
        Some(
            PathBuf::from("/etc/docker/certs.d")
                .join(&r.registry)
                .join("ca.crt"),
        ),
        docker_config.map(|d| d.join("tls").join(&r.registry).join("ca.crt")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file());
    let forced_http = std::env::var("NOTARY_REGISTRY_INSECURE").is_ok_and(|v| v == "1");
    let scheme = if forced_http || (insecure && root_ca.is_none()) {
        "http"
    } else {
        "https"
    };
    let s = Settings {
        trust_dir: PathBuf::new(),
        server: format!("{scheme}://{registry}"),
        root_ca: if scheme == "https" { root_ca } else { None },
        client_cert: None,
        skip_verify: false,
        pinning: notary_core::TrustPinning::default(),
    };
    Server::new(&s)
}

/// Runs an image command; returns the exit status.
pub fn run(cmd: ImageCmd, g: &GlobalOpts) -> anyhow::Result<i32> {
    match cmd {
        ImageCmd::Sign { reference } => {
            let r = ImageRef::parse(&reference)?;
            let Some(tag) = r.tag.clone() else {
                bail!("{reference}: give the tag to sign (REPOSITORY:TAG)");
            };
            let (digest, size) = registry(&r)?.manifest(&r.repo, &tag)?;
            let meta = FileMeta {
                custom: None,
                hashes: [(
                    "sha256".to_owned(),
                    notary_core::metadata::Bytes(digest.to_vec()),
                )]
                .into_iter()
                .collect(),
                length: size,
            };
            let s = docker_settings(g, &r)?;
            let mut repo = Session::open(&s, &r)?;
            let roles = match &repo.existing {
                Some(existing) => signable_roles(existing, &tag, &repo.store)?,
                None => vec![RoleName::targets()],
            };
            for role in &roles {
                repo.editor.add_target(role, &tag, meta.clone())?;
            }
            repo.publish(&roles)?;
            println!("Successfully signed {}:{tag}", r.display());
        }
        ImageCmd::Revoke { reference } => {
            let r = ImageRef::parse(&reference)?;
            let s = docker_settings(g, &r)?;
            let mut repo = Session::open(&s, &r)?;
            let Some(existing) = repo.existing.clone() else {
                bail!(
                    "{} does not have trust data for {}",
                    s.server_host(),
                    r.display()
                );
            };
            let released = released_tags(&existing);
            let tags: Vec<String> = match &r.tag {
                Some(t) => {
                    if !released.contains_key(t) {
                        bail!("No signatures found for {}:{t}", r.display());
                    }
                    vec![t.clone()]
                }
                None => released.keys().cloned().collect(),
            };
            if tags.is_empty() {
                bail!("No signed tags in {}", r.display());
            }
            let mut touched = Vec::new();
            for tag in &tags {
                for role in signable_roles(&existing, tag, &repo.store)? {
                    if repo.editor.remove_target(&role, tag)? && !touched.contains(&role) {
                        touched.push(role);
                    }
                }
            }
            repo.publish(&touched)?;
            for tag in tags {
                println!("Successfully deleted signature for {}:{tag}", r.display());
            }
        }
        ImageCmd::Inspect { references, pretty } => {
            let mut all = Vec::new();
            for reference in &references {
                let r = ImageRef::parse(reference)?;
                let s = docker_settings(g, &r)?;
                let repo = crate::commands::load(&s, &r.gun()?)?;
                all.push((r, inspect(&repo)?));
            }
            if pretty {
                for (r, v) in &all {
                    print_pretty(r, v);
                }
            } else {
                let v = serde_json::Value::Array(
                    all.into_iter()
                        .map(|(r, mut v)| {
                            v["Name"] = serde_json::json!(match &r.tag {
                                Some(t) => format!("{}:{t}", r.display()),
                                None => r.display(),
                            });
                            v
                        })
                        .collect(),
                );
                let mut out = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                serde::Serialize::serialize(&v, &mut ser)?;
                println!("{}", String::from_utf8_lossy(&out));
            }
        }
        ImageCmd::Signer(SignerCmd::Add {
            name,
            repository,
            keys,
        }) => {
            check_signer_name(&name)?;
            let r = ImageRef::parse(&repository)?;
            let s = docker_settings(g, &r)?;
            let mut pubs = Vec::new();
            for k in &keys {
                pubs.push(public_key_file(k)?);
            }
            let mut repo = Session::open(&s, &r)?;
            let role =
                RoleName::new(&format!("targets/{name}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            let releases = RoleName::new("targets/releases").map_err(|e| anyhow::anyhow!("{e}"))?;
            repo.editor
                .add_delegation(&role, pubs.clone(), vec![String::new()], 1)?;
            let threshold = repo
                .editor
                .targets(&RoleName::targets())
                .and_then(|t| t.delegation(&releases))
                .map_or(1, |d| d.threshold);
            repo.editor
                .add_delegation(&releases, pubs, vec![String::new()], threshold)?;
            repo.publish(&[RoleName::targets()])?;
            println!("Successfully added signer: {name} to {}", r.display());
        }
        ImageCmd::Signer(SignerCmd::Remove { name, repository }) => {
            check_signer_name(&name)?;
            let r = ImageRef::parse(&repository)?;
            let s = docker_settings(g, &r)?;
            let mut repo = Session::open(&s, &r)?;
            let role =
                RoleName::new(&format!("targets/{name}")).map_err(|e| anyhow::anyhow!("{e}"))?;
            let releases = RoleName::new("targets/releases").map_err(|e| anyhow::anyhow!("{e}"))?;
            let top = repo
                .editor
                .targets(&RoleName::targets())
                .cloned()
                .context("no targets metadata")?;
            let entry = top
                .delegation(&role)
                .with_context(|| format!("No signer {name} for repository {}", r.display()))?;
            let mut ids = Vec::new();
            for id in &entry.keyids {
                if let Some(k) = top.delegations.keys.get(id) {
                    ids.push(k.canonical_id()?.to_string());
                }
            }
            if top.delegation(&releases).is_some() {
                repo.editor.edit_delegation(&releases, &ids, &[], false)?;
            }
            repo.editor.remove_delegation(&role)?;
            repo.publish(&[RoleName::targets()])?;
            println!("Successfully removed {name} from {}", r.display());
        }
        ImageCmd::Key(ImageKeyCmd::Generate { name, dir }) => {
            check_signer_name(&name)?;
            let s = docker_settings(g, &ImageRef::parse("localhost/x")?)?;
            let key = PrivateKey::generate(Algorithm::EcdsaP256)?;
            let mut pass = Passphrases::docker();
            KeyStore::new(&s).add(&key, &name, None, &mut pass)?;
            let pub_pem = notary_core::pem::encode(
                "PUBLIC KEY",
                &[("role", name.as_str())],
                key.public().public_bytes(),
            );
            let path = dir.join(format!("{name}.pub"));
            std::fs::write(&path, pub_pem.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "Successfully generated and loaded private key. Corresponding public key available: {}",
                path.display()
            );
        }
        ImageCmd::Key(ImageKeyCmd::Load { file, name }) => {
            check_signer_name(&name)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&file)
                    .with_context(|| format!("reading {}", file.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    bail!(
                        "private key file {} must not be readable or writable by others",
                        file.display()
                    );
                }
            }
            let s = docker_settings(g, &ImageRef::parse("localhost/x")?)?;
            let pem =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut pass = Passphrases::docker();
            let kf = pass.open(&pem, &name, &file.display().to_string())?;
            KeyStore::new(&s).add(&kf.key, &name, None, &mut pass)?;
            println!("Successfully imported key from {}", file.display());
        }
    }
    Ok(0)
}

fn check_signer_name(name: &str) -> anyhow::Result<()> {
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok {
        bail!("signer name \"{name}\" must match \"^[a-z0-9][a-z0-9\\_\\-]*$\"");
    }
    if name == "releases" {
        bail!("releases is a reserved keyword and cannot be used as signer name");
    }
    Ok(())
}

/// An opened repository: the current state (if any) and an editor; a new repository is
/// initialised as docker does (server-managed snapshot and timestamp).
struct Session<'a> {
    settings: &'a Settings,
    gun: Gun,
    server: Server,
    store: KeyStore,
    pass: Passphrases,
    existing: Option<Repository>,
    editor: RepoEditor,
    /// Keys made or loaded while opening (a new repository's root and targets keys).
    keys: Vec<PrivateKey>,
    now: OffsetDateTime,
}

impl<'a> Session<'a> {
    fn open(settings: &'a Settings, r: &ImageRef) -> anyhow::Result<Session<'a>> {
        let gun = r.gun()?;
        let server = Server::new(settings)?;
        let cache = MetadataCache::new(settings, &gun);
        let now = OffsetDateTime::now_utc();
        let store = KeyStore::new(settings);
        let mut pass = Passphrases::docker();
        // Docker does no trust pinning (trust on first use).
        let pinning = notary_core::TrustPinning::default();
        let (existing, editor, keys) = match fetch_repo(&server, &cache, &gun, now, pinning, true) {
            Ok(repo) => {
                cache.store(&repo)?;
                let editor = RepoEditor::from_repository(&repo);
                (Some(repo), editor, Vec::new())
            }
            Err(UpdateError::NoTrustData { .. }) => {
                // Docker's init: the lexically first root key (or a new one), a new
                // targets key, snapshot and timestamp keys held by the server.
                let timestamp = server.get_key(&gun, "timestamp")?;
                let snapshot = server.get_key(&gun, "snapshot")?;
                let root = store.root_key_or_new(&mut pass)?.1;
                let targets = PrivateKey::generate(Algorithm::EcdsaP256)?;
                store.add(&targets, "targets", Some(&gun), &mut pass)?;
                let editor = RepoEditor::create(
                    gun.clone(),
                    &root,
                    targets.public().clone(),
                    snapshot,
                    timestamp,
                    now,
                )?;
                (None, editor, vec![root, targets])
            }
            Err(e) => return Err(update_error(settings, e)),
        };
        Ok(Session {
            settings,
            gun,
            server,
            store,
            pass,
            existing,
            editor,
            keys,
            now,
        })
    }

    fn publish(mut self, roles: &[RoleName]) -> anyhow::Result<()> {
        let mut keys = std::mem::take(&mut self.keys);
        keys.extend(signing_keys(
            &self.store,
            &mut self.pass,
            &self.editor,
            roles,
        )?);
        let signed = self.editor.sign(&KeyRing::from_keys(&keys), self.now)?;
        if signed.files.is_empty() {
            return Ok(());
        }
        self.server.publish(&self.gun, &signed.files)?;
        let cache = MetadataCache::new(self.settings, &self.gun);
        for (role, bytes) in &signed.files {
            cache.put(role.as_str(), bytes)?;
        }
        Ok(())
    }
}

/// Roles this client may sign `tag` into, as docker chooses them: `targets` when the
/// repository has no delegations; else the direct children of `targets` admitting the tag
/// for which a private key is in the store.
fn signable_roles(repo: &Repository, tag: &str, store: &KeyStore) -> anyhow::Result<Vec<RoleName>> {
    let top = repo
        .role(&RoleName::targets())
        .context("repository without targets metadata")?;
    let delegations = &top.metadata.delegations;
    if delegations.roles.is_empty() {
        return Ok(vec![RoleName::targets()]);
    }
    let held: Vec<String> = store.list()?.into_iter().map(|k| k.id).collect();
    let mut out = Vec::new();
    for d in &delegations.roles {
        if !d.paths.iter().any(|p| tag.starts_with(p.as_str())) {
            continue;
        }
        let mine = d.keyids.iter().any(|id| {
            delegations
                .keys
                .get(id)
                .and_then(|k| k.canonical_id().ok())
                .is_some_and(|c| held.iter().any(|h| h == c.as_str()))
        });
        if mine {
            out.push(d.name.clone());
        }
    }
    if out.is_empty() {
        bail!("no valid signing keys for delegation roles");
    }
    Ok(out)
}

/// Tags signed in `targets/releases` or `targets` (releases first), with their meta.
fn released_tags(repo: &Repository) -> BTreeMap<String, FileMeta> {
    let mut out = BTreeMap::new();
    for role in ["targets/releases", "targets"] {
        if let Some(r) = RoleName::new(role).ok().and_then(|n| repo.role(&n)) {
            for (name, meta) in &r.metadata.targets {
                out.entry(name.clone()).or_insert_with(|| meta.clone());
            }
        }
    }
    out
}

fn key_ids(keys: &[PublicKey]) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut ids = Vec::new();
    for k in keys {
        ids.push(serde_json::json!({"ID": k.canonical_id()?.to_string()}));
    }
    Ok(ids)
}

/// The `docker trust inspect` object of a repository (without `Name`).
fn inspect(repo: &Repository) -> anyhow::Result<serde_json::Value> {
    let sha = |m: &FileMeta| {
        m.hashes
            .get("sha256")
            .map(|h| hex::encode(&h.0))
            .unwrap_or_default()
    };
    let mut signed = Vec::new();
    for (tag, meta) in released_tags(repo) {
        let digest = sha(&meta);
        let mut signers: Vec<String> = repo
            .roles()
            .filter(|(n, _)| n.is_delegation() && n.as_str() != "targets/releases")
            .filter(|(_, r)| {
                r.metadata
                    .targets
                    .get(&tag)
                    .is_some_and(|m| sha(m) == digest)
            })
            .map(|(n, _)| n.as_str().trim_start_matches("targets/").to_owned())
            .collect();
        signers.sort();
        if signers.is_empty() {
            signers.push("Repo Admin".to_owned());
        }
        signed.push(serde_json::json!({"SignedTag": tag, "Digest": digest, "Signers": signers}));
    }
    let top = repo
        .role(&RoleName::targets())
        .context("repository without targets metadata")?;
    let mut signers = Vec::new();
    let mut roles: Vec<_> = top
        .metadata
        .delegations
        .roles
        .iter()
        .filter(|d| d.name.as_str() != "targets/releases")
        .collect();
    roles.sort_by(|a, b| a.name.cmp(&b.name));
    for d in roles {
        let keys: Vec<PublicKey> = d
            .keyids
            .iter()
            .filter_map(|id| top.metadata.delegations.keys.get(id).cloned())
            .collect();
        signers.push(serde_json::json!({
            "Name": d.name.as_str().trim_start_matches("targets/"),
            "Keys": key_ids(&keys)?,
        }));
    }
    let root = repo.root();
    let role_keys = |name: &str| -> Vec<PublicKey> {
        root.roles
            .get(name)
            .map(|r| {
                r.keyids
                    .iter()
                    .filter_map(|id| root.keys.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(serde_json::json!({
        "Name": "",
        "SignedTags": signed,
        "Signers": signers,
        "AdministrativeKeys": [
            {"Name": "Root", "Keys": key_ids(&role_keys("root"))?},
            {"Name": "Repository", "Keys": key_ids(&role_keys("targets"))?},
        ],
    }))
}

/// The strings of a JSON array (optionally of objects' `field`).
fn strings(v: &serde_json::Value, field: Option<&str>) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| match field {
                    Some(f) => x[f].as_str(),
                    None => x.as_str(),
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn print_pretty(r: &ImageRef, v: &serde_json::Value) {
    let name = r.display();
    let text = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_owned();
    let tag_rows: Vec<Vec<String>> = v["SignedTags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                text(&t["SignedTag"]),
                text(&t["Digest"]),
                strings(&t["Signers"], None).join(", "),
            ]
        })
        .collect();
    let signer_rows: Vec<Vec<String>> = v["Signers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let keys: Vec<String> = strings(&s["Keys"], Some("ID"))
                .into_iter()
                .map(|k| k.chars().take(12).collect())
                .collect();
            vec![text(&s["Name"]), keys.join(", ")]
        })
        .collect();
    for (rows, none, title, header) in [
        (
            &tag_rows,
            format!("\nNo signatures for {name}\n"),
            format!("\nSignatures for {name}\n"),
            &["SIGNED TAG", "DIGEST", "SIGNERS"][..],
        ),
        (
            &signer_rows,
            format!("\nNo signers for {name}"),
            format!("\nList of signers and their keys for {name}\n"),
            &["SIGNER", "KEYS"][..],
        ),
    ] {
        if rows.is_empty() {
            println!("{none}");
        } else {
            println!("{title}");
            print!("{}", table(header, rows));
        }
    }
    println!("\nAdministrative keys for {name}\n");
    for k in v["AdministrativeKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let ids = strings(&k["Keys"], Some("ID"));
        println!(
            "  {} Key:\t{}",
            k["Name"].as_str().unwrap_or_default(),
            ids.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_as_docker_does() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repo.as_str(), r.tag),
            ("docker.io", "library/alpine", None)
        );
        let r = ImageRef::parse("user/app:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repo.as_str(), r.tag.as_deref()),
            ("docker.io", "user/app", Some("1.0"))
        );
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repo.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );
        assert_eq!(r.gun().unwrap().as_str(), "127.0.0.1:5000/team/app");
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        assert!(ImageRef::parse("app@sha256:00").is_err());
        assert!(ImageRef::parse("Bad/Name:1").is_err());
        assert!(ImageRef::parse("x:").is_err());
    }

    #[test]
    fn signer_names() {
        assert!(check_signer_name("alice").is_ok());
        assert!(check_signer_name("a-1_b").is_ok());
        assert!(check_signer_name("releases").is_err());
        assert!(check_signer_name("Alice").is_err());
        assert!(check_signer_name("-x").is_err());
        assert!(check_signer_name("").is_err());
    }
}
