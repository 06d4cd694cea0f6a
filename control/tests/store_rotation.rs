//! Key rotation in the store: a device's pending key pair beside its current one, completing a
//! rotation, public-key uniqueness across current and pending keys, the server key's rotation
//! and its retiring key, what `peers::desired` configures meanwhile, and an audit log that never
//! holds a secret.

mod common;

use common::store::{actor, pools, public, secrets};
use std::collections::HashSet;

use rand_core::OsRng;
use vpn_control::keyring::{KdfParams, Passphrase};
use vpn_control::peers::{allowed_ips, desired};
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{DeviceSecrets, NewDevice, NewKeys, PendingRotation, SqliteStore, Store, StoreError};
use vpn_crypto::{PresharedKey, PrivateKey};
use vpn_dataplane::InterfaceConfig;

fn config() -> ServerConfig {
    ServerConfig::generated_default(&mut OsRng, "vpn.example.com".into())
}

/// A store with alice's phone (secrets 1) and laptop (secrets 5).
fn store() -> SqliteStore {
    let mut s = SqliteStore::in_memory().unwrap();
    s.add_user("alice", &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "phone", secrets(1)), &pools(), &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "laptop", secrets(5)), &pools(), &actor()).unwrap();
    s
}

/// Fails if the audit log holds any of these secrets, in base64 anywhere in its rows.
fn assert_audit_clean(s: &dyn Store, secrets: &[DeviceSecrets], server_keys: &[PrivateKey]) {
    let log = s.audit(10_000).unwrap();
    let text = serde_json::to_string(&log).unwrap();
    let mut needles = Vec::new();
    for sec in secrets {
        if let Some(k) = &sec.private_key {
            needles.push(k.to_base64());
        }
        needles.push(sec.preshared_key.to_base64());
    }
    needles.extend(server_keys.iter().map(PrivateKey::to_base64));
    for n in &needles {
        assert!(!text.contains(n.as_str()), "a secret is in the audit log");
        for e in &log {
            assert!(!e.details.to_string().contains(n.as_str()), "a secret is in the details of {}", e.action);
        }
    }
}

/// No two peers share an allowed IP: the engine routes each address to exactly one peer.
fn assert_no_shared_addresses(c: &InterfaceConfig) {
    let mut seen = HashSet::new();
    for p in &c.peers {
        for ip in &p.allowed_ips {
            assert!(seen.insert(*ip), "{ip} is allowed to two peers");
        }
    }
}

