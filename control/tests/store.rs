//! The SQLite store: users and devices, address allocation, uniqueness, naming rules, the audit
//! log, atomicity, concurrent writers, migrations and file permissions.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use vpn_control::keyring::{KdfParams, Passphrase};
use vpn_control::store::{names, Actor, Device, DeviceSecrets, IpPrefix, NewDevice, Pools, SqliteStore, Store, StoreError, User};
use vpn_crypto::{PresharedKey, PrivateKey};

fn actor() -> Actor {
    Actor::new("tester", "test")
}

/// Distinct, deterministic secrets for device number `n`.
fn secrets(n: u32) -> DeviceSecrets {
    let mut k = [0x11u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    let mut p = [0x22u8; 32];
    p[..4].copy_from_slice(&n.to_be_bytes());
    DeviceSecrets { private_key: Some(PrivateKey::from_bytes(k)), preshared_key: PresharedKey::from_bytes(p) }
}

fn pools(v4: Option<&str>, v6: Option<&str>) -> Pools {
    Pools { ipv4: v4.map(|p| p.parse().unwrap()), ipv6: v6.map(|p| p.parse().unwrap()) }
}

fn v4_24() -> Pools {
    pools(Some("10.8.0.0/24"), None)
}

fn add(store: &mut dyn Store, user: &str, name: &str, n: u32, pools: &Pools) -> Result<Device, StoreError> {
    store.add_device(NewDevice::generated(user, name, secrets(n)), pools, &actor())
}

/// Opens a file-backed store and unlocks it (a file-backed store opens locked).
fn open_unlocked(path: &Path) -> SqliteStore {
    let mut s = SqliteStore::open(path).unwrap();
    s.unlock(&Passphrase::new(b"test passphrase".to_vec()), KdfParams::TEST, &actor()).unwrap();
    s
}

fn memory() -> SqliteStore {
    SqliteStore::in_memory().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn users_crud_and_errors() {
    let mut s = memory();
    assert_eq!(s.users().unwrap(), vec![]);
    let bob = s.add_user("bob", &actor()).unwrap();
    assert_eq!((bob.name.as_str(), bob.enabled, bob.devices), ("bob", true, 0));
    assert!(bob.created_at > 1_600_000_000);
    s.add_user("alice", &actor()).unwrap();
    let names: Vec<_> = s.users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(s.user("bob").unwrap(), bob);

    let e = s.add_user("bob", &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::UserExists(n) if n == "bob"), "{e:?}");
    assert_eq!(e.to_string(), "user \"bob\" already exists: pick another name");
    assert!(matches!(s.user("carol"), Err(StoreError::NoSuchUser(n)) if n == "carol"));
    assert!(matches!(s.set_user_enabled("carol", false, &actor()), Err(StoreError::NoSuchUser(_))));
    assert!(matches!(s.remove_user("carol", &actor()), Err(StoreError::NoSuchUser(_))));
    assert!(matches!(s.devices(Some("carol")), Err(StoreError::NoSuchUser(_))));

    let off = s.set_user_enabled("bob", false, &actor()).unwrap();
    assert!(!off.enabled);
    assert!(!s.user("bob").unwrap().enabled);
    assert!(s.set_user_enabled("bob", true, &actor()).unwrap().enabled);

    assert_eq!(s.remove_user("bob", &actor()).unwrap(), vec![]);
    assert!(matches!(s.user("bob"), Err(StoreError::NoSuchUser(_))));
    assert_eq!(s.users().unwrap().len(), 1);
}

#[test]
fn name_rules_and_messages() {
    let msg = |r: Result<(), StoreError>| r.unwrap_err().to_string();
    assert_eq!(
        msg(names::validate_device("my phone")),
        "invalid device name \"my phone\": use 1-32 letters, digits, '.', '_' or '-' (e.g. laptop)"
    );
    assert_eq!(msg(names::validate_device("-rf")), "invalid device name \"-rf\": start with a letter or digit (e.g. laptop)");
    assert_eq!(msg(names::validate_device("")), "invalid device name \"\": use 1-32 letters, digits, '.', '_' or '-' (e.g. laptop)");
    assert!(names::validate_device(&"d".repeat(32)).is_ok());
    assert!(names::validate_device(&"d".repeat(33)).is_err());
    assert!(names::validate_device("x@y").is_err());

    assert_eq!(
        msg(names::validate_user("a b")),
        "invalid user name \"a b\": use 1-64 letters, digits, '.', '_', '-' or '@' (e.g. alice or alice@example.com)"
    );
    assert_eq!(msg(names::validate_user(".hidden")), "invalid user name \".hidden\": start with a letter or digit (e.g. alice)");
    // Control characters are escaped in the message, never printed raw.
    assert!(msg(names::validate_user("a\x1b[2Jb")).contains("\\u{1b}"));
    assert!(names::validate_user("alice.smith@example.com").is_ok());
    assert!(names::validate_user(&"u".repeat(64)).is_ok());
    assert!(names::validate_user(&"u".repeat(65)).is_err());

    let mut s = memory();
    let e = s.add_user("bad name", &actor()).unwrap_err();
    assert!(matches!(e, StoreError::InvalidName { kind: "user", .. }), "{e:?}");
    s.add_user("alice", &actor()).unwrap();
    let e = add(&mut s, "alice", "my phone", 1, &v4_24()).unwrap_err();
    assert!(matches!(e, StoreError::InvalidName { kind: "device", .. }), "{e:?}");
    assert!(s.audit(100).unwrap().iter().all(|a| a.action == "user.add"));
}

#[test]
fn devices_crud_and_errors() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    s.add_user("bob", &actor()).unwrap();
    let p = v4_24();
    let laptop = add(&mut s, "alice", "laptop", 1, &p).unwrap();
    assert_eq!(laptop.user, "alice");
    assert_eq!(laptop.name, "laptop");
    assert_eq!(laptop.public_key, secrets(1).private_key.unwrap().public_key());
    assert_eq!(laptop.ipv4, Some(Ipv4Addr::new(10, 8, 0, 2)));
    assert_eq!(laptop.ipv6, None);
    assert!(laptop.enabled && laptop.user_enabled && laptop.expires_at.is_none());
    assert_eq!(s.device("alice", "laptop").unwrap(), laptop);
    // The same device name for another user is fine.
    let bobs = add(&mut s, "bob", "laptop", 2, &p).unwrap();
    add(&mut s, "alice", "phone", 3, &p).unwrap();

    let all: Vec<_> = s.devices(None).unwrap().into_iter().map(|d| d.label()).collect();
    assert_eq!(all, ["alice/laptop", "alice/phone", "bob/laptop"]);
    assert_eq!(s.devices(Some("bob")).unwrap(), vec![bobs]);
    assert_eq!(s.user("alice").unwrap().devices, 2);

    let e = add(&mut s, "alice", "laptop", 4, &p).unwrap_err();
    assert!(matches!(&e, StoreError::DeviceExists { user, device } if user == "alice" && device == "laptop"), "{e:?}");
    assert!(matches!(add(&mut s, "carol", "laptop", 5, &p), Err(StoreError::NoSuchUser(_))));
    assert!(matches!(s.device("alice", "tablet"), Err(StoreError::NoSuchDevice { .. })));
    assert!(matches!(s.device("carol", "laptop"), Err(StoreError::NoSuchUser(_))));
    assert!(matches!(s.device_secrets("alice", "tablet"), Err(StoreError::NoSuchDevice { .. })));
    assert!(matches!(s.set_device_enabled("alice", "tablet", false, &actor()), Err(StoreError::NoSuchDevice { .. })));
    assert!(matches!(s.remove_device("alice", "tablet", &actor()), Err(StoreError::NoSuchDevice { .. })));

    let sec = s.device_secrets("alice", "laptop").unwrap();
    assert_eq!(sec, secrets(1));

    let off = s.set_device_enabled("alice", "laptop", false, &actor()).unwrap();
    assert!(!off.enabled && off.user_enabled);
    assert_eq!(s.device("alice", "laptop").unwrap(), off);
    assert!(!off.is_active(0));
    // Another device of the same user is untouched.
    assert!(s.device("alice", "phone").unwrap().enabled);
    assert!(s.set_device_enabled("alice", "laptop", true, &actor()).unwrap().enabled);

    let removed = s.remove_device("alice", "laptop", &actor()).unwrap();
    assert_eq!(removed.name, "laptop");
    assert!(matches!(s.device("alice", "laptop"), Err(StoreError::NoSuchDevice { .. })));
    assert!(matches!(s.device_secrets("alice", "laptop"), Err(StoreError::NoSuchDevice { .. })));
}

