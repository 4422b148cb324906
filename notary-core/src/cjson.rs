//! Go Notary's canonical JSON (spec §3.1) and the envelope escaping step (§3.2).
//!
//! This is *not* RFC 8785: object members are sorted by the bytes of their UTF-8
//! keys, strings escape only `"` and `\` (everything else, control bytes included,
//! is copied raw), and numbers must be integers.

use serde_json::Value;

/// The largest integer that survives Go's `float64` round trip exactly (2^53).
pub const MAX_EXACT_INT: u64 = 1 << 53;

/// Why a JSON value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A number with a fractional part, NaN or infinity.
    #[error("number {0} is not an integer; canonical JSON carries integers only")]
    NonIntegral(String),
    /// An integer Go would round when it parses JSON numbers as `float64`.
    #[error("number {0} is larger than 2^53 and cannot be verified exactly")]
    TooLarge(String),
    /// A raw control byte, which Go's envelope encoder refuses (spec §3.3 f).
    #[error("string contains control character 0x{0:02x}, which Go Notary cannot publish")]
    ControlCharacter(u8),
}

/// Canonical bytes of `value` (S when the value is a role object, V when it was parsed).
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Appends the canonical encoding of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map is byte-ordered unless some crate in the build enables
            // `preserve_order`; never rely on that, but only pay for sorting when needed.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            }
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, k);
                out.push(b':');
                write_value(out, v)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u > MAX_EXACT_INT {
            return Err(CanonicalError::TooLarge(n.to_string()));
        }
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_EXACT_INT {
            return Err(CanonicalError::TooLarge(n.to_string()));
        }
        out.extend_from_slice(i.to_string().as_bytes());
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 {
            return Err(CanonicalError::NonIntegral(n.to_string()));
        }
        if f.abs() > MAX_EXACT_INT as f64 {
            return Err(CanonicalError::TooLarge(n.to_string()));
        }
        // Integral and within ±2^53: the conversion is exact.
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        out.extend_from_slice(i.to_string().as_bytes());
    }
    Ok(())
}

