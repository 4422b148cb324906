//! HTTP(S) to a Notary server (or a registry), and the update engine over it.

use std::collections::BTreeMap;
use std::io::Read as _;

use anyhow::{Context as _, bail};
use notary_core::update::{FetchRequest, Remote, Repository};
use notary_core::{Gun, RoleName, TrustPinning};
use zeroize::Zeroizing;

use super::auth::{
    bearer_challenge, credentials_for, identity_token_for, realm_accepts_credentials,
};
use super::{MetadataCache, Settings};

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
        // A docker login that stored an identity token: the OAuth2 refresh grant (POST),
        // as docker does; on any refusal, the GET below (Basic, or anonymous).
        if let Some(idt) =
            identity_token_for(&self.host).filter(|_| realm_accepts_credentials(realm))
        {
            let mut form = vec![
                "grant_type=refresh_token".to_owned(),
                format!("refresh_token={}", enc(idt.as_str())),
                "client_id=notary".to_owned(),
            ];
            if let Some(svc) = c.get("service") {
                form.push(format!("service={}", enc(svc)));
            }
            if let Some(scope) = c.get("scope") {
                form.push(format!("scope={}", enc(scope)));
            }
            let form = Zeroizing::new(form.join("&"));
            let posted = self
                .agent
                .post(realm.as_str())
                .header("Content-Type", "application/x-www-form-urlencoded")
                .send(form.as_bytes());
            if let Ok(resp) = posted {
                if resp.status().as_u16() == 200 {
                    let body = Self::read_body(resp, 1 << 20)?;
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).map_err(|_| TransportError::TooLarge)?;
                    if let Some(t) = v["access_token"].as_str().or_else(|| v["token"].as_str()) {
                        return Ok(Zeroizing::new(t.to_owned()));
                    }
                }
            }
        }
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
