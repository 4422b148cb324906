//! Authentication and authorisation (spec sections 3 and 5): the token service
//! (`/auth/token`, [`token`]), the registry's [`Access`] implementation
//! ([`TokenAccess`]: bearer tokens it issued, or Basic credentials, checked against what
//! each route needs), users / organisations / teams / grants ([`store`]) and the
//! first-start administrator.
//!
//! What it does not do: federate with an external identity provider (LDAP, OIDC), or
//! verify tokens issued by another token server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;
use zeroize::Zeroizing;

use crate::access::{Access, Action, Identity, Need};
use crate::error::{Code, RegistryError};
use crate::meta::Db;

pub mod jwt;
pub mod password;
pub mod store;
pub mod token;

use jwt::{Claims, SigningKey, TokenError};
use password::{Busy, Verifier};
use store::{AuthStore, Level, StoreError, User};

/// Most scopes in one token request.
pub const MAX_SCOPES: usize = 16;
/// Longest scope string.
pub const MAX_SCOPE_LEN: usize = 512;
/// Entries kept in the verified-token cache.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The authentication section of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The token endpoint URL announced in challenges (default: `<scheme>://<Host>/auth/token`
    /// from each request).
    pub realm: Option<String>,
    /// The registry's `service` (the audience its tokens carry).
    pub service: String,
    /// The `iss` of issued tokens.
    pub issuer: String,
    /// Other audiences the token service issues for (e.g. the Notary server's `service`).
    pub audiences: Vec<String>,
    /// This registry's host names (`host` or `host:port`): a scope name starting with one
    /// of them (`host/org/app`, as Notary clients ask) is authorised as `org/app`. The
    /// token request's own `Host` always counts.
    pub hostnames: Vec<String>,
    /// Access token lifetime, seconds (at least 60).
    pub token_ttl_secs: i64,
    /// Refresh (identity) token lifetime, seconds.
    pub refresh_ttl_secs: i64,
    /// Token-signing certificate (PEM); default generated under `DATA_DIR/token/`.
    pub signing_cert: Option<PathBuf>,
    /// Token-signing key (PKCS#8 PEM, P-256).
    pub signing_key: Option<PathBuf>,
    /// How long a successful Basic login is remembered, seconds (0: never).
    pub credentials_cache_secs: u64,
    /// Password verifications running at once.
    pub max_concurrent_verifications: usize,
    /// Password verifications waiting for a slot before further ones get 429.
    pub max_queued_verifications: usize,
    /// Accept Basic credentials directly on `/v2/` routes (curl, skopeo).
    pub basic_on_registry: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm: None,
            service: "notary-registry".into(),
            issuer: "notary-registry".into(),
            audiences: Vec::new(),
            hostnames: Vec::new(),
            token_ttl_secs: 300,
            refresh_ttl_secs: 90 * 24 * 3600,
            signing_cert: None,
            signing_key: None,
            credentials_cache_secs: 30,
            max_concurrent_verifications: 4,
            max_queued_verifications: 64,
            basic_on_registry: true,
        }
    }
}

/// A parsed scope (spec 3.2): `type[(class)]:name:action[,action]*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// `repository` or `registry` (class suffix dropped).
    pub kind: String,
    /// The resource name (may hold one `:` of a `host:port` prefix).
    pub name: String,
    /// Requested actions, deduplicated, in request order.
    pub actions: Vec<String>,
}

impl Scope {
    /// Parses one scope; `None` when malformed or longer than [`MAX_SCOPE_LEN`].
    pub fn parse(s: &str) -> Option<Scope> {
        if s.len() > MAX_SCOPE_LEN {
            return None;
        }
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        // `repository(plugin)`: the class is deprecated and ignored.
        let kind = match kind.split_once('(') {
            Some((k, class)) if class.ends_with(')') => k,
            Some(_) => return None,
            None => kind,
        };
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        let mut acts: Vec<String> = Vec::new();
        for a in actions.split(',').filter(|a| !a.is_empty()) {
            if !acts.iter().any(|x| x == a) {
                acts.push(a.to_owned());
            }
        }
        Some(Scope {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: acts,
        })
    }