#[test]
fn disabled_user_keeps_devices_inactive() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    add(&mut s, "alice", "laptop", 1, &v4_24()).unwrap();
    s.set_user_enabled("alice", false, &actor()).unwrap();
    let d = s.device("alice", "laptop").unwrap();
    assert!(d.enabled && !d.user_enabled && !d.is_active(0));
    // A device added to a disabled user is kept too, and inactive.
    let d2 = add(&mut s, "alice", "phone", 2, &v4_24()).unwrap();
    assert!(!d2.user_enabled && !d2.is_active(0));
    s.set_user_enabled("alice", true, &actor()).unwrap();
    assert!(s.device("alice", "laptop").unwrap().is_active(0));
}

#[test]
fn expiry() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let new = NewDevice { expires_at: Some(1000), ..NewDevice::generated("alice", "temp", secrets(1)) };
    let d = s.add_device(new, &v4_24(), &actor()).unwrap();
    assert_eq!(d.expires_at, Some(1000));
    assert_eq!(s.device("alice", "temp").unwrap().expires_at, Some(1000));
    assert!(d.is_active(999));
    assert!(!d.is_active(1000));
    assert!(!d.is_active(5000));
}

#[test]
fn remove_user_removes_its_devices() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    s.add_user("bob", &actor()).unwrap();
    let p = v4_24();
    let a1 = add(&mut s, "alice", "laptop", 1, &p).unwrap();
    let a2 = add(&mut s, "alice", "phone", 2, &p).unwrap();
    let b = add(&mut s, "bob", "laptop", 3, &p).unwrap();
    assert_eq!(s.remove_user("alice", &actor()).unwrap(), vec![a1.clone(), a2]);
    assert_eq!(s.devices(None).unwrap(), vec![b]);
    // Their addresses and keys are free again.
    s.add_user("alice", &actor()).unwrap();
    let again = add(&mut s, "alice", "laptop", 1, &p).unwrap();
    assert_eq!(again.ipv4, a1.ipv4);
    assert_eq!(again.public_key, a1.public_key);
}

