//! [`StoreError`]: every way a store operation can fail, each message saying what to do next.
//!
//! Messages never contain key material: names, public keys, addresses and SQLite's own messages
//! (which do not echo bound values) only.

use vpn_dataplane::IpPrefix;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A user or device name breaks the naming rules ([`super::names`]).
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        /// `"user"` or `"device"`.
        kind: &'static str,
        /// The refused name.
        name: String,
        /// What is allowed, with an example.
        reason: &'static str,
    },
    /// A user of that name exists already.
    #[error("user {0:?} already exists: pick another name")]
    UserExists(String),
    /// No user of that name.
    #[error("no user named {0:?}: check the name, or add the user first")]
    NoSuchUser(String),
    /// The user already has a device of that name.
    #[error("user {user:?} already has a device named {device:?}: pick another name")]
    DeviceExists {
        /// The user.
        user: String,
        /// The device name.
        device: String,
    },
    /// The user has no device of that name.
    #[error("user {user:?} has no device named {device:?}")]
    NoSuchDevice {
        /// The user.
        user: String,
        /// The device name.
        device: String,
    },
    /// Another device already uses this public key (keys must be unique to route packets).
    #[error("the public key {public_key} already belongs to device {owner}: generate a new key pair")]
    PublicKeyInUse {
        /// The key, in base64 (public, not a secret).
        public_key: String,
        /// `user/device` of the device that has it.
        owner: String,
    },
    /// Every host address of the pool is taken.
    #[error("no free address left in {0}: enlarge the pool in the config or remove unused devices")]
    PoolExhausted(IpPrefix),
    /// Neither an IPv4 nor an IPv6 pool is configured, so a device cannot get an address.
    #[error("no address pool configured: set an IPv4 or IPv6 pool in the server config")]
    NoPools,
    /// A pool of the wrong address family (an IPv6 prefix given as the IPv4 pool or the reverse).
    #[error("the {family} address pool {pool} is not an {family} prefix: fix the pool in the server config")]
    PoolFamily {
        /// `"IPv4"` or `"IPv6"`.
        family: &'static str,
        /// The pool as configured.
        pool: IpPrefix,
    },
    /// The database stayed locked by another writer past the busy timeout.
    #[error("another vpn command is writing the store; try again")]
    Busy,
    /// A row or key that cannot be read back, or a file that is not a store.
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    /// The database was written by a newer `vpn` with a schema this one does not know.
    #[error("the store has schema version {found} but this vpn knows only up to {supported}: upgrade vpn")]
    SchemaTooNew {
        /// The version found in the file.
        found: u32,
        /// The newest version this build can read.
        supported: u32,
    },
    /// A secret was needed but the store is locked (no passphrase given).
    #[error(
        "the store's keys are encrypted and no passphrase was given: put it in the passphrase file (see `passphrase_file` in the config), or set VPN_PASSPHRASE_FILE or VPN_PASSPHRASE"
    )]
    Locked,
    /// A sealed secret or the wrapped data key did not open.
    #[error("{what} cannot be decrypted: {reason}")]
    Secret {
        /// Which secret, e.g. "the private key of device alice/phone".
        what: String,
        /// Why (in the message, not repeated as a source).
        reason: crate::keyring::KeyringError,
    },
    /// A device has no private key in the store (imported with its public key only).
    #[error(
        "device {0} was imported with its public key only: its private key is on the client, so its config cannot be written here; `vpn device rotate` issues a new full config"
    )]
    NoPrivateKey(String),
    /// A rotation request that does not fit the device's state.
    #[error("{0}")]
    Rotation(String),
    /// An address given for a new device that is not usable.
    #[error("address {addr} cannot be given to a device: {reason}")]
    BadAddress {
        /// The address.
        addr: std::net::IpAddr,
        /// Why not.
        reason: String,
    },
    /// An import that does not exist or is not in the expected state.
    #[error("{0}")]
    Import(String),
    /// The file system holding the store is full; the change was not made.
    #[error("the disk holding the store is full: nothing was changed; free some space and try again")]
    DiskFull,
    /// Any other SQLite failure.
    #[error("store database error: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// Creating or securing the database file or its directory failed.
    #[error("store file error: {0}")]
    Io(std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy,
                ErrorCode::DiskFull => StoreError::DiskFull,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => StoreError::Corrupt(e.to_string()),
                _ => StoreError::Sqlite(e),
            },
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(28) {
            StoreError::DiskFull
        } else {
            StoreError::Io(e)
        }
    }
}
