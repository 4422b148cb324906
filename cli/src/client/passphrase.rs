//! Passphrases of key files: Go's environment variables by alias, else terminal prompts.

use std::collections::BTreeMap;

use anyhow::bail;
use notary_core::keyfile::{KeyFile, PassphraseFlavor, passphrase_env_var};
use zeroize::Zeroizing;

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
