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
//!
//! Secrets are sealed under the data key (see the `secret` module): a store opens locked, and
//! [`SqliteStore::unlock`] with the passphrase is needed before anything that reads or makes a
//! secret. Listing, enabling, disabling and removing work locked.
//!
//! | file | what |
//! |---|---|
//! | here | opening, transactions, users, the [`Store`] implementation |
//! | `rows` | reading rows into records |
//! | `devices` | adding devices (allocated or fixed addresses) and rotating their keys |
//! | `keys` | unlocking, the passphrase, the server key and its rotation, key status |
//! | `batch` | many changes in one transaction, and bulk-import records |

mod batch;
mod devices;
mod keys;
mod rows;

pub use batch::{Applied, BatchError, Change, ImportRecord};
pub use keys::{KeyStatus, Unlocked};

use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::{json, Value};
use vpn_crypto::PrivateKey;

use self::rows::{get_device, get_devices, get_user, user_id, user_row};
use super::{schema, Actor, AuditEvent, Device, DeviceSecrets, NewDevice, Pools, Store, StoreError, User};
use crate::audit_log::AuditLog;
use crate::keyring::DataKey;

/// How long a writer waits for another one to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A [`Store`] in an SQLite database.
pub struct SqliteStore {
    conn: Connection,
    path: Option<PathBuf>,
    /// The data key, once unlocked.
    keys: Option<DataKey>,
    /// Whether the store has a wrapped data key (so every secret in it is sealed).
    protected: bool,
    /// Where committed audit rows are also written as JSON lines.
    audit_log: Option<AuditLog>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).field("unlocked", &self.keys.is_some()).finish_non_exhaustive()
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

    /// An empty store in memory, for tests: unlocked with a random data key that is not saved
    /// anywhere.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let mut store = Self::setup(Connection::open_in_memory()?, None)?;
        store.keys = Some(DataKey::generate(&mut rand_core::OsRng));
        Ok(store)
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
        let mut store = SqliteStore { conn, path, keys: None, protected: false, audit_log: None };
        schema::migrate(&mut store.conn)?;
        store.protected = store.is_protected()?;
        Ok(store)
    }

    /// The schema version of the database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        schema::version(&self.conn)
    }

    /// The file, unless in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it succeeds, rolled back if
    /// it fails.
    fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let out = write_tx(&mut self.conn, f)?;
        self.after_write();
        Ok(out)
    }

    /// Also writes every audit row, from now on, to the JSON-lines log at `path` (created 0600),
    /// and at once any row the log misses (a process killed between its commit and its line).
    pub fn set_audit_log(&mut self, path: &Path) -> Result<(), StoreError> {
        self.audit_log = Some(AuditLog::open(path)?);
        self.export_audit().map_err(StoreError::from)
    }

    /// After a commit: the new audit rows to the JSON-lines log. The change is committed
    /// whatever happens here; a failure is logged, and the rows are written by the next export.
    fn after_write(&mut self) {
        if let Err(e) = self.export_audit() {
            tracing::warn!(error = %e, "cannot write the audit log; its rows stay in the store and are written later");
            eprintln!("warning: {e}");
        }
    }

    /// Appends the audit rows the JSON-lines log does not have yet, under the log's own lock, so
    /// that concurrent commands write each row once and in order. "Does not have" is after the
    /// log's last id and after the last id exported (kept in `settings`), so a log that was
    /// rotated away (a new, empty file) starts with new rows, not the whole history again.
    fn export_audit(&self) -> std::io::Result<()> {
        let Some(log) = &self.audit_log else { return Ok(()) };
        let sql = |e: rusqlite::Error| std::io::Error::other(format!("reading the audit rows: {e}"));
        let mut newest = None;
        log.append_missing(|after| {
            let exported: Option<i64> = self
                .conn
                .prepare_cached("SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?1")
                .and_then(|mut st| st.query_row([AUDIT_EXPORTED], |r| r.get(0)).optional())
                .map_err(sql)?;
            let after = after.max(exported).unwrap_or(0);
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, at, who, origin, action, target, details FROM audit WHERE id > ?1 ORDER BY id")
                .map_err(sql)?;
            let mut rows = stmt.query([after]).map_err(sql)?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(sql)? {
                let details: String = r.get(6).map_err(sql)?;
                let id: i64 = r.get(0).map_err(sql)?;
                newest = Some(id);
                out.push(json!({
                    "id": id,
                    "at": r.get::<_, i64>(1).map_err(sql)?,
                    "who": r.get::<_, String>(2).map_err(sql)?,
                    "origin": r.get::<_, String>(3).map_err(sql)?,
                    "action": r.get::<_, String>(4).map_err(sql)?,
                    "target": r.get::<_, String>(5).map_err(sql)?,
                    "details": serde_json::from_str::<Value>(&details).unwrap_or(Value::Null),
                }));
            }
            Ok(out)
        })?;
        if let Some(id) = newest {
            self.conn
                .prepare_cached("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .and_then(|mut st| st.execute(params![AUDIT_EXPORTED, id.to_string()]))
                .map_err(sql)?;
        }
        Ok(())
    }
}

