//! The little DER this crate needs for key files, written by hand so that Go's
//! non-standard encodings (PKCS#8 version 1 without a public key, RSA without NULL
//! parameters, Ed25519 under OID 1.3.6.1.4.1.11591.15.1) are read as Go reads them.

/// DER tags used here.
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
    pub const CONTEXT_0: u8 = 0xA0;
    pub const CONTEXT_1: u8 = 0xA1;
}

/// Encoded object identifiers (content bytes only).
pub(crate) mod oid {
    /// 1.2.840.10045.2.1 id-ecPublicKey
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 prime256v1
    pub const P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 secp384r1
    pub const P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
    /// 1.2.840.113549.1.1.1 rsaEncryption
    pub const RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    /// 1.3.101.112 id-Ed25519 (RFC 8410)
    pub const ED25519: &[u8] = &[0x2B, 0x65, 0x70];
    /// 1.3.6.1.4.1.11591.15.1, the Ed25519 OID Go Notary writes in key files
    pub const ED25519_GO: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01];
}

/// A malformed DER structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// A cursor over concatenated DER TLVs.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads one TLV, returning its tag and content.
    pub fn read(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let d = self.data;
        if d.len() < 2 {
            return Err(DerError("truncated"));
        }
        let tag = d[0];
        let (len, hdr) = match d[1] {
            n if n < 0x80 => (usize::from(n), 2),
            0x80 => return Err(DerError("indefinite length")),
            n => {
                let k = usize::from(n & 0x7F);
                if k > 4 || d.len() < 2 + k {
                    return Err(DerError("bad length"));
                }
                let len = d[2..2 + k]
                    .iter()
                    .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
                (len, 2 + k)
            }
        };
        let end = hdr.checked_add(len).ok_or(DerError("bad length"))?;
        if d.len() < end {
            return Err(DerError("truncated"));
        }
        self.data = &d[end..];
        Ok((tag, &d[hdr..end]))
    }

    /// Reads one TLV that must carry `tag`.
    pub fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        let (t, content) = self.read()?;
        if t != tag {
            return Err(DerError("unexpected tag"));
        }
        Ok(content)
    }

    /// Reads an optional TLV with `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<&'a [u8]>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.expect(tag).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Reads a small non-negative INTEGER.
    pub fn small_uint(&mut self) -> Result<u64, DerError> {
        let c = self.expect(tag::INTEGER)?;
        if c.is_empty() || c.len() > 8 || c[0] & 0x80 != 0 {
            return Err(DerError("integer out of range"));
        }
        Ok(c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }
}

/// Appends a TLV.
pub(crate) fn write(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

/// Returns a TLV as a new vector.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    write(&mut out, tag, content);
    out
}

/// DER INTEGER content for an unsigned big-endian magnitude.
pub(crate) fn uint_content(mag: &[u8]) -> Vec<u8> {
    let start = mag.iter().take_while(|b| **b == 0).count();
    let m = &mag[start..];
    let mut out = Vec::with_capacity(m.len() + 1);
    if m.is_empty() || m[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(m);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_long_lengths() {
        let content = vec![7u8; 300];
        let enc = tlv(tag::OCTET_STRING, &content);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2C]);
        let mut r = Reader::new(&enc);
        assert_eq!(r.expect(tag::OCTET_STRING).unwrap(), &content[..]);
        assert!(r.is_empty());
    }

    #[test]
    fn truncation_is_an_error() {
        let enc = tlv(tag::OCTET_STRING, &[1, 2, 3]);
        assert!(Reader::new(&enc[..4]).read().is_err());
        assert!(Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1]).read().is_err());
        assert!(Reader::new(&[0x04, 0x80]).read().is_err());
    }
}
