//! The engine: moves packets between a TUN device and UDP sockets through the sans-IO
//! [`vpn_tunnel::Device`].
//!
//! # Threads
//!
//! - one TUN reader: read a batch, route by destination, seal, send with UDP GSO
//!   (`outbound.rs`);
//! - one UDP reader per bound socket: receive a batch (UDP GRO), open data messages, check the
//!   inner source, write to TUN coalesced (GRO); handshake messages with a valid mac1 go to the
//!   handshake queue, cookie replies to a queue of their own (`inbound.rs`, `queues.rs`);
//! - a crypto pool that the two kinds of reader hand chunks of long batches to, waiting for them
//!   before sending, so packets keep their order (`pool.rs`);
//! - one handshake thread: consumes queued handshake messages, so X25519 work never runs on a
//!   reader thread; the first Diffie-Hellman of an initiation runs without the device lock;
//! - one timer thread: fires protocol timers.
//!
//! # Shared state, and who may touch it
//!
//! - `device: Mutex<Device>`: protocol state (handshakes, timers, counters). Readers take it
//!   briefly to report what they sealed or opened; crypto runs outside it on the shared
//!   `Arc<Session>`. Whoever holds it drains the device's events into the two maps below before
//!   releasing it (`Shared::sync`), so they never lag behind the device.
//! - `sessions: DashMap<u32, (PeerId, Arc<Session>)>` (receiver index → session) and
//!   `sending: DashMap<PeerId, (Arc<Session>, SocketAddr)>` (current session and endpoint per
//!   peer): written at handshake and roaming rate, read by the packet path without the device
//!   lock.
//! - `table: ArcSwap<Table>`: the allowed-IPs trie and the mac1 keys, an immutable snapshot
//!   replaced as a whole on every configuration change; the packet path reads it without locking.
//! - `sockets: ArcSwap<Sockets>`: the bound sockets; replaced when the port changes (readers of the
//!   old generation exit).
//! - `config: Mutex<InterfaceConfig>`: the desired configuration; taken only by [`Engine::apply`],
//!   [`Engine::status`] and the settling of a key rotation's address takeover (`takeover.rs`),
//!   always before `device` (lock order: config, then device).

mod inbound;
mod outbound;
mod pool;
mod queues;
mod takeover;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use rand_core::OsRng;
use vpn_crypto::PublicKey;
use vpn_tunnel::{Device, DropReason, Event, PeerConfig, PeerId, Session, Transmit};

use crate::allowed_ips::AllowedIps;
use crate::config::{InterfaceConfig, InterfaceStatus, PeerStatus};
use crate::io::{Network, TunIo, UdpIo};
use pool::CryptoPool;

pub use queues::{COOKIE_QUEUE, HANDSHAKE_QUEUE};
/// How long a reader blocks before it checks for shutdown.
pub(crate) const POLL: Duration = Duration::from_millis(200);
/// Longest sleep of the timer thread; timers fire at most this late.
const TIMER_TICK: Duration = Duration::from_millis(20);

/// How often the timer thread asks the TUN device for its MTU (it can change at run time).
const MTU_REFRESH: Duration = Duration::from_secs(1);

/// How often the timer thread logs what was dropped since the last time (only when something
/// was): the counters' only outlet for a bare daemon, whose UAPI has no field for them.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Tuning of a new engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Threads that seal and open long batches next to the reader threads; `Some(0)` keeps all
    /// crypto on the readers. `None` picks: none on one or two CPUs (measured: on 2 vCPUs a
    /// pool thread costs ~10 % of single-stream throughput, since the readers and the kernel
    /// already keep both busy), otherwise two fewer than the CPUs (the two readers), at most 8.
    pub crypto_threads: Option<usize>,
}

impl EngineOptions {
    fn crypto_threads(&self) -> usize {
        self.crypto_threads.unwrap_or_else(|| match std::thread::available_parallelism().map_or(1, |n| n.get()) {
            0..=2 => 0,
            n => (n - 2).min(8),
        })
    }
}

/// Why a configuration was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The listen port is taken.
    #[error("listen port {0} is already in use")]
    AddrInUse(u16),
    /// Binding or marking the sockets failed otherwise.
    #[error("cannot set up the UDP sockets: {0}")]
    Socket(io::Error),
}

