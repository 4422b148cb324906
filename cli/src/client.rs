//! The client's local state and transport: configuration (`~/.notary/config.json` and the
//! global flags), the trust directory (key files, metadata cache, changelists, all in Go
//! Notary's formats so Go's `notary` can work on the same directory), passphrases and the
//! HTTPS connection to a Notary server.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use notary_core::keyfile::{KeyFile, PassphraseFlavor, passphrase_env_var};
use notary_core::update::{Cache, FetchRequest, Remote, Repository};
use notary_core::{Gun, KeyId, PrivateKey, RoleName, TrustPinning};
use zeroize::Zeroizing;

/// Go's default server when neither `-s` nor the config file names one.
pub const DEFAULT_SERVER: &str = "https://notary-server:4443";

/// Global options (Go's persistent flags).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GlobalOpts {
    /// Path to the configuration file (default ~/.notary/config.json).
    #[arg(short = 'c', long = "configFile", global = true)]
    pub config_file: Option<PathBuf>,
    /// Directory where the trust data is kept (default ~/.notary).
    #[arg(short = 'd', long = "trustDir", global = true)]
    pub trust_dir: Option<PathBuf>,
    /// URL of the Notary server.
    #[arg(short = 's', long = "server", global = true)]
    pub server: Option<String>,
    /// CA certificate(s) trusted for the server (replaces the system roots).
    #[arg(long = "tlscacert", global = true)]
    pub tls_ca_cert: Option<PathBuf>,
    /// TLS client certificate.
    #[arg(long = "tlscert", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// TLS client key.
    #[arg(long = "tlskey", global = true)]
    pub tls_key: Option<PathBuf>,
    /// Debug output.
    #[arg(short = 'D', long = "debug", global = true)]
    pub debug: bool,
    /// Verbose output.
    #[arg(short = 'v', long = "verbose", global = true)]
    pub verbose: bool,
}

/// Effective settings: flags over the configuration file over defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The trust directory.
    pub trust_dir: PathBuf,
    /// Server URL (no trailing slash).
    pub server: String,
    /// Exclusive CA bundle for the server, if any.
    pub root_ca: Option<PathBuf>,
    /// Client certificate and key.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip server certificate verification (config `skipTLSVerify`).
    pub skip_verify: bool,
    /// Trust pinning.
    pub pinning: TrustPinning,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn expand_tilde(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if p == "~" => home(),
        None => PathBuf::from(p),
    }
}

impl Settings {
    /// Reads the configuration file (a missing default file is fine; a missing explicit
    /// one is an error) and applies the flags.
    pub fn load(g: &GlobalOpts) -> anyhow::Result<Settings> {
        let (path, explicit) = match &g.config_file {
            Some(p) => (p.clone(), true),
            None => (home().join(".notary/config.json"), false),
        };
        let cfg: serde_json::Value = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("could not read config file {}", path.display()))?,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                serde_json::json!({})
            }
            Err(e) => bail!("could not read config file {}: {e}", path.display()),
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let rel = |v: &serde_json::Value| -> Option<PathBuf> {
            v.as_str().filter(|s| !s.is_empty()).map(|s| {
                let p = expand_tilde(s);
                if p.is_relative() { base.join(p) } else { p }
            })
        };
        let rs = &cfg["remote_server"];
        let trust_dir = g
            .trust_dir
            .clone()
            .or_else(|| cfg["trust_dir"].as_str().map(expand_tilde))
            .unwrap_or_else(|| home().join(".notary"));
        let server = g
            .server
            .clone()
            .or_else(|| rs["url"].as_str().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let root_ca = g.tls_ca_cert.clone().or_else(|| rel(&rs["root_ca"]));
        let cert = g.tls_cert.clone().or_else(|| rel(&rs["tls_client_cert"]));
        let key = g.tls_key.clone().or_else(|| rel(&rs["tls_client_key"]));
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => bail!("tls_client_cert and tls_client_key must be given together"),
        };
        let mut pinning = TrustPinning::default();
        let tp = &cfg["trust_pinning"];
        if let Some(certs) = tp["certs"].as_object() {
            for (gun, ids) in certs {
                let ids = ids
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().and_then(|s| KeyId::new(s).ok()))
                            .collect()
                    })
                    .unwrap_or_default();
                pinning.certs.insert(gun.clone(), ids);
            }
        }
        if let Some(ca) = tp["ca"].as_object() {
            for (prefix, file) in ca {
                if let Some(f) = file.as_str() {
                    let pem = std::fs::read(expand_tilde(f))
                        .with_context(|| format!("trust_pinning.ca file {f}"))?;
                    pinning.ca.insert(prefix.clone(), pem);
                }
            }
        }
        pinning.disable_tofu = tp["disable_tofu"].as_bool().unwrap_or(false);
        Ok(Settings {
            trust_dir,
            server,
            root_ca,
            client_cert,
            skip_verify: rs["skipTLSVerify"].as_bool().unwrap_or(false),
            pinning,
        })
    }

    /// `tuf/<gun>/` of the trust directory.
    pub fn gun_dir(&self, gun: &Gun) -> PathBuf {
        self.trust_dir.join("tuf").join(gun.as_str())
    }

    /// `private/`.
    pub fn private_dir(&self) -> PathBuf {
        self.trust_dir.join("private")
    }

    /// The server's host as Go prints it in errors (`host:port`).
    pub fn server_host(&self) -> String {
        let s = self.server.split("://").nth(1).unwrap_or(&self.server);
        s.split('/').next().unwrap_or(s).to_owned()
    }
}

