//! Keys at rest in Go notary-signer's format (spec §8.4): JWE compact serialisation with
//! `PBES2-HS256+A128KW` key wrapping and `A256GCM` content encryption.
//!
//! * header, exactly `{"alg":"PBES2-HS256+A128KW","enc":"A256GCM","p2c":8192,"p2s":"…"}`
//! * KEK = PBKDF2-HMAC-SHA-256(passphrase, `alg` ‖ 0x00 ‖ p2s, p2c, 16 bytes)
//! * a random 32-byte CEK wrapped with AES key wrap (RFC 3394) under the KEK
//! * AES-256-GCM with a 12-byte IV, AAD = the ASCII of the encoded header.
//!
//! The plaintext is Go TUF's raw private key bytes
//! ([`notary_core::keyfile::tuf_private_bytes`]).

use std::num::NonZeroU32;

use aes_kw::KwAes128;
use aes_kw::cipher::KeyInit as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use zeroize::Zeroizing;

/// The key wrapping algorithm (column `keywrap_alg`).
pub const KEYWRAP_ALG: &str = "PBES2-HS256+A128KW";
/// The content encryption algorithm (column `encryption_alg`).
pub const ENCRYPTION_ALG: &str = "A256GCM";
/// PBKDF2 iterations Go writes.
pub const P2C: u32 = 8192;
/// Upper bound on accepted iteration counts (a hostile row must not stall the signer).
const MAX_P2C: u32 = 1_000_000;

/// Sealing and opening failures. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// Not five base64url segments, bad JSON header, wrong sizes.
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// A header algorithm other than PBES2-HS256+A128KW / A256GCM.
    #[error("unsupported JWE algorithm {0:?}")]
    Unsupported(String),
    /// Key unwrap or GCM authentication failed: wrong passphrase or tampered data.
    #[error("cannot decrypt (wrong passphrase or corrupted key)")]
    Decrypt,
    /// The system RNG or cipher failed.
    #[error("encryption failed: {0}")]
    Crypto(&'static str),
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    alg: String,
    enc: String,
    p2c: u32,
    p2s: String,
}

fn kek(passphrase: &str, p2s: &[u8], p2c: u32) -> Result<Zeroizing<[u8; 16]>, JweError> {
    let mut salt = Vec::with_capacity(KEYWRAP_ALG.len() + 1 + p2s.len());
    salt.extend_from_slice(KEYWRAP_ALG.as_bytes());
    salt.push(0);
    salt.extend_from_slice(p2s);
    let mut out = Zeroizing::new([0u8; 16]);
    let iterations = NonZeroU32::new(p2c).ok_or(JweError::Malformed("p2c is 0"))?;
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        passphrase.as_bytes(),
        out.as_mut(),
    );
    Ok(out)
}

/// Seals `plaintext` under `passphrase`, as Go's signer does.
pub fn seal(plaintext: &[u8], passphrase: &str) -> Result<String, JweError> {
    let rng = SystemRandom::new();
    let mut p2s = [0u8; 12];
    let mut cek = Zeroizing::new([0u8; 32]);
    let mut iv = [0u8; 12];
    rng.fill(&mut p2s).map_err(|_| JweError::Crypto("rng"))?;
    rng.fill(cek.as_mut())
        .map_err(|_| JweError::Crypto("rng"))?;
    rng.fill(&mut iv).map_err(|_| JweError::Crypto("rng"))?;
    let header = serde_json::to_vec(&Header {
        alg: KEYWRAP_ALG.into(),
        enc: ENCRYPTION_ALG.into(),
        p2c: P2C,
        p2s: B64.encode(p2s),
    })
    .map_err(|_| JweError::Crypto("header"))?;
    let header_b64 = B64.encode(&header);
    let kek = kek(passphrase, &p2s, P2C)?;
    let kek_bytes: &[u8; 16] = &kek;
    let kw = KwAes128::new(kek_bytes.into());
    let mut wrapped = [0u8; 40];
    kw.wrap_key(cek.as_ref(), &mut wrapped)
        .map_err(|_| JweError::Crypto("key wrap"))?;
    let key = LessSafeKey::new(
        UnboundKey::new(&aead::AES_256_GCM, cek.as_ref()).map_err(|_| JweError::Crypto("gcm"))?,
    );
    let mut buf = Zeroizing::new(plaintext.to_vec());
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::Crypto("gcm"))?;
    Ok(format!(
        "{header_b64}.{}.{}.{}.{}",
        B64.encode(wrapped),
        B64.encode(iv),
        B64.encode(&*buf),
        B64.encode(tag.as_ref())
    ))
}

