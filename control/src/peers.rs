//! From the store to the interface: the [`InterfaceConfig`] a server runs, with every active
//! device (enabled, its user enabled, not expired) as a peer allowed its own addresses. The
//! engine applies it by difference, so peers that stay keep their sessions.

use vpn_crypto::PrivateKey;
use vpn_dataplane::{InterfaceConfig, IpPrefix, PeerSettings};

use crate::server_config::ServerConfig;
use crate::store::{Device, Store, StoreError};

/// The configuration for `config`'s interface with `key`, at Unix time `now`.
pub fn desired(config: &ServerConfig, key: &PrivateKey, store: &dyn Store, now: i64) -> Result<InterfaceConfig, StoreError> {
    let devices = store.devices(None)?;
    let mut peers = Vec::with_capacity(devices.len());
    for d in devices.iter().filter(|d| d.is_active(now)) {
        let secrets = store.device_secrets(&d.user, &d.name)?;
        let mut p = PeerSettings::new(d.public_key);
        p.preshared_key = secrets.preshared_key.clone();
        p.allowed_ips = allowed_ips(d);
        peers.push(p);
    }
    Ok(InterfaceConfig { private_key: Some(key.clone()), listen_port: config.listen_port, fwmark: 0, peers })
}

/// A device's own addresses, as host prefixes.
pub fn allowed_ips(d: &Device) -> Vec<IpPrefix> {
    let mut v = Vec::new();
    if let Some(a) = d.ipv4 {
        v.push(IpPrefix::host(a.into()));
    }
    if let Some(a) = d.ipv6 {
        v.push(IpPrefix::host(a.into()));
    }
    v
}