/// Creates `dir` (and parents) with mode 0700.
pub fn mkdir_private(dir: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes a file atomically with mode 0600 (metadata cache, changelist: like Go, not
/// flushed to disk; losing them costs a download or a re-staged change).
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_file(path, data, false)
}

/// Like [`write_private`], flushed to disk before it replaces anything (key files).
pub fn write_private_durable(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    write_file(path, data, true)
}

/// Makes sure `dir` exists and only its owner can enter it (0700), tightening an
/// existing directory with looser bits (the private key directory).
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    mkdir_private(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
                || {
                    format!(
                        "{} is accessible by other users and could not be restricted to its owner",
                        dir.display()
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// Writes `data` to a new temporary file next to `path` (created exclusively, mode 0600,
/// random name), then renames it over `path`.
fn write_file(path: &Path, data: &[u8], durable: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    mkdir_private(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let rng = ring::rand::SystemRandom::new();
    let (tmp, mut f) = {
        let mut attempt = 0;
        loop {
            let mut r = [0u8; 8];
            ring::rand::SecureRandom::fill(&rng, &mut r)
                .map_err(|_| anyhow::anyhow!("no randomness for a temporary file name"))?;
            let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(r)));
            let mut opts = std::fs::OpenOptions::new();
            // create_new: O_CREAT|O_EXCL, never follows or reuses what is already there.
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("writing {}", tmp.display()));
                }
            }
        }
    };
    let written = f
        .write_all(data)
        .and_then(|()| if durable { f.sync_all() } else { Ok(()) });
    drop(f);
    let result = written.and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

// ------------------------------------------------------------------------------------
// Passphrases

/// Passphrases given during this process, by (docker flavour, alias).
static PROCESS_CACHE: std::sync::Mutex<BTreeMap<(bool, String), Zeroizing<String>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Go's passphrase retriever for the `notary` CLI: environment variables by alias
/// (spec §9.3), else prompts on the terminal; answers cached per alias.
#[derive(Default)]
pub struct Passphrases {
    cache: BTreeMap<String, Zeroizing<String>>,
    /// `key passwd`: new passphrases come from `NOTARY_NEW_PASSPHRASE` or a prompt, not
    /// from the variables that opened the key.
    new_only: bool,
    /// Docker's variables and prompt names (`notary image …`).
    docker: bool,
}

impl Passphrases {
    /// Docker's retriever: `DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE` and
    /// `DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE`, prompts naming `root`/`repository`.
    pub fn docker() -> Self {
        Passphrases {
            docker: true,
            ..Self::default()
        }
    }

    fn env(&self, alias: &str) -> Option<Zeroizing<String>> {
        let var = if self.new_only {
            "NOTARY_NEW_PASSPHRASE"
        } else if self.docker {
            passphrase_env_var(alias, PassphraseFlavor::Docker)
        } else {
            passphrase_env_var(alias, PassphraseFlavor::Notary)
        };
        std::env::var(var).ok().map(Zeroizing::new)
    }

    /// New passphrases only from `NOTARY_NEW_PASSPHRASE` or the terminal.
    pub fn forget_env(&mut self) {
        self.new_only = true;
        self.cache.clear();
    }

    /// Answers are remembered per alias for the whole process (as Go does: `init -p`
    /// asks once per key), except new passphrases of `key passwd`.
    fn cached(&self, alias: &str) -> Option<Zeroizing<String>> {
        if self.new_only {
            return self.cache.get(alias).cloned();
        }
        PROCESS_CACHE
            .lock()
            .ok()
            .and_then(|c| c.get(&(self.docker, alias.to_owned())).cloned())
    }

    fn remember(&mut self, alias: &str, p: &Zeroizing<String>) {
        if self.new_only {
            self.cache.insert(alias.to_owned(), p.clone());
        } else if let Ok(mut c) = PROCESS_CACHE.lock() {
            c.insert((self.docker, alias.to_owned()), p.clone());
        }
    }

    fn display_alias<'a>(&self, alias: &'a str) -> &'a str {
        if self.docker && alias != "root" {
            "repository"
        } else {
            alias
        }
    }

    /// The passphrase to encrypt a new key of `alias`.
    pub fn for_new_key(&mut self, alias: &str, key_id: &str) -> anyhow::Result<Zeroizing<String>> {
        if let Some(p) = self.cached(alias).as_ref() {
            return Ok(p.clone());
        }
        if let Some(p) = self.env(alias) {
            self.remember(alias, &p);
            return Ok(p);
        }
        require_tty()?;
        if alias == "root" {
            eprintln!(
                "You are about to create a new root signing key passphrase. This passphrase\nwill be used to protect the most sensitive key in your signing system. Please\nchoose a long, complex passphrase and be careful to keep the password and the\nkey file itself secure and backed up. It is highly recommended that you use a\npassword manager to generate the passphrase and keep it safe. There will be no\nway to recover this key. You can find the key in your config directory."
            );
        }
        let short = &key_id[..key_id.len().min(7)];
        for _ in 0..3 {
            let p = Zeroizing::new(rpassword::prompt_password(format!(
                "Enter passphrase for new {} key with ID {short}: ",
                self.display_alias(alias)
            ))?);
            if p.chars().count() < 8 {
                eprintln!(
                    "Passphrase is too short. Please use a password manager to generate and store a good random passphrase."
                );
                continue;
            }
            let again = Zeroizing::new(rpassword::prompt_password(format!(
                "Repeat passphrase for new {} key with ID {short}: ",
                self.display_alias(alias)
            ))?);
            if *again != *p {
                eprintln!("Passphrases do not match. Please retry.");
                continue;
            }
            self.remember(alias, &p);
            return Ok(p);
        }
        bail!("too many attempts")
    }

    /// Decrypts a key file, asking for the passphrase of `alias` as Go does.
    pub fn open(&mut self, pem: &[u8], alias: &str, key_id: &str) -> anyhow::Result<KeyFile> {
        if !KeyFile::is_encrypted(pem)? {
            return Ok(KeyFile::decode(pem, None)?);
        }
        if let Some(p) = self.cached(alias) {
            if let Ok(k) = KeyFile::decode(pem, Some(&p)) {
                return Ok(k);
            }
        }
        if let Some(p) = self.env(alias) {
            return match KeyFile::decode(pem, Some(&p)) {
                Ok(k) => {
                    self.remember(alias, &p);
                    Ok(k)
                }
                Err(notary_core::keyfile::KeyFileError::WrongPassphrase) => bail!(
                    "could not decrypt the {alias} key {key_id}: wrong passphrase in {}",
                    passphrase_env_var(alias, PassphraseFlavor::Notary)
                ),
                Err(e) => Err(e.into()),
            };
        }
        require_tty()?;
        let short = &key_id[..key_id.len().min(7)];
        for _ in 0..3 {
            let p = Zeroizing::new(rpassword::prompt_password(format!(
                "Enter passphrase for {} key with ID {short}: ",
                self.display_alias(alias)
            ))?);
            match KeyFile::decode(pem, Some(&p)) {
                Ok(k) => {
                    self.remember(alias, &p);
                    return Ok(k);
                }
                Err(notary_core::keyfile::KeyFileError::WrongPassphrase) => {
                    eprintln!("Passphrase incorrect. Please retry.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        bail!("could not decrypt the {alias} key {key_id}: too many passphrase attempts")
    }
}

fn require_tty() -> anyhow::Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!(
            "Please either use environment variables or STDIN with a terminal to provide key passphrases"
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------
// Key store: `private/<canonical id>.key`

/// One key file, read without decrypting it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Canonical key ID (the file name).
    pub id: String,
    /// `role` header.
    pub role: String,
    /// `gun` header.
    pub gun: Option<String>,
}

/// The key files of a trust directory.
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// `private/` of `settings`.
    pub fn new(settings: &Settings) -> KeyStore {
        KeyStore {
            dir: settings.private_dir(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every key file (sorted by GUN, then role, then ID, as Go lists them).
    pub fn list(&self) -> anyhow::Result<Vec<StoredKey>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        for entry in rd {
            let path = entry?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".key"))
                .map(str::to_owned)
            else {
                continue;
            };
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(block) = notary_core::pem::decode_one(&bytes) else {
                continue;
            };
            out.push(StoredKey {
                id,
                role: block.header("role").unwrap_or("").to_owned(),
                gun: block.header("gun").map(str::to_owned),
            });
        }
        out.sort_by(|a, b| (&a.gun, &a.role, &a.id).cmp(&(&b.gun, &b.role, &b.id)));
        Ok(out)
    }

    /// The key file with canonical ID `id` (headers only).
    pub fn find(&self, id: &str) -> anyhow::Result<StoredKey> {
        self.list()?
            .into_iter()
            .find(|k| k.id == id)
            .with_context(|| format!("key {id} not found"))
    }

    /// The lexically first root key of the store (with its ID), or a new one.
    pub fn root_key_or_new(
        &self,
        pass: &mut Passphrases,
    ) -> anyhow::Result<(Option<String>, PrivateKey)> {
        let first = self
            .list()?
            .into_iter()
            .filter(|k| k.role == "root")
            .min_by(|a, b| a.id.cmp(&b.id));
        if let Some(k) = first {
            let kf = self
                .load(&k.id, pass)?
                .with_context(|| format!("root key {} vanished", k.id))?;
            return Ok((Some(k.id), kf.key));
        }
        let k = PrivateKey::generate(notary_core::Algorithm::EcdsaP256)?;
        self.add(&k, "root", None, pass)?;
        Ok((None, k))
    }

    /// The key with canonical ID `id`, decrypted.
    pub fn load(&self, id: &str, pass: &mut Passphrases) -> anyhow::Result<Option<KeyFile>> {
        let path = self.dir.join(format!("{id}.key"));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let role = notary_core::pem::decode_one(&bytes)
            .ok()
            .and_then(|b| b.header("role").map(str::to_owned))
            .unwrap_or_default();
        Ok(Some(pass.open(&bytes, &role, id)?))
    }

    /// Deletes a key file (if present).
    pub fn remove(&self, id: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(self.dir.join(format!("{id}.key"))) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores a key encrypted under the passphrase for `role` (`gun` header for base
    /// roles other than root, as Go writes it). Returns its canonical ID.
    pub fn add(
        &self,
        key: &PrivateKey,
        role: &str,
        gun: Option<&Gun>,
        pass: &mut Passphrases,
    ) -> anyhow::Result<String> {
        let id = key.public().canonical_id()?.to_string();
        let p = pass.for_new_key(role, &id)?;
        let gun = match role {
            "targets" | "snapshot" | "timestamp" => gun,
            _ => None,
        };
        let pem = KeyFile::encode(key, role, gun, Some(&p))?;
        ensure_private_dir(&self.dir)?;
        write_private_durable(&self.dir.join(format!("{id}.key")), pem.as_bytes())?;
        Ok(id)
    }
}

// ------------------------------------------------------------------------------------
// Metadata cache: `tuf/<gun>/metadata/<role>.json`

/// The cached metadata of one GUN.
pub struct MetadataCache {
    dir: PathBuf,
}

impl MetadataCache {
    /// `tuf/<gun>/metadata/`.
    pub fn new(settings: &Settings, gun: &Gun) -> Self {
        MetadataCache {
            dir: settings.gun_dir(gun).join("metadata"),
        }
    }

    fn path(&self, role: &str) -> PathBuf {
        self.dir.join(format!("{role}.json"))
    }

    /// A cached file.
    pub fn get(&self, role: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(role)).ok()
    }

    /// Stores a file (not rewritten when unchanged).
    pub fn put(&self, role: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(role);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        write_private(&path, bytes)
    }

    /// What the update engine starts from.
    pub fn engine_cache(&self) -> Cache {
        let mut c = Cache {
            root: self.get("root"),
            timestamp: self.get("timestamp"),
            snapshot: self.get("snapshot"),
            targets: BTreeMap::new(),
        };
        if let Some(t) = self.get("targets") {
            c.targets.insert(RoleName::targets(), t);
        }
        let deleg = self.dir.join("targets");
        let mut stack = vec![deleg];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(rel) = p
                    .strip_prefix(&self.dir)
                    .ok()
                    .and_then(|r| r.to_str())
                    .and_then(|r| r.strip_suffix(".json"))
                {
                    if let (Ok(role), Ok(b)) = (RoleName::new(rel), std::fs::read(&p)) {
                        c.targets.insert(role, b);
                    }
                }
            }
        }
        c
    }

    /// Writes every file of a verified repository.
    pub fn store(&self, repo: &Repository) -> anyhow::Result<()> {
        self.put("root", repo.root().file_bytes())?;
        self.put("timestamp", repo.timestamp().file_bytes())?;
        self.put("snapshot", repo.snapshot().file_bytes())?;
        for (name, role) in repo.roles() {
            self.put(name.as_str(), role.metadata.file_bytes())?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------
// Changelist: `tuf/<gun>/changelist/<%020d nanos>_<uuid>.change`

/// One staged change, in Go's JSON shape (fields in Go's order).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct Change {
    /// `create`, `update`, `delete`.
    pub action: String,
    /// The scope: `targets`, `targets/x`, `root`.
    pub role: String,
    /// `target`, `delegation`, `witness`, `role`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Target name (or `""`).
    pub path: String,
    /// Base64 of the inner JSON, or null.
    pub data: Option<String>,
}

impl Change {
    /// A change (`role` is the scope).
    pub fn new(
        action: &str,
        role: impl ToString,
        kind: &str,
        path: impl ToString,
        data: Option<String>,
    ) -> Change {
        Change {
            action: action.to_owned(),
            role: role.to_string(),
            kind: kind.to_owned(),
            path: path.to_string(),
            data,
        }
    }

    /// The decoded `data`.
    pub fn data_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        self.data
            .as_deref()
            .map(|d| base64::engine::general_purpose::STANDARD.decode(d))
            .transpose()
            .context("changelist data is not base64")
    }
}

/// The changelist of one GUN.
pub struct Changelist {
    dir: PathBuf,
}

impl Changelist {
    /// `tuf/<gun>/changelist/`.
    pub fn new(settings: &Settings, gun: &Gun) -> Self {
        Changelist {
            dir: settings.gun_dir(gun).join("changelist"),
        }
    }

    /// Changes in application order (file-name order), with their files.
    pub fn list(&self) -> anyhow::Result<Vec<(PathBuf, Change)>> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "change"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        files.sort();
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(&f)?;
            let c: Change = serde_json::from_slice(&bytes)
                .with_context(|| format!("corrupt change file {}", f.display()))?;
            out.push((f, c));
        }
        Ok(out)
    }

    /// Stages a change.
    pub fn add(&self, change: &Change) -> anyhow::Result<()> {
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let mut u = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut u)
            .map_err(|_| anyhow::anyhow!("random"))?;
        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        let h = hex::encode(u);
        let name = format!(
            "{nanos:020}_{}-{}-{}-{}-{}.change",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        );
        write_private(&self.dir.join(name), &serde_json::to_vec(change)?)
    }

    /// Deletes every staged change.
    pub fn clear(&self) -> anyhow::Result<()> {
        for (f, _) in self.list()? {
            std::fs::remove_file(&f)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------
// HTTPS to the server

/// An HTTP(S) connection to a Notary server, answering Docker token-auth challenges
/// (spec §7.5): on a 401 with `Bearer realm=…,service=…,scope=…` it asks the realm for a
/// token (with the user's credentials when it has some) and retries.
pub struct Server {
    agent: ureq::Agent,
    base: String,
    host: String,
    /// The user's credentials for `host`, looked up at the first token challenge.
    credentials: std::cell::OnceCell<Option<Zeroizing<String>>>,
    token: std::cell::RefCell<Option<Zeroizing<String>>>,
}

/// What a request carries.
enum Body<'a> {
    None,
    Bytes(&'a [u8], &'a str),
    /// A GET with an `Accept` header.
    Accept(&'a str),
}

/// `Basic` credentials for `host`: `NOTARY_AUTH` (base64 `user:pass`), else the docker
/// configuration (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): `auths`, or a
/// credential helper (`credHelpers`, `credsStore`).
fn credentials_for(host: &str) -> Option<Zeroizing<String>> {
    if let Ok(a) = std::env::var("NOTARY_AUTH") {
        if !a.is_empty() {
            return Some(Zeroizing::new(a));
        }
    }
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".docker"));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).ok()?).ok()?;
    let keys = [
        host.to_owned(),
        format!("https://{host}"),
        format!("http://{host}"),
    ];
    for k in &keys {
        if let Some(a) = cfg["auths"][k.as_str()]["auth"]
            .as_str()
            .filter(|a| !a.is_empty())
        {
            return Some(Zeroizing::new(a.to_owned()));
        }
    }
    let helper = cfg["credHelpers"][host]
        .as_str()
        .or_else(|| cfg["credsStore"].as_str())?;
    let mut child = std::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    {
        use std::io::Write as _;
        child.stdin.take()?.write_all(host.as_bytes()).ok()?;
    }
    let out = child.wait_with_output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let (u, p) = (v["Username"].as_str()?, v["Secret"].as_str()?);
    Some(Zeroizing::new(
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")),
    ))
}

