//! ChaCha20-Poly1305 (RFC 8439) with WireGuard's nonce: four zero bytes, then a little-endian
//! 64-bit counter.
//!
//! The AEAD of the data path goes through `ring`, whose assembly is about 2.2× faster than the
//! pure-Rust crate on this project's machines at 1420 bytes (see `docs/performance.md`). The choice
//! is kept inside this one module: nothing else in the workspace names `ring`.
//!
//! `ring` does not wipe its key objects on drop; [`AeadKey`] is therefore only built from keys
//! that live as long as a session and the raw bytes it was built from are zeroized by the caller.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// Length of the Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;

/// The authentication tag did not verify (or the input was shorter than a tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD authentication failed")]
pub struct AeadError;

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// A ChaCha20-Poly1305 key ready for sealing and opening; cheap to use from many threads.
pub struct AeadKey(LessSafeKey);

impl AeadKey {
    /// Builds a key from 32 bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        // A 32-byte key is always accepted by ChaCha20-Poly1305.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte ChaCha20-Poly1305 key");
        Self(LessSafeKey::new(unbound))
    }

    /// Encrypts `buf` in place and returns the tag that authenticates it and `aad`.
    pub fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag =
            self.0.seal_in_place_separate_tag(nonce(counter), Aad::from(aad), buf).expect("ChaCha20-Poly1305 input within ring's limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `buf` (ciphertext followed by the tag) in place; on success returns the plaintext,
    /// the first `buf.len() - 16` bytes. On failure the content of `buf` is unspecified.
    pub fn open_in_place<'a>(&self, counter: u64, aad: &[u8], buf: &'a mut [u8]) -> Result<&'a mut [u8], AeadError> {
        if buf.len() < TAG_LEN {
            return Err(AeadError);
        }
        self.0.open_in_place(nonce(counter), Aad::from(aad), buf).map_err(|_| AeadError)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey([redacted])")
    }
}

/// One-shot seal for the handshake: `out` must be exactly `plaintext.len() + 16` bytes.
///
/// # Panics
/// If `out` has the wrong length (a caller bug).
pub fn seal(key: &[u8; 32], counter: u64, aad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    assert_eq!(out.len(), plaintext.len() + TAG_LEN, "seal output length");
    let (body, tag) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    tag.copy_from_slice(&AeadKey::new(key).seal_in_place(counter, aad, body));
}

/// One-shot open for the handshake: `out` must be exactly `ciphertext.len() - 16` bytes.
pub fn open(key: &[u8; 32], counter: u64, aad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<(), AeadError> {
    if ciphertext.len() < TAG_LEN || out.len() != ciphertext.len() - TAG_LEN {
        return Err(AeadError);
    }
    let mut buf = zeroize::Zeroizing::new(ciphertext.to_vec());
    let plain = AeadKey::new(key).open_in_place(counter, aad, &mut buf)?;
    out.copy_from_slice(plain);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = AeadKey::new(&[3; 32]);
        let mut buf = b"hello world".to_vec();
        let tag = k.seal_in_place(5, b"ad", &mut buf);
        buf.extend_from_slice(&tag);
        let mut copy = buf.clone();
        assert_eq!(k.open_in_place(5, b"ad", &mut copy).unwrap(), b"hello world");
        let mut copy = buf.clone();
        assert!(k.open_in_place(6, b"ad", &mut copy).is_err());
        let mut copy = buf.clone();
        copy[0] ^= 1;
        assert!(k.open_in_place(5, b"ad", &mut copy).is_err());
        assert!(k.open_in_place(5, b"", &mut [0u8; 15]).is_err());
    }
}
