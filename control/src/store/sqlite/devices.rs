//! Devices: adding one (fresh keys or a public key only; allocated or fixed addresses), reading
//! its secrets, and rotating its key pair.
//!
//! A rotation keeps the new key pair in the `next_*` columns beside the old one. The server runs
//! both keys as peers meanwhile (see [`crate::peers`]); the rotation completes, and the old key
//! stops working, when the client first uses the new key or at `rotate_by`, whichever comes
//! first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};

use super::super::alloc::{lowest_free_v4, lowest_free_v6, split_v6, v4_hosts, v6_hosts};
use super::super::secret::{self, Record};
use super::super::{names, Actor, Device, DeviceSecrets, NewAddresses, NewDevice, NewKeys, Pools, StoreError};
use super::rows::{get_device, no_such_device};
use super::{audit, device_details, now, SqliteStore};
use crate::keyring::{self, DataKey};

/// Inserts a device inside `tx`, with its audit row. `import` marks it as added by that import.
pub(super) fn insert_device(
    tx: &Transaction<'_>,
    keys: Option<&DataKey>,
    new: NewDevice<'_>,
    pools: &Pools,
    actor: &Actor,
    at: i64,
    import: Option<i64>,
) -> Result<Device, StoreError> {
    names::validate_device(new.name)?;
    if pools.ipv4.is_none() && pools.ipv6.is_none() {
        return Err(StoreError::NoPools);
    }
    let (public_key, private_key, preshared_key) = match &new.keys {
        NewKeys::Full(DeviceSecrets { private_key: Some(k), preshared_key }) => (k.public_key(), Some(k), preshared_key),
        NewKeys::Full(DeviceSecrets { private_key: None, .. }) => {
            return Err(StoreError::NoPrivateKey(format!("{}/{}", new.user, new.name)));
        }
        NewKeys::PublicOnly { public_key, preshared_key } => (*public_key, None, preshared_key),
    };
    let pk64 = public_key.to_base64();
    let (user_id, user_enabled): (i64, bool) = tx
        .prepare_cached("SELECT id, enabled FROM users WHERE name = ?1")?
        .query_row([new.user], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NoSuchUser(new.user.to_owned()))?;
    let exists: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND name = ?2)")?
        .query_row(params![user_id, new.name], |r| r.get(0))?;
    if exists {
        return Err(StoreError::DeviceExists { user: new.user.to_owned(), device: new.name.to_owned() });
    }
    check_key_free(tx, &public_key)?;
    let (ipv4, ipv6) = match new.addresses {
        NewAddresses::Allocate => {
            (pools.ipv4.map(|p| lowest_free_v4(tx, p)).transpose()?, pools.ipv6.map(|p| lowest_free_v6(tx, p)).transpose()?)
        }
        NewAddresses::Fixed { ipv4, ipv6 } => {
            if ipv4.is_none() && ipv6.is_none() {
                return Err(StoreError::BadAddress { addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED), reason: "no address given".into() });
            }
            if let Some(a) = ipv4 {
                check_fixed_v4(tx, pools, a)?;
            }
            if let Some(a) = ipv6 {
                check_fixed_v6(tx, pools, a)?;
            }
            (ipv4, ipv6)
        }
    };
    let (hi, lo) = ipv6.map(split_v6).unzip();
    let sealed_private = private_key.map(|k| secret::seal(keys, k.as_bytes(), Record::DevicePrivate(&pk64))).transpose()?;
    let sealed_psk = secret::seal(keys, preshared_key.as_bytes(), Record::DevicePsk(&pk64))?;
    tx.prepare_cached(
        "INSERT INTO devices (user_id, name, public_key, private_key, preshared_key, ipv4, ipv6_hi, ipv6_lo, enabled, created_at, \
         expires_at, key_created_at, import_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?9, ?11)",
    )?
    .execute(params![user_id, new.name, pk64, sealed_private, sealed_psk, ipv4.map(u32::from), hi, lo, at, new.expires_at, import])?;
    let device = Device {
        user: new.user.to_owned(),
        name: new.name.to_owned(),
        public_key,
        ipv4,
        ipv6,
        enabled: true,
        user_enabled,
        created_at: at,
        expires_at: new.expires_at,
        key_created_at: at,
        has_private_key: private_key.is_some(),
        rotation: None,
    };
    let mut details = device_details(&device);
    if private_key.is_none() {
        details["public_key_only"] = json!(true);
    }
    audit(tx, actor, "device.add", &device.label(), details, at)?;
    Ok(device)
}

