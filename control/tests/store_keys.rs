//! Keys at rest in the SQLite store: a file-backed store opens locked, unlocks with its
//! passphrase only, never writes a private key or PSK in the clear, refuses tampered or moved
//! values, survives a passphrase change (and a crash in the middle of one), seals the plain keys
//! of a version-1 store at its first unlock, and reports how its keys are kept.

use std::path::{Path, PathBuf};

use rand_core::OsRng;
use rusqlite::Connection;
use vpn_control::keyring::{is_sealed, KdfParams, KeyringError, Passphrase};
use vpn_control::store::{Actor, DeviceSecrets, NewDevice, NewKeys, Pools, SqliteStore, Store, StoreError};
use vpn_crypto::{PresharedKey, PrivateKey};

fn actor() -> Actor {
    Actor::new("tester", "test")
}

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.as_bytes().to_vec())
}

fn a() -> Passphrase {
    pass("passphrase A")
}

fn b() -> Passphrase {
    pass("passphrase B")
}

fn pools() -> Pools {
    Pools { ipv4: Some("10.8.0.0/24".parse().unwrap()), ipv6: Some("fd00:8::/64".parse().unwrap()) }
}

fn random_secrets() -> DeviceSecrets {
    DeviceSecrets::generate(&mut OsRng)
}

/// A new store file in `dir`, unlocked with `A`.
fn create(dir: &Path) -> (PathBuf, SqliteStore) {
    let path = dir.join("store.db");
    let mut s = SqliteStore::open(&path).unwrap();
    assert!(!s.is_unlocked());
    assert!(!s.is_protected().unwrap());
    let u = s.unlock(&a(), KdfParams::TEST, &actor()).unwrap();
    assert!(u.created, "the first unlock creates the data key");
    assert_eq!(u.sealed_now, 0);
    assert!(s.is_unlocked() && s.is_protected().unwrap());
    (path, s)
}

/// `alice/phone`, `alice/laptop` and `bob/tablet` with fresh keys, and a server key. Returns
/// every device's secrets, by label, and the server key.
fn populate(s: &mut SqliteStore) -> (Vec<(String, String, DeviceSecrets)>, PrivateKey) {
    s.add_user("alice", &actor()).unwrap();
    s.add_user("bob", &actor()).unwrap();
    let mut out = Vec::new();
    for (user, name) in [("alice", "phone"), ("alice", "laptop"), ("bob", "tablet")] {
        let sec = random_secrets();
        s.add_device(NewDevice::generated(user, name, sec.clone()), &pools(), &actor()).unwrap();
        out.push((user.to_owned(), name.to_owned(), sec));
    }
    let server = PrivateKey::generate(&mut OsRng);
    s.set_server_key(&server, &actor()).unwrap();
    (out, server)
}

/// Every table's rows as text, to compare a store before and after something that must change
/// nothing.
fn dump(path: &Path) -> String {
    let c = Connection::open(path).unwrap();
    let mut out = String::new();
    for table in ["settings", "users", "devices", "audit", "imports"] {
        let mut stmt = c.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).unwrap();
        let n = stmt.column_count();
        let mut rows = stmt.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            out.push_str(table);
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i).unwrap();
                out.push_str(&format!(" {v:?}"));
            }
            out.push('\n');
        }
    }
    out
}

