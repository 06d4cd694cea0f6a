//! Cryptographic primitives of the WireGuard protocol, and nothing else.
//!
//! This crate is pure: it opens no file, reads no clock and owns no random number generator. Time
//! and randomness are parameters (`rand_core::CryptoRngCore`), so the protocol core above it can be
//! run deterministically in tests and simulations.
//!
//! | module | what |
//! |---|---|
//! | [`blake2s`] | HASH, keyed MAC (BLAKE2s-128), HMAC-BLAKE2s and the KDF1..KDF3 chain |
//! | [`aead`] | ChaCha20-Poly1305 with WireGuard's 64-bit counter nonce (through `ring`) |
//! | [`xaead`] | XChaCha20-Poly1305 for cookie replies and storage (through `chacha20poly1305`) |
//! | [`x25519`] | Diffie-Hellman, rejecting an all-zero shared secret |
//! | [`tai64n`] | TAI64N timestamps with the 2^24 ns whitening |
//! | [`keys`] | key newtypes that zeroize and redact, with `wg`-compatible base64 and hex |

pub mod aead;
pub mod blake2s;
pub mod keys;
pub mod tai64n;
pub mod x25519;
pub mod xaead;

pub use keys::{KeyParseError, PresharedKey, PrivateKey, PublicKey};
pub use tai64n::Tai64N;

/// Length of every WireGuard key (X25519 keys, pre-shared keys, symmetric keys).
pub const KEY_LEN: usize = 32;
