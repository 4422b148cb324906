//! The one HTTP error type of the server, rendered as Docker-registry `errcode` JSON
//! (`{"errors":[{"code","message","detail"}]}`, spec §4.9). Internal causes are logged,
//! never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::service::{ReadError, UpdateError};
use crate::storage::StoreError;
use crate::trust::TrustError;

/// Error codes of Go's `notary.api.v1` group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 400, part without filename.
    NoFilename,
    /// 400, bad role.
    InvalidRole,
    /// 400, unparsable JSON.
    MalformedJson,
    /// 500, storage failure.
    Updating,
    /// 400, a newer version exists.
    Version,
    /// 404.
    MetadataNotFound,
    /// 400, validation failure.
    InvalidUpdate,
    /// 400, not multipart.
    MalformedUpload,
    /// 400, GUN prefix filter.
    InvalidGun,
    /// 400, changefeed parameters.
    InvalidParameters,
    /// 500, no key algorithm configured.
    NoKeyAlgorithm,
    /// 401.
    Unauthorized,
    /// 413, body over the configured limit.
    TooLarge,
    /// 503, the trust service (signer) cannot be reached.
    Unavailable,
    /// 500.
    Unknown,
}

impl Code {
    fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use Code::*;
        match self {
            NoFilename => (
                StatusCode::BAD_REQUEST,
                "NO_FILENAME",
                "No file/role name provided.",
            ),
            InvalidRole => (
                StatusCode::BAD_REQUEST,
                "INVALID_ROLE",
                "The role you are attempting to operate on is invalid.",
            ),
            MalformedJson => (
                StatusCode::BAD_REQUEST,
                "MALFORMED_JSON",
                "JSON sent by the client could not be parsed by the server",
            ),
            Updating => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "UPDATING",
                "An error has occurred while updating the TUF repository.",
            ),
            Version => (
                StatusCode::BAD_REQUEST,
                "VERSION",
                "A newer version of metadata is already available.",
            ),
            MetadataNotFound => (
                StatusCode::NOT_FOUND,
                "METADATA_NOT_FOUND",
                "You have requested metadata that does not exist.",
            ),
            InvalidUpdate => (
                StatusCode::BAD_REQUEST,
                "INVALID_UPDATE",
                "Update sent by the client is invalid.",
            ),
            MalformedUpload => (
                StatusCode::BAD_REQUEST,
                "MALFORMED_UPLOAD",
                "The body of your request is malformed.",
            ),
            InvalidGun => (
                StatusCode::BAD_REQUEST,
                "INVALID_GUN",
                "The server does not support actions on images of this name.",
            ),
            InvalidParameters => (
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETERS",
                "The parameters provided are not valid.",
            ),
            NoKeyAlgorithm => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "NO_KEYALGORITHM",
                "The server does not have a key algorithm configured.",
            ),
            Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            ),
            TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "SIZE_INVALID",
                "The request body is larger than the server accepts.",
            ),
            Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "service unavailable",
            ),
            Unknown => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "unknown error",
            ),
        }
    }
}

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// The code.
    pub code: Code,
    /// `detail`, omitted when `None`.
    pub detail: Option<Value>,
    /// `detail` as pre-rendered JSON, when member order matters (Go's struct order).
    pub detail_raw: Option<String>,
    /// Extra response headers (the 401 challenge).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a detail value.
    pub fn new(code: Code, detail: Option<Value>) -> Self {
        ApiError {
            code,
            detail,
            detail_raw: None,
            headers: Vec::new(),
        }
    }

    /// 404 `METADATA_NOT_FOUND` with `"detail":{}` (what storage misses return).
    pub fn not_found() -> Self {
        Self::new(Code::MetadataNotFound, Some(json!({})))
    }

    /// 500 `UNKNOWN`, logging the real cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(Code::Unknown, Some(json!({})))
    }

    /// 400 `INVALID_UPDATE` with Go's `{"Name","Error":{["Missing",]"Msg"}}` detail, in
    /// Go's member order.
    pub fn invalid_update(name: &str, msg: impl Into<String>) -> Self {
        Self::invalid_update_missing(name, None, msg)
    }

    fn invalid_update_missing(name: &str, missing: Option<&str>, msg: impl Into<String>) -> Self {
        let missing = missing
            .map(|m| format!("\"Missing\":{},", json!(m)))
            .unwrap_or_default();
        let mut err = Self::new(Code::InvalidUpdate, None);
        err.detail_raw = Some(format!(
            "{{\"Name\":{},\"Error\":{{{missing}\"Msg\":{}}}}}",
            json!(name),
            json!(msg.into())
        ));
        err
    }
}

// Domain errors become API errors here and nowhere else.

impl From<TrustError> for ApiError {
    /// A signer that cannot be reached is 503 (the client may retry); anything else 500.
    fn from(e: TrustError) -> Self {
        match e {
            TrustError::Unavailable(m) => {
                tracing::warn!(error = %m, "trust service unavailable");
                ApiError::new(Code::Unavailable, None)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotFound => ApiError::not_found(),
            ReadError::Trust(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<UpdateError> for ApiError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Invalid {
                name: "MALFORMED",
                msg,
                ..
            } => {
                // Go sends no detail here; the reason goes to the log.
                tracing::info!(reason = %msg, "malformed upload");
                ApiError::new(Code::MalformedJson, None)
            }
            UpdateError::Invalid { name, msg, missing } => {
                ApiError::invalid_update_missing(name, missing, msg)
            }
            UpdateError::Version => ApiError::new(Code::Version, Some(json!({}))),
            UpdateError::Store(e) => {
                tracing::error!(error = %e, "storage failure during update");
                ApiError::new(Code::Updating, None)
            }
            UpdateError::TimedOut(limit) => {
                tracing::warn!(?limit, "update took too long and was abandoned");
                ApiError::new(Code::Unavailable, None)
            }
            UpdateError::Trust(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.code.parts();
        // Members in Go's order: code, message, detail.
        let mut body = format!(
            "{{\"errors\":[{{\"code\":{},\"message\":{}",
            Value::from(code),
            Value::from(message)
        );
        if let Some(raw) = &self.detail_raw {
            body.push_str(",\"detail\":");
            body.push_str(raw);
        } else if let Some(d) = &self.detail {
            body.push_str(",\"detail\":");
            body.push_str(&d.to_string());
        }
        // Go's JSON encoder ends the body with a newline.
        body.push_str("}]}\n");
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}