/// The bytes of the database file and of its write-ahead log, if any.
fn raw_bytes(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if let Ok(w) = std::fs::read(PathBuf::from(wal)) {
        bytes.extend_from_slice(&w);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if the file (or its WAL) holds `secret` in base64 or as raw bytes.
fn assert_absent(bytes: &[u8], secret: &[u8; 32], what: &str) {
    let b64 = vpn_crypto::keys::to_base64(secret);
    assert!(!contains(bytes, b64.as_bytes()), "{what} is in the store file in base64");
    assert!(!contains(bytes, secret), "{what} is in the store file as raw bytes");
}

/// The stored text of one column of a device, read behind the store's back.
fn column(path: &Path, name: &str, col: &str) -> Option<String> {
    Connection::open(path).unwrap().query_row(&format!("SELECT {col} FROM devices WHERE name = ?1"), [name], |r| r.get(0)).unwrap()
}

fn set_column(path: &Path, name: &str, col: &str, value: &str) {
    let n = Connection::open(path).unwrap().execute(&format!("UPDATE devices SET {col} = ?1 WHERE name = ?2"), [value, name]).unwrap();
    assert_eq!(n, 1);
}

fn set_setting(path: &Path, key: &str, value: &str) {
    let n = Connection::open(path).unwrap().execute("UPDATE settings SET value = ?1 WHERE key = ?2", [value, key]).unwrap();
    assert_eq!(n, 1);
}

/// Changes one character in the middle of a stored sealed value, to another base64 character.
fn flip_one_char(stored: &str) -> String {
    let mut chars: Vec<char> = stored.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// An error about one device's secret must name the device and carry no key material.
fn assert_secret_error(e: &StoreError, label: &str, secrets: &DeviceSecrets) {
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Secret { .. }), "{e:?}");
    assert!(msg.contains(label), "the error does not name {label}: {msg}");
    assert!(!msg.contains(&secrets.private_key.as_ref().unwrap().to_base64()) && !msg.contains(&secrets.preshared_key.to_base64()));
    assert!(!format!("{e:?}").contains(&secrets.preshared_key.to_base64()));
}

#[test]
fn reopened_store_is_locked_until_the_right_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    let (devices, server) = populate(&mut s);
    drop(s);

    let mut s = SqliteStore::open(&path).unwrap();
    assert!(!s.is_unlocked());
    assert!(s.is_protected().unwrap());
    // Secrets need the passphrase...
    assert!(matches!(s.device_secrets("alice", "phone"), Err(StoreError::Locked)));
    assert!(matches!(s.server_key(), Err(StoreError::Locked)));
    let e = s.add_device(NewDevice::generated("alice", "new", random_secrets()), &pools(), &actor()).unwrap_err();
    assert!(matches!(e, StoreError::Locked), "{e:?}");
    assert!(e.to_string().contains("passphrase"), "{e}");
    // ...the rest does not.
    let labels: Vec<String> = s.devices(None).unwrap().iter().map(|d| d.label()).collect();
    assert_eq!(labels, ["alice/laptop", "alice/phone", "bob/tablet"]);
    assert_eq!(s.users().unwrap().len(), 2);
    assert!(!s.set_device_enabled("alice", "laptop", false, &actor()).unwrap().enabled);
    assert!(s.set_device_enabled("alice", "laptop", true, &actor()).unwrap().enabled);
    drop(s);

    // A wrong passphrase: a clear error, still locked, nothing written.
    let before = dump(&path);
    let mut s = SqliteStore::open(&path).unwrap();
    let e = s.unlock(&pass("not the passphrase"), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::WrongPassphrase, .. }), "{e:?}");
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    assert!(!e.to_string().contains("not the passphrase"));
    assert!(!s.is_unlocked());
    assert!(matches!(s.device_secrets("alice", "phone"), Err(StoreError::Locked)));
    // Not even with the KDF parameters of a new store.
    assert!(s.unlock(&pass("not the passphrase"), KdfParams::DEFAULT, &actor()).is_err());
    drop(s);
    assert_eq!(dump(&path), before, "a failed unlock changed the store");

    // The right one.
    let mut s = SqliteStore::open(&path).unwrap();
    let u = s.unlock(&a(), KdfParams::TEST, &actor()).unwrap();
    assert!(!u.created);
    assert_eq!(u.sealed_now, 0);
    assert!(s.is_unlocked());
    for (user, name, sec) in &devices {
        assert_eq!(&s.device_secrets(user, name).unwrap(), sec, "{user}/{name}");
    }
    assert_eq!(s.server_key().unwrap(), Some(server));
    // Unlocked, it can add devices again.
    s.add_device(NewDevice::generated("alice", "new", random_secrets()), &pools(), &actor()).unwrap();
}