/// Why the engine stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// [`Engine::shutdown`] was called.
    Shutdown,
    /// Reading the TUN device failed: the interface was removed.
    TunGone(String),
}

/// The immutable routing snapshot read by the packet path.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) routes: AllowedIps<PeerId>,
    pub(crate) mac1_key: Option<[u8; 32]>,
    /// The mac1 key of the retiring identity during a key rotation.
    pub(crate) retiring_mac1_key: Option<[u8; 32]>,
    /// Peers that take over another key's allowed IPs at their first session, with their keys.
    pub(crate) successors: HashMap<PeerId, PublicKey>,
}

impl Table {
    /// The snapshot for `config`, with the peer ids of `device`.
    fn build(config: &InterfaceConfig, device: &Device) -> Table {
        let mut routes = AllowedIps::new();
        let mut successors = HashMap::new();
        for p in &config.peers {
            if let Some(id) = device.peer_id(&p.public_key) {
                for prefix in &p.allowed_ips {
                    routes.insert(*prefix, id);
                }
                if p.takes_over.is_some() {
                    successors.insert(id, p.public_key);
                }
            }
        }
        Table { routes, mac1_key: device.mac1_key(), retiring_mac1_key: device.retiring_mac1_key(), successors }
    }
}

pub(crate) struct Sockets {
    pub(crate) port: u16,
    pub(crate) fwmark: u32,
    pub(crate) list: Vec<Arc<dyn UdpIo>>,
    pub(crate) generation: u64,
}

pub(crate) struct Shared {
    pub(crate) tun: Arc<dyn TunIo>,
    net: Arc<dyn Network>,
    pub(crate) device: Mutex<Device>,
    pub(crate) sessions: DashMap<u32, (PeerId, Arc<Session>)>,
    pub(crate) sending: DashMap<PeerId, (Arc<Session>, SocketAddr)>,
    config: Mutex<InterfaceConfig>,
    pub(crate) table: ArcSwap<Table>,
    pub(crate) sockets: ArcSwap<Sockets>,
    pub(crate) handshakes: queues::HandshakeQueues,
    running: AtomicBool,
    stopped: (Mutex<Option<StopReason>>, Condvar),
    pub(crate) crypto: CryptoPool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    takeovers: takeover::Takeovers,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Shared {
    pub(crate) fn running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// Sends datagrams the device queued, each on the socket of its address family; bytes that
    /// could not be sent are taken back out of the peer's counter.
    /// First settles a key rotation's address takeover if one is pending, so that a handshake's
    /// answer never leaves before the routes its session needs (see `takeover.rs`).
    pub(crate) fn send_all(&self, transmits: Vec<Transmit>) {
        if self.takeovers.pending() {
            self.settle_takeovers();
        }
        if transmits.is_empty() {
            return;
        }
        let sockets = self.sockets.load();
        let mut failed = Vec::new();
        let mut refused = 0;
        for t in transmits {
            if !self.send_to(&sockets, &t.payload, t.destination) {
                refused += 1;
                if let Some(peer) = t.peer {
                    failed.push((peer, t.payload.len() as u64));
                }
            }
        }
        if refused > 0 {
            let mut device = lock(&self.device);
            device.count_drops(DropReason::SendFailed, refused);
            for (peer, bytes) in failed {
                device.note_send_failed(peer, bytes);
            }
        }
    }

    /// Sends one datagram; false when it did not leave (no socket for the family, or an error).
    pub(crate) fn send_to(&self, sockets: &Sockets, payload: &[u8], destination: SocketAddr) -> bool {
        match sockets.list.iter().find(|s| s.serves(&destination)) {
            Some(s) => match s.send(payload, destination) {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(%destination, error = %e, "send failed");
                    false
                }
            },
            None => false,
        }
    }

    /// Mirrors the device's session changes into the lock-free maps and takes its queued
    /// datagrams (call with the lock held; send them after releasing it).
    pub(crate) fn sync(&self, device: &mut Device) -> Vec<Transmit> {
        while let Some(e) = device.poll_event() {
            match e {
                Event::SessionAdded { peer, session } => {
                    self.sessions.insert(session.local_index, (peer, session));
                    if let Some(key) = self.table.load().successors.get(&peer) {
                        self.takeovers.note(*key);
                    }
                }
                Event::SessionRemoved { local_index } => {
                    self.sessions.remove(&local_index);
                }
                Event::PeerChanged(peer) => match device.current_sending(peer) {
                    Some(s) => {
                        self.sending.insert(peer, s);
                    }
                    None => {
                        self.sending.remove(&peer);
                    }
                },
                Event::PeerRemoved(peer) => {
                    self.sending.remove(&peer);
                }
                _ => {}
            }
        }
        std::iter::from_fn(|| device.poll_transmit()).collect()
    }