/// The `settings` key of the last audit id written to the JSON-lines log.
const AUDIT_EXPORTED: &str = "audit_log_exported_id";

/// [`SqliteStore::write`] on the connection alone, for callers that also borrow other fields
/// (they call [`SqliteStore::after_write`] after it).
fn write_tx<T>(conn: &mut Connection, f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
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

impl Store for SqliteStore {
    fn server_key(&self) -> Result<Option<PrivateKey>, StoreError> {
        self.read_server_key()
    }

    fn set_server_key(&mut self, key: &PrivateKey, actor: &Actor) -> Result<(), StoreError> {
        self.write_server_key(key, actor)
    }

    fn server_key_created_at(&self) -> Result<Option<i64>, StoreError> {
        self.read_server_key_created()
    }

    fn rotate_server_key(&mut self, new: &PrivateKey, retire_at: i64, actor: &Actor) -> Result<(), StoreError> {
        self.rotate_server_key_to(new, retire_at, actor)
    }

    fn retiring_server_key(&self) -> Result<Option<(PrivateKey, i64)>, StoreError> {
        self.read_retiring_key()
    }

    fn retire_server_key(&mut self, reason: &str, actor: &Actor) -> Result<bool, StoreError> {
        self.drop_retiring_key(reason, actor)
    }

    fn add_user(&mut self, name: &str, actor: &Actor) -> Result<User, StoreError> {
        let at = now();
        self.write(|tx| batch::insert_user(tx, name, actor, at, None))
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
        self.write(|tx| batch::set_user_enabled_in(tx, name, enabled, actor, at).map(|(user, _)| user))
    }

    fn remove_user(&mut self, name: &str, actor: &Actor) -> Result<Vec<Device>, StoreError> {
        let at = now();
        self.write(|tx| batch::remove_user_in(tx, name, actor, at))
    }

    fn add_device(&mut self, new: NewDevice<'_>, pools: &Pools, actor: &Actor) -> Result<Device, StoreError> {
        let at = now();
        let keys = self.keys.as_ref();
        let device = write_tx(&mut self.conn, |tx| devices::insert_device(tx, keys, new, pools, actor, at, None))?;
        self.after_write();
        Ok(device)
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
        self.current_secrets(user, name)
    }

    fn pending_secrets(&self, user: &str, name: &str) -> Result<DeviceSecrets, StoreError> {
        self.next_secrets(user, name)
    }

    fn rotate_device(
        &mut self,
        user: &str,
        name: &str,
        secrets: &DeviceSecrets,
        rotate_by: i64,
        actor: &Actor,
    ) -> Result<Device, StoreError> {
        self.start_rotation(user, name, secrets, rotate_by, actor)
    }

    fn complete_rotation(&mut self, user: &str, name: &str, reason: &str, actor: &Actor) -> Result<Device, StoreError> {
        self.finish_rotation(user, name, reason, actor)
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

    fn apply_batch(&mut self, changes: Vec<Change<'_>>, pools: &Pools, actor: &Actor) -> Result<Vec<Applied>, BatchError> {
        SqliteStore::apply_batch(self, changes, pools, actor, None)
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
