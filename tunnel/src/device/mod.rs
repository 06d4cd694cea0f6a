//! A sans-IO WireGuard interface: our identity, the peers, the index table and the under-load
//! machinery, driven by a caller that owns the sockets, the TUN device and the clock.
//!
//! # Driving it
//!
//! - [`Device::handle_datagram`] for every UDP datagram received;
//! - [`Device::send`] for every packet read from the TUN device, once its peer is known;
//! - [`Device::handle_timeout`] whenever the instant returned by [`Device::poll_timeout`] passes;
//! - after each of those calls, drain [`Device::poll_transmit`] and send each datagram.
//!
//! Every call takes `now` from one monotonic clock; the wall clock is only used, through the
//! offset given at construction, for TAI64N timestamps and the last-handshake time.
//!
//! # Identities
//!
//! The device has a primary static identity (its private key) and, while a key rotation's grace
//! period lasts, optionally a second, retiring one (the previous key), so that peers still
//! configured with the old public key keep completing handshakes. A handshake message's mac1 is
//! keyed with the public key its sender believes is ours, so each message is checked against the
//! primary identity first, then the retiring one, and handled as the one it matches. Each peer
//! remembers the identity its last valid initiation was addressed to, and handshakes the device
//! initiates to it use the same; cookies and mac2 are per identity. Without a retiring key,
//! nothing is checked twice. See [`Device::set_private_keys`].
//!
//! # State
//!
//! Everything is owned and changed through `&mut self`: the driver serializes calls (the data
//! plane shares the [`crate::Session`]s handed out by peers for its parallel fast path).

mod fast;
mod receive;
mod schedule;
mod send;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey, Tai64N};

use crate::constants::REKEY_TIMEOUT_JITTER_MAX;
use crate::load::LoadMonitor;
use crate::macs::CookieChecker;
use crate::noise::{PeerKeys, StaticIdentity};
use crate::peer::{LocalIdentity, Peer, PeerConfig, PeerId, PeerInfo};
use crate::ratelimit::RateLimiter;
use crate::session::Session;
use crate::stats::{DropReason, Stats};

pub use fast::RxOutcome;
pub use receive::Received;

/// Default tunnel MTU.
pub const DEFAULT_MTU: usize = 1420;
/// Default handshake queue capacity assumed for the under-load decision (wireguard-go's).
pub const DEFAULT_HANDSHAKE_QUEUE: usize = 1024;

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The peer it belongs to (`None` for a cookie reply to an unauthenticated source).
    pub peer: Option<PeerId>,
    /// Destination address.
    pub destination: SocketAddr,
    /// The WireGuard message.
    pub payload: Vec<u8>,
}

/// A change the data plane mirrors in its lock-free tables (see [`Device::enable_events`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A session now exists under its `local_index`: data messages naming it may be opened.
    SessionAdded {
        /// Its peer.
        peer: PeerId,
        /// The session.
        session: Arc<Session>,
    },
    /// The session with this index is gone (evicted, expired or zeroed).
    SessionRemoved {
        /// Its index.
        local_index: u32,
    },
    /// The peer's current session or endpoint changed: re-read [`Device::current_sending`].
    PeerChanged(PeerId),
    /// The peer was removed.
    PeerRemoved(PeerId),
}

/// Why a configuration change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A peer with this public key already exists.
    #[error("a peer with this public key already exists")]
    DuplicatePeer,
    /// The peer's public key is our own.
    #[error("the peer's public key is the interface's own public key")]
    OwnPublicKey,
    /// No peer has this id.
    #[error("no such peer")]
    NoSuchPeer,
}

/// Converts the monotonic clock to wall-clock time through one offset taken at construction, so
/// TAI64N timestamps keep increasing even if the system clock is stepped back.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    base: Instant,
    unix: Duration,
}

impl WallClock {
    fn unix(&self, now: Instant) -> Duration {
        self.unix + now.saturating_duration_since(self.base)
    }
}

/// Device-wide state other than the peers, split out so a peer and this can be borrowed together.
pub(crate) struct Ctx {
    identity: Option<(Arc<StaticIdentity>, CookieChecker)>,
    /// The retiring identity during a key rotation; never equal to the primary one.
    retiring: Option<(Arc<StaticIdentity>, CookieChecker)>,
    rng: Box<dyn CryptoRngCore + Send>,
    /// State of the rekey jitter generator (see [`Ctx::jitter`]).
    jitter_state: u64,
    indices: HashMap<u32, PeerId>,
    clock: WallClock,
    mtu: usize,
    transmits: VecDeque<Transmit>,
    stats: Stats,
    load: LoadMonitor,
    backlog: (usize, usize),
    ratelimiter: RateLimiter,
    events: Option<VecDeque<Event>>,
}

