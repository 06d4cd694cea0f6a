//! Unlocking the store, changing its passphrase, the server's key and its rotation, and a
//! summary of how the keys are kept.
//!
//! The data key is created, wrapped under the passphrase, the first time a store is unlocked;
//! values still in plain text (a store from before encryption) are sealed in the same step.

use std::str::FromStr;

use rand_core::OsRng;
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::json;
use vpn_crypto::PrivateKey;

use super::super::secret::{self, Record, WRAPPED_KEY};
use super::super::{Actor, StoreError};
use super::{audit, now, SqliteStore};
use crate::keyring::{is_sealed, DataKey, KdfParams, Passphrase, WrappedKey};

/// The data key wrapped under a new passphrase that is being put in place.
const STAGED_KEY: &str = "data_key_staged";

/// The `settings` key of the server's private key.
pub(super) const SERVER_KEY: &str = "server_private_key";
/// When the server's current key was made (Unix seconds).
const SERVER_KEY_CREATED: &str = "server_key_created_at";
/// The server's previous key during a rotation's grace period.
const RETIRING_KEY: &str = "server_retiring_key";
/// Until when the previous key is accepted (Unix seconds).
const RETIRING_UNTIL: &str = "server_retiring_until";

/// What [`SqliteStore::unlock`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlocked {
    /// The data key was created now (a new store, or one from before encryption).
    pub created: bool,
    /// How many plain-text secrets were sealed now.
    pub sealed_now: usize,
}

/// How the store keeps its keys ([`SqliteStore::key_status`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyStatus {
    /// Whether a wrapped data key exists.
    pub protected: bool,
    /// The Argon2id parameters of the wrapped data key.
    pub kdf: Option<String>,
    /// Whether this handle holds the data key.
    pub unlocked: bool,
    /// Secrets sealed under the data key.
    pub sealed: usize,
    /// Secrets still in plain text (sealed at the next unlock).
    pub plaintext: usize,
    /// Devices whose private key is not in the store (imported with the public key only).
    pub public_key_only: usize,
    /// Devices with a key rotation under way.
    pub rotations_pending: usize,
    /// Whether the server's key is set.
    pub server_key: bool,
    /// When the server's key was made (Unix seconds), when known.
    pub server_key_created_at: Option<i64>,
    /// Until when the server's previous key is still accepted, during a rotation.
    pub server_retiring_until: Option<i64>,
}

fn setting(tx: &rusqlite::Connection, key: &str) -> Result<Option<zeroize::Zeroizing<String>>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?
        .map(zeroize::Zeroizing::new))
}

fn put_setting(tx: &Transaction<'_>, key: &str, value: &str) -> Result<(), StoreError> {
    tx.prepare_cached("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")?
        .execute(params![key, value])?;
    Ok(())
}

fn delete_setting(tx: &Transaction<'_>, key: &str) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM settings WHERE key = ?1")?.execute([key])?;
    Ok(())
}

fn data_key_error(source: crate::keyring::KeyringError) -> StoreError {
    StoreError::Secret { what: "the store's data key".to_owned(), reason: source }
}

