//! `notary pki`: the CA and certificate tool that replaces the openssl steps of a Notary
//! deployment: a CA (root or intermediate), server and client certificates for TLS and
//! mutual TLS, delegation certificates for `notary delegation add`, inspection and chain
//! verification.
//!
//! Keys: ECDSA P-256 (default), RSA 2048/4096, Ed25519. Private keys are PKCS#8 PEM
//! written `0600` (encrypted with PBES2 / PBKDF2-SHA-256 / AES-256-CBC when asked; openssl
//! and Go read both forms). Files are written atomically and never overwritten without
//! `--force`.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;
use zeroize::Zeroizing;

/// The variable holding the passphrase of PKI private keys (else a prompt on a TTY).
pub const PASSPHRASE_ENV: &str = "NOTARY_PKI_PASSPHRASE";

/// `notary pki …`
#[derive(Subcommand, Debug)]
pub enum Pki {
    /// Certificate authorities.
    #[command(subcommand)]
    Ca(Ca),
    /// Issue a certificate signed by a CA made with `pki ca init`.
    Issue(IssueArgs),
    /// Print what a certificate (or bundle) or key file holds.
    Inspect {
        /// A PEM file: certificates and/or a private key.
        file: PathBuf,
    },
    /// Verify a certificate chain; exit status 0 only when it is valid.
    Verify {
        /// Trusted CA certificate(s), PEM.
        #[arg(long)]
        ca: PathBuf,
        /// The certificate, followed by its intermediates, PEM.
        cert: PathBuf,
    },
}

/// `notary pki ca …`
#[derive(Subcommand, Debug)]
pub enum Ca {
    /// Create a CA: DIR/ca.crt and DIR/ca.key (an intermediate with --parent-dir).
    ///
    /// Examples:
    ///   notary pki ca init --cn "Example Root CA" --out-dir ca
    ///   notary pki ca init --cn "Example Issuing CA" --out-dir issuing --parent-dir ca
    Init(CaInitArgs),
}

/// Key algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256.
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 (PKCS#1 v1.5 SHA-256 signatures).
    #[value(name = "rsa-2048")]
    Rsa2048,
    /// RSA 4096.
    #[value(name = "rsa-4096")]
    Rsa4096,
    /// Ed25519.
    #[value(name = "ed25519")]
    Ed25519,
}

