//! `vpn up` and `vpn down`: the server. `up` loads (or, on first run, creates) the configuration
//! and the store, brings the interface up with the in-process data plane (TUN, addresses, MTU,
//! forwarding, nftables), loads every active device as a peer, serves the UAPI (`wg show`) and
//! the management socket the CLI uses for live changes, and runs in the foreground until SIGTERM
//! or SIGINT (SIGHUP reloads). `down` asks a running server to stop, and removes what a killed
//! one left behind.

pub(crate) mod mgmt;
pub(crate) mod peers;
pub(crate) mod rotation;
pub(crate) mod setup;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand_core::OsRng;
use vpn_control::netconf;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, SqliteStore, Store};
use vpn_control::uapi::{Shutdown, UapiServer};
use vpn_crypto::PrivateKey;
use vpn_dataplane::tun::Tun;
use vpn_dataplane::udp::{SystemNetwork, UdpOptions};
use vpn_dataplane::{Engine, EngineOptions};

use crate::daemon::{init_logging, EngineBackend, Tuning};
use crate::manage::{require_root, unix_now};
use mgmt::{MgmtServer, PeerLive, Reply, Request};

/// How often expiry dates are enforced without any change.
const EXPIRY_CHECK: Duration = Duration::from_secs(30);
/// How often a server with device rotations under way looks for clients using their new keys.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
/// How often the rotation policy is applied.
const POLICY_CHECK: Duration = Duration::from_secs(3600);

/// What the server shares with its management thread.
struct Server {
    config: Mutex<ServerConfig>,
    store: Mutex<SqliteStore>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
    /// Set by a sync request: the store changed, so rotation upkeep runs at once.
    changed: AtomicBool,
}

impl Server {
    /// Re-reads the store and applies the difference.
    fn sync(&self) -> Result<mgmt::SyncReport> {
        let desired = {
            let config = crate::manage::lock(&self.config);
            let store = crate::manage::lock(&self.store);
            let key = store.server_key()?.context("the store has lost the server's key")?;
            peers::desired(&config, &key, &*store, unix_now())?
        };
        peers::apply(&self.engine, desired)
    }

    /// Rotation upkeep (see [`rotation::upkeep`]), then a sync if it changed anything.
    fn rotation_upkeep(&self, policy: bool) -> Result<rotation::Upkeep> {
        let handshaken = self.engine.status().peers.iter().filter(|p| p.last_handshake.is_some()).map(|p| p.public_key).collect();
        let report = {
            let config = crate::manage::lock(&self.config).clone();
            let mut store = crate::manage::lock(&self.store);
            rotation::upkeep(&config, &mut store, &handshaken, unix_now(), policy)?
        };
        if report.changed() {
            self.sync()?;
        }
        Ok(report)
    }

    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Sync => match self.sync().inspect(|_| self.changed.store(true, Ordering::Relaxed)) {
                Ok(r) => {
                    tracing::info!(added = r.added, removed = r.removed, changed = r.changed, active = r.active, "synced with the store");
                    Reply { synced: Some(r), ..Reply::ok() }
                }
                Err(e) => Reply::error(format!("{e:#}")),
            },
            Request::Status => {
                let s = self.engine.status();
                let peers = s
                    .peers
                    .iter()
                    .map(|p| PeerLive {
                        public_key: p.public_key.to_base64(),
                        endpoint: p.endpoint.map(|e| e.to_string()),
                        last_handshake: p.last_handshake.map(|d| d.as_secs()),
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                    })
                    .collect();
                let drops = self.engine.drop_counters().into_iter().map(|(name, n)| (name.to_owned(), n)).collect();
                Reply { peers: Some(peers), listen_port: Some(s.listen_port), drops: Some(drops), ..Reply::ok() }
            }
            Request::Shutdown => {
                self.stop.store(true, Ordering::SeqCst);
                Reply::ok()
            }
        }
    }

    /// SIGHUP: re-reads the configuration file; what can change live does (listen port, MTU,
    /// egress and firewall rules, what exported client configurations say), the rest is
    /// reported as needing a restart; then syncs.
    fn reload(&self, path: &Path) {
        match ServerConfig::load(path).and_then(|c| c.validate().map(|()| c)) {
            Ok(new) => {
                let mut config = crate::manage::lock(&self.config);
                for what in setup::needs_restart(&config, &new) {
                    tracing::warn!(setting = what, "changed in the configuration file; takes effect after `vpn down && vpn up`");
                }
                if new.firewall && (new.listen_port != config.listen_port || new.egress_interface != config.egress_interface) {
                    if let Err(e) = setup::firewall(&new) {
                        tracing::warn!(error = %format!("{e:#}"), "cannot update the firewall");
                    }
                }
                if new.mtu != config.mtu {
                    match netconf::set_mtu(&config.interface, new.mtu) {
                        Ok(()) => {
                            tracing::info!(
                                from = config.mtu,
                                to = new.mtu,
                                "MTU changed; clients get it in configurations exported from now on"
                            );
                            config.mtu = new.mtu;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot change the MTU; keeping the running one"),
                    }
                }
                config.listen_port = new.listen_port;
                config.egress_interface = new.egress_interface;
                config.endpoint = new.endpoint;
                config.dns = new.dns;
                config.persistent_keepalive = new.persistent_keepalive;
                config.client_allowed_ips = new.client_allowed_ips;
            }
            Err(e) => tracing::warn!(error = %e, "reload: configuration refused, keeping the running one"),
        }
        if let Err(e) = self.sync() {
            tracing::warn!(error = %format!("{e:#}"), "reload: sync failed");
        }
    }
}

