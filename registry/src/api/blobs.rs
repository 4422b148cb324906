//! Blob GET / HEAD (with Range) and DELETE.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;

use super::{authorize, check_name, empty, hv, needs_for, parse_digest};
use crate::Registry;
use crate::error::{Code, RegistryError, Result};

/// A parsed `Range` header against a blob of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No (usable) range: the whole blob.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Syntactically fine but not satisfiable.
    Unsatisfiable,
}

/// RFC 9110 single byte ranges (`bytes=a-b`, `bytes=a-`, `bytes=-n`); several ranges
/// or bad syntax are ignored (the whole blob is sent, as the RFC allows).
pub(crate) fn parse_range(value: Option<&str>, total: u64) -> RangeReq {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeReq::Whole;
    };
    if spec.contains(',') {
        return RangeReq::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Whole;
    };
    let parse = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeReq::Whole,
        (true, false) => match parse(b) {
            None => RangeReq::Whole,
            Some(0) => RangeReq::Unsatisfiable,
            Some(_) if total == 0 => RangeReq::Unsatisfiable,
            Some(n) => RangeReq::Part(total.saturating_sub(n), total - 1),
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeReq::Whole;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            };
            let Some(end) = end else {
                return RangeReq::Whole;
            };
            if end < start {
                // `500-0`: invalid syntax per RFC 9110, ignored.
                return RangeReq::Whole;
            }
            if start >= total {
                return RangeReq::Unsatisfiable;
            }
            RangeReq::Part(start, end.min(total - 1))
        }
    }
}

pub(super) async fn handle(
    reg: &Registry,
    name: &str,
    digest: &str,
    req: Request,
) -> Result<Response> {
    check_name(name)?;
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::HEAD | Method::DELETE) {
        return Err(RegistryError::new(
            Code::Unsupported,
            "method not allowed on blobs",
        ));
    }
    authorize(reg, req.headers(), name, needs_for(&method)).await?;
    let digest = parse_digest(digest)?;
    let key = digest.to_string();
    if method == Method::DELETE {
        if !reg.options.allow_blob_delete {
            return Err(RegistryError::new(
                Code::Unsupported,
                "blob deletion is disabled",
            ));
        }
        return if reg.db.unlink_blob(name, &key).await? {
            metrics::counter!("registry_blob_deletes_total").increment(1);
            Ok(empty(
                StatusCode::ACCEPTED,
                vec![(header::CONTENT_LENGTH, HeaderValue::from_static("0"))],
            ))
        } else {
            Err(RegistryError::blob_unknown(&key))
        };
    }
    let blob = reg
        .db
        .repository_blob(name, &key)
        .await?
        .ok_or_else(|| RegistryError::blob_unknown(&key))?;
    let total = blob.size.max(0) as u64;
    let range = parse_range(
        req.headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok()),
        total,
    );
    let mut headers = vec![
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (
            header::HeaderName::from_static("docker-content-digest"),
            hv(&key),
        ),
        (header::ETAG, hv(&format!("\"{key}\""))),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=31536000"),
        ),
    ];
    let (status, offset, len) = match range {
        RangeReq::Whole => (StatusCode::OK, 0, total),
        RangeReq::Part(a, b) => {
            headers.push((header::CONTENT_RANGE, hv(&format!("bytes {a}-{b}/{total}"))));
            (StatusCode::PARTIAL_CONTENT, a, b - a + 1)
        }
        RangeReq::Unsatisfiable => {
            return Err(
                RegistryError::new(Code::RangeInvalid, "range not satisfiable")
                    .with_header(header::CONTENT_RANGE, hv(&format!("bytes */{total}"))),
            );
        }
    };
    headers.push((header::CONTENT_LENGTH, hv(&len.to_string())));
    if method == Method::HEAD {
        return Ok(empty(status, headers));
    }
    metrics::counter!("registry_blob_bytes_served_total").increment(len);
    let body = match &blob.data {
        Some(data) => {
            let end = offset.saturating_add(len).min(data.len() as u64) as usize;
            Body::from(data.slice((offset as usize).min(end)..end))
        }
        None => Body::from_stream(reg.store.read(&blob.location, offset, len).await?),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (k, v) in headers {
        resp.headers_mut().append(k, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeReq::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeReq::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeReq::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=2-100"), 10), RangeReq::Part(2, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeReq::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=500-0"), 10), RangeReq::Whole);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeReq::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeReq::Whole);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 10),
            RangeReq::Whole
        );
    }
}