impl Ctx {
    /// The identity handshakes with a peer bound to `which` use: the retiring one while it exists,
    /// otherwise the primary one. `None` without a primary identity (the device then makes no
    /// handshake at all).
    fn identity_for(&self, which: LocalIdentity) -> Option<&Arc<StaticIdentity>> {
        let (primary, _) = self.identity.as_ref()?;
        match (which, &self.retiring) {
            (LocalIdentity::Retiring, Some((retiring, _))) => Some(retiring),
            _ => Some(primary),
        }
    }

    /// Which of our identities has this public key.
    fn which_identity(&self, public: &PublicKey) -> Option<LocalIdentity> {
        if self.identity.as_ref().is_some_and(|(id, _)| id.public_key() == public) {
            Some(LocalIdentity::Primary)
        } else if self.retiring.as_ref().is_some_and(|(id, _)| id.public_key() == public) {
            Some(LocalIdentity::Retiring)
        } else {
            None
        }
    }

    /// Rekey jitter, up to [`REKEY_TIMEOUT_JITTER_MAX`]. It is no secret and is drawn at packet
    /// rate (a data packet sent after one received re-arms the new-handshake timer), so it comes
    /// from a small generator (SplitMix64) seeded once from the device's RNG rather than from that
    /// RNG, which for the OS RNG is a system call per draw.
    fn jitter(&mut self) -> Duration {
        self.jitter_state = self.jitter_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.jitter_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Duration::from_millis(z % REKEY_TIMEOUT_JITTER_MAX.as_millis() as u64)
    }

    fn alloc_index(&mut self, peer: PeerId) -> u32 {
        loop {
            let i = self.rng.next_u32();
            if let std::collections::hash_map::Entry::Vacant(e) = self.indices.entry(i) {
                e.insert(peer);
                return i;
            }
        }
    }

    fn event(&mut self, e: Event) {
        if let Some(q) = self.events.as_mut() {
            q.push_back(e);
        }
    }

    fn release_sessions(&mut self, sessions: impl IntoIterator<Item = Arc<Session>>) {
        for s in sessions {
            self.indices.remove(&s.local_index);
            self.event(Event::SessionRemoved { local_index: s.local_index });
        }
    }

    /// Installs a new session in the peer's slots and tells the data plane.
    fn install(&mut self, id: PeerId, peer: &mut Peer, session: Session) {
        let session = Arc::new(session);
        self.event(Event::SessionAdded { peer: id, session: Arc::clone(&session) });
        let evicted = peer.keypairs.install(session);
        self.release_sessions(evicted);
        self.event(Event::PeerChanged(id));
    }

    /// Destroys every session and the pending handshake of a peer.
    fn clear_sessions(&mut self, id: PeerId, peer: &mut Peer) {
        let released = peer.keypairs.clear();
        self.release_sessions(released);
        if let Some(h) = peer.handshake.take() {
            self.indices.remove(&h.local_index);
        }
        self.event(Event::PeerChanged(id));
    }

    /// Roaming: follows an authenticated source address.
    fn set_endpoint(&mut self, id: PeerId, peer: &mut Peer, src: SocketAddr) {
        if peer.endpoint != Some(src) {
            peer.endpoint = Some(src);
            self.event(Event::PeerChanged(id));
        }
    }

    /// Queues a datagram to the peer's endpoint and counts it; counts a drop without endpoint.
    fn transmit(&mut self, id: PeerId, peer: &mut Peer, payload: Vec<u8>) {
        match peer.endpoint {
            Some(destination) => {
                peer.tx_bytes += payload.len() as u64;
                self.transmits.push_back(Transmit { peer: Some(id), destination, payload });
            }
            None => self.stats.count(DropReason::NoEndpoint),
        }
    }
}

