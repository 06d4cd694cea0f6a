//! From a read wg-quick file to a [`Plan`]: pools, server key, and per peer its user, device,
//! keys and addresses, with what is refused and what is not carried over (the rules are in
//! [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::IpPrefix;

use super::wg_quick::{Peer, WgQuickFile};
use super::{ImportError, Problem};
use crate::netconf::InterfaceAddress;
use crate::store::names::{self, MAX_DEVICE_LEN, MAX_USER_LEN};
use crate::store::{Device, Pools, User};

/// What the import goes into, when it is merged into a store that has users already.
#[derive(Debug, Clone, Default)]
pub struct Existing {
    /// Every user, with its devices' names.
    pub users: BTreeMap<String, BTreeSet<String>>,
    /// Every device's public key, with `user/device`.
    pub public_keys: HashMap<PublicKey, String>,
    /// Every device's address, with `user/device`.
    pub addresses: HashMap<IpAddr, String>,
}

impl Existing {
    /// The store's users and devices.
    pub fn new(users: &[User], devices: &[Device]) -> Existing {
        let mut e = Existing::default();
        for u in users {
            e.users.entry(u.name.clone()).or_default();
        }
        for d in devices {
            e.users.entry(d.user.clone()).or_default().insert(d.name.clone());
            e.public_keys.insert(d.public_key, d.label());
            if let Some(p) = &d.rotation {
                e.public_keys.insert(p.public_key, d.label());
            }
            for a in [d.ipv4.map(IpAddr::V4), d.ipv6.map(IpAddr::V6)].into_iter().flatten() {
                e.addresses.insert(a, d.label());
            }
        }
        e
    }

    /// Whether there is no user at all.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// How to plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions<'a> {
    /// Every peer becomes a device of this user (`--user`).
    pub user: Option<&'a str>,
    /// The store's users and devices, when merging (`None`: a store without users).
    pub existing: Option<&'a Existing>,
}

/// One peer to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPeer {
    /// The line of its `[Peer]`.
    pub line: usize,
    /// The user it goes to.
    pub user: String,
    /// Its device name.
    pub device: String,
    /// Its public key.
    pub public_key: PublicKey,
    /// Its pre-shared key, if it has one.
    pub preshared_key: Option<PresharedKey>,
    /// Its IPv4 address.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address.
    pub ipv6: Option<Ipv6Addr>,
}

/// A peer already in the store (same public key), so not imported again (`--merge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The line of its `[Peer]`.
    pub line: usize,
    /// Its public key.
    pub public_key: PublicKey,
    /// The device that has it, `user/device`.
    pub device: String,
}

/// What an import does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The server's private key (`[Interface] PrivateKey`).
    pub server_key: PrivateKey,
    /// The listen port, if the file sets one.
    pub listen_port: Option<u16>,
    /// The pools, one per family that the file's `Address` has.
    pub pools: Pools,
    /// The server's addresses in the tunnel as `vpn` will give them (first host of each pool).
    pub server_addresses: Vec<InterfaceAddress>,
    /// The MTU, if the file sets a usable one.
    pub mtu: Option<u16>,
    /// DNS servers, if the file has any.
    pub dns: Option<Vec<IpAddr>>,
    /// The server's public address from a `# ENDPOINT` comment, if any.
    pub endpoint: Option<String>,
    /// How many peers the file has.
    pub peers_in_file: usize,
    /// The peers to import, in file order.
    pub peers: Vec<PlannedPeer>,
    /// The users to create, sorted.
    pub new_users: Vec<String>,
    /// Peers already in the store.
    pub skipped: Vec<Skipped>,
    /// Peers not imported, and why.
    pub refused: Vec<Problem>,
    /// What is not carried over, sorted by line.
    pub warnings: Vec<Problem>,
}

