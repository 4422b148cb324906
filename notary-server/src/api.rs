//! The Notary v1 HTTP API (spec §4.1) as a mountable [`Router`]: only the routes under
//! `/v2/<gun>/_trust/` and `/v2/_trust/changefeed`, with no fallback, no global metrics
//! recorder and no timeout, so a registry can mount it beside its own `/v2` routes with
//! [`mount`]. GUNs contain slashes, so paths are parsed by hand after percent-decoding,
//! in Go's table order. The standalone daemon ([`crate::daemon`]) adds ping, health,
//! metrics, the 404 fallback, timeouts and TLS.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use notary_core::{Gun, RoleName};
use serde_json::json;
use time::OffsetDateTime;

use crate::auth::{Access, TokenAuth};
use crate::error::{ApiError, Code};
use crate::service::{ReadError, Service, UploadLimits};
use crate::storage::StoredFile;

/// Decides whether a request may do what a route needs.
pub trait Authorize: Send + Sync + 'static {
    /// `Ok` when the request's credentials grant every item of `required`; else the
    /// error to answer (401 with a challenge). `now` is the Unix time.
    fn authorize(&self, headers: &HeaderMap, required: &[Access], now: i64)
    -> Result<(), ApiError>;
}

impl Authorize for TokenAuth {
    fn authorize(
        &self,
        headers: &HeaderMap,
        required: &[Access],
        now: i64,
    ) -> Result<(), ApiError> {
        self.check(headers.get(header::AUTHORIZATION), required, now)
    }
}

/// `Cache-Control` max-ages in seconds.
#[derive(Clone, Copy, Debug)]
pub struct CacheAges {
    /// For `{role}.json` (Go's default 300).
    pub current: u64,
    /// For checksum and version addressed files (Go's default 30 days).
    pub consistent: u64,
}

impl Default for CacheAges {
    fn default() -> Self {
        CacheAges {
            current: 300,
            consistent: 2_592_000,
        }
    }
}

/// What the API needs besides the service.
#[derive(Clone, Default)]
pub struct ApiOptions {
    /// Who may do what; `None` serves everyone (Go without `auth`).
    pub auth: Option<Arc<dyn Authorize>>,
    /// Accepted GUN prefixes (each ending in `/`); empty accepts all.
    pub gun_prefixes: Vec<String>,
    /// Cache headers.
    pub cache: CacheAges,
    /// Upload limits.
    pub limits: UploadLimits,
}

#[derive(Clone)]
struct ApiState {
    service: Arc<Service>,
    opts: Arc<ApiOptions>,
    /// Upload bytes (in KiB) that may be buffered and parsed at once: parsing costs
    /// several times an update's size, so concurrent large updates wait their turn
    /// instead of multiplying the server's memory.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl ApiState {
    fn prefix_allowed(&self, gun: &Gun) -> bool {
        let prefixes = &self.opts.gun_prefixes;
        prefixes.is_empty()
            || prefixes
                .iter()
                .any(|p| gun.as_str().starts_with(p.as_str()))
    }
}

