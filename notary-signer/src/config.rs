//! Go notary-signer's JSON configuration (spec §8.5), with `NOTARY_SIGNER_*`
//! environment overrides. Relative paths are relative to the configuration file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Bad JSON.
    #[error("invalid configuration {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A value is missing or wrong.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `server`.
    pub server: Server,
    /// `storage`.
    pub storage: Storage,
    /// `logging`.
    pub logging: Logging,
}

/// `server`: where and how the gRPC endpoint listens.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Server {
    /// `grpc_addr`, e.g. `:7899` or `127.0.0.1:7899`.
    pub grpc_addr: String,
    /// `tls_cert_file` (PEM, chain allowed). Required.
    pub tls_cert_file: Option<PathBuf>,
    /// `tls_key_file` (PEM). Required.
    pub tls_key_file: Option<PathBuf>,
    /// `client_ca_file`: clients must present a certificate chaining to it. Required
    /// here (Go lets it be omitted and then accepts any client).
    pub client_ca_file: Option<PathBuf>,
}

/// `storage`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Storage {
    /// `backend`: `sqlite3`, `postgres` or `memory`.
    pub backend: String,
    /// `db_url`: a SQLite file path (or `sqlite:` URL) or a `postgres://` URL.
    pub db_url: String,
    /// `default_alias`: the passphrase alias new keys are sealed under.
    pub default_alias: String,
}

/// `logging`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Logging {
    /// `level`: `debug`, `info`, `warn`, `error`.
    pub level: String,
}

impl Config {
    /// Reads a Go signer configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c: Config = serde_json::from_slice(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.server.tls_cert_file,
            &mut c.server.tls_key_file,
            &mut c.server.client_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if c.storage.backend == "sqlite3"
            && !c.storage.db_url.starts_with("sqlite:")
            && Path::new(&c.storage.db_url).is_relative()
        {
            c.storage.db_url = base.join(&c.storage.db_url).display().to_string();
        }
        Ok(c)
    }

    /// Applies `NOTARY_SIGNER_<SECTION>_<KEY>` overrides (and Go's
    /// `NOTARY_SIGNER_DEFAULT_ALIAS`).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let path = |v: String| Some(PathBuf::from(v));
        if let Some(v) = lookup("NOTARY_SIGNER_SERVER_GRPC_ADDR") {
            self.server.grpc_addr = v;
        }
        if let Some(v) = lookup("NOTARY_SIGNER_SERVER_TLS_CERT_FILE") {
            self.server.tls_cert_file = path(v);
        }
        if let Some(v) = lookup("NOTARY_SIGNER_SERVER_TLS_KEY_FILE") {
            self.server.tls_key_file = path(v);
        }
        if let Some(v) = lookup("NOTARY_SIGNER_SERVER_CLIENT_CA_FILE") {
            self.server.client_ca_file = path(v);
        }
        if let Some(v) = lookup("NOTARY_SIGNER_STORAGE_BACKEND") {
            self.storage.backend = v;
        }
        if let Some(v) = lookup("NOTARY_SIGNER_STORAGE_DB_URL") {
            self.storage.db_url = v;
        }
        if let Some(v) = lookup("NOTARY_SIGNER_STORAGE_DEFAULT_ALIAS")
            .or_else(|| lookup("NOTARY_SIGNER_DEFAULT_ALIAS"))
        {
            self.storage.default_alias = v;
        }
        if let Some(v) = lookup("NOTARY_SIGNER_LOGGING_LEVEL") {
            self.logging.level = v;
        }
    }

    /// Refuses configurations the signer cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.grpc_addr.is_empty() {
            return Err(ConfigError::Invalid("server.grpc_addr is required".into()));
        }
        if self.server.tls_cert_file.is_none() || self.server.tls_key_file.is_none() {
            return Err(ConfigError::Invalid(
                "server.tls_cert_file and server.tls_key_file are required: the signer never listens in plain text".into(),
            ));
        }
        if self.server.client_ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "server.client_ca_file is required: clients (notary-server) must authenticate with a certificate".into(),
            ));
        }
        match self.storage.backend.as_str() {
            "memory" => {}
            "sqlite3" | "postgres" => {
                if self.storage.db_url.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "storage.db_url is required for backend {}",
                        self.storage.backend
                    )));
                }
                if self.storage.default_alias.is_empty() {
                    return Err(ConfigError::Invalid(
                        "must provide a default alias for the key DB: set storage.default_alias (or NOTARY_SIGNER_DEFAULT_ALIAS), the passphrase alias new keys are sealed with".into(),
                    ));
                }
            }
            "mysql" | "rethinkdb" => {
                return Err(ConfigError::Invalid(format!(
                    "storage.backend {:?} is not supported; use sqlite3, postgres or memory",
                    self.storage.backend
                )));
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "storage.backend must be sqlite3, postgres or memory, not {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// The listen address, with Go's `:PORT` form meaning all interfaces.
    pub fn listen_addr(&self) -> String {
        match self.server.grpc_addr.strip_prefix(':') {
            Some(port) => format!("0.0.0.0:{port}"),
            None => self.server.grpc_addr.clone(),
        }
    }
}

/// The environment variable holding the passphrase of `alias` (Go:
/// `NOTARY_SIGNER_` + upper-cased alias).
pub fn alias_env_var(alias: &str) -> String {
    format!("NOTARY_SIGNER_{}", alias.to_uppercase().replace('.', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_fixture_config_loads_and_env_overrides() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/go-notary-0.7/config");
        let mut c = Config::load(&dir.join("signer.json")).unwrap();
        assert_eq!(c.server.grpc_addr, "127.0.0.1:14201");
        assert_eq!(c.storage.backend, "postgres");
        assert_eq!(c.storage.default_alias, "passwordalias1");
        assert!(
            c.server
                .client_ca_file
                .as_ref()
                .unwrap()
                .ends_with("../certs/root-ca.crt")
        );
        c.validate().unwrap();
        c.apply_env(|k| (k == "NOTARY_SIGNER_DEFAULT_ALIAS").then(|| "other".to_owned()));
        assert_eq!(c.storage.default_alias, "other");
        assert_eq!(
            alias_env_var("passwordalias1"),
            "NOTARY_SIGNER_PASSWORDALIAS1"
        );
        assert_eq!(alias_env_var("prod.2026"), "NOTARY_SIGNER_PROD_2026");
    }

    #[test]
    fn refuses_plain_text_and_missing_client_ca() {
        let mut c = Config::default();
        c.server.grpc_addr = ":7899".into();
        c.storage.backend = "memory".into();
        assert!(c.validate().unwrap_err().to_string().contains("plain text"));
        c.server.tls_cert_file = Some("c".into());
        c.server.tls_key_file = Some("k".into());
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("client_ca_file")
        );
        c.server.client_ca_file = Some("ca".into());
        c.validate().unwrap();
        assert_eq!(c.listen_addr(), "0.0.0.0:7899");
        c.storage.backend = "sqlite3".into();
        c.storage.db_url = "x.db".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("default_alias")
        );
    }
}
