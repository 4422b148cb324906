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

/// Defines a configuration enum parsed from Go's strings: unknown values are errors
/// naming the accepted ones, never a silent default.
macro_rules! config_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $variant:ident => [$($text:literal),+]),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($($text)|+ => Ok($name::$variant),)+
                    other => Err(format!(
                        "{} {other:?} is not supported ({})",
                        $what,
                        [$($($text),+),+].join(", ")
                    )),
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

config_enum!(
    /// `trust_service.type`.
    TrustKind, "trust_service.type", {
        /// Keys in process, sealed in the server's database.
        Local => ["local"],
        /// A notary-signer over mutual TLS.
        Remote => ["remote"],
    }
);

config_enum!(
    /// `trust_service.key_algorithm`.
    KeyAlgorithm, "trust_service.key_algorithm", {
        /// ECDSA P-256 (Go's default).
        Ecdsa => ["ecdsa"],
        /// Ed25519.
        Ed25519 => ["ed25519"],
    }
);

config_enum!(
    /// `storage.backend`.
    Backend, "storage.backend", {
        /// A SQLite file (the default).
        Sqlite => ["sqlite3", "sqlite"],
        /// PostgreSQL, shareable by several replicas.
        Postgres => ["postgres"],
        /// A private in-memory database.
        Memory => ["memory"],
    }
);

config_enum!(
    /// `auth.type`.
    AuthKind, "auth.type", {
        /// Docker registry bearer tokens.
        Token => ["token"],
    }
);

config_enum!(
    /// `logging.level`.
    LogLevel, "logging.level", {
        /// Everything.
        Debug => ["debug"],
        /// The default.
        Info => ["info"],
        /// Warnings and errors.
        Warn => ["warn", "warning"],
        /// Errors only.
        Error => ["error", "fatal", "panic"],
    }
);

impl LogLevel {
    /// The `tracing` directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
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

fn default_trust() -> TrustKind {
    TrustKind::Local
}
fn default_algorithm() -> KeyAlgorithm {
    KeyAlgorithm::Ecdsa
}
fn default_backend() -> Backend {
    Backend::Sqlite
}

/// `trust_service` section.
#[derive(Clone, Debug, Deserialize)]
pub struct TrustSection {
    /// `local` (in-process keys, sealed in the database) or `remote` (notary-signer).
    #[serde(rename = "type", default = "default_trust")]
    pub kind: TrustKind,
    /// Signer host (remote).
    #[serde(default)]
    pub hostname: String,
    /// Signer port (remote; Go writes it as a string).
    #[serde(default)]
    pub port: serde_json::Value,
    /// `ecdsa` or `ed25519`.
    #[serde(default = "default_algorithm")]
    pub key_algorithm: KeyAlgorithm,
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

impl Default for TrustSection {
    fn default() -> Self {
        TrustSection {
            kind: TrustKind::Local,
            hostname: String::new(),
            port: serde_json::Value::Null,
            key_algorithm: KeyAlgorithm::Ecdsa,
            tls_ca_file: None,
            tls_client_cert: None,
            tls_client_key: None,
        }
    }
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
#[derive(Clone, Debug, Deserialize)]
pub struct StorageSection {
    /// `sqlite3` (default), `postgres` (several replicas) or `memory`.
    #[serde(default = "default_backend")]
    pub backend: Backend,
    /// Database URL or SQLite file path.
    #[serde(default)]
    pub db_url: String,
}

/// An enum that may be given as `""` (meaning unset).
fn optional_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: Backend::Sqlite,
            db_url: String::new(),
        }
    }
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
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSection {
    /// `token` (the only kind). Empty or absent means no authentication, as in Go;
    /// any other value stops the server at start-up (Go: "unable to configure
    /// authorization").
    #[serde(rename = "type", default, deserialize_with = "optional_enum")]
    pub kind: Option<AuthKind>,
    /// Token options.
    #[serde(default)]
    pub options: AuthOptions,
}

/// `logging` section.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LoggingSection {
    /// `debug`, `info` (default), `warn`, `error`.
    #[serde(default, deserialize_with = "optional_enum")]
    pub level: Option<LogLevel>,
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
    /// Largest accepted update body in bytes (not in Go's file; default 16 MiB).
    #[serde(default = "default_max_body")]
    pub max_update_bytes: usize,
    /// Largest accepted metadata file in an update (default 5 MiB: Go clients' files
    /// are small; a targets file with 30 000 entries is about 4 MB).
    #[serde(default = "default_max_role")]
    pub max_role_bytes: usize,
    /// Most metadata files in one update (default 100).
    #[serde(default = "default_max_parts")]
    pub max_update_parts: usize,
    /// Seconds an update may take before it is abandoned (default 30).
    #[serde(default = "default_update_timeout")]
    pub update_timeout_secs: u64,
}