#[test]
fn device_rotation_start_and_complete() {
    let mut s = store();
    let before = s.device("alice", "phone").unwrap();
    assert_eq!(before.rotation, None);
    assert_eq!(before.key_created_at, before.created_at);

    let d = s.rotate_device("alice", "phone", &secrets(2), 5_000, &actor()).unwrap();
    assert_eq!(d.rotation, Some(PendingRotation { public_key: public(2), rotate_by: 5_000 }));
    // The current key, its addresses and its age are unchanged until the rotation completes.
    assert_eq!(d.public_key, before.public_key);
    assert_eq!((d.ipv4, d.ipv6, d.key_created_at), (before.ipv4, before.ipv6, before.key_created_at));
    assert_eq!(s.device("alice", "phone").unwrap(), d);
    assert_eq!(s.devices(None).unwrap().iter().find(|x| x.name == "phone").unwrap(), &d);
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), secrets(1));
    assert_eq!(s.pending_secrets("alice", "phone").unwrap(), secrets(2));
    assert_ne!(s.pending_secrets("alice", "phone").unwrap(), s.device_secrets("alice", "phone").unwrap());
    assert_eq!(s.key_status().unwrap().rotations_pending, 1);
    // A device without a rotation has no pending secrets.
    let e = s.pending_secrets("alice", "laptop").unwrap_err();
    assert!(matches!(&e, StoreError::Rotation(m) if m.contains("alice/laptop")), "{e:?}");
    let rotate_row = &s.audit(1).unwrap()[0];
    assert_eq!((rotate_row.action.as_str(), rotate_row.target.as_str()), ("device.rotate", "alice/phone"));
    assert_eq!(rotate_row.details["old_public_key"], public(1).to_base64());
    assert_eq!(rotate_row.details["new_public_key"], public(2).to_base64());
    assert_eq!(rotate_row.details["rotate_by"], 5_000);
    assert_eq!(rotate_row.details["replaced_pending"], serde_json::Value::Null);

    // A second rotation replaces the pending one.
    let d = s.rotate_device("alice", "phone", &secrets(3), 6_000, &actor()).unwrap();
    assert_eq!(d.rotation, Some(PendingRotation { public_key: public(3), rotate_by: 6_000 }));
    assert_eq!(s.pending_secrets("alice", "phone").unwrap(), secrets(3));
    assert_eq!(s.audit(1).unwrap()[0].details["replaced_pending"], public(2).to_base64());

    let done = s.complete_rotation("alice", "phone", "client connected with the new key", &actor()).unwrap();
    assert_eq!(done.public_key, public(3));
    assert_eq!(done.rotation, None);
    assert_eq!((done.ipv4, done.ipv6), (before.ipv4, before.ipv6), "the addresses stay");
    assert_eq!((done.created_at, done.enabled), (before.created_at, before.enabled));
    assert!(done.key_created_at >= before.key_created_at);
    assert!(done.has_private_key);
    assert_eq!(s.device("alice", "phone").unwrap(), done);
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), secrets(3));
    assert!(matches!(s.pending_secrets("alice", "phone"), Err(StoreError::Rotation(_))));
    assert_eq!(s.key_status().unwrap().rotations_pending, 0);
    let row = &s.audit(1).unwrap()[0];
    assert_eq!((row.action.as_str(), row.target.as_str()), ("device.rotate.complete", "alice/phone"));
    assert_eq!(row.details["old_public_key"], public(1).to_base64());
    assert_eq!(row.details["new_public_key"], public(3).to_base64());
    assert_eq!(row.details["reason"], "client connected with the new key");

    // The old public key is gone: no device holds it, and a new device may take it.
    assert!(s.devices(None).unwrap().iter().all(|d| d.public_key != public(1) && d.rotation.is_none()));
    s.add_device(NewDevice::generated("alice", "reuse", secrets(1)), &pools(), &actor()).unwrap();

    // Nothing left to complete.
    let e = s.complete_rotation("alice", "phone", "again", &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Rotation(m) if m.contains("alice/phone")), "{e:?}");
    assert!(matches!(s.rotate_device("alice", "tablet", &secrets(9), 1, &actor()), Err(StoreError::NoSuchDevice { .. })));
    assert!(matches!(s.rotate_device("bob", "phone", &secrets(9), 1, &actor()), Err(StoreError::NoSuchUser(_))));
    assert!(matches!(s.complete_rotation("alice", "tablet", "x", &actor()), Err(StoreError::NoSuchDevice { .. })));
    let no_private = DeviceSecrets { private_key: None, preshared_key: PresharedKey::from_bytes([1; 32]) };
    assert!(matches!(s.rotate_device("alice", "laptop", &no_private, 1, &actor()), Err(StoreError::NoPrivateKey(_))));

    assert_audit_clean(&s, &[secrets(1), secrets(2), secrets(3), secrets(5)], &[]);
}

#[test]
fn pending_keys_are_unique_too() {
    let mut s = store();
    s.rotate_device("alice", "phone", &secrets(2), 5_000, &actor()).unwrap();
    let audit_before = s.audit(1000).unwrap().len();

    // A new device cannot take the pending key...
    let e = s.add_device(NewDevice::generated("alice", "tablet", secrets(2)), &pools(), &actor()).unwrap_err();
    match &e {
        StoreError::PublicKeyInUse { public_key, owner } => {
            assert_eq!(public_key, &public(2).to_base64());
            assert_eq!(owner, "alice/phone");
        }
        other => panic!("{other:?}"),
    }
    // ...nor may another device rotate to it, or to a current key.
    let e = s.rotate_device("alice", "laptop", &secrets(2), 5_000, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::PublicKeyInUse { owner, .. } if owner == "alice/phone"), "{e:?}");
    let e = s.rotate_device("alice", "laptop", &secrets(1), 5_000, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::PublicKeyInUse { owner, .. } if owner == "alice/phone"), "{e:?}");
    // A public-key-only device cannot take it either.
    let new = NewDevice {
        keys: NewKeys::PublicOnly { public_key: public(2), preshared_key: PresharedKey::default() },
        ..NewDevice::generated("alice", "tablet", secrets(2))
    };
    assert!(matches!(s.add_device(new, &pools(), &actor()), Err(StoreError::PublicKeyInUse { .. })));
    // A device's rotation to its own current key is refused.
    let e = s.rotate_device("alice", "laptop", &secrets(5), 5_000, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::PublicKeyInUse { owner, .. } if owner == "alice/laptop"), "{e:?}");
    // Nothing changed, nothing logged.
    assert_eq!(s.audit(1000).unwrap().len(), audit_before);
    assert_eq!(s.device("alice", "laptop").unwrap().rotation, None);
    assert_eq!(s.devices(None).unwrap().len(), 2);

    // Once the pending key is replaced, it is free.
    s.rotate_device("alice", "phone", &secrets(3), 5_000, &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "tablet", secrets(2)), &pools(), &actor()).unwrap();
}