    /// `type:name:a,b`.
    pub fn to_scope_string(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Actions a level allows, as scope strings.
pub fn level_actions(level: Option<Level>, public: bool) -> Vec<Action> {
    let mut v = Vec::new();
    if public || level.is_some() {
        v.push(Action::Pull);
    }
    if level >= Some(Level::ReadWrite) {
        v.extend([Action::Push, Action::Delete]);
    }
    if level >= Some(Level::Admin) {
        v.push(Action::All);
    }
    v
}

const ALL_ACTIONS: [Action; 4] = [Action::Pull, Action::Push, Action::Delete, Action::All];

/// Who made a request.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// A bearer token we issued.
    Token(Arc<Claims>),
    /// Basic credentials (or a trusted local call).
    User(User),
}

impl Caller {
    /// The identity the routes see.
    pub fn identity(&self) -> Identity {
        match self {
            Caller::Anonymous => Identity::anonymous(),
            Caller::Token(c) => Identity {
                user: (!c.sub.is_empty()).then(|| c.sub.clone()),
                admin: c.grants("registry", "admin", "*"),
            },
            Caller::User(u) => Identity {
                user: Some(u.name.clone()),
                admin: u.admin,
            },
        }
    }
}

/// Why the caller could not be established.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// Credentials or token were presented and are not acceptable.
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// Too many password verifications.
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CallerError {
    /// The response for a refusal of a request that carried credentials.
    pub fn into_registry_error(self) -> RegistryError {
        match self {
            CallerError::Invalid(_) => {
                RegistryError::new(Code::Unauthorized, "authentication required")
            }
            CallerError::Busy(_) => RegistryError::new(
                Code::TooManyRequests,
                "too many logins in progress, retry shortly",
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            CallerError::Store(e) => store_error(e),
        }
    }
}

/// A store failure as a registry error.
pub fn store_error(e: StoreError) -> RegistryError {
    match e {
        StoreError::Db(e) => RegistryError::from(e),
        other => RegistryError::internal("auth store", other),
    }
}

/// Current Unix time.
fn now() -> i64 {
    crate::meta::now()
}

/// The token service and the registry's authentication state.
pub struct AuthService {
    config: AuthConfig,
    store: AuthStore,
    key: SigningKey,
    passwords: Verifier,
    verified: Mutex<HashMap<[u8; 32], Arc<Claims>>>,
    default_scheme: &'static str,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("service", &self.config.service)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// Loads (or generates under `DATA_DIR/token/`) the signing key and builds the
    /// service. `tls`: whether the registry itself serves HTTPS (the realm's scheme when
    /// none is configured and no `X-Forwarded-Proto` says otherwise).
    pub fn new(
        config: AuthConfig,
        db: Db,
        data_dir: &Path,
        tls: bool,
    ) -> anyhow::Result<Arc<AuthService>> {
        let key = match (&config.signing_cert, &config.signing_key) {
            (Some(c), Some(k)) => SigningKey::from_files(c, k)?,
            (None, None) => SigningKey::load_or_generate(&data_dir.join("token"))?,
            _ => anyhow::bail!("auth.signing_cert and auth.signing_key go together"),
        };
        if config.service.is_empty() || config.issuer.is_empty() {
            anyhow::bail!("auth.service and auth.issuer must not be empty");
        }
        let passwords = Verifier::new(
            config.max_concurrent_verifications,
            config.max_queued_verifications,
            Duration::from_secs(config.credentials_cache_secs),
        )?;
        Ok(Arc::new(AuthService {
            store: AuthStore::new(db),
            key,
            passwords,
            verified: Mutex::new(HashMap::new()),
            default_scheme: if tls { "https" } else { "http" },
            config,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The user tables.
    pub fn store(&self) -> &AuthStore {
        &self.store
    }

    /// The token-signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Password verification counters.
    pub fn password_stats(&self) -> password::VerifyStats {
        self.passwords.stats()
    }

    /// Forgets cached logins (a user, password or admin flag changed).
    pub fn users_changed(&self) {
        self.passwords.forget_all();
    }

    /// Whether the token service issues tokens for `service`.
    pub fn knows_service(&self, service: &str) -> bool {
        service == self.config.service || self.config.audiences.iter().any(|a| a == service)
    }

    // ------------------------------------------------------------------ credentials

    /// Checks a user name and password (cache, then argon2 under the limit).
    pub async fn login(&self, user: &str, password: &str) -> Result<Option<User>, CallerError> {
        if user.is_empty()
            || user.len() > store::MAX_ACCOUNT_NAME
            || password.len() > password::MAX_PASSWORD_LEN
        {
            metrics::counter!("registry_auth_failures_total", "reason" => "bad_credentials")
                .increment(1);
            return Ok(None);
        }
        if let Some(id) = self.passwords.cached(user, password) {
            if let Some(u) = self.store.user_by_id(id).await? {
                if u.name == user {
                    return Ok(Some(u));
                }
            }
        }
        let found = self.store.user(user).await?;
        let ok = self
            .passwords
            .verify(found.as_ref().map(|u| u.password_hash.as_str()), password)
            .await?;
        match found {
            Some(u) if ok => {
                self.passwords.remember(user, password, u.id);
                Ok(Some(u))
            }
            _ => {
                tracing::info!(user = %user.chars().take(64).collect::<String>(), "failed login");
                metrics::counter!("registry_auth_failures_total", "reason" => "bad_credentials")
                    .increment(1);
                Ok(None)
            }
        }
    }

    /// Verifies a bearer token we issued for `audiences` (cached until it expires).
    pub fn verify_token(
        &self,
        token: &str,
        audiences: &[&str],
        now: i64,
    ) -> Result<Arc<Claims>, TokenError> {
        if token.len() > jwt::MAX_AUTHORIZATION_LEN {
            return Err(TokenError::TooLarge(token.len()));
        }
        let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let hit = self.verified.lock().ok().and_then(|c| c.get(&id).cloned());
        if let Some(c) = hit {
            if now > c.exp.saturating_add(jwt::LEEWAY) {
                return Err(TokenError::Expired);
            }
            if !audiences.contains(&c.aud.as_str()) {
                return Err(TokenError::WrongAudience);
            }
            return Ok(c);
        }
        let claims = Arc::new(
            self.key
                .verify(token, &self.config.issuer, audiences, now)?,
        );
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= TOKEN_CACHE_CAPACITY {
                cache.retain(|_, c| now <= c.exp.saturating_add(jwt::LEEWAY));
                if cache.len() >= TOKEN_CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(id, Arc::clone(&claims));
        }
        Ok(claims)
    }

    /// Who sent these headers: no `Authorization` is anonymous; `Bearer` must be a
    /// registry token of ours; `Basic` must be a valid login (when `allow_basic`).
    pub async fn caller(
        &self,
        headers: &HeaderMap,
        allow_basic: bool,
    ) -> Result<Caller, CallerError> {
        let Some(raw) = headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        if raw.len() > jwt::MAX_AUTHORIZATION_LEN {
            metrics::counter!("registry_auth_failures_total", "reason" => "oversized").increment(1);
            return Err(CallerError::Invalid(
                "authorization header too large".into(),
            ));
        }
        let value = raw
            .to_str()
            .map_err(|_| CallerError::Invalid("authorization header is not text".into()))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return match self.verify_token(rest, &[self.config.service.as_str()], now()) {
                Ok(c) => Ok(Caller::Token(c)),
                Err(e) => {
                    metrics::counter!("registry_auth_failures_total", "reason" => "bad_token")
                        .increment(1);
                    tracing::info!(reason = %e, "refused bearer token");
                    Err(CallerError::Invalid(e.to_string()))
                }
            };
        }
        if scheme.eq_ignore_ascii_case("basic") && allow_basic {
            let (user, password) = parse_basic(rest)
                .ok_or_else(|| CallerError::Invalid("malformed basic credentials".into()))?;
            return match self.login(&user, &password).await? {
                Some(u) => Ok(Caller::User(u)),
                None => Err(CallerError::Invalid("wrong user name or password".into())),
            };
        }
        Err(CallerError::Invalid(
            "unsupported authorization scheme".into(),
        ))
    }

    // ------------------------------------------------------------------ decisions

    /// The repository name a scope name designates: our own host name prefix removed
    /// (`registry.example.com/org/app` → `org/app`).
    pub fn local_name<'a>(&self, name: &'a str, request_host: Option<&str>) -> &'a str {
        if let Some((first, rest)) = name.split_once('/') {
            let ours = request_host.is_some_and(|h| h.eq_ignore_ascii_case(first))
                || self
                    .config
                    .hostnames
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(first));
            if ours {
                return rest;
            }
        }
        name
    }

    /// What `user` (or an anonymous caller) may do on a repository.
    pub async fn repository_actions(
        &self,
        user: Option<&User>,
        repo: &str,
    ) -> Result<Vec<Action>, StoreError> {
        if !crate::names::valid_name(repo) {
            return Ok(Vec::new());
        }
        match user {
            Some(u) if u.admin => Ok(ALL_ACTIONS.to_vec()),
            Some(u) => {
                let level = self.store.repo_level(u, repo).await?;
                let public = level.is_none() && self.store.db().is_public(repo).await?;
                Ok(level_actions(level, public))
            }
            None => Ok(level_actions(None, self.store.db().is_public(repo).await?)),
        }
    }

    /// The actions of `scope` granted to `user`: the intersection of requested and
    /// allowed (spec 3.2: a partial or empty grant is not an error).
    pub async fn grant(
        &self,
        user: Option<&User>,
        scope: &Scope,
        request_host: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let allowed: Vec<&str> = match scope.kind.as_str() {
            "repository" => {
                let repo = self.local_name(&scope.name, request_host);
                self.repository_actions(user, repo)
                    .await?
                    .into_iter()
                    .map(Action::as_str)
                    .collect()
            }
            "registry" => match (scope.name.as_str(), user) {
                ("catalog", Some(_)) => vec!["*"],
                ("admin", Some(u)) if u.admin => vec!["*"],
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(scope
            .actions
            .iter()
            .filter(|a| allowed.contains(&a.as_str()))
            .cloned()
            .collect())
    }

    /// Issues an access token.
    pub fn issue(
        &self,
        user: Option<&User>,
        service: &str,
        access: Vec<jwt::ResourceActions>,
    ) -> Result<(String, Claims), jwt::KeyError> {
        let now = now();
        let mut jti = [0u8; 16];
        ring::rand::SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| jwt::KeyError::Invalid("no randomness".into()))?;
        let claims = Claims {
            iss: self.config.issuer.clone(),
            sub: user.map(|u| u.name.clone()).unwrap_or_default(),
            aud: service.to_owned(),
            exp: now + self.config.token_ttl_secs.max(60),
            nbf: now,
            iat: now,
            jti: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(jti),
            access,
        };
        let token = self.key.sign(&claims)?;
        metrics::counter!("registry_auth_tokens_issued_total").increment(1);
        Ok((token, claims))
    }

    /// Issues and stores a refresh token for `user`.
    pub async fn issue_refresh_token(
        &self,
        user: &User,
        client_id: &str,
    ) -> Result<String, CallerError> {
        let mut raw = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut raw)
            .map_err(|_| CallerError::Invalid("no randomness".into()))?;
        let token = format!(
            "nrr_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let client: String = client_id.chars().take(128).collect();
        self.store
            .insert_refresh_token(
                &refresh_hash(&token),
                user.id,
                &client,
                now() + self.config.refresh_ttl_secs.max(60),
            )
            .await?;
        // Now and then, forget the expired ones (one issue in 64).
        if raw[0] & 63 == 0 {
            match self.store.purge_refresh_tokens(now()).await {
                Ok(n) if n > 0 => tracing::debug!(purged = n, "expired refresh tokens forgotten"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "purging expired refresh tokens"),
            }
        }
        Ok(token)
    }

    /// The user of a live refresh token.
    pub async fn refresh_token_user(&self, token: &str) -> Result<Option<User>, StoreError> {
        if token.len() > 256 {
            return Ok(None);
        }
        self.store
            .refresh_token_user(&refresh_hash(token), now())
            .await
    }

    /// The token endpoint URL for challenges.
    pub fn realm(&self, headers: &HeaderMap) -> String {
        if let Some(r) = &self.config.realm {
            return r.clone();
        }
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "http" || *p == "https")
            .unwrap_or(self.default_scheme);
        let host = request_host(headers).unwrap_or_else(|| "localhost".into());
        format!("{scheme}://{host}/auth/token")
    }

    /// A 401 naming what is needed (spec 3.1).
    pub fn challenge(
        &self,
        headers: &HeaderMap,
        needs: &[Need],
        error: Option<&str>,
    ) -> RegistryError {
        let scopes: Vec<String> = needs.iter().filter_map(need_scope).collect();
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(headers),
            self.config.service
        );
        if !scopes.is_empty() {
            value.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
        }
        if let Some(e) = error {
            value.push_str(&format!(",error=\"{e}\""));
        }
        let mut detail = Vec::new();
        for need in needs {
            match need {
                Need::Repository(name, actions) => {
                    for a in actions {
                        detail.push(json!({"Type": "repository", "Class": "", "Name": name, "Action": a.as_str()}));
                    }
                }
                Need::Catalog => detail.push(
                    json!({"Type": "registry", "Class": "", "Name": "catalog", "Action": "*"}),
                ),
                Need::Admin => detail
                    .push(json!({"Type": "registry", "Class": "", "Name": "admin", "Action": "*"})),
                Need::Login => {}
            }
        }
        let err = if detail.is_empty() {
            RegistryError::new(Code::Unauthorized, "authentication required")
        } else {
            RegistryError::detail(Code::Unauthorized, "authentication required", json!(detail))
        };
        match HeaderValue::from_str(&value) {
            Ok(v) => err.with_header(header::WWW_AUTHENTICATE, v),
            Err(_) => err,
        }
    }
}

/// The scope string of a need, for challenges.
fn need_scope(need: &Need) -> Option<String> {
    match need {
        Need::Admin => Some("registry:admin:*".into()),
        other => other.scope(),
    }
}

/// SHA-256 hex of a refresh token (what the database keeps).
fn refresh_hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The request's `Host`, if it looks like a host name (`[A-Za-z0-9.:\[\]-]`, ≤ 255).
pub fn request_host(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']'));
    ok.then(|| h.to_owned())
}

