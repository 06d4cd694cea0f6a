//! Applying a [`SetRequest`] to an [`InterfaceConfig`]: a pure function, so a request either
//! yields a complete new configuration or an error and changes nothing.
//!
//! The semantics are wireguard-go's (`device/uapi.go`, `device/allowedips.go`):
//! - interface keys first: a new private key also drops any peer whose public key is the
//!   interface's own, `replace_peers` drops every peer;
//! - peer blocks in order: a block for the interface's own public key (under the private key in
//!   effect after the request) is ignored; `remove` removes; `update_only` never creates; a new
//!   peer goes last;
//! - an added prefix moves: it is taken from whichever peer had it and goes last in this peer's
//!   list, even if this peer had it already (so a repeated line is one entry, in its last place);
//!   `-prefix` removes it only from this peer;
//! - at most [`MAX_PEERS`] peers (wireguard-go's `MaxPeers`); creating one more is `EINVAL`.
//!
//! Work is linear in the size of the configuration plus the request: peers and prefixes are
//! looked up through hash maps, and removals leave holes that are compacted once at the end.

use std::collections::{HashMap, HashSet};

use vpn_crypto::{PresharedKey, PublicKey};
use vpn_dataplane::{InterfaceConfig, IpPrefix, PeerSettings};

use super::parse::{AllowedIpChange, PeerRequest, PrivateKeyChange, SetRequest};
use super::Errno;

/// The most peers an interface may have (wireguard-go's `MaxPeers`, 2^16).
pub const MAX_PEERS: usize = 1 << 16;

/// A peer being edited: its settings (with `allowed_ips` moved out) and its prefixes, where a
/// removed prefix leaves a hole.
struct WorkPeer {
    settings: PeerSettings,
    ips: Vec<Option<IpPrefix>>,
}

/// The configuration being edited.
struct Work {
    /// Peers in order; a removed peer leaves a hole.
    peers: Vec<Option<WorkPeer>>,
    live: usize,
    by_key: HashMap<PublicKey, usize>,
    /// Which peer holds each prefix, and where in its list.
    owner: HashMap<IpPrefix, (usize, usize)>,
    /// Keys removed during this request (by `replace_peers` or `remove`).
    removed: HashSet<PublicKey>,
    /// Keys removed and then created again: their state must start afresh.
    recreated: Vec<PublicKey>,
}

impl Work {
    fn new(peers: &[PeerSettings]) -> Self {
        let mut w = Work {
            peers: Vec::with_capacity(peers.len()),
            live: 0,
            by_key: HashMap::with_capacity(peers.len()),
            owner: HashMap::new(),
            removed: HashSet::new(),
            recreated: Vec::new(),
        };
        for p in peers {
            if w.by_key.contains_key(&p.public_key) {
                continue; // cannot happen for a configuration built by `apply`; keep the first
            }
            let i = w.push(PeerSettings { allowed_ips: Vec::new(), ..p.clone() });
            for &prefix in &p.allowed_ips {
                w.add_ip(i, prefix);
            }
        }
        w
    }

    fn push(&mut self, settings: PeerSettings) -> usize {
        if self.removed.remove(&settings.public_key) {
            self.recreated.push(settings.public_key);
        }
        let i = self.peers.len();
        self.by_key.insert(settings.public_key, i);
        self.peers.push(Some(WorkPeer { settings, ips: Vec::new() }));
        self.live += 1;
        i
    }

    fn peer(&mut self, i: usize) -> &mut WorkPeer {
        match self.peers.get_mut(i) {
            Some(Some(p)) => p,
            _ => unreachable!("peer indices come from by_key, which only names live peers"),
        }
    }

    fn clear(&mut self) {
        self.removed.extend(self.by_key.keys().copied());
        self.peers.clear();
        self.by_key.clear();
        self.owner.clear();
        self.live = 0;
    }

    fn remove_peer(&mut self, i: usize) {
        if let Some(Some(p)) = self.peers.get_mut(i).map(Option::take) {
            self.by_key.remove(&p.settings.public_key);
            self.removed.insert(p.settings.public_key);
            for prefix in p.ips.into_iter().flatten() {
                self.owner.remove(&prefix);
            }
            self.live -= 1;
        }
    }

    /// Gives `prefix` to peer `i`, last in its list, taking it from its previous holder.
    fn add_ip(&mut self, i: usize, prefix: IpPrefix) {
        if let Some((j, pos)) = self.owner.remove(&prefix) {
            if let Some(Some(p)) = self.peers.get_mut(j) {
                if let Some(slot) = p.ips.get_mut(pos) {
                    *slot = None;
                }
            }
        }
        let peer = self.peer(i);
        let pos = peer.ips.len();
        peer.ips.push(Some(prefix));
        self.owner.insert(prefix, (i, pos));
    }