    /// Applies the address takeovers asked for to the configuration and publishes the routes
    /// (lock order: configuration, then device). Returns once every takeover asked for before
    /// the call is in the published table, by this thread or another.
    fn settle_takeovers(&self) {
        let mut config = lock(&self.config);
        let n = self.takeovers.requested();
        if self.takeovers.apply_to(&mut config, &[]) {
            let device = lock(&self.device);
            self.table.store(Arc::new(Table::build(&config, &device)));
            tracing::info!("a rotated key's first handshake: its device's addresses moved to it");
        }
        self.takeovers.settled(n);
    }

    fn stop(&self, reason: StopReason) {
        self.running.store(false, Ordering::SeqCst);
        let mut r = lock(&self.stopped.0);
        if r.is_none() {
            *r = Some(reason);
        }
        self.stopped.1.notify_all();
    }

    fn spawn(self: &Arc<Self>, name: &str, f: impl FnOnce(Arc<Shared>) + Send + 'static) {
        // Nothing new once shutdown has begun (a reader started now would outlive the join).
        if !self.running() {
            return;
        }
        let me = Arc::clone(self);
        let handle = std::thread::Builder::new().name(name.to_string()).spawn(move || f(me));
        match handle {
            Ok(h) => lock(&self.threads).push(h),
            Err(e) => self.stop(StopReason::TunGone(format!("cannot start thread {name}: {e}"))),
        }
    }

    fn spawn_socket_readers(self: &Arc<Self>, sockets: &Sockets) {
        for (i, s) in sockets.list.iter().enumerate() {
            let (s, generation) = (Arc::clone(s), sockets.generation);
            self.spawn(&format!("udp-rx-{i}"), move |me| inbound::socket_reader(me, s, generation));
        }
    }
}

