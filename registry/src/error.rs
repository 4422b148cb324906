//! The distribution error format (`{"errors":[{"code","message","detail"}]}`) and the
//! status each code maps to (OCI distribution 1.1 section "Error Codes", distribution's
//! mapping where the spec leaves room).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An OCI error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    PaginationNumberInvalid,
    TooLarge,
    Unavailable,
    Unknown,
}

impl Code {
    /// The code string.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Code::TooLarge => "SIZE_INVALID",
            Code::Unavailable => "UNAVAILABLE",
            Code::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::TagInvalid
            | Code::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A registry error: one or more codes with messages, rendered as the protocol's JSON.
#[derive(Debug)]
pub struct RegistryError {
    status: StatusCode,
    errors: Vec<(Code, String, Value)>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

/// Handler result.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// One error.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RegistryError {
            status: code.status(),
            errors: vec![(code, message.into(), Value::Null)],
            headers: Vec::new(),
        }
    }
    /// One error with a `detail`.
    pub fn detail(code: Code, message: impl Into<String>, detail: Value) -> Self {
        RegistryError {
            status: code.status(),
            errors: vec![(code, message.into(), detail)],
            headers: Vec::new(),
        }
    }
    /// Several errors of one status (e.g. every missing blob of a manifest).
    pub fn many(status: StatusCode, errors: Vec<(Code, String, Value)>) -> Self {
        RegistryError {
            status,
            errors,
            headers: Vec::new(),
        }
    }
    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    /// Adds a response header.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The first code.
    pub fn code(&self) -> Option<Code> {
        self.errors.first().map(|e| e.0)
    }
    /// A server-side failure (logged; the client sees a generic message).
    pub fn internal(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{what}");
        RegistryError::new(Code::Unknown, format!("internal error: {what}"))
    }
    /// 503: a backend is unavailable.
    pub fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %err, "{what}");
        RegistryError::new(
            Code::Unavailable,
            format!("{what}: temporarily unavailable"),
        )
    }
    /// `BLOB_UNKNOWN` for a digest.
    pub fn blob_unknown(digest: &impl std::fmt::Display) -> Self {
        RegistryError::detail(
            Code::BlobUnknown,
            "blob unknown to registry",
            json!(digest.to_string()),
        )
    }
    /// `NAME_INVALID`.
    pub fn name_invalid(name: &str) -> Self {
        RegistryError::detail(
            Code::NameInvalid,
            "invalid repository name",
            json!(truncate(name, 300)),
        )
    }
}

fn truncate(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let errors: Vec<Value> = self
            .errors
            .into_iter()
            .map(|(code, message, detail)| {
                let mut e = json!({"code": code.as_str(), "message": message});
                if !detail.is_null() {
                    e["detail"] = detail;
                }
                e
            })
            .collect();
        let body = json!({ "errors": errors }).to_string();
        let mut resp = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        for (k, v) in self.headers {
            resp.headers_mut().append(k, v);
        }
        resp
    }
}

impl From<sqlx::Error> for RegistryError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                RegistryError::unavailable("database", e)
            }
            other => RegistryError::internal("database", other),
        }
    }
}

impl From<crate::storage::StorageError> for RegistryError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError as S;
        match e {
            S::NotFound => {
                RegistryError::new(Code::BlobUnknown, "blob content missing from storage")
            }
            S::Unavailable(m) => RegistryError::unavailable("storage", m),
            S::Io(e) => RegistryError::internal("storage", e),
            S::Other(m) => RegistryError::internal("storage", m),
        }
    }
}
