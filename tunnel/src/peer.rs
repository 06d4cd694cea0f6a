//! Per-peer protocol state: handshake, sessions, timers, cookie, staged packets, counters.
//!
//! A `Peer` is owned by a [`crate::Device`] and only changed through it (`&mut`), so it needs no
//! lock of its own. Sessions are shared out as `Arc<Session>` for concurrent sealing and opening.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vpn_crypto::{PresharedKey, PublicKey, Tai64N};

use crate::keypairs::Keypairs;
use crate::macs::CookieState;
use crate::noise::{InitiatorState, PeerKeys};
use crate::session::Session;
use crate::timers::Timers;

/// Names a peer inside one [`crate::Device`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// Which of the device's static identities a peer's handshakes use: the primary one, or, during
/// a key rotation, the retiring one when the peer's last valid initiation was addressed to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum LocalIdentity {
    /// The device's private key.
    #[default]
    Primary,
    /// The device's retiring private key.
    Retiring,
}

/// What the configuration says about a peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The peer's static public key.
    pub public_key: PublicKey,
    /// Optional pre-shared key (all zeros means none).
    pub preshared_key: PresharedKey,
    /// Where to send until the peer roams.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive interval in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// The greatest initiation timestamp accepted from this peer before a restart (persisted by
    /// the control plane to close the replay of an old initiation after a restart).
    pub latest_timestamp: Tai64N,
}

impl PeerConfig {
    /// A peer with only a public key.
    pub fn new(public_key: PublicKey) -> Self {
        Self { public_key, preshared_key: PresharedKey::default(), endpoint: None, persistent_keepalive: 0, latest_timestamp: Tai64N::ZERO }
    }
}

/// A snapshot of a peer for status displays and the UAPI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// The current endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Bytes received (data messages and consumed handshake messages).
    pub rx_bytes: u64,
    /// Bytes sent (every message).
    pub tx_bytes: u64,
    /// Time of the last completed handshake, since the UNIX epoch.
    pub last_handshake: Option<Duration>,
    /// Persistent keepalive interval in seconds.
    pub persistent_keepalive: u16,
    /// Greatest initiation timestamp accepted (to persist).
    pub latest_timestamp: Tai64N,
    /// Whether a session usable for sending exists.
    pub has_session: bool,
    /// Packets waiting for a handshake.
    pub staged_packets: usize,
}

/// One remote peer.
#[derive(Debug)]
pub struct Peer {
    pub(crate) keys: PeerKeys,
    /// The identity its last valid initiation was addressed to; ours to it use the same.
    pub(crate) identity: LocalIdentity,
    pub(crate) handshake: Option<InitiatorState>,
    pub(crate) last_handshake_sent: Option<Instant>,
    pub(crate) latest_timestamp: Tai64N,
    pub(crate) last_initiation_consumed: Option<Instant>,
    pub(crate) cookie: CookieState,
    pub(crate) keypairs: Keypairs,
    pub(crate) timers: Timers,
    pub(crate) endpoint: Option<SocketAddr>,
    pub(crate) persistent_keepalive: u16,
    pub(crate) staged: VecDeque<Vec<u8>>,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
    pub(crate) last_handshake: Option<Duration>,
}

impl Peer {
    pub(crate) fn new(keys: PeerKeys, config: &PeerConfig) -> Self {
        Self {
            keys,
            identity: LocalIdentity::Primary,
            handshake: None,
            last_handshake_sent: None,
            latest_timestamp: config.latest_timestamp,
            last_initiation_consumed: None,
            cookie: CookieState::default(),
            keypairs: Keypairs::default(),
            timers: Timers::default(),
            endpoint: config.endpoint,
            persistent_keepalive: config.persistent_keepalive,
            staged: VecDeque::new(),
            rx_bytes: 0,
            tx_bytes: 0,
            last_handshake: None,
        }
    }

    /// A snapshot for display.
    pub fn info(&self, now: Instant) -> PeerInfo {
        PeerInfo {
            public_key: self.keys.remote_static,
            endpoint: self.endpoint,
            rx_bytes: self.rx_bytes,
            tx_bytes: self.tx_bytes,
            last_handshake: self.last_handshake,
            persistent_keepalive: self.persistent_keepalive,
            latest_timestamp: self.latest_timestamp,
            has_session: self.keypairs.current.as_ref().is_some_and(|s| s.can_send(now)),
            staged_packets: self.staged.len(),
        }
    }

    /// The session used for sending, if any.
    pub fn current_session(&self) -> Option<&Arc<Session>> {
        self.keypairs.current.as_ref()
    }

    /// All sessions in their slots.
    pub fn keypairs(&self) -> &Keypairs {
        &self.keypairs
    }

    /// The next timer deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Whether the peer talks to the device's retiring identity: its last valid initiation was
    /// addressed to the retiring key (it still has the old public key), so handshakes the device
    /// initiates to it use that key too. False when no retiring key is set.
    pub fn uses_retiring_identity(&self) -> bool {
        self.identity == LocalIdentity::Retiring
    }

    /// Whether an initiation is waiting for its response.
    pub fn handshake_pending(&self) -> bool {
        self.handshake.is_some()
    }
}
