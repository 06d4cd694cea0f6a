//! Many changes in one transaction ([`Change`], [`SqliteStore::apply_batch`]), and the records of
//! bulk imports, for progress, resume and rollback.
//!
//! A batch is all-or-nothing: the first change that fails rolls back every change before it,
//! and the error says which one ([`BatchError::index`]). An import is recorded in `imports` when
//! it starts; what it adds carries its id, so a rollback removes exactly that.

use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;

use super::super::{names, Actor, Device, NewDevice, Pools, StoreError, User};
use super::devices::insert_device;
use super::rows::{get_devices, get_user, user_id};
use super::{audit, device_details, now, SqliteStore};

/// One change of a batch.
#[derive(Debug)]
pub enum Change<'a> {
    /// Adds an enabled user without devices.
    AddUser {
        /// Its name.
        name: &'a str,
    },
    /// Adds a device to a user (who may have been added earlier in the same batch).
    AddDevice(NewDevice<'a>),
    /// Enables or disables a user.
    SetUserEnabled {
        /// The user.
        name: &'a str,
        /// The new state.
        enabled: bool,
    },
    /// Removes a user and its devices.
    RemoveUser {
        /// The user.
        name: &'a str,
    },
    /// Sets (or replaces outright) the server's private key.
    SetServerKey(&'a vpn_crypto::PrivateKey),
}

/// What one change did, in the order of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A user was added.
    User(User),
    /// A device was added.
    Device(Device),
    /// A user was enabled or disabled: the user as it is now, and whether it changed.
    UserEnabled(User, bool),
    /// A user was removed, with its devices.
    Removed(String, Vec<Device>),
    /// The server's key was set.
    ServerKey,
}

/// A batch that failed: nothing of it was applied.
#[derive(Debug, thiserror::Error)]
#[error("change {} of the batch failed, so none was made: {error}", index + 1)]
pub struct BatchError {
    /// The position of the failing change (from 0).
    pub index: usize,
    /// Why it failed.
    #[source]
    pub error: StoreError,
}

/// One bulk import, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImportRecord {
    /// Its number.
    pub id: i64,
    /// Where it came from (a file name).
    pub source: String,
    /// A digest of the content, to recognise a re-run of the same import.
    pub digest: String,
    /// How many items the file holds.
    pub total: i64,
    /// How many are done.
    pub done: i64,
    /// `running` (started, not finished: interrupted or in progress), `done` or `rolled_back`.
    pub state: String,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it finished or was rolled back.
    pub finished_at: Option<i64>,
    /// Who ran it.
    pub who: String,
}

fn import_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportRecord> {
    Ok(ImportRecord {
        id: r.get(0)?,
        source: r.get(1)?,
        digest: r.get(2)?,
        total: r.get(3)?,
        done: r.get(4)?,
        state: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        who: r.get(8)?,
    })
}

const IMPORT_SELECT: &str = "SELECT id, source, digest, total, done, state, started_at, finished_at, who FROM imports";

fn apply_one(
    tx: &Transaction<'_>,
    store_keys: Option<&crate::keyring::DataKey>,
    change: Change<'_>,
    pools: &Pools,
    actor: &Actor,
    at: i64,
    import: Option<i64>,
) -> Result<Applied, StoreError> {
    match change {
        Change::AddUser { name } => insert_user(tx, name, actor, at, import).map(Applied::User),
        Change::AddDevice(new) => insert_device(tx, store_keys, new, pools, actor, at, import).map(Applied::Device),
        Change::SetUserEnabled { name, enabled } => {
            set_user_enabled_in(tx, name, enabled, actor, at).map(|(user, changed)| Applied::UserEnabled(user, changed))
        }
        Change::RemoveUser { name } => {
            let devices = remove_user_in(tx, name, actor, at)?;
            Ok(Applied::Removed(name.to_owned(), devices))
        }
        Change::SetServerKey(key) => {
            super::keys::put_server_key(tx, store_keys, key, actor, at)?;
            Ok(Applied::ServerKey)
        }
    }
}

