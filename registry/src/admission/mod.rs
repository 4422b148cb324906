//! The deploy gate: a Kubernetes admission webhook (`admission.k8s.io/v1`
//! `AdmissionReview`, through `kube-core`'s `admission` types) that evaluates every
//! container image of a Pod or pod template against the registry's signing policy
//! ([`ImagePolicy`] at [`Gate::Deploy`]), refuses the object with the reasons, and in
//! mutate mode pins the allowed tags to the digests that were evaluated.
//!
//! # What is checked
//!
//! Kinds: `Pod` (`spec`), `Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`,
//! `Job`, `ReplicationController` (`spec.template.spec`) and `CronJob`
//! (`spec.jobTemplate.spec.template.spec`); in each, `containers`, `initContainers` and
//! `ephemeralContainers`. Operations: `CREATE` and `UPDATE` (on `UPDATE`, an image
//! string the old object already had is not evaluated again, so pods admitted earlier
//! can still be relabelled or have finalizers removed after a policy change); `DELETE`,
//! `CONNECT`, other kinds and subresources other than `ephemeralcontainers` are allowed
//! untouched, as are namespaces listed in `admission.exempt_namespaces`.
//!
//! Each image reference is parsed as Docker does ([`reference`]: `docker.io` and
//! `library/` by default, tag `latest`, `host:port/path:tag@sha256:…`); a malformed one
//! refuses the object. An image on one of `admission.hosts` (this registry's names,
//! `host` or `host:port`; default: `auth.hostnames`) is resolved to the digest the
//! registry serves for its tag now, and that `(repository, tag, digest)` is evaluated;
//! a reference by digest is evaluated with no tag (with its tag when it has both).
//! Images on other registries are allowed or refused by `admission.other_registries`
//! (default `deny`). Allowed images of a permissive policy come back as `warnings`.
//!
//! # Modes
//!
//! `POST /admission/validate` never changes the object. `POST /admission/mutate` (for a
//! `MutatingWebhookConfiguration`) adds a base64 JSON Patch replacing every allowed tag
//! reference on this registry by `name@sha256:…`, the digest that was evaluated, so
//! the kubelet runs what was checked; `admission.mutate_pods_only` restricts that to
//! Pods (digest rewriting of Deployments fights GitOps tools, which see their manifests
//! drift), and `admission.mode = validate` turns rewriting off everywhere.
//! `POST /admission` follows `admission.mode`.
//!
//! # Limits and failure
//!
//! Bodies above `admission.max_body_bytes` (3 MiB, the API server's own limit) get 413;
//! objects with more than `admission.max_images` (256) images are refused; images are
//! evaluated at most `admission.concurrency` (8) at a time, and the whole evaluation is
//! bounded by `admission.timeout_ms` (5000, below the webhook's default 10 s
//! `timeoutSeconds`). On a timeout or an evaluation error the object is refused (503),
//! unless `admission.fail_open` is set: then it is allowed with a warning.
//!
//! # Serving and authentication
//!
//! The routes are on the registry's own port when a policy engine is installed
//! ([`crate::Registry::set_image_policy`]), with the registry's certificate (issued by
//! `DATA_DIR/tls/ca.crt`). For a cluster, `admission.listen` (e.g. `0.0.0.0:8443`) adds
//! a separate HTTPS listener whose certificate is issued from the same CA for
//! `<admission.service>.<admission.namespace>.svc` (defaults `notary-registry`,
//! `default`) and written to `DATA_DIR/tls/admission-<service>.<namespace>.{crt,key}`
//! (or `admission.tls_cert` / `admission.tls_key`); its `caBundle` is printed at start.
//!
//! Callers are authenticated by a shared bearer token (`admission.token` or
//! `admission.token_file`; the API server sends it when its admission configuration
//! names a kubeconfig for the webhook) and, on the separate listener, by client
//! certificates issued by `admission.client_ca` (the API server's
//! `--proxy-client-cert-file`, or the kubeconfig's `client-certificate-data`). With
//! neither, the webhook answers only when it is bound to a loopback address; otherwise
//! every call gets 401 and a warning is logged at start.
//!
//! # A cluster configuration
//!
//! ```yaml
//! apiVersion: admissionregistration.k8s.io/v1
//! kind: MutatingWebhookConfiguration
//! metadata:
//!   name: notary-registry
//! webhooks:
//!   - name: images.notary-registry.example.com
//!     admissionReviewVersions: ["v1"]
//!     sideEffects: None
//!     timeoutSeconds: 10
//!     failurePolicy: Fail
//!     reinvocationPolicy: IfNeeded
//!     clientConfig:
//!       service: {namespace: default, name: notary-registry, path: /admission/mutate, port: 8443}
//!       caBundle: "<printed at start: base64 of DATA_DIR/tls/ca.crt>"
//!     namespaceSelector:      # never lock the cluster out
//!       matchExpressions:
//!         - {key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system, default]}
//!     rules:
//!       - operations: ["CREATE", "UPDATE"]
//!         apiGroups: ["", "apps", "batch"]
//!         apiVersions: ["*"]
//!         resources: ["pods", "pods/ephemeralcontainers", "deployments", "replicasets",
//!                     "statefulsets", "daemonsets", "jobs", "cronjobs", "replicationcontrollers"]
//!         scope: "*"
//! ```
//!
//! A `ValidatingWebhookConfiguration` is the same with `path: /admission/validate` and
//! no `reinvocationPolicy`. The token goes into the API server's
//! `--admission-control-config-file` (`WebhookAdmissionConfiguration` →
//! `kubeConfigFile` with `users: [{name: notary-registry.default.svc, user: {token: …}}]`).