impl SqliteStore {
    /// Whether this handle holds the data key.
    pub fn is_unlocked(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether the store has a wrapped data key (it was unlocked at least once).
    pub fn is_protected(&self) -> Result<bool, StoreError> {
        Ok(setting(&self.conn, WRAPPED_KEY)?.is_some())
    }

    /// Unlocks the store with `passphrase`: unwraps its data key, or creates and wraps one with
    /// `params` if it has none, and seals any secret still in plain text. A wrong passphrase
    /// or a damaged wrapped key fails with [`StoreError::Secret`] and changes nothing.
    pub fn unlock(&mut self, passphrase: &Passphrase, params: KdfParams, actor: &Actor) -> Result<Unlocked, StoreError> {
        let (key, created, sealed_now) = match setting(&self.conn, WRAPPED_KEY)? {
            Some(text) => match (unwrap_text(&text, passphrase), setting(&self.conn, STAGED_KEY)?) {
                // A passphrase change was interrupted after the new passphrase was put in place.
                (Err(e), Some(staged)) => (unwrap_text(&staged, passphrase).map_err(|_| e)?, false, 0),
                (r, _) => (r?, false, 0),
            },
            None => {
                let fresh = DataKey::generate(&mut OsRng);
                let wrapped = fresh.wrap(passphrase, params, &mut OsRng).map_err(data_key_error)?.to_string();
                let at = now();
                // Protecting the store and sealing what it holds in plain text are one
                // transaction: a protected store never holds a plain key. Another process may
                // have protected it meanwhile: the key in the file wins then.
                self.write(|tx| match setting(tx, WRAPPED_KEY)? {
                    Some(text) => Ok((unwrap_text(&text, passphrase)?, false, 0)),
                    None => {
                        put_setting(tx, WRAPPED_KEY, &wrapped)?;
                        audit(tx, actor, "keys.protect", "store", json!({ "kdf": params_text(&params) }), at)?;
                        let sealed = seal_plaintext(tx, &fresh, actor, at)?;
                        Ok((fresh, true, sealed))
                    }
                })?
            }
        };
        self.keys = Some(key);
        self.protected = true;
        Ok(Unlocked { created, sealed_now })
    }

    /// Wraps the data key under a new passphrase. Nothing else is re-encrypted. Needs the store
    /// unlocked.
    pub fn change_passphrase(&mut self, new: &Passphrase, params: KdfParams, actor: &Actor) -> Result<(), StoreError> {
        self.stage_passphrase(new, params)?;
        self.commit_passphrase(actor)
    }

    /// First step of a passphrase change whose new passphrase is then written somewhere (a
    /// file): the data key is also wrapped under `new`, so that until
    /// [`SqliteStore::commit_passphrase`] either passphrase unlocks the store, whatever
    /// moment a crash strikes at.
    pub fn stage_passphrase(&mut self, new: &Passphrase, params: KdfParams) -> Result<(), StoreError> {
        let key = self.keys.as_ref().ok_or(StoreError::Locked)?;
        let wrapped = key.wrap(new, params, &mut OsRng).map_err(data_key_error)?.to_string();
        self.write(|tx| put_setting(tx, STAGED_KEY, &wrapped))
    }

    /// Last step of a passphrase change: the staged wrapping replaces the old one, and the old
    /// passphrase no longer unlocks the store.
    pub fn commit_passphrase(&mut self, actor: &Actor) -> Result<(), StoreError> {
        let at = now();
        self.write(|tx| {
            let staged = setting(tx, STAGED_KEY)?
                .ok_or_else(|| StoreError::Rotation("no passphrase change is under way: start one with `vpn keys passphrase`".into()))?;
            let kdf = WrappedKey::from_str(&staged).map(|w| params_text(&w.params())).unwrap_or_default();
            put_setting(tx, WRAPPED_KEY, &staged)?;
            delete_setting(tx, STAGED_KEY)?;
            audit(tx, actor, "keys.passphrase", "store", json!({ "kdf": kdf }), at)
        })
    }

    /// How the store keeps its keys.
    pub fn key_status(&self) -> Result<KeyStatus, StoreError> {
        let wrapped = setting(&self.conn, WRAPPED_KEY)?;
        let kdf = wrapped
            .as_ref()
            .map(|text| WrappedKey::from_str(text).map(|w| params_text(&w.params())).unwrap_or_else(|_| "unreadable".to_owned()));
        let (mut sealed, mut plaintext) = (0, 0);
        let mut count = |v: Option<String>| match v {
            Some(s) if is_sealed(&s) => sealed += 1,
            Some(_) => plaintext += 1,
            None => {}
        };
        let mut stmt = self.conn.prepare("SELECT private_key, preshared_key, next_private_key, next_preshared_key FROM devices")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            for i in 0..4 {
                count(r.get(i)?);
            }
        }
        for name in [SERVER_KEY, RETIRING_KEY] {
            count(setting(&self.conn, name)?.map(|v| v.to_string()));
        }
        let (public_key_only, rotations_pending): (usize, usize) = self.conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE private_key IS NULL), COUNT(*) FILTER (WHERE next_public_key IS NOT NULL) FROM devices",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let number = |name| -> Result<Option<i64>, StoreError> { Ok(setting(&self.conn, name)?.and_then(|v| v.parse().ok())) };
        Ok(KeyStatus {
            protected: wrapped.is_some(),
            kdf,
            unlocked: self.keys.is_some(),
            sealed,
            plaintext,
            public_key_only,
            rotations_pending,
            server_key: setting(&self.conn, SERVER_KEY)?.is_some(),
            server_key_created_at: number(SERVER_KEY_CREATED)?,
            server_retiring_until: number(RETIRING_UNTIL)?,
        })
    }

    /// The server's private key, if set.
    pub(super) fn read_server_key(&self) -> Result<Option<PrivateKey>, StoreError> {
        match setting(&self.conn, SERVER_KEY)? {
            Some(text) => Ok(Some(PrivateKey::from_bytes(*secret::open(
                self.keys.as_ref(),
                &text,
                Record::ServerKey,
                "the server's private key",
                !self.protected,
            )?))),
            None => Ok(None),
        }
    }

    /// Sets (or replaces outright) the server's private key.
    pub(super) fn write_server_key(&mut self, key: &PrivateKey, actor: &Actor) -> Result<(), StoreError> {
        let at = now();
        let keys = self.keys.as_ref();
        super::write_tx(&mut self.conn, |tx| put_server_key(tx, keys, key, actor, at))?;
        self.after_write();
        Ok(())
    }

    /// Rotates the server's key: `new` becomes the key, and the old one is still accepted for
    /// handshakes from clients that have not taken their new config until `retire_at` (Unix
    /// seconds). Replaces a previous retiring key.
    pub(super) fn rotate_server_key_to(&mut self, new: &PrivateKey, retire_at: i64, actor: &Actor) -> Result<(), StoreError> {
        let old = self
            .read_server_key()?
            .ok_or_else(|| StoreError::Rotation("the server has no key to rotate yet: run `vpn init` or `vpn up` first".into()))?;
        let keys = self.keys.as_ref();
        let sealed_new = secret::seal(keys, new.as_bytes(), Record::ServerKey)?;
        let sealed_old = secret::seal(keys, old.as_bytes(), Record::RetiringServerKey)?;
        let at = now();
        self.write(|tx| {
            put_setting(tx, SERVER_KEY, &sealed_new)?;
            put_setting(tx, SERVER_KEY_CREATED, &at.to_string())?;
            put_setting(tx, RETIRING_KEY, &sealed_old)?;
            put_setting(tx, RETIRING_UNTIL, &retire_at.to_string())?;
            let details = json!({
                "old_public_key": old.public_key().to_base64(),
                "new_public_key": new.public_key().to_base64(),
                "old_accepted_until": retire_at,
            });
            audit(tx, actor, "server.key.rotate", "server", details, at)
        })
    }

    /// The server's previous key and until when it is accepted, during a rotation.
    pub(super) fn read_retiring_key(&self) -> Result<Option<(PrivateKey, i64)>, StoreError> {
        let Some(until) = setting(&self.conn, RETIRING_UNTIL)? else { return Ok(None) };
        let until: i64 = until.parse().map_err(|_| StoreError::Corrupt("the server's retiring-key deadline is unreadable".into()))?;
        let Some(text) = setting(&self.conn, RETIRING_KEY)? else {
            return Err(StoreError::Corrupt("the server's retiring key is missing".into()));
        };
        let key = PrivateKey::from_bytes(*secret::open(
            self.keys.as_ref(),
            &text,
            Record::RetiringServerKey,
            "the server's previous key",
            !self.protected,
        )?);
        Ok(Some((key, until)))
    }

    /// Forgets the server's previous key: clients still using it can no longer connect.
    pub(super) fn drop_retiring_key(&mut self, reason: &str, actor: &Actor) -> Result<bool, StoreError> {
        let at = now();
        self.write(|tx| {
            if setting(tx, RETIRING_KEY)?.is_none() {
                return Ok(false);
            }
            delete_setting(tx, RETIRING_KEY)?;
            delete_setting(tx, RETIRING_UNTIL)?;
            audit(tx, actor, "server.key.retire", "server", json!({ "reason": reason }), at)?;
            Ok(true)
        })
    }

    /// When the server's current key was made, when known.
    pub(super) fn read_server_key_created(&self) -> Result<Option<i64>, StoreError> {
        Ok(setting(&self.conn, SERVER_KEY_CREATED)?.and_then(|v| v.parse().ok()))
    }
}

