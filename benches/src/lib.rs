//! Shared setup for the criterion benchmarks of `vpn` (`benches/benches/*.rs`).
//!
//! The benchmarks measure the real code paths of the sans-IO core:
//!
//! - `crypto`: [`Session::seal`] / [`Session::open`] (header, padding, tag, replay window), the raw
//!   [`vpn_crypto::aead::AeadKey`], RustCrypto's `chacha20poly1305` as a same-run reference, and
//!   the BLAKE2s MAC;
//! - `handshake`: complete handshakes between two [`Device`]s in memory, the responder's share
//!   alone, and the rejection of an initiation with a wrong mac1;
//! - `replay`: [`vpn_tunnel::replay::ReplayWindow`].
//!
//! Everything is deterministic: keys and the devices' randomness come from seeded ChaCha20 RNGs,
//! and the devices run on a [`VirtualClock`] (one real `Instant` taken at construction, then
//! advanced by hand), so rate limits on initiations never get in the way of a tight loop.
//!
//! See `docs/performance.md` for the figures and how to reproduce them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use vpn_crypto::{PrivateKey, PublicKey};
use vpn_tunnel::constants::REKEY_TIMEOUT;
use vpn_tunnel::noise::SessionKeys;
use vpn_tunnel::wire::{padded_len, DATA_HEADER_LEN, DATA_OVERHEAD, INITIATION_LEN};
use vpn_tunnel::{Device, PeerConfig, PeerId, Received, Session, DEFAULT_MTU};

/// Inner packet sizes of the data-path benchmarks: a small packet, a full packet at the default
/// tunnel MTU, and a jumbo packet.
pub const PAYLOAD_SIZES: [usize; 3] = [64, 1420, 9000];

/// Data messages sealed ahead of the timed loop of an open benchmark, per batch (see
/// [`time_in_batches`]): enough to make the cost of reading the clock negligible even for
/// 64-byte packets, small enough to stay in the cache hierarchy for 9000-byte ones.
pub const OPEN_BATCH: usize = 256;

/// A ChaCha20 RNG seeded with `seed`, for keys and for the devices' randomness.
pub fn seeded_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The MTU used to seal an inner packet of `len` bytes: the default tunnel MTU, raised to `len`
/// for jumbo packets so that padding never needs more than the packet itself allows.
pub fn mtu_for(len: usize) -> usize {
    len.max(DEFAULT_MTU)
}

/// A buffer for sealing an inner packet of `len` bytes in place with [`Session::seal`]: room for
/// the header, the padding (with the MTU of [`mtu_for`]) and the tag, with a non-zero pattern as
/// the packet at `[16..16 + len]`.
pub fn data_buffer(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; DATA_OVERHEAD + padded_len(len, mtu_for(len))];
    for (i, b) in buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len].iter_mut().enumerate() {
        *b = i as u8 ^ 0x5a;
    }
    buf
}

/// Two ends of one session, `(sender, receiver)`, with random transport keys from `seed`: what
/// sender seals, receiver opens. Both were created at `now`.
pub fn session_pair(seed: u64, now: Instant) -> (Session, Session) {
    let mut rng = seeded_rng(seed);
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    rng.fill_bytes(&mut a);
    rng.fill_bytes(&mut b);
    let (ia, ib) = (rng.next_u32(), rng.next_u32());
    let keys = |send: [u8; 32], recv: [u8; 32], local_index, remote_index, initiator| SessionKeys {
        send: send.into(),
        recv: recv.into(),
        local_index,
        remote_index,
        initiator,
    };
    (Session::new(keys(a, b, ia, ib, true), now), Session::new(keys(b, a, ib, ia, false), now))
}

/// Runs `run` on `iters` items and returns the time spent in `run` only, for criterion's
/// `iter_custom`.
///
/// The items are prepared by `prepare`, untimed, in batches of `items.len()`: `prepare` receives
/// the (possibly partial, for the last batch) slice to refill, then `run` is timed over each item
/// of it in order. This is how an open benchmark gets a fresh ciphertext with a new counter for
/// every call (so each one decrypts and passes the replay window, as on the real data path)
/// without counting the sealing.
pub fn time_in_batches<T>(iters: u64, items: &mut [T], mut prepare: impl FnMut(&mut [T]), mut run: impl FnMut(&mut T)) -> Duration {
    assert!(!items.is_empty(), "time_in_batches needs at least one item");
    let mut left = iters;
    let mut total = Duration::ZERO;
    while left > 0 {
        let n = left.min(items.len() as u64) as usize;
        let batch = &mut items[..n];
        prepare(batch);
        let start = Instant::now();
        for item in batch.iter_mut() {
            run(item);
        }
        total += start.elapsed();
        left -= n as u64;
    }
    total
}

/// A monotonic clock advanced by hand. It starts at a real `Instant`, because the protocol core
/// takes `std::time::Instant`s, and moves only when told to.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    now: Instant,
}

