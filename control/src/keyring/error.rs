//! The keyring's errors. Each message says what failed and what to do next, and none ever contains
//! secret material: no passphrase, key, plaintext or stored ciphertext, only lengths, parameters,
//! format versions and paths.

use std::path::PathBuf;

use crate::keyfile::KeyFileError;

/// Why a passphrase, a wrapped data key or a sealed record could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The passphrase does not unlock the wrapped data key. The check value derived with the
    /// passphrase differs from the stored one, so either the passphrase is wrong or the wrapped
    /// key's salt, parameters or check value were changed (those cannot be told apart).
    #[error(
        "wrong passphrase: it does not unlock the store's data key; check which passphrase source is in use \
         (if the passphrase is right, the wrapped key's salt or parameters were changed: restore it from a backup)"
    )]
    WrongPassphrase,
    /// The passphrase is right (its check value matches) but the encrypted data key fails
    /// authentication: the wrapped key was damaged.
    #[error(
        "the wrapped data key is damaged: the passphrase is right but the encrypted key does not authenticate; restore it from a backup"
    )]
    Damaged,
    /// A sealed record fails authentication: a bit was changed, the record was moved from another
    /// record's place (its identity differs), or it was sealed under another data key.
    #[error("the sealed {what} does not authenticate: it was altered, moved from another record, or sealed under another data key")]
    Tampered {
        /// What was being opened.
        what: &'static str,
    },
    /// The text ends before its format does: it was cut short.
    #[error("the {what} is truncated (only {len} characters): it was cut short; restore it from a backup")]
    Truncated {
        /// What was being parsed.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The text is not in the expected format.
    #[error("the {what} is malformed: {reason}")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The text is in a later format version than this program reads.
    #[error("the {what} is in format {found}, which this version of vpn does not read; upgrade vpn")]
    UnsupportedVersion {
        /// What was being parsed.
        what: &'static str,
        /// The version tag found (a short ASCII tag, never secret).
        found: String,
    },
    /// Argon2id parameters outside the range this program accepts.
    #[error(
        "unsupported Argon2id parameters m={m_cost_kib},t={t_cost},p={p_cost}: need 1 <= p <= {max_p}, 8*p <= m <= {max_m} KiB, 1 <= t <= {max_t}",
        max_p = super::KdfParams::MAX_P_COST,
        max_m = super::KdfParams::MAX_M_COST_KIB,
        max_t = super::KdfParams::MAX_T_COST
    )]
    UnsupportedKdfParams {
        /// Memory cost in KiB.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
    /// Argon2id itself failed (e.g. it could not allocate its memory).
    #[error("the key derivation (Argon2id) failed: {0}")]
    Kdf(String),
    /// A passphrase is empty.
    #[error("the passphrase {from} is empty: an empty passphrase protects nothing; set a non-empty one")]
    EmptyPassphrase {
        /// Where it came from, in words (e.g. "from file /etc/vpn/passphrase").
        from: String,
    },
    /// A passphrase file could not be read (missing, readable by other users, ...).
    #[error(transparent)]
    PassphraseFile(#[from] KeyFileError),
    /// `create_passphrase_file` found a file already there.
    #[error("refusing to overwrite {}: a passphrase file already exists there (a store may depend on it)", path.display())]
    AlreadyExists {
        /// The path.
        path: PathBuf,
    },
    /// Creating a passphrase file failed.
    #[error("cannot create the passphrase file {}: {source}", path.display())]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The system error.
        source: std::io::Error,
    },
}