pub mod listener;
pub mod objects;
pub mod reference;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use futures_util::StreamExt as _;
use json_patch::jsonptr::PointerBuf;
use json_patch::{Patch, PatchOperation, ReplaceOperation};
use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::Deserialize;
use sha2::Digest as _;

use crate::Registry;
use crate::access::Identity;
use crate::policy::{Gate, ImagePolicy};
use crate::storage::s3::Secret;

use objects::ContainerImage;
use reference::ImageReference;

/// Whether `/admission` and `/admission/mutate` rewrite tags to digests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rewrite allowed tag references to `name@digest`.
    #[default]
    Mutate,
    /// Decide only; never patch.
    Validate,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "mutate" => Ok(Mode::Mutate),
            "validate" => Ok(Mode::Validate),
            _ => Err("mutate or validate".into()),
        }
    }
}

/// What happens to images on registries this registry does not serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OtherRegistries {
    /// Allowed unchecked.
    Allow,
    /// Refused, naming the registry.
    #[default]
    Deny,
}

impl FromStr for OtherRegistries {
    type Err = String;
    fn from_str(s: &str) -> Result<OtherRegistries, String> {
        match s {
            "allow" => Ok(OtherRegistries::Allow),
            "deny" => Ok(OtherRegistries::Deny),
            _ => Err("allow or deny".into()),
        }
    }
}

