//! Reading rows into records: users, devices, and the errors for missing ones.

use std::net::Ipv4Addr;

use rusqlite::{Connection, OptionalExtension, Row};
use vpn_crypto::PublicKey;

use super::super::alloc::join_v6;
use super::super::{Device, PendingRotation, StoreError, User};

/// The columns [`device_row`] reads, from `devices d JOIN users u`.
pub(super) const DEVICE_SELECT: &str = "SELECT u.name, d.name, d.public_key, d.ipv4, d.ipv6_hi, d.ipv6_lo, d.enabled, u.enabled, \
     d.created_at, d.expires_at, d.key_created_at, d.private_key IS NOT NULL, d.next_public_key, d.rotate_by \
     FROM devices d JOIN users u ON u.id = d.user_id";

pub(super) fn user_id(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM users WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
}

pub(super) fn get_user(conn: &Connection, name: &str) -> Result<User, StoreError> {
    conn.prepare_cached(
        "SELECT u.name, u.enabled, u.created_at, (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id) FROM users u WHERE u.name = ?1",
    )?
    .query_row([name], user_row)
    .optional()?
    .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
}

pub(super) fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User { name: r.get(0)?, enabled: r.get(1)?, created_at: r.get(2)?, devices: r.get(3)? })
}

/// Reads a row of [`DEVICE_SELECT`].
pub(super) fn device_row(r: &Row<'_>) -> Result<Device, StoreError> {
    let user: String = r.get(0)?;
    let name: String = r.get(1)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("device {user}/{name} has an unreadable {what}"));
    let public_key = PublicKey::from_base64(&r.get::<_, String>(2)?).map_err(|_| corrupt("public key"))?;
    let ipv4 = match r.get::<_, Option<i64>>(3)? {
        Some(v) => Some(Ipv4Addr::from(u32::try_from(v).map_err(|_| corrupt("IPv4 address"))?)),
        None => None,
    };
    let ipv6 = match (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<i64>>(5)?) {
        (Some(hi), Some(lo)) => Some(join_v6(hi, lo)),
        (None, None) => None,
        _ => return Err(corrupt("IPv6 address")),
    };
    let rotation = match (r.get::<_, Option<String>>(12)?, r.get::<_, Option<i64>>(13)?) {
        (Some(next), Some(rotate_by)) => {
            Some(PendingRotation { public_key: PublicKey::from_base64(&next).map_err(|_| corrupt("new public key"))?, rotate_by })
        }
        (None, None) => None,
        _ => return Err(corrupt("rotation")),
    };
    Ok(Device {
        public_key,
        ipv4,
        ipv6,
        enabled: r.get(6)?,
        user_enabled: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        key_created_at: r.get(10)?,
        has_private_key: r.get(11)?,
        rotation,
        user,
        name,
    })
}

pub(super) fn get_devices(conn: &Connection, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
    let mut stmt;
    let mut rows = match user {
        Some(user) => {
            stmt = conn.prepare_cached(&format!("{DEVICE_SELECT} WHERE u.name = ?1 ORDER BY d.name"))?;
            stmt.query([user])?
        }
        None => {
            stmt = conn.prepare_cached(&format!("{DEVICE_SELECT} ORDER BY u.name, d.name"))?;
            stmt.query([])?
        }
    };
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(device_row(row)?);
    }
    Ok(out)
}

pub(super) fn get_device(conn: &Connection, user: &str, name: &str) -> Result<Device, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{DEVICE_SELECT} WHERE u.name = ?1 AND d.name = ?2"))?;
    let mut rows = stmt.query([user, name])?;
    match rows.next()? {
        Some(row) => device_row(row),
        None => Err(no_such_device(conn, user, name)),
    }
}

/// The error for a missing device: [`StoreError::NoSuchUser`] when the user is missing too.
pub(super) fn no_such_device(conn: &Connection, user: &str, name: &str) -> StoreError {
    match user_id(conn, user) {
        Ok(_) => StoreError::NoSuchDevice { user: user.to_owned(), device: name.to_owned() },
        Err(e) => e,
    }
}
