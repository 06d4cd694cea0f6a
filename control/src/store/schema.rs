//! The database schema and its migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`. [`MIGRATIONS`]`[i]` takes the schema from
//! version `i` to `i + 1`; a new version is a new entry appended at the end (never an edit of an
//! old one). All pending migrations run in one `BEGIN IMMEDIATE` transaction together with the
//! version bump, so a failure leaves the file as it was, and two processes opening a new file at
//! once migrate it once.
//!
//! Encodings:
//! - booleans are 0/1, times Unix seconds;
//! - public keys are base64 text; private keys and PSKs are sealed text (see [`super::secret`]);
//! - an IPv4 address is its 32-bit value, so that a free address is found with an index scan;
//! - an IPv6 address is two 64-bit halves, `ipv6_hi` and `ipv6_lo`, each stored as
//!   `half ^ 2^63` reinterpreted as a signed integer: SQLite integers are signed, and this
//!   mapping keeps the unsigned order (and `+ 1`) so the same index scan works.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Schema version 1: settings, users, devices, audit.
const V1: &[&str] = &[
    "CREATE TABLE settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )",
    "CREATE TABLE users (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at INTEGER NOT NULL
    )",
    "CREATE TABLE devices (
        id            INTEGER PRIMARY KEY,
        user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name          TEXT NOT NULL,
        public_key    TEXT NOT NULL UNIQUE,
        private_key   TEXT NOT NULL,
        preshared_key TEXT NOT NULL,
        ipv4          INTEGER UNIQUE CHECK (ipv4 BETWEEN 0 AND 4294967295),
        ipv6_hi       INTEGER,
        ipv6_lo       INTEGER,
        enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at    INTEGER NOT NULL,
        expires_at    INTEGER,
        UNIQUE (user_id, name),
        UNIQUE (ipv6_hi, ipv6_lo),
        CHECK ((ipv6_hi IS NULL) = (ipv6_lo IS NULL)),
        CHECK (ipv4 IS NOT NULL OR ipv6_hi IS NOT NULL)
    )",
    "CREATE TABLE audit (
        id      INTEGER PRIMARY KEY,
        at      INTEGER NOT NULL,
        who     TEXT NOT NULL,
        origin  TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        details TEXT NOT NULL CHECK (json_valid(details))
    )",
];

/// Schema version 2: keys at rest, rotation and imports.
///
/// - `devices.private_key` may be NULL: a device imported from a wg-quick server config has only
///   its public key here (its private key never left the client);
/// - `devices.key_created_at`: when the current key pair was made, for the rotation policy;
/// - `devices.next_*`: a pending rotation: the new key pair, kept beside the old one until the
///   client uses it or `rotate_by` passes, whichever comes first;
/// - `imports`: one row per bulk import, and `import_id` on what it added, for resume and
///   rollback.
///
/// SQLite cannot relax a `NOT NULL` in place, so `devices` is rebuilt (nothing references it).
/// Existing keys stay as they are here; the store seals any plain-text key the first time it is
/// unlocked (see `super::secret`).
const V2: &[&str] = &[
    "CREATE TABLE imports (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        total       INTEGER NOT NULL,
        done        INTEGER NOT NULL DEFAULT 0,
        state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'rolled_back')),
        started_at  INTEGER NOT NULL,
        finished_at INTEGER,
        who         TEXT NOT NULL
    )",
    "ALTER TABLE users ADD COLUMN import_id INTEGER REFERENCES imports (id) ON DELETE SET NULL",
    "CREATE TABLE devices_v2 (
        id                 INTEGER PRIMARY KEY,
        user_id            INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name               TEXT NOT NULL,
        public_key         TEXT NOT NULL UNIQUE,
        private_key        TEXT,
        preshared_key      TEXT NOT NULL,
        ipv4               INTEGER UNIQUE CHECK (ipv4 BETWEEN 0 AND 4294967295),
        ipv6_hi            INTEGER,
        ipv6_lo            INTEGER,
        enabled            INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
        created_at         INTEGER NOT NULL,
        expires_at         INTEGER,
        key_created_at     INTEGER NOT NULL,
        next_public_key    TEXT UNIQUE,
        next_private_key   TEXT,
        next_preshared_key TEXT,
        rotate_by          INTEGER,
        import_id          INTEGER REFERENCES imports (id) ON DELETE SET NULL,
        UNIQUE (user_id, name),
        UNIQUE (ipv6_hi, ipv6_lo),
        CHECK ((ipv6_hi IS NULL) = (ipv6_lo IS NULL)),
        CHECK (ipv4 IS NOT NULL OR ipv6_hi IS NOT NULL),
        CHECK ((next_public_key IS NULL) = (rotate_by IS NULL)),
        CHECK ((next_public_key IS NULL) = (next_preshared_key IS NULL))
    )",
    "INSERT INTO devices_v2 (id, user_id, name, public_key, private_key, preshared_key, ipv4, ipv6_hi, ipv6_lo, enabled,
                             created_at, expires_at, key_created_at)
     SELECT id, user_id, name, public_key, private_key, preshared_key, ipv4, ipv6_hi, ipv6_lo, enabled,
            created_at, expires_at, created_at FROM devices",
    "DROP TABLE devices",
    "ALTER TABLE devices_v2 RENAME TO devices",
    "CREATE INDEX users_import ON users (import_id)",
    // When the server's key was made, for the rotation policy: its last `server.key` audit row.
    "INSERT INTO settings (key, value)
     SELECT 'server_key_created_at', CAST(COALESCE((SELECT MAX(at) FROM audit WHERE action = 'server.key'), strftime('%s', 'now')) AS TEXT)
     WHERE EXISTS (SELECT 1 FROM settings WHERE key = 'server_private_key')",
];

/// Every migration, in order: entry `i` takes the schema from version `i` to `i + 1`. Each is a
/// list of SQL statements.
pub(crate) const MIGRATIONS: &[&[&str]] = &[V1, V2];

/// The schema version this build writes.
pub(crate) const CURRENT: u32 = MIGRATIONS.len() as u32;

/// The version recorded in the file.
pub(crate) fn version(conn: &Connection) -> Result<u32, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the schema up to [`CURRENT`]. Returns the version it found.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32, StoreError> {
    // A quick look without the write lock: an up-to-date store (the usual case) needs none.
    let found = version(conn)?;
    if found == CURRENT {
        return Ok(found);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read again under the lock: another process may have migrated meanwhile.
    let found = version(&tx)?;
    if found > CURRENT {
        return Err(StoreError::SchemaTooNew { found, supported: CURRENT });
    }
    for (i, steps) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        for step in *steps {
            tx.execute_batch(step)?;
        }
        tracing::info!(version = i + 1, "store schema migrated");
    }
    tx.pragma_update(None, "user_version", CURRENT)?;
    tx.commit()?;
    Ok(found)
}