#[test]
fn allocation_lowest_free_and_reuse() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let p = pools(Some("10.8.0.0/24"), Some("fd00:8::/64"));
    let ip4 = |d: &Device| d.ipv4.unwrap().to_string();
    let ip6 = |d: &Device| d.ipv6.unwrap().to_string();
    let d: Vec<Device> = (0..4).map(|i| add(&mut s, "alice", &format!("d{i}"), i, &p).unwrap()).collect();
    assert_eq!(d.iter().map(ip4).collect::<Vec<_>>(), ["10.8.0.2", "10.8.0.3", "10.8.0.4", "10.8.0.5"]);
    assert_eq!(d.iter().map(ip6).collect::<Vec<_>>(), ["fd00:8::2", "fd00:8::3", "fd00:8::4", "fd00:8::5"]);

    s.remove_device("alice", "d1", &actor()).unwrap();
    s.remove_device("alice", "d2", &actor()).unwrap();
    let r1 = add(&mut s, "alice", "r1", 10, &p).unwrap();
    assert_eq!((ip4(&r1), ip6(&r1)), ("10.8.0.3".into(), "fd00:8::3".into()));
    let r2 = add(&mut s, "alice", "r2", 11, &p).unwrap();
    assert_eq!((ip4(&r2), ip6(&r2)), ("10.8.0.4".into(), "fd00:8::4".into()));
    let r3 = add(&mut s, "alice", "r3", 12, &p).unwrap();
    assert_eq!((ip4(&r3), ip6(&r3)), ("10.8.0.6".into(), "fd00:8::6".into()));

    // The first host addresses themselves are reused.
    s.remove_device("alice", "d0", &actor()).unwrap();
    let r4 = add(&mut s, "alice", "r4", 13, &p).unwrap();
    assert_eq!((ip4(&r4), ip6(&r4)), ("10.8.0.2".into(), "fd00:8::2".into()));
}