/// Options shared by CA and leaf creation.
#[derive(Args, Debug)]
pub struct KeyOpts {
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    pub key_type: KeyKind,
    /// Validity in days (CA default 3650, leaves 365; a leaf never outlives its CA).
    #[arg(long)]
    pub days: Option<u32>,
    /// Encrypt the private key (passphrase from NOTARY_PKI_PASSPHRASE or a prompt).
    #[arg(long)]
    pub encrypt: bool,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

/// `pki ca init`
#[derive(Args, Debug)]
pub struct CaInitArgs {
    /// Common name of the CA.
    #[arg(long)]
    pub cn: String,
    /// Directory for ca.crt and ca.key.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Make an intermediate CA signed by the CA in this directory.
    #[arg(long)]
    pub parent_dir: Option<PathBuf>,
    /// Key and validity options.
    #[command(flatten)]
    pub key: KeyOpts,
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Purpose {
    /// TLS server (notary-server, notary-signer, registry): serverAuth.
    Server,
    /// TLS client (mutual TLS, e.g. notary-server to notary-signer): clientAuth.
    Client,
    /// A delegation key certificate for `notary delegation add`: codeSigning.
    Delegation,
    /// A repository root certificate for `notary init --rootcert` (CN = the GUN, 10
    /// years): codeSigning and serverAuth — Go's CA trust-pinning check verifies the chain
    /// for serverAuth.
    Root,
}

/// `pki issue`
#[derive(Args, Debug)]
pub struct IssueArgs {
    /// server, client or delegation.
    #[arg(value_enum)]
    pub purpose: Purpose,
    /// Directory of the issuing CA (ca.crt, ca.key).
    #[arg(long)]
    pub ca_dir: PathBuf,
    /// Common name; also the output file names NAME.crt and NAME.key (`/` → `_`).
    #[arg(long)]
    pub cn: String,
    /// Subject alternative names: DNS:host, IP:address, URI:uri, EMAIL:addr; comma
    /// separated or repeated. Servers default to the CN.
    #[arg(long, value_delimiter = ',')]
    pub san: Vec<String>,
    /// Output directory.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Key and validity options.
    #[command(flatten)]
    pub key: KeyOpts,
}

/// Runs a `pki` command; returns the exit status.
pub fn run(cmd: Pki) -> anyhow::Result<i32> {
    match cmd {
        Pki::Ca(Ca::Init(a)) => ca_init(&a).map(|()| 0),
        Pki::Issue(a) => issue(&a).map(|()| 0),
        Pki::Inspect { file } => inspect(&file).map(|()| 0),
        Pki::Verify { ca, cert } => match verify_files(&ca, &cert, OffsetDateTime::now_utc()) {
            Ok(subject) => {
                println!("{}: OK ({subject})", cert.display());
                Ok(0)
            }
            Err(e) => {
                println!("{}: verification failed: {e:#}", cert.display());
                Ok(1)
            }
        },
    }
}

fn passphrase(confirm: bool, what: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        if !p.is_empty() {
            return Ok(Zeroizing::new(p));
        }
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("{what} needs a passphrase: set {PASSPHRASE_ENV} (no terminal to prompt on)");
    }
    let p = Zeroizing::new(rpassword::prompt_password(format!(
        "Passphrase for {what}: "
    ))?);
    if p.len() < 8 {
        bail!("passphrase too short (8 characters or more)");
    }
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat the passphrase: ")?);
        if *again != *p {
            bail!("passphrases do not match");
        }
    }
    Ok(p)
}

/// A new key pair and its PKCS#8 DER.
fn generate(kind: KeyKind) -> anyhow::Result<(KeyPair, Zeroizing<Vec<u8>>)> {
    let pair = match kind {
        KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?,
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519)?,
        KeyKind::Rsa2048 | KeyKind::Rsa4096 => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let bits = if kind == KeyKind::Rsa2048 { 2048 } else { 4096 };
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits)
                .context("generating an RSA key")?;
            let der = key.to_pkcs8_der().context("encoding the RSA key")?;
            KeyPair::try_from(der.as_bytes()).context("loading the RSA key")?
        }
    };
    let mut der = Zeroizing::new(pair.serialize_der());
    if kind == KeyKind::Ed25519 {
        der = ed25519_pkcs8_v1(&der)?;
    }
    Ok((pair, der))
}