/// Whether Basic credentials may be sent to this token realm: only over https, or over
/// plain http to a loopback host (127.0.0.0/8, ::1, `localhost`).
fn realm_accepts_credentials(realm: &str) -> bool {
    let Ok(uri) = realm.parse::<ureq::http::Uri>() else {
        return false;
    };
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => uri.host().is_some_and(is_loopback_host),
        _ => false,
    }
}

/// `localhost`, 127.0.0.0/8, `::1` (also IPv4-mapped), with or without IPv6 brackets.
fn is_loopback_host(host: &str) -> bool {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => v4.is_loopback(),
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge.
fn bearer_challenge(h: &str) -> Option<BTreeMap<String, String>> {
    let rest = h
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| h.trim().strip_prefix("bearer "))?;
    let mut out = BTreeMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (k, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(
            k.trim().trim_start_matches(',').trim().to_owned(),
            v.to_owned(),
        );
        s = next.trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Transport errors (Go's messages where they matter to users).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Could not talk to the server at all.
    #[error("could not reach {host}: {cause}")]
    Unreachable {
        /// host:port.
        host: String,
        /// Cause.
        cause: String,
    },
    /// The server answered with an error.
    #[error("trust server returned {status}{detail}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error detail from the body.
        detail: String,
    },
    /// Authentication failed.
    #[error("you are not authorized to perform this operation: server returned 401.")]
    Unauthorized,
    /// The token service refused us.
    #[error("the token service refused a token (HTTP {status}){}", if *has_credentials { "" } else { ": set NOTARY_AUTH to base64(user:password) or log in with docker login" })]
    TokenRefused {
        /// HTTP status of the realm.
        status: u16,
        /// Whether credentials were sent.
        has_credentials: bool,
    },
    /// The challenge names a token realm that must not receive the user's credentials.
    #[error(
        "refusing to send credentials to the token service {realm}: it is plain http on a host that is not loopback (the server should name an https realm)"
    )]
    InsecureRealm {
        /// The realm of the challenge.
        realm: String,
    },
    /// Body larger than allowed.
    #[error("trust server returned a bad response.")]
    TooLarge,
}

