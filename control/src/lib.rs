//! The control plane: users, devices, keys, store, configuration, the UAPI server, firewall and
//! netlink.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace layout, and nothing
//! uses it. See `docs/architecture.md`.