/// The Notary API over `service`. Every path it is given should satisfy
/// [`is_trust_path`]; mount it with [`mount`].
pub fn router(service: Arc<Service>, opts: ApiOptions) -> Router {
    let body_limit = opts.limits.max_body_bytes;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(in_flight_kib(&opts.limits)));
    let state = ApiState {
        service,
        opts: Arc::new(opts),
        in_flight,
    };
    Router::new()
        .route("/v2/{*rest}", any(dispatch))
        // Applies to this router's routes only (multipart reads stop at the limit, 413).
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Whether a request path belongs to the Notary API (`/v2/<gun>/_trust/…` or
/// `/v2/_trust/changefeed`), before percent-decoding.
pub fn is_trust_path(path: &str) -> bool {
    path.starts_with("/v2/")
        && (path.starts_with("/v2/_trust/")
            || path.contains("/_trust/")
            || path.contains("%2F_trust%2F")
            || path.contains("%2f_trust%2f")
            || path.contains("/%5Ftrust/")
            || path.contains("/%5ftrust/"))
}

/// Serves the Notary API (`api`, from [`router`]) for the paths of [`is_trust_path`] and
/// `outer` for everything else, on one router: how the standalone daemon and the
/// registry put the API beside their own routes (matchit cannot express a multi-segment
/// GUN before a literal `_trust`, so the split happens before routing).
pub fn mount(outer: Router, api: Router) -> Router {
    let steer = tower::service_fn(move |req: Request| {
        let target = if is_trust_path(req.uri().path()) {
            api.clone()
        } else {
            outer.clone()
        };
        let fut: Pin<Box<dyn Future<Output = Result<Response, std::convert::Infallible>> + Send>> =
            Box::pin(tower::ServiceExt::oneshot(target, req));
        fut
    });
    Router::new().fallback_service(steer)
}

/// The operation label of a request, for metrics (Go's names).
#[derive(Clone, Copy, Debug)]
pub struct Operation(pub &'static str);

fn with_op(mut resp: Response, op: &'static str) -> Response {
    resp.extensions_mut().insert(Operation(op));
    resp
}

/// What a `/v2/...` path addresses.
enum Target {
    ChangefeedAll,
    Changefeed(String),
    Update(String),
    File(String, String),
    NotFound,
}

/// A request path with `%XX` escapes decoded (`None` for a bad escape or non-UTF-8):
/// how the Notary routes see GUNs, also for code mounting them.
pub fn percent_decode(path: &str) -> Option<String> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn classify(path: &str) -> Target {
    if path == "/v2/_trust/changefeed" {
        return Target::ChangefeedAll;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Target::NotFound;
    };
    if let Some(gun) = rest.strip_suffix("/_trust/changefeed") {
        return Target::Changefeed(gun.to_owned());
    }
    if let Some(gun) = rest.strip_suffix("/_trust/tuf/") {
        return Target::Update(gun.to_owned());
    }
    match rest.rfind("/_trust/tuf/") {
        Some(i) if !rest[..i].is_empty() => Target::File(
            rest[..i].to_owned(),
            rest[i + "/_trust/tuf/".len()..].to_owned(),
        ),
        _ => Target::NotFound,
    }
}

/// The catch-all 404 (no detail) for GET/POST/PUT/HEAD/DELETE, 405 for other methods.
fn fallback(method: &Method) -> Response {
    if matches!(
        *method,
        Method::GET | Method::POST | Method::PUT | Method::HEAD | Method::DELETE
    ) {
        with_op(
            ApiError::new(Code::MetadataNotFound, None).into_response(),
            "NotFound",
        )
    } else {
        with_op(StatusCode::METHOD_NOT_ALLOWED.into_response(), "NotFound")
    }
}

/// The access a request needs (spec §7.2).
fn required_access(target: &Target, method: &Method) -> Vec<Access> {
    match (target, method) {
        (Target::Changefeed(gun), _) => vec![Access::repo(gun, "pull")],
        (Target::Update(gun), &Method::POST) => {
            vec![Access::repo(gun, "push"), Access::repo(gun, "pull")]
        }
        (Target::Update(gun), &Method::DELETE) => vec![Access::repo(gun, "*")],
        (Target::File(gun, file), m) if file.ends_with(".key") => {
            if *m == Method::POST {
                vec![Access::repo(gun, "*")]
            } else {
                vec![Access::repo(gun, "push"), Access::repo(gun, "pull")]
            }
        }
        (Target::File(gun, _), &Method::GET) => vec![Access::repo(gun, "pull")],
        _ => vec![Access::catalog()],
    }
}

/// Entry point for everything under `/v2/`.
async fn dispatch(State(state): State<ApiState>, req: Request) -> Response {
    let method = req.method().clone();
    let Some(path) = percent_decode(req.uri().path()) else {
        return fallback(&method);
    };
    let target = classify(&path);
    if let Some(auth) = &state.opts.auth {
        let required = required_access(&target, &method);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        if let Err(e) = auth.authorize(req.headers(), &required, now) {
            return with_op(e.into_response(), "Unauthorized");
        }
    }
    match (target, &method) {
        (Target::ChangefeedAll, &Method::GET) => with_op(
            changefeed(&state, None, req.uri().query()).await,
            "Changefeed",
        ),
        (Target::Changefeed(gun), &Method::GET) => {
            let resp = match gun_for(&state, &gun) {
                Ok(g) => changefeed(&state, Some(g), req.uri().query()).await,
                Err(e) => e.into_response(),
            };
            with_op(resp, "Changefeed")
        }
        (Target::Update(gun), &Method::POST) => {
            with_op(update(&state, &gun, req).await, "UpdateTUF")
        }
        (Target::Update(gun), &Method::DELETE) => {
            let resp = match gun_for(&state, &gun) {
                Ok(g) => match state.service.delete(&g).await {
                    Ok(()) => StatusCode::OK.into_response(),
                    Err(e) => ApiError::from(e).into_response(),
                },
                Err(e) => e.into_response(),
            };
            with_op(resp, "DeleteTUF")
        }
        (Target::File(gun, file), m) if *m == Method::GET || *m == Method::POST => {
            file_route(&state, &gun, &file, m).await
        }
        _ => fallback(&method),
    }
}

/// Validates a GUN from the URL against our rules and the configured prefixes; GUN
/// routes other than POST answer 404 for refused GUNs (spec §4.11).
fn gun_for(state: &ApiState, raw: &str) -> Result<Gun, ApiError> {
    let gun = Gun::new(raw).map_err(|_| ApiError::new(Code::MetadataNotFound, None))?;
    if !state.prefix_allowed(&gun) {
        return Err(ApiError::new(Code::MetadataNotFound, None));
    }
    Ok(gun)
}

async fn file_route(state: &ApiState, gun: &str, file: &str, method: &Method) -> Response {
    let Ok(gun) = gun_for(state, gun) else {
        return fallback(method);
    };
    if let Some(role) = file.strip_suffix(".key") {
        if !matches!(role, "snapshot" | "timestamp") {
            return fallback(method);
        }
        let Ok(role) = RoleName::new(role) else {
            return fallback(method);
        };
        let (res, op) = if *method == Method::GET {
            (state.service.get_or_create_key(&gun, &role).await, "GetKey")
        } else {
            (state.service.rotate_key(&gun, &role).await, "RotateKey")
        };
        let resp = match res {
            // Go's key body: encoding/json order, `public` before `private`.
            Ok(k) => {
                let body = format!(
                    "{{\"keytype\":{},\"keyval\":{{\"public\":\"{}\",\"private\":null}}}}",
                    serde_json::Value::from(k.key_type().as_str()),
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        k.public_bytes()
                    )
                );
                text_response(body.into_bytes(), None, None)
            }
            Err(e) => ApiError::from(e).into_response(),
        };
        return with_op(resp, op);
    }
    if *method != Method::GET {
        return fallback(method);
    }
    let Some(body) = file.strip_suffix(".json") else {
        return fallback(method);
    };
    // Rows 3, 4, 5 in order: {role}.{checksum}, {version}.{role}, {role}.
    if let Some((role, sum)) = body.rsplit_once('.') {
        if matches!(sum.len(), 64 | 96 | 128) && sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            let Ok(role) = RoleName::new(role) else {
                return fallback(method);
            };
            let res = state.service.get_by_checksum(&gun, &role, sum).await;
            return with_op(file_response(state, res, false), "GetRoleByHash");
        }
    }
    if let Some((version, role)) = body.split_once('.') {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            let Ok(role) = RoleName::new(role) else {
                return fallback(method);
            };
            let v = version.parse::<i64>().unwrap_or(0);
            let res = state.service.get_by_version(&gun, &role, v).await;
            return with_op(file_response(state, res, false), "GetRoleByVersion");
        }
    }
    let Ok(role) = RoleName::new(body) else {
        return fallback(method);
    };
    let res = state.service.get_current(&gun, &role).await;
    with_op(file_response(state, res, true), "GetRole")
}

