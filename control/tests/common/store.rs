//! Helpers for the store tests: an actor, deterministic secrets, the usual pools.

use vpn_control::store::{Actor, DeviceSecrets, Pools};
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};

pub fn actor() -> Actor {
    Actor::new("tester", "test")
}

/// Distinct, deterministic secrets for number `n`.
pub fn secrets(n: u32) -> DeviceSecrets {
    let mut k = [0x51u8; 32];
    k[..4].copy_from_slice(&n.to_be_bytes());
    let mut p = [0x62u8; 32];
    p[..4].copy_from_slice(&n.to_be_bytes());
    DeviceSecrets { private_key: Some(PrivateKey::from_bytes(k)), preshared_key: PresharedKey::from_bytes(p) }
}

/// The public key of [`secrets`]`(n)`.
pub fn public(n: u32) -> PublicKey {
    secrets(n).private_key.unwrap().public_key()
}

/// An IPv4 /24 and an IPv6 /64.
pub fn pools() -> Pools {
    Pools { ipv4: Some("10.8.0.0/24".parse().unwrap()), ipv6: Some("fd00:8::/64".parse().unwrap()) }
}