/// The `admission` section of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdmissionConfig {
    /// Serve the webhook when a policy engine is installed (default true).
    pub enabled: bool,
    /// `mutate` (default) or `validate`.
    pub mode: Mode,
    /// This registry's host names (`host` or `host:port`) as images name them; empty:
    /// `auth.hostnames`.
    pub hosts: Vec<String>,
    /// `allow` or `deny` (default) images on other registries.
    pub other_registries: OtherRegistries,
    /// Rewrite tags to digests in Pods only, never in pod templates.
    pub mutate_pods_only: bool,
    /// Bound of one review's whole evaluation, milliseconds (1..=30000; default 5000).
    pub timeout_ms: u64,
    /// Allow (with a warning) when the evaluation fails or times out (default false).
    pub fail_open: bool,
    /// Most images evaluated per object (default 256).
    pub max_images: usize,
    /// Images evaluated at the same time per review (default 8).
    pub concurrency: usize,
    /// Largest `AdmissionReview` body, bytes (default 3 MiB).
    pub max_body_bytes: usize,
    /// Namespaces whose objects are allowed unchecked (default `kube-system`).
    pub exempt_namespaces: Vec<String>,
    /// Shared bearer token callers must send (never logged).
    pub token: Option<Secret>,
    /// A file holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// CA certificates (PEM) of the client certificates the separate listener requires.
    pub client_ca: Option<PathBuf>,
    /// A separate HTTPS listener for the webhook (`0.0.0.0:8443`).
    pub listen: Option<SocketAddr>,
    /// The webhook's Service name (certificate of the separate listener).
    pub service: String,
    /// The Service's namespace.
    pub namespace: String,
    /// Certificate chain of the separate listener (default: issued from the data
    /// directory's CA).
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    pub tls_key: Option<PathBuf>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            enabled: true,
            mode: Mode::Mutate,
            hosts: Vec::new(),
            other_registries: OtherRegistries::Deny,
            mutate_pods_only: false,
            timeout_ms: 5000,
            fail_open: false,
            max_images: 256,
            concurrency: 8,
            max_body_bytes: 3 << 20,
            exempt_namespaces: vec!["kube-system".to_owned()],
            token: None,
            token_file: None,
            client_ca: None,
            listen: None,
            service: "notary-registry".to_owned(),
            namespace: "default".to_owned(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl AdmissionConfig {
    /// Applies `NOTARY_REGISTRY_ADMISSION_*` variables.
    pub fn apply_env<F: Fn(&str) -> Option<String>>(
        &mut self,
        env: &notary_daemon::env::Overrides<F>,
    ) -> anyhow::Result<()> {
        env.parsed("ADMISSION_ENABLED", &mut self.enabled)?;
        env.parsed("ADMISSION_MODE", &mut self.mode)?;
        env.list("ADMISSION_HOSTS", &mut self.hosts);
        env.parsed("ADMISSION_OTHER_REGISTRIES", &mut self.other_registries)?;
        env.parsed("ADMISSION_MUTATE_PODS_ONLY", &mut self.mutate_pods_only)?;
        env.parsed("ADMISSION_TIMEOUT_MS", &mut self.timeout_ms)?;
        env.parsed("ADMISSION_FAIL_OPEN", &mut self.fail_open)?;
        env.parsed("ADMISSION_MAX_IMAGES", &mut self.max_images)?;
        env.parsed("ADMISSION_CONCURRENCY", &mut self.concurrency)?;
        env.parsed("ADMISSION_MAX_BODY_BYTES", &mut self.max_body_bytes)?;
        env.list("ADMISSION_EXEMPT_NAMESPACES", &mut self.exempt_namespaces);
        if let Some(t) = env.get("ADMISSION_TOKEN") {
            self.token = (!t.is_empty()).then(|| Secret::new(t));
        }
        env.path("ADMISSION_TOKEN_FILE", &mut self.token_file);
        env.path("ADMISSION_CLIENT_CA", &mut self.client_ca);
        if let Some(l) = env.get("ADMISSION_LISTEN") {
            self.listen = if l.is_empty() {
                None
            } else {
                let mut addr = SocketAddr::from(([0, 0, 0, 0], 0));
                env.parsed("ADMISSION_LISTEN", &mut addr)?;
                Some(addr)
            };
        }
        env.string("ADMISSION_SERVICE", &mut self.service);
        env.string("ADMISSION_NAMESPACE", &mut self.namespace);
        env.path("ADMISSION_TLS_CERT", &mut self.tls_cert);
        env.path("ADMISSION_TLS_KEY", &mut self.tls_key);
        Ok(())
    }

    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=30_000).contains(&self.timeout_ms) {
            return Err(
                "admission.timeout_ms must be within 1..=30000 (the API server waits at most 30 s)"
                    .into(),
            );
        }
        if !(1..=4096).contains(&self.max_images) {
            return Err("admission.max_images must be within 1..=4096".into());
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err("admission.concurrency must be within 1..=64".into());
        }
        if !(1024..=(64 << 20)).contains(&self.max_body_bytes) {
            return Err("admission.max_body_bytes must be within 1 KiB..=64 MiB".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("admission.tls_cert and admission.tls_key go together".into());
        }
        Ok(())
    }

    /// The runtime settings for a webhook served on `served_on`; `client_certificates`
    /// when that listener verifies client certificates; `fallback_hosts` when
    /// `hosts` is empty.
    pub fn settings(
        &self,
        served_on: SocketAddr,
        client_certificates: bool,
        fallback_hosts: &[String],
    ) -> anyhow::Result<Settings> {
        self.validate().map_err(anyhow::Error::msg)?;
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.expose().to_owned()),
            (None, Some(f)) => {
                let text = zeroize::Zeroizing::new(std::fs::read_to_string(f).map_err(|e| {
                    anyhow::anyhow!("reading admission.token_file {}: {e}", f.display())
                })?);
                Some(text.trim().to_owned())
            }
            (None, None) => None,
        };
        let caller = match token {
            Some(t) if t.is_empty() => anyhow::bail!("the admission token is empty"),
            Some(t) => CallerAuth::token(&zeroize::Zeroizing::new(t)),
            None if client_certificates => CallerAuth::Open,
            None if served_on.ip().is_loopback() => CallerAuth::Open,
            None => CallerAuth::Unconfigured,
        };
        let hosts = if self.hosts.is_empty() {
            fallback_hosts
        } else {
            &self.hosts
        };
        Ok(Settings {
            mode: self.mode,
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            other_registries: self.other_registries,
            mutate_pods_only: self.mutate_pods_only,
            timeout: Duration::from_millis(self.timeout_ms),
            fail_open: self.fail_open,
            max_images: self.max_images,
            concurrency: self.concurrency,
            max_body_bytes: self.max_body_bytes,
            exempt_namespaces: self.exempt_namespaces.clone(),
            caller,
        })
    }
}