    /// Removes `prefix` from peer `i` if `i` holds it.
    fn remove_ip(&mut self, i: usize, prefix: IpPrefix) {
        if let Some(&(j, pos)) = self.owner.get(&prefix) {
            if j == i {
                self.owner.remove(&prefix);
                if let Some(slot) = self.peer(i).ips.get_mut(pos) {
                    *slot = None;
                }
            }
        }
    }

    fn clear_ips(&mut self, i: usize) {
        let ips = std::mem::take(&mut self.peer(i).ips);
        for prefix in ips.into_iter().flatten() {
            self.owner.remove(&prefix);
        }
    }

    fn finish(self) -> Vec<PeerSettings> {
        let mut out = Vec::with_capacity(self.live);
        for p in self.peers.into_iter().flatten() {
            let mut settings = p.settings;
            settings.allowed_ips = p.ips.into_iter().flatten().collect();
            out.push(settings);
        }
        out
    }
}

/// The outcome of a `set`: the new configuration, and the peers that were removed and created
/// again within the request (by `replace_peers=true` or `remove=true`): the engine must drop their
/// sessions, endpoints and counters as if they were new, as the kernel and wireguard-go do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The configuration to put into effect.
    pub config: InterfaceConfig,
    /// Peers whose state must start afresh.
    pub recreated: Vec<PublicKey>,
}

/// Applies `req` to `config` and returns the new configuration; on error nothing is returned and
/// `config` is unchanged (it is only read).
///
/// The only error is `EINVAL` for more than [`MAX_PEERS`] peers; the engine may still refuse the
/// result (for example `EADDRINUSE` for a port it cannot bind).
pub fn apply(config: &InterfaceConfig, req: &SetRequest) -> Result<InterfaceConfig, Errno> {
    apply_detailed(config, req).map(|a| a.config)
}

/// [`apply`], also telling which peers were re-created.
pub fn apply_detailed(config: &InterfaceConfig, req: &SetRequest) -> Result<Applied, Errno> {
    let private_key = match &req.private_key {
        None => config.private_key.clone(),
        Some(PrivateKeyChange::Set(k)) => Some(k.clone()),
        Some(PrivateKeyChange::Clear) => None,
    };
    let own = private_key.as_ref().map(|k| k.public_key());

    let mut work = Work::new(&config.peers);
    if req.replace_peers {
        work.clear();
    }
    if let Some(own) = own {
        if let Some(&i) = work.by_key.get(&own) {
            work.remove_peer(i);
        }
    }
    for block in &req.peers {
        if Some(block.public_key) == own {
            continue;
        }
        apply_peer(&mut work, block)?;
    }

    let recreated = std::mem::take(&mut work.recreated);
    let config = InterfaceConfig {
        private_key,
        // Not part of the UAPI: a `set` leaves a rotation's grace period as it is.
        retiring_private_key: config.retiring_private_key.clone(),
        listen_port: req.listen_port.unwrap_or(config.listen_port),
        fwmark: req.fwmark.unwrap_or(config.fwmark),
        peers: work.finish(),
    };
    Ok(Applied { config, recreated })
}

fn apply_peer(work: &mut Work, block: &PeerRequest) -> Result<(), Errno> {
    let existing = work.by_key.get(&block.public_key).copied();
    if block.remove {
        if let Some(i) = existing {
            work.remove_peer(i);
        }
        return Ok(());
    }
    let i = match existing {
        Some(i) => i,
        None if block.update_only => return Ok(()),
        None if work.live >= MAX_PEERS => return Err(Errno::EINVAL),
        None => work.push(PeerSettings::new(block.public_key)),
    };
    let peer = &mut work.peer(i).settings;
    if let Some(psk) = &block.preshared_key {
        peer.preshared_key = PresharedKey::clone(psk);
    }
    if let Some(ep) = block.endpoint {
        peer.endpoint = Some(ep);
    }
    if let Some(secs) = block.persistent_keepalive {
        peer.persistent_keepalive = secs;
    }
    if block.replace_allowed_ips {
        work.clear_ips(i);
    }
    for change in &block.allowed_ips {
        match *change {
            AllowedIpChange::Add(p) => work.add_ip(i, p),
            AllowedIpChange::Remove(p) => work.remove_ip(i, p),
        }
    }
    Ok(())
}