impl Server {
    /// Prepares a connection per `settings` (TLS roots, client certificate).
    pub fn new(settings: &Settings) -> anyhow::Result<Server> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey as TlsKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &settings.root_ca {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                bail!("no certificate in {}", ca.display());
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let Some((c, k)) = &settings.client_cert {
            let cpem = std::fs::read(c).with_context(|| format!("reading {}", c.display()))?;
            let kpem = Zeroizing::new(
                std::fs::read(k).with_context(|| format!("reading {}", k.display()))?,
            );
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&cpem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            let key =
                TlsKey::from_pem(&kpem).with_context(|| format!("reading {}", k.display()))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&certs, key)));
        }
        if settings.skip_verify {
            tls = tls.disable_verification(true);
        }
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            .http_status_as_error(false)
            // Per-phase deadlines; none on name resolution, which ureq would otherwise run
            // on a new thread for every request.
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .timeout_send_request(Some(std::time::Duration::from_secs(60)))
            .timeout_send_body(Some(std::time::Duration::from_secs(120)))
            .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
            .timeout_recv_body(Some(std::time::Duration::from_secs(120)))
            .user_agent("notary-rs")
            // Never carry an Authorization header to a redirect's target (ureq's default).
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .build()
            .new_agent();
        let host = settings.server_host();
        Ok(Server {
            agent,
            base: settings.server.clone(),
            credentials: std::cell::OnceCell::new(),
            host,
            token: std::cell::RefCell::new(None),
        })
    }

    fn send_once(
        &self,
        method: &str,
        url: &str,
        body: &Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, TransportError> {
        let token = self.token.borrow().clone();
        let auth = token.map(|t| format!("Bearer {}", t.as_str()));
        let r = match (method, body) {
            ("GET", _) => {
                let mut b = self.agent.get(url);
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                if let Body::Accept(accept) = body {
                    b = b.header("Accept", *accept);
                }
                b.call()
            }
            ("DELETE", _) => {
                let mut b = self.agent.delete(url);
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                b.call()
            }
            (_, Body::None | Body::Accept(_)) => {
                let mut b = self.agent.post(url);
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                b.send_empty()
            }
            (_, Body::Bytes(bytes, ctype)) => {
                let mut b = self.agent.post(url).header("Content-Type", *ctype);
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                b.send(*bytes)
            }
        };
        r.map_err(|e| self.unreachable(e))
    }

    /// Sends a request; on a Bearer challenge gets a token and sends it again.
    fn send(
        &self,
        method: &str,
        url: &str,
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>, TransportError> {
        let resp = self.send_once(method, url, &body)?;
        tracing::debug!(method, url, status = resp.status().as_u16(), "HTTP");
        if resp.status().as_u16() != 401 {
            return Ok(resp);
        }
        let Some(challenge) = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_challenge)
        else {
            return Err(TransportError::Unauthorized);
        };
        tracing::debug!(
            realm = challenge.get("realm").map(String::as_str),
            scope = challenge.get("scope").map(String::as_str),
            "token challenge"
        );
        let token = self.fetch_token(&challenge)?;
        *self.token.borrow_mut() = Some(token);
        let resp = self.send_once(method, url, &body)?;
        if resp.status().as_u16() == 401 {
            return Err(TransportError::Unauthorized);
        }
        Ok(resp)
    }

    /// The user's credentials for the server (looked up once).
    fn credentials(&self) -> Option<&Zeroizing<String>> {
        self.credentials
            .get_or_init(|| credentials_for(&self.host))
            .as_ref()
    }

    /// GET `realm?service=…&scope=…` with Basic credentials when known; credentials go
    /// only to https realms or plain-http ones on loopback.
    fn fetch_token(
        &self,
        c: &BTreeMap<String, String>,
    ) -> Result<Zeroizing<String>, TransportError> {
        let realm = c.get("realm").ok_or(TransportError::Unauthorized)?;
        let credentials = self.credentials();
        if credentials.is_some() && !realm_accepts_credentials(realm) {
            return Err(TransportError::InsecureRealm {
                realm: realm.clone(),
            });
        }
        let enc = |v: &str| {
            v.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        };
        let mut q = Vec::new();
        for k in ["service", "scope"] {
            if let Some(v) = c.get(k) {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        let url = if q.is_empty() {
            realm.clone()
        } else {
            format!(
                "{realm}{}{}",
                if realm.contains('?') { "&" } else { "?" },
                q.join("&")
            )
        };
        let mut b = self.agent.get(&url);
        if let Some(cred) = credentials {
            b = b.header("Authorization", format!("Basic {}", cred.as_str()));
        }
        let resp = b.call().map_err(|e| self.unreachable(e))?;
        if resp.status().as_u16() != 200 {
            return Err(TransportError::TokenRefused {
                status: resp.status().as_u16(),
                has_credentials: credentials.is_some(),
            });
        }
        let body = Self::read_body(resp, 1 << 20)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| TransportError::TooLarge)?;
        v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .map(|t| Zeroizing::new(t.to_owned()))
            .ok_or(TransportError::TokenRefused {
                status: 200,
                has_credentials: credentials.is_some(),
            })
    }

    fn url(&self, gun: &Gun, file: &str) -> String {
        format!("{}/v2/{}/_trust/tuf/{file}", self.base, gun.as_str())
    }

    fn unreachable(&self, e: ureq::Error) -> TransportError {
        TransportError::Unreachable {
            host: self.host.clone(),
            cause: e.to_string(),
        }
    }

    fn read_body(
        resp: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<Vec<u8>, TransportError> {
        if let Some(len) = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > limit {
                return Err(TransportError::TooLarge);
            }
        }
        let mut out = Vec::new();
        resp.into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| TransportError::Unreachable {
                host: String::new(),
                cause: e.to_string(),
            })?;
        if out.len() as u64 > limit {
            return Err(TransportError::TooLarge);
        }
        Ok(out)
    }

    fn status_error(resp: ureq::http::Response<ureq::Body>) -> TransportError {
        let status = resp.status().as_u16();
        if status == 401 {
            return TransportError::Unauthorized;
        }
        let body = Self::read_body(resp, 1024).unwrap_or_default();
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["errors"][0]["message"].as_str().map(|m| {
                    let d = &v["errors"][0]["detail"];
                    if d.is_null() {
                        format!(": {m}")
                    } else {
                        format!(": {m} {d}")
                    }
                })
            })
            .unwrap_or_default();
        TransportError::Status { status, detail }
    }

    /// GET a metadata file; `None` on 404.
    pub fn get(
        &self,
        gun: &Gun,
        file: &str,
        limit: u64,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        let resp = self.send("GET", &self.url(gun, file), Body::None)?;
        match resp.status().as_u16() {
            200 => Self::read_body(resp, limit).map(Some),
            404 => Ok(None),
            _ => Err(Self::status_error(resp)),
        }
    }

    /// GET `<role>.key`: the server-held public key of a role.
    pub fn get_key(&self, gun: &Gun, role: &str) -> anyhow::Result<notary_core::PublicKey> {
        let body = self
            .get(gun, &format!("{role}.key"), 256 * 1024)?
            .with_context(|| format!("the server holds no {role} key for {gun}"))?;
        serde_json::from_slice(&body).context("bad key from the server")
    }

    /// POST `<role>.key`: the server rotates to a new key and returns it.
    pub fn rotate_key(&self, gun: &Gun, role: &str) -> anyhow::Result<notary_core::PublicKey> {
        let resp = self.send("POST", &self.url(gun, &format!("{role}.key")), Body::None)?;
        if resp.status().as_u16() != 200 {
            return Err(Self::status_error(resp).into());
        }
        let body = Self::read_body(resp, 256 * 1024)?;
        serde_json::from_slice(&body).context("bad key from the server")
    }

    /// The atomic multipart update.
    pub fn publish(
        &self,
        gun: &Gun,
        files: &BTreeMap<RoleName, Vec<u8>>,
    ) -> Result<(), TransportError> {
        let mut u = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut u);
        let boundary = hex::encode(u);
        let mut body = Vec::new();
        for (role, bytes) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let ctype = format!("multipart/form-data; boundary={boundary}");
        let resp = self.send("POST", &self.url(gun, ""), Body::Bytes(&body, &ctype))?;
        if resp.status().as_u16() == 200 {
            Ok(())
        } else {
            Err(Self::status_error(resp))
        }
    }

    /// A registry manifest (this connection pointing at a registry): digest (from
    /// `Docker-Content-Digest`, checked against the body) and size.
    pub fn manifest(&self, repo: &str, reference: &str) -> anyhow::Result<([u8; 32], u64)> {
        const ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.send("GET", &url, Body::Accept(ACCEPT))?;
        match resp.status().as_u16() {
            200 => {}
            404 => bail!(
                "{}/{repo}:{reference}: no such manifest in the registry",
                self.host
            ),
            _ => return Err(Self::status_error(resp).into()),
        }
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Self::read_body(resp, 4 << 20)?;
        let digest = notary_core::crypto::sha256(&body);
        if let Some(h) = header {
            if h != format!("sha256:{}", hex::encode(digest)) {
                bail!("the registry's digest {h} does not match the manifest it sent");
            }
        }
        Ok((digest, body.len() as u64))
    }

    /// DELETE of the whole GUN.
    pub fn delete(&self, gun: &Gun) -> Result<(), TransportError> {
        let resp = self.send("DELETE", &self.url(gun, ""), Body::None)?;
        match resp.status().as_u16() {
            200 | 404 => Ok(()),
            _ => Err(Self::status_error(resp)),
        }
    }
}