impl VirtualClock {
    /// A clock starting at the current real time.
    pub fn start() -> Self {
        Self { now: Instant::now() }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward by `by` and returns the new time.
    pub fn advance(&mut self, by: Duration) -> Instant {
        self.now += by;
        self.now
    }
}

/// Virtual time between two handshakes of a [`DevicePair`]: just over REKEY_TIMEOUT, the
/// initiator's minimum interval between initiations. It also keeps every TAI64N timestamp greater
/// than the previous one (they are rounded down to 2^24 ns) and stays clear of the responder's
/// 20 ms flood limit.
pub const HANDSHAKE_SPACING: Duration = Duration::from_millis(REKEY_TIMEOUT.as_millis() as u64 + 1_000);

/// Accepts every inner source address (the allowed-IPs check is not what is being measured).
pub fn allow_all(_: PeerId, _: IpAddr) -> bool {
    true
}

/// Two [`Device`]s that know each other as peers, joined by an in-memory "network": `initiator`
/// at 192.0.2.1:51820 and `responder` at 192.0.2.2:51820, without pre-shared key.
pub struct DevicePair {
    /// The device that starts every handshake.
    pub initiator: Device,
    /// The device that answers.
    pub responder: Device,
    /// The responder as a peer of the initiator.
    pub responder_id: PeerId,
    /// The initiator as a peer of the responder.
    pub initiator_id: PeerId,
    /// The initiator's UDP address.
    pub initiator_addr: SocketAddr,
    /// The responder's UDP address.
    pub responder_addr: SocketAddr,
    /// The time both devices run on.
    pub clock: VirtualClock,
}

impl std::fmt::Debug for DevicePair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevicePair").field("initiator", &self.initiator).field("responder", &self.responder).finish_non_exhaustive()
    }
}

impl DevicePair {
    /// Builds the pair; static keys and each device's RNG derive from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut keys = seeded_rng(seed);
        let key_i = PrivateKey::generate(&mut keys);
        let key_r = PrivateKey::generate(&mut keys);
        let (pub_i, pub_r): (PublicKey, PublicKey) = (key_i.public_key(), key_r.public_key());
        let clock = VirtualClock::start();
        // A fixed wall-clock offset (2027-01-15) so timestamps do not depend on the system clock.
        let unix = Duration::from_secs(1_800_000_000);
        let initiator_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 51820);
        let responder_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 51820);

        let mut initiator = Device::new(Some(key_i), Box::new(seeded_rng(seed.wrapping_add(1))), clock.now(), unix);
        let mut responder = Device::new(Some(key_r), Box::new(seeded_rng(seed.wrapping_add(2))), clock.now(), unix);
        let mut config = PeerConfig::new(pub_r);
        config.endpoint = Some(responder_addr);
        let responder_id = initiator.add_peer(config).expect("add the responder as a peer");
        let mut config = PeerConfig::new(pub_i);
        config.endpoint = Some(initiator_addr);
        let initiator_id = responder.add_peer(config).expect("add the initiator as a peer");
        Self { initiator, responder, responder_id, initiator_id, initiator_addr, responder_addr, clock }
    }

    /// Advances the clock by [`HANDSHAKE_SPACING`] and has the initiator produce an initiation;
    /// returns the time and the 148-byte message.
    ///
    /// # Panics
    /// If the initiator sends nothing or something else than an initiation.
    pub fn next_initiation(&mut self) -> (Instant, Vec<u8>) {
        let now = self.clock.advance(HANDSHAKE_SPACING);
        self.initiator.initiate_handshake(now, self.responder_id).expect("the responder is a peer");
        let t = self.initiator.poll_transmit().expect("an initiation was queued");
        assert_eq!(t.payload.len(), INITIATION_LEN, "expected an initiation");
        (now, t.payload)
    }

    /// The responder's share of a handshake: consumes `initiation` at `now` and takes the
    /// response it queued, which is returned.
    ///
    /// # Panics
    /// If the initiation is refused or no response was queued.
    pub fn respond(&mut self, now: Instant, initiation: &mut [u8]) -> Vec<u8> {
        let r = self.responder.handle_datagram(now, self.initiator_addr, initiation, &allow_all);
        assert_eq!(r, Ok(Received::Initiation(self.initiator_id)), "initiation refused");
        self.responder.poll_transmit().expect("a response was queued").payload
    }

    /// One complete handshake: initiation, response, and the initiator's first keepalive, which
    /// confirms the new session on the responder's side.
    ///
    /// # Panics
    /// If any step fails.
    pub fn handshake(&mut self) {
        let (now, mut initiation) = self.next_initiation();
        let mut response = self.respond(now, &mut initiation);
        let r = self.initiator.handle_datagram(now, self.responder_addr, &mut response, &allow_all);
        assert_eq!(r, Ok(Received::Response(self.responder_id)), "response refused");
        let mut keepalive = self.initiator.poll_transmit().expect("a keepalive was queued").payload;
        let r = self.responder.handle_datagram(now, self.initiator_addr, &mut keepalive, &allow_all);
        assert_eq!(r, Ok(Received::Keepalive(self.initiator_id)), "keepalive refused");
    }
}