/// ring writes Ed25519 keys as PKCS#8 v2 (with the public key), which OpenSSL 3.0 and
/// older tools refuse; RFC 8410's v1 form (the seed only) is read everywhere.
fn ed25519_pkcs8_v1(v2: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    // After the outer SEQUENCE header: version 1, the Ed25519 OID, the seed.
    const V2_BODY: [u8; 14] = [
        0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    if v2.len() < 48 || v2[0] != 0x30 || v2[2..16] != V2_BODY {
        bail!("unexpected Ed25519 key encoding");
    }
    let mut v1 = Zeroizing::new(Vec::with_capacity(48));
    v1.extend_from_slice(&V1_PREFIX);
    v1.extend_from_slice(&v2[16..48]);
    Ok(v1)
}

/// PEM with `\n` line endings (the `pem` crate defaults to `\r\n`; Go re-encodes
/// certificates with `\n` and compares key IDs computed over the PEM text).
fn pem_lf(p: &pem::Pem) -> String {
    pem::encode_config(
        p,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// PEM of a private key, encrypted with `pass` when given.
fn key_pem(pkcs8: &[u8], pass: Option<&str>) -> anyhow::Result<Zeroizing<String>> {
    match pass {
        None => Ok(Zeroizing::new(pem_lf(&pem::Pem::new(
            "PRIVATE KEY",
            pkcs8.to_vec(),
        )))),
        Some(pass) => {
            let rng = SystemRandom::new();
            let mut salt = [0u8; 16];
            let mut iv = [0u8; 16];
            rng.fill(&mut salt)
                .map_err(|_| anyhow::anyhow!("random salt"))?;
            rng.fill(&mut iv)
                .map_err(|_| anyhow::anyhow!("random iv"))?;
            let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
                100_000, &salt, iv,
            )
            .map_err(|e| anyhow::anyhow!("PBES2 parameters: {e}"))?;
            let ciphertext = params
                .encrypt(pass.as_bytes(), pkcs8)
                .map_err(|e| anyhow::anyhow!("encrypting the key: {e}"))?;
            let enc = pkcs8::EncryptedPrivateKeyInfoRef {
                encryption_algorithm: params.into(),
                encrypted_data: pkcs8::der::asn1::OctetStringRef::new(&ciphertext)
                    .map_err(|e| anyhow::anyhow!("encrypting the key: {e}"))?,
            };
            let der = pkcs8::der::Encode::to_der(&enc)
                .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
            Ok(Zeroizing::new(pem_lf(&pem::Pem::new(
                "ENCRYPTED PRIVATE KEY",
                der,
            ))))
        }
    }
}

/// Reads a private key file (PKCS#8, encrypted or not; SEC1 `EC PRIVATE KEY` and
/// PKCS#1 `RSA PRIVATE KEY` too).
fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let blocks = pem::parse_many(&text).with_context(|| format!("{}: not PEM", path.display()))?;
    let block = blocks
        .iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .with_context(|| format!("{}: no private key in it", path.display()))?;
    let der: Zeroizing<Vec<u8>> = match block.tag() {
        "ENCRYPTED PRIVATE KEY" => {
            use pkcs8::der::Decode as _;
            let pass = passphrase(false, &path.display().to_string())?;
            let enc = pkcs8::EncryptedPrivateKeyInfoRef::from_der(block.contents())
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let doc = enc
                .decrypt(pass.as_bytes())
                .map_err(|_| anyhow::anyhow!("{}: wrong passphrase", path.display()))?;
            Zeroizing::new(doc.as_bytes().to_vec())
        }
        "PRIVATE KEY" => Zeroizing::new(block.contents().to_vec()),
        "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
            let kind = if block.tag() == "EC PRIVATE KEY" {
                notary_core::keyfile::private_key_from_tuf("ecdsa", block.contents())
            } else {
                notary_core::keyfile::private_key_from_tuf("rsa", block.contents())
            }
            .with_context(|| format!("{}: unreadable key", path.display()))?;
            let pem = notary_core::keyfile::KeyFile::encode(&kind, "ca", None, None)?;
            let p = pem::parse(pem.as_bytes())?;
            Zeroizing::new(p.contents().to_vec())
        }
        other => bail!("{}: unsupported key block {other}", path.display()),
    };
    KeyPair::try_from(der.as_slice())
        .map_err(|e| anyhow::anyhow!("{}: unsupported key ({e})", path.display()))
}

