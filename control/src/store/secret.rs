//! How keys are kept at rest. For now a key is its base64 text in a `TEXT` column, protected by
//! the file's 0600 mode only; encrypting keys at rest changes this pair of functions and nothing
//! else.

use zeroize::Zeroizing;

use super::StoreError;

/// The stored form of a 32-byte secret.
pub(crate) fn seal(key: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(vpn_crypto::keys::to_base64(key))
}

/// A secret back from its stored form. `what` names it in the error, which never contains the
/// stored text.
pub(crate) fn open(stored: &str, what: &str) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    vpn_crypto::keys::from_base64(stored).map(Zeroizing::new).map_err(|_| StoreError::Corrupt(format!("{what} is not a valid key")))
}