fn default_max_body() -> usize {
    16 << 20
}
fn default_max_role() -> usize {
    5 << 20
}
fn default_max_parts() -> usize {
    100
}
fn default_update_timeout() -> u64 {
    30
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
        if cfg.storage.backend == Backend::Sqlite && !cfg.storage.db_url.is_empty() {
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
            trust_service: TrustSection::default(),
            storage: StorageSection {
                backend: Backend::Sqlite,
                db_url: data_dir
                    .join("notary-server.db")
                    .to_string_lossy()
                    .into_owned(),
            },
            max_update_bytes: default_max_body(),
            max_role_bytes: default_max_role(),
            max_update_parts: default_max_parts(),
            update_timeout_secs: default_update_timeout(),
            ..Default::default()
        }
    }

    /// The API's limits.
    pub fn upload_limits(&self) -> crate::service::UploadLimits {
        crate::service::UploadLimits {
            max_body_bytes: self.max_update_bytes,
            max_role_bytes: self.max_role_bytes,
            max_parts: self.max_update_parts,
            update_timeout: std::time::Duration::from_secs(self.update_timeout_secs),
        }
    }

    /// Applies Go's `NOTARY_SERVER_<SECTION>_<KEY>` environment overrides (viper's
    /// AutomaticEnv, spec §4.12) for every option this server reads, then re-validates.
    /// A value that does not parse is an error naming the variable.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let env = notary_daemon::env::Overrides::new("NOTARY_SERVER", lookup);
        let bad = |e: notary_daemon::env::BadValue| ConfigError::Invalid(e.to_string());
        env.string("SERVER_HTTP_ADDR", &mut self.server.http_addr);
        env.path("SERVER_TLS_CERT_FILE", &mut self.server.tls_cert_file);
        env.path("SERVER_TLS_KEY_FILE", &mut self.server.tls_key_file);
        env.path("SERVER_CLIENT_CA_FILE", &mut self.server.client_ca_file);
        let t = &mut self.trust_service;
        env.parsed("TRUST_SERVICE_TYPE", &mut t.kind).map_err(bad)?;
        env.string("TRUST_SERVICE_HOSTNAME", &mut t.hostname);
        if let Some(v) = env.get("TRUST_SERVICE_PORT") {
            t.port = serde_json::Value::String(v);
        }
        env.parsed("TRUST_SERVICE_KEY_ALGORITHM", &mut t.key_algorithm)
            .map_err(bad)?;
        env.path("TRUST_SERVICE_TLS_CA_FILE", &mut t.tls_ca_file);
        env.path("TRUST_SERVICE_TLS_CLIENT_CERT", &mut t.tls_client_cert);
        env.path("TRUST_SERVICE_TLS_CLIENT_KEY", &mut t.tls_client_key);
        env.parsed("STORAGE_BACKEND", &mut self.storage.backend)
            .map_err(bad)?;
        env.string("STORAGE_DB_URL", &mut self.storage.db_url);
        if let Some(v) = env.get("AUTH_TYPE") {
            let kind =
                if v.is_empty() {
                    None
                } else {
                    Some(v.parse::<AuthKind>().map_err(|e| {
                        ConfigError::Invalid(format!("{}: {e}", env.var("AUTH_TYPE")))
                    })?)
                };
            self.auth
                .get_or_insert_with(|| AuthSection {
                    kind: None,
                    options: AuthOptions::default(),
                })
                .kind = kind;
        }
        if let Some(a) = &mut self.auth {
            env.string("AUTH_OPTIONS_REALM", &mut a.options.realm);
            env.string("AUTH_OPTIONS_SERVICE", &mut a.options.service);
            env.string("AUTH_OPTIONS_ISSUER", &mut a.options.issuer);
            env.path("AUTH_OPTIONS_ROOTCERTBUNDLE", &mut a.options.rootcertbundle);
        }
        if let Some(v) = env.get("LOGGING_LEVEL") {
            self.logging.level = if v.is_empty() {
                None
            } else {
                Some(v.parse().map_err(|e| {
                    ConfigError::Invalid(format!("{}: {e}", env.var("LOGGING_LEVEL")))
                })?)
            };
        }
        let ages = &mut self.caching.max_age;
        env.parsed(
            "CACHING_MAX_AGE_CURRENT_METADATA",
            &mut ages.current_metadata,
        )
        .map_err(bad)?;
        env.parsed(
            "CACHING_MAX_AGE_CONSISTENT_METADATA",
            &mut ages.consistent_metadata,
        )
        .map_err(bad)?;
        env.list(
            "REPOSITORIES_GUN_PREFIXES",
            &mut self.repositories.gun_prefixes,
        );
        env.parsed("MAX_UPDATE_BYTES", &mut self.max_update_bytes)
            .map_err(bad)?;
        env.parsed("MAX_ROLE_BYTES", &mut self.max_role_bytes)
            .map_err(bad)?;
        env.parsed("MAX_UPDATE_PARTS", &mut self.max_update_parts)
            .map_err(bad)?;
        env.parsed("UPDATE_TIMEOUT_SECS", &mut self.update_timeout_secs)
            .map_err(bad)?;
        self.validate()
    }

    /// Start-up checks (spec §4.12).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.trust_service.kind == TrustKind::Remote {
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
        match self.storage.backend {
            Backend::Memory => {}
            Backend::Sqlite if self.storage.db_url.is_empty() => {
                return Err(ConfigError::Invalid(
                    "storage.db_url is required for sqlite3".into(),
                ));
            }
            Backend::Sqlite => {}
            Backend::Postgres
                if self.storage.db_url.starts_with("postgres://")
                    || self.storage.db_url.starts_with("postgresql://") => {}
            Backend::Postgres => {
                return Err(ConfigError::Invalid(
                    "storage.db_url must be a postgres:// URL".into(),
                ));
            }
        }
        if self.server.client_ca_file.is_some() && self.server.tls_cert_file.is_none() {
            return Err(ConfigError::Invalid(
                "server.client_ca_file needs TLS (server.tls_cert_file and tls_key_file): client certificates cannot be required without it".into(),
            ));
        }
        if self.max_update_bytes == 0 || self.max_role_bytes == 0 || self.max_update_parts == 0 {
            return Err(ConfigError::Invalid(
                "max_update_bytes, max_role_bytes and max_update_parts must be positive".into(),
            ));
        }
        if self.update_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "update_timeout_secs must be positive".into(),
            ));
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
            if a.kind == Some(AuthKind::Token) && a.options.rootcertbundle.is_none() {
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
        assert_eq!(cfg.storage.backend, Backend::Memory);
        assert_eq!(cfg.listen_addr(), "127.0.0.1:14205");
        let cfg = Config::load(&dir.join("server-prefix.json")).unwrap();
        assert_eq!(
            cfg.repositories.gun_prefixes,
            ["docker.io/", "example.com/"]
        );
        // The Go stack's remote-signer configuration.
        let cfg = Config::load(&dir.join("server.json")).unwrap();
        assert_eq!(cfg.trust_service.kind, TrustKind::Remote);
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
        assert_eq!(cfg.storage.backend, Backend::Memory);
        assert_eq!(cfg.listen_addr(), "0.0.0.0:4443");
        assert_eq!(cfg.caching.max_age.current_metadata, 0);
        let bad = |k: &str| (k == "NOTARY_SERVER_STORAGE_BACKEND").then(|| "mysql".to_owned());
        assert!(cfg.apply_env(bad).is_err());
    }

    #[test]
    fn unknown_auth_type_is_a_startup_error_not_open_access() {
        // Before: any auth.type other than "token" silently served without auth.
        let err = serde_json::from_str::<Config>(
            r#"{"storage": {"backend": "memory"}, "auth": {"type": "htpasswd"}}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("auth.type \"htpasswd\" is not supported"),
            "{err}"
        );
        for (field, json) in [
            (
                "trust_service.type",
                r#"{"trust_service": {"type": "hsm"}}"#,
            ),
            (
                "trust_service.key_algorithm",
                r#"{"trust_service": {"key_algorithm": "rsa"}}"#,
            ),
            ("storage.backend", r#"{"storage": {"backend": "mysql"}}"#),
            ("logging.level", r#"{"logging": {"level": "verbose"}}"#),
        ] {
            let err = serde_json::from_str::<Config>(json)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        // Go's "no auth" forms stay accepted.
        let cfg: Config = serde_json::from_str(r#"{"auth": {"type": ""}}"#).unwrap();
        assert!(cfg.auth.unwrap().kind.is_none());
        let mut cfg = Config::embedded(Path::new("/tmp/x"));
        let env = |k: &str| (k == "NOTARY_SERVER_AUTH_TYPE").then(|| "basic".to_owned());
        let err = cfg.apply_env(env).unwrap_err().to_string();
        assert!(err.contains("NOTARY_SERVER_AUTH_TYPE"), "{err}");
    }

    #[test]
    fn every_option_has_an_environment_override() {
        let mut cfg = Config::embedded(Path::new("/tmp/x"));
        let vars: std::collections::HashMap<&str, &str> = [
            ("NOTARY_SERVER_SERVER_HTTP_ADDR", "127.0.0.1:9"),
            ("NOTARY_SERVER_SERVER_TLS_CERT_FILE", "/c.crt"),
            ("NOTARY_SERVER_SERVER_TLS_KEY_FILE", "/c.key"),
            ("NOTARY_SERVER_SERVER_CLIENT_CA_FILE", "/ca.crt"),
            ("NOTARY_SERVER_TRUST_SERVICE_TYPE", "remote"),
            ("NOTARY_SERVER_TRUST_SERVICE_HOSTNAME", "signer"),
            ("NOTARY_SERVER_TRUST_SERVICE_PORT", "7899"),
            ("NOTARY_SERVER_TRUST_SERVICE_KEY_ALGORITHM", "ed25519"),
            ("NOTARY_SERVER_TRUST_SERVICE_TLS_CA_FILE", "/s-ca.crt"),
            ("NOTARY_SERVER_TRUST_SERVICE_TLS_CLIENT_CERT", "/cl.crt"),
            ("NOTARY_SERVER_TRUST_SERVICE_TLS_CLIENT_KEY", "/cl.key"),
            ("NOTARY_SERVER_STORAGE_BACKEND", "postgres"),
            ("NOTARY_SERVER_STORAGE_DB_URL", "postgres://db/notary"),
            ("NOTARY_SERVER_AUTH_TYPE", "token"),
            ("NOTARY_SERVER_AUTH_OPTIONS_REALM", "https://auth/token"),
            ("NOTARY_SERVER_AUTH_OPTIONS_SERVICE", "svc"),
            ("NOTARY_SERVER_AUTH_OPTIONS_ISSUER", "iss"),
            ("NOTARY_SERVER_AUTH_OPTIONS_ROOTCERTBUNDLE", "/roots.pem"),
            ("NOTARY_SERVER_LOGGING_LEVEL", "warn"),
            ("NOTARY_SERVER_CACHING_MAX_AGE_CURRENT_METADATA", "1"),
            ("NOTARY_SERVER_CACHING_MAX_AGE_CONSISTENT_METADATA", "2"),
            ("NOTARY_SERVER_REPOSITORIES_GUN_PREFIXES", "a/,b/"),
            ("NOTARY_SERVER_MAX_UPDATE_BYTES", "1000"),
            ("NOTARY_SERVER_MAX_ROLE_BYTES", "100"),
            ("NOTARY_SERVER_MAX_UPDATE_PARTS", "7"),
            ("NOTARY_SERVER_UPDATE_TIMEOUT_SECS", "9"),
        ]
        .into_iter()
        .collect();
        cfg.apply_env(|k| vars.get(k).map(|v| (*v).to_owned()))
            .unwrap();
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(cfg.server.http_addr, "127.0.0.1:9");
        assert_eq!(cfg.server.tls_cert_file, p("/c.crt"));
        assert_eq!(cfg.server.tls_key_file, p("/c.key"));
        assert_eq!(cfg.server.client_ca_file, p("/ca.crt"));
        let t = &cfg.trust_service;
        assert_eq!(t.kind, TrustKind::Remote);
        assert_eq!(t.hostname, "signer");
        assert_eq!(t.port_number().unwrap(), 7899);
        assert_eq!(t.key_algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(t.tls_ca_file, p("/s-ca.crt"));
        assert_eq!(t.tls_client_cert, p("/cl.crt"));
        assert_eq!(t.tls_client_key, p("/cl.key"));
        assert_eq!(cfg.storage.backend, Backend::Postgres);
        assert_eq!(cfg.storage.db_url, "postgres://db/notary");
        let a = cfg.auth.as_ref().unwrap();
        assert_eq!(a.kind, Some(AuthKind::Token));
        assert_eq!(a.options.realm, "https://auth/token");
        assert_eq!(a.options.service, "svc");
        assert_eq!(a.options.issuer, "iss");
        assert_eq!(a.options.rootcertbundle, p("/roots.pem"));
        assert_eq!(cfg.logging.level, Some(LogLevel::Warn));
        assert_eq!(cfg.caching.max_age.current_metadata, 1);
        assert_eq!(cfg.caching.max_age.consistent_metadata, 2);
        assert_eq!(cfg.repositories.gun_prefixes, ["a/", "b/"]);
        assert_eq!(cfg.max_update_bytes, 1000);
        assert_eq!(cfg.max_role_bytes, 100);
        assert_eq!(cfg.max_update_parts, 7);
        assert_eq!(cfg.update_timeout_secs, 9);
    }
}