#[test]
fn file_never_holds_a_key_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    let (devices, server) = populate(&mut s);
    // A pending rotation, a public-key-only device and a retiring server key too.
    let next = random_secrets();
    s.rotate_device("alice", "phone", &next, i64::MAX, &actor()).unwrap();
    let imported_psk = PresharedKey::generate(&mut OsRng);
    let imported_pub = PrivateKey::generate(&mut OsRng).public_key();
    let new = NewDevice {
        keys: NewKeys::PublicOnly { public_key: imported_pub, preshared_key: imported_psk.clone() },
        ..NewDevice::generated("bob", "imported", random_secrets())
    };
    s.add_device(new, &pools(), &actor()).unwrap();
    let server2 = PrivateKey::generate(&mut OsRng);
    s.rotate_server_key(&server2, i64::MAX, &actor()).unwrap();

    let mut secrets: Vec<([u8; 32], String)> = Vec::new();
    for (user, name, sec) in devices.iter().map(|(u, n, s)| (u.as_str(), n.as_str(), s)).chain([("alice", "phone next", &next)]) {
        secrets.push((*sec.private_key.as_ref().unwrap().as_bytes(), format!("the private key of {user}/{name}")));
        secrets.push((*sec.preshared_key.as_bytes(), format!("the PSK of {user}/{name}")));
    }
    secrets.push((*imported_psk.as_bytes(), "the PSK of bob/imported".into()));
    secrets.push((*server.as_bytes(), "the old server key".into()));
    secrets.push((*server2.as_bytes(), "the server key".into()));

    // While the store is open: the main file and the WAL as they are.
    let bytes = raw_bytes(&path);
    assert!(bytes.len() > 4096);
    for (secret, what) in &secrets {
        assert_absent(&bytes, secret, what);
    }
    // Every stored secret is sealed.
    let status = s.key_status().unwrap();
    assert_eq!(status.plaintext, 0);
    assert_eq!(status.sealed, 3 * 2 + 2 + 1 + 2);
    // After a full checkpoint and close, the main file alone.
    drop(s);
    Connection::open(&path).unwrap().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let bytes = raw_bytes(&path);
    for (secret, what) in &secrets {
        assert_absent(&bytes, secret, what);
    }
    // And the values are still there, readable with the passphrase.
    let mut s = SqliteStore::open(&path).unwrap();
    s.unlock(&a(), KdfParams::TEST, &actor()).unwrap();
    assert_eq!(s.pending_secrets("alice", "phone").unwrap(), next);
    assert_eq!(s.device_secrets("bob", "imported").unwrap(), DeviceSecrets { private_key: None, preshared_key: imported_psk });
    assert_eq!(s.retiring_server_key().unwrap().map(|(k, _)| k), Some(server));
}

/// A store with devices, closed; returns its path and the devices' secrets.
fn closed_store(dir: &Path) -> (PathBuf, Vec<(String, String, DeviceSecrets)>) {
    let (path, mut s) = create(dir);
    let (devices, _) = populate(&mut s);
    (path, devices)
}

fn unlocked(path: &Path) -> SqliteStore {
    let mut s = SqliteStore::open(path).unwrap();
    s.unlock(&a(), KdfParams::TEST, &actor()).unwrap();
    s
}

fn secrets_of<'a>(devices: &'a [(String, String, DeviceSecrets)], name: &str) -> &'a DeviceSecrets {
    &devices.iter().find(|(_, n, _)| n == name).unwrap().2
}

#[test]
fn flipped_character_is_refused_and_names_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let (path, devices) = closed_store(dir.path());
    let stored = column(&path, "phone", "private_key").unwrap();
    assert!(is_sealed(&stored));
    set_column(&path, "phone", "private_key", &flip_one_char(&stored));

    let s = unlocked(&path);
    let e = s.device_secrets("alice", "phone").unwrap_err();
    assert_secret_error(&e, "alice/phone", secrets_of(&devices, "phone"));
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Tampered { .. }, .. }), "{e:?}");
    assert!(e.to_string().contains("private key"), "{e}");
    // The other devices are unaffected.
    assert_eq!(&s.device_secrets("alice", "laptop").unwrap(), secrets_of(&devices, "laptop"));
    assert_eq!(&s.device_secrets("bob", "tablet").unwrap(), secrets_of(&devices, "tablet"));

    // The same for a PSK.
    drop(s);
    let psk = column(&path, "tablet", "preshared_key").unwrap();
    set_column(&path, "tablet", "preshared_key", &flip_one_char(&psk));
    let s = unlocked(&path);
    let e = s.device_secrets("bob", "tablet").unwrap_err();
    assert_secret_error(&e, "bob/tablet", secrets_of(&devices, "tablet"));
    assert!(e.to_string().contains("pre-shared key"), "{e}");
}

