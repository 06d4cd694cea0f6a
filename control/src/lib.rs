//! The control plane of `vpn`: the cross-platform userspace API (UAPI) server through which the
//! stock `wg` tool configures the daemon, and the server manager's parts: its configuration
//! file, the store of users, devices and keys, host network setup and client configurations.
//!
//! | module | what |
//! |---|---|
//! | [`uapi`] | the UAPI wire protocol: request parsing, applying a `set`, formatting a `get`, and the Unix socket server |
//! | [`server_config`] | the server's documented TOML configuration (`/etc/vpn/vpn.toml`) |
//! | [`store`] | users, devices, address allocation, keys and the audit trail, behind a trait; SQLite by default |
//! | [`peers`] | from the store to the interface configuration the engine runs |
//! | [`netconf`] | addresses, MTU, forwarding and the nftables table of `vpn up` |
//! | [`client_config`] | a device's wg-quick configuration, as text, terminal QR code and PNG |
//!
//! The crate owns threads and file descriptors; the protocol core below it does not. It runs on
//! plain `std` threads (no async runtime).

pub mod client_config;
pub mod netconf;
pub mod peers;
pub mod server_config;
pub mod store;
pub mod uapi;

mod sys;
