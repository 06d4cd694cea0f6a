//! Batches and bulk imports in the store: `apply_batch` is all-or-nothing, fixed addresses are
//! checked against the pools, devices may be added with their public key only, and an import is
//! recorded so that it can be resumed and rolled back exactly.

mod common;

use common::store::{actor, pools, public, secrets};
use std::net::{IpAddr, Ipv4Addr};

use vpn_control::store::{
    Applied, BatchError, Change, DeviceSecrets, NewAddresses, NewDevice, NewKeys, Pools, SqliteStore, Store, StoreError,
};
use vpn_crypto::PresharedKey;

fn memory() -> SqliteStore {
    SqliteStore::in_memory().unwrap()
}

fn device<'a>(user: &'a str, name: &'a str, n: u32) -> Change<'a> {
    Change::AddDevice(NewDevice::generated(user, name, secrets(n)))
}

fn fixed<'a>(user: &'a str, name: &'a str, n: u32, ipv4: Option<&str>, ipv6: Option<&str>) -> NewDevice<'a> {
    NewDevice {
        addresses: NewAddresses::Fixed { ipv4: ipv4.map(|a| a.parse().unwrap()), ipv6: ipv6.map(|a| a.parse().unwrap()) },
        ..NewDevice::generated(user, name, secrets(n))
    }
}

fn public_only<'a>(user: &'a str, name: &'a str, n: u32) -> NewDevice<'a> {
    NewDevice {
        keys: NewKeys::PublicOnly { public_key: public(n), preshared_key: secrets(n).preshared_key },
        ..NewDevice::generated(user, name, secrets(n))
    }
}

/// The users and devices, as labels.
fn contents(s: &SqliteStore) -> (Vec<String>, Vec<String>) {
    (s.users().unwrap().into_iter().map(|u| u.name).collect(), s.devices(None).unwrap().iter().map(|d| d.label()).collect())
}