/// Decodes `base64(user:password)` (at most 4 KiB).
pub fn parse_basic(b64: &str) -> Option<(String, Zeroizing<String>)> {
    if b64.len() > 4096 {
        return None;
    }
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), Zeroizing::new(password.to_owned())))
}

/// The registry's [`Access`]: bearer tokens from [`AuthService`] (or Basic credentials),
/// checked against each route's needs.
#[derive(Clone, Debug)]
pub struct TokenAccess {
    svc: Arc<AuthService>,
}

impl TokenAccess {
    /// Over a service.
    pub fn new(svc: Arc<AuthService>) -> TokenAccess {
        TokenAccess { svc }
    }

    /// The service.
    pub fn service(&self) -> &Arc<AuthService> {
        &self.svc
    }

    async fn satisfies(&self, caller: &Caller, need: &Need) -> Result<bool, StoreError> {
        Ok(match (caller, need) {
            (Caller::Token(c), Need::Repository(name, actions)) => actions
                .iter()
                .all(|a| c.grants("repository", name, a.as_str())),
            (Caller::Token(c), Need::Catalog) => c.grants("registry", "catalog", "*"),
            // Any valid token will do for the `/v2/` ping.
            (Caller::Token(_), Need::Login) => true,
            (Caller::Token(c), Need::Admin) => {
                c.grants("registry", "admin", "*")
                    || (!c.sub.is_empty()
                        && self.svc.store.user(&c.sub).await?.is_some_and(|u| u.admin))
            }
            (Caller::User(u), Need::Repository(name, actions)) => {
                let allowed = self.svc.repository_actions(Some(u), name).await?;
                actions.iter().all(|a| allowed.contains(a))
            }
            (Caller::User(_), Need::Catalog | Need::Login) => true,
            (Caller::User(u), Need::Admin) => u.admin,
            (Caller::Anonymous, Need::Repository(name, actions)) => {
                let allowed = self.svc.repository_actions(None, name).await?;
                actions.iter().all(|a| allowed.contains(a))
            }
            (Caller::Anonymous, _) => false,
        })
    }
}