#[test]
fn truncated_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, devices) = closed_store(dir.path());
    let stored = column(&path, "phone", "private_key").unwrap();
    for cut in [stored.len() - 1, stored.len() / 2, 3] {
        set_column(&path, "phone", "private_key", &stored[..cut]);
        let s = unlocked(&path);
        let e = s.device_secrets("alice", "phone").unwrap_err();
        assert_secret_error(&e, "alice/phone", secrets_of(&devices, "phone"));
        assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Truncated { .. }, .. }), "cut at {cut}: {e:?}");
    }
    // Cut into its prefix, or emptied, it is neither sealed nor a plain key: reading it fails,
    // naming the device, but the store still unlocks (the sealing of legacy plain keys at unlock
    // leaves it alone) and the other devices are readable.
    for cut in [2, 1, 0] {
        set_column(&path, "phone", "private_key", &stored[..cut]);
        let s = unlocked(&path);
        let e = s.device_secrets("alice", "phone").unwrap_err();
        assert!(matches!(&e, StoreError::Corrupt(_)), "cut at {cut}: {e:?}");
        assert!(e.to_string().contains("alice/phone"), "{e}");
        assert_eq!(&s.device_secrets("alice", "laptop").unwrap(), secrets_of(&devices, "laptop"));
        assert_eq!(column(&path, "phone", "private_key").as_deref(), Some(&stored[..cut]));
    }
    // Put back, it opens again.
    set_column(&path, "phone", "private_key", &stored);
    assert_eq!(&unlocked(&path).device_secrets("alice", "phone").unwrap(), secrets_of(&devices, "phone"));
}

#[test]
fn swapped_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, devices) = closed_store(dir.path());
    let phone = column(&path, "phone", "private_key").unwrap();
    let laptop = column(&path, "laptop", "private_key").unwrap();
    set_column(&path, "phone", "private_key", &laptop);
    set_column(&path, "laptop", "private_key", &phone);
    let s = unlocked(&path);
    for name in ["phone", "laptop"] {
        let e = s.device_secrets("alice", name).unwrap_err();
        assert_secret_error(&e, &format!("alice/{name}"), secrets_of(&devices, name));
        assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Tampered { .. }, .. }), "{e:?}");
    }
    drop(s);

    // A device's PSK in the place of its private key (same device, other record).
    set_column(&path, "phone", "private_key", &phone);
    set_column(&path, "laptop", "private_key", &laptop);
    let psk = column(&path, "tablet", "preshared_key").unwrap();
    set_column(&path, "tablet", "private_key", &psk);
    let e = unlocked(&path).device_secrets("bob", "tablet").unwrap_err();
    assert_secret_error(&e, "bob/tablet", secrets_of(&devices, "tablet"));

    // The server key moved into a device's place does not open either.
    let server: String = Connection::open(&path)
        .unwrap()
        .query_row("SELECT value FROM settings WHERE key = 'server_private_key'", [], |r| r.get(0))
        .unwrap();
    set_column(&path, "tablet", "private_key", &server);
    let e = unlocked(&path).device_secrets("bob", "tablet").unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Tampered { .. }, .. }), "{e:?}");
}

#[test]
fn damaged_data_key_fails_unlock_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _devices) = closed_store(dir.path());
    let wrapped: String =
        Connection::open(&path).unwrap().query_row("SELECT value FROM settings WHERE key = 'data_key'", [], |r| r.get(0)).unwrap();

    // Garbage in its place.
    set_setting(&path, "data_key", "garbage, not a wrapped key");
    let mut s = SqliteStore::open(&path).unwrap();
    let e = s.unlock(&a(), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Malformed { .. }, .. }), "{e:?}");
    assert!(e.to_string().contains("data key"), "{e}");
    assert!(!s.is_unlocked());
    assert!(matches!(s.device_secrets("alice", "phone"), Err(StoreError::Locked)));
    drop(s);

    // Cut short.
    set_setting(&path, "data_key", &wrapped[..wrapped.len() - 10]);
    let e = SqliteStore::open(&path).unwrap().unlock(&a(), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Truncated { .. }, .. }), "{e:?}");

    // The sealed data key altered: the passphrase is right but the key does not authenticate.
    let (head, body) = wrapped.rsplit_once('$').unwrap();
    set_setting(&path, "data_key", &format!("{head}${}", flip_one_char(body)));
    let e = SqliteStore::open(&path).unwrap().unlock(&a(), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::Damaged, .. }), "{e:?}");
    assert!(e.to_string().contains("damaged"), "{e}");

    // Restored, all is well.
    set_setting(&path, "data_key", &wrapped);
    unlocked(&path);
}