/// Adds an enabled user inside `tx`, with the audit row; `import` marks it as added by that
/// import.
pub(super) fn insert_user(tx: &Transaction<'_>, name: &str, actor: &Actor, at: i64, import: Option<i64>) -> Result<User, StoreError> {
    names::validate_user(name)?;
    if user_id(tx, name).is_ok() {
        return Err(StoreError::UserExists(name.to_owned()));
    }
    tx.prepare_cached("INSERT INTO users (name, enabled, created_at, import_id) VALUES (?1, 1, ?2, ?3)")?
        .execute(params![name, at, import])?;
    let details = match import {
        Some(id) => json!({ "import": id }),
        None => json!({}),
    };
    audit(tx, actor, "user.add", name, details, at)?;
    Ok(User { name: name.to_owned(), enabled: true, created_at: at, devices: 0 })
}

/// Enables or disables a user inside `tx`, with the audit row. Returns the user as it is now and
/// whether it changed.
pub(super) fn set_user_enabled_in(
    tx: &Transaction<'_>,
    name: &str,
    enabled: bool,
    actor: &Actor,
    at: i64,
) -> Result<(User, bool), StoreError> {
    let before = get_user(tx, name)?;
    tx.prepare_cached("UPDATE users SET enabled = ?1 WHERE name = ?2")?.execute(params![enabled, name])?;
    let action = if enabled { "user.enable" } else { "user.disable" };
    let changed = before.enabled != enabled;
    audit(tx, actor, action, name, json!({ "changed": changed }), at)?;
    Ok((User { enabled, ..before }, changed))
}

/// Removes a user and its devices inside `tx`, with the audit row.
pub(super) fn remove_user_in(tx: &Transaction<'_>, name: &str, actor: &Actor, at: i64) -> Result<Vec<Device>, StoreError> {
    let id = user_id(tx, name)?;
    let devices = get_devices(tx, Some(name))?;
    tx.prepare_cached("DELETE FROM devices WHERE user_id = ?1")?.execute([id])?;
    tx.prepare_cached("DELETE FROM users WHERE id = ?1")?.execute([id])?;
    let removed: Vec<serde_json::Value> = devices.iter().map(|d| json!({ "name": d.name, "device": device_details(d) })).collect();
    audit(tx, actor, "user.remove", name, json!({ "devices": removed }), at)?;
    Ok(devices)
}