#[test]
fn a_batch_applies_in_order() {
    let mut s = memory();
    s.add_user("zed", &actor()).unwrap();
    let changes = vec![
        Change::AddUser { name: "alice" },
        device("alice", "phone", 1),
        device("alice", "laptop", 2),
        Change::SetUserEnabled { name: "zed", enabled: false },
        Change::AddUser { name: "bob" },
        Change::RemoveUser { name: "bob" },
    ];
    let out = s.apply_batch(changes, &pools(), &actor(), None).unwrap();
    assert_eq!(out.len(), 6);
    assert!(matches!(&out[0], Applied::User(u) if u.name == "alice" && u.enabled));
    match &out[1] {
        Applied::Device(d) => {
            assert_eq!((d.label().as_str(), d.public_key), ("alice/phone", public(1)));
            assert_eq!(d.ipv4, Some(Ipv4Addr::new(10, 8, 0, 2)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&out[2], Applied::Device(d) if d.ipv4 == Some(Ipv4Addr::new(10, 8, 0, 3))));
    assert!(matches!(&out[3], Applied::UserEnabled(u, true) if u.name == "zed" && !u.enabled));
    assert!(matches!(&out[5], Applied::Removed(name, devices) if name == "bob" && devices.is_empty()));
    assert_eq!(contents(&s), (vec!["alice".into(), "zed".into()], vec!["alice/laptop".into(), "alice/phone".into()]));
    assert_eq!(s.device_secrets("alice", "laptop").unwrap(), secrets(2));
    assert!(!s.user("zed").unwrap().enabled);
    // One audit row per change.
    let actions: Vec<String> = s.audit(6).unwrap().into_iter().rev().map(|e| e.action).collect();
    assert_eq!(actions, ["user.add", "device.add", "device.add", "user.disable", "user.add", "user.remove"]);

    // Through the trait too; an empty batch does nothing.
    let st: &mut dyn Store = &mut s;
    assert!(st.apply_batch(vec![], &pools(), &actor()).unwrap().is_empty());
    let out = st.apply_batch(vec![Change::AddUser { name: "carol" }, device("carol", "phone", 3)], &pools(), &actor()).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(st.device("carol", "phone").unwrap().public_key, public(3));
}

#[test]
fn a_failing_change_leaves_nothing() {
    let mut s = memory();
    s.add_user("zed", &actor()).unwrap();
    s.add_device(NewDevice::generated("zed", "phone", secrets(9)), &pools(), &actor()).unwrap();
    let before = contents(&s);
    let audit_before = s.audit(1000).unwrap();

    let changes = vec![
        Change::AddUser { name: "alice" },
        device("alice", "phone", 1),
        Change::SetUserEnabled { name: "zed", enabled: false },
        Change::RemoveUser { name: "zed" },
        // alice already has a phone (added above, in this batch).
        device("alice", "phone", 2),
        Change::AddUser { name: "bob" },
    ];
    let e: BatchError = s.apply_batch(changes, &pools(), &actor(), None).unwrap_err();
    assert_eq!(e.index, 4);
    assert!(matches!(&e.error, StoreError::DeviceExists { user, device } if user == "alice" && device == "phone"), "{e:?}");
    assert_eq!(
        e.to_string(),
        "change 5 of the batch failed, so none was made: user \"alice\" already has a device named \"phone\": pick another name"
    );
    // Nothing of it: no user, no device, zed still there and enabled with its device, no audit row.
    assert_eq!(contents(&s), before);
    assert!(s.user("zed").unwrap().enabled);
    assert_eq!(s.device_secrets("zed", "phone").unwrap(), secrets(9));
    assert_eq!(s.audit(1000).unwrap(), audit_before);
    // Its address and keys are free: the same devices can be added now.
    let d = s.add_device(NewDevice::generated("zed", "laptop", secrets(1)), &pools(), &actor()).unwrap();
    assert_eq!(d.ipv4, Some(Ipv4Addr::new(10, 8, 0, 3)));

    // A failure at the first change, and one at the last.
    let e = s.apply_batch(vec![Change::AddUser { name: "zed" }, Change::AddUser { name: "x" }], &pools(), &actor(), None).unwrap_err();
    assert_eq!(e.index, 0);
    assert!(matches!(e.error, StoreError::UserExists(_)));
    let changes = vec![Change::AddUser { name: "x" }, Change::AddUser { name: "y" }, device("nobody", "phone", 4)];
    let e = s.apply_batch(changes, &pools(), &actor(), None).unwrap_err();
    assert_eq!(e.index, 2);
    assert!(matches!(&e.error, StoreError::NoSuchUser(n) if n == "nobody"));
    assert!(matches!(s.user("x"), Err(StoreError::NoSuchUser(_))));
    // A key used twice within one batch.
    let changes = vec![Change::AddUser { name: "x" }, device("x", "a", 5), device("x", "b", 5)];
    let e = s.apply_batch(changes, &pools(), &actor(), None).unwrap_err();
    assert_eq!(e.index, 2);
    assert!(matches!(&e.error, StoreError::PublicKeyInUse { owner, .. } if owner == "x/a"), "{e:?}");
    // A bad name.
    let e =
        s.apply_batch(vec![Change::AddUser { name: "ok" }, Change::AddUser { name: "bad name" }], &pools(), &actor(), None).unwrap_err();
    assert_eq!(e.index, 1);
    assert!(matches!(e.error, StoreError::InvalidName { kind: "user", .. }));
    assert_eq!(s.users().unwrap().len(), 1);
}

#[test]
fn fixed_addresses() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let p = pools();
    let d = s.add_device(fixed("alice", "a", 1, Some("10.8.0.50"), Some("fd00:8::50")), &p, &actor()).unwrap();
    assert_eq!((d.ipv4, d.ipv6), (Some(Ipv4Addr::new(10, 8, 0, 50)), Some("fd00:8::50".parse().unwrap())));
    assert_eq!(s.device("alice", "a").unwrap(), d);
    // The first and last device addresses of the pool.
    s.add_device(fixed("alice", "first", 2, Some("10.8.0.2"), None), &p, &actor()).unwrap();
    let last = s.add_device(fixed("alice", "last", 3, Some("10.8.0.254"), None), &p, &actor()).unwrap();
    assert_eq!((last.ipv4, last.ipv6), (Some(Ipv4Addr::new(10, 8, 0, 254)), None), "only the address given");
    s.add_device(fixed("alice", "v6only", 4, None, Some("fd00:8::ffff:ffff:ffff:ffff")), &p, &actor()).unwrap();
    // Allocation skips the fixed addresses.
    let next = s.add_device(NewDevice::generated("alice", "auto", secrets(5)), &p, &actor()).unwrap();
    assert_eq!((next.ipv4, next.ipv6), (Some(Ipv4Addr::new(10, 8, 0, 3)), Some("fd00:8::2".parse().unwrap())));

    let audit_before = s.audit(1000).unwrap().len();
    let mut n = 100;
    let mut bad = |s: &mut SqliteStore, v4: Option<&str>, v6: Option<&str>, pools: &Pools, expect: &str, reason: &str| {
        n += 1;
        let e = s.add_device(fixed("alice", "bad", n, v4, v6), pools, &actor()).unwrap_err();
        match &e {
            StoreError::BadAddress { addr, reason: r } => {
                assert_eq!(*addr, expect.parse::<IpAddr>().unwrap(), "{e}");
                assert!(r.contains(reason), "{v4:?} {v6:?}: {r:?} should say {reason:?}");
            }
            other => panic!("{v4:?} {v6:?}: {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("address {expect} cannot be given to a device: ")), "{msg}");
    };
    // Outside the pool, the network, the server's .1, the broadcast address.
    bad(&mut s, Some("10.9.0.5"), None, &p, "10.9.0.5", "not a device address of the pool 10.8.0.0/24");
    bad(&mut s, Some("10.8.0.0"), None, &p, "10.8.0.0", "reserved");
    bad(&mut s, Some("10.8.0.1"), None, &p, "10.8.0.1", "server");
    bad(&mut s, Some("10.8.0.255"), None, &p, "10.8.0.255", "broadcast");
    bad(&mut s, None, Some("fd00:9::5"), &p, "fd00:9::5", "not a device address of the pool fd00:8::/64");
    bad(&mut s, None, Some("fd00:8::"), &p, "fd00:8::", "reserved");
    bad(&mut s, None, Some("fd00:8::1"), &p, "fd00:8::1", "server");
    // Taken, by a fixed or an allocated device.
    bad(&mut s, Some("10.8.0.50"), None, &p, "10.8.0.50", "device alice/a has it");
    bad(&mut s, Some("10.8.0.3"), None, &p, "10.8.0.3", "device alice/auto has it");
    bad(&mut s, None, Some("fd00:8::50"), &p, "fd00:8::50", "device alice/a has it");
    // A good IPv4 address does not excuse a taken IPv6 one: nothing is added.
    bad(&mut s, Some("10.8.0.99"), Some("fd00:8::50"), &p, "fd00:8::50", "device alice/a has it");
    // No pool of that family, or no address at all.
    let v4_only = Pools { ipv4: p.ipv4, ipv6: None };
    bad(&mut s, Some("10.8.0.99"), Some("fd00:8::99"), &v4_only, "fd00:8::99", "no IPv6 pool");
    let v6_only = Pools { ipv4: None, ipv6: p.ipv6 };
    bad(&mut s, Some("10.8.0.99"), None, &v6_only, "10.8.0.99", "no IPv4 pool");
    bad(&mut s, None, None, &p, "0.0.0.0", "no address given");
    assert!(matches!(s.device("alice", "bad"), Err(StoreError::NoSuchDevice { .. })));
    assert_eq!(s.audit(1000).unwrap().len(), audit_before);

    // In a batch: the error index points at the bad one, and nothing is added.
    let changes = vec![
        Change::AddDevice(fixed("alice", "ok", 200, Some("10.8.0.60"), None)),
        Change::AddDevice(fixed("alice", "clash", 201, Some("10.8.0.60"), None)),
    ];
    let e = s.apply_batch(changes, &p, &actor(), None).unwrap_err();
    assert_eq!(e.index, 1);
    assert!(matches!(&e.error, StoreError::BadAddress { reason, .. } if reason.contains("alice/ok")), "{e:?}");
    assert!(matches!(s.device("alice", "ok"), Err(StoreError::NoSuchDevice { .. })));
}

#[test]
fn public_key_only_devices() {
    let mut s = memory();
    s.add_user("alice", &actor()).unwrap();
    let d = s.add_device(public_only("alice", "imported", 1), &pools(), &actor()).unwrap();
    assert!(!d.has_private_key);
    assert_eq!(d.public_key, public(1));
    assert_eq!(s.device("alice", "imported").unwrap(), d);
    let sec = s.device_secrets("alice", "imported").unwrap();
    assert_eq!(sec.private_key, None);
    assert_eq!(sec.preshared_key, secrets(1).preshared_key);
    assert_eq!(s.key_status().unwrap().public_key_only, 1);
    let row = &s.audit(1).unwrap()[0];
    assert_eq!((row.action.as_str(), row.details["public_key_only"].as_bool()), ("device.add", Some(true)));
    // A zero PSK means none, and is kept as such.
    let none = NewDevice {
        keys: NewKeys::PublicOnly { public_key: public(2), preshared_key: PresharedKey::default() },
        ..NewDevice::generated("alice", "nopsk", secrets(2))
    };
    s.add_device(none, &pools(), &actor()).unwrap();
    assert_eq!(s.device_secrets("alice", "nopsk").unwrap().preshared_key, PresharedKey::default());

    // A full device needs its private key.
    let missing = NewDevice {
        keys: NewKeys::Full(DeviceSecrets { private_key: None, preshared_key: secrets(3).preshared_key }),
        ..NewDevice::generated("alice", "broken", secrets(3))
    };
    let e = s.add_device(missing, &pools(), &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::NoPrivateKey(l) if l == "alice/broken"), "{e:?}");
    // The error the CLI gives when asked for such a device's config.
    let msg = StoreError::NoPrivateKey(d.label()).to_string();
    assert!(msg.contains("alice/imported") && msg.contains("public key only") && msg.contains("vpn device rotate"), "{msg}");
    // A public key only device's key is unique like any other.
    assert!(matches!(
        s.add_device(NewDevice::generated("alice", "dup", secrets(1)), &pools(), &actor()),
        Err(StoreError::PublicKeyInUse { .. })
    ));
    // Public key only and fixed addresses together, as an import of a server config does.
    let both = NewDevice {
        addresses: NewAddresses::Fixed { ipv4: Some(Ipv4Addr::new(10, 8, 0, 77)), ipv6: None },
        ..public_only("alice", "both", 4)
    };
    let d = s.add_device(both, &pools(), &actor()).unwrap();
    assert_eq!((d.ipv4, d.ipv6, d.has_private_key), (Some(Ipv4Addr::new(10, 8, 0, 77)), None, false));
}

#[test]
fn imports_resume_and_roll_back() {
    let mut s = memory();
    // Existing data the import must not touch.
    s.add_user("zed", &actor()).unwrap();
    s.add_device(NewDevice::generated("zed", "phone", secrets(9)), &pools(), &actor()).unwrap();

    let (imp, resumed) = s.start_import("users.csv", "sha256:aaaa", 4, &actor()).unwrap();
    assert!(!resumed);
    assert_eq!((imp.source.as_str(), imp.digest.as_str(), imp.total, imp.done), ("users.csv", "sha256:aaaa", 4, 0));
    assert_eq!((imp.state.as_str(), imp.finished_at, imp.who.as_str()), ("running", None, "tester"));
    // The same file again while it runs (an interrupted run): the same record, to resume.
    let (again, resumed) = s.start_import("users.csv", "sha256:aaaa", 4, &actor()).unwrap();
    assert!(resumed);
    assert_eq!(again, imp);
    // Another file is another import.
    let (other, resumed) = s.start_import("other.csv", "sha256:bbbb", 1, &actor()).unwrap();
    assert!(!resumed);
    assert_ne!(other.id, imp.id);

    // Two batches of the import, progress counted with them.
    let first = vec![Change::AddUser { name: "alice" }, device("alice", "phone", 1), Change::AddUser { name: "bob" }];
    s.apply_batch(first, &pools(), &actor(), Some((imp.id, 2))).unwrap();
    // An existing user's new device belongs to the import too.
    let second = vec![device("zed", "imported", 2), device("bob", "laptop", 3), Change::AddUser { name: "carol" }];
    s.apply_batch(second, &pools(), &actor(), Some((imp.id, 2))).unwrap();
    // A failed batch counts nothing.
    let failed = vec![Change::AddUser { name: "dave" }, Change::AddUser { name: "alice" }];
    assert_eq!(s.apply_batch(failed, &pools(), &actor(), Some((imp.id, 2))).unwrap_err().index, 1);
    let rec = s.imports().unwrap().into_iter().find(|r| r.id == imp.id).unwrap();
    assert_eq!(rec.done, 4);
    assert_eq!(s.users_of_import(imp.id).unwrap(), ["alice", "bob", "carol"]);
    assert!(s.users_of_import(other.id).unwrap().is_empty());
    assert_eq!(s.audit(1000).unwrap().iter().find(|e| e.action == "user.add" && e.target == "alice").unwrap().details["import"], imp.id);
    // Something added outside the import, after it: kept by the rollback.
    s.add_user("erin", &actor()).unwrap();

    let done = s.finish_import(imp.id, &actor()).unwrap();
    assert_eq!((done.state.as_str(), done.done), ("done", 4));
    assert!(done.finished_at.is_some());
    assert!(matches!(s.finish_import(imp.id, &actor()), Err(StoreError::Import(_))));
    // Finished, the same digest starts a new import.
    let (rerun, resumed) = s.start_import("users.csv", "sha256:aaaa", 4, &actor()).unwrap();
    assert!(!resumed);
    assert_ne!(rerun.id, imp.id);
    // Newest first.
    let ids: Vec<i64> = s.imports().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, [rerun.id, other.id, imp.id]);

    let audit_before = s.audit(1000).unwrap().len();
    let removed = s.rollback_import(imp.id, &actor()).unwrap();
    assert_eq!(removed, ["alice", "bob", "carol"]);
    // Exactly what it added is gone; the rest stays.
    assert_eq!(contents(&s), (vec!["erin".into(), "zed".into()], vec!["zed/phone".into()]));
    assert_eq!(s.device_secrets("zed", "phone").unwrap(), secrets(9));
    let rec = s.imports().unwrap().into_iter().find(|r| r.id == imp.id).unwrap();
    assert_eq!(rec.state, "rolled_back");
    assert!(rec.finished_at.is_some());
    assert!(s.users_of_import(imp.id).unwrap().is_empty());
    let log = s.audit(1000).unwrap();
    assert_eq!(log.len(), audit_before + 4, "three user.remove rows and the import.rollback row");
    assert_eq!(log[0].action, "import.rollback");
    assert_eq!(log[0].target, format!("import {}", imp.id));
    assert_eq!(log[0].details["users_removed"], 3);
    assert_eq!(log[0].details["other_devices_removed"], 1);
    // The freed keys and names can be used again.
    s.add_user("alice", &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "phone", secrets(1)), &pools(), &actor()).unwrap();

    // Twice: refused, clearly, and nothing changes.
    let before = contents(&s);
    let e = s.rollback_import(imp.id, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Import(m) if m.contains("already rolled back")), "{e:?}");
    assert_eq!(e.to_string(), format!("import {} was already rolled back", imp.id));
    assert_eq!(contents(&s), before);
    let e = s.rollback_import(9_999, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Import(m) if m.contains("no import numbered 9999")), "{e:?}");
    // A running import can be rolled back too (an interrupted one, given up).
    assert!(s.rollback_import(other.id, &actor()).unwrap().is_empty());
    assert!(matches!(s.finish_import(other.id, &actor()), Err(StoreError::Import(_))));
}
