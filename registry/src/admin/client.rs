//! A small HTTP/1.1 client (hyper over a TCP or rustls stream, one connection per
//! request) for the `notary-registry` administration subcommands run against a live
//! registry (`--url`), and for tests. Bodies read back are capped.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;

/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Why a request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host[:port][/base]` or `https://…`.
    #[error("bad URL {0}: expected http(s)://host[:port]")]
    Url(String),
    /// TLS set-up (CA file, server name).
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting, sending or reading.
    #[error("{0}")]
    Io(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client for one registry.
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    authority: String,
    base: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `url`; `ca_pem` are the CA certificates trusted for HTTPS.
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Client, ClientError> {
        let uri: Uri = url.parse().map_err(|_| ClientError::Url(url.to_owned()))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(ClientError::Url(url.to_owned())),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let base = uri.path().trim_end_matches('/').to_owned();
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            let pem = ca_pem.ok_or_else(|| {
                ClientError::Tls("an HTTPS URL needs a CA certificate (--cacert)".into())
            })?;
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientError::Tls(format!("CA file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::Tls(format!("CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ClientError::Tls("the CA file holds no certificate".into()));
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Client {
            host,
            port,
            authority: authority.as_str().to_owned(),
            base,
            tls,
            authorization: None,
            timeout: Duration::from_secs(60),
        })
    }

    /// Sends Basic credentials with every request.
    pub fn basic(mut self, user: &str, password: &str) -> Client {
        let raw = zeroize::Zeroizing::new(format!("{user}:{password}"));
        let v = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        self.authorization = HeaderValue::from_str(&format!("Basic {v}"))
            .ok()
            .map(|mut h| {
                h.set_sensitive(true);
                h
            });
        self
    }

    /// Sends a bearer token with every request.
    pub fn bearer(mut self, token: &str) -> Client {
        self.authorization = HeaderValue::from_str(&format!("Bearer {token}")).ok();
        self
    }

    /// `METHOD base+path` with a body and extra headers (an explicit `Authorization`
    /// replaces the client's).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, ClientError> {
        tokio::time::timeout(
            self.timeout,
            self.request_inner(method, path, headers, body.into()),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let io = |e: std::io::Error| ClientError::Io(format!("{}: {e}", self.authority));
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, &self.authority);
        let explicit_auth = headers.iter().any(|(k, _)| k == header::AUTHORIZATION);
        if let (Some(a), false) = (&self.authorization, explicit_auth) {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ClientError::Io(format!("building the request: {e}")))?;
        let resp = match &self.tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(io)?;
                send(TokioIo::new(stream), req).await?
            }
            None => send(TokioIo::new(tcp), req).await?,
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ClientError::Io(format!("reading the response: {e}")))?
            .to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// A JSON request.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, ClientError> {
        self.request(
            method,
            path,
            &[(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body.to_string(),
        )
        .await
    }
}

async fn send<T>(
    io: TokioIo<T>,
    req: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError::Io(format!("HTTP handshake: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Io(format!("sending the request: {e}")))
}
