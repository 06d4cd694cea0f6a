//! The server manager's store: users, their devices (keys and addresses), the server's key, and
//! an audit log of every change.
//!
//! | module | what |
//! |---|---|
//! | [`Store`] (here) | the interface the CLI uses; a distributed backend can implement it later |
//! | [`sqlite`] | [`SqliteStore`], the embedded SQLite implementation |
//! | [`names`] | the naming rules for users and devices |
//! | `model` | the records: [`User`], [`Device`], [`DeviceSecrets`], [`AuditEvent`], [`Actor`], [`Pools`] |
//! | `error` | [`StoreError`] |
//! | `schema` | the tables and their migrations |
//! | `alloc` | the lowest free address of a pool |
//! | `secret` | how private keys and PSKs are kept at rest |
//!
//! Every change is atomic together with its audit row: it happens entirely or not at all, and is
//! logged if and only if it happened. Secrets (private keys, PSKs) leave the store only through
//! [`Store::server_key`] and [`Store::device_secrets`]; they never appear in audit rows, errors,
//! logs or `Debug` output.

mod alloc;
mod error;
mod model;
pub mod names;
mod schema;
mod secret;
pub mod sqlite;

pub use error::StoreError;
pub use model::{Actor, AuditEvent, Device, DeviceSecrets, NewAddresses, NewDevice, NewKeys, PendingRotation, Pools, User};
pub use sqlite::{Applied, BatchError, Change, ImportRecord, KeyStatus, SqliteStore, Unlocked};
pub use vpn_dataplane::IpPrefix;

use vpn_crypto::PrivateKey;

/// Users, devices, the server's key and the audit log.
///
/// Changes take an [`Actor`] for the audit log. Lists are sorted: users by name, devices by
/// (user, name). Names are checked with [`names`] when a user or device is created; looking up a
/// name that breaks the rules simply finds nothing.
pub trait Store: Send {
    /// The server's private key, if one was set.
    fn server_key(&self) -> Result<Option<PrivateKey>, StoreError>;
    /// Sets (or replaces outright) the server's private key.
    fn set_server_key(&mut self, key: &PrivateKey, actor: &Actor) -> Result<(), StoreError>;
    /// When the server's current key was made (Unix seconds), when known.
    fn server_key_created_at(&self) -> Result<Option<i64>, StoreError>;
    /// Rotates the server's key to `new`; the old key is still accepted for handshakes until
    /// `retire_at` (Unix seconds), so clients can take their new config meanwhile.
    fn rotate_server_key(&mut self, new: &PrivateKey, retire_at: i64, actor: &Actor) -> Result<(), StoreError>;
    /// The server's previous key and until when it is accepted, during a rotation.
    fn retiring_server_key(&self) -> Result<Option<(PrivateKey, i64)>, StoreError>;
    /// Forgets the server's previous key (`reason` goes to the audit log). Returns whether there
    /// was one.
    fn retire_server_key(&mut self, reason: &str, actor: &Actor) -> Result<bool, StoreError>;

    /// Adds an enabled user without devices.
    fn add_user(&mut self, name: &str, actor: &Actor) -> Result<User, StoreError>;
    /// Every user, sorted by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// One user.
    fn user(&self, name: &str) -> Result<User, StoreError>;
    /// Enables or disables a user (and so all of its devices). Returns the user as it is now.
    fn set_user_enabled(&mut self, name: &str, enabled: bool, actor: &Actor) -> Result<User, StoreError>;
    /// Removes a user and all of its devices; returns the devices removed.
    fn remove_user(&mut self, name: &str, actor: &Actor) -> Result<Vec<Device>, StoreError>;

    /// Adds an enabled device to an existing user, with the lowest free host address of each
    /// configured pool (at least one pool is needed), allocated atomically with the insertion.
    fn add_device(&mut self, new: NewDevice<'_>, pools: &Pools, actor: &Actor) -> Result<Device, StoreError>;
    /// Every device, or those of one user (who must exist), sorted by (user, name).
    fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StoreError>;
    /// One device.
    fn device(&self, user: &str, name: &str) -> Result<Device, StoreError>;
    /// The private key and PSK of a device's current key pair.
    fn device_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError>;
    /// The private key and PSK of a device's pending new key pair (during a rotation).
    fn pending_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError>;
    /// Starts rotating a device's keys to `secrets`: the old pair keeps working until the
    /// client uses the new one or until `rotate_by` (Unix seconds). Replaces a rotation under
    /// way.
    fn rotate_device(
        &mut self,
        user: &str,
        name: &str,
        secrets: &DeviceSecrets,
        rotate_by: i64,
        actor: &Actor,
    ) -> Result<Device, StoreError>;
    /// Ends a device's rotation: the new pair replaces the old one, which stops working.
    fn complete_rotation(&mut self, user: &str, name: &str, reason: &str, actor: &Actor) -> Result<Device, StoreError>;
    /// Enables or disables one device. Returns the device as it is now.
    fn set_device_enabled(&mut self, user: &str, name: &str, enabled: bool, actor: &Actor) -> Result<Device, StoreError>;
    /// Removes a device, freeing its addresses; returns it as it was.
    fn remove_device(&mut self, user: &str, name: &str, actor: &Actor) -> Result<Device, StoreError>;

    /// Applies `changes` in order, all in one transaction: all of them or none.
    fn apply_batch(&mut self, changes: Vec<Change<'_>>, pools: &Pools, actor: &Actor) -> Result<Vec<Applied>, BatchError>;

    /// The latest `limit` audit events, newest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
}
