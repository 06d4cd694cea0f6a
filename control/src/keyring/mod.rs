//! Keys at rest: the pure crypto and passphrase layer under the store.
//!
//! The store's secrets (devices' private keys, pre-shared keys) are each sealed with one random
//! 256-bit [`DataKey`] (XChaCha20-Poly1305, a fresh random nonce per record, the record's identity
//! as associated data), and the data key is kept only wrapped under a [`Passphrase`]
//! (Argon2id, then XChaCha20-Poly1305) as a one-line [`WrappedKey`]. Changing the passphrase
//! re-wraps one key; no record is re-encrypted.
//!
//! | item | what |
//! |---|---|
//! | [`Passphrase`] | the secret an operator holds; wiped on drop, never printed |
//! | [`KdfParams`] | Argon2id cost; [`KdfParams::DEFAULT`] is OWASP's recommendation |
//! | [`DataKey`] | seals and opens records ([`DataKey::seal`], [`DataKey::open`]), wraps and unwraps itself |
//! | [`WrappedKey`] | `vpnkey1$argon2id$m=..,t=..,p=..$salt$check$sealed` |
//! | [`is_sealed`] | a sealed record (`v1:...`) versus a legacy plain base64 key |
//! | [`find_passphrase`] | the passphrase from `VPN_PASSPHRASE`, `VPN_PASSPHRASE_FILE`, a systemd credential or a file |
//! | [`create_passphrase_file`] | a new random passphrase in a `0600` file, written atomically |
//!
//! Randomness is a parameter (`rand_core::CryptoRngCore`); apart from the passphrase sources,
//! nothing here touches files or the environment.

mod b64;
mod datakey;
mod error;
mod passphrase;
mod source;
mod wrap;

pub use datakey::{is_sealed, DataKey, SEALED_PREFIX};
pub use error::KeyringError;
pub use passphrase::{Passphrase, GENERATED_PASSPHRASE_ENTROPY};
pub use source::{
    create_passphrase_file, find_passphrase, find_passphrase_with_env, PassphraseSource, CREDENTIALS_DIRECTORY_ENV, PASSPHRASE_CREDENTIAL,
    PASSPHRASE_ENV, PASSPHRASE_FILE_ENV,
};
pub use wrap::{KdfParams, WrappedKey, WRAPPED_PREFIX};