/// Opens a JWE sealed by Go's signer (or [`seal`]) with `passphrase`.
pub fn open(jwe: &str, passphrase: &str) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let parts: Vec<&str> = jwe.trim().split('.').collect();
    let [header_b64, wrapped, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Malformed("expected 5 segments"));
    };
    let d = |s: &str, what: &'static str| B64.decode(s).map_err(|_| JweError::Malformed(what));
    let header: Header = serde_json::from_slice(&d(header_b64, "header")?)
        .map_err(|_| JweError::Malformed("header JSON"))?;
    if header.alg != KEYWRAP_ALG {
        return Err(JweError::Unsupported(header.alg));
    }
    if header.enc != ENCRYPTION_ALG {
        return Err(JweError::Unsupported(header.enc));
    }
    if header.p2c > MAX_P2C {
        return Err(JweError::Malformed("p2c too large"));
    }
    let p2s = d(&header.p2s, "p2s")?;
    let wrapped = d(wrapped, "encrypted key")?;
    let iv: [u8; 12] = d(iv, "iv")?
        .try_into()
        .map_err(|_| JweError::Malformed("iv must be 12 bytes"))?;
    let tag = d(tag, "tag")?;
    if wrapped.len() != 40 || tag.len() != 16 {
        return Err(JweError::Malformed("encrypted key or tag size"));
    }
    let kek = kek(passphrase, &p2s, header.p2c)?;
    let kek_bytes: &[u8; 16] = &kek;
    let kw = KwAes128::new(kek_bytes.into());
    let mut cek = Zeroizing::new([0u8; 32]);
    kw.unwrap_key(&wrapped, cek.as_mut())
        .map_err(|_| JweError::Decrypt)?;
    let key = LessSafeKey::new(
        UnboundKey::new(&aead::AES_256_GCM, cek.as_ref()).map_err(|_| JweError::Decrypt)?,
    );
    let mut buf = Zeroizing::new(d(ciphertext, "ciphertext")?);
    buf.extend_from_slice(&tag);
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header_b64.as_bytes()),
            &mut buf,
        )
        .map_err(|_| JweError::Decrypt)?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_shape() {
        let sealed = seal(b"secret bytes", "pass").unwrap();
        let header = B64.decode(sealed.split('.').next().unwrap()).unwrap();
        let header = String::from_utf8(header).unwrap();
        assert!(
            header.starts_with(r#"{"alg":"PBES2-HS256+A128KW","enc":"A256GCM","p2c":8192,"p2s":""#),
            "{header}"
        );
        assert_eq!(&*open(&sealed, "pass").unwrap(), b"secret bytes");
        assert!(matches!(open(&sealed, "wrong"), Err(JweError::Decrypt)));
    }

    #[test]
    fn tampering_and_garbage_are_errors() {
        let sealed = seal(b"k", "pass").unwrap();
        let mut parts: Vec<String> = sealed.split('.').map(str::to_owned).collect();
        parts[3] = B64.encode(b"x");
        assert!(open(&parts.join("."), "pass").is_err());
        for bad in ["", "a.b.c", "....", "a.b.c.d.e", "e30.AA.AA.AA.AA"] {
            assert!(open(bad, "pass").is_err(), "{bad}");
        }
    }
}