/// Writes `data` atomically to `path` with `mode`, refusing to replace a file unless
/// `force`.
fn write_file(path: &Path, data: &[u8], mode: u32, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!("{} exists (use --force to replace it)", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A random name, created exclusively: nothing planted there is opened or removed.
    let mut r = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut r)
        .map_err(|_| anyhow::anyhow!("no randomness for a temporary file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        hex::encode(r)
    ));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f.write_all(data).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Writes a key (0600, first) and its certificate chain (0644), then prints both paths.
fn write_pair(
    (crt, keyf): (&Path, &Path),
    chain: &[Vec<u8>],
    pkcs8: &[u8],
    pass: Option<&Zeroizing<String>>,
    force: bool,
) -> anyhow::Result<()> {
    let pem = key_pem(pkcs8, pass.map(|p| p.as_str()))?;
    write_file(keyf, pem.as_bytes(), 0o600, force)?;
    write_file(crt, pem_certs(chain).as_bytes(), 0o644, force)?;
    println!("{}\n{}", crt.display(), keyf.display());
    Ok(())
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(())
}

fn random_serial() -> anyhow::Result<SerialNumber> {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("random serial"))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn dn(cn: &str) -> anyhow::Result<DistinguishedName> {
    if cn.trim().is_empty() {
        bail!("--cn must not be empty");
    }
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    Ok(d)
}

/// The certificates of a PEM file, in order.
fn read_certs(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs: Vec<Vec<u8>> = pem::parse_many(&text)
        .with_context(|| format!("{}: not PEM", path.display()))?
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

fn parse(der: &[u8]) -> anyhow::Result<X509Certificate<'_>> {
    let (_, c) =
        X509Certificate::from_der(der).map_err(|e| anyhow::anyhow!("bad certificate: {e}"))?;
    Ok(c)
}

fn is_self_signed(c: &X509Certificate<'_>) -> bool {
    c.subject().as_raw() == c.issuer().as_raw() && c.verify_signature(None).is_ok()
}

/// A loaded CA: its certificate chain (first = the CA itself) and key.
struct LoadedCa {
    chain: Vec<Vec<u8>>,
    key: KeyPair,
    not_after: OffsetDateTime,
}

fn load_ca(dir: &Path, now: OffsetDateTime) -> anyhow::Result<LoadedCa> {
    let chain = read_certs(&dir.join("ca.crt"))?;
    let key = read_key(&dir.join("ca.key"))?;
    let c = parse(&chain[0])?;
    if c.public_key().subject_public_key.data.as_ref() != rcgen::PublicKeyData::der_bytes(&key) {
        bail!(
            "{} does not belong to the certificate {} (their public keys differ)",
            dir.join("ca.key").display(),
            dir.join("ca.crt").display()
        );
    }
    if !c.is_ca() {
        bail!("{} is not a CA certificate", dir.join("ca.crt").display());
    }
    let not_after = c.validity().not_after.to_datetime();
    if not_after <= now {
        bail!(
            "the CA certificate {} expired on {not_after}",
            dir.join("ca.crt").display()
        );
    }
    if c.validity().not_before.to_datetime() > now {
        bail!(
            "the CA certificate {} is not valid yet",
            dir.join("ca.crt").display()
        );
    }
    Ok(LoadedCa {
        chain,
        key,
        not_after,
    })
}

fn pem_certs(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| pem_lf(&pem::Pem::new("CERTIFICATE", d.clone())))
        .collect()
}