impl Plan {
    /// Checks that merging into a store whose server key is `server` and whose configured pools
    /// are `pools` keeps both the store's devices and the file's peers working.
    pub fn check_merge(&self, server: Option<&PublicKey>, pools: &Pools) -> Result<(), ImportError> {
        let mine = self.server_key.public_key();
        if server.is_some_and(|k| *k != mine) {
            return Err(ImportError::Conflict(format!(
                "the store's server key differs from the file's PrivateKey (public key {mine}): the file's clients and the store's devices cannot both keep working; import into an empty store instead"
            )));
        }
        if *pools != self.pools {
            let show = |p: &Pools| {
                let v: Vec<String> = [p.ipv4, p.ipv6].iter().flatten().map(ToString::to_string).collect();
                if v.is_empty() {
                    "none".to_owned()
                } else {
                    v.join(" and ")
                }
            };
            return Err(ImportError::Conflict(format!(
                "the file's subnets ({}) differ from the configured pools ({}): the store's devices would fall outside; import into an empty store instead",
                show(&self.pools),
                show(pools)
            )));
        }
        Ok(())
    }
}

/// A peer's label in messages: its name, else its position.
fn label(p: &Peer) -> String {
    match &p.name {
        Some(n) => format!("peer {:?}", n.value),
        None => format!("peer {} (no name)", p.index),
    }
}

/// The pools from the interface's addresses; problems are fatal, warnings not.
fn pools(file: &WgQuickFile, warnings: &mut Vec<Problem>) -> Result<(Pools, Vec<InterfaceAddress>), Vec<Problem>> {
    let mut pools = Pools::default();
    let mut servers = Vec::new();
    let mut problems = Vec::new();
    for a in &file.interface.addresses {
        let v4 = a.value.addr().is_ipv4();
        let slot = if v4 { &mut pools.ipv4 } else { &mut pools.ipv6 };
        if let Some(p) = slot {
            warnings.push(Problem::new(
                a.line,
                format!("Address {} is not carried over: vpn has one pool per address family, here {p}", a.value),
            ));
            continue;
        }
        let len = a.value.prefix_len();
        let (range, example) = if v4 { (8..=30, "10.66.66.1/24") } else { (64..=120, "fd42:42:42::1/64") };
        if !range.contains(&len) {
            problems.push(Problem::new(
                a.line,
                format!(
                    "Address {}: vpn takes the clients' subnet from the server's address, and /{len} is not usable: the prefix length must be {} to {} (e.g. {example}); write the subnet into a copy of the file and import that",
                    a.value,
                    range.start(),
                    range.end()
                ),
            ));
            continue;
        }
        let net = a.value.network();
        let first = first_host(net);
        if a.value.addr() != first {
            warnings.push(Problem::new(
                a.line,
                format!(
                    "the server's address {} becomes {first} (vpn gives the server the first address of the pool {net}): clients that reach the server itself at {} (DNS, SSH) must use {first}",
                    a.value.addr(),
                    a.value.addr()
                ),
            ));
        }
        *slot = Some(net);
        servers.push(InterfaceAddress::new(first, len).unwrap_or(a.value));
    }
    if problems.is_empty() {
        Ok((pools, servers))
    } else {
        Err(problems)
    }
}

/// The first host address of a network: the server's.
fn first_host(net: IpPrefix) -> IpAddr {
    match net.addr() {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(1))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(1))),
    }
}

/// Why a device cannot have `addr` of `pool`, if it cannot.
fn unusable(addr: IpAddr, pool: IpPrefix) -> Option<&'static str> {
    if addr == pool.addr() {
        return Some("it is the pool's network address");
    }
    if addr == first_host(pool) {
        return Some("vpn's server takes it (the first address of the pool)");
    }
    if let (IpAddr::V4(a), IpAddr::V4(net)) = (addr, pool.addr()) {
        let broadcast = u32::from(net) | (u32::MAX >> pool.len());
        if u32::from(a) == broadcast {
            return Some("it is the pool's broadcast address");
        }
    }
    if let (IpAddr::V6(a), IpAddr::V6(net)) = (addr, pool.addr()) {
        // The store uses the first /64 of a larger pool.
        if pool.len() < 64 && (u128::from(a) >> 64) != (u128::from(net) >> 64) {
            return Some("vpn uses only the first /64 of the pool");
        }
    }
    None
}