/// Sets the server's key inside `tx`, with its audit row.
pub(super) fn put_server_key(
    tx: &Transaction<'_>,
    keys: Option<&DataKey>,
    key: &PrivateKey,
    actor: &Actor,
    at: i64,
) -> Result<(), StoreError> {
    let sealed = secret::seal(keys, key.as_bytes(), Record::ServerKey)?;
    let replaced = setting(tx, SERVER_KEY)?.is_some();
    put_setting(tx, SERVER_KEY, &sealed)?;
    put_setting(tx, SERVER_KEY_CREATED, &at.to_string())?;
    let details = json!({ "public_key": key.public_key().to_base64(), "replaced": replaced });
    audit(tx, actor, "server.key", "server", details, at)
}

/// Seals, inside `tx`, every secret still in plain text (a store from before encryption).
/// Returns how many.
fn seal_plaintext(tx: &Transaction<'_>, keys: &DataKey, actor: &Actor, at: i64) -> Result<usize, StoreError> {
    let reseal = |stored: Option<String>, record: Record<'_>, what: &str| -> Result<Option<String>, StoreError> {
        match stored {
            Some(s) if !is_sealed(&s) => match secret::open(None, &s, record, what, true) {
                Ok(plain) => Ok(Some(secret::seal(Some(keys), &plain, record)?)),
                // Neither sealed nor a plain key (damaged): left as it is, so that reading that
                // one record fails, naming it, instead of the whole unlock.
                Err(e) => {
                    tracing::warn!(error = %e, "a damaged key was left unsealed");
                    Ok(None)
                }
            },
            _ => Ok(None),
        }
    };
    let mut updates: Vec<(i64, [Option<String>; 4])> = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT id, public_key, private_key, preshared_key, next_public_key, next_private_key, next_preshared_key FROM devices",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let pk: String = r.get(1)?;
            let next_pk: Option<String> = r.get(4)?;
            let what = format!("a key of device #{id}");
            let mut u =
                [reseal(r.get(2)?, Record::DevicePrivate(&pk), &what)?, reseal(r.get(3)?, Record::DevicePsk(&pk), &what)?, None, None];
            if let Some(npk) = &next_pk {
                u[2] = reseal(r.get(5)?, Record::DevicePrivate(npk), &what)?;
                u[3] = reseal(r.get(6)?, Record::DevicePsk(npk), &what)?;
            }
            if u.iter().any(Option::is_some) {
                updates.push((id, u));
            }
        }
    }
    let mut count = 0;
    for (id, u) in &updates {
        let cols = ["private_key", "preshared_key", "next_private_key", "next_preshared_key"];
        for (col, v) in cols.iter().zip(u) {
            if let Some(v) = v {
                tx.execute(&format!("UPDATE devices SET {col} = ?1 WHERE id = ?2"), params![v, id])?;
                count += 1;
            }
        }
    }
    for (name, record) in [(SERVER_KEY, Record::ServerKey), (RETIRING_KEY, Record::RetiringServerKey)] {
        if let Some(v) = setting(tx, name)? {
            if let Some(sealed) = reseal(Some(v.to_string()), record, "the server's key")? {
                put_setting(tx, name, &sealed)?;
                count += 1;
            }
        }
    }
    if count > 0 {
        audit(tx, actor, "keys.seal", "store", json!({ "sealed": count }), at)?;
    }
    Ok(count)
}

fn unwrap_text(text: &str, passphrase: &Passphrase) -> Result<DataKey, StoreError> {
    let wrapped = WrappedKey::from_str(text).map_err(data_key_error)?;
    DataKey::unwrap(&wrapped, passphrase).map_err(data_key_error)
}

fn params_text(p: &KdfParams) -> String {
    format!("argon2id m={} KiB t={} p={}", p.m_cost_kib, p.t_cost, p.p_cost)
}
