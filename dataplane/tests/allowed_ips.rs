//! Property tests: [`AllowedIps`] against a naive model, a list of `(prefix, value)` pairs where a
//! lookup scans for the longest containing prefix.
//!
//! Prefixes are drawn mostly from a few small address ranges (and the very bottom and top of the
//! address space) with lengths clustered near the host length, so that prefixes nest, collide and
//! split branch nodes often; a few are drawn from anywhere.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vpn_dataplane::{AllowedIps, IpPrefix};

/// The model: insertion-ordered pairs, prefixes unique.
#[derive(Default)]
struct Model(Vec<(IpPrefix, u8)>);

impl Model {
    fn insert(&mut self, prefix: IpPrefix, value: u8) -> Option<u8> {
        let old = self.remove(prefix);
        self.0.push((prefix, value));
        old
    }

    fn remove(&mut self, prefix: IpPrefix) -> Option<u8> {
        let at = self.0.iter().position(|&(p, _)| p == prefix)?;
        Some(self.0.remove(at).1)
    }

    fn remove_value(&mut self, value: u8) -> usize {
        let before = self.0.len();
        self.0.retain(|&(_, v)| v != value);
        before - self.0.len()
    }

    fn lookup(&self, ip: IpAddr) -> Option<u8> {
        self.0.iter().filter(|(p, _)| p.contains(ip)).max_by_key(|(p, _)| p.len()).map(|&(_, v)| v)
    }

    fn prefixes_of(&self, value: u8) -> Vec<IpPrefix> {
        let mut out: Vec<IpPrefix> = self.0.iter().filter(|&&(_, v)| v == value).map(|&(p, _)| p).collect();
        out.sort();
        out
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert(IpPrefix, u8),
    Remove(IpPrefix),
    RemoveValue(u8),
    Lookup(IpAddr),
}

/// IPv4 addresses: mostly inside 10.0.0.0/24, 10.0.1.0/24, 0.0.0.0/24 and 255.255.255.0/24.
fn v4_addr() -> BoxedStrategy<u32> {
    prop_oneof![
        8 => (prop::sample::select(vec![0x0a00_0000u32, 0x0a00_0100, 0x0000_0000, 0xffff_ff00]), any::<u8>())
            .prop_map(|(base, low)| base | u32::from(low)),
        1 => any::<u32>(),
    ]
    .boxed()
}

/// IPv6 addresses: mostly inside fd00::/120, fd00::1:0/120, ::/120, ffff:...:ff00/120, with a few
/// high-bit variations so that short prefixes split early.
fn v6_addr() -> BoxedStrategy<u128> {
    prop_oneof![
        8 => (
            prop::sample::select(vec![0xfd00u128 << 112, (0xfd00u128 << 112) | 0x1_0000, 0, u128::MAX << 8]),
            any::<u8>(),
            prop::sample::select(vec![0u128, 1 << 127, 1 << 64, 1 << 100]),
        )
            .prop_map(|(base, low, flip)| (base | u128::from(low)) ^ flip),
        1 => any::<u128>(),
    ]
    .boxed()
}

fn v4_prefix() -> BoxedStrategy<IpPrefix> {
    (v4_addr(), prop_oneof![4 => 22u8..=32, 1 => 0u8..=32])
        .prop_map(|(a, len)| IpPrefix::new(IpAddr::V4(Ipv4Addr::from(a)), len).expect("length in range"))
        .boxed()
}

fn v6_prefix() -> BoxedStrategy<IpPrefix> {
    (v6_addr(), prop_oneof![4 => 118u8..=128, 1 => 0u8..=128])
        .prop_map(|(a, len)| IpPrefix::new(IpAddr::V6(Ipv6Addr::from(a)), len).expect("length in range"))
        .boxed()
}

fn v4_ip() -> BoxedStrategy<IpAddr> {
    prop_oneof![
        4 => v4_addr().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        // The IPv4-mapped twin must not find IPv4 prefixes.
        1 => v4_addr().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
    .boxed()
}

fn v6_ip() -> BoxedStrategy<IpAddr> {
    v6_addr().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))).boxed()
}

