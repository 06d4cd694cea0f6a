//! From the store to the interface: the [`InterfaceConfig`] a server runs, with every active
//! device (enabled, its user enabled, not expired) as a peer allowed its own addresses. The
//! engine applies it by difference, so peers that stay keep their sessions.
//!
//! Rotations in progress:
//! - a device whose keys are being rotated is two peers: the old key, which keeps the device's
//!   addresses so the client works unchanged, and the new key with no addresses that takes them
//!   over from the old key ([`PeerSettings::takes_over`]): the engine moves them at the new
//!   key's first handshake, so the client's first packets with its new config pass; the server
//!   then sees the handshake and completes the rotation in the store. Past its deadline only the
//!   new key is configured;
//! - during a server key rotation, the previous server key is the interface's retiring key
//!   (accepted for handshakes from clients with the old config) until its deadline.

use vpn_crypto::PrivateKey;
use vpn_dataplane::{InterfaceConfig, IpPrefix, PeerSettings};

use crate::server_config::ServerConfig;
use crate::store::{Device, Store, StoreError};

/// The configuration for `config`'s interface with `key`, at Unix time `now`.
pub fn desired(config: &ServerConfig, key: &PrivateKey, store: &dyn Store, now: i64) -> Result<InterfaceConfig, StoreError> {
    let devices = store.devices(None)?;
    let mut peers = Vec::with_capacity(devices.len());
    for d in devices.iter().filter(|d| d.is_active(now)) {
        match &d.rotation {
            Some(r) if now < r.rotate_by => {
                let old = store.device_secrets(&d.user, &d.name)?;
                let mut p = PeerSettings::new(d.public_key);
                p.preshared_key = old.preshared_key.clone();
                p.allowed_ips = allowed_ips(d);
                peers.push(p);
                let new = store.pending_secrets(&d.user, &d.name)?;
                let mut p = PeerSettings::new(r.public_key);
                p.preshared_key = new.preshared_key.clone();
                p.takes_over = Some(d.public_key);
                peers.push(p);
            }
            Some(r) => {
                let new = store.pending_secrets(&d.user, &d.name)?;
                let mut p = PeerSettings::new(r.public_key);
                p.preshared_key = new.preshared_key.clone();
                p.allowed_ips = allowed_ips(d);
                peers.push(p);
            }
            None => {
                let secrets = store.device_secrets(&d.user, &d.name)?;
                let mut p = PeerSettings::new(d.public_key);
                p.preshared_key = secrets.preshared_key.clone();
                p.allowed_ips = allowed_ips(d);
                peers.push(p);
            }
        }
    }
    let retiring_private_key = store.retiring_server_key()?.filter(|(_, until)| now < *until).map(|(k, _)| k);
    Ok(InterfaceConfig { private_key: Some(key.clone()), retiring_private_key, listen_port: config.listen_port, fwmark: 0, peers })
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
