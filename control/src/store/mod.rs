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
pub use model::{Actor, AuditEvent, Device, DeviceSecrets, NewDevice, Pools, User};
pub use sqlite::SqliteStore;
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
    /// Sets (or replaces) the server's private key.
    fn set_server_key(&mut self, key: &PrivateKey, actor: &Actor) -> Result<(), StoreError>;

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
    /// The private key and PSK of a device, to write its configuration.
    fn device_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError>;
    /// Enables or disables one device. Returns the device as it is now.
    fn set_device_enabled(&mut self, user: &str, name: &str, enabled: bool, actor: &Actor) -> Result<Device, StoreError>;
    /// Removes a device, freeing its addresses; returns it as it was.
    fn remove_device(&mut self, user: &str, name: &str, actor: &Actor) -> Result<Device, StoreError>;

    /// The latest `limit` audit events, newest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
}