#[test]
fn allocation_ignores_addresses_outside_the_pool() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    add(&mut s, "alice", "old", 1, &pools(Some("10.9.0.0/24"), None)).unwrap();
    let d = add(&mut s, "alice", "new", 2, &pools(Some("10.8.0.0/24"), None)).unwrap();
    assert_eq!(d.ipv4, Some(Ipv4Addr::new(10, 8, 0, 2)));
    // A pool inside a larger one already in use skips the taken addresses.
    let d = add(&mut s, "alice", "sub", 3, &pools(Some("10.8.0.0/16"), None)).unwrap();
    assert_eq!(d.ipv4, Some(Ipv4Addr::new(10, 8, 0, 3)));
}

#[test]
fn exhaustion_of_a_slash_30() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let p = pools(Some("10.0.0.0/30"), None);
    // .0 is the network, .1 the server, .3 the broadcast address: one device fits.
    assert_eq!(add(&mut s, "alice", "one", 1, &p).unwrap().ipv4, Some(Ipv4Addr::new(10, 0, 0, 2)));
    let audit_before = s.audit(1000).unwrap().len();
    let e = add(&mut s, "alice", "two", 2, &p).unwrap_err();
    assert!(matches!(e, StoreError::PoolExhausted(pool) if pool == "10.0.0.0/30".parse::<IpPrefix>().unwrap()));
    assert_eq!(e.to_string(), "no free address left in 10.0.0.0/30: enlarge the pool in the config or remove unused devices");
    // Nothing half-done: no device, no audit row, the key is not taken.
    assert!(matches!(s.device("alice", "two"), Err(StoreError::NoSuchDevice { .. })));
    assert_eq!(s.devices(None).unwrap().len(), 1);
    assert_eq!(s.audit(1000).unwrap().len(), audit_before);
    s.remove_device("alice", "one", &actor()).unwrap();
    assert_eq!(add(&mut s, "alice", "two", 2, &p).unwrap().ipv4, Some(Ipv4Addr::new(10, 0, 0, 2)));

    // Pools without room for any device.
    for tiny in ["10.0.0.0/31", "10.0.0.7/32"] {
        let e = add(&mut s, "alice", "x", 9, &pools(Some(tiny), None)).unwrap_err();
        assert!(matches!(e, StoreError::PoolExhausted(_)), "{tiny}: {e:?}");
    }
}