fn ca_init(a: &CaInitArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let parent = a
        .parent_dir
        .as_deref()
        .map(|d| load_ca(d, now))
        .transpose()?;
    create_dir(&a.out_dir)?;
    let (crt, keyf) = (a.out_dir.join("ca.crt"), a.out_dir.join("ca.key"));
    for p in [&crt, &keyf] {
        if p.exists() && !a.key.force {
            bail!("{} exists (use --force to replace it)", p.display());
        }
    }
    let pass = if a.key.encrypt {
        Some(passphrase(true, "the new CA key")?)
    } else {
        None
    };
    let (key, der) = generate(a.key.key_type)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&a.cn)?;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - Duration::minutes(5);
    let days = i64::from(a.key.days.unwrap_or(3650));
    params.not_after = now + Duration::days(days);
    params.is_ca = IsCa::Ca(if parent.is_some() {
        BasicConstraints::Constrained(0)
    } else {
        BasicConstraints::Unconstrained
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = parent.is_some();
    let chain: Vec<Vec<u8>> = match &parent {
        None => vec![params.self_signed(&key)?.der().to_vec()],
        Some(p) => {
            if params.not_after > p.not_after {
                params.not_after = p.not_after;
            }
            let issuer = Issuer::from_ca_cert_der(&p.chain[0].as_slice().into(), &p.key)?;
            let cert = params.signed_by(&key, &issuer)?;
            let mut chain = vec![cert.der().to_vec()];
            chain.extend(p.chain.iter().cloned());
            chain
        }
    };
    write_pair((&crt, &keyf), &chain, &der, pass.as_ref(), a.key.force)
}

/// Parses SAN arguments (`DNS:…`, `IP:…`, `URI:…`, `EMAIL:…`).
pub fn parse_sans(items: &[String]) -> anyhow::Result<Vec<SanType>> {
    let mut out = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let Some((kind, value)) = item.split_once(':') else {
            bail!("SAN {item:?} has no type: write DNS:name or IP:address");
        };
        if value.is_empty() {
            bail!("SAN {item:?} is empty");
        }
        let ia5 = |v: &str| {
            rcgen::string::Ia5String::try_from(v.to_owned())
                .map_err(|_| anyhow::anyhow!("SAN {item:?} is not ASCII"))
        };
        out.push(match kind.to_ascii_uppercase().as_str() {
            "DNS" => {
                let ok = value.split('.').enumerate().all(|(i, label)| {
                    (!label.is_empty() && label.len() <= 63)
                        && (label == "*" && i == 0
                            || label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
                        && !label.starts_with('-')
                });
                if !ok || value.len() > 253 {
                    bail!("SAN {item:?} is not a valid DNS name");
                }
                SanType::DnsName(ia5(value)?)
            }
            "IP" => SanType::IpAddress(
                value
                    .parse::<IpAddr>()
                    .map_err(|_| anyhow::anyhow!("SAN {item:?} is not an IP address"))?,
            ),
            "URI" => SanType::URI(ia5(value)?),
            "EMAIL" => SanType::Rfc822Name(ia5(value)?),
            other => {
                bail!("unknown SAN type {other:?} in {item:?} (use DNS:, IP:, URI: or EMAIL:)")
            }
        });
    }
    Ok(out)
}

fn issue(a: &IssueArgs) -> anyhow::Result<()> {
    let now = OffsetDateTime::now_utc();
    let ca = load_ca(&a.ca_dir, now)?;
    let mut sans = parse_sans(&a.san)?;
    if sans.is_empty() && a.purpose == Purpose::Server {
        // Clients match the SAN, not the CN: a server certificate without one is useless.
        sans = match a.cn.parse::<IpAddr>() {
            Ok(ip) => vec![SanType::IpAddress(ip)],
            Err(_) => parse_sans(&[format!("DNS:{}", a.cn)])
                .context("the CN is not a host name; give --san")?,
        };
    }
    if a.cn.contains('\0') || a.cn == "." || a.cn == ".." {
        bail!("--cn {:?} cannot name a file", a.cn);
    }
    create_dir(&a.out_dir)?;
    // A GUN as CN (root certificates for `notary init --rootcert`): `/` becomes `_`.
    let stem = a.cn.replace('/', "_");
    let crt = a.out_dir.join(format!("{stem}.crt"));
    let keyf = a.out_dir.join(format!("{stem}.key"));
    for p in [&crt, &keyf] {
        if p.exists() && !a.key.force {
            bail!("{} exists (use --force to replace it)", p.display());
        }
    }
    let pass = if a.key.encrypt {
        Some(passphrase(true, &keyf.display().to_string())?)
    } else {
        None
    };
    let (key, der) = generate(a.key.key_type)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&a.cn)?;
    params.subject_alt_names = sans;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - Duration::minutes(5);
    let default_days = if a.purpose == Purpose::Root {
        3650
    } else {
        365
    };
    params.not_after = now + Duration::days(i64::from(a.key.days.unwrap_or(default_days)));
    if params.not_after > ca.not_after {
        eprintln!("note: validity shortened to the CA's ({})", ca.not_after);
        params.not_after = ca.not_after;
    }
    params.is_ca = IsCa::ExplicitNoCa;
    let rsa = matches!(a.key.key_type, KeyKind::Rsa2048 | KeyKind::Rsa4096);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if rsa && matches!(a.purpose, Purpose::Server | Purpose::Client) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = match a.purpose {
        Purpose::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Purpose::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Purpose::Delegation => vec![ExtendedKeyUsagePurpose::CodeSigning],
        Purpose::Root => vec![
            ExtendedKeyUsagePurpose::CodeSigning,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    };
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(&ca.chain[0].as_slice().into(), &ca.key)?;
    let cert = params.signed_by(&key, &issuer)?;
    // The leaf, then the intermediates (not the self-signed root).
    let mut chain = vec![cert.der().to_vec()];
    for c in &ca.chain {
        if !is_self_signed(&parse(c)?) {
            chain.push(c.clone());
        }
    }
    write_pair((&crt, &keyf), &chain, &der, pass.as_ref(), a.key.force)
}

fn key_description(c: &X509Certificate<'_>) -> String {
    match c.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA {} bits", r.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(e)) => format!("ECDSA {} bits", e.key_size()),
        _ if c.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => "Ed25519".into(),
        _ => c.public_key().algorithm.algorithm.to_id_string(),
    }
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let blocks = pem::parse_many(&text).with_context(|| format!("{}: not PEM", path.display()))?;
    if blocks.is_empty() {
        bail!("{}: no PEM blocks", path.display());
    }
    let now = OffsetDateTime::now_utc();
    for (i, b) in blocks.iter().enumerate() {
        if i > 0 {
            println!();
        }
        match b.tag() {
            "CERTIFICATE" => {
                let c = parse(b.contents())?;
                let v = c.validity();
                let (nb, na) = (v.not_before.to_datetime(), v.not_after.to_datetime());
                let fmt = |t: OffsetDateTime| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_else(|_| t.to_string())
                };
                let state = if na <= now {
                    " (EXPIRED)"
                } else if nb > now {
                    " (NOT YET VALID)"
                } else {
                    ""
                };
                println!("Certificate {}", i + 1);
                println!("  Subject:          {}", c.subject());
                println!("  Issuer:           {}", c.issuer());
                println!("  Serial:           {}", c.raw_serial_as_string());
                println!("  Not before:       {}", fmt(nb));
                println!("  Not after:        {}{state}", fmt(na));
                println!("  Key:              {}", key_description(&c));
                if let Ok(Some(bc)) = c.basic_constraints() {
                    let pl = bc
                        .value
                        .path_len_constraint
                        .map(|p| format!(", pathlen {p}"))
                        .unwrap_or_default();
                    println!("  CA:               {}{pl}", bc.value.ca);
                }
                if let Ok(Some(ku)) = c.key_usage() {
                    println!("  Key usage:        {}", ku.value);
                }
                if let Ok(Some(eku)) = c.extended_key_usage() {
                    let e = eku.value;
                    let mut names = Vec::new();
                    for (on, n) in [
                        (e.server_auth, "serverAuth"),
                        (e.client_auth, "clientAuth"),
                        (e.code_signing, "codeSigning"),
                        (e.email_protection, "emailProtection"),
                        (e.time_stamping, "timeStamping"),
                        (e.ocsp_signing, "OCSPSigning"),
                        (e.any, "any"),
                    ] {
                        if on {
                            names.push(n.to_owned());
                        }
                    }
                    names.extend(e.other.iter().map(|o| o.to_id_string()));
                    println!("  Ext key usage:    {}", names.join(", "));
                }
                if let Ok(Some(san)) = c.subject_alternative_name() {
                    let names: Vec<String> = san
                        .value
                        .general_names
                        .iter()
                        .map(|g| match g {
                            GeneralName::DNSName(d) => format!("DNS:{d}"),
                            GeneralName::URI(u) => format!("URI:{u}"),
                            GeneralName::RFC822Name(e) => format!("EMAIL:{e}"),
                            GeneralName::IPAddress(b) => match b.len() {
                                4 => <[u8; 4]>::try_from(*b)
                                    .map(|a| format!("IP:{}", std::net::Ipv4Addr::from(a)))
                                    .unwrap_or_default(),
                                16 => <[u8; 16]>::try_from(*b)
                                    .map(|a| format!("IP:{}", std::net::Ipv6Addr::from(a)))
                                    .unwrap_or_default(),
                                _ => format!("IP:{}", hex::encode(b)),
                            },
                            other => other.to_string(),
                        })
                        .collect();
                    println!("  SANs:             {}", names.join(", "));
                }
                println!(
                    "  SHA-256:          {}",
                    hex::encode(ring::digest::digest(&ring::digest::SHA256, b.contents()))
                );
            }
            "ENCRYPTED PRIVATE KEY" => println!("Private key {} (encrypted PKCS#8)", i + 1),
            tag if tag.ends_with("PRIVATE KEY") => match KeyPair::try_from(b.contents()) {
                Ok(k) => println!("Private key {} ({tag}, {:?})", i + 1, k.algorithm()),
                Err(_) => println!("Private key {} ({tag})", i + 1),
            },
            other => println!("Block {} ({other})", i + 1),
        }
    }
    Ok(())
}