#[test]
fn truncated_file_fails_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    populate(&mut s);
    // Enough rows for the tables to span many pages.
    for i in 0..200 {
        s.add_device(NewDevice::generated("bob", &format!("d{i}"), random_secrets()), &pools(), &actor()).unwrap();
    }
    drop(s);
    // No WAL: everything is in the main file.
    let c = Connection::open(&path).unwrap();
    let mode: String = c.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete");
    drop(c);
    assert!(!dir.path().join("store.db-wal").exists());
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len >= 8 * 4096, "{len}");
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();

    let outcome = SqliteStore::open(&path).and_then(|mut s| {
        s.unlock(&a(), KdfParams::TEST, &actor())?;
        Ok(s)
    });
    let e = outcome.expect_err("a store cut in half opened and unlocked");
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("corrupt"), "{e}");
}

#[test]
fn passphrase_change() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    let (devices, server) = populate(&mut s);
    let sealed_before = column(&path, "phone", "private_key");
    s.change_passphrase(&b(), KdfParams::TEST, &actor()).unwrap();
    assert_eq!(s.audit(1).unwrap()[0].action, "keys.passphrase");
    drop(s);
    // Nothing was re-encrypted: only the wrapping changed.
    assert_eq!(column(&path, "phone", "private_key"), sealed_before);

    let mut s = SqliteStore::open(&path).unwrap();
    let e = s.unlock(&a(), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::WrongPassphrase, .. }), "{e:?}");
    assert!(!s.is_unlocked());
    s.unlock(&b(), KdfParams::TEST, &actor()).unwrap();
    for (user, name, sec) in &devices {
        assert_eq!(&s.device_secrets(user, name).unwrap(), sec);
    }
    assert_eq!(s.server_key().unwrap(), Some(server));
    drop(s);

    // Changing it needs the store unlocked.
    let mut s = SqliteStore::open(&path).unwrap();
    assert!(matches!(s.change_passphrase(&a(), KdfParams::TEST, &actor()), Err(StoreError::Locked)));
    assert!(matches!(s.stage_passphrase(&a(), KdfParams::TEST), Err(StoreError::Locked)));
    // And committing without a staged change is refused.
    s.unlock(&b(), KdfParams::TEST, &actor()).unwrap();
    assert!(s.commit_passphrase(&actor()).is_err());
}

#[test]
fn staged_passphrase_change_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    let (devices, server) = populate(&mut s);
    s.stage_passphrase(&b(), KdfParams::TEST).unwrap();
    // The process dies here, before the new passphrase is committed.
    drop(s);

    for p in [a(), b()] {
        let mut s = SqliteStore::open(&path).unwrap();
        s.unlock(&p, KdfParams::TEST, &actor()).unwrap();
        for (user, name, sec) in &devices {
            assert_eq!(&s.device_secrets(user, name).unwrap(), sec);
        }
        assert_eq!(s.server_key().unwrap(), Some(server.clone()));
    }
    // A third passphrase still fails, with the wrong-passphrase error.
    let e = SqliteStore::open(&path).unwrap().unlock(&pass("C"), KdfParams::TEST, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Secret { reason: KeyringError::WrongPassphrase, .. }), "{e:?}");

    // Committed (after unlocking with the new one), only B works.
    let mut s = SqliteStore::open(&path).unwrap();
    s.unlock(&b(), KdfParams::TEST, &actor()).unwrap();
    s.commit_passphrase(&actor()).unwrap();
    drop(s);
    assert!(SqliteStore::open(&path).unwrap().unlock(&a(), KdfParams::TEST, &actor()).is_err());
    let mut s = SqliteStore::open(&path).unwrap();
    s.unlock(&b(), KdfParams::TEST, &actor()).unwrap();
    assert_eq!(&s.device_secrets("alice", "phone").unwrap(), secrets_of(&devices, "phone"));
}

/// Schema version 1, as `control/src/store/schema.rs` creates it (copied here on purpose: the
/// test must keep describing the old format even if the code changes).
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

const V1_DEVICE_CREATED: i64 = 1_600_000_100;
const V1_SERVER_KEY_AT: i64 = 1_600_000_050;