/// A borrowed JSON tree for computing V from received text with few allocations:
/// strings without escapes borrow from the input, objects are vectors sorted only when
/// written. Duplicate keys keep the last value, as Go's decoder does.
enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(std::borrow::Cow<'a, str>),
    Arr(Vec<Node<'a>>),
    Obj(Vec<(std::borrow::Cow<'a, str>, Node<'a>)>),
}

impl<'de> serde::Deserialize<'de> for Node<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Node<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Node<'de>, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
                Ok(Node::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
                Ok(Node::U64(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
                Ok(Node::I64(n))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
                Ok(Node::F64(n))
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
                Ok(Node::Str(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
                Ok(Node::Str(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
                Ok(Node::Str(std::borrow::Cow::Owned(s)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Node<'de>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(4));
                while let Some(n) = a.next_element()? {
                    v.push(n);
                }
                Ok(Node::Arr(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Node<'de>, A::Error> {
                let mut v = Vec::with_capacity(a.size_hint().unwrap_or(4));
                while let Some((k, n)) = a.next_entry::<CowStr<'de>, Node<'de>>()? {
                    v.push((k.0, n));
                }
                Ok(Node::Obj(v))
            }
        }
        d.deserialize_any(V)
    }
}

struct CowStr<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<CowStr<'de>, E> {
                Ok(CowStr(std::borrow::Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Error from [`canonicalize_text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Not JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// No canonical form.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
    /// The document is not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// The requested member is absent.
    #[error("no {0:?} member")]
    MissingMember(&'static str),
    /// The requested member is not an object.
    #[error("{0:?} is not an object")]
    MemberNotObject(&'static str),
}

/// V of one object member of a JSON document (the `signed` member of an envelope),
/// parsing the document once, plus that member's `_type` string if it has one.
pub fn canonicalize_member(
    text: &str,
    member: &'static str,
) -> Result<(Vec<u8>, Option<String>), TextError> {
    let node: Node<'_> = serde_json::from_str(text).map_err(|e| TextError::Json(e.to_string()))?;
    let Node::Obj(entries) = node else {
        return Err(TextError::NotObject);
    };
    // Last duplicate wins, as in Go.
    let Some((_, inner)) = entries.into_iter().rev().find(|(k, _)| k == member) else {
        return Err(TextError::MissingMember(member));
    };
    let Node::Obj(fields) = &inner else {
        return Err(TextError::MemberNotObject(member));
    };
    let type_name = fields
        .iter()
        .rev()
        .find(|(k, _)| k == "_type")
        .and_then(|(_, v)| match v {
            Node::Str(s) => Some(s.to_string()),
            _ => None,
        });
    let mut out = Vec::with_capacity(text.len());
    write_node(&mut out, inner)?;
    Ok((out, type_name))
}

/// V for received JSON text (spec §3.4): parse, then canonicalise the generic tree.
/// Same result as `to_canonical(&serde_json::from_str(text)?)`, with far fewer
/// allocations.
pub fn canonicalize_text(text: &str) -> Result<Vec<u8>, TextError> {
    let node: Node<'_> = serde_json::from_str(text).map_err(|e| TextError::Json(e.to_string()))?;
    let mut out = Vec::with_capacity(text.len());
    write_node(&mut out, node)?;
    Ok(out)
}

fn write_node(out: &mut Vec<u8>, node: Node<'_>) -> Result<(), CanonicalError> {
    match node {
        Node::Null => out.extend_from_slice(b"null"),
        Node::Bool(true) => out.extend_from_slice(b"true"),
        Node::Bool(false) => out.extend_from_slice(b"false"),
        Node::U64(u) => write_number(out, &serde_json::Number::from(u))?,
        Node::I64(i) => write_number(out, &serde_json::Number::from(i))?,
        Node::F64(f) => match serde_json::Number::from_f64(f) {
            Some(n) => write_number(out, &n)?,
            None => return Err(CanonicalError::NonIntegral(f.to_string())),
        },
        Node::Str(s) => write_string(out, &s),
        Node::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_node(out, item)?;
            }
            out.push(b']');
        }
        Node::Obj(mut entries) => {
            // Stable sort, then keep the last of equal keys (Go: last duplicate wins).
            if !entries.is_sorted_by(|a, b| a.0.as_bytes() < b.0.as_bytes()) {
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut dedup: Vec<(std::borrow::Cow<'_, str>, Node<'_>)> =
                    Vec::with_capacity(entries.len());
                for e in entries {
                    match dedup.last_mut() {
                        Some(last) if last.0 == e.0 => *last = e,
                        _ => dedup.push(e),
                    }
                }
                entries = dedup;
            }
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, &k);
                out.push(b':');
                write_node(out, v)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// Appends a canonical string: only `"` and `\` are escaped.
pub fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'"' || b == b'\\' {
            out.extend_from_slice(&bytes[start..i]);
            out.push(b'\\');
            out.push(b);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The HTML-escaping compaction Go applies when canonical bytes are embedded in an
/// envelope (S → the `signed` member of F, spec §3.2): `<`, `>`, `&`, U+2028 and
/// U+2029 become `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`. Control bytes are
/// refused, as Go's compaction refuses them.
pub fn html_escape(canonical: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    // Bytes that may need attention: control bytes, `&`, `<`, `>`, and 0xE2 (the lead
    // byte of U+2028/U+2029). Everything between them is copied in bulk.
    const fn table() -> [bool; 256] {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 0x20 {
            t[i] = true;
            i += 1;
        }
        t[b'&' as usize] = true;
        t[b'<' as usize] = true;
        t[b'>' as usize] = true;
        t[0xE2] = true;
        t
    }
    static SPECIAL: [bool; 256] = table();
    let mut out = Vec::with_capacity(canonical.len() + 16);
    let mut rest = canonical;
    while let Some(pos) = rest.iter().position(|b| SPECIAL[usize::from(*b)]) {
        out.extend_from_slice(&rest[..pos]);
        let b = rest[pos];
        let (repl, n): (&[u8], usize) = match b {
            b'<' => (b"\\u003c", 1),
            b'>' => (b"\\u003e", 1),
            b'&' => (b"\\u0026", 1),
            0xE2 if rest.get(pos + 1) == Some(&0x80) && rest.get(pos + 2) == Some(&0xA8) => {
                (b"\\u2028", 3)
            }
            0xE2 if rest.get(pos + 1) == Some(&0x80) && rest.get(pos + 2) == Some(&0xA9) => {
                (b"\\u2029", 3)
            }
            0xE2 => (&[0xE2], 1),
            _ => return Err(CanonicalError::ControlCharacter(b)),
        };
        out.extend_from_slice(repl);
        rest = &rest[pos + n..];
    }
    out.extend_from_slice(rest);
    Ok(out)
}

/// Appends `s` as Go's standard `encoding/json` writes a string (with HTML escaping),
/// used for the envelope's signature members.
pub fn write_go_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let v = c as u32;
                out.extend_from_slice(b"\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((v >> shift) & 0xF) as usize]);
                }
            }
            _ => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(to_canonical(v).unwrap()).unwrap()
    }

    #[test]
    fn spec_example_e() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":[true,null],"_x":"q\"\\<"}"#).unwrap();
        let s = to_canonical(&v).unwrap();
        assert_eq!(s, br#"{"_x":"q\"\\<","a":[true,null],"b":1}"#);
        assert_eq!(
            html_escape(&s).unwrap(),
            br#"{"_x":"q\"\\\u003c","a":[true,null],"b":1}"#
        );
    }

    #[test]
    fn keys_sort_by_utf8_bytes() {
        let v = json!({"a": 1, "Z": 2, "_": 3, "ü": 4, "é": 5});
        assert_eq!(canon(&v), r#"{"Z":2,"_":3,"a":1,"é":5,"ü":4}"#);
    }

    #[test]
    fn text_canonicalisation_matches_tree_canonicalisation() {
        for text in [
            r#"{"b":1,"a":[true,null],"_x":"q\"\\<"}"#,
            r#"{"k":1,"k":2,"a":{"z":1.0,"y":-3,"x":"\u003c\u00fc"}}"#,
            r#"[1e3, -0, "t\tab", {}]"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                canonicalize_text(text).unwrap(),
                to_canonical(&v).unwrap(),
                "{text}"
            );
        }
        assert!(canonicalize_text("[1.5]").is_err());
        assert!(canonicalize_text("{").is_err());
    }

    #[test]
    fn numbers() {
        let v: Value = serde_json::from_str("[1.0, 1e3, -0, -7]").unwrap();
        assert_eq!(canon(&v), "[1,1000,0,-7]");
        let v: Value = serde_json::from_str("[1.5]").unwrap();
        assert!(matches!(
            to_canonical(&v),
            Err(CanonicalError::NonIntegral(_))
        ));
        let v: Value = serde_json::from_str("[9007199254740993]").unwrap();
        assert!(matches!(to_canonical(&v), Err(CanonicalError::TooLarge(_))));
        let v: Value = serde_json::from_str("[1e300]").unwrap();
        assert!(matches!(to_canonical(&v), Err(CanonicalError::TooLarge(_))));
    }

    #[test]
    fn strings_are_raw_except_quote_and_backslash() {
        let v = json!("a\u{1}\n<ü>\u{2028}");
        assert_eq!(
            to_canonical(&v).unwrap(),
            "\"a\u{1}\n<ü>\u{2028}\"".as_bytes()
        );
        assert_eq!(
            html_escape("\"<ü>\u{2028}\u{2029}&\"".as_bytes()).unwrap(),
            "\"\\u003cü\\u003e\\u2028\\u2029\\u0026\"".as_bytes()
        );
        assert_eq!(
            html_escape(b"\"a\tb\""),
            Err(CanonicalError::ControlCharacter(b'\t'))
        );
    }

    #[test]
    fn go_string_escaping() {
        let mut out = Vec::new();
        write_go_string(&mut out, "a<b>\"\\\n\u{1}é");
        assert_eq!(out, "\"a\\u003cb\\u003e\\\"\\\\\\n\\u0001é\"".as_bytes());
    }
}
