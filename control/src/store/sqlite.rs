//! [`SqliteStore`]: the [`Store`] in one embedded SQLite file.
//!
//! Each `SqliteStore` owns one connection; several processes (or threads, each with its own
//! store) share the file safely through SQLite's locks:
//! - the journal is a write-ahead log, so readers never wait for a writer;
//! - every change is one `BEGIN IMMEDIATE` transaction, its audit row included: it takes the
//!   write lock before reading anything it decides on (a name being free, the lowest free
//!   address), so two writers cannot both decide on the same state;
//! - a writer waits up to [`BUSY_TIMEOUT`] for the lock, then fails with [`StoreError::Busy`].
//!
//! The file is created 0600 (and its directory 0700 when this creates it) before anything is
//! written to it; SQLite gives its `-wal` and `-shm` files the same mode. Deleted rows are
//! overwritten (`secure_delete`), so a removed device's keys do not linger in free pages.

use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde_json::{json, Value};
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};

use super::alloc::{join_v6, lowest_free_v4, lowest_free_v6, split_v6};
use super::{names, schema, secret, Actor, AuditEvent, Device, DeviceSecrets, NewDevice, Pools, Store, StoreError, User};

/// How long a writer waits for another one to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The `settings` key of the server's private key.
const SERVER_KEY: &str = "server_private_key";

/// The columns [`device_row`] reads, from `devices d JOIN users u`.
const DEVICE_SELECT: &str = "SELECT u.name, d.name, d.public_key, d.ipv4, d.ipv6_hi, d.ipv6_lo, d.enabled, u.enabled, d.created_at, \
     d.expires_at FROM devices d JOIN users u ON u.id = d.user_id";

/// A [`Store`] in an SQLite database.
pub struct SqliteStore {
    conn: Connection,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if missing (mode 0600, and its directory 0700 if
    /// that is created too), and migrates its schema. A file that exists with a looser mode is
    /// restricted to 0600.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
                // The mode given to mkdir is filtered by the umask; set it outright.
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
        }
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o700 | 0o600))?;
        }
        drop(file);
        let conn = Connection::open(path)?;
        Self::setup(conn, Some(path.to_owned()))
    }

    /// An empty store in memory, for tests.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        Self::setup(Connection::open_in_memory()?, None)
    }

    fn setup(conn: Connection, path: Option<PathBuf>) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.pragma_update(None, "secure_delete", true)?;
        if path.is_some() {
            let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(journal_mode = %mode, "the store's file system does not support write-ahead logging");
            }
        }
        let mut store = SqliteStore { conn, path };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it succeeds, rolled back if
    /// it fails.
    fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

/// The current time in Unix seconds.
fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Appends an audit row. `details` must not contain secrets.
fn audit(tx: &Transaction<'_>, actor: &Actor, action: &str, target: &str, details: Value, at: i64) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO audit (at, who, origin, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![
        at,
        actor.who,
        actor.origin,
        action,
        target,
        details.to_string()
    ])?;
    Ok(())
}

/// The facts about a device the audit log keeps.
fn device_details(d: &Device) -> Value {
    json!({ "public_key": d.public_key.to_base64(), "ipv4": d.ipv4, "ipv6": d.ipv6, "expires_at": d.expires_at })
}

fn user_id(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM users WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
}

fn get_user(conn: &Connection, name: &str) -> Result<User, StoreError> {
    conn.prepare_cached(
        "SELECT u.name, u.enabled, u.created_at, (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id) FROM users u WHERE u.name = ?1",
    )?
    .query_row([name], user_row)
    .optional()?
    .ok_or_else(|| StoreError::NoSuchUser(name.to_owned()))
}

fn user_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User { name: r.get(0)?, enabled: r.get(1)?, created_at: r.get(2)?, devices: r.get(3)? })
}

/// Reads a row of [`DEVICE_SELECT`].
fn device_row(r: &Row<'_>) -> Result<Device, StoreError> {
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
    Ok(Device {
        public_key,
        ipv4,
        ipv6,
        enabled: r.get(6)?,
        user_enabled: r.get(7)?,
        created_at: r.get(8)?,
        expires_at: r.get(9)?,
        user,
        name,
    })
}

fn get_devices(conn: &Connection, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
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

fn get_device(conn: &Connection, user: &str, name: &str) -> Result<Device, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("{DEVICE_SELECT} WHERE u.name = ?1 AND d.name = ?2"))?;
    let mut rows = stmt.query([user, name])?;
    match rows.next()? {
        Some(row) => device_row(row),
        None => Err(no_such_device(conn, user, name)),
    }
}