#[async_trait]
impl Access for TokenAccess {
    async fn check(&self, headers: &HeaderMap, needs: &[Need]) -> Result<Identity, RegistryError> {
        let caller = match self
            .svc
            .caller(headers, self.svc.config.basic_on_registry)
            .await
        {
            Ok(c) => c,
            Err(CallerError::Invalid(_)) => {
                return Err(self.svc.challenge(headers, needs, Some("invalid_token")));
            }
            Err(e) => return Err(e.into_registry_error()),
        };
        for need in needs {
            if !self.satisfies(&caller, need).await.map_err(store_error)? {
                metrics::counter!("registry_auth_refusals_total").increment(1);
                let error = match caller {
                    Caller::Anonymous => None,
                    _ => Some("insufficient_scope"),
                };
                return Err(self.svc.challenge(headers, needs, error));
            }
        }
        let mut identity = caller.identity();
        if let Caller::Token(_) = caller {
            // A bearer token proves the user; whether they administer comes from the
            // token's admin grant or, for catalog filtering, from the database.
            if needs.contains(&Need::Admin) {
                identity.admin = true;
            }
        }
        Ok(identity)
    }

    async fn catalog_filter(&self, identity: &Identity) -> Option<Vec<String>> {
        if identity.admin {
            return None;
        }
        let user = match &identity.user {
            Some(name) => match self.svc.store.user(name).await {
                Ok(Some(u)) => Some(u),
                // A token for a user deleted since: public repositories only.
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "catalog filter");
                    return Some(Vec::new());
                }
            },
            None => None,
        };
        if user.as_ref().is_some_and(|u| u.admin) {
            return None;
        }
        match self.svc.store.readable_repositories(user.as_ref()).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "catalog filter");
                Some(Vec::new())
            }
        }
    }

    fn routes(&self) -> Option<axum::Router> {
        Some(
            token::router(Arc::clone(&self.svc)).merge(crate::admin::router(Arc::clone(&self.svc))),
        )
    }
}