#[test]
fn ipv6_exhaustion_and_dual_stack_atomicity() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    // A /126: ::0 network, ::1 server, ::2 and ::3 for devices (no broadcast in IPv6).
    let p6 = pools(None, Some("fd00::/126"));
    assert_eq!(add(&mut s, "alice", "a", 1, &p6).unwrap().ipv6, Some("fd00::2".parse().unwrap()));
    assert_eq!(add(&mut s, "alice", "b", 2, &p6).unwrap().ipv6, Some("fd00::3".parse().unwrap()));
    let e = add(&mut s, "alice", "c", 3, &p6).unwrap_err();
    assert_eq!(e.to_string(), "no free address left in fd00::/126: enlarge the pool in the config or remove unused devices");

    // IPv4 has room but IPv6 has none: nothing is added, not even the IPv4 address.
    let dual = pools(Some("10.0.0.0/24"), Some("fd00::/126"));
    let before = s.audit(1000).unwrap().len();
    assert!(matches!(add(&mut s, "alice", "c", 3, &dual), Err(StoreError::PoolExhausted(_))));
    assert_eq!(s.devices(None).unwrap().len(), 2);
    assert_eq!(s.audit(1000).unwrap().len(), before);
    let d = add(&mut s, "alice", "c", 3, &pools(Some("10.0.0.0/24"), None)).unwrap();
    assert_eq!(d.ipv4, Some(Ipv4Addr::new(10, 0, 0, 2)));
}

#[test]
fn single_family_pools() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let d4 = add(&mut s, "alice", "v4", 1, &pools(Some("192.168.77.0/24"), None)).unwrap();
    assert_eq!((d4.ipv4, d4.ipv6), (Some(Ipv4Addr::new(192, 168, 77, 2)), None));
    let d6 = add(&mut s, "alice", "v6", 2, &pools(None, Some("fd42:1:2:3::/64"))).unwrap();
    assert_eq!((d6.ipv4, d6.ipv6), (None, Some("fd42:1:2:3::2".parse::<Ipv6Addr>().unwrap())));
    assert_eq!(s.device("alice", "v6").unwrap(), d6);
    // A pool larger than a /64 is used through its first /64.
    let big = add(&mut s, "alice", "big", 3, &pools(None, Some("fd43::/48"))).unwrap();
    assert_eq!(big.ipv6, Some("fd43::2".parse().unwrap()));
    // High addresses survive the signed encoding.
    let high = add(&mut s, "alice", "high", 4, &pools(None, Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"))).unwrap();
    assert_eq!(high.ipv6, Some("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff2".parse().unwrap()));
    assert_eq!(s.device("alice", "high").unwrap(), high);
    let high4 = add(&mut s, "alice", "high4", 5, &pools(Some("255.255.255.0/24"), None)).unwrap();
    assert_eq!(s.device("alice", "high4").unwrap().ipv4, Some(Ipv4Addr::new(255, 255, 255, 2)));
    assert_eq!(high4.ipv4, Some(Ipv4Addr::new(255, 255, 255, 2)));

    assert!(matches!(add(&mut s, "alice", "none", 6, &Pools::default()), Err(StoreError::NoPools)));
    let e = add(&mut s, "alice", "wrong", 7, &pools(Some("fd00::/64"), None)).unwrap_err();
    assert!(matches!(e, StoreError::PoolFamily { family: "IPv4", .. }), "{e:?}");
    let e = add(&mut s, "alice", "wrong", 7, &pools(None, Some("10.0.0.0/8"))).unwrap_err();
    assert!(matches!(e, StoreError::PoolFamily { family: "IPv6", .. }), "{e:?}");
}

#[test]
fn public_keys_are_unique() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    s.add_user("bob", &actor()).unwrap();
    let a = add(&mut s, "alice", "laptop", 1, &v4_24()).unwrap();
    let before = s.audit(1000).unwrap().len();
    let e = add(&mut s, "bob", "laptop", 1, &v4_24()).unwrap_err();
    match &e {
        StoreError::PublicKeyInUse { public_key, owner } => {
            assert_eq!(public_key, &a.public_key.to_base64());
            assert_eq!(owner, "alice/laptop");
        }
        other => panic!("{other:?}"),
    }
    assert!(s.devices(Some("bob")).unwrap().is_empty());
    assert_eq!(s.audit(1000).unwrap().len(), before);
}

