//! Configuration: Go notary-server's JSON file (spec §4.12), or embedded defaults when
//! no file is given (SQLite in a data directory, local trust service, TLS with a
//! generated self-signed certificate).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// File unreadable.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not valid JSON of the expected shape.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A value that cannot work.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// `server` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ServerSection {
    /// Listen address, e.g. `:4443` or `127.0.0.1:0`.
    #[serde(default)]
    pub http_addr: String,
    /// PEM certificate chain; TLS is on when both files are set.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key.
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates from this CA.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// `trust_service` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TrustSection {
    /// `local` (in-process keys, sealed in the database) or `remote` (notary-signer).
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Signer host (remote).
    #[serde(default)]
    pub hostname: String,
    /// Signer port (remote; Go writes it as a string).
    #[serde(default)]
    pub port: serde_json::Value,
    /// `ecdsa` or `ed25519`.
    #[serde(default)]
    pub key_algorithm: String,
    /// CA of the signer's certificate (remote).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate (remote).
    #[serde(default)]
    pub tls_client_cert: Option<PathBuf>,
    /// Client key (remote).
    #[serde(default)]
    pub tls_client_key: Option<PathBuf>,
}

impl TrustSection {
    /// `port` as a number (Go writes it as a string, JSON numbers are accepted too).
    pub fn port_number(&self) -> Result<u16, ConfigError> {
        let n = match &self.port {
            serde_json::Value::String(s) => s.parse::<u16>().ok(),
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        };
        match n {
            Some(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid(format!(
                "trust_service.port must be a port number, not {}",
                self.port
            ))),
        }
    }
}

/// `storage` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StorageSection {
    /// `sqlite3` (default), `postgres` (several replicas) or `memory`.
    #[serde(default)]
    pub backend: String,
    /// Database URL or SQLite file path.
    #[serde(default)]
    pub db_url: String,
}

/// `auth.options`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthOptions {
    /// Token realm URL.
    #[serde(default)]
    pub realm: String,
    /// Expected audience.
    #[serde(default)]
    pub service: String,
    /// Expected issuer.
    #[serde(default)]
    pub issuer: String,
    /// PEM bundle of token-signing certificates.
    #[serde(default)]
    pub rootcertbundle: Option<PathBuf>,
}

/// `auth` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct AuthSection {
    /// Only `token` enables auth.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Token options.
    #[serde(default)]
    pub options: AuthOptions,
}

/// `logging` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LoggingSection {
    /// `debug`, `info`, `warn`, `error`.
    #[serde(default)]
    pub level: String,
}

/// `caching.max_age`.
#[derive(Clone, Debug, Deserialize)]
pub struct MaxAge {
    /// Seconds for `{role}.json` (default 300).
    #[serde(default = "default_current")]
    pub current_metadata: u64,
    /// Seconds for checksum and version GETs (default 30 days).
    #[serde(default = "default_consistent")]
    pub consistent_metadata: u64,
}

fn default_current() -> u64 {
    300
}
fn default_consistent() -> u64 {
    2_592_000
}

impl Default for MaxAge {
    fn default() -> Self {
        MaxAge {
            current_metadata: default_current(),
            consistent_metadata: default_consistent(),
        }
    }
}

/// `caching` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct CachingSection {
    /// Cache-Control max-ages.
    #[serde(default)]
    pub max_age: MaxAge,
}

/// `repositories` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RepositoriesSection {
    /// Accepted GUN prefixes (each ending in `/`).
    #[serde(default)]
    pub gun_prefixes: Vec<String>,
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    /// `server`.
    #[serde(default)]
    pub server: ServerSection,
    /// `trust_service`.
    #[serde(default)]
    pub trust_service: TrustSection,
    /// `storage`.
    #[serde(default)]
    pub storage: StorageSection,
    /// `auth`.
    #[serde(default)]
    pub auth: Option<AuthSection>,
    /// `logging`.
    #[serde(default)]
    pub logging: LoggingSection,
    /// `caching`.
    #[serde(default)]
    pub caching: CachingSection,
    /// `repositories`.
    #[serde(default)]
    pub repositories: RepositoriesSection,
    /// Largest accepted update body in bytes (not in Go's file; default 100 MiB, the
    /// largest metadata a Go client downloads).
    #[serde(default = "default_max_body")]
    pub max_update_bytes: usize,
}

fn default_max_body() -> usize {
    100 << 20
}