/// How webhook callers are authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum CallerAuth {
    /// Loopback-only, or the listener verified a client certificate.
    Open,
    /// `Authorization: Bearer <token>`; the SHA-256 of the token is kept.
    Token([u8; 32]),
    /// Reachable from other hosts with nothing configured: every call is refused.
    Unconfigured,
}

impl CallerAuth {
    /// Requires `token`.
    pub fn token(token: &str) -> CallerAuth {
        CallerAuth::Token(sha2::Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for CallerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallerAuth::Open => "Open",
            CallerAuth::Token(_) => "Token(<redacted>)",
            CallerAuth::Unconfigured => "Unconfigured",
        })
    }
}

/// The webhook's runtime settings (see [`AdmissionConfig`] for each).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Rewrite on `/admission` and `/admission/mutate`.
    pub mode: Mode,
    /// This registry's hosts, lowercase.
    pub hosts: Vec<String>,
    /// Images elsewhere.
    pub other_registries: OtherRegistries,
    /// Rewrite Pods only.
    pub mutate_pods_only: bool,
    /// Bound of one review's evaluation.
    pub timeout: Duration,
    /// Allow on timeout or error.
    pub fail_open: bool,
    /// Most images per object.
    pub max_images: usize,
    /// Concurrent evaluations per review.
    pub concurrency: usize,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Namespaces not checked.
    pub exempt_namespaces: Vec<String>,
    /// Caller authentication.
    pub caller: CallerAuth,
}

impl Default for Settings {
    /// The configuration defaults, no registry host, open to callers (tests, or a
    /// loopback listener).
    fn default() -> Self {
        let c = AdmissionConfig::default();
        Settings {
            mode: c.mode,
            hosts: Vec::new(),
            other_registries: c.other_registries,
            mutate_pods_only: c.mutate_pods_only,
            timeout: Duration::from_millis(c.timeout_ms),
            fail_open: c.fail_open,
            max_images: c.max_images,
            concurrency: c.concurrency,
            max_body_bytes: c.max_body_bytes,
            exempt_namespaces: c.exempt_namespaces,
            caller: CallerAuth::Open,
        }
    }
}

/// Which endpoint was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Validate,
    Mutate,
    Configured,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
            Endpoint::Configured => "review",
        }
    }
}

struct Webhook {
    registry: Arc<Registry>,
    policy: Arc<dyn ImagePolicy>,
    settings: Arc<Settings>,
}

/// The webhook routes: `POST /admission/validate`, `POST /admission/mutate` and
/// `POST /admission` (per `settings.mode`).
pub fn router(
    registry: Arc<Registry>,
    policy: Arc<dyn ImagePolicy>,
    settings: Arc<Settings>,
) -> Router {
    if settings.caller == CallerAuth::Unconfigured {
        tracing::warn!(
            "the admission webhook is reachable from other hosts and has no admission.token \
             (nor a client-certificate listener): it refuses every call"
        );
    }
    let hook = Arc::new(Webhook {
        registry,
        policy,
        settings,
    });
    Router::new()
        .route(
            "/admission",
            post(
                |State(h): State<Arc<Webhook>>, headers: HeaderMap, body: Body| async move {
                    h.handle(Endpoint::Configured, &headers, body).await
                },
            ),
        )
        .route(
            "/admission/validate",
            post(
                |State(h): State<Arc<Webhook>>, headers: HeaderMap, body: Body| async move {
                    h.handle(Endpoint::Validate, &headers, body).await
                },
            ),
        )
        .route(
            "/admission/mutate",
            post(
                |State(h): State<Arc<Webhook>>, headers: HeaderMap, body: Body| async move {
                    h.handle(Endpoint::Mutate, &headers, body).await
                },
            ),
        )
        .with_state(hook)
}