/// Fails unless no device has `key` as its key or its pending new key.
fn check_key_free(tx: &Transaction<'_>, key: &PublicKey) -> Result<(), StoreError> {
    let owner: Option<String> = tx
        .prepare_cached(
            "SELECT u.name || '/' || d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_key = ?1 OR d.next_public_key = ?1",
        )?
        .query_row([key.to_base64()], |r| r.get(0))
        .optional()?;
    match owner {
        Some(owner) => Err(StoreError::PublicKeyInUse { public_key: key.to_base64(), owner }),
        None => Ok(()),
    }
}

fn check_fixed_v4(tx: &Transaction<'_>, pools: &Pools, a: Ipv4Addr) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::BadAddress { addr: a.into(), reason };
    let pool = pools.ipv4.ok_or_else(|| bad("no IPv4 pool is configured".into()))?;
    let (first, last) = v4_hosts(pool)?.ok_or_else(|| bad(format!("the pool {pool} has no host addresses")))?;
    if !(first..=last).contains(&u32::from(a)) {
        return Err(bad(format!("it is not a device address of the pool {pool} (the network, the server's first address and the broadcast address are reserved)")));
    }
    let owner: Option<String> = tx
        .prepare_cached("SELECT u.name || '/' || d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE d.ipv4 = ?1")?
        .query_row([u32::from(a)], |r| r.get(0))
        .optional()?;
    match owner {
        Some(owner) => Err(bad(format!("device {owner} has it"))),
        None => Ok(()),
    }
}

fn check_fixed_v6(tx: &Transaction<'_>, pools: &Pools, a: Ipv6Addr) -> Result<(), StoreError> {
    let bad = |reason: String| StoreError::BadAddress { addr: a.into(), reason };
    let pool = pools.ipv6.ok_or_else(|| bad("no IPv6 pool is configured".into()))?;
    let (hi, first, last) = v6_hosts(pool)?.ok_or_else(|| bad(format!("the pool {pool} has no host addresses")))?;
    let v = u128::from(a);
    if (v >> 64) as u64 != hi || !(first..=last).contains(&(v as u64)) {
        return Err(bad(format!("it is not a device address of the pool {pool} (the network and the server's first address are reserved; only the first /64 is used)")));
    }
    let (h, l) = split_v6(a);
    let owner: Option<String> = tx
        .prepare_cached(
            "SELECT u.name || '/' || d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE d.ipv6_hi = ?1 AND d.ipv6_lo = ?2",
        )?
        .query_row([h, l], |r| r.get(0))
        .optional()?;
    match owner {
        Some(owner) => Err(bad(format!("device {owner} has it"))),
        None => Ok(()),
    }
}

/// The sealed secrets of one device: `(public key, private key, psk)` of the current pair, or
/// of the pending new pair when `next`.
type SealedRow = (String, Option<zeroize::Zeroizing<String>>, Option<zeroize::Zeroizing<String>>);

