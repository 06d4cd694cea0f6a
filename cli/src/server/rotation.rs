//! Key rotation upkeep in a running server: finishing device rotations when the client first
//! uses its new key (or when the grace period ends), forgetting the server's previous key after
//! its grace period, and applying the rotation policy (`key_rotation_days`).

use std::collections::HashSet;

use anyhow::Result;
use rand_core::OsRng;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, DeviceSecrets, SqliteStore, Store};
use vpn_crypto::{PrivateKey, PublicKey};

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upkeep {
    /// Rotations completed because the client connected with its new key.
    pub(crate) taken: usize,
    /// Rotations completed because the grace period ended.
    pub(crate) expired: usize,
    /// Device keys rotated by the policy.
    pub(crate) rotated: usize,
    /// Whether the policy rotated the server's key.
    pub(crate) server_rotated: bool,
    /// Whether the server's previous key was dropped.
    pub(crate) server_retired: bool,
    /// Rotations still waiting for their client.
    pub(crate) pending: usize,
    /// The earliest deadline still ahead (a device rotation's or the server's previous key's),
    /// Unix seconds.
    pub(crate) next_deadline: Option<i64>,
}

impl Upkeep {
    /// Whether the store changed, so the interface needs a sync.
    pub(crate) fn changed(&self) -> bool {
        self.taken + self.expired + self.rotated > 0 || self.server_rotated || self.server_retired
    }
}

/// The actor of automatic changes.
fn actor() -> Actor {
    Actor::new("vpn up", "rotation")
}

/// One pass at Unix time `now`. `handshaken` holds the public keys the interface has completed
/// a handshake with; `policy` applies `key_rotation_days` in this pass.
pub(crate) fn upkeep(
    config: &ServerConfig,
    store: &mut SqliteStore,
    handshaken: &HashSet<PublicKey>,
    now: i64,
    policy: bool,
) -> Result<Upkeep> {
    let mut out = Upkeep::default();
    let who = actor();
    for d in store.devices(None)? {
        let Some(r) = &d.rotation else { continue };
        if handshaken.contains(&r.public_key) {
            store.complete_rotation(&d.user, &d.name, "the device connected with its new key", &who)?;
            tracing::info!(device = %d.label(), "key rotation complete: the device uses its new key");
            out.taken += 1;
        } else if now >= r.rotate_by {
            store.complete_rotation(&d.user, &d.name, "grace period over", &who)?;
            tracing::warn!(device = %d.label(), "key rotation complete: grace period over; the old key no longer works");
            out.expired += 1;
        } else {
            out.pending += 1;
            out.next_deadline = Some(out.next_deadline.map_or(r.rotate_by, |t| t.min(r.rotate_by)));
        }
    }
    if let Some((_, until)) = store.retiring_server_key()? {
        if now >= until {
            out.server_retired = store.retire_server_key("grace period over", &who)?;
            tracing::warn!("the server's previous key is no longer accepted: its grace period is over");
        } else {
            out.next_deadline = Some(out.next_deadline.map_or(until, |t| t.min(until)));
        }
    }
    if policy && config.key_rotation_days > 0 {
        let max_age = i64::from(config.key_rotation_days) * 86_400;
        let grace = i64::from(config.rotation_grace_days) * 86_400;
        for d in store.devices(None)? {
            if d.rotation.is_none() && now - d.key_created_at >= max_age {
                store.rotate_device(&d.user, &d.name, &DeviceSecrets::generate(&mut OsRng), now + grace, &who)?;
                tracing::info!(device = %d.label(), days = config.key_rotation_days, "rotation policy: new keys issued; hand the device its new config");
                out.rotated += 1;
                out.pending += 1;
                let by = now + grace;
                out.next_deadline = Some(out.next_deadline.map_or(by, |t| t.min(by)));
            }
        }
        let created = store.server_key_created_at()?;
        if created.is_some_and(|t| now - t >= max_age) && store.retiring_server_key()?.is_none() {
            store.rotate_server_key(&PrivateKey::generate(&mut OsRng), now + grace, &who)?;
            tracing::info!(days = config.key_rotation_days, "rotation policy: the server has a new key; devices need their new configs");
            out.server_rotated = true;
            let by = now + grace;
            out.next_deadline = Some(out.next_deadline.map_or(by, |t| t.min(by)));
        }
    }
    Ok(out)
}