/// A non-200 answer: a Kubernetes `Status` body (the API server then applies the
/// webhook's `failurePolicy`).
fn failure(status: StatusCode, reason: &str, message: &str) -> Response {
    metrics::counter!("registry_admission_refused_calls_total", "reason" => reason.to_owned())
        .increment(1);
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Compares two tokens by their SHA-256 in time independent of where they differ.
fn same_token(expected: &[u8; 32], given: &str) -> bool {
    let given: [u8; 32] = sha2::Sha256::digest(given.as_bytes()).into();
    expected
        .iter()
        .zip(given.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// One image's outcome.
#[derive(Clone, Debug)]
enum Outcome {
    /// Allowed; `pin` is the digest to rewrite a tag reference to.
    Allowed {
        pin: Option<String>,
        warning: Option<String>,
    },
    /// Refused; `digest` is the digest that was evaluated, if any.
    Denied {
        digest: Option<String>,
        reason: String,
    },
    /// Not evaluated (database or policy failure).
    Failed(String),
}

/// Longest single reason quoted in a message.
const MAX_REASON: usize = 1024;
/// Longest whole denial message.
const MAX_MESSAGE: usize = 32 << 10;
/// Most warnings returned (the API server truncates long lists anyway).
const MAX_WARNINGS: usize = 64;

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Webhook {
    async fn handle(&self, endpoint: Endpoint, headers: &HeaderMap, body: Body) -> Response {
        match &self.settings.caller {
            CallerAuth::Open => {}
            CallerAuth::Unconfigured => {
                return failure(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "the admission webhook is not configured for remote callers: set admission.token or use admission.listen with admission.client_ca",
                );
            }
            CallerAuth::Token(expected) => {
                let given = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                if !given.is_some_and(|g| same_token(expected, g.trim())) {
                    return failure(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        "a valid bearer token is required",
                    );
                }
            }
        }
        let bytes = match axum::body::to_bytes(body, self.settings.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => {
                return failure(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    &format!(
                        "the AdmissionReview exceeds {} bytes",
                        self.settings.max_body_bytes
                    ),
                );
            }
        };
        let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("not an AdmissionReview: {}", clip(&e.to_string(), 256)),
                );
            }
        };
        if review.types.kind != "AdmissionReview"
            || !review.types.api_version.starts_with("admission.k8s.io/")
        {
            return failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "expected kind AdmissionReview of admission.k8s.io/v1",
            );
        }
        let request: AdmissionRequest<DynamicObject> = match review.try_into() {
            Ok(r) => r,
            Err(_) => {
                return failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the AdmissionReview has no request",
                );
            }
        };
        let mutate = match endpoint {
            Endpoint::Validate => false,
            Endpoint::Mutate | Endpoint::Configured => self.settings.mode == Mode::Mutate,
        };
        let started = Instant::now();
        let (response, result) = self.decide(&request, mutate).await;
        metrics::counter!("registry_admission_reviews_total", "endpoint" => endpoint.label(), "result" => result)
            .increment(1);
        metrics::histogram!("registry_admission_review_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            uid = %request.uid,
            kind = %request.kind.kind,
            namespace = request.namespace.as_deref().unwrap_or(""),
            name = %request.name,
            user = request.user_info.username.as_deref().unwrap_or(""),
            endpoint = endpoint.label(),
            result,
            message = %response.result.message,
            "admission review"
        );
        review_response(response)
    }

    /// Decides one request; the second value labels the result for metrics.
    async fn decide(
        &self,
        req: &AdmissionRequest<DynamicObject>,
        mutate: bool,
    ) -> (AdmissionResponse, &'static str) {
        let resp = AdmissionResponse::from(req);
        if !matches!(req.operation, Operation::Create | Operation::Update) {
            return (resp, "skipped");
        }
        let Some(spec_path) = objects::pod_spec_path(&req.kind.group, &req.kind.kind) else {
            return (resp, "skipped");
        };
        if req
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty() && s != "ephemeralcontainers")
        {
            return (resp, "skipped");
        }
        if let Some(ns) = &req.namespace
            && self.settings.exempt_namespaces.iter().any(|e| e == ns)
        {
            return (resp, "exempt");
        }
        let Some(object) = &req.object else {
            return (
                deny(
                    resp,
                    400,
                    "BadRequest",
                    "the request holds no object".into(),
                ),
                "denied",
            );
        };
        let found = match objects::images(&object.data, spec_path, self.settings.max_images) {
            Ok(f) => f,
            Err(e) => return (deny(resp, 403, "Forbidden", e.to_string()), "denied"),
        };
        // On UPDATE, images the object already had were admitted before.
        let previous: HashSet<String> = match (&req.operation, &req.old_object) {
            (Operation::Update, Some(old)) => {
                objects::images(&old.data, spec_path, self.settings.max_images)
                    .map(|v| v.into_iter().map(|c| c.image).collect())
                    .unwrap_or_default()
            }
            _ => HashSet::new(),
        };
        let checked: Vec<&ContainerImage> = found
            .iter()
            .filter(|c| !previous.contains(&c.image))
            .collect();
        if checked.is_empty() {
            return (resp, "allowed");
        }
        let identity = Identity {
            user: req.user_info.username.clone(),
            admin: false,
        };
        let unique: BTreeSet<String> = checked.iter().map(|c| c.image.clone()).collect();
        let evaluation = futures_util::stream::iter(unique)
            .map(|image: String| {
                let identity = identity.clone();
                async move {
                    let outcome = self.evaluate(&image, &identity).await;
                    (image, outcome)
                }
            })
            .buffer_unordered(self.settings.concurrency)
            .collect::<HashMap<String, Outcome>>();
        let outcomes = match tokio::time::timeout(self.settings.timeout, evaluation).await {
            Ok(o) => o,
            Err(_) => {
                metrics::counter!("registry_admission_timeouts_total").increment(1);
                let what = format!(
                    "the image policy evaluation did not finish within {} ms",
                    self.settings.timeout.as_millis()
                );
                tracing::warn!(uid = %req.uid, fail_open = self.settings.fail_open, "{what}");
                return if self.settings.fail_open {
                    let mut resp = resp;
                    resp.warnings = Some(vec![format!(
                        "{what}; allowed because admission.fail_open is set"
                    )]);
                    (resp, "failed_open")
                } else {
                    (
                        deny(
                            resp,
                            503,
                            "ServiceUnavailable",
                            format!("{what}; refused (admission.fail_open is not set)"),
                        ),
                        "error",
                    )
                };
            }
        };
        self.combine(resp, req, &checked, &outcomes, mutate)
    }

    /// Joins the images' outcomes into one answer.
    fn combine(
        &self,
        mut resp: AdmissionResponse,
        req: &AdmissionRequest<DynamicObject>,
        checked: &[&ContainerImage],
        outcomes: &HashMap<String, Outcome>,
        mutate: bool,
    ) -> (AdmissionResponse, &'static str) {
        let rewrite = mutate && (!self.settings.mutate_pods_only || req.kind.kind == "Pod");
        let mut refused = Vec::new();
        let mut failed = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let mut ops = Vec::new();
        for c in checked {
            let Some(outcome) = outcomes.get(c.image.as_str()) else {
                continue;
            };
            let image = clip(&c.image, 300);
            match outcome {
                Outcome::Allowed { pin, warning } => {
                    if let Some(w) = warning {
                        let w = format!("{}: image {image}: {}", c.container, clip(w, MAX_REASON));
                        if !warnings.contains(&w) {
                            warnings.push(w);
                        }
                    }
                    if let (true, Some(pinned)) = (rewrite, pin) {
                        ops.push(PatchOperation::Replace(ReplaceOperation {
                            path: PointerBuf::from_tokens(c.pointer.iter()),
                            value: serde_json::Value::String(pinned.clone()),
                        }));
                    }
                }
                Outcome::Denied { digest, reason } => {
                    let at = digest.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
                    refused.push(format!("{}: image {image}{at} refused: {}", c.container, clip(reason, MAX_REASON)));
                }
                Outcome::Failed(e) if self.settings.fail_open => warnings.push(format!(
                    "{}: image {image} was not evaluated ({}); allowed because admission.fail_open is set",
                    c.container,
                    clip(e, MAX_REASON)
                )),
                Outcome::Failed(e) => {
                    failed.push(format!("{}: image {image} could not be evaluated: {}", c.container, clip(e, MAX_REASON)));
                }
            }
        }
        if !refused.is_empty() || !failed.is_empty() {
            let (code, reason, result) = if refused.is_empty() {
                (503, "ServiceUnavailable", "error")
            } else {
                (403, "Forbidden", "denied")
            };
            let total = refused.len() + failed.len();
            let mut message = format!(
                "{} of {} image reference(s) refused by the registry's signing policy: ",
                total,
                checked.len()
            );
            let parts: Vec<String> = refused.into_iter().chain(failed).collect();
            for (i, p) in parts.iter().enumerate() {
                if message.len() + p.len() + 2 > MAX_MESSAGE {
                    message.push_str(&format!("; and {} more", parts.len() - i));
                    break;
                }
                if i > 0 {
                    message.push_str("; ");
                }
                message.push_str(p);
            }
            return (deny(resp, code, reason, message), result);
        }
        let result = if warnings.is_empty() {
            "allowed"
        } else {
            "warned"
        };
        if !warnings.is_empty() {
            warnings.truncate(MAX_WARNINGS);
            resp.warnings = Some(warnings);
        }
        if !ops.is_empty() {
            match resp.clone().with_patch(Patch(ops)) {
                Ok(r) => resp = r,
                Err(e) => tracing::error!(error = %e, "serialising the JSON patch"),
            }
        }
        (resp, result)
    }

    /// Evaluates one image reference.
    async fn evaluate(&self, image: &str, identity: &Identity) -> Outcome {
        let outcome = self.evaluate_inner(image, identity).await;
        let label = match &outcome {
            Outcome::Allowed { .. } => "allowed",
            Outcome::Denied { .. } => "denied",
            Outcome::Failed(_) => "error",
        };
        metrics::counter!("registry_admission_images_total", "outcome" => label).increment(1);
        outcome
    }

    async fn evaluate_inner(&self, image: &str, identity: &Identity) -> Outcome {
        let r = match ImageReference::parse(image) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Denied {
                    digest: None,
                    reason: format!("not a valid image reference: {e}"),
                };
            }
        };
        if !self.settings.hosts.contains(&r.domain) {
            return match self.settings.other_registries {
                OtherRegistries::Allow => Outcome::Allowed {
                    pin: None,
                    warning: None,
                },
                OtherRegistries::Deny => Outcome::Denied {
                    digest: None,
                    reason: format!(
                        "registry {} is not served here and admission.other_registries is deny (this registry is {})",
                        r.domain,
                        if self.settings.hosts.is_empty() {
                            "unnamed: set admission.hosts".to_owned()
                        } else {
                            self.settings.hosts.join(", ")
                        }
                    ),
                },
            };
        }
        let db = &self.registry.db;
        let repo = r.path.as_str();
        let (tag, digest, pin) = match (&r.digest, r.effective_tag()) {
            (Some(d), tag) => {
                let d = d.to_string();
                match db.manifest(repo, &d).await {
                    Ok(Some(_)) => (tag, d, false),
                    Ok(None) => {
                        return Outcome::Denied {
                            digest: None,
                            reason: format!("manifest {d} does not exist in repository {repo}"),
                        };
                    }
                    Err(e) => return db_failure(&e),
                }
            }
            (None, Some(tag)) => match db.tagged_manifest(repo, tag).await {
                Ok(Some(m)) => (Some(tag), m.digest, true),
                Ok(None) => {
                    return Outcome::Denied {
                        digest: None,
                        reason: format!("tag {tag} does not exist in repository {repo}"),
                    };
                }
                Err(e) => return db_failure(&e),
            },
            (None, None) => {
                return Outcome::Denied {
                    digest: None,
                    reason: "names neither a tag nor a digest".into(),
                };
            }
        };
        match self
            .policy
            .evaluate(repo, tag, Some(&digest), identity, Gate::Deploy)
            .await
        {
            Ok(v) if v.allowed => Outcome::Allowed {
                pin: pin.then(|| r.pinned(&digest)),
                warning: v.warn.then_some(v.reason),
            },
            Ok(v) => Outcome::Denied {
                digest: Some(digest),
                reason: v.reason,
            },
            Err(e) => {
                tracing::warn!(repository = repo, error = %e, "image policy evaluation failed");
                Outcome::Failed(format!("the image policy failed: {e}"))
            }
        }
    }
}