/// A WireGuard interface without I/O.
pub struct Device {
    ctx: Ctx,
    peers: BTreeMap<PeerId, Peer>,
    by_key: HashMap<PublicKey, PeerId>,
    next_id: u64,
    /// Each peer's next timer deadline (see `schedule.rs`).
    schedule: schedule::Schedule,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("public_key", &self.public_key())
            .field("retiring_public_key", &self.retiring_public_key())
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device with an optional private key. `now` and `unix_now` are the same moment on the
    /// monotonic clock and as time since the UNIX epoch; `rng` must be cryptographically secure.
    pub fn new(private_key: Option<PrivateKey>, mut rng: Box<dyn CryptoRngCore + Send>, now: Instant, unix_now: Duration) -> Self {
        let jitter_state = rng.next_u64();
        let mut d = Self {
            ctx: Ctx {
                identity: None,
                retiring: None,
                rng,
                jitter_state,
                indices: HashMap::new(),
                clock: WallClock { base: now, unix: unix_now },
                mtu: DEFAULT_MTU,
                transmits: VecDeque::new(),
                stats: Stats::default(),
                load: LoadMonitor::default(),
                backlog: (0, DEFAULT_HANDSHAKE_QUEUE),
                ratelimiter: RateLimiter::default(),
                events: None,
            },
            peers: BTreeMap::new(),
            by_key: HashMap::new(),
            next_id: 0,
            schedule: schedule::Schedule::default(),
        };
        d.set_private_key(private_key);
        d
    }