/// A version-1 store with the user alice, her device phone (10.8.0.2) with plain base64 keys,
/// and a plain base64 server key. Returns the device's secrets and the server key.
fn build_v1(path: &Path) -> (DeviceSecrets, PrivateKey) {
    let sec = random_secrets();
    let private = sec.private_key.clone().unwrap();
    let server = PrivateKey::generate(&mut OsRng);
    let c = Connection::open(path).unwrap();
    for stmt in V1 {
        c.execute_batch(stmt).unwrap();
    }
    c.execute("INSERT INTO users (id, name, enabled, created_at) VALUES (1, 'alice', 1, 1600000000)", []).unwrap();
    c.execute(
        "INSERT INTO devices (user_id, name, public_key, private_key, preshared_key, ipv4, enabled, created_at) \
         VALUES (1, 'phone', ?1, ?2, ?3, ?4, 1, ?5)",
        rusqlite::params![
            private.public_key().to_base64(),
            private.to_base64(),
            sec.preshared_key.to_base64(),
            u32::from(std::net::Ipv4Addr::new(10, 8, 0, 2)),
            V1_DEVICE_CREATED
        ],
    )
    .unwrap();
    c.execute("INSERT INTO settings (key, value) VALUES ('server_private_key', ?1)", [server.to_base64()]).unwrap();
    c.execute(
        "INSERT INTO audit (at, who, origin, action, target, details) VALUES (?1, 'root', 'cli', 'server.key', 'server', ?2)",
        rusqlite::params![V1_SERVER_KEY_AT, format!(r#"{{"public_key":"{}","replaced":false}}"#, server.public_key().to_base64())],
    )
    .unwrap();
    c.pragma_update(None, "user_version", 1).unwrap();
    drop(c);
    // The plain keys really are in the file.
    let bytes = raw_bytes(path);
    assert!(contains(&bytes, private.to_base64().as_bytes()));
    (sec, server)
}

#[test]
fn legacy_store_is_migrated_and_sealed_at_first_unlock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (sec, server) = build_v1(&path);

    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 2);
    assert!(!s.is_unlocked() && !s.is_protected().unwrap());
    // Plain values are still readable without the passphrase.
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), sec);
    assert_eq!(s.server_key().unwrap(), Some(server.clone()));
    let d = s.device("alice", "phone").unwrap();
    assert_eq!(d.created_at, V1_DEVICE_CREATED);
    assert_eq!(d.key_created_at, d.created_at);
    assert!(d.has_private_key);
    assert_eq!(d.rotation, None);
    assert_eq!(d.ipv4, Some(std::net::Ipv4Addr::new(10, 8, 0, 2)));
    // When the server key was made: its last `server.key` audit row.
    assert_eq!(s.server_key_created_at().unwrap(), Some(V1_SERVER_KEY_AT));
    let status = s.key_status().unwrap();
    assert_eq!((status.sealed, status.plaintext, status.protected, status.unlocked), (0, 3, false, false));
    assert_eq!(status.server_key_created_at, Some(V1_SERVER_KEY_AT));
    drop(s);

    let mut s = SqliteStore::open(&path).unwrap();
    let u = s.unlock(&a(), KdfParams::TEST, &actor()).unwrap();
    assert!(u.created);
    assert_eq!(u.sealed_now, 3, "private key, PSK and server key");
    let status = s.key_status().unwrap();
    assert_eq!((status.sealed, status.plaintext, status.protected), (3, 0, true));
    let seal_row = s.audit(10).unwrap().into_iter().find(|e| e.action == "keys.seal").expect("a keys.seal audit row");
    assert_eq!(seal_row.details["sealed"], 3);
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), sec);
    assert_eq!(s.server_key().unwrap(), Some(server.clone()));
    drop(s);

    // The plain keys are gone from the file.
    Connection::open(&path).unwrap().query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let bytes = raw_bytes(&path);
    assert_absent(&bytes, sec.private_key.as_ref().unwrap().as_bytes(), "the device's private key");
    assert_absent(&bytes, sec.preshared_key.as_bytes(), "the device's PSK");
    assert_absent(&bytes, server.as_bytes(), "the server key");
    assert!(is_sealed(&column(&path, "phone", "private_key").unwrap()));

    // Now the store needs its passphrase, and the next unlock seals nothing more.
    let mut s = SqliteStore::open(&path).unwrap();
    assert!(matches!(s.device_secrets("alice", "phone"), Err(StoreError::Locked)));
    assert_eq!(s.unlock(&a(), KdfParams::TEST, &actor()).unwrap().sealed_now, 0);
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), sec);
    assert_eq!(s.server_key().unwrap(), Some(server));
    assert_eq!(s.device("alice", "phone").unwrap().key_created_at, V1_DEVICE_CREATED);
    assert_eq!(s.server_key_created_at().unwrap(), Some(V1_SERVER_KEY_AT));
}

