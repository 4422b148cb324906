//! The serialisation boundary. Everything that differs between metadata dialects (the
//! envelope, escaping, `_type` spelling) lives here, so that a TUF 1.0 dialect can be
//! added without touching the model or verification.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cjson::{self, CanonicalError};
use crate::metadata::{ParseError, Signature};

/// A metadata wire dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// Go Notary 0.7 / Docker Content Trust (spec §2-3).
    #[default]
    NotaryV1,
}

impl Dialect {
    /// Decodes file bytes: V of the `signed` member, its `_type`, the typed role object
    /// and the signatures. The text is scanned twice: once into a borrowed tree for V,
    /// once into the typed structs.
    pub(crate) fn decode_envelope<T: DeserializeOwned>(
        self,
        file: &[u8],
        expected_type: &'static str,
    ) -> Result<(T, Vec<Signature>, Vec<u8>), ParseError> {
        match self {
            Dialect::NotaryV1 => {
                let text = std::str::from_utf8(file)
                    .map_err(|e| ParseError::Json(format!("not UTF-8: {e}")))?;
                let (verify_bytes, found) =
                    cjson::canonicalize_member(text, "signed").map_err(|e| match e {
                        cjson::TextError::Json(m) => ParseError::Json(m),
                        cjson::TextError::Canonical(c) => ParseError::Canonical(c),
                        cjson::TextError::NotObject => ParseError::Envelope("not a JSON object"),
                        cjson::TextError::MissingMember(_) => {
                            ParseError::Envelope("no \"signed\" member")
                        }
                        cjson::TextError::MemberNotObject(_) => {
                            ParseError::Envelope("\"signed\" is not an object")
                        }
                    })?;
                let found = found.unwrap_or_default();
                if found != expected_type {
                    return Err(ParseError::WrongType {
                        expected: expected_type,
                        found,
                    });
                }
                #[derive(serde::Deserialize)]
                struct Envelope<T> {
                    signed: T,
                    #[serde(default)]
                    signatures: Option<Vec<Signature>>,
                }
                let env: Envelope<T> =
                    serde_json::from_str(text).map_err(|e| ParseError::Schema {
                        role_type: expected_type,
                        reason: e.to_string(),
                    })?;
                Ok((env.signed, env.signatures.unwrap_or_default(), verify_bytes))
            }
        }
    }

    /// The `signed` value of a typed role object, `_type` included.
    pub(crate) fn signed_value<T: Serialize>(self, role: &T, type_name: &str) -> Value {
        match self {
            Dialect::NotaryV1 => {
                let mut v = serde_json::to_value(role).unwrap_or(Value::Null);
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("_type".to_owned(), Value::String(type_name.to_owned()));
                }
                v
            }
        }
    }

    /// F from S and signatures (spec §3.2).
    pub(crate) fn encode_envelope(
        self,
        s: &[u8],
        signatures: &[Signature],
    ) -> Result<Vec<u8>, CanonicalError> {
        match self {
            Dialect::NotaryV1 => {
                let escaped = cjson::html_escape(s)?;
                let mut out = Vec::with_capacity(escaped.len() + 40 + signatures.len() * 200);
                out.extend_from_slice(b"{\"signed\":");
                out.extend_from_slice(&escaped);
                out.extend_from_slice(b",\"signatures\":[");
                for (i, sig) in signatures.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"keyid\":");
                    cjson::write_go_string(&mut out, sig.keyid.as_str());
                    out.extend_from_slice(b",\"method\":");
                    cjson::write_go_string(&mut out, sig.method.as_str());
                    out.extend_from_slice(b",\"sig\":\"");
                    out.extend_from_slice(
                        base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            &sig.sig.0,
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(b"\"}");
                }
                out.extend_from_slice(b"]}");
                Ok(out)
            }
        }
    }
}