#[test]
fn server_key() {
    let mut s = memory();
    assert_eq!(s.server_key().unwrap(), None);
    let k1 = PrivateKey::from_bytes([7; 32]);
    s.set_server_key(&k1, &actor()).unwrap();
    assert_eq!(s.server_key().unwrap(), Some(k1.clone()));
    let k2 = PrivateKey::from_bytes([8; 32]);
    s.set_server_key(&k2, &actor()).unwrap();
    assert_eq!(s.server_key().unwrap(), Some(k2.clone()));
    let log = s.audit(10).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].action.as_str(), log[0].target.as_str()), ("server.key", "server"));
    assert_eq!(log[0].details["public_key"], k2.public_key().to_base64());
    assert_eq!(log[0].details["replaced"], true);
    assert_eq!(log[1].details["replaced"], false);
    let all = serde_json::to_string(&log).unwrap();
    assert!(!all.contains(&k1.to_base64()) && !all.contains(&k2.to_base64()));
}

#[test]
fn audit_log_records_every_change_without_secrets() {
    let mut s = memory();
    let who = Actor::new("root", "cli");
    s.add_user("alice", &who).unwrap();
    let d = s.add_device(NewDevice::generated("alice", "laptop", secrets(1)), &v4_24(), &who).unwrap();
    s.set_device_enabled("alice", "laptop", false, &who).unwrap();
    s.set_device_enabled("alice", "laptop", true, &who).unwrap();
    s.set_user_enabled("alice", false, &who).unwrap();
    s.set_user_enabled("alice", true, &who).unwrap();
    add(&mut s, "alice", "phone", 2, &v4_24()).unwrap();
    s.remove_device("alice", "phone", &who).unwrap();
    s.remove_user("alice", &who).unwrap();

    let log = s.audit(100).unwrap();
    let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "user.remove",
            "device.remove",
            "device.add",
            "user.enable",
            "user.disable",
            "device.enable",
            "device.disable",
            "device.add",
            "user.add"
        ]
    );
    assert!(log.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at));
    let add_row = &log[7];
    assert_eq!((add_row.who.as_str(), add_row.origin.as_str(), add_row.target.as_str()), ("root", "cli", "alice/laptop"));
    assert_eq!(add_row.details["public_key"], d.public_key.to_base64());
    assert_eq!(add_row.details["ipv4"], "10.8.0.2");
    assert_eq!((log[2].action.as_str(), log[2].who.as_str()), ("device.add", "tester"));
    assert_eq!(log[0].details["devices"][0]["name"], "laptop");
    assert_eq!(s.audit(3).unwrap(), log[..3].to_vec());
    assert_eq!(s.audit(0).unwrap().len(), 0);

    let text = serde_json::to_string(&log).unwrap();
    for n in [1, 2] {
        let sec = secrets(n);
        for secret in [sec.private_key.as_ref().unwrap().to_base64(), sec.preshared_key.to_base64()] {
            assert!(!text.contains(&secret), "a secret is in the audit log");
        }
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let sec = secrets(1);
    let new = NewDevice::generated("alice", "laptop", sec.clone());
    let private = sec.private_key.as_ref().unwrap().to_base64();
    let dbg = format!("{new:?} {sec:?}");
    assert!(!dbg.contains(&private) && !dbg.contains(&sec.preshared_key.to_base64()));
    assert!(dbg.contains("[redacted]"));
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let d = s.add_device(new, &v4_24(), &actor()).unwrap();
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["public_key"], d.public_key.to_base64());
    assert_eq!(json["ipv4"], "10.8.0.2");
    assert_eq!(json["user_enabled"], true);
    let e = add(&mut s, "alice", "other", 1, &v4_24()).unwrap_err().to_string();
    assert!(!e.contains(&private) && !e.contains(&sec.preshared_key.to_base64()));
}

