//! The passphrase that wraps the store's data key: bytes that are wiped on drop and never printed.

use std::fmt;

use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

/// Random bytes in a generated passphrase (256 bits of entropy).
pub const GENERATED_PASSPHRASE_ENTROPY: usize = 32;

/// A passphrase. Its bytes are wiped when it is dropped, and `Debug` prints `[redacted]`.
///
/// Any bytes are accepted; what counts is the exact bytes (a file's single trailing newline is
/// removed by the readers in [`find_passphrase`](super::find_passphrase), not here).
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// A passphrase from its bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A fresh random passphrase: 32 random bytes as 44 characters of base64, printable and fit to
    /// be written into a file or pasted into a secret manager.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut raw = Zeroizing::new([0u8; GENERATED_PASSPHRASE_ENTROPY]);
        rng.fill_bytes(&mut raw[..]);
        // `into_bytes` moves the buffer: no unwiped copy of the text is left behind.
        Self::new(vpn_crypto::keys::to_base64(&raw).into_bytes())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn generated_is_printable_base64_of_32_bytes() {
        let p = Passphrase::generate(&mut OsRng);
        assert_eq!(p.as_bytes().len(), 44);
        assert!(p.as_bytes().iter().all(|b| b.is_ascii_graphic()));
        let text = std::str::from_utf8(p.as_bytes()).unwrap();
        assert!(vpn_crypto::keys::from_base64(text).is_ok());
        assert_ne!(Passphrase::generate(&mut OsRng).as_bytes(), p.as_bytes());
    }

    #[test]
    fn debug_is_redacted() {
        let p = Passphrase::new(b"hunter2".to_vec());
        assert_eq!(format!("{p:?}"), "Passphrase([redacted])");
    }
}