/// A running interface.
pub struct Engine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("running", &self.shared.running()).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts an engine on `tun`, binding a random UDP port on `net`, with no key and no peer.
    pub fn start(tun: Arc<dyn TunIo>, net: Arc<dyn Network>) -> io::Result<Engine> {
        Self::start_with(tun, net, EngineOptions::default())
    }

    /// [`Engine::start`] with explicit tuning.
    pub fn start_with(tun: Arc<dyn TunIo>, net: Arc<dyn Network>, options: EngineOptions) -> io::Result<Engine> {
        let bound = net.bind(0, 0)?;
        let mtu = tun.mtu();
        let mut device = Device::new(None, Box::new(OsRng), Instant::now(), unix_now());
        device.set_mtu(outbound::padding_mtu(mtu));
        device.enable_events();
        let shared = Arc::new(Shared {
            tun,
            net,
            device: Mutex::new(device),
            sessions: DashMap::new(),
            sending: DashMap::new(),
            config: Mutex::new(InterfaceConfig::default()),
            table: ArcSwap::from_pointee(Table::default()),
            sockets: ArcSwap::from_pointee(Sockets { port: bound.port, fwmark: 0, list: bound.sockets, generation: 0 }),
            handshakes: queues::HandshakeQueues::new(),
            running: AtomicBool::new(true),
            stopped: (Mutex::new(None), Condvar::new()),
            crypto: CryptoPool::new(options.crypto_threads()),
            threads: Mutex::new(Vec::new()),
            takeovers: takeover::Takeovers::default(),
        });
        shared.spawn("tun-rx", outbound::tun_reader);
        shared.spawn_socket_readers(&shared.sockets.load());
        shared.spawn("handshake", inbound::handshake_worker);
        shared.spawn("timers", timer_loop);
        Ok(Engine { shared })
    }

    /// The desired configuration in force.
    pub fn config(&self) -> InterfaceConfig {
        lock(&self.shared.config).clone()
    }

    /// Applies a whole new configuration: either all of it or, on error, nothing. Sessions of peers
    /// that stay are not disturbed.
    pub fn apply(&self, new: InterfaceConfig) -> Result<(), ApplyError> {
        self.apply_recreating(new, &[])
    }

    /// [`Engine::apply`], where the peers in `recreated` start afresh (sessions, endpoint,
    /// counters), as after `replace_peers` or a remove and re-add in one request.
    pub fn apply_recreating(&self, new: InterfaceConfig, recreated: &[PublicKey]) -> Result<(), ApplyError> {
        let sh = &self.shared;
        let mut config = lock(&sh.config);
        // Fallible steps first, so a failure leaves everything as it was.
        let current = sh.sockets.load_full();
        let rebind = new.listen_port != 0 && new.listen_port != current.port || new.listen_port == 0 && config.listen_port != 0;
        let new_sockets = if rebind {
            let b = sh.net.bind(new.listen_port, new.fwmark).map_err(|e| match e.kind() {
                io::ErrorKind::AddrInUse => ApplyError::AddrInUse(new.listen_port),
                _ => ApplyError::Socket(e),
            })?;
            Some(Sockets { port: b.port, fwmark: new.fwmark, list: b.sockets, generation: current.generation + 1 })
        } else if new.fwmark != current.fwmark {
            for (i, sock) in current.list.iter().enumerate() {
                if let Err(e) = sock.set_mark(new.fwmark) {
                    for done in &current.list[..i] {
                        let _ = done.set_mark(current.fwmark);
                    }
                    return Err(ApplyError::Socket(e));
                }
            }
            Some(Sockets { port: current.port, fwmark: new.fwmark, list: current.list.clone(), generation: current.generation })
        } else {
            None
        };

        let mut new = new;
        self.shared.takeovers.apply_to(&mut new, recreated);
        let recreated: std::collections::HashSet<&PublicKey> = recreated.iter().collect();
        // Indexed by key, so that reconciling n peers is O(n) (a server manager syncs thousands).
        let old_peers: std::collections::HashMap<&PublicKey, &crate::PeerSettings> =
            config.peers.iter().map(|p| (&p.public_key, p)).collect();
        let new_keys: std::collections::HashSet<&PublicKey> = new.peers.iter().map(|p| &p.public_key).collect();
        let now = Instant::now();
        let mut device = lock(&sh.device);
        // Both identities at once, so a rotation (old key becoming the retiring one) keeps sessions.
        device.set_private_keys(new.private_key.clone(), new.retiring_private_key.clone());
        // Peers gone from the configuration, or re-created.
        for old in &config.peers {
            if !new_keys.contains(&old.public_key) || recreated.contains(&old.public_key) {
                if let Some(id) = device.peer_id(&old.public_key) {
                    let _ = device.remove_peer(id);
                }
            }
        }
        // New and changed peers.
        for p in &new.peers {
            let id = match device.peer_id(&p.public_key) {
                Some(id) => id,
                None => {
                    let mut pc = PeerConfig::new(p.public_key);
                    pc.preshared_key = p.preshared_key.clone();
                    pc.endpoint = p.endpoint;
                    match device.add_peer(pc) {
                        Ok(id) => id,
                        Err(_) => continue, // our own key: ignored, as wg does
                    }
                }
            };
            let old = old_peers.get(&p.public_key).copied().filter(|_| !recreated.contains(&p.public_key));
            if old.is_some_and(|o| o.preshared_key != p.preshared_key) {
                let _ = device.set_preshared_key(id, p.preshared_key.clone());
            }
            if let Some(ep) = p.endpoint {
                if old.is_some_and(|o| o.endpoint != p.endpoint) {
                    let _ = device.set_endpoint(id, ep);
                }
            }
            if old.map_or(0, |o| o.persistent_keepalive) != p.persistent_keepalive {
                let _ = device.set_persistent_keepalive(now, id, p.persistent_keepalive);
            }
        }
        sh.table.store(Arc::new(Table::build(&new, &device)));
        let transmits = sh.sync(&mut device);
        drop(device);
        drop((old_peers, new_keys));
        if let Some(s) = new_sockets {
            let fresh = s.generation != current.generation;
            sh.sockets.store(Arc::new(s));
            if fresh {
                sh.spawn_socket_readers(&sh.sockets.load());
            }
        }
        *config = new;
        drop(config);
        sh.send_all(transmits);
        Ok(())
    }

    /// The live state: configuration plus counters, endpoints and handshake times.
    pub fn status(&self) -> InterfaceStatus {
        let sh = &self.shared;
        let config = lock(&sh.config);
        let device = lock(&sh.device);
        let now = Instant::now();
        let peers = config
            .peers
            .iter()
            .filter_map(|p| {
                let id = device.peer_id(&p.public_key)?;
                let info = device.peer_info(id, now)?;
                Some(PeerStatus {
                    public_key: p.public_key,
                    preshared_key: p.preshared_key.clone(),
                    endpoint: info.endpoint,
                    last_handshake: info.last_handshake,
                    rx_bytes: info.rx_bytes,
                    tx_bytes: info.tx_bytes,
                    persistent_keepalive: p.persistent_keepalive,
                    allowed_ips: p.allowed_ips.clone(),
                })
            })
            .collect();
        InterfaceStatus { private_key: config.private_key.clone(), listen_port: sh.sockets.load().port, fwmark: config.fwmark, peers }
    }

    /// Drop counters of the protocol core, by name.
    pub fn drop_counters(&self) -> Vec<(&'static str, u64)> {
        lock(&self.shared.device).stats().nonzero().collect()
    }

    /// Threads in the crypto pool.
    pub fn crypto_threads(&self) -> usize {
        self.shared.crypto.workers()
    }

    /// The UDP port in use.
    pub fn listen_port(&self) -> u16 {
        self.shared.sockets.load().port
    }

    /// Whether the engine still runs.
    pub fn is_running(&self) -> bool {
        self.shared.running()
    }

    /// Blocks until the engine stops (or `timeout` passes) and tells why it stopped.
    pub fn wait(&self, timeout: Duration) -> Option<StopReason> {
        let guard = lock(&self.shared.stopped.0);
        let (guard, _) = self.shared.stopped.1.wait_timeout_while(guard, timeout, |r| r.is_none()).unwrap_or_else(|e| e.into_inner());
        guard.clone()
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(&self) {
        self.shared.stop(StopReason::Shutdown);
        let threads: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.shared.threads));
        for t in threads {
            let _ = t.join();
        }
        self.shared.crypto.shutdown();
        // Destroy keys now rather than when the last reference goes.
        let mut device = lock(&self.shared.device);
        device.clear_peers();
        device.set_private_keys(None, None);
        let _ = self.shared.sync(&mut device);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Fires protocol timers and sends what they produce; asks the TUN device for its MTU every