/// First start: with no user at all, creates `admin` (system administrator) with the
/// password from `NOTARY_REGISTRY_ADMIN_PASSWORD`, or a random one printed once on
/// stderr and written 0600 to `DATA_DIR/admin-password`. Returns whether it did.
pub async fn bootstrap_admin(
    store: &AuthStore,
    data_dir: &Path,
    env_password: Option<Zeroizing<String>>,
) -> anyhow::Result<bool> {
    if store.user_count().await? > 0 {
        return Ok(false);
    }
    let (password, generated) = match env_password.filter(|p| !p.is_empty()) {
        Some(p) => (p, false),
        None => (random_password()?, true),
    };
    let hash = password::hash_password(&password)?;
    match store.create_user("admin", &hash, true).await {
        Ok(_) => {}
        // Another replica bootstrapped first.
        Err(StoreError::Conflict(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    if generated {
        let file = data_dir.join("admin-password");
        notary_daemon::fs::write_private(&file, format!("{}\n", password.as_str()).as_bytes())?;
        // Shown once, on stderr (never in the logs).
        eprintln!(
            "notary-registry: created user \"admin\" with password {} (also in {}; change it with `notary-registry user passwd admin`)",
            password.as_str(),
            file.display()
        );
    } else {
        tracing::info!("created user admin with the password from NOTARY_REGISTRY_ADMIN_PASSWORD");
    }
    Ok(true)
}

/// A random password (24 characters of base64url, 144 bits).
pub fn random_password() -> anyhow::Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 18]);
    ring::rand::SystemRandom::new()
        .fill(raw.as_mut())
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref()),
    ))
}