/// `raw` fitted to a naming rule: characters outside `extra` and ASCII letters and digits become
/// `_` (runs of them one), leading characters other than letters and digits are dropped, the
/// length is cut to `max`, trailing `_` dropped. `None` when nothing is left.
fn fit(raw: &str, extra: &[u8], max: usize) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(c as u8))) {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let start = out.find(|c: char| c.is_ascii_alphanumeric())?;
    let mut s: String = out[start..].chars().take(max).collect();
    while s.ends_with('_') {
        s.pop();
    }
    (!s.is_empty()).then_some(s)
}

fn fit_user(raw: &str) -> Option<String> {
    fit(raw, b"._-@", MAX_USER_LEN).filter(|n| names::validate_user(n).is_ok())
}

fn fit_device(raw: &str) -> Option<String> {
    fit(raw, b"._-", MAX_DEVICE_LEN).filter(|n| names::validate_device(n).is_ok())
}

/// `base`, or `base-2`, `base-3`, ... (cut to fit), whichever is free in `taken`.
fn unique(base: &str, taken: &BTreeSet<String>) -> String {
    if !taken.contains(base) {
        return base.to_owned();
    }
    (2..)
        .map(|i| {
            let suffix = format!("-{i}");
            let keep = MAX_DEVICE_LEN.saturating_sub(suffix.len());
            format!("{}{suffix}", base.chars().take(keep).collect::<String>())
        })
        .find(|n| !taken.contains(n))
        .expect("an unbounded range has a free name")
}

/// The first free `deviceN`.
fn next_default(taken: &BTreeSet<String>) -> String {
    (1..).map(|i| format!("device{i}")).find(|n| !taken.contains(n)).expect("an unbounded range has a free name")
}

