//! Incremental content hashing whose running state can be saved and restored, so an
//! upload hashed while it streams in can be resumed by another process (a restarted
//! registry, another replica) without re-reading what was already received.

use sha2::Digest as _;
use sha2::digest::common::hazmat::SerializableState;

use crate::names::{Algorithm, Digest};

/// A running sha256 or sha512.
#[derive(Clone)]
pub enum Hasher {
    /// sha256.
    Sha256(sha2::Sha256),
    /// sha512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far (the hasher itself is left untouched).
    pub fn peek(&self) -> Digest {
        self.clone().finish()
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest::from_raw(Algorithm::Sha256, &h.finalize()),
            Hasher::Sha512(h) => Digest::from_raw(Algorithm::Sha512, &h.finalize()),
        }
    }

    /// The running state as bytes (a few hundred at most), for [`Hasher::restore`].
    pub fn save(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.serialize().as_slice().to_vec(),
            Hasher::Sha512(h) => h.serialize().as_slice().to_vec(),
        }
    }

    /// Restores a state saved by [`Hasher::save`]; `None` if the bytes are not one.
    pub fn restore(algorithm: Algorithm, state: &[u8]) -> Option<Hasher> {
        match algorithm {
            Algorithm::Sha256 => {
                let s = state.try_into().ok()?;
                sha2::Sha256::deserialize(s).ok().map(Hasher::Sha256)
            }
            Algorithm::Sha512 => {
                let s = state.try_into().ok()?;
                sha2::Sha512::deserialize(s).ok().map(Hasher::Sha512)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_resumes() {
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
            let mut whole = Hasher::new(alg);
            whole.update(&data);
            let mut first = Hasher::new(alg);
            first.update(&data[..3333]);
            let saved = first.save();
            let mut resumed = Hasher::restore(alg, &saved).expect("state");
            resumed.update(&data[3333..]);
            assert_eq!(resumed.finish(), whole.finish());
            assert!(Hasher::restore(alg, &saved[1..]).is_none());
        }
        assert_eq!(
            Digest::of(Algorithm::Sha256, b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
