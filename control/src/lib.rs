//! The control plane of `vpn`: the cross-platform userspace API (UAPI) server through which the
//! stock `wg` tool configures the daemon, and later users, devices, keys, the store and firewall.
//!
//! | module | what |
//! |---|---|
//! | [`uapi`] | the UAPI wire protocol: request parsing, applying a `set`, formatting a `get`, and the Unix socket server |
//!
//! The crate owns threads and file descriptors; the protocol core below it does not. It runs on
//! plain `std` threads (no async runtime).

pub mod client_config;
pub mod netconf;
pub mod server_config;
pub mod store;
pub mod uapi;

mod sys;