/// Plans the import of `file`. Fails only on a file whose subnets cannot become pools, or a
/// bad `--user`; everything else is in the plan's refusals and warnings.
pub fn plan(file: &WgQuickFile, options: &PlanOptions<'_>) -> Result<Plan, ImportError> {
    if let Some(u) = options.user {
        names::validate_user(u)?;
    }
    let empty = Existing::default();
    let existing = options.existing.unwrap_or(&empty);
    let mut warnings = file.notes.clone();
    let (pools, server_addresses) = pools(file, &mut warnings).map_err(ImportError::Invalid)?;
    let iface = &file.interface;
    let Some(server_key) = iface.private_key.as_ref().map(|k| k.value.clone()) else {
        return Err(ImportError::Invalid(vec![Problem::new(
            0,
            "[Interface] has no PrivateKey: the server's key is needed so that clients keep working",
        )]));
    };
    let server_public = server_key.public_key();

    let mtu = match &iface.mtu {
        Some(m) if !(1280..=9000).contains(&m.value) => {
            warnings.push(Problem::new(m.line, format!("MTU {} is not carried over: vpn takes 1280 to 9000", m.value)));
            None
        }
        m => m.as_ref().map(|m| m.value),
    };
    let mut dns: Vec<IpAddr> = Vec::new();
    for d in &iface.dns {
        let a = d.value;
        let bad = a.is_unspecified() || a.is_multicast() || matches!(a, IpAddr::V4(v) if v.is_broadcast() || v.octets()[0] == 0);
        if bad {
            warnings.push(Problem::new(d.line, format!("DNS {a} is not a server address and is not carried over")));
        } else if !dns.contains(&a) {
            dns.push(a);
        }
    }
    if iface.listen_port.is_none() {
        warnings.push(Problem::new(
            iface.line,
            "no ListenPort: the configured port (default 51820) is kept; clients must reach the server there",
        ));
    }

    // Keys and addresses first, in file order: the first peer with a key or address keeps it.
    let mut keys: HashMap<PublicKey, usize> = HashMap::new();
    let mut taken: HashMap<IpAddr, usize> = HashMap::new();
    let mut accepted: Vec<(&Peer, Option<Ipv4Addr>, Option<Ipv6Addr>)> = Vec::new();
    let mut skipped = Vec::new();
    let mut refused = Vec::new();
    for p in &file.peers {
        let who = label(p);
        let key = p.public_key.value;
        let refuse =
            |refused: &mut Vec<Problem>, why: String| refused.push(Problem::new(p.line, format!("{who} ({key}) is not imported: {why}")));
        // What is dropped of this peer, reported only if the peer is imported.
        let mut dropped: Vec<Problem> = p.notes.iter().map(|n| Problem::new(n.line, format!("{who}: {}", n.message))).collect();
        if key == server_public {
            refuse(&mut refused, "its public key is the server's own".into());
            continue;
        }
        if let Some(first) = keys.get(&key) {
            refuse(&mut refused, format!("the peer at line {first} has the same public key"));
            continue;
        }
        keys.insert(key, p.line);
        if let Some(device) = existing.public_keys.get(&key) {
            skipped.push(Skipped { line: p.line, public_key: key, device: device.clone() });
            continue;
        }
        let mut v4: Option<(Ipv4Addr, usize)> = None;
        let mut v6: Option<(Ipv6Addr, usize)> = None;
        for a in &p.allowed_ips {
            let pool = if a.addr.is_ipv4() { pools.ipv4 } else { pools.ipv6 };
            let inside = pool.is_some_and(|pool| pool.contains(a.addr));
            if !a.is_host() || !inside {
                let why = if inside || pool.is_some_and(|pool| IpPrefix::new(a.addr, a.len).is_ok_and(|q| q.contains(pool.addr()))) {
                    "it is not a single address"
                } else {
                    "it is outside the pools"
                };
                dropped.push(Problem::new(
                    a.line,
                    format!(
                        "{who}: AllowedIPs {a} is not carried over ({why}): the device gets its own addresses only; a network routed to this peer is no longer routed"
                    ),
                ));
                continue;
            }
            let first = match a.addr {
                IpAddr::V4(x) if v4.is_none() => {
                    v4 = Some((x, a.line));
                    true
                }
                IpAddr::V6(x) if v6.is_none() => {
                    v6 = Some((x, a.line));
                    true
                }
                _ => false,
            };
            if !first {
                dropped.push(Problem::new(
                    a.line,
                    format!(
                        "{who}: AllowedIPs {a} is not carried over: a device has one address per family, and this peer's first is kept"
                    ),
                ));
            }
        }
        if v4.is_none() && v6.is_none() {
            let all: Vec<String> = p.allowed_ips.iter().map(ToString::to_string).collect();
            let had = if all.is_empty() { "it has no AllowedIPs".to_owned() } else { format!("AllowedIPs {}", all.join(", ")) };
            refuse(&mut refused, format!("it has no single address inside the pools ({had}), and every device needs one"));
            continue;
        }
        let mine = [v4.map(|(a, l)| (IpAddr::V4(a), l)), v6.map(|(a, l)| (IpAddr::V6(a), l))];
        let mut why = None;
        for (addr, _) in mine.iter().flatten() {
            let pool = if addr.is_ipv4() { pools.ipv4 } else { pools.ipv6 };
            if let Some(reason) = pool.and_then(|pool| unusable(*addr, pool)) {
                why = Some(format!("its address {addr} cannot be a device's: {reason}"));
            } else if let Some(line) = taken.get(addr) {
                why = Some(format!("its address {addr} belongs to the peer at line {line} already"));
            } else if let Some(device) = existing.addresses.get(addr) {
                why = Some(format!("its address {addr} belongs to device {device} already"));
            }
            if why.is_some() {
                break;
            }
        }
        if let Some(why) = why {
            refuse(&mut refused, why);
            continue;
        }
        for (addr, _) in mine.iter().flatten() {
            taken.insert(*addr, p.line);
        }
        warnings.append(&mut dropped);
        accepted.push((p, v4.map(|(a, _)| a), v6.map(|(a, _)| a)));
    }

    // Names.
    let mut devices: BTreeMap<String, BTreeSet<String>> = existing.users.clone();
    let mut new_users = BTreeSet::new();
    let mut peers = Vec::with_capacity(accepted.len());
    for (p, ipv4, ipv6) in accepted {
        let raw = p.name.as_ref();
        let (user, device) = match options.user {
            Some(u) => {
                let device = raw.and_then(|n| fit_device(&n.value));
                if let (Some(n), Some(d)) = (raw, &device) {
                    if *d != n.value {
                        warnings.push(Problem::new(n.line, format!("name {:?} becomes device {d:?} (the naming rules)", n.value)));
                    }
                }
                (u.to_owned(), Some(device.unwrap_or_else(|| format!("peer{}", p.index))))
            }
            None => {
                let (u_raw, d_raw) = match raw.map(|n| n.value.as_str()).map(|v| v.split_once('/').unwrap_or((v, ""))) {
                    Some((u, d)) => (Some(u), (!d.trim().is_empty()).then_some(d)),
                    None => (None, None),
                };
                let user = u_raw.and_then(fit_user);
                let device = d_raw.and_then(fit_device);
                if let Some(n) = raw {
                    let fitted = match (&user, &device, d_raw) {
                        (Some(u), Some(d), Some(_)) => format!("{u}/{d}"),
                        (Some(u), _, None) => u.clone(),
                        (u, d, _) => format!("{}/{}", u.as_deref().unwrap_or("?"), d.as_deref().unwrap_or("?")),
                    };
                    if fitted != n.value {
                        let now = match (&user, &device) {
                            (Some(u), Some(d)) => format!("user {u:?}, device {d:?}"),
                            (Some(u), None) if d_raw.is_some() => format!("user {u:?} with a default device name"),
                            (Some(u), None) => format!("user {u:?}"),
                            (None, _) => format!("user \"peer{}\"", p.index),
                        };
                        warnings.push(Problem::new(n.line, format!("name {:?} becomes {now} (the naming rules)", n.value)));
                    }
                }
                (user.unwrap_or_else(|| format!("peer{}", p.index)), device)
            }
        };
        let taken = devices.entry(user.clone()).or_default();
        let device = match device {
            Some(d) => {
                let u = unique(&d, taken);
                if u != d {
                    let line = raw.map_or(p.line, |n| n.line);
                    warnings.push(Problem::new(line, format!("user {user:?} has a device {d:?} already: this one is named {u:?}")));
                }
                u
            }
            None => next_default(taken),
        };
        taken.insert(device.clone());
        if !existing.users.contains_key(&user) {
            new_users.insert(user.clone());
        }
        peers.push(PlannedPeer {
            line: p.line,
            user,
            device,
            public_key: p.public_key.value,
            preshared_key: p.preshared_key.clone(),
            ipv4,
            ipv6,
        });
    }
    warnings.sort_by_key(|w| w.line);
    refused.sort_by_key(|w| w.line);
    Ok(Plan {
        server_key,
        listen_port: iface.listen_port.as_ref().map(|l| l.value),
        pools,
        server_addresses,
        mtu,
        dns: (!iface.dns.is_empty()).then_some(dns),
        endpoint: iface.endpoint_hint.as_ref().map(|e| e.value.clone()),
        peers_in_file: file.peers.len(),
        peers,
        new_users: new_users.into_iter().collect(),
        skipped,
        refused,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::wg_quick::parse;
    use super::*;

    const KEY: &str = "YE9W7RL5a8GWgT6vE2Dda2+QgFGunfEChgTOw0LvTX8=";

    fn pk(i: u8) -> String {
        PublicKey([i; 32]).to_base64()
    }

    fn peer(name: &str, key: u8, ips: &str) -> String {
        format!("\n{name}\n[Peer]\nPublicKey = {}\nAllowedIPs = {ips}\n", pk(key))
    }

    fn planned(text: &str, user: Option<&str>) -> Plan {
        let f = parse(text).unwrap_or_else(|e| panic!("{e:?}"));
        plan(&f, &PlanOptions { user, existing: None }).unwrap()
    }

    fn iface(addr: &str) -> String {
        format!("[Interface]\nPrivateKey = {KEY}\nAddress = {addr}\nListenPort = 51820\n")
    }

    fn names(p: &Plan) -> Vec<String> {
        p.peers.iter().map(|p| format!("{}/{}", p.user, p.device)).collect()
    }

    #[test]
    fn pools_from_the_interface_addresses() {
        let p = planned(&iface("10.66.66.1/24,fd42:42:42::1/64"), None);
        assert_eq!(p.pools.ipv4.unwrap().to_string(), "10.66.66.0/24");
        assert_eq!(p.pools.ipv6.unwrap().to_string(), "fd42:42:42::/64");
        assert_eq!(p.server_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.66.66.1/24", "fd42:42:42::1/64"]);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);

        // A server elsewhere than .1, a second subnet, an unusable prefix.
        let p = planned(&format!("{}Address = 10.9.0.1/24\n", iface("10.0.0.254/24")), None);
        assert_eq!(p.pools.ipv4.unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert_eq!((p.warnings[0].line, p.warnings[1].line), (3, 5));
        assert!(p.warnings[0].message.contains("10.0.0.1"));
        let f = parse(&iface("10.0.0.1/32, fd00::1/48")).unwrap();
        let Err(ImportError::Invalid(e)) = plan(&f, &PlanOptions::default()) else { panic!("a /32 must be refused") };
        assert_eq!(e.len(), 2);
        assert!(e[0].to_string().starts_with("line 3: ") && e[0].message.contains("/32"), "{e:?}");
    }

    #[test]
    fn peers_keep_keys_and_addresses_and_get_names() {
        let text = format!(
            "{}{}{}{}",
            iface("10.66.66.1/24, fd42:42:42::1/64"),
            peer("### Client alice", 1, "10.66.66.2/32, fd42:42:42::2/128"),
            peer("### Client alice", 2, "10.66.66.3/32"),
            peer("# Name = bob/laptop", 3, "fd42:42:42::4/128"),
        ) + &format!("\n[Peer]\nPublicKey = {}\nPresharedKey = {}\nAllowedIPs = 10.66.66.9/32\n", pk(4), pk(9));
        let p = planned(&text, None);
        assert_eq!(names(&p), ["alice/device1", "alice/device2", "bob/laptop", "peer4/device1"]);
        assert_eq!(p.new_users, ["alice", "bob", "peer4"]);
        assert_eq!(p.peers[0].ipv4, Some(Ipv4Addr::new(10, 66, 66, 2)));
        assert_eq!(p.peers[0].ipv6, Some("fd42:42:42::2".parse().unwrap()));
        assert_eq!(p.peers[2].ipv4, None);
        assert_eq!(p.peers[0].public_key, PublicKey([1; 32]));
        assert!(p.peers[0].preshared_key.is_none());
        assert_eq!(p.peers[3].preshared_key.as_ref().unwrap().as_bytes(), &[9; 32]);
        assert!(p.refused.is_empty() && p.warnings.is_empty(), "{:?} {:?}", p.refused, p.warnings);
        assert_eq!(p.peers_in_file, 4);

        let p = planned(&text, Some("family"));
        assert_eq!(names(&p), ["family/alice", "family/alice-2", "family/bob_laptop", "family/peer4"]);
        assert_eq!(p.new_users, ["family"]);
    }

    #[test]
    fn names_are_fitted_to_the_rules() {
        assert_eq!(fit_user("Alice's iPhone").as_deref(), Some("Alice_s_iPhone"));
        assert_eq!(fit_user("  -- bob@example.com").as_deref(), Some("bob@example.com"));
        assert_eq!(fit_user("élodie").as_deref(), Some("lodie"));
        assert_eq!(fit_user("!!!"), None);
        assert_eq!(fit_device("x@y").as_deref(), Some("x_y"));
        assert_eq!(fit_device(&"d".repeat(40)).unwrap().len(), 32);
        let taken: BTreeSet<String> = ["a".repeat(32), format!("{}-2", "a".repeat(30))].into_iter().collect();
        assert_eq!(unique(&"a".repeat(32), &taken), format!("{}-3", "a".repeat(30)));

        let text = format!("{}{}", iface("10.0.0.1/24"), peer("# Client: Alice's iPhone (2f1c6a3e-1b2c-4d5e)", 1, "10.0.0.2/32"));
        let p = planned(&text, None);
        assert_eq!(names(&p), ["Alice_s_iPhone/device1"]);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].message.contains("Alice_s_iPhone"), "{:?}", p.warnings);
        let f = parse(&text).unwrap();
        assert!(matches!(plan(&f, &PlanOptions { user: Some("no spaces"), existing: None }), Err(ImportError::Name(_))));
    }

    #[test]
    fn refused_peers_and_dropped_routes() {
        let server_public = PrivateKey::from_base64(KEY).unwrap().public_key().to_base64();
        let g = format!("\n# g\n[Peer]\nPublicKey = {server_public}\nAllowedIPs = 10.0.0.8/32\n"); // 37
        let text = format!(
            "{}{}{}{}{}{}{}{g}",
            iface("10.0.0.1/24"),
            peer("# a", 1, "10.0.0.2/32, 192.168.50.0/24, 10.0.0.7/32"), // [Peer] at line 7
            peer("# b", 2, "192.168.60.0/24"),                           // 12: no host
            peer("# c", 1, "10.0.0.3/32"),                               // 17: same key as a
            peer("# d", 3, "10.0.0.2/32"),                               // 22: a's address
            peer("# e", 4, "10.0.0.1/32"),                               // 27: the server's
            peer("# f", 5, "10.0.0.255/32"),                             // 32: broadcast
        );
        let p = planned(&text, None);
        assert_eq!(names(&p), ["a/device1"]);
        let lines: Vec<usize> = p.refused.iter().map(|r| r.line).collect();
        assert_eq!(lines, [12, 17, 22, 27, 32, 37], "{:?}", p.refused);
        for (r, want) in p.refused.iter().zip(["no single address", "line 7", "line 7", "server takes", "broadcast", "server's own"]) {
            assert!(r.message.contains(want), "{r}");
        }
        let dropped: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
        assert_eq!(dropped, [9, 9], "{:?}", p.warnings);
        assert!(p.warnings[0].message.contains("192.168.50.0/24") && p.warnings[1].message.contains("10.0.0.7/32"));
    }

    #[test]
    fn settings_and_notes() {
        let text = format!(
            "{}MTU = 1000\nDNS = 10.0.0.1, 10.0.0.1, 0.0.0.0\nPostUp = iptables -t nat -A POSTROUTING -j MASQUERADE\n\n[Peer]\nPublicKey = {}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 10.0.0.2/32\n",
            iface("10.0.0.1/24"),
            pk(1)
        );
        let p = planned(&text, None);
        assert_eq!(p.mtu, None);
        assert_eq!(p.dns, Some(vec!["10.0.0.1".parse::<IpAddr>().unwrap()]));
        assert_eq!(p.listen_port, Some(51820));
        let lines: Vec<usize> = p.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [5, 6, 7, 11], "{:?}", p.warnings);
        assert!(p.warnings[3].message.starts_with("peer 1 (no name): Endpoint"), "{}", p.warnings[3]);
    }

    #[test]
    fn merging_skips_known_keys_and_avoids_taken_names_and_addresses() {
        let text = format!(
            "{}{}{}{}",
            iface("10.0.0.1/24"),
            peer("# alice", 1, "10.0.0.2/32"),
            peer("# alice", 2, "10.0.0.3/32"),
            peer("# bob", 3, "10.0.0.4/32"),
        );
        let f = parse(&text).unwrap();
        let mut e = Existing::default();
        e.users.insert("alice".into(), ["device1".to_owned()].into_iter().collect());
        e.users.insert("bob".into(), BTreeSet::new());
        e.public_keys.insert(PublicKey([1; 32]), "alice/device1".into());
        e.addresses.insert("10.0.0.2".parse().unwrap(), "alice/device1".into());
        e.addresses.insert("10.0.0.4".parse().unwrap(), "carol/phone".into());
        let p = plan(&f, &PlanOptions { user: None, existing: Some(&e) }).unwrap();
        assert_eq!(names(&p), ["alice/device2"]);
        assert!(p.new_users.is_empty());
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.skipped[0].device, "alice/device1");
        assert_eq!(p.refused.len(), 1);
        assert!(p.refused[0].message.contains("carol/phone"), "{:?}", p.refused);

        let key = p.server_key.public_key();
        assert!(p.check_merge(Some(&key), &p.pools).is_ok());
        assert!(matches!(p.check_merge(Some(&PublicKey([7; 32])), &p.pools), Err(ImportError::Conflict(_))));
        let other = Pools { ipv4: "10.1.0.0/24".parse().ok(), ipv6: None };
        let Err(ImportError::Conflict(m)) = p.check_merge(Some(&key), &other) else { panic!() };
        assert!(m.contains("10.1.0.0/24") && m.contains("10.0.0.0/24"), "{m}");
    }
}
