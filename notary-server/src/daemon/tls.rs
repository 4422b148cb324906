//! The daemon's TLS: a rustls server configuration from PEM files, requiring and
//! verifying client certificates from `server.client_ca_file` when it is set (a client
//! without a certificate, or with one from another CA, fails the handshake, as with Go).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The files TLS is served from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are required, if any.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The TLS files of a configuration, if TLS is on.
    pub fn from_config(c: &super::config::Config) -> Option<TlsFiles> {
        match (&c.server.tls_cert_file, &c.server.tls_key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: c.server.client_ca_file.clone(),
            }),
            _ => None,
        }
    }
}

/// The rustls server configuration for `files` (ring provider, TLS 1.2 and 1.3, ALPN
/// h2 and http/1.1).
pub fn server_config(files: &TlsFiles) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("reading server.client_ca_file {}", ca.display()))?
            {
                let c = c.with_context(|| format!("parsing {}", ca.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("server.client_ca_file {}", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!(
                    "server.client_ca_file {} holds no certificate",
                    ca.display()
                );
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("server certificate and key")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