/// Verifies that the first certificate of `cert` chains, through the others in that file,
/// to one of the certificates in `ca`: signatures, validity at `now`, CA flags, key usage
/// and path lengths. Returns the leaf's subject.
pub fn verify_files(ca: &Path, cert: &Path, now: OffsetDateTime) -> anyhow::Result<String> {
    let roots_der = read_certs(ca)?;
    let chain_der = read_certs(cert)?;
    let roots: Vec<X509Certificate<'_>> = roots_der
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    let chain: Vec<X509Certificate<'_>> = chain_der
        .iter()
        .map(|d| parse(d))
        .collect::<Result<_, _>>()?;
    let valid = |c: &X509Certificate<'_>| -> anyhow::Result<()> {
        let v = c.validity();
        if v.not_after.to_datetime() <= now {
            bail!("{} expired on {}", c.subject(), v.not_after.to_datetime());
        }
        if v.not_before.to_datetime() > now {
            bail!(
                "{} is not valid before {}",
                c.subject(),
                v.not_before.to_datetime()
            );
        }
        Ok(())
    };
    let may_issue = |c: &X509Certificate<'_>, below: usize| -> anyhow::Result<()> {
        match c.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {
                if let Some(pl) = bc.value.path_len_constraint {
                    if below > pl as usize {
                        bail!(
                            "{} allows {pl} intermediate(s) below it, the chain has {below}",
                            c.subject()
                        );
                    }
                }
            }
            _ => bail!("{} is not a CA", c.subject()),
        }
        if let Ok(Some(ku)) = c.key_usage() {
            if !ku.value.key_cert_sign() {
                bail!("{} may not sign certificates (key usage)", c.subject());
            }
        }
        Ok(())
    };
    let leaf = &chain[0];
    valid(leaf)?;
    let mut current = leaf;
    for intermediates_below in 0..10 {
        if let Some(root) = roots.iter().find(|r| {
            r.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(r.public_key())).is_ok()
        }) {
            valid(root)?;
            may_issue(root, intermediates_below)?;
            return Ok(leaf.subject().to_string());
        }
        if roots.iter().any(|r| r.as_ref() == current.as_ref()) {
            return Ok(leaf.subject().to_string());
        }
        let Some(next) = chain[1..].iter().find(|c| {
            c.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(c.public_key())).is_ok()
        }) else {
            bail!(
                "no trusted issuer for {} (issuer {}): not signed by the given CA",
                current.subject(),
                current.issuer()
            );
        };
        valid(next)?;
        may_issue(next, intermediates_below)?;
        current = next;
    }
    bail!("certificate chain too long")
}