fn ops(prefix: BoxedStrategy<IpPrefix>, ip: BoxedStrategy<IpAddr>) -> impl Strategy<Value = Vec<Op>> {
    let value = 0u8..6;
    let op = prop_oneof![
        6 => (prefix.clone(), value.clone()).prop_map(|(p, v)| Op::Insert(p, v)),
        2 => prefix.prop_map(Op::Remove),
        1 => value.prop_map(Op::RemoveValue),
        4 => ip.prop_map(Op::Lookup),
    ];
    prop::collection::vec(op, 1..200)
}

/// Runs `ops` against both and compares every answer, then the full contents.
fn run(ops: &[Op], probes: &[IpAddr]) -> Result<(), TestCaseError> {
    let mut table = AllowedIps::new();
    let mut model = Model::default();
    for op in ops {
        match *op {
            Op::Insert(p, v) => prop_assert_eq!(table.insert(p, v), model.insert(p, v), "insert {:?} {}", p, v),
            Op::Remove(p) => prop_assert_eq!(table.remove(p), model.remove(p), "remove {:?}", p),
            Op::RemoveValue(v) => prop_assert_eq!(table.remove_value(v), model.remove_value(v), "remove_value {}", v),
            Op::Lookup(ip) => prop_assert_eq!(table.lookup(ip), model.lookup(ip), "lookup {}", ip),
        }
        prop_assert_eq!(table.len(), model.0.len());
        prop_assert_eq!(table.is_empty(), model.0.is_empty());
    }
    for v in 0..6 {
        prop_assert_eq!(table.prefixes_of(v), model.prefixes_of(v), "prefixes_of {}", v);
    }
    // Every stored prefix's own address and both ends of its range, plus the extra probes.
    let mut all: Vec<IpAddr> = probes.to_vec();
    for &(p, _) in &model.0 {
        all.push(p.addr());
        all.push(last_addr(p));
    }
    for &ip in &all {
        prop_assert_eq!(table.lookup(ip), model.lookup(ip), "final lookup {}", ip);
    }
    // A snapshot (clone) answers the same, and changing it leaves the original alone.
    let mut snap = table.clone();
    for &ip in &all {
        prop_assert_eq!(snap.lookup(ip), table.lookup(ip));
    }
    snap.clear();
    prop_assert!(snap.is_empty());
    prop_assert_eq!(table.len(), model.0.len());
    Ok(())
}

/// The highest address inside `p`.
fn last_addr(p: IpPrefix) -> IpAddr {
    match p.addr() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) | u32::MAX.checked_shr(u32::from(p.len())).unwrap_or(0))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) | u128::MAX.checked_shr(u32::from(p.len())).unwrap_or(0))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn v4_matches_model(ops in ops(v4_prefix(), v4_ip()), probes in prop::collection::vec(v4_ip(), 0..32)) {
        run(&ops, &probes)?;
    }

    #[test]
    fn v6_matches_model(ops in ops(v6_prefix(), v6_ip()), probes in prop::collection::vec(v6_ip(), 0..32)) {
        run(&ops, &probes)?;
    }

    #[test]
    fn mixed_families_match_model(
        ops in ops(prop_oneof![v4_prefix(), v6_prefix()].boxed(), prop_oneof![v4_ip(), v6_ip()].boxed()),
        probes in prop::collection::vec(prop_oneof![v4_ip(), v6_ip()], 0..32),
    ) {
        run(&ops, &probes)?;
    }

    /// Building the same set in any order gives the same answers and the same listing.
    #[test]
    fn insertion_order_does_not_matter(entries in prop::collection::vec((v4_prefix(), 0u8..6), 0..64), probes in prop::collection::vec(v4_ip(), 1..64)) {
        let mut forward = AllowedIps::new();
        let mut backward = AllowedIps::new();
        // Later inserts of the same prefix win, so feed the reverse pass only the final value.
        let mut last = Model::default();
        for &(p, v) in &entries {
            forward.insert(p, v);
            last.insert(p, v);
        }
        for &(p, v) in last.0.iter().rev() {
            backward.insert(p, v);
        }
        prop_assert_eq!(forward.entries(), backward.entries());
        for &ip in &probes {
            prop_assert_eq!(forward.lookup(ip), backward.lookup(ip));
        }
    }
}
