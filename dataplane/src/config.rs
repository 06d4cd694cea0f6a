//! The configuration of one interface as the control plane states it, and the status the engine
//! reports back. Pure data: the UAPI parser edits an [`InterfaceConfig`] copy and hands the whole
//! result to the engine, so a request that fails part-way changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};

use crate::prefix::IpPrefix;

/// Desired state of an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// The private key; `None` means none (the interface then answers nothing).
    pub private_key: Option<PrivateKey>,
    /// During a key rotation's grace period, the previous private key: handshakes from peers still
    /// configured with its public key are accepted, and this interface's handshakes to those peers
    /// use it. `None` outside a rotation. Not part of the UAPI (`get` shows only `private_key`).
    pub retiring_private_key: Option<PrivateKey>,
    /// UDP listen port; 0 means "pick one".
    pub listen_port: u16,
    /// SO_MARK on outgoing UDP packets; 0 means off.
    pub fwmark: u32,
    /// Peers, in the order they were added (the order `wg show` lists them).
    pub peers: Vec<PeerSettings>,
}

/// Desired state of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// The peer's public key (its identity).
    pub public_key: PublicKey,
    /// Pre-shared key; all zeros means none.
    pub preshared_key: PresharedKey,
    /// Configured endpoint (the engine follows roaming from there).
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds; 0 means off.
    pub persistent_keepalive: u16,
    /// Allowed IPs, host bits cleared, in the order they were added.
    pub allowed_ips: Vec<IpPrefix>,
    /// A key rotation's new key: the old key (another peer) whose allowed IPs this peer takes
    /// over, in the engine, the moment it has its first session; until then it has none of them
    /// (see `engine/takeover.rs`). Once taken over, the engine's configuration shows the
    /// addresses on this peer and `None` here. Not part of the UAPI.
    pub takes_over: Option<PublicKey>,
}

impl PeerSettings {
    /// A peer with only its key.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            preshared_key: PresharedKey::default(),
            endpoint: None,
            persistent_keepalive: 0,
            allowed_ips: Vec::new(),
            takes_over: None,
        }
    }
}

impl InterfaceConfig {
    /// The peer with this key.
    pub fn peer(&self, key: &PublicKey) -> Option<&PeerSettings> {
        self.peers.iter().find(|p| p.public_key == *key)
    }

    /// The peer with this key, mutable.
    pub fn peer_mut(&mut self, key: &PublicKey) -> Option<&mut PeerSettings> {
        self.peers.iter_mut().find(|p| p.public_key == *key)
    }
}

/// Live state of an interface, for `wg show` and status displays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// The private key, if set.
    pub private_key: Option<PrivateKey>,
    /// The port actually bound (never 0 while running).
    pub listen_port: u16,
    /// The fwmark (0 = off).
    pub fwmark: u32,
    /// Peers in configuration order.
    pub peers: Vec<PeerStatus>,
}

/// Live state of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Pre-shared key (zeros when none).
    pub preshared_key: PresharedKey,
    /// Current endpoint (configured or learnt by roaming).
    pub endpoint: Option<SocketAddr>,
    /// Last completed handshake, as time since the UNIX epoch.
    pub last_handshake: Option<Duration>,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive interval (0 = off).
    pub persistent_keepalive: u16,
    /// Allowed IPs in configuration order.
    pub allowed_ips: Vec<IpPrefix>,
}