/// `vpn up`.
pub(crate) fn up(config_path: &Path, tuning: Tuning) -> Result<()> {
    require_root("vpn up", "it creates a network interface and firewall rules")?;
    init_logging(false);
    let started = Instant::now();
    let config = setup::load_or_create(config_path)?;
    let mut store = crate::manage::open_store(&config)?;
    if !store.is_unlocked() {
        anyhow::bail!("{}", vpn_control::store::StoreError::Locked);
    }
    if store.server_key()?.is_none() {
        store.set_server_key(&PrivateKey::generate(&mut OsRng), &Actor::local())?;
    }
    let ifname = config.interface.clone();
    let mgmt = MgmtServer::bind(&ifname)?;
    let uapi = UapiServer::bind(&ifname).with_context(|| format!("cannot serve the UAPI for {ifname}"))?;
    let tun =
        Tun::open_with(&ifname, config.mtu, tuning.tun_options()).with_context(|| format!("cannot create the TUN interface {ifname}"))?;
    let net = SystemNetwork::new(UdpOptions { gso: tuning.udp_gso, gro: tuning.udp_gro });
    let engine = Arc::new(Engine::start_with(Arc::new(tun), Arc::new(net), EngineOptions { crypto_threads: tuning.crypto_threads })?);
    let host = setup::HostSetup::apply(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = Arc::new(Server {
        config: Mutex::new(config.clone()),
        store: Mutex::new(store),
        engine: Arc::clone(&engine),
        stop: Arc::clone(&stop),
        changed: AtomicBool::new(false),
    });
    let report = server.sync()?;
    let ready = started.elapsed();
    let upkeep = server.rotation_upkeep(true)?;
    if config.key_rotation_days > 0 || upkeep.pending > 0 {
        eprintln!(
            "key rotation: policy {}; {} device key(s) rotated now{}; {} rotation(s) waiting for their clients",
            if config.key_rotation_days > 0 {
                format!("every {} days, grace {} days", config.key_rotation_days, config.rotation_grace_days)
            } else {
                "off".into()
            },
            upkeep.rotated,
            if upkeep.server_rotated { ", and the server's key" } else { "" },
            upkeep.pending
        );
    }
    let mut pending_rotations = upkeep.pending;
    let mut next_deadline = upkeep.next_deadline;
    let uapi = uapi.serve(Arc::new(EngineBackend(Arc::clone(&engine))), Shutdown::new()).context("cannot start the UAPI server")?;
    let handler = Arc::clone(&server);
    let mut mgmt = mgmt.serve(move |req| handler.handle(req))?;
    tracing::info!(interface = %ifname, port = engine.listen_port(), peers = report.active, ready_ms = ready.as_millis() as u64, "up");
    eprintln!(
        "vpn up: {ifname} listening on UDP {} with {} active device(s); `vpn status` shows them, `vpn down` stops",
        engine.listen_port(),
        report.active
    );

    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup)).context("cannot install signal handlers")?;
    let mut next_expiry = Instant::now() + EXPIRY_CHECK;
    let mut next_rotation = Instant::now() + ROTATION_CHECK;
    let mut next_policy = Instant::now() + POLICY_CHECK;
    let reason = loop {
        if let Some(r) = engine.wait(Duration::from_millis(250)) {
            break format!("{r:?}");
        }
        if stop.load(Ordering::Relaxed) {
            break "stop requested".to_string();
        }
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading the configuration and the store");
            server.reload(config_path);
        }
        if Instant::now() >= next_expiry {
            next_expiry = Instant::now() + EXPIRY_CHECK;
            if let Err(e) = server.sync() {
                tracing::warn!(error = %format!("{e:#}"), "periodic sync failed");
            }
        }
        if server.changed.swap(false, Ordering::Relaxed) {
            next_rotation = Instant::now();
        }
        if Instant::now() >= next_rotation {
            let policy = Instant::now() >= next_policy;
            if policy {
                next_policy = Instant::now() + POLICY_CHECK;
            }
            match server.rotation_upkeep(policy) {
                Ok(u) => (pending_rotations, next_deadline) = (u.pending, u.next_deadline),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "key rotation upkeep failed"),
            }
            // Look for clients taking their new keys often only while some rotation waits, and
            // wake at the next deadline; a change made by the CLI meanwhile arrives with its
            // sync request, which resets this.
            let mut wait = if pending_rotations > 0 { ROTATION_CHECK } else { EXPIRY_CHECK };
            if let Some(t) = next_deadline {
                wait = wait.min(Duration::from_secs(u64::try_from(t - unix_now()).unwrap_or(0).max(1)));
            }
            next_rotation = Instant::now() + wait;
        }
    };
    tracing::info!(interface = %ifname, reason, "shutting down");
    mgmt.shutdown();
    uapi.shutdown();
    engine.shutdown();
    drop(host);
    eprintln!("vpn up: {ifname} is down ({reason})");
    Ok(())
}

/// `vpn down`.
pub(crate) fn down(config_path: &Path) -> Result<()> {
    require_root("vpn down", "it removes a network interface and firewall rules")?;
    let config = ServerConfig::load(config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let ifname = &config.interface;
    match mgmt::request(ifname, &Request::Shutdown)? {
        Some(reply) => {
            if let Some(e) = reply.error {
                anyhow::bail!("the server refused to stop: {e}");
            }
            // Wait until it has removed its interface and socket.
            let deadline = Instant::now() + Duration::from_secs(10);
            while mgmt::socket_path(ifname).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("vpn down: {ifname} stopped");
        }
        None => {
            let cleaned = setup::remove_leftovers(&config)?;
            if cleaned.is_empty() {
                eprintln!("vpn down: no server is running for {ifname}; nothing to do");
            } else {
                eprintln!("vpn down: no server was running for {ifname}; removed what was left: {}", cleaned.join(", "));
            }
        }
    }
    Ok(())
}