fn http_date(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[t.weekday().number_days_from_monday() as usize],
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn text_response(
    body: impl Into<Body>,
    cache: Option<String>,
    modified: Option<OffsetDateTime>,
) -> Response {
    let mut resp = Response::new(body.into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(c) = cache.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CACHE_CONTROL, c);
        if c_is_no_cache(h) {
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
    }
    if let Some(m) = modified.and_then(|m| HeaderValue::from_str(&http_date(m)).ok()) {
        h.insert(header::LAST_MODIFIED, m);
    }
    resp
}

fn c_is_no_cache(h: &axum::http::HeaderMap) -> bool {
    h.get(header::CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes().starts_with(b"max-age=0"))
}

fn file_response(state: &ApiState, res: Result<StoredFile, ReadError>, current: bool) -> Response {
    match res {
        Ok(f) => {
            let age = if current {
                state.opts.cache.current
            } else {
                state.opts.cache.consistent
            };
            let cache = if age == 0 {
                "max-age=0, no-cache, no-store".to_owned()
            } else if current {
                format!("public, max-age={age}, s-maxage={age}, must-revalidate")
            } else {
                format!("public, max-age={age}, s-maxage={age}")
            };
            text_response(f.data, Some(cache), Some(f.created_at))
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn update(state: &ApiState, gun: &str, req: Request) -> Response {
    let gun = match Gun::new(gun) {
        Ok(g) if state.prefix_allowed(&g) => g,
        _ => {
            let detail = format!(
                "Require GUNs with prefix: [{}]",
                state.opts.gun_prefixes.join(" ")
            );
            return ApiError::new(Code::InvalidGun, Some(json!(detail))).into_response();
        }
    };
    // Reserve this update's share of the in-flight budget (its Content-Length, or the
    // body limit when it sends none) before buffering anything.
    let limits = &state.opts.limits;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(limits.max_body_bytes)
        .min(limits.max_body_bytes);
    let want = u32::try_from(declared.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(permit) = Arc::clone(&state.in_flight).acquire_many_owned(want).await else {
        return ApiError::new(Code::Unavailable, None).into_response();
    };
    let uploads = match read_uploads(req, &state.opts.limits).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    // The update runs in its own task: a client hanging up mid-request must not cancel
    // it between validation and commit (and shutdown waits for it like any request).
    // The service bounds its own time (`UploadLimits::update_timeout`), abandoning the
    // update with nothing stored.
    let service = Arc::clone(&state.service);
    let limit = state.opts.limits.update_timeout;
    let task = tokio::spawn(async move {
        let _permit = permit;
        service.update_within(&gun, uploads, limit).await
    });
    match task.await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

/// The in-flight budget: two updates of the largest allowed size.
fn in_flight_kib(limits: &UploadLimits) -> usize {
    (limits.max_body_bytes.div_ceil(1024).max(1) * 2).min(u32::MAX as usize)
}

/// Reads the multipart parts of an update, each held to `limits.max_role_bytes` and at
/// most `limits.max_parts` of them, the whole body to `limits.max_body_bytes`: the
/// memory an upload can take is bounded before anything is parsed.
async fn read_uploads(
    req: Request,
    limits: &UploadLimits,
) -> Result<BTreeMap<RoleName, Vec<u8>>, ApiError> {
    let too_large = || ApiError::new(Code::TooLarge, None);
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limits.max_body_bytes as u64)
    {
        return Err(too_large());
    }
    let mut multipart = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|_| ApiError::new(Code::MalformedUpload, None))?;
    let mut uploads: BTreeMap<RoleName, Vec<u8>> = BTreeMap::new();
    let mut count = 0usize;
    loop {
        let mut field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(_) => return Err(ApiError::new(Code::MalformedUpload, None)),
        };
        count += 1;
        if count > limits.max_parts {
            return Err(ApiError::invalid_update(
                "ErrValidation",
                format!(
                    "an update may carry at most {} metadata files",
                    limits.max_parts
                ),
            ));
        }
        let Some(name) = field.file_name().map(str::to_owned) else {
            return Err(ApiError::new(Code::NoFilename, None));
        };
        let role_name = name.strip_suffix(".json").unwrap_or(&name);
        let Ok(role) = RoleName::new(role_name) else {
            return Err(ApiError::new(Code::InvalidRole, Some(json!(role_name))));
        };
        let mut bytes = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > limits.max_role_bytes {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(too_large());
                }
                Err(_) => return Err(ApiError::new(Code::MalformedUpload, None)),
            }
        }
        uploads.insert(role, bytes);
    }
    if uploads.is_empty() {
        return Err(ApiError::new(Code::MalformedUpload, None));
    }
    Ok(uploads)
}

#[derive(serde::Deserialize)]
struct FeedParams {
    change_id: Option<String>,
    records: Option<String>,
}

async fn changefeed(state: &ApiState, gun: Option<Gun>, query: Option<&str>) -> Response {
    let params: FeedParams = match Query::try_from_uri(
        &format!("/?{}", query.unwrap_or_default())
            .parse()
            .unwrap_or_default(),
    ) {
        Ok(Query(p)) => p,
        Err(_) => return ApiError::new(Code::InvalidParameters, Some(json!({}))).into_response(),
    };
    let bad = |what: &str, v: &str| {
        ApiError::new(
            Code::InvalidParameters,
            Some(json!(format!(
                "invalid {what} parameter: strconv.ParseInt: parsing {v:?}: invalid syntax"
            ))),
        )
        .into_response()
    };
    let records_raw = params.records.unwrap_or_default();
    let Ok(records) = records_raw.parse::<i32>() else {
        return bad("records", &records_raw);
    };
    let change_raw = params.change_id.unwrap_or_default();
    let change_id = if change_raw.is_empty() {
        0
    } else {
        match change_raw.parse::<i32>() {
            Ok(v) => v,
            Err(_) => {
                return ApiError::new(Code::InvalidParameters, Some(json!({}))).into_response();
            }
        }
    };
    match state
        .service
        .store()
        .changefeed(
            gun.as_ref().map(Gun::as_str),
            i64::from(change_id),
            i64::from(records),
        )
        .await
    {
        Ok(rows) => {
            let body = json!({"count": rows.len(), "records": rows}).to_string();
            text_response(body.into_bytes(), None, None)
        }
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        assert!(matches!(
            classify("/v2/_trust/changefeed"),
            Target::ChangefeedAll
        ));
        assert!(
            matches!(classify("/v2/a/b/_trust/changefeed"), Target::Changefeed(g) if g == "a/b")
        );
        assert!(matches!(classify("/v2/a/b/_trust/tuf/"), Target::Update(g) if g == "a/b"));
        assert!(
            matches!(classify("/v2/a/b/_trust/tuf/targets/x.json"), Target::File(g, f) if g == "a/b" && f == "targets/x.json")
        );
        assert!(matches!(classify("/v2/a/_trust/tuf"), Target::NotFound));
        assert!(matches!(classify("/v2"), Target::NotFound));
        assert_eq!(percent_decode("/v2/a%2Fb").as_deref(), Some("/v2/a/b"));
        assert_eq!(percent_decode("/v2/%zz"), None);
    }

    #[test]
    fn http_dates() {
        let t = time::macros::datetime!(2026-11-22 10:04:26 UTC);
        assert_eq!(http_date(t), "Sun, 22 Nov 2026 10:04:26 GMT");
    }
}