impl SqliteStore {
    fn sealed_secrets(&self, user: &str, name: &str, next: bool) -> Result<SealedRow, StoreError> {
        let sql = if next {
            "SELECT d.next_public_key, d.next_private_key, d.next_preshared_key FROM devices d JOIN users u ON u.id = d.user_id \
             WHERE u.name = ?1 AND d.name = ?2"
        } else {
            "SELECT d.public_key, d.private_key, d.preshared_key FROM devices d JOIN users u ON u.id = d.user_id \
             WHERE u.name = ?1 AND d.name = ?2"
        };
        let row: Option<(Option<String>, Option<String>, Option<String>)> =
            self.conn.prepare_cached(sql)?.query_row([user, name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()?;
        match row {
            None => Err(no_such_device(&self.conn, user, name)),
            Some((Some(pk), private, psk)) => Ok((pk, private.map(zeroize::Zeroizing::new), psk.map(zeroize::Zeroizing::new))),
            Some((None, ..)) => Err(StoreError::Rotation(format!("device {user}/{name} has no key rotation under way"))),
        }
    }

    fn open_secrets(&self, label: &str, row: SealedRow) -> Result<DeviceSecrets, StoreError> {
        let (pk, private, psk) = row;
        let private_key = match private {
            Some(s) => {
                let key = PrivateKey::from_bytes(*secret::open(
                    self.keys.as_ref(),
                    &s,
                    Record::DevicePrivate(&pk),
                    &format!("the private key of device {label}"),
                    !self.protected,
                )?);
                // A sealed key is bound to its public key by the associated data already; a plain
                // one (a store not protected yet) is checked here. Skipping the X25519 for sealed
                // keys keeps reading every device (`vpn up`, each sync) cheap.
                if !keyring::is_sealed(&s) && key.public_key().to_base64() != pk {
                    return Err(StoreError::Corrupt(format!("the private key of device {label} does not match its public key")));
                }
                Some(key)
            }
            None => None,
        };
        let psk = psk.ok_or_else(|| StoreError::Corrupt(format!("device {label} has no pre-shared key")))?;
        let preshared_key = PresharedKey::from_bytes(*secret::open(
            self.keys.as_ref(),
            &psk,
            Record::DevicePsk(&pk),
            &format!("the pre-shared key of device {label}"),
            !self.protected,
        )?);
        Ok(DeviceSecrets { private_key, preshared_key })
    }

    /// The secrets of a device's current key pair.
    pub(super) fn current_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError> {
        let row = self.sealed_secrets(user, name, false)?;
        self.open_secrets(&format!("{user}/{name}"), row)
    }

    /// The secrets of a device's pending new key pair.
    pub(super) fn next_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError> {
        let row = self.sealed_secrets(user, name, true)?;
        self.open_secrets(&format!("{user}/{name}"), row)
    }

    /// Starts a rotation: `secrets` become the device's pending key pair, and the old one keeps
    /// working until the client uses the new one or until `rotate_by`. Replaces a rotation
    /// already under way.
    pub(super) fn start_rotation(
        &mut self,
        user: &str,
        name: &str,
        secrets: &DeviceSecrets,
        rotate_by: i64,
        actor: &Actor,
    ) -> Result<Device, StoreError> {
        let private = secrets.private_key.as_ref().ok_or_else(|| StoreError::NoPrivateKey(format!("{user}/{name}")))?;
        let pk = private.public_key();
        let pk64 = pk.to_base64();
        let at = now();
        let keys = self.keys.as_ref();
        let sealed_private = secret::seal(keys, private.as_bytes(), Record::DevicePrivate(&pk64))?;
        let sealed_psk = secret::seal(keys, secrets.preshared_key.as_bytes(), Record::DevicePsk(&pk64))?;
        self.write(|tx| {
            let before = get_device(tx, user, name)?;
            check_key_free(tx, &pk)?;
            tx.prepare_cached(
                "UPDATE devices SET next_public_key = ?1, next_private_key = ?2, next_preshared_key = ?3, rotate_by = ?4 \
                 WHERE name = ?5 AND user_id = (SELECT id FROM users WHERE name = ?6)",
            )?
            .execute(params![pk64, sealed_private, sealed_psk, rotate_by, name, user])?;
            let details = json!({
                "old_public_key": before.public_key.to_base64(),
                "new_public_key": pk64,
                "rotate_by": rotate_by,
                "replaced_pending": before.rotation.as_ref().map(|r| r.public_key.to_base64()),
            });
            audit(tx, actor, "device.rotate", &before.label(), details, at)?;
            get_device(tx, user, name)
        })
    }

    /// Completes a device's rotation: the new key pair replaces the old one, which stops
    /// working. `reason` goes to the audit log ("client connected with the new key",
    /// "grace period over", "forced").
    pub(super) fn finish_rotation(&mut self, user: &str, name: &str, reason: &str, actor: &Actor) -> Result<Device, StoreError> {
        let at = now();
        self.write(|tx| {
            let before = get_device(tx, user, name)?;
            let Some(rotation) = before.rotation.clone() else {
                return Err(StoreError::Rotation(format!("device {user}/{name} has no key rotation under way")));
            };
            tx.prepare_cached(
                "UPDATE devices SET public_key = next_public_key, private_key = next_private_key, preshared_key = next_preshared_key, \
                 next_public_key = NULL, next_private_key = NULL, next_preshared_key = NULL, rotate_by = NULL, key_created_at = ?1 \
                 WHERE name = ?2 AND user_id = (SELECT id FROM users WHERE name = ?3)",
            )?
            .execute(params![at, name, user])?;
            let details = json!({
                "old_public_key": before.public_key.to_base64(),
                "new_public_key": rotation.public_key.to_base64(),
                "reason": reason,
            });
            audit(tx, actor, "device.rotate.complete", &before.label(), details, at)?;
            get_device(tx, user, name)
        })
    }
}
