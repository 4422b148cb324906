//! Effective settings: the global flags over `~/.notary/config.json` over Go's defaults.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use notary_core::{Gun, KeyId, TrustPinning};

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

pub(crate) fn home() -> PathBuf {
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
