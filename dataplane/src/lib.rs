//! The packet engine: threads, file descriptors, the clock, buffers, TUN and UDP I/O, the peer
//! table and the allowed-IPs trie, driving the sans-IO [`vpn_tunnel`] core.
//!
//! [`Engine`] runs one interface over any [`TunIo`] and [`Network`]: the real ones ([`tun::Tun`],
//! [`udp::SystemNetwork`]) or the in-memory twins in [`memory`] used by the engine tests.

pub mod allowed_ips;
pub mod config;
pub mod engine;
pub mod gro;
pub mod icmp;
pub mod io;
pub mod memory;
pub mod prefix;
pub mod tun;
pub mod udp;

pub use allowed_ips::AllowedIps;
pub use config::{InterfaceConfig, InterfaceStatus, PeerSettings, PeerStatus};
pub use engine::{ApplyError, Engine, EngineOptions, StopReason, COOKIE_QUEUE, HANDSHAKE_QUEUE};
pub use io::{Network, TunIo, UdpIo};
pub use prefix::{IpPrefix, PrefixError};