#[test]
fn key_status_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut s) = create(dir.path());
    let empty = s.key_status().unwrap();
    assert!(empty.protected && empty.unlocked && !empty.server_key);
    assert_eq!(empty.kdf.as_deref(), Some("argon2id m=8 KiB t=1 p=1"));
    assert_eq!((empty.sealed, empty.plaintext, empty.public_key_only, empty.rotations_pending), (0, 0, 0, 0));
    assert_eq!((empty.server_key_created_at, empty.server_retiring_until), (None, None));

    populate(&mut s);
    // One device with its public key only.
    let new = NewDevice {
        keys: NewKeys::PublicOnly {
            public_key: PrivateKey::generate(&mut OsRng).public_key(),
            preshared_key: PresharedKey::generate(&mut OsRng),
        },
        ..NewDevice::generated("bob", "imported", random_secrets())
    };
    s.add_device(new, &pools(), &actor()).unwrap();
    // One rotation under way.
    s.rotate_device("alice", "phone", &random_secrets(), 2_000_000_000, &actor()).unwrap();
    // The server key rotated, the old one accepted until 2_100_000_000.
    s.rotate_server_key(&PrivateKey::generate(&mut OsRng), 2_100_000_000, &actor()).unwrap();

    let st = s.key_status().unwrap();
    // 3 full devices (2 each), the imported PSK, the pending pair, the server key and its
    // predecessor.
    assert_eq!(st.sealed, 6 + 1 + 2 + 1 + 1);
    assert_eq!(st.plaintext, 0);
    assert_eq!(st.public_key_only, 1);
    assert_eq!(st.rotations_pending, 1);
    assert!(st.server_key);
    assert!(st.server_key_created_at.unwrap() > 1_600_000_000);
    assert_eq!(st.server_retiring_until, Some(2_100_000_000));
    drop(s);

    // The same counts while locked, only `unlocked` differs.
    let locked = SqliteStore::open(&path).unwrap().key_status().unwrap();
    assert!(!locked.unlocked);
    assert_eq!(locked, vpn_control::store::KeyStatus { unlocked: false, ..st.clone() });

    // Completing the rotation and retiring the old server key.
    let mut s = unlocked(&path);
    s.complete_rotation("alice", "phone", "forced", &actor()).unwrap();
    assert!(s.retire_server_key("test", &actor()).unwrap());
    let st = s.key_status().unwrap();
    assert_eq!((st.sealed, st.rotations_pending, st.server_retiring_until), (6 + 1 + 1, 0, None));
}

#[test]
fn in_memory_store_is_unlocked_and_not_protected() {
    let mut s = SqliteStore::in_memory().unwrap();
    assert!(s.is_unlocked());
    assert!(!s.is_protected().unwrap());
    s.add_user("alice", &actor()).unwrap();
    let sec = random_secrets();
    s.add_device(NewDevice::generated("alice", "phone", sec.clone()), &pools(), &actor()).unwrap();
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), sec);
    assert_eq!(s.key_status().unwrap().sealed, 2);
}

#[test]
fn plain_value_written_into_a_protected_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _devices) = closed_store(dir.path());
    // Someone with write access to the file replaces a sealed PSK with a plain key of their
    // choosing: a protected store holds no plain key, so it is refused, locked or unlocked.
    let chosen = PresharedKey::generate(&mut OsRng);
    set_column(&path, "tablet", "preshared_key", &chosen.to_base64());
    let locked = SqliteStore::open(&path).unwrap();
    assert!(locked.device_secrets("bob", "tablet").is_err());
    let s = unlocked(&path);
    let e = s.device_secrets("bob", "tablet").unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("plain text") && !e.to_string().contains(&chosen.to_base64()), "{e}");
    // And unlocking again does not quietly seal it.
    drop(s);
    let s = unlocked(&path);
    assert!(s.device_secrets("bob", "tablet").is_err());
    assert_eq!(column(&path, "tablet", "preshared_key").unwrap(), chosen.to_base64());
}