/// The status a refused admin call gets (401 without credentials, 403 with).
pub fn refusal_status(caller: &Caller) -> StatusCode {
    match caller {
        Caller::Anonymous => StatusCode::UNAUTHORIZED,
        _ => StatusCode::FORBIDDEN,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn scope_grammar() {
        let s = Scope::parse("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str()),
            ("repository", "samalba/my-app")
        );
        assert_eq!(s.actions, ["pull", "push"]);
        let s = Scope::parse("repository(plugin):a/b:pull").unwrap();
        assert_eq!(s.kind, "repository");
        let s = Scope::parse("repository:localhost:5000/a/b:pull,pull,*").unwrap();
        assert_eq!(s.name, "localhost:5000/a/b");
        assert_eq!(s.actions, ["pull", "*"]);
        assert_eq!(
            Scope::parse("registry:catalog:*")
                .unwrap()
                .to_scope_string(),
            "registry:catalog:*"
        );
        assert!(Scope::parse("repository").is_none());
        assert!(Scope::parse("repository:a").is_none());
        assert!(Scope::parse("repository(x:a:pull").is_none());
        assert!(Scope::parse(&format!("repository:{}:pull", "a".repeat(600))).is_none());
    }

    #[test]
    fn levels_map_to_actions() {
        assert_eq!(level_actions(None, false), Vec::<Action>::new());
        assert_eq!(level_actions(None, true), vec![Action::Pull]);
        assert_eq!(
            level_actions(Some(Level::ReadOnly), false),
            vec![Action::Pull]
        );
        assert_eq!(
            level_actions(Some(Level::ReadWrite), false),
            vec![Action::Pull, Action::Push, Action::Delete]
        );
        assert_eq!(
            level_actions(Some(Level::Admin), true),
            ALL_ACTIONS.to_vec()
        );
    }

    #[test]
    fn basic_parsing() {
        let (u, p) =
            parse_basic(&base64::engine::general_purpose::STANDARD.encode("al:ice:pw")).unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("al", "ice:pw"));
        assert!(parse_basic("!!").is_none());
        assert!(parse_basic(&"A".repeat(5000)).is_none());
    }
}