/// The error for a missing device: [`StoreError::NoSuchUser`] when the user is missing too.
fn no_such_device(conn: &Connection, user: &str, name: &str) -> StoreError {
    match user_id(conn, user) {
        Ok(_) => StoreError::NoSuchDevice { user: user.to_owned(), device: name.to_owned() },
        Err(e) => e,
    }
}

impl Store for SqliteStore {
    fn server_key(&self) -> Result<Option<PrivateKey>, StoreError> {
        let stored: Option<zeroize::Zeroizing<String>> = self
            .conn
            .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
            .query_row([SERVER_KEY], |r| r.get(0))
            .optional()?
            .map(zeroize::Zeroizing::new);
        match stored {
            Some(text) => Ok(Some(PrivateKey::from_bytes(*secret::open(&text, "the server's private key")?))),
            None => Ok(None),
        }
    }

    fn set_server_key(&mut self, key: &PrivateKey, actor: &Actor) -> Result<(), StoreError> {
        let at = now();
        self.write(|tx| {
            let replaced: bool =
                tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM settings WHERE key = ?1)")?.query_row([SERVER_KEY], |r| r.get(0))?;
            tx.prepare_cached("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
                .execute(params![SERVER_KEY, *secret::seal(key.as_bytes())])?;
            let details = json!({ "public_key": key.public_key().to_base64(), "replaced": replaced });
            audit(tx, actor, "server.key", "server", details, at)
        })
    }

    fn add_user(&mut self, name: &str, actor: &Actor) -> Result<User, StoreError> {
        names::validate_user(name)?;
        let at = now();
        self.write(|tx| {
            if user_id(tx, name).is_ok() {
                return Err(StoreError::UserExists(name.to_owned()));
            }
            tx.prepare_cached("INSERT INTO users (name, enabled, created_at) VALUES (?1, 1, ?2)")?.execute(params![name, at])?;
            audit(tx, actor, "user.add", name, json!({}), at)?;
            Ok(User { name: name.to_owned(), enabled: true, created_at: at, devices: 0 })
        })
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.name, u.enabled, u.created_at, (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id) FROM users u ORDER BY u.name",
        )?;
        let users = stmt.query_map([], user_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(users)
    }

    fn user(&self, name: &str) -> Result<User, StoreError> {
        get_user(&self.conn, name)
    }

    fn set_user_enabled(&mut self, name: &str, enabled: bool, actor: &Actor) -> Result<User, StoreError> {
        let at = now();
        self.write(|tx| {
            let before = get_user(tx, name)?;
            tx.prepare_cached("UPDATE users SET enabled = ?1 WHERE name = ?2")?.execute(params![enabled, name])?;
            let action = if enabled { "user.enable" } else { "user.disable" };
            audit(tx, actor, action, name, json!({ "changed": before.enabled != enabled }), at)?;
            Ok(User { enabled, ..before })
        })
    }

    fn remove_user(&mut self, name: &str, actor: &Actor) -> Result<Vec<Device>, StoreError> {
        let at = now();
        self.write(|tx| {
            let id = user_id(tx, name)?;
            let devices = get_devices(tx, Some(name))?;
            tx.prepare_cached("DELETE FROM devices WHERE user_id = ?1")?.execute([id])?;
            tx.prepare_cached("DELETE FROM users WHERE id = ?1")?.execute([id])?;
            let removed: Vec<Value> = devices.iter().map(|d| json!({ "name": d.name, "device": device_details(d) })).collect();
            audit(tx, actor, "user.remove", name, json!({ "devices": removed }), at)?;
            Ok(devices)
        })
    }