/// [`MTU_REFRESH`] and keeps the protocol device's (the padding of what it sends) in step; logs
/// what was dropped every [`DROP_LOG_INTERVAL`] when something was.
fn timer_loop(sh: Arc<Shared>) {
    let mut mtu = sh.tun.mtu();
    outbound::warn_if_mtu_too_large(mtu);
    let mut refreshed = Instant::now();
    let (mut logged, mut logged_stats) = (Instant::now(), vpn_tunnel::Stats::default());
    while sh.running() {
        let now = Instant::now();
        if now.duration_since(refreshed) >= MTU_REFRESH {
            sh.tun.refresh_mtu();
            refreshed = now;
        }
        let (transmits, next) = {
            let mut device = lock(&sh.device);
            if now.duration_since(logged) >= DROP_LOG_INTERVAL {
                if let Some(summary) = device.stats().summary_since(&logged_stats) {
                    tracing::info!("dropped in the last {} s: {summary}", DROP_LOG_INTERVAL.as_secs());
                }
                logged_stats = device.stats().clone();
                logged = now;
            }
            // The reader may have noticed a new MTU too.
            let live = sh.tun.mtu();
            if live != mtu {
                mtu = live;
                device.set_mtu(outbound::padding_mtu(mtu));
                outbound::warn_if_mtu_too_large(mtu);
            }
            device.handle_timeout(now);
            (sh.sync(&mut device), device.poll_timeout())
        };
        sh.send_all(transmits);
        let sleep = next.map_or(TIMER_TICK, |t| t.saturating_duration_since(Instant::now()).min(TIMER_TICK));
        std::thread::sleep(sleep.max(Duration::from_millis(1)));
    }
}

/// Whether `ip` routes to `peer` in the snapshot.
pub(crate) fn routes_to(table: &Table, ip: IpAddr, peer: PeerId) -> bool {
    table.routes.lookup(ip) == Some(peer)
}