impl SqliteStore {
    /// Applies `changes` in order in one transaction: all of them, or none when one fails.
    /// `import` marks added users and devices as part of that import (see
    /// [`SqliteStore::start_import`]); its progress (`done`) grows by `progress` in the same
    /// transaction.
    pub fn apply_batch(
        &mut self,
        changes: Vec<Change<'_>>,
        pools: &Pools,
        actor: &Actor,
        import: Option<(i64, i64)>,
    ) -> Result<Vec<Applied>, BatchError> {
        let at = now();
        let keys = self.keys.as_ref();
        let fail = |index, error| BatchError { index, error };
        let n = changes.len();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| fail(0, e.into()))?;
        let mut out = Vec::with_capacity(n);
        for (i, change) in changes.into_iter().enumerate() {
            out.push(apply_one(&tx, keys, change, pools, actor, at, import.map(|(id, _)| id)).map_err(|e| fail(i, e))?);
        }
        if let Some((id, progress)) = import {
            tx.prepare_cached("UPDATE imports SET done = done + ?1 WHERE id = ?2 AND state = 'running'")
                .and_then(|mut s| s.execute(params![progress, id]))
                .map_err(|e| fail(n.saturating_sub(1), e.into()))?;
        }
        tx.commit().map_err(|e| fail(n.saturating_sub(1), e.into()))?;
        self.after_write();
        Ok(out)
    }

    /// Records the start of an import of `total` items from `source` whose content has
    /// `digest`. If an unfinished import of the same digest exists (an interrupted run), it is
    /// returned instead, to be resumed.
    pub fn start_import(&mut self, source: &str, digest: &str, total: i64, actor: &Actor) -> Result<(ImportRecord, bool), StoreError> {
        let at = now();
        self.write(|tx| {
            let running: Option<ImportRecord> = tx
                .prepare_cached(&format!("{IMPORT_SELECT} WHERE digest = ?1 AND state = 'running' ORDER BY id DESC LIMIT 1"))?
                .query_row([digest], import_row)
                .optional()?;
            if let Some(r) = running {
                return Ok((r, true));
            }
            tx.prepare_cached(
                "INSERT INTO imports (source, digest, total, done, state, started_at, who) VALUES (?1, ?2, ?3, 0, 'running', ?4, ?5)",
            )?
            .execute(params![source, digest, total, at, actor.who])?;
            let id = tx.last_insert_rowid();
            audit(tx, actor, "import.start", &format!("import {id}"), json!({ "source": source, "total": total }), at)?;
            let r = tx.prepare_cached(&format!("{IMPORT_SELECT} WHERE id = ?1"))?.query_row([id], import_row)?;
            Ok((r, false))
        })
    }

    /// Marks an import finished.
    pub fn finish_import(&mut self, id: i64, actor: &Actor) -> Result<ImportRecord, StoreError> {
        let at = now();
        self.write(|tx| {
            let n = tx
                .prepare_cached("UPDATE imports SET state = 'done', finished_at = ?1 WHERE id = ?2 AND state = 'running'")?
                .execute(params![at, id])?;
            if n == 0 {
                return Err(StoreError::Import(format!("import {id} is not running")));
            }
            let r = tx.prepare_cached(&format!("{IMPORT_SELECT} WHERE id = ?1"))?.query_row([id], import_row)?;
            audit(tx, actor, "import.finish", &format!("import {id}"), json!({ "source": r.source, "done": r.done }), at)?;
            Ok(r)
        })
    }

    /// Every import, newest first.
    pub fn imports(&self) -> Result<Vec<ImportRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!("{IMPORT_SELECT} ORDER BY id DESC"))?;
        let v = stmt.query_map([], import_row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(v)
    }

    /// The names of the users an import added (and that still exist), sorted.
    pub fn users_of_import(&self, id: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT name FROM users WHERE import_id = ?1 ORDER BY name")?;
        let v = stmt.query_map([id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
        Ok(v)
    }

    /// Undoes an import: removes every user (with its devices) and every device it added, in
    /// one transaction, and marks it rolled back. Returns the users removed.
    pub fn rollback_import(&mut self, id: i64, actor: &Actor) -> Result<Vec<String>, StoreError> {
        let at = now();
        self.write(|tx| {
            let state: Option<String> =
                tx.prepare_cached("SELECT state FROM imports WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
            match state.as_deref() {
                None => return Err(StoreError::Import(format!("no import numbered {id}: `vpn user import --list` shows them"))),
                Some("rolled_back") => return Err(StoreError::Import(format!("import {id} was already rolled back"))),
                Some(_) => {}
            }
            let users: Vec<String> = {
                let mut stmt = tx.prepare_cached("SELECT name FROM users WHERE import_id = ?1 ORDER BY name")?;
                let v = stmt.query_map([id], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
                v
            };
            for u in &users {
                remove_user_in(tx, u, actor, at)?;
            }
            let devices = tx.prepare_cached("DELETE FROM devices WHERE import_id = ?1")?.execute([id])?;
            tx.prepare_cached("UPDATE imports SET state = 'rolled_back', finished_at = ?1 WHERE id = ?2")?.execute(params![at, id])?;
            let details = json!({ "users_removed": users.len(), "other_devices_removed": devices });
            audit(tx, actor, "import.rollback", &format!("import {id}"), details, at)?;
            Ok(users)
        })
    }
}