#[test]
fn users_serialize() {
    let u = User { name: "alice".into(), enabled: true, created_at: 5, devices: 2 };
    assert_eq!(serde_json::to_string(&u).unwrap(), r#"{"name":"alice","enabled":true,"created_at":5,"devices":2}"#);
}

#[test]
fn actor_local() {
    let a = Actor::local();
    assert!(a.origin == "cli" || a.origin.starts_with("cli "), "{}", a.origin);
    assert!(!a.who.is_empty());
}

#[test]
fn on_disk_migration_reopen_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state").join("vpn");
    let path = sub.join("store.db");
    {
        let mut s = open_unlocked(&path);
        assert_eq!(s.schema_version().unwrap(), 2);
        s.add_user("alice", &actor()).unwrap();
        add(&mut s, "alice", "laptop", 1, &v4_24()).unwrap();
        // The WAL files exist while the connection is open.
        for p in [path.clone(), sub.join("store.db-wal"), sub.join("store.db-shm")] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&sub), 0o700);
    let s = open_unlocked(&path);
    assert_eq!(s.schema_version().unwrap(), 2);
    assert_eq!(s.device("alice", "laptop").unwrap().ipv4, Some(Ipv4Addr::new(10, 8, 0, 2)));
    assert_eq!(s.device_secrets("alice", "laptop").unwrap(), secrets(1));
    // user.add, device.add, and keys.protect from the first unlock.
    assert_eq!(s.audit(10).unwrap().iter().filter(|e| e.action != "keys.protect").count(), 2);
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), 2);
    assert_eq!(s.users().unwrap().len(), 1);
}

#[test]
fn loose_file_mode_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let dir_mode = mode(dir.path());
    SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
    // An existing directory keeps its mode.
    assert_eq!(mode(dir.path()), dir_mode);
}

#[test]
fn newer_schema_is_refused_and_junk_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(e, StoreError::SchemaTooNew { found: 99, supported: 2 }), "{e:?}");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    let e = SqliteStore::open(&junk).unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
}

#[test]
fn concurrent_writers_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let mut s = open_unlocked(&path);
        s.add_user("alice", &actor()).unwrap();
        s.add_user("bob", &actor()).unwrap();
    }
    let p = pools(Some("10.8.0.0/16"), Some("fd00:8::/64"));
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["alice", "bob"]
        .into_iter()
        .enumerate()
        .map(|(t, user)| {
            let path = path.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut s = open_unlocked(&path);
                barrier.wait();
                for i in 0..50u32 {
                    add(&mut s, user, &format!("d{i}"), t as u32 * 1000 + i, &p).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let devices = s.devices(None).unwrap();
    assert_eq!(devices.len(), 100);
    let v4: HashSet<_> = devices.iter().map(|d| d.ipv4.unwrap()).collect();
    let v6: HashSet<_> = devices.iter().map(|d| d.ipv6.unwrap()).collect();
    assert_eq!((v4.len(), v6.len()), (100, 100));
    // Allocation stayed dense: exactly .2 to .101.
    let expected: HashSet<_> = (2..102u32).map(|i| Ipv4Addr::from(0x0a08_0000 | i)).collect();
    assert_eq!(v4, expected);
    assert_eq!(s.audit(1000).unwrap().iter().filter(|e| e.action == "device.add").count(), 100);
}

#[test]
fn busy_writer_gives_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut s = SqliteStore::open(&path).unwrap();
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
    // Reads go on while another process writes (WAL).
    assert_eq!(s.users().unwrap(), vec![]);
    let e = s.add_user("alice", &actor()).unwrap_err();
    assert!(matches!(e, StoreError::Busy), "{e:?}");
    assert_eq!(e.to_string(), "another vpn command is writing the store; try again");
    drop(tx);
    s.add_user("alice", &actor()).unwrap();
}

#[test]
fn store_is_object_safe() {
    let mut s: Box<dyn Store> = Box::new(memory());
    s.add_user("alice", &actor()).unwrap();
    assert_eq!(s.users().unwrap().len(), 1);
}
