//! Address takeover on a key rotation's first handshake.
//!
//! While a device's keys are being rotated the control plane configures two peers: the old key,
//! which keeps the device's addresses so the client works unchanged, and the new key, with no
//! addresses of its own and [`PeerSettings::takes_over`] naming the old key. The moment the new
//! key has a session (its first handshake, which only the holder of the new private key can
//! complete), the engine moves the old key's allowed IPs to it, so the client's first packets on
//! its new configuration pass at once, in both directions, instead of being dropped until the
//! control plane notices the handshake and reconfigures.
//!
//! How: [`Shared::sync`](super::Shared::sync) sees the new key's `SessionAdded` under the device
//! lock, notes the key in [`Takeovers`] and asks for a settlement; the thread that then sends
//! the handshake's answer ([`Shared::send_all`](super::Shared::send_all)) first settles: under
//! the configuration lock it applies [`apply`] to the configuration and publishes a new routing
//! table. The answer leaves after the table is in place, so no data packet of the new session can
//! meet the old table. A configuration applied later ([`Engine::apply`](super::Engine::apply)),
//! such as the control plane's while it still thinks the rotation waits, gets the same treatment
//! for keys that have taken over, so the addresses never move back.
//!
//! [`PeerSettings::takes_over`]: crate::PeerSettings::takes_over

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use vpn_crypto::PublicKey;

use super::lock;
use crate::config::InterfaceConfig;

/// The new keys that have taken over, and the settlements asked for and done.
#[derive(Default)]
pub(crate) struct Takeovers {
    /// New keys with a session whose [`crate::PeerSettings::takes_over`] is to be honoured.
    /// A leaf lock: nothing else is taken while it is held.
    took: Mutex<HashSet<PublicKey>>,
    requested: AtomicU64,
    done: AtomicU64,
}

impl Takeovers {
    /// Notes that `key` has a session (called under the device lock).
    pub(crate) fn note(&self, key: PublicKey) {
        lock(&self.took).insert(key);
        self.requested.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a settlement asked for has not been done.
    pub(crate) fn pending(&self) -> bool {
        self.done.load(Ordering::Acquire) < self.requested.load(Ordering::Acquire)
    }

    /// The settlement number to record once the current requests are applied.
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// Records settlement `n` as done (called under the configuration lock).
    pub(crate) fn settled(&self, n: u64) {
        self.done.fetch_max(n, Ordering::AcqRel);
    }

    /// Forgets keys that are no longer peers in `config` and keys in `recreated` (they start
    /// afresh, without a session); then applies the others to `config`. Returns whether `config`
    /// changed. A key is remembered as long as it is a peer, even once its takeover is settled,
    /// so that a configuration that still names the takeover (the control plane's, until it has
    /// recorded the rotation, or one that a UAPI request derived from an earlier state) never
    /// moves the addresses back.
    pub(crate) fn apply_to(&self, config: &mut InterfaceConfig, recreated: &[PublicKey]) -> bool {
        let mut took = lock(&self.took);
        took.retain(|k| config.peer(k).is_some() && !recreated.contains(k));
        let took = took.clone();
        apply(config, &took)
    }
}

/// Moves the allowed IPs of each peer named by the `takes_over` of a peer in `took` to that
/// peer, and clears its `takes_over`. Returns whether anything changed.
pub(crate) fn apply(config: &mut InterfaceConfig, took: &HashSet<PublicKey>) -> bool {
    let mut changed = false;
    for i in 0..config.peers.len() {
        let (key, Some(old)) = (config.peers[i].public_key, config.peers[i].takes_over) else { continue };
        if !took.contains(&key) {
            continue;
        }
        let moved = config.peer_mut(&old).filter(|_| old != key).map(|p| std::mem::take(&mut p.allowed_ips)).unwrap_or_default();
        let new = &mut config.peers[i];
        for prefix in moved {
            if !new.allowed_ips.contains(&prefix) {
                new.allowed_ips.push(prefix);
            }
        }
        new.takes_over = None;
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IpPrefix, PeerSettings};

    fn key(b: u8) -> PublicKey {
        PublicKey([b; 32])
    }

    fn prefix(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    /// Old key 1 with two addresses, new key 2 taking over from it, and an unrelated peer 3.
    fn rotating() -> InterfaceConfig {
        let mut old = PeerSettings::new(key(1));
        old.allowed_ips = vec![prefix("10.0.0.2/32"), prefix("fd00::2/128")];
        let mut new = PeerSettings::new(key(2));
        new.takes_over = Some(key(1));
        let mut other = PeerSettings::new(key(3));
        other.allowed_ips = vec![prefix("10.0.0.3/32")];
        InterfaceConfig { peers: vec![old, new, other], ..InterfaceConfig::default() }
    }

    #[test]
    fn nothing_moves_before_the_new_key_has_a_session() {
        let mut c = rotating();
        assert!(!apply(&mut c, &HashSet::new()));
        assert_eq!(c, rotating());
    }

    #[test]
    fn the_new_key_takes_the_old_keys_addresses() {
        let mut c = rotating();
        assert!(apply(&mut c, &[key(2)].into_iter().collect()));
        assert!(c.peer(&key(1)).unwrap().allowed_ips.is_empty(), "the old key keeps no address");
        assert_eq!(c.peer(&key(2)).unwrap().allowed_ips, vec![prefix("10.0.0.2/32"), prefix("fd00::2/128")]);
        assert_eq!(c.peer(&key(2)).unwrap().takes_over, None);
        assert_eq!(c.peer(&key(3)), rotating().peer(&key(3)), "other peers are untouched");
        // Settled: applying again changes nothing.
        assert!(!apply(&mut c, &[key(2)].into_iter().collect()));
    }

    #[test]
    fn remembered_while_a_peer_and_forgotten_after() {
        let t = Takeovers::default();
        t.note(key(2));
        assert!(t.pending());
        // Settled on the engine's own configuration.
        let mut c = rotating();
        assert!(t.apply_to(&mut c, &[]));
        assert_eq!(c.peer(&key(2)).unwrap().allowed_ips.len(), 2);
        // Settling again (another rotation's takeover) keeps the key, so the control plane's
        // configuration, which still names the takeover, gets it applied again.
        let mut settled = c.clone();
        assert!(!t.apply_to(&mut settled, &[]));
        let mut again = rotating();
        assert!(t.apply_to(&mut again, &[]));
        assert_eq!(again, c);
        // The rotation completed: only the new key, with the addresses: nothing to do.
        let mut done = InterfaceConfig { peers: vec![c.peer(&key(2)).unwrap().clone()], ..InterfaceConfig::default() };
        assert!(!t.apply_to(&mut done, &[]));
        // The key is no longer a peer: forgotten.
        assert!(!t.apply_to(&mut InterfaceConfig::default(), &[]));
        assert!(lock(&t.took).is_empty());
        // A key re-created (it lost its sessions) is forgotten too.
        t.note(key(2));
        let mut c = rotating();
        assert!(!t.apply_to(&mut c, &[key(2)]));
        assert_eq!(c, rotating());
    }

    #[test]
    fn settlements_are_counted() {
        let t = Takeovers::default();
        assert!(!t.pending());
        t.note(key(2));
        let n = t.requested();
        assert!(t.pending());
        t.settled(n);
        assert!(!t.pending());
    }
}
