//! The webhook's own HTTPS listener (`admission.listen`): a certificate for the
//! webhook Service issued from the data directory's CA (the one under
//! `DATA_DIR/tls` that also issued the registry's certificate), optional client
//! certificate verification (`admission.client_ca`), and the `caBundle` to put in the
//! webhook configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;

use super::AdmissionConfig;
use crate::Registry;
use crate::policy::ImagePolicy;

/// A running webhook listener.
#[derive(Clone, Debug)]
pub struct Listener {
    /// The bound address.
    pub addr: SocketAddr,
    /// base64 of the issuing CA's PEM, for `clientConfig.caBundle` (`None` when the
    /// certificate was configured rather than issued here).
    pub ca_bundle: Option<String>,
    /// The certificate chain served.
    pub cert: PathBuf,
}

/// `true` for a DNS label (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63 bytes): Service
/// and namespace names, which also name files.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == b'-')
}

/// The names a certificate for `service` in `namespace` covers: the Service's DNS names
/// (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) and the loopback names.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]
}

/// Issues, once, a server certificate for the webhook Service from the CA in `tls_dir`
/// (`ca.crt`, `ca.key`; created with the registry's own certificate when absent) and
/// returns its chain and key files (`admission-<service>.<namespace>.crt` / `.key`).
pub fn webhook_certificate(
    tls_dir: &Path,
    service: &str,
    namespace: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    use rcgen::{CertificateParams, DnType, KeyPair, KeyUsagePurpose};
    if !dns_label(service) || !dns_label(namespace) {
        anyhow::bail!(
            "admission.service {service:?} and admission.namespace {namespace:?} must be DNS labels"
        );
    }
    let cert = tls_dir.join(format!("admission-{service}.{namespace}.crt"));
    let key = tls_dir.join(format!("admission-{service}.{namespace}.key"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let (ca_crt, ca_key) = (tls_dir.join("ca.crt"), tls_dir.join("ca.key"));
    if !ca_crt.exists() && !ca_key.exists() {
        crate::server::generate_tls(tls_dir).context("creating the data directory's CA")?;
    }
    let ca_pem = std::fs::read_to_string(&ca_crt)
        .with_context(|| format!("reading {}", ca_crt.display()))?;
    let ca_key_pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(&ca_key).with_context(|| {
            format!(
                "reading {} (set admission.tls_cert and admission.tls_key when the CA key is elsewhere)",
                ca_key.display()
            )
        })?,
    );
    let signer = KeyPair::from_pem(&ca_key_pem).context("the CA key")?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, signer).context("the CA certificate")?;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(service_names(service, namespace))?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    notary_daemon::fs::write_private(&key, leaf_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, format!("{}{}", leaf_cert.pem(), ca_pem))?;
    tracing::info!(cert = %cert.display(), "issued the admission webhook certificate");
    Ok((cert, key))
}

/// The `caBundle` of a PEM file: its bytes, base64.
pub fn ca_bundle(ca_pem: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pem))
}

/// Serves the webhook on `listener` over HTTPS until `shutdown` resolves: the
/// configured certificate or one issued under `data_dir/tls`; client certificates
/// required when `admission.client_ca` is set.
pub fn start_on(
    registry: Arc<Registry>,
    policy: Arc<dyn ImagePolicy>,
    admission: &AdmissionConfig,
    data_dir: &Path,
    fallback_hosts: &[String],
    listener: std::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Listener> {
    let addr = listener.local_addr()?;
    let tls_dir = data_dir.join("tls");
    let ((cert, key), ca_bundle) = match (&admission.tls_cert, &admission.tls_key) {
        (Some(c), Some(k)) => ((c.clone(), k.clone()), None),
        _ => {
            let files = webhook_certificate(&tls_dir, &admission.service, &admission.namespace)?;
            (files, Some(ca_bundle(&tls_dir.join("ca.crt"))?))
        }
    };
    let settings = admission.settings(addr, admission.client_ca.is_some(), fallback_hosts)?;
    let files = notary_server::daemon::tls::TlsFiles {
        cert: cert.clone(),
        key,
        client_ca: admission.client_ca.clone(),
    };
    let tls = Arc::new(
        notary_server::daemon::tls::server_config(&files).context("admission TLS configuration")?,
    );
    let app = super::router(registry, policy, Arc::new(settings))
        .layer(tower_http::trace::TraceLayer::new_for_http());
    tokio::spawn(async move {
        let served = notary_server::daemon::serve_router(
            app,
            listener,
            Some(tls),
            std::time::Duration::from_secs(10),
            shutdown,
        )
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the admission webhook listener stopped");
        }
    });
    Ok(Listener {
        addr,
        ca_bundle,
        cert,
    })
}

/// Starts the separate listener of a configuration when `admission.listen` is set, the
/// webhook enabled and a policy engine installed on `registry`.
pub fn start(
    registry: &Arc<Registry>,
    config: &crate::server::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Option<Listener>> {
    let (Some(addr), true, Some(policy)) = (
        config.admission.listen,
        config.admission.enabled,
        registry.image_policy(),
    ) else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding admission.listen {addr}"))?;
    let l = start_on(
        Arc::clone(registry),
        policy,
        &config.admission,
        &config.data_dir,
        &config.auth.hostnames,
        listener,
        shutdown,
    )?;
    tracing::info!(addr = %l.addr, ca_bundle = l.ca_bundle.as_deref().unwrap_or(""), "admission webhook listening");
    Ok(Some(l))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labels() {
        assert!(dns_label("notary-registry") && dns_label("a1"));
        for bad in ["", "-a", "a-", "A", "a.b", "../x", &"a".repeat(64)] {
            assert!(!dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn certificate_from_the_data_directory_ca() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let (cert, key) = webhook_certificate(&tls, "notary-registry", "trust").unwrap();
        assert!(tls.join("ca.crt").exists() && key.exists());
        let pem = std::fs::read_to_string(&cert).unwrap();
        // The chain: the leaf, then the CA that is the caBundle.
        assert!(pem.ends_with(&std::fs::read_to_string(tls.join("ca.crt")).unwrap()));
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        // Issued once: a second call returns the same files untouched.
        let again = webhook_certificate(&tls, "notary-registry", "trust").unwrap();
        assert_eq!(std::fs::read_to_string(again.0).unwrap(), pem);
        assert!(webhook_certificate(&tls, "../etc", "trust").is_err());
    }
}
