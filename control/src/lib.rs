//! The control plane of `vpn`: the cross-platform userspace API (UAPI) server through which the
//! stock `wg` tool configures the daemon, and the server manager's parts: its configuration
//! file, the store of users, devices and keys, host network setup and client configurations.
//!
//! | module | what |
//! |---|---|
//! | [`uapi`] | the UAPI wire protocol: request parsing, applying a `set`, formatting a `get`, and the Unix socket server |
//! | [`server_config`] | the server's documented TOML configuration (`/etc/vpn/vpn.toml`) |
//! | [`store`] | users, devices, address allocation, keys and the audit trail, behind a trait; SQLite by default |
//! | [`keyring`] | keys at rest: the passphrase, its sources, the data key that seals each stored secret |
//! | [`keyfile`] | reading secret files, refusing those other users can read |
//! | [`bulk`] | bulk files of users and devices: CSV/JSON import (parse, check against the store) and export |
//! | [`import`] | migration: a wg-quick server configuration (`wg0.conf`) and its peers read and planned into the store |
//! | [`peers`] | from the store to the interface configuration the engine runs |
//! | [`netconf`] | addresses, MTU, forwarding and the nftables table of `vpn up` |
//! | [`client_config`] | a device's wg-quick configuration, as text, terminal QR code and PNG |
//!
//! The crate owns threads and file descriptors; the protocol core below it does not. It runs on
//! plain `std` threads (no async runtime).

pub mod audit_log;
pub mod bulk;
pub mod civil;
pub mod client_config;
pub mod durable;
pub mod import;
pub mod keyfile;
pub mod keyring;
pub mod netconf;
pub mod peers;
pub mod server_config;
pub mod store;
pub mod uapi;

mod sys;