#[test]
fn public_only_device_gets_a_private_key_by_rotation() {
    let mut s = store();
    let new = NewDevice {
        keys: NewKeys::PublicOnly { public_key: public(7), preshared_key: secrets(7).preshared_key },
        ..NewDevice::generated("alice", "imported", secrets(7))
    };
    assert!(!s.add_device(new, &pools(), &actor()).unwrap().has_private_key);
    s.rotate_device("alice", "imported", &secrets(8), 9_000, &actor()).unwrap();
    let d = s.complete_rotation("alice", "imported", "forced", &actor()).unwrap();
    assert!(d.has_private_key);
    assert_eq!(d.public_key, public(8));
    assert_eq!(s.device_secrets("alice", "imported").unwrap(), secrets(8));
}

#[test]
fn desired_during_a_device_rotation() {
    let mut s = store();
    let config = config();
    let server = PrivateKey::from_bytes([9; 32]);
    s.set_server_key(&server, &actor()).unwrap();
    let phone = s.rotate_device("alice", "phone", &secrets(2), 10_000, &actor()).unwrap();
    let laptop = s.device("alice", "laptop").unwrap();
    assert_eq!(allowed_ips(&phone).len(), 2);

    // Before the deadline: the old key keeps the addresses, the new key is a peer without any
    // that takes them over from the old key at its first handshake.
    let c = desired(&config, &server, &s, 9_999).unwrap();
    assert_eq!(c.private_key, Some(server.clone()));
    assert_eq!(c.retiring_private_key, None);
    assert_eq!(c.peers.len(), 3);
    let old = c.peer(&public(1)).expect("the old key is a peer");
    assert_eq!(old.allowed_ips, allowed_ips(&phone));
    assert_eq!(old.preshared_key, secrets(1).preshared_key);
    let new = c.peer(&public(2)).expect("the new key is a peer");
    assert!(new.allowed_ips.is_empty(), "{:?}", new.allowed_ips);
    assert_eq!(new.takes_over, Some(public(1)));
    assert_eq!(new.preshared_key, secrets(2).preshared_key);
    assert_eq!(old.takes_over, None);
    let other = c.peer(&public(5)).expect("the laptop");
    assert_eq!(other.takes_over, None);
    assert_eq!(other.allowed_ips, allowed_ips(&laptop));
    assert_eq!(other.preshared_key, secrets(5).preshared_key);
    assert_no_shared_addresses(&c);

    // From the deadline on: only the new key, with the addresses.
    for now in [10_000, 20_000] {
        let c = desired(&config, &server, &s, now).unwrap();
        assert_eq!(c.peers.len(), 2);
        assert!(c.peer(&public(1)).is_none(), "the old key still works past the deadline");
        let new = c.peer(&public(2)).unwrap();
        assert_eq!(new.allowed_ips, allowed_ips(&phone));
        assert_eq!(new.takes_over, None);
        assert_eq!(new.preshared_key, secrets(2).preshared_key);
        assert_no_shared_addresses(&c);
    }

    // A disabled device is no peer at all, rotation or not.
    s.set_device_enabled("alice", "phone", false, &actor()).unwrap();
    let c = desired(&config, &server, &s, 9_999).unwrap();
    assert!(c.peer(&public(1)).is_none() && c.peer(&public(2)).is_none());
    s.set_device_enabled("alice", "phone", true, &actor()).unwrap();

    // Completed: the new key alone, with the addresses, whatever the time.
    s.complete_rotation("alice", "phone", "client connected with the new key", &actor()).unwrap();
    let c = desired(&config, &server, &s, 9_999).unwrap();
    assert_eq!(c.peers.len(), 2);
    assert!(c.peer(&public(1)).is_none());
    assert_eq!(c.peer(&public(2)).unwrap().allowed_ips, allowed_ips(&phone));
    assert_no_shared_addresses(&c);
}

