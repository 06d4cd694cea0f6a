//! [`plan`]: a parsed bulk file checked against the store's current users and devices.
//!
//! A user or device of the file that the store already has is *present* when it is identical
//! (the user's flag; the device's flag and expiry), and is then skipped: this is what lets an
//! interrupted import be run again to finish it. One that differs is a conflict, never
//! overwritten, with one exception: a device the store has enabled and the file lists disabled
//! (otherwise identical) is disabled, since a new device is added enabled and then disabled and
//! an interruption can fall in between. An import never enables anything that exists. A present user may still get the file's devices that it lacks; devices the store
//! has and the file does not list are left alone (an import only adds).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{date, DeviceEntry, Problem, UserEntry};
use crate::store::{Device, IpPrefix, Pools, User};

/// What applying a bulk file would do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Every user of the file, in file order.
    pub users: Vec<PlannedUser>,
    /// Conflicts with the store and capacity problems, sorted by line: the file must not be
    /// applied while there is one.
    pub problems: Vec<Problem>,
    /// Things worth knowing that do not stop the import (expiry dates in the past).
    pub notes: Vec<Problem>,
}

/// One user of the file and what applying it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUser {
    /// The user's name.
    pub name: String,
    /// The user's flag.
    pub enabled: bool,
    /// The user's line.
    pub line: usize,
    /// Whether the store has the user already (identical): then only `new_devices` are added.
    pub exists: bool,
    /// The devices to add: those of the file the store does not have yet.
    pub new_devices: Vec<DeviceEntry>,
    /// How many of the file's devices the store already has (identical, or to disable).
    pub present_devices: usize,
    /// Devices the store has, identical but enabled, that the file lists disabled: they are
    /// disabled. (A new device is added enabled and disabled next, so an interrupted import
    /// can leave one enabled; running it again finishes the job.)
    pub disable_devices: Vec<DeviceEntry>,
}

impl PlannedUser {
    /// Whether applying it changes the store.
    pub fn has_changes(&self) -> bool {
        !self.exists || !self.new_devices.is_empty() || !self.disable_devices.is_empty()
    }
}

impl Plan {
    /// Users to add.
    pub fn new_users(&self) -> usize {
        self.users.iter().filter(|u| !u.exists).count()
    }

    /// Devices to add (to new users and to present ones).
    pub fn new_devices(&self) -> usize {
        self.users.iter().map(|u| u.new_devices.len()).sum()
    }

    /// Present devices to disable ([`PlannedUser::disable_devices`]).
    pub fn disable_devices(&self) -> usize {
        self.users.iter().map(|u| u.disable_devices.len()).sum()
    }

    /// Users of the file the store already has.
    pub fn present_users(&self) -> usize {
        self.users.iter().filter(|u| u.exists).count()
    }

    /// Devices of the file the store already has.
    pub fn present_devices(&self) -> usize {
        self.users.iter().map(|u| u.present_devices).sum()
    }

    /// The users whose application changes the store, in file order.
    pub fn changes(&self) -> impl Iterator<Item = &PlannedUser> {
        self.users.iter().filter(|u| u.has_changes())
    }