    fn add_device(&mut self, new: NewDevice<'_>, pools: &Pools, actor: &Actor) -> Result<Device, StoreError> {
        names::validate_device(new.name)?;
        if pools.ipv4.is_none() && pools.ipv6.is_none() {
            return Err(StoreError::NoPools);
        }
        let public_key = new.secrets.private_key.public_key();
        let at = now();
        self.write(|tx| {
            let (user_id, user_enabled): (i64, bool) = tx
                .prepare_cached("SELECT id, enabled FROM users WHERE name = ?1")?
                .query_row([new.user], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::NoSuchUser(new.user.to_owned()))?;
            let exists: bool =
                tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND name = ?2)")?.query_row(params![user_id, new.name], |r| r.get(0))?;
            if exists {
                return Err(StoreError::DeviceExists { user: new.user.to_owned(), device: new.name.to_owned() });
            }
            let owner: Option<String> = tx
                .prepare_cached("SELECT u.name || '/' || d.name FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_key = ?1")?
                .query_row([public_key.to_base64()], |r| r.get(0))
                .optional()?;
            if let Some(owner) = owner {
                return Err(StoreError::PublicKeyInUse { public_key: public_key.to_base64(), owner });
            }
            let ipv4 = pools.ipv4.map(|p| lowest_free_v4(tx, p)).transpose()?;
            let ipv6 = pools.ipv6.map(|p| lowest_free_v6(tx, p)).transpose()?;
            let (hi, lo) = ipv6.map(split_v6).unzip();
            tx.prepare_cached(
                "INSERT INTO devices (user_id, name, public_key, private_key, preshared_key, ipv4, ipv6_hi, ipv6_lo, enabled, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)",
            )?
            .execute(params![
                user_id,
                new.name,
                public_key.to_base64(),
                *secret::seal(new.secrets.private_key.as_bytes()),
                *secret::seal(new.secrets.preshared_key.as_bytes()),
                ipv4.map(u32::from),
                hi,
                lo,
                at,
                new.expires_at,
            ])?;
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
            };
            audit(tx, actor, "device.add", &device.label(), device_details(&device), at)?;
            Ok(device)
        })
    }

    fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
        if let Some(user) = user {
            user_id(&self.conn, user)?;
        }
        get_devices(&self.conn, user)
    }

    fn device(&self, user: &str, name: &str) -> Result<Device, StoreError> {
        get_device(&self.conn, user, name)
    }

    fn device_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError> {
        let stored: Option<(zeroize::Zeroizing<String>, zeroize::Zeroizing<String>)> = self
            .conn
            .prepare_cached(
                "SELECT d.private_key, d.preshared_key FROM devices d JOIN users u ON u.id = d.user_id WHERE u.name = ?1 AND d.name = ?2",
            )?
            .query_row([user, name], |r| Ok((zeroize::Zeroizing::new(r.get(0)?), zeroize::Zeroizing::new(r.get(1)?))))
            .optional()?;
        let Some((private_key, preshared_key)) = stored else {
            return Err(no_such_device(&self.conn, user, name));
        };
        let label = format!("device {user}/{name}");
        Ok(DeviceSecrets {
            private_key: PrivateKey::from_bytes(*secret::open(&private_key, &format!("the private key of {label}"))?),
            preshared_key: PresharedKey::from_bytes(*secret::open(&preshared_key, &format!("the pre-shared key of {label}"))?),
        })
    }

    fn set_device_enabled(&mut self, user: &str, name: &str, enabled: bool, actor: &Actor) -> Result<Device, StoreError> {
        let at = now();
        self.write(|tx| {
            let before = get_device(tx, user, name)?;
            tx.prepare_cached("UPDATE devices SET enabled = ?1 WHERE name = ?2 AND user_id = (SELECT id FROM users WHERE name = ?3)")?
                .execute(params![enabled, name, user])?;
            let action = if enabled { "device.enable" } else { "device.disable" };
            audit(tx, actor, action, &before.label(), json!({ "changed": before.enabled != enabled }), at)?;
            Ok(Device { enabled, ..before })
        })
    }

    fn remove_device(&mut self, user: &str, name: &str, actor: &Actor) -> Result<Device, StoreError> {
        let at = now();
        self.write(|tx| {
            let device = get_device(tx, user, name)?;
            tx.prepare_cached("DELETE FROM devices WHERE name = ?1 AND user_id = (SELECT id FROM users WHERE name = ?2)")?
                .execute(params![name, user])?;
            audit(tx, actor, "device.remove", &device.label(), device_details(&device), at)?;
            Ok(device)
        })
    }

    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt =
            self.conn.prepare_cached("SELECT id, at, who, origin, action, target, details FROM audit ORDER BY id DESC LIMIT ?1")?;
        let mut rows = stmt.query([limit])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let details: String = r.get(6)?;
            let details =
                serde_json::from_str(&details).map_err(|_| StoreError::Corrupt(format!("audit entry {id} has unreadable details")))?;
            out.push(AuditEvent { id, at: r.get(1)?, who: r.get(2)?, origin: r.get(3)?, action: r.get(4)?, target: r.get(5)?, details });
        }
        Ok(out)
    }
}