impl Config {
    /// Reads a Go-format JSON config; relative paths become relative to its directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut cfg: Config =
            serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
                path: path.into(),
                source,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut Option<PathBuf>| {
            if let Some(x) = p {
                if x.is_relative() {
                    *x = base.join(&*x);
                }
            }
        };
        rebase(&mut cfg.server.tls_cert_file);
        rebase(&mut cfg.server.tls_key_file);
        rebase(&mut cfg.server.client_ca_file);
        rebase(&mut cfg.trust_service.tls_ca_file);
        rebase(&mut cfg.trust_service.tls_client_cert);
        rebase(&mut cfg.trust_service.tls_client_key);
        if let Some(a) = &mut cfg.auth {
            rebase(&mut a.options.rootcertbundle);
        }
        if cfg.storage.backend == "sqlite3" && !cfg.storage.db_url.is_empty() {
            let p = Path::new(&cfg.storage.db_url);
            if p.is_relative() && !cfg.storage.db_url.starts_with("sqlite:") {
                cfg.storage.db_url = base.join(p).to_string_lossy().into_owned();
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Embedded defaults for a data directory: SQLite file, local trust, TLS on with a
    /// certificate generated into the directory, listening on 127.0.0.1:4443.
    pub fn embedded(data_dir: &Path) -> Config {
        Config {
            server: ServerSection {
                http_addr: "127.0.0.1:4443".into(),
                tls_cert_file: Some(data_dir.join("notary-server.crt")),
                tls_key_file: Some(data_dir.join("notary-server.key")),
                client_ca_file: None,
            },
            trust_service: TrustSection {
                kind: "local".into(),
                key_algorithm: "ecdsa".into(),
                ..Default::default()
            },
            storage: StorageSection {
                backend: "sqlite3".into(),
                db_url: data_dir
                    .join("notary-server.db")
                    .to_string_lossy()
                    .into_owned(),
            },
            max_update_bytes: default_max_body(),
            ..Default::default()
        }
    }

    /// Applies Go's `NOTARY_SERVER_<SECTION>_<KEY>` environment overrides (viper's
    /// AutomaticEnv, spec §4.12) for the options this server reads, then re-validates.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let path = |v: String| Some(PathBuf::from(v));
        if let Some(v) = lookup("NOTARY_SERVER_SERVER_HTTP_ADDR") {
            self.server.http_addr = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_SERVER_TLS_CERT_FILE") {
            self.server.tls_cert_file = path(v);
        }
        if let Some(v) = lookup("NOTARY_SERVER_SERVER_TLS_KEY_FILE") {
            self.server.tls_key_file = path(v);
        }
        if let Some(v) = lookup("NOTARY_SERVER_TRUST_SERVICE_TYPE") {
            self.trust_service.kind = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_TRUST_SERVICE_KEY_ALGORITHM") {
            self.trust_service.key_algorithm = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_STORAGE_BACKEND") {
            self.storage.backend = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_STORAGE_DB_URL") {
            self.storage.db_url = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_LOGGING_LEVEL") {
            self.logging.level = v;
        }
        if let Some(v) = lookup("NOTARY_SERVER_CACHING_MAX_AGE_CURRENT_METADATA") {
            self.caching.max_age.current_metadata = v.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "NOTARY_SERVER_CACHING_MAX_AGE_CURRENT_METADATA={v:?}"
                ))
            })?;
        }
        if let Some(v) = lookup("NOTARY_SERVER_CACHING_MAX_AGE_CONSISTENT_METADATA") {
            self.caching.max_age.consistent_metadata = v.parse().map_err(|_| {
                ConfigError::Invalid(format!(
                    "NOTARY_SERVER_CACHING_MAX_AGE_CONSISTENT_METADATA={v:?}"
                ))
            })?;
        }
        self.validate()
    }

    /// Start-up checks (spec §4.12).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.trust_service.kind.as_str() {
            "local" => {}
            "remote" => {
                if self.trust_service.hostname.is_empty() {
                    return Err(ConfigError::Invalid(
                        "trust_service.hostname is required for a remote trust service".into(),
                    ));
                }
                self.trust_service.port_number()?;
                if self.trust_service.tls_ca_file.is_none() {
                    return Err(ConfigError::Invalid(
                        "trust_service.tls_ca_file is required for a remote trust service (the CA of the signer's certificate)".into(),
                    ));
                }
                if self.trust_service.tls_client_cert.is_some()
                    != self.trust_service.tls_client_key.is_some()
                {
                    return Err(ConfigError::Invalid(
                        "trust_service.tls_client_cert and tls_client_key go together".into(),
                    ));
                }
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "trust_service.type must be \"local\" or \"remote\", not {other:?}"
                )));
            }
        }
        if !matches!(
            self.trust_service.key_algorithm.as_str(),
            "" | "ecdsa" | "ed25519"
        ) {
            return Err(ConfigError::Invalid(format!(
                "trust_service.key_algorithm {:?} is not supported (ecdsa, ed25519)",
                self.trust_service.key_algorithm
            )));
        }
        match self.storage.backend.as_str() {
            "sqlite3" | "sqlite" if !self.storage.db_url.is_empty() => {}
            "memory" => {}
            "postgres"
                if self.storage.db_url.starts_with("postgres://")
                    || self.storage.db_url.starts_with("postgresql://") => {}
            "postgres" => {
                return Err(ConfigError::Invalid(
                    "storage.db_url must be a postgres:// URL".into(),
                ));
            }
            "sqlite3" | "sqlite" => {
                return Err(ConfigError::Invalid(
                    "storage.db_url is required for sqlite3".into(),
                ));
            }
            other => {
                return Err(ConfigError::Invalid(format!(
                    "storage.backend {other:?} is not supported (sqlite3, postgres, memory)"
                )));
            }
        }
        for p in &self.repositories.gun_prefixes {
            if !p.ends_with('/') || p.starts_with('/') || p.starts_with("..") {
                return Err(ConfigError::Invalid(format!("invalid GUN prefix {p:?}")));
            }
        }
        for age in [
            self.caching.max_age.current_metadata,
            self.caching.max_age.consistent_metadata,
        ] {
            if age > 31_536_000 {
                return Err(ConfigError::Invalid(
                    "caching.max_age values must be 0..=31536000".into(),
                ));
            }
        }
        if self.server.tls_cert_file.is_some() != self.server.tls_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if let Some(a) = &self.auth {
            if a.kind == "token" && a.options.rootcertbundle.is_none() {
                return Err(ConfigError::Invalid(
                    "auth.options.rootcertbundle is required for token auth".into(),
                ));
            }
        }
        Ok(())
    }

    /// The listen address with Go's `:port` shorthand expanded.
    pub fn listen_addr(&self) -> String {
        let a = &self.server.http_addr;
        if a.starts_with(':') {
            format!("0.0.0.0{a}")
        } else {
            a.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_config_files_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/go-notary-0.7/config");
        // server-local.json: memory storage, local trust.
        let cfg = Config::load(&dir.join("server-local.json")).unwrap();
        assert_eq!(cfg.storage.backend, "memory");
        assert_eq!(cfg.listen_addr(), "127.0.0.1:14205");
        let cfg = Config::load(&dir.join("server-prefix.json")).unwrap();
        assert_eq!(
            cfg.repositories.gun_prefixes,
            ["docker.io/", "example.com/"]
        );
        // The Go stack's remote-signer configuration.
        let cfg = Config::load(&dir.join("server.json")).unwrap();
        assert_eq!(cfg.trust_service.kind, "remote");
        assert_eq!(cfg.trust_service.hostname, "127.0.0.1");
        assert_eq!(cfg.trust_service.port_number().unwrap(), 14201);
        assert!(
            cfg.trust_service
                .tls_client_key
                .as_ref()
                .unwrap()
                .ends_with("../certs/notary-server.key")
        );
        let mut bad = cfg.clone();
        bad.trust_service.port = serde_json::json!("http");
        assert!(bad.validate().unwrap_err().to_string().contains("port"));
        let mut bad = cfg;
        bad.trust_service.tls_ca_file = None;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("tls_ca_file")
        );
    }

    #[test]
    fn env_overrides() {
        let mut cfg = Config::embedded(std::path::Path::new("/tmp/x"));
        let env = |k: &str| match k {
            "NOTARY_SERVER_STORAGE_BACKEND" => Some("memory".to_owned()),
            "NOTARY_SERVER_SERVER_HTTP_ADDR" => Some(":4443".to_owned()),
            "NOTARY_SERVER_CACHING_MAX_AGE_CURRENT_METADATA" => Some("0".to_owned()),
            _ => None,
        };
        cfg.apply_env(env).unwrap();
        assert_eq!(cfg.storage.backend, "memory");
        assert_eq!(cfg.listen_addr(), "0.0.0.0:4443");
        assert_eq!(cfg.caching.max_age.current_metadata, 0);
        let bad = |k: &str| (k == "NOTARY_SERVER_STORAGE_BACKEND").then(|| "mysql".to_owned());
        assert!(cfg.apply_env(bad).is_err());
    }
}