fn db_failure(e: &sqlx::Error) -> Outcome {
    tracing::warn!(error = %e, "admission: registry database lookup failed");
    Outcome::Failed("the registry database is unavailable".into())
}

/// Turns `resp` into a denial.
fn deny(resp: AdmissionResponse, code: u16, reason: &str, message: String) -> AdmissionResponse {
    let mut resp = resp.deny(&message);
    resp.result = kube_core::Status::failure(&message, reason).with_code(code);
    resp
}

/// The HTTP answer: the `AdmissionReview` with its response, the patch base64 encoded
/// (as the API server's Go decoder reads `[]byte`).
fn review_response(mut resp: AdmissionResponse) -> Response {
    let patch = resp.patch.take();
    let mut body = match serde_json::to_value(resp.into_review()) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "serialising an AdmissionReview");
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "internal error",
            );
        }
    };
    if let (Some(p), Some(r)) = (
        patch,
        body.get_mut("response").and_then(|r| r.as_object_mut()),
    ) {
        r.insert(
            "patch".into(),
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(p)),
        );
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn environment_overrides() {
        let vars: HashMap<&str, &str> = [
            ("X_ADMISSION_MODE", "validate"),
            ("X_ADMISSION_HOSTS", "registry.example.com,127.0.0.1:5000"),
            ("X_ADMISSION_OTHER_REGISTRIES", "allow"),
            ("X_ADMISSION_TIMEOUT_MS", "250"),
            ("X_ADMISSION_FAIL_OPEN", "true"),
            ("X_ADMISSION_MUTATE_PODS_ONLY", "true"),
            ("X_ADMISSION_TOKEN", "s3cret"),
            ("X_ADMISSION_LISTEN", "127.0.0.1:8443"),
            ("X_ADMISSION_NAMESPACE", "trust"),
        ]
        .into();
        let env =
            notary_daemon::env::Overrides::new("X", |k: &str| vars.get(k).map(|v| (*v).to_owned()));
        let mut c = AdmissionConfig::default();
        c.apply_env(&env).unwrap();
        assert_eq!(c.mode, Mode::Validate);
        assert_eq!(c.hosts, ["registry.example.com", "127.0.0.1:5000"]);
        assert_eq!(c.other_registries, OtherRegistries::Allow);
        assert_eq!(c.timeout_ms, 250);
        assert!(c.fail_open && c.mutate_pods_only);
        assert_eq!(c.listen, Some(SocketAddr::from(([127, 0, 0, 1], 8443))));
        assert_eq!(c.namespace, "trust");
        let s = c
            .settings(SocketAddr::from(([0, 0, 0, 0], 5000)), false, &[])
            .unwrap();
        assert_eq!(s.caller, CallerAuth::token("s3cret"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let bad = notary_daemon::env::Overrides::new("X", |k: &str| {
            (k == "X_ADMISSION_MODE").then(|| "both".to_owned())
        });
        assert!(c.apply_env(&bad).is_err());
    }

    #[test]
    fn configuration_file_section() {
        let c: crate::server::Config = serde_json::from_str(
            r#"{"admission": {"mode": "validate", "other_registries": "allow", "listen": "0.0.0.0:8443",
                "token": "t0ken", "hosts": ["registry.example.com"], "mutate_pods_only": true}}"#,
        )
        .unwrap();
        assert_eq!(c.admission.mode, Mode::Validate);
        assert_eq!(
            c.admission.listen,
            Some(SocketAddr::from(([0, 0, 0, 0], 8443)))
        );
        assert!(!format!("{c:?}").contains("t0ken"));
        assert!(
            serde_json::from_str::<crate::server::Config>(r#"{"admission": {"mod": "x"}}"#)
                .is_err()
        );
        assert!(crate::server::Config::default().admission.enabled);
    }

    #[test]
    fn unauthenticated_only_on_loopback() {
        let c = AdmissionConfig::default();
        let any = SocketAddr::from(([0, 0, 0, 0], 5000));
        let lo = SocketAddr::from(([127, 0, 0, 1], 5000));
        assert_eq!(c.settings(lo, false, &[]).unwrap().caller, CallerAuth::Open);
        assert_eq!(
            c.settings(any, false, &[]).unwrap().caller,
            CallerAuth::Unconfigured
        );
        assert_eq!(c.settings(any, true, &[]).unwrap().caller, CallerAuth::Open);
        let hosts = c
            .settings(lo, false, &["Registry.Example.com".to_owned()])
            .unwrap()
            .hosts;
        assert_eq!(hosts, ["registry.example.com"]);
    }

    #[test]
    fn bounds_are_checked() {
        for c in [
            AdmissionConfig {
                timeout_ms: 0,
                ..Default::default()
            },
            AdmissionConfig {
                timeout_ms: 60_000,
                ..Default::default()
            },
            AdmissionConfig {
                max_images: 0,
                ..Default::default()
            },
            AdmissionConfig {
                concurrency: 0,
                ..Default::default()
            },
            AdmissionConfig {
                max_body_bytes: 10,
                ..Default::default()
            },
            AdmissionConfig {
                tls_cert: Some("c".into()),
                ..Default::default()
            },
        ] {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(AdmissionConfig::default().validate().is_ok());
    }

    #[test]
    fn token_comparison() {
        let CallerAuth::Token(h) = CallerAuth::token("abc") else {
            unreachable!()
        };
        assert!(same_token(&h, "abc"));
        assert!(!same_token(&h, "abd") && !same_token(&h, "") && !same_token(&h, "abcd"));
    }

    #[test]
    fn long_reasons_are_clipped_on_char_boundaries() {
        let s = "é".repeat(10);
        let c = clip(&s, 5);
        assert!(c.starts_with("éé") && c.ends_with('…'));
        assert_eq!(clip("short", 10), "short");
    }
}