    /// Our public key, if a private key is set.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.ctx.identity.as_ref().map(|(id, _)| *id.public_key())
    }

    /// The key peers use for mac1 of messages to us (for a cheap check before queueing).
    pub fn mac1_key(&self) -> Option<[u8; 32]> {
        self.ctx.identity.as_ref().map(|(id, _)| id.mac1_key)
    }

    /// Our primary static identity, to decrypt the first part of an initiation without holding
    /// whatever lock guards the device ([`crate::noise::begin_consume_initiation`], then
    /// [`Device::handle_initiation_stage1`]). While a retiring key is set, use
    /// [`Device::handshake_identity`] instead, which picks the identity a message is addressed to.
    pub fn identity(&self) -> Option<Arc<StaticIdentity>> {
        self.ctx.identity.as_ref().map(|(id, _)| Arc::clone(id))
    }

    /// Our private key, if set.
    pub fn private_key(&self) -> Option<&PrivateKey> {
        self.ctx.identity.as_ref().map(|(id, _)| id.private_key())
    }

    /// The retiring private key, if set (see [`Device::set_private_keys`]).
    pub fn retiring_private_key(&self) -> Option<&PrivateKey> {
        self.ctx.retiring.as_ref().map(|(id, _)| id.private_key())
    }

    /// The public key of the retiring identity, if set.
    pub fn retiring_public_key(&self) -> Option<PublicKey> {
        self.ctx.retiring.as_ref().map(|(id, _)| *id.public_key())
    }

    /// The key peers still configured with the retiring public key use for mac1 (for the cheap
    /// check before queueing, next to [`Device::mac1_key`]).
    pub fn retiring_mac1_key(&self) -> Option<[u8; 32]> {
        self.ctx.retiring.as_ref().map(|(id, _)| id.mac1_key)
    }

    /// The identity a handshake message (an initiation or a response, whole) is addressed to,
    /// told by its mac1: the primary one, or else the retiring one when its mac1 checks with
    /// that. For a multithreaded driver, after [`Device::precheck_handshake`] accepted the
    /// message: with no retiring key set this is the primary identity, without checking mac1
    /// again. `None` without a private key, or when mac1 matches neither identity.
    pub fn handshake_identity(&self, datagram: &[u8]) -> Option<Arc<StaticIdentity>> {
        let (primary, _) = self.ctx.identity.as_ref()?;
        let Some((retiring, _)) = self.ctx.retiring.as_ref() else { return Some(Arc::clone(primary)) };
        if crate::macs::verify_mac1(&primary.mac1_key, datagram) {
            Some(Arc::clone(primary))
        } else if crate::macs::verify_mac1(&retiring.mac1_key, datagram) {
            Some(Arc::clone(retiring))
        } else {
            None
        }
    }

    /// Sets or removes the private key, keeping the retiring key (unless it is the new private
    /// key, which then stops being a second identity): [`Device::set_private_keys`]. Without a
    /// retiring key, every session and pending handshake is destroyed, and a peer whose public
    /// key equals the new own public key is removed. Setting the same key again changes nothing.
    pub fn set_private_key(&mut self, key: Option<PrivateKey>) {
        let retiring = self.retiring_private_key().cloned();
        self.set_private_keys(key, retiring);
    }

    /// Sets or removes the retiring private key, keeping the primary one:
    /// [`Device::set_private_keys`].
    pub fn set_retiring_private_key(&mut self, key: Option<PrivateKey>) {
        let primary = self.private_key().cloned();
        self.set_private_keys(primary, key);
    }

    /// Sets both static identities: the primary private key and, during a key rotation's grace
    /// period, the retiring one (the previous key), which keeps accepting handshakes from peers
    /// still configured with its public key. A retiring key equal to the primary one is ignored;
    /// a retiring key without a primary one is kept but unused (the device answers nothing
    /// without a private key).
    ///
    /// Sessions and the pending handshake of a peer survive when the identity they were made with
    /// stays (as either key): rotating `(old, None)` to `(new, Some(old))` disturbs no session,
    /// and every peer keeps using the old identity until it initiates to the new one. Those of a
    /// peer whose identity is dropped (a changed private key without grace, or the end of the
    /// grace period) are destroyed and the peer falls back to the primary identity. A peer whose
    /// public key equals the new own public key is removed. Setting the same keys again changes
    /// nothing.
    pub fn set_private_keys(&mut self, primary: Option<PrivateKey>, retiring: Option<PrivateKey>) {
        let retiring = retiring.filter(|r| primary.as_ref() != Some(r));
        if primary.as_ref() == self.private_key() && retiring.as_ref() == self.retiring_private_key() {
            return;
        }
        let (old_primary, old_retiring) = (self.public_key(), self.retiring_public_key());
        // An identity that stays keeps its derived keys and cookie secret, whichever role it takes.
        let mut previous = [self.ctx.identity.take(), self.ctx.retiring.take()];
        let mut identity = |key: PrivateKey| {
            previous.iter_mut().find_map(|p| p.take_if(|(id, _)| *id.private_key() == key)).unwrap_or_else(|| {
                let id = StaticIdentity::new(key);
                let checker = CookieChecker::new(id.mac1_key, id.cookie_key);
                (Arc::new(id), checker)
            })
        };
        self.ctx.identity = primary.map(&mut identity);
        self.ctx.retiring = retiring.map(&mut identity);
        // Identities dropped now are zeroized here (or when a driver lets go of its `Arc`).
        drop(previous);
        let (new_primary, new_retiring) = (self.public_key(), self.retiring_public_key());
        if new_primary != old_primary {
            if let Some(own) = new_primary {
                if let Some(id) = self.by_key.get(&own).copied() {
                    let _ = self.remove_peer(id);
                }
            }
        }
        let is_ours = |key: &PublicKey| Some(*key) == new_primary || Some(*key) == new_retiring;
        for (id, peer) in self.peers.iter_mut() {
            let bound = match peer.identity {
                LocalIdentity::Primary => old_primary,
                LocalIdentity::Retiring => old_retiring,
            };
            peer.identity = match bound {
                Some(key) if Some(key) == new_primary => LocalIdentity::Primary,
                Some(key) if Some(key) == new_retiring => LocalIdentity::Retiring,
                _ => {
                    self.ctx.clear_sessions(*id, peer);
                    LocalIdentity::Primary
                }
            };
            peer.keys.retain_static_secrets(is_ours);
        }
        self.schedule.invalidate();
    }

    /// Sets the MTU that caps padding.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.ctx.mtu = mtu;
    }

    /// Tells the device how full the driver's queue of handshake messages is; from 1/8 of the
    /// capacity on (and for a second after), the device is under load and answers handshake
    /// messages that lack a valid mac2 with cookie replies.
    pub fn set_handshake_backlog(&mut self, len: usize, capacity: usize) {
        self.ctx.backlog = (len, capacity);
    }

    /// Adds a peer.
    pub fn add_peer(&mut self, config: PeerConfig) -> Result<PeerId, ConfigError> {
        if self.by_key.contains_key(&config.public_key) {
            return Err(ConfigError::DuplicatePeer);
        }
        if Some(config.public_key) == self.public_key() {
            return Err(ConfigError::OwnPublicKey);
        }
        // The static-static DH waits for the first handshake (see `PeerKeys::new_lazy`).
        let keys = PeerKeys::new_lazy(config.public_key, config.preshared_key.clone());
        let id = PeerId(self.next_id);
        self.next_id += 1;
        self.peers.insert(id, Peer::new(keys, &config));
        self.by_key.insert(config.public_key, id);
        Ok(id)
    }

    /// Removes a peer, destroying its sessions and releasing its indices.
    pub fn remove_peer(&mut self, id: PeerId) -> Result<(), ConfigError> {
        let mut peer = self.peers.remove(&id).ok_or(ConfigError::NoSuchPeer)?;
        self.by_key.remove(&peer.keys.remote_static);
        self.schedule.remove(id);
        self.ctx.clear_sessions(id, &mut peer);
        self.ctx.event(Event::PeerRemoved(id));
        Ok(())
    }

    /// Removes every peer.
    pub fn clear_peers(&mut self) {
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            let _ = self.remove_peer(id);
        }
    }

    /// The peer with this public key.
    pub fn peer_id(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// Ids of all peers, in creation order.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// A peer, for inspection.
    pub fn peer(&self, id: PeerId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    /// A snapshot of a peer.
    pub fn peer_info(&self, id: PeerId, now: Instant) -> Option<PeerInfo> {
        self.peers.get(&id).map(|p| p.info(now))
    }

    /// Changes a peer's pre-shared key (takes effect from the next handshake).
    pub fn set_preshared_key(&mut self, id: PeerId, psk: PresharedKey) -> Result<(), ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(ConfigError::NoSuchPeer)?;
        peer.keys.psk = psk;
        self.reschedule(id);
        Ok(())
    }

    /// Sets a peer's endpoint.
    pub fn set_endpoint(&mut self, id: PeerId, endpoint: SocketAddr) -> Result<(), ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(ConfigError::NoSuchPeer)?;
        self.ctx.set_endpoint(id, peer, endpoint);
        self.reschedule(id);
        Ok(())
    }

    /// Sets a peer's persistent keepalive interval; turning it on sends a keepalive at once (which
    /// starts a handshake when there is no session), as the other implementations do.
    pub fn set_persistent_keepalive(&mut self, now: Instant, id: PeerId, seconds: u16) -> Result<(), ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(ConfigError::NoSuchPeer)?;
        let was = std::mem::replace(&mut peer.persistent_keepalive, seconds);
        if seconds == 0 {
            peer.timers.disable_persistent_keepalive();
        } else if was != seconds {
            send::send_keepalive(&mut self.ctx, id, peer, now);
        }
        self.reschedule(id);
        Ok(())
    }

    /// Drop counters.
    pub fn stats(&self) -> &Stats {
        &self.ctx.stats
    }

    /// Number of receiver indices in use (handshakes and sessions).
    pub fn indices_in_use(&self) -> usize {
        self.ctx.indices.len()
    }

    /// Starts recording [`Event`]s for [`Device::poll_event`]; a driver that mirrors sessions in
    /// its own tables must drain them after every call (they are not recorded otherwise).
    pub fn enable_events(&mut self) {
        self.ctx.events.get_or_insert_with(VecDeque::new);
    }

    /// The next recorded event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.ctx.events.as_mut()?.pop_front()
    }

    /// The peer's current session and endpoint, whatever their state (the data plane checks
    /// [`Session::can_send`] per packet).
    pub fn current_sending(&self, id: PeerId) -> Option<(Arc<Session>, SocketAddr)> {
        let peer = self.peers.get(&id)?;
        Some((Arc::clone(peer.keypairs.current.as_ref()?), peer.endpoint?))
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ctx.transmits.pop_front()
    }

    /// The earliest timer deadline of any peer. Costs nothing per idle peer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.earliest()
    }

    /// Fires every timer due at `now`. Visits only the peers with a timer due, plus, once a
    /// second, every peer's deadline as a safety net (see `schedule.rs`).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.schedule.full_scan_due(now) {
            for (id, peer) in &self.peers {
                self.schedule.update(*id, peer.timers.next_deadline());
            }
        }
        while let Some(id) = self.schedule.pop_due(now) {
            let Some(peer) = self.peers.get_mut(&id) else { continue };
            for ev in peer.timers.take_expired(now) {
                send::on_timer(&mut self.ctx, id, peer, now, ev);
            }
            self.reschedule(id);
        }
    }

    /// Records a peer's next deadline after an operation that may have armed or disarmed its
    /// timers.
    fn reschedule(&mut self, id: PeerId) {
        if let Some(peer) = self.peers.get(&id) {
            self.schedule.update(id, peer.timers.next_deadline());
        }
    }

    /// The TAI64N timestamp the device would put in an initiation at `now`.
    pub fn timestamp(&self, now: Instant) -> Tai64N {
        Tai64N::from_unix(self.ctx.clock.unix(now))
    }
}
