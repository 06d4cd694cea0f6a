//! XChaCha20-Poly1305 (24-byte nonce) through the `chacha20poly1305` crate: cookie replies in the
//! protocol, and records encrypted at rest by the control plane. `ring` lacks this construction.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

pub use crate::aead::{AeadError, TAG_LEN};

/// Length of the extended nonce.
pub const NONCE_LEN: usize = 24;

/// Encrypts `plaintext` into `out` (exactly `plaintext.len() + 16` bytes).
///
/// # Panics
/// If `out` has the wrong length (a caller bug).
pub fn seal(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8], out: &mut [u8]) {
    assert_eq!(out.len(), plaintext.len() + TAG_LEN, "xseal output length");
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    body.copy_from_slice(plaintext);
    let cipher = XChaCha20Poly1305::new(key.into());
    let tag = cipher.encrypt_in_place_detached(XNonce::from_slice(nonce), aad, body).expect("XChaCha20-Poly1305 input within limits");
    tag_out.copy_from_slice(&tag);
}

/// Decrypts and authenticates `ciphertext` (body then tag) into `out` (exactly 16 bytes shorter).
/// On failure `out` is zeroed: no partial plaintext is ever returned.
pub fn open(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<(), AeadError> {
    if ciphertext.len() < TAG_LEN || out.len() != ciphertext.len() - TAG_LEN {
        return Err(AeadError);
    }
    let (body, tag) = ciphertext.split_at(ciphertext.len() - TAG_LEN);
    out.copy_from_slice(body);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher.decrypt_in_place_detached(XNonce::from_slice(nonce), aad, out, Tag::from_slice(tag)).map_err(|_| {
        out.fill(0);
        AeadError
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let (k, n) = ([1u8; 32], [2u8; 24]);
        let mut ct = [0u8; 16 + 16];
        seal(&k, &n, b"aad", &[5; 16], &mut ct);
        let mut pt = [0u8; 16];
        open(&k, &n, b"aad", &ct, &mut pt).unwrap();
        assert_eq!(pt, [5; 16]);
        ct[31] ^= 0x80;
        assert_eq!(open(&k, &n, b"aad", &ct, &mut pt), Err(AeadError));
        assert_eq!(pt, [0; 16]);
    }
}
