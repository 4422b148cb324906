//! Security review defect 1: `server.client_ca_file` must require and verify client
//! certificates. Before, it was parsed and documented but never used: a client without
//! a certificate was served. Checked with curl against the daemon's real TLS stack.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use zeroize::Zeroizing;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn ca(cn: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca { params, key, pem }
}

fn leaf(ca: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose, dir: &Path, stem: &str) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, stem);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
}

fn curl(url: &str, dir: &Path, client: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("ca.crt"));
    if let Some(c) = client {
        cmd.arg("--cert")
            .arg(dir.join(format!("{c}.crt")))
            .arg("--key")
            .arg(dir.join(format!("{c}.key")));
    }
    let out = cmd.arg(url).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_file_requires_client_certificates_from_that_ca() {
    notary_tests::require("curl");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ca("Notary clients CA");
    let other = ca("Some other CA");
    std::fs::write(d.join("ca.crt"), &good.pem).unwrap();
    leaf(
        &good,
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        d,
        "server",
    );
    leaf(&good, &[], ExtendedKeyUsagePurpose::ClientAuth, d, "client");
    leaf(
        &other,
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        d,
        "stranger",
    );

    let mut config = notary_server::config::Config::embedded(Path::new("/nonexistent"));
    config.storage.backend = notary_server::config::Backend::Memory;
    config.server.tls_cert_file = Some(d.join("server.crt"));
    config.server.tls_key_file = Some(d.join("server.key"));
    config.server.client_ca_file = Some(d.join("ca.crt"));
    config.validate().unwrap();
    let tls = notary_server::daemon::tls::TlsFiles::from_config(&config);
    let state = notary_server::daemon::build_state(config, Zeroizing::new("p".into()))
        .await
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(notary_server::daemon::serve(
        state,
        listener,
        tls,
        async move {
            let _ = rx.await;
        },
    ));
    let url = format!("https://localhost:{port}/_notary_server/health");
    let d2 = d.to_owned();
    let results = tokio::task::spawn_blocking(move || {
        (
            curl(&url, &d2, None),
            curl(&url, &d2, Some("stranger")),
            curl(&url, &d2, Some("client")),
        )
    })
    .await
    .unwrap();
    let _ = tx.send(());
    let _ = server.await;
    let (none, stranger, client) = results;
    assert!(
        none.is_err(),
        "served without a client certificate: {none:?}"
    );
    assert!(
        stranger.is_err(),
        "served a client certificate from another CA: {stranger:?}"
    );
    assert_eq!(client.unwrap(), "{}");
}

#[test]
fn client_ca_file_without_tls_is_a_startup_error() {
    let mut config = notary_server::config::Config::embedded(Path::new("/nonexistent"));
    config.server.tls_cert_file = None;
    config.server.tls_key_file = None;
    config.server.client_ca_file = Some("/ca.crt".into());
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("client_ca_file needs TLS"), "{e}");
}