    /// "3 users and 5 devices to add; 2 users and 2 devices already present", with `verb` in
    /// place of "to add".
    pub fn summary(&self, verb: &str) -> String {
        let disable = match self.disable_devices() {
            0 => String::new(),
            n => format!(" ({n} of them to disable)"),
        };
        format!(
            "{} {} and {} {} {verb}; {} {} and {} {} already present{disable}",
            self.new_users(),
            plural(self.new_users(), "user"),
            self.new_devices(),
            plural(self.new_devices(), "device"),
            self.present_users(),
            plural(self.present_users(), "user"),
            self.present_devices(),
            plural(self.present_devices(), "device"),
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

fn word(enabled: bool) -> &'static str {
    if enabled {
        "enabled"
    } else {
        "disabled"
    }
}

fn expiry(t: Option<i64>) -> String {
    t.map_or_else(|| "never".to_owned(), date::format)
}

/// Checks `users` (from [`super::parse`]) against the store's `existing_users` and
/// `existing_devices` and the address `pools`: conflicts, and whether the pools have a free
/// address for every new device. `now` (Unix seconds) only marks past expiry dates in the notes.
pub fn plan(users: Vec<UserEntry>, existing_users: &[User], existing_devices: &[Device], pools: &Pools, now: i64) -> Plan {
    let stored_users: HashMap<&str, &User> = existing_users.iter().map(|u| (u.name.as_str(), u)).collect();
    let stored_devices: HashMap<(&str, &str), &Device> = existing_devices.iter().map(|d| ((d.user.as_str(), d.name.as_str()), d)).collect();
    let mut out = Plan::default();
    for entry in users {
        let stored = stored_users.get(entry.name.as_str());
        if let Some(u) = stored {
            if u.enabled != entry.enabled {
                out.problems.push(Problem::new(
                    entry.line,
                    format!(
                        "user {} exists already and is {}, the file says {}: change the file, or run `vpn user {} {}` first",
                        entry.name,
                        word(u.enabled),
                        word(entry.enabled),
                        if entry.enabled { "enable" } else { "disable" },
                        entry.name
                    ),
                ));
            }
        }
        let mut planned = PlannedUser {
            name: entry.name.clone(),
            enabled: entry.enabled,
            line: entry.line,
            exists: stored.is_some(),
            new_devices: Vec::new(),
            present_devices: 0,
            disable_devices: Vec::new(),
        };
        for d in entry.devices {
            if let Some(e) = d.expires_at.filter(|&t| t <= now) {
                out.notes.push(Problem::new(
                    d.line,
                    format!("device {}/{} expired on {}: it is imported but cannot connect", entry.name, d.name, date::format(e)),
                ));
            }
            match stored_devices.get(&(entry.name.as_str(), d.name.as_str())) {
                Some(s) if s.enabled == d.enabled && s.expires_at == d.expires_at => planned.present_devices += 1,
                Some(s) if s.enabled && !d.enabled && s.expires_at == d.expires_at => {
                    planned.present_devices += 1;
                    planned.disable_devices.push(d);
                }
                Some(s) => {
                    let mut diffs = Vec::new();
                    if s.enabled != d.enabled {
                        diffs.push(format!("is {} (the file says {})", word(s.enabled), word(d.enabled)));
                    }
                    if s.expires_at != d.expires_at {
                        diffs.push(format!("expires {} (the file says {})", expiry(s.expires_at), expiry(d.expires_at)));
                    }
                    out.problems.push(Problem::new(
                        d.line,
                        format!(
                            "device {}/{} exists already and {}: change the file, or change or remove the device first",
                            entry.name,
                            d.name,
                            diffs.join(" and ")
                        ),
                    ));
                }
                None => planned.new_devices.push(d),
            }
        }
        out.users.push(planned);
    }
    check_capacity(&mut out, existing_devices, pools);
    out.problems.sort_by_key(|p| p.line);
    out.notes.sort_by_key(|p| p.line);
    out
}

/// How many device addresses `pool` has, and the range they are in (as `u128`), like the store
/// allocates them: not the network address, not the server's (the first host), not IPv4's
/// broadcast address; only the first /64 of a larger IPv6 pool.
fn host_range(pool: IpPrefix) -> Option<(u128, u128)> {
    match pool.addr() {
        IpAddr::V4(net) => {
            let size = 1u128 << (32 - u32::from(pool.len().min(32)));
            let net = u128::from(u32::from(net));
            (size >= 4).then(|| (net + 2, net + size - 2))
        }
        IpAddr::V6(net) => {
            let host_bits = 128 - u32::from(pool.len().clamp(64, 128));
            let last = if host_bits == 64 { u128::from(u64::MAX) } else { (1u128 << host_bits) - 1 };
            let net = u128::from(net);
            (last >= 2).then(|| (net + 2, net + last))
        }
    }
}

/// The free device addresses of the pools, handed out lowest first, as the store allocates
/// them: each device takes the lowest free address of each configured pool.
///
/// An import assigns the addresses of all its devices from the snapshot it checked, rather than
/// asking the store to find the lowest free one for each device (a range scan per device, so
/// quadratic over a large import). The store still checks, in the same transaction, that each
/// address is a free host address of its pool: a change made meanwhile by another command can
/// only make the import fail (with nothing changed), never give an address twice.
#[derive(Debug, Clone)]
pub struct FreeAddresses {
    v4: Option<Free>,
    v6: Option<Free>,
}

#[derive(Debug, Clone)]
struct Free {
    /// The next candidate.
    next: u128,
    last: u128,
    /// The taken addresses of the range, sorted, and how many of them are below `next`.
    taken: Vec<u128>,
    passed: usize,
}

impl Free {
    fn new(pool: IpPrefix, taken: impl Iterator<Item = u128>) -> Option<Free> {
        let (first, last) = host_range(pool)?;
        let mut taken: Vec<u128> = taken.filter(|a| (first..=last).contains(a)).collect();
        taken.sort_unstable();
        Some(Free { next: first, last, taken, passed: 0 })
    }

    fn take(&mut self) -> Option<u128> {
        loop {
            if self.next > self.last {
                return None;
            }
            while self.taken.get(self.passed).is_some_and(|&t| t < self.next) {
                self.passed += 1;
            }
            if self.taken.get(self.passed) == Some(&self.next) {
                self.next += 1;
                continue;
            }
            let a = self.next;
            self.next += 1;
            return Some(a);
        }
    }
}

impl FreeAddresses {
    /// The free addresses of `pools` given the `existing` devices. A pool of the wrong family
    /// or without host addresses has none.
    pub fn new(pools: &Pools, existing: &[Device]) -> FreeAddresses {
        let v4 = pools
            .ipv4
            .filter(|p| p.addr().is_ipv4())
            .and_then(|p| Free::new(p, existing.iter().filter_map(|d| d.ipv4).map(|a| u128::from(u32::from(a)))));
        let v6 =
            pools.ipv6.filter(|p| p.addr().is_ipv6()).and_then(|p| Free::new(p, existing.iter().filter_map(|d| d.ipv6).map(u128::from)));
        FreeAddresses { v4, v6 }
    }

    /// The addresses of the next device: the lowest free one of each configured pool; `None`
    /// when a configured pool has no free address left (or none is configured).
    pub fn take(&mut self) -> Option<(Option<Ipv4Addr>, Option<Ipv6Addr>)> {
        if self.v4.is_none() && self.v6.is_none() {
            return None;
        }
        let v4 = match &mut self.v4 {
            Some(f) => Some(Ipv4Addr::from(u32::try_from(f.take()?).ok()?)),
            None => None,
        };
        let v6 = match &mut self.v6 {
            Some(f) => Some(Ipv6Addr::from(f.take()?)),
            None => None,
        };
        Some((v4, v6))
    }
}

/// Adds a problem, at the line of the first device that does not fit, for each pool without
/// enough free addresses for every new device.
fn check_capacity(plan: &mut Plan, existing: &[Device], pools: &Pools) {
    let new: Vec<(usize, String)> =
        plan.users.iter().flat_map(|u| u.new_devices.iter().map(move |d| (d.line, format!("{}/{}", u.name, d.name)))).collect();
    if new.is_empty() {
        return;
    }
    if pools.ipv4.is_none() && pools.ipv6.is_none() {
        plan.problems
            .push(Problem::new(new[0].0, "no address pool configured for new devices: set an IPv4 or IPv6 pool in the server config"));
        return;
    }
    for (family, pool) in [("IPv4", pools.ipv4), ("IPv6", pools.ipv6)] {
        let Some(pool) = pool else { continue };
        if pool.addr().is_ipv4() != (family == "IPv4") {
            plan.problems
                .push(Problem::new(0, format!("the {family} pool {pool} is not an {family} prefix: fix the pool in the server config")));
            continue;
        }
        let free = match host_range(pool) {
            Some((first, last)) => {
                let taken = existing
                    .iter()
                    .filter_map(|d| if family == "IPv4" { d.ipv4.map(|a| u128::from(u32::from(a))) } else { d.ipv6.map(u128::from) })
                    .filter(|a| (first..=last).contains(a))
                    .count() as u128;
                (last - first + 1).saturating_sub(taken)
            }
            None => 0,
        };
        if (new.len() as u128) > free {
            let (line, label) = &new[free as usize];
            plan.problems.push(Problem::new(
                *line,
                format!(
                    "no free {family} address left for {label}: the pool {pool} has {free} free and the file adds {} devices: enlarge the pool in the server config or remove unused devices",
                    new.len()
                ),
            ));
        }
    }
}
