//! PEM blocks with RFC 1421 headers, read and written as Go's `encoding/pem` does
//! (headers sorted, a blank line after them, 64-column base64, `\n` line ends).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

/// A malformed PEM block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed PEM: {0}")]
pub struct PemError(pub &'static str);

/// One decoded PEM block. The body is zeroized on drop because key files use it.
pub struct Block {
    /// The label between `BEGIN ` and `-----`.
    pub label: String,
    /// Headers in file order.
    pub headers: Vec<(String, String)>,
    /// Decoded body.
    pub body: Zeroizing<Vec<u8>>,
}

impl Block {
    /// A header value by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Decodes every PEM block in `input`, skipping text between blocks.
pub fn decode_all(input: &[u8]) -> Result<Vec<Block>, PemError> {
    decode(input, false)
}

/// Decodes every PEM block in `input`, refusing anything but whitespace outside the
/// blocks and headers inside them: the form of certificate-form keys in metadata, where
/// padding would only cost verifiers work.
pub fn decode_all_strict(input: &[u8]) -> Result<Vec<Block>, PemError> {
    decode(input, true)
}

fn decode(input: &[u8], strict: bool) -> Result<Vec<Block>, PemError> {
    let text = std::str::from_utf8(input).map_err(|_| PemError("not UTF-8 text"))?;
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim_end()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            if strict && !line.trim().is_empty() {
                return Err(PemError("text outside PEM blocks"));
            }
            continue;
        };
        let end_line = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut b64 = Zeroizing::new(String::new());
        let mut in_headers = true;
        let mut closed = false;
        for line in lines.by_ref() {
            let line = line.trim_end();
            if line == end_line {
                closed = true;
                break;
            }
            if in_headers {
                if let Some((k, v)) = line.split_once(':') {
                    if strict {
                        return Err(PemError("headers in a certificate block"));
                    }
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                    continue;
                }
                in_headers = false;
                if line.is_empty() {
                    continue;
                }
            }
            b64.push_str(line.trim());
        }
        if !closed {
            return Err(PemError("missing END line"));
        }
        let body = B64
            .decode(b64.as_bytes())
            .map_err(|_| PemError("body is not base64"))?;
        blocks.push(Block {
            label: label.to_owned(),
            headers,
            body: Zeroizing::new(body),
        });
    }
    Ok(blocks)
}

/// Decodes exactly one block.
pub fn decode_one(input: &[u8]) -> Result<Block, PemError> {
    let mut blocks = decode_all(input)?;
    match blocks.len() {
        0 => Err(PemError("no PEM block found")),
        _ => Ok(blocks.remove(0)),
    }
}

/// Encodes a block; headers are written in alphabetical order as Go does.
pub fn encode(label: &str, headers: &[(&str, &str)], body: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(body.len() * 4 / 3 + 128));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut hs: Vec<&(&str, &str)> = headers.iter().collect();
    hs.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in &hs {
        out.push_str(k);
        out.push_str(": ");
        out.push_str(v);
        out.push('\n');
    }
    if !hs.is_empty() {
        out.push('\n');
    }
    let b64 = Zeroizing::new(B64.encode(body));
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_headers() {
        let body: Vec<u8> = (0..100u8).collect();
        let pem = encode(
            "ENCRYPTED PRIVATE KEY",
            &[("role", "targets"), ("gun", "a/b")],
            &body,
        );
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\ngun: a/b\nrole: targets\n\n")
        );
        let b = decode_one(pem.as_bytes()).unwrap();
        assert_eq!(b.label, "ENCRYPTED PRIVATE KEY");
        assert_eq!(b.header("role"), Some("targets"));
        assert_eq!(&b.body[..], &body[..]);
    }

    #[test]
    fn strict_refuses_text_outside_blocks_and_headers() {
        let pem = encode("CERTIFICATE", &[], &[1, 2, 3]);
        assert_eq!(decode_all_strict(pem.as_bytes()).unwrap().len(), 1);
        let spaced = format!("\n  \n{}\n\n", pem.as_str());
        assert_eq!(decode_all_strict(spaced.as_bytes()).unwrap().len(), 1);
        for junk in [
            format!("x\n{}", pem.as_str()),
            format!("{}x\n", pem.as_str()),
        ] {
            assert!(decode_all(junk.as_bytes()).is_ok());
            assert!(decode_all_strict(junk.as_bytes()).is_err());
        }
        let headers = encode("CERTIFICATE", &[("a", "b")], &[1]);
        assert!(decode_all_strict(headers.as_bytes()).is_err());
    }

    #[test]
    fn truncated_is_an_error() {
        let pem = encode("PRIVATE KEY", &[], &[1, 2, 3]);
        let cut = &pem.as_bytes()[..pem.len() - 10];
        assert!(decode_all(cut).is_err());
        assert!(decode_one(b"nothing here").is_err());
        assert!(decode_all(b"-----BEGIN X-----\n!!!!\n-----END X-----\n").is_err());
    }
}
