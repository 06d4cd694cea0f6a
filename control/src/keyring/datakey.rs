//! The store's data key and record sealing: each 32-byte secret (a device's private key, a
//! pre-shared key) is stored as `v1:` followed by the base64 of a fresh 24-byte nonce, the
//! XChaCha20-Poly1305 ciphertext and its 16-byte tag. The record's identity (e.g.
//! `device <public key> private-key`) is bound as associated data, so a record copied into
//! another record's place does not open.
//!
//! Random 192-bit nonces make a collision negligible for any number of records a store will hold,
//! which is why XChaCha20 and not a 96-bit-nonce AEAD is used here.

use std::fmt;

use rand_core::CryptoRngCore;
use vpn_crypto::xaead;
use zeroize::Zeroizing;

use super::b64;
use super::KeyringError;

/// The version tag that starts every sealed record.
pub const SEALED_PREFIX: &str = "v1:";

const NONCE_LEN: usize = xaead::NONCE_LEN;
const TAG_LEN: usize = xaead::TAG_LEN;
/// Nonce, ciphertext of a 32-byte secret, tag.
const SEALED_BYTES: usize = NONCE_LEN + 32 + TAG_LEN;
const SEALED_BODY_LEN: usize = b64::encoded_len(SEALED_BYTES);
const WHAT: &str = "sealed record";

/// The key that seals the store's secrets. 32 random bytes, wiped on drop, never printed; kept at
/// rest only wrapped under a passphrase ([`DataKey::wrap`]).
#[derive(Clone)]
pub struct DataKey {
    pub(super) key: Zeroizing<[u8; 32]>,
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut key[..]);
        Self { key }
    }

    /// Seals a 32-byte secret for storage under the record identity `ad`, with a fresh random
    /// nonce: sealing the same secret twice gives two different texts.
    pub fn seal(&self, secret: &[u8; 32], ad: &str, rng: &mut dyn CryptoRngCore) -> String {
        let mut body = [0u8; SEALED_BYTES];
        let (nonce, ciphertext) = body.split_at_mut(NONCE_LEN);
        rng.fill_bytes(nonce);
        let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().expect("nonce length");
        xaead::seal(&self.key, nonce, &record_ad(ad), secret, ciphertext);
        let mut out = String::with_capacity(SEALED_PREFIX.len() + SEALED_BODY_LEN);
        out.push_str(SEALED_PREFIX);
        out.push_str(&b64::encode(&body));
        out
    }

    /// Opens a record sealed by [`seal`](Self::seal) under the same record identity `ad`.
    ///
    /// # Errors
    /// [`Truncated`](KeyringError::Truncated) when the text was cut short,
    /// [`Malformed`](KeyringError::Malformed) for a bad prefix, base64 or length,
    /// [`UnsupportedVersion`](KeyringError::UnsupportedVersion) for a later `vN:` format, and
    /// [`Tampered`](KeyringError::Tampered) when authentication fails: a changed bit, another
    /// record's identity, or another data key. No plaintext is returned on any error.
    pub fn open(&self, stored: &str, ad: &str) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        let body = parse_sealed(stored)?;
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().expect("nonce length");
        let mut out = Zeroizing::new([0u8; 32]);
        // `xaead::open` zeroes `out` on failure.
        xaead::open(&self.key, nonce, &record_ad(ad), ciphertext, &mut out[..]).map_err(|_| KeyringError::Tampered { what: WHAT })?;
        Ok(out)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// Whether `stored` is in a sealed format (`v<digits>:...`, this version's or a later one) rather
/// than a legacy plain base64 key, whose alphabet has no `:`.
pub fn is_sealed(stored: &str) -> bool {
    version_tag(stored).is_some()
}

/// The `vN` tag of a `vN:...` text.
fn version_tag(stored: &str) -> Option<&str> {
    let (tag, _) = stored.split_once(':')?;
    let digits = tag.strip_prefix('v')?;
    (!digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(tag)
}

/// The associated data: the format version, then the record identity.
fn record_ad(ad: &str) -> Vec<u8> {
    [SEALED_PREFIX.as_bytes(), ad.as_bytes()].concat()
}

fn parse_sealed(stored: &str) -> Result<[u8; SEALED_BYTES], KeyringError> {
    let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
        if SEALED_PREFIX.starts_with(stored) {
            return Err(KeyringError::Truncated { what: WHAT, len: stored.len() });
        }
        if let Some(tag) = version_tag(stored) {
            return Err(KeyringError::UnsupportedVersion { what: WHAT, found: tag.to_owned() });
        }
        return Err(KeyringError::Malformed { what: WHAT, reason: "it does not start with `v1:` (it is not a sealed record)" });
    };
    if body.len() < SEALED_BODY_LEN {
        return Err(KeyringError::Truncated { what: WHAT, len: stored.len() });
    }
    if body.len() > SEALED_BODY_LEN {
        return Err(KeyringError::Malformed { what: WHAT, reason: "it is longer than a sealed 32-byte key" });
    }
    b64::decode_array(body).ok_or(KeyringError::Malformed { what: WHAT, reason: "it is not valid base64" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn layout() {
        let k = DataKey::generate(&mut OsRng);
        let s = k.seal(&[7; 32], "x", &mut OsRng);
        assert_eq!(s.len(), 3 + 96);
        assert!(s.starts_with("v1:"));
        assert!(is_sealed(&s));
        assert_eq!(*k.open(&s, "x").unwrap(), [7; 32]);
    }

    #[test]
    fn is_sealed_tells_legacy_keys_apart() {
        let legacy = vpn_crypto::keys::to_base64(&[0xab; 32]);
        assert!(!is_sealed(&legacy));
        assert!(!is_sealed("v1"));
        assert!(!is_sealed("v:abc"));
        assert!(!is_sealed("vx:abc"));
        assert!(is_sealed("v1:"));
        assert!(is_sealed("v2:abc"));
    }

    #[test]
    fn later_version_is_unsupported_not_tampered() {
        let k = DataKey::generate(&mut OsRng);
        let s = k.seal(&[7; 32], "x", &mut OsRng).replacen("v1:", "v2:", 1);
        assert!(matches!(k.open(&s, "x"), Err(KeyringError::UnsupportedVersion { ref found, .. }) if found == "v2"));
    }
}