/// [`Remote`] over a [`Server`] for the update engine.
pub struct ServerRemote<'a> {
    /// The server.
    pub server: &'a Server,
    /// The GUN.
    pub gun: Gun,
}

impl Remote for ServerRemote<'_> {
    type Error = TransportError;

    fn fetch(
        &mut self,
        req: &FetchRequest,
    ) -> impl std::future::Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send {
        let r = self.server.get(&self.gun, &req.file_name(), req.max_len);
        std::future::ready(r)
    }
}

/// Runs the update engine (spec §10.2) for `gun` against `server`, starting from the
/// cached files; `write` forces a fresh root download, as Go does before publishing.
pub fn fetch_repo(
    server: &Server,
    cache: &MetadataCache,
    gun: &Gun,
    now: time::OffsetDateTime,
    pinning: TrustPinning,
    write: bool,
) -> Result<Repository, notary_core::update::UpdateError> {
    let updater = notary_core::Updater::new(gun.clone(), now)
        .pinning(pinning)
        .cache(cache.engine_cache())
        .force_root_download(write);
    let mut remote = ServerRemote {
        server,
        gun: gun.clone(),
    };
    block_on(updater.update(&mut remote))
}

/// Runs a future that never waits on IO (the engine's fetches are blocking calls).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file planted where a temporary file could be expected (here: a symlink at the
    /// name the CLI used to use) is never opened: temporary files are created
    /// exclusively under random names.
    #[test]
    fn temp_files_are_created_exclusively() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("abc.key");
        std::os::unix::fs::symlink(
            &victim,
            target.with_extension(format!("tmp{}", std::process::id())),
        )
        .unwrap();
        let loose = dir.path().join("m.json");
        let planted = loose.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&planted, b"").unwrap();
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        write_private_durable(&target, b"secret").unwrap();
        write_private(&loose, b"{}").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        for f in [&target, &loose] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }

    #[test]
    fn credentials_go_to_https_or_loopback_realms_only() {
        for ok in [
            "https://auth.example.com/token",
            "HTTPS://auth.example.com:8443/token?x=1",
            "http://127.0.0.1:5001/token",
            "http://127.8.9.10/token",
            "http://localhost:5001/token",
            "http://LOCALHOST/token",
            "http://[::1]:5001/token",
            "http://[::ffff:127.0.0.1]/token",
        ] {
            assert!(realm_accepts_credentials(ok), "{ok}");
        }
        for bad in [
            "http://auth.example.com/token",
            "http://notary-test.invalid:5001/token",
            "http://10.0.0.1/token",
            "http://[fd00::2]/token",
            "http://127.0.0.1@evil.example/token",
            "http://localhost.evil.example/token",
            "http://localhost./token",
            "ftp://127.0.0.1/token",
            "//auth.example.com/token",
            "/token",
            "",
        ] {
            assert!(!realm_accepts_credentials(bad), "{bad}");
        }
    }
}