#[test]
fn server_key_rotation_and_retirement() {
    let mut s = store();
    let config = config();
    let (k1, k2, k3) = (PrivateKey::from_bytes([1; 32]), PrivateKey::from_bytes([2; 32]), PrivateKey::from_bytes([3; 32]));

    // Nothing to rotate yet.
    let e = s.rotate_server_key(&k2, 10_000, &actor()).unwrap_err();
    assert!(matches!(&e, StoreError::Rotation(m) if m.contains("no key")), "{e:?}");
    assert_eq!(s.server_key_created_at().unwrap(), None);
    assert_eq!(s.retiring_server_key().unwrap(), None);

    s.set_server_key(&k1, &actor()).unwrap();
    let made = s.server_key_created_at().unwrap().expect("set with the key");
    assert!(made > 1_600_000_000);
    assert_eq!(s.retiring_server_key().unwrap(), None);
    assert_eq!(desired(&config, &k1, &s, 0).unwrap().retiring_private_key, None);

    s.rotate_server_key(&k2, 10_000, &actor()).unwrap();
    assert_eq!(s.server_key().unwrap(), Some(k2.clone()));
    assert_eq!(s.retiring_server_key().unwrap(), Some((k1.clone(), 10_000)));
    assert!(s.server_key_created_at().unwrap().unwrap() >= made);
    assert_eq!(s.key_status().unwrap().server_retiring_until, Some(10_000));
    let row = &s.audit(1).unwrap()[0];
    assert_eq!((row.action.as_str(), row.target.as_str()), ("server.key.rotate", "server"));
    assert_eq!(row.details["old_public_key"], k1.public_key().to_base64());
    assert_eq!(row.details["new_public_key"], k2.public_key().to_base64());
    assert_eq!(row.details["old_accepted_until"], 10_000);

    // The old key is the interface's retiring key until the deadline, not after.
    let c = desired(&config, &k2, &s, 9_999).unwrap();
    assert_eq!(c.private_key, Some(k2.clone()));
    assert_eq!(c.retiring_private_key, Some(k1.clone()));
    assert_eq!(c.peers.len(), 2);
    for now in [10_000, 50_000] {
        assert_eq!(desired(&config, &k2, &s, now).unwrap().retiring_private_key, None);
    }

    // Another rotation during the grace period: the key it replaces becomes the retiring one.
    s.rotate_server_key(&k3, 20_000, &actor()).unwrap();
    assert_eq!(s.server_key().unwrap(), Some(k3.clone()));
    assert_eq!(s.retiring_server_key().unwrap(), Some((k2.clone(), 20_000)));

    assert!(s.retire_server_key("grace period over", &actor()).unwrap());
    assert_eq!(s.retiring_server_key().unwrap(), None);
    assert_eq!(s.server_key().unwrap(), Some(k3.clone()));
    assert_eq!(s.key_status().unwrap().server_retiring_until, None);
    assert_eq!(desired(&config, &k3, &s, 0).unwrap().retiring_private_key, None);
    let row = &s.audit(1).unwrap()[0];
    assert_eq!((row.action.as_str(), row.details["reason"].as_str()), ("server.key.retire", Some("grace period over")));
    // Nothing left to retire: no change, no audit row.
    let n = s.audit(1000).unwrap().len();
    assert!(!s.retire_server_key("again", &actor()).unwrap());
    assert_eq!(s.audit(1000).unwrap().len(), n);

    let actions: Vec<String> = s.audit(1000).unwrap().into_iter().map(|e| e.action).filter(|a| a.starts_with("server")).collect();
    assert_eq!(actions, ["server.key.retire", "server.key.rotate", "server.key.rotate", "server.key"]);
    assert_audit_clean(&s, &[secrets(1), secrets(5)], &[k1, k2, k3]);
}

#[test]
fn rotation_on_a_file_store_and_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let pass = Passphrase::new(b"rotation test".to_vec());
    let mut s = SqliteStore::open(&path).unwrap();
    s.unlock(&pass, KdfParams::TEST, &actor()).unwrap();
    s.add_user("alice", &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "phone", secrets(1)), &pools(), &actor()).unwrap();
    s.add_device(NewDevice::generated("alice", "laptop", secrets(5)), &pools(), &actor()).unwrap();
    let k1 = PrivateKey::from_bytes([1; 32]);
    s.set_server_key(&k1, &actor()).unwrap();
    s.rotate_device("alice", "phone", &secrets(2), 10_000, &actor()).unwrap();
    drop(s);

    // Locked: starting a rotation needs the data key, completing one does not.
    let mut s = SqliteStore::open(&path).unwrap();
    assert!(matches!(s.rotate_device("alice", "laptop", &secrets(6), 10_000, &actor()), Err(StoreError::Locked)));
    assert!(matches!(s.rotate_server_key(&PrivateKey::from_bytes([2; 32]), 10_000, &actor()), Err(StoreError::Locked)));
    assert!(matches!(s.pending_secrets("alice", "phone"), Err(StoreError::Locked)));
    assert!(matches!(desired(&config(), &k1, &s, 0), Err(StoreError::Locked)));
    assert_eq!(s.device("alice", "phone").unwrap().rotation.map(|r| r.public_key), Some(public(2)));
    s.complete_rotation("alice", "phone", "grace period over", &actor()).unwrap();
    drop(s);

    // The moved values still open: their associated data is the new public key, now current.
    let mut s = SqliteStore::open(&path).unwrap();
    s.unlock(&pass, KdfParams::TEST, &actor()).unwrap();
    assert_eq!(s.device_secrets("alice", "phone").unwrap(), secrets(2));
    assert_eq!(s.device("alice", "phone").unwrap().public_key, public(2));
    assert_audit_clean(&s, &[secrets(1), secrets(2), secrets(5)], &[k1]);
}
