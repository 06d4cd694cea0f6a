//! How private keys and PSKs are kept at rest.
//!
//! Each secret is sealed on its own with XChaCha20-Poly1305 under the store's data key
//! ([`DataKey`]), with a fresh random nonce, and with the record's identity as associated data:
//! the public key it belongs to and which secret it is (see [`Record`]). A flipped bit, a
//! truncated value, a value moved to another record or a wrong data key fails to open with an
//! error; no partial plaintext is ever returned.
//!
//! The data key itself is kept in `settings` wrapped under a key derived with Argon2id from the
//! operator's passphrase ([`vpn_control::keyring`](crate::keyring)), so changing the passphrase
//! rewraps one value and re-encrypts nothing.
//!
//! A store written before keys were encrypted holds them as plain base64; such values are still
//! read, and are sealed the first time the store is unlocked.

use rand_core::OsRng;
use zeroize::Zeroizing;

use crate::keyring::{is_sealed, DataKey};

use super::StoreError;

/// The `settings` key of the wrapped data key.
pub(crate) const WRAPPED_KEY: &str = "data_key";

/// Which secret a stored value is: its associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Record<'a> {
    /// The server's private key.
    ServerKey,
    /// The server's previous private key, still accepted during a rotation's grace period.
    RetiringServerKey,
    /// The private key of the device whose public key (base64) is given.
    DevicePrivate(&'a str),
    /// The pre-shared key of the device whose public key (base64) is given.
    DevicePsk(&'a str),
}

impl Record<'_> {
    fn associated_data(self) -> String {
        match self {
            Record::ServerKey => "vpn server private-key".to_owned(),
            Record::RetiringServerKey => "vpn server retiring-private-key".to_owned(),
            Record::DevicePrivate(pk) => format!("vpn device {pk} private-key"),
            Record::DevicePsk(pk) => format!("vpn device {pk} preshared-key"),
        }
    }
}

/// The stored form of a secret. Needs the unlocked data key.
pub(crate) fn seal(key: Option<&DataKey>, secret: &[u8; 32], record: Record<'_>) -> Result<String, StoreError> {
    let key = key.ok_or(StoreError::Locked)?;
    Ok(key.seal(secret, &record.associated_data(), &mut OsRng))
}

/// A secret back from its stored form. `what` names it in the error (e.g. "the private key of
/// device alice/phone"), which never contains the stored text. A plain base64 value (a store
/// from before encryption) is read without the data key when `allow_plain`: only in a store that
/// is not protected yet; in a protected one it can only have been written behind the store's
/// back, and is refused.
pub(crate) fn open(
    key: Option<&DataKey>,
    stored: &str,
    record: Record<'_>,
    what: &str,
    allow_plain: bool,
) -> Result<Zeroizing<[u8; 32]>, StoreError> {
    if !is_sealed(stored) {
        if !allow_plain {
            return Err(StoreError::Corrupt(format!(
                "{what} is stored in plain text although the store's keys are encrypted: it was written behind the store's back"
            )));
        }
        return vpn_crypto::keys::from_base64(stored)
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Corrupt(format!("{what} is neither a sealed nor a plain key")));
    }
    let key = key.ok_or(StoreError::Locked)?;
    key.open(stored, &record.associated_data()).map_err(|reason| StoreError::Secret { what: what.to_owned(), reason })
}
