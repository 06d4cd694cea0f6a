//! The sync of a running server: the configuration the store asks for, applied by difference,
//! so that peers that stay keep their sessions and the interface is never re-created.

use std::collections::HashMap;

use anyhow::{Context, Result};
use vpn_control::server_config::ServerConfig;
use vpn_control::store::Store;
use vpn_crypto::{PrivateKey, PublicKey};
use vpn_dataplane::{Engine, InterfaceConfig, PeerSettings};

use super::mgmt::SyncReport;

/// The peers a server runs (see [`vpn_control::peers::desired`]).
pub(crate) fn desired(config: &ServerConfig, key: &PrivateKey, store: &dyn Store, now: i64) -> Result<InterfaceConfig> {
    vpn_control::peers::desired(config, key, store, now).context("cannot read the devices from the store")
}

/// Applies `new` to the engine by difference and says what changed.
pub(crate) fn apply(engine: &Engine, new: InterfaceConfig) -> Result<SyncReport> {
    let old = engine.config();
    let before: HashMap<&PublicKey, &PeerSettings> = old.peers.iter().map(|p| (&p.public_key, p)).collect();
    let mut report = SyncReport { active: new.peers.len(), ..SyncReport::default() };
    for p in &new.peers {
        match before.get(&p.public_key) {
            None => report.added += 1,
            Some(o) if o.allowed_ips != p.allowed_ips || o.preshared_key != p.preshared_key => report.changed += 1,
            Some(_) => {}
        }
    }
    let after: std::collections::HashSet<&PublicKey> = new.peers.iter().map(|p| &p.public_key).collect();
    report.removed = old.peers.iter().filter(|p| !after.contains(&p.public_key)).count();
    engine.apply(new).context("cannot apply the peers to the interface")?;
    Ok(report)
}
