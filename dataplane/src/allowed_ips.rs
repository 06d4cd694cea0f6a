//! The allowed-IPs table: longest-prefix match from an IP address to a value (a peer).
//!
//! WireGuard's cryptokey routing maps every allowed-IP prefix to exactly one peer. Outbound, the
//! destination address picks the peer whose most specific prefix contains it; inbound, the source
//! address of a decrypted packet must map back to the peer it came from. A prefix given to another
//! peer moves to that peer ([`AllowedIps::insert`] replaces the value of an identical prefix).
//!
//! [`AllowedIps`] holds two path-compressed binary tries (radix trees), one for IPv4 and one for
//! IPv6. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is an IPv6 address like any other and is
//! looked up in the IPv6 trie only, as WireGuard does.
//!
//! # Representation
//!
//! Each trie is an arena (`Vec`) of nodes linked by `u32` indices, so a clone is one flat copy per
//! family and needs no pointer chasing or reference counting. A node holds a masked key, a prefix
//! length, an optional value and two child links. Path compression keeps only nodes that carry a
//! value or where two subtrees diverge, so `n` prefixes use at most `2n - 1` nodes in each family,
//! and every node without a value has exactly two children. Removed nodes go to a free list that
//! later inserts reuse.
//!
//! # Use by the data plane
//!
//! The table is meant to be an immutable snapshot behind an atomic pointer: the control plane
//! clones the current table, changes the clone and publishes it. Lookups take `&self`, never
//! allocate and never lock.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prefix::IpPrefix;

/// The link value meaning "no node".
const NIL: u32 = u32::MAX;

/// An address family's key: the arithmetic the trie needs, done on a wide integer, and a compact
/// stored form (an IPv6 key is stored as bytes so that a node needs no 16-byte alignment).
trait Key: Copy + Eq {
    /// The stored form inside a node.
    type Stored: Copy;
    /// The address width in bits.
    const WIDTH: u8;
    fn load(stored: Self::Stored) -> Self;
    fn store(self) -> Self::Stored;
    /// The key with all but the first `len` bits cleared (`len <= WIDTH`).
    fn mask(self, len: u8) -> Self;
    /// How many leading bits the two keys share (`WIDTH` when equal).
    fn common(self, other: Self) -> u8;
    /// The bit at `pos` counted from the most significant, as 0 or 1 (`pos < WIDTH`).
    fn bit(self, pos: u8) -> usize;
    fn to_ip(self) -> IpAddr;
}

impl Key for u32 {
    type Stored = u32;
    const WIDTH: u8 = 32;

    #[inline]
    fn load(stored: u32) -> Self {
        stored
    }

    #[inline]
    fn store(self) -> u32 {
        self
    }

    #[inline]
    fn mask(self, len: u8) -> Self {
        self & u32::MAX.checked_shl(u32::from(Self::WIDTH.saturating_sub(len))).unwrap_or(0)
    }

    #[inline]
    fn common(self, other: Self) -> u8 {
        // leading_zeros is at most 32, which fits.
        (self ^ other).leading_zeros() as u8
    }

    #[inline]
    fn bit(self, pos: u8) -> usize {
        (self.wrapping_shr(u32::from(Self::WIDTH - 1 - pos)) & 1) as usize
    }

    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
}

impl Key for u128 {
    type Stored = [u8; 16];
    const WIDTH: u8 = 128;

    #[inline]
    fn load(stored: [u8; 16]) -> Self {
        u128::from_be_bytes(stored)
    }

    #[inline]
    fn store(self) -> [u8; 16] {
        self.to_be_bytes()
    }

    #[inline]
    fn mask(self, len: u8) -> Self {
        self & u128::MAX.checked_shl(u32::from(Self::WIDTH.saturating_sub(len))).unwrap_or(0)
    }

    #[inline]
    fn common(self, other: Self) -> u8 {
        // leading_zeros is at most 128, which fits.
        (self ^ other).leading_zeros() as u8
    }

    #[inline]
    fn bit(self, pos: u8) -> usize {
        (self.wrapping_shr(u32::from(Self::WIDTH - 1 - pos)) & 1) as usize
    }

    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
}

/// One trie node: the prefix `key/len` (host bits clear), its value if it is an entry, and the
/// subtrees whose next bit (the bit at position `len`) is 0 and 1.
///
/// A freed node has no value and links the free list through `child[0]`.
#[derive(Clone, Copy)]
struct Node<K: Key, T> {
    key: K::Stored,
    len: u8,
    value: Option<T>,
    child: [u32; 2],
}

/// Where a node hangs: the root, or side `.1` of node `.0`.
type Slot = Option<(u32, usize)>;

/// One address family's path-compressed binary trie.
#[derive(Clone)]
struct Trie<K: Key, T> {
    nodes: Vec<Node<K, T>>,
    root: u32,
    /// Head of the free list threaded through `child[0]` of freed nodes.
    free: u32,
    /// Nodes on the free list.
    free_count: usize,
    /// Nodes holding a value.
    entries: usize,
}

impl<K: Key, T: Copy + Eq> Trie<K, T> {
    const fn new() -> Self {
        Self { nodes: Vec::new(), root: NIL, free: NIL, free_count: 0, entries: 0 }
    }

    fn clear(&mut self) {
        *self = Self::new();
    }

    #[inline]
    fn node(&self, idx: u32) -> &Node<K, T> {
        &self.nodes[idx as usize]
    }

    #[inline]
    fn node_mut(&mut self, idx: u32) -> &mut Node<K, T> {
        &mut self.nodes[idx as usize]
    }

    fn alloc(&mut self, key: K, len: u8, value: Option<T>) -> u32 {
        let node = Node { key: key.store(), len, value, child: [NIL, NIL] };
        if self.free != NIL {
            let idx = self.free;
            self.free = self.node(idx).child[0];
            self.free_count -= 1;
            *self.node_mut(idx) = node;
            idx
        } else {
            // Index NIL is reserved. Reaching it needs over 2^31 prefixes in one family, far more
            // memory than any host has; the allocation would fail first.
            let idx = u32::try_from(self.nodes.len()).ok().filter(|&i| i != NIL).expect("allowed-IPs trie exceeds 2^32 - 1 nodes");
            self.nodes.push(node);
            idx
        }
    }

    fn release(&mut self, idx: u32) {
        let free = self.free;
        let node = self.node_mut(idx);
        node.value = None;
        node.child = [free, NIL];
        self.free = idx;
        self.free_count += 1;
    }

    fn set_slot(&mut self, slot: Slot, idx: u32) {
        match slot {
            None => self.root = idx,
            Some((parent, side)) => self.node_mut(parent).child[side] = idx,
        }
    }

    fn insert(&mut self, key: K, len: u8, value: T) -> Option<T> {
        let len = len.min(K::WIDTH);
        let key = key.mask(len);
        let mut slot: Slot = None;
        let mut cur = self.root;
        while cur != NIL {
            let node = self.node(cur);
            let (nkey, nlen) = (K::load(node.key), node.len);
            let common = key.common(nkey).min(len).min(nlen);
            if common == nlen {
                if nlen == len {
                    // The same prefix: it moves to the new value.
                    let old = self.node_mut(cur).value.replace(value);
                    if old.is_none() {
                        self.entries += 1;
                    }
                    return old;
                }
                // `node` is a strict ancestor of the new prefix (so nlen < len <= WIDTH).
                let side = key.bit(nlen);
                slot = Some((cur, side));
                cur = node.child[side];
                continue;
            }
            let new = if common == len {
                // The new prefix is a strict ancestor of `node` (len < nlen <= WIDTH).
                let new = self.alloc(key, len, Some(value));
                self.node_mut(new).child[nkey.bit(len)] = cur;
                new
            } else {
                // They diverge at bit `common`, which is below both lengths.
                let leaf = self.alloc(key, len, Some(value));
                let branch = self.alloc(key.mask(common), common, None);
                let node = self.node_mut(branch);
                node.child[key.bit(common)] = leaf;
                node.child[nkey.bit(common)] = cur;
                branch
            };
            self.set_slot(slot, new);
            self.entries += 1;
            return None;
        }
        let new = self.alloc(key, len, Some(value));
        self.set_slot(slot, new);
        self.entries += 1;
        None
    }

    fn remove(&mut self, key: K, len: u8) -> Option<T> {
        if len > K::WIDTH {
            return None;
        }
        let key = key.mask(len);
        let mut parent_slot: Slot = None;
        let mut slot: Slot = None;
        let mut cur = self.root;
        loop {
            if cur == NIL {
                return None;
            }
            let node = self.node(cur);
            if node.len > len || key.common(K::load(node.key)) < node.len {
                return None;
            }
            if node.len == len {
                break;
            }
            let side = key.bit(node.len);
            parent_slot = slot;
            slot = Some((cur, side));
            cur = node.child[side];
        }
        let old = self.node_mut(cur).value.take()?;
        self.entries -= 1;
        match self.node(cur).child {
            [NIL, NIL] => {
                self.set_slot(slot, NIL);
                self.release(cur);
                // A parent without a value had two children; with one left it is not needed.
                if let Some((parent, side)) = slot {
                    let p = self.node(parent);
                    if p.value.is_none() {
                        let other = p.child[side ^ 1];
                        self.set_slot(parent_slot, other);
                        self.release(parent);
                    }
                }
            }
            [only, NIL] | [NIL, only] => {
                self.set_slot(slot, only);
                self.release(cur);
            }
            // Two subtrees: the node stays as a branch point.
            _ => {}
        }
        Some(old)
    }

    #[inline]
    fn lookup(&self, addr: K) -> Option<T> {
        let mut best = None;
        let mut cur = self.root;
        while let Some(node) = self.nodes.get(cur as usize) {
            if addr.common(K::load(node.key)) < node.len {
                break;
            }
            if node.value.is_some() {
                best = node.value;
            }
            if node.len >= K::WIDTH {
                break;
            }
            cur = node.child[addr.bit(node.len)];
        }
        best
    }

    /// Every entry, in arena order.
    fn entries(&self) -> impl Iterator<Item = (IpPrefix, T)> + '_ {
        self.nodes.iter().filter_map(|n| {
            let value = n.value?;
            IpPrefix::new(K::load(n.key).to_ip(), n.len).ok().map(|p| (p, value))
        })
    }

    /// Nodes in use (entries plus branch points).
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free_count
    }
}

/// A longest-prefix-match table from IPv4 and IPv6 prefixes to values (typically peer handles).
///
/// ```
/// use vpn_dataplane::allowed_ips::AllowedIps;
///
/// let mut table = AllowedIps::new();
/// table.insert("10.0.0.0/8".parse().unwrap(), 1);
/// table.insert("10.1.0.0/16".parse().unwrap(), 2);
/// assert_eq!(table.lookup("10.1.2.3".parse().unwrap()), Some(2));
/// assert_eq!(table.lookup("10.2.0.1".parse().unwrap()), Some(1));
/// assert_eq!(table.lookup("::ffff:10.1.2.3".parse().unwrap()), None);
/// ```
///
/// # Performance
///
/// [`lookup`](Self::lookup) takes `&self`, does not allocate and visits at most one node per
/// address bit plus one (33 for IPv4, 129 for IPv6); with path compression it visits only the
/// nodes that hold a prefix or split two subtrees on the address's path, so a table of host routes
/// is walked in about `log2(n)` steps. Each step is a compare of the masked key, an optional
/// value read and a bit test. [`insert`](Self::insert) and [`remove`](Self::remove) are
/// O(address bits); [`remove_value`](Self::remove_value), [`prefixes_of`](Self::prefixes_of) and
/// [`entries`](Self::entries) scan every node. [`Clone`] copies two flat vectors.
///
/// Memory: `n` prefixes use at most `2n - 1` nodes per family. With `T = u32` a node takes 24
/// bytes for IPv4 and 36 bytes for IPv6, so 10,000 peers with one /32 and one /128 each measure
/// 479,976 + 719,964 bytes of nodes (19,999 nodes per family): 60 bytes per prefix, 120 bytes per
/// peer (the unit test `memory_ten_thousand_peers` checks this). A vector built by pushing may
/// carry up to twice that in spare capacity; a clone carries none.
#[derive(Clone)]
pub struct AllowedIps<T: Copy + Eq> {
    v4: Trie<u32, T>,
    v6: Trie<u128, T>,
}

impl<T: Copy + Eq> AllowedIps<T> {
    /// An empty table.
    pub const fn new() -> Self {
        Self { v4: Trie::new(), v6: Trie::new() }
    }

    /// Maps `prefix` to `value` and returns the value it had before, if any. An identical prefix
    /// held by another value moves to `value`; other prefixes, overlapping or not, are untouched.
    pub fn insert(&mut self, prefix: IpPrefix, value: T) -> Option<T> {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.insert(u32::from(a), prefix.len(), value),
            IpAddr::V6(a) => self.v6.insert(u128::from(a), prefix.len(), value),
        }
    }

    /// Removes exactly `prefix` (not the prefixes it contains) and returns its value, or `None`
    /// when the table does not hold it.
    pub fn remove(&mut self, prefix: IpPrefix) -> Option<T> {
        match prefix.addr() {
            IpAddr::V4(a) => self.v4.remove(u32::from(a), prefix.len()),
            IpAddr::V6(a) => self.v6.remove(u128::from(a), prefix.len()),
        }
    }

    /// Removes every prefix mapped to `value` (a peer's allowed IPs when the peer goes or its list
    /// is replaced) and returns how many there were. Other values keep theirs.
    pub fn remove_value(&mut self, value: T) -> usize {
        let prefixes: Vec<IpPrefix> = self.entries_unsorted().filter(|&(_, v)| v == value).map(|(p, _)| p).collect();
        for &p in &prefixes {
            self.remove(p);
        }
        prefixes.len()
    }

    /// The value of the longest prefix containing `ip`, or `None`. IPv4 addresses are looked up
    /// among IPv4 prefixes and IPv6 addresses among IPv6 prefixes; an IPv4-mapped IPv6 address is
    /// not treated as IPv4. See the `# Performance` note on [`AllowedIps`].
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<T> {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// The prefixes mapped to `value`, sorted (IPv4 before IPv6, then by address, then by length),
    /// as `wg show` lists a peer's allowed IPs. Scans the whole table.
    pub fn prefixes_of(&self, value: T) -> Vec<IpPrefix> {
        let mut out: Vec<IpPrefix> = self.entries_unsorted().filter(|&(_, v)| v == value).map(|(p, _)| p).collect();
        out.sort_unstable();
        out
    }

    /// Every `(prefix, value)` pair, sorted by prefix like [`prefixes_of`](Self::prefixes_of).
    /// One scan for all values, where calling `prefixes_of` per value would scan once per value.
    pub fn entries(&self) -> Vec<(IpPrefix, T)> {
        let mut out: Vec<(IpPrefix, T)> = self.entries_unsorted().collect();
        // Prefixes are unique, so ordering by prefix alone is total.
        out.sort_unstable_by_key(|&(p, _)| p);
        out
    }

    /// The number of prefixes held, both families.
    pub fn len(&self) -> usize {
        self.v4.entries + self.v6.entries
    }

    /// Whether the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every prefix and frees the nodes.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }

    fn entries_unsorted(&self) -> impl Iterator<Item = (IpPrefix, T)> + '_ {
        self.v4.entries().chain(self.v6.entries())
    }
}

impl<T: Copy + Eq> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Eq + fmt::Debug> fmt::Debug for AllowedIps<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Checks the structural invariants of a trie: keys masked, children below and on the right
    /// side of their parent, no valueless node with fewer than two children, counts consistent.
    fn check<K: Key, T: Copy + Eq>(t: &Trie<K, T>) {
        let mut stack = vec![(t.root, None::<(K, u8, usize)>)];
        let (mut seen, mut values) = (0, 0);
        while let Some((idx, parent)) = stack.pop() {
            if idx == NIL {
                continue;
            }
            let n = t.node(idx);
            let key = K::load(n.key);
            seen += 1;
            assert!(n.len <= K::WIDTH);
            assert!(key == key.mask(n.len), "host bits set");
            if let Some((pkey, plen, side)) = parent {
                assert!(n.len > plen);
                assert!(key.common(pkey) >= plen);
                assert_eq!(key.bit(plen), side);
            }
            match n.value {
                Some(_) => values += 1,
                None => assert!(n.child[0] != NIL && n.child[1] != NIL, "useless branch node"),
            }
            if n.len == K::WIDTH {
                assert_eq!(n.child, [NIL, NIL]);
            }
            stack.push((n.child[0], Some((key, n.len, 0))));
            stack.push((n.child[1], Some((key, n.len, 1))));
        }
        assert_eq!(seen, t.live_nodes());
        assert_eq!(values, t.entries);
        let mut free = 0;
        let mut f = t.free;
        while f != NIL {
            free += 1;
            f = t.node(f).child[0];
        }
        assert_eq!(free, t.free_count);
    }

    fn check_all<T: Copy + Eq>(t: &AllowedIps<T>) {
        check(&t.v4);
        check(&t.v6);
    }

    #[test]
    fn empty() {
        let t = AllowedIps::<u32>::new();
        assert!(t.is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.lookup(ip("1.2.3.4")), None);
        assert_eq!(t.lookup(ip("::")), None);
        assert!(t.prefixes_of(0).is_empty());
        assert_eq!(format!("{t:?}"), "{}");
    }

    #[test]
    fn default_routes() {
        let mut t = AllowedIps::new();
        t.insert(p("0.0.0.0/0"), 1u32);
        assert_eq!(t.lookup(ip("0.0.0.0")), Some(1));
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(1));
        assert_eq!(t.lookup(ip("::1")), None, "a v4 default does not cover v6");
        t.insert(p("::/0"), 2);
        assert_eq!(t.lookup(ip("::")), Some(2));
        assert_eq!(t.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), Some(2));
        assert_eq!(t.lookup(ip("8.8.8.8")), Some(1));
        assert_eq!(t.len(), 2);
        check_all(&t);
        assert_eq!(t.remove(p("0.0.0.0/0")), Some(1));
        assert_eq!(t.lookup(ip("8.8.8.8")), None);
        assert_eq!(t.remove(p("::/0")), Some(2));
        assert!(t.is_empty());
        check_all(&t);
    }

    #[test]
    fn host_routes() {
        let mut t = AllowedIps::new();
        t.insert(p("192.0.2.1/32"), 1u32);
        t.insert(p("2001:db8::1/128"), 2);
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(1));
        assert_eq!(t.lookup(ip("192.0.2.0")), None);
        assert_eq!(t.lookup(ip("192.0.2.2")), None);
        assert_eq!(t.lookup(ip("2001:db8::1")), Some(2));
        assert_eq!(t.lookup(ip("2001:db8::")), None);
        assert_eq!(t.lookup(ip("2001:db8::3")), None);
        t.insert(p("255.255.255.255/32"), 3);
        t.insert(p("0.0.0.0/32"), 4);
        assert_eq!(t.lookup(ip("255.255.255.255")), Some(3));
        assert_eq!(t.lookup(ip("0.0.0.0")), Some(4));
        assert_eq!(t.lookup(ip("0.0.0.1")), None);
        check_all(&t);
    }

    #[test]
    fn mapped_v4_is_not_v4() {
        let mut t = AllowedIps::new();
        t.insert(p("10.0.0.0/8"), 1u32);
        assert_eq!(t.lookup(ip("::ffff:10.0.0.1")), None);
        t.insert(p("::ffff:0:0/96"), 2);
        assert_eq!(t.lookup(ip("::ffff:10.0.0.1")), Some(2));
        assert_eq!(t.lookup(ip("10.0.0.1")), Some(1));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = AllowedIps::new();
        t.insert(p("10.0.0.0/8"), 1u32);
        t.insert(p("10.1.0.0/16"), 2);
        t.insert(p("10.1.1.0/24"), 3);
        t.insert(p("10.1.1.128/25"), 4);
        t.insert(p("10.1.1.129/32"), 5);
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(1));
        assert_eq!(t.lookup(ip("10.1.9.9")), Some(2));
        assert_eq!(t.lookup(ip("10.1.1.9")), Some(3));
        assert_eq!(t.lookup(ip("10.1.1.130")), Some(4));
        assert_eq!(t.lookup(ip("10.1.1.129")), Some(5));
        assert_eq!(t.lookup(ip("11.0.0.0")), None);
        check_all(&t);
        // Removing a middle level falls back to the next shorter prefix.
        assert_eq!(t.remove(p("10.1.1.0/24")), Some(3));
        assert_eq!(t.lookup(ip("10.1.1.9")), Some(2));
        assert_eq!(t.lookup(ip("10.1.1.130")), Some(4));
        check_all(&t);
        // Inserting in the reverse order gives the same answers.
        let mut r = AllowedIps::new();
        for (s, v) in [("10.1.1.129/32", 5u32), ("10.1.1.128/25", 4), ("10.1.0.0/16", 2), ("10.0.0.0/8", 1)] {
            r.insert(p(s), v);
        }
        for a in ["10.9.9.9", "10.1.9.9", "10.1.1.9", "10.1.1.130", "10.1.1.129", "11.0.0.0"] {
            assert_eq!(r.lookup(ip(a)), t.lookup(ip(a)), "{a}");
        }
        assert_eq!(r.entries(), t.entries());
        check_all(&r);
    }

    #[test]
    fn siblings_and_branches() {
        let mut t = AllowedIps::new();
        t.insert(p("192.168.0.0/24"), 1u32);
        t.insert(p("192.168.1.0/24"), 2);
        t.insert(p("192.168.2.0/23"), 3);
        t.insert(p("fd00::/64"), 4);
        t.insert(p("fd00:0:0:1::/64"), 5);
        check_all(&t);
        assert_eq!(t.lookup(ip("192.168.0.7")), Some(1));
        assert_eq!(t.lookup(ip("192.168.1.7")), Some(2));
        assert_eq!(t.lookup(ip("192.168.3.7")), Some(3));
        assert_eq!(t.lookup(ip("192.168.4.7")), None);
        assert_eq!(t.lookup(ip("fd00::1:2")), Some(4));
        assert_eq!(t.lookup(ip("fd00:0:0:1::2")), Some(5));
        assert_eq!(t.lookup(ip("fd00:0:0:2::2")), None);
        // Removing one sibling collapses the branch node above it.
        assert_eq!(t.v4.live_nodes(), 5);
        t.remove(p("192.168.1.0/24"));
        check_all(&t);
        assert_eq!(t.v4.live_nodes(), 3);
        assert_eq!(t.lookup(ip("192.168.1.7")), None);
        assert_eq!(t.lookup(ip("192.168.0.7")), Some(1));
        assert_eq!(t.lookup(ip("192.168.3.7")), Some(3));
    }

    #[test]
    fn moving_a_prefix() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(p("10.0.0.0/24"), 1u32), None);
        assert_eq!(t.insert(p("10.0.0.0/24"), 2), Some(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(ip("10.0.0.1")), Some(2));
        assert!(t.prefixes_of(1).is_empty());
        assert_eq!(t.prefixes_of(2), vec![p("10.0.0.0/24")]);
        // Host bits do not make a different prefix.
        assert_eq!(t.insert(p("10.0.0.77/24"), 3), Some(2));
        assert_eq!(t.len(), 1);
        assert_eq!(t.insert(p("10.0.0.0/24"), 3), Some(3));
        check_all(&t);
    }

    #[test]
    fn remove_missing() {
        let mut t = AllowedIps::new();
        assert_eq!(t.remove(p("10.0.0.0/8")), None);
        t.insert(p("10.0.0.0/8"), 1u32);
        t.insert(p("10.1.0.0/16"), 1);
        t.insert(p("10.2.0.0/16"), 1);
        let before = t.entries();
        // Shorter, longer, sibling, the branch node's own prefix, other family: none exists.
        for s in ["10.0.0.0/7", "10.0.0.0/9", "10.1.0.0/17", "10.3.0.0/16", "10.0.0.0/14", "0.0.0.0/0", "::/0", "a00::/8"] {
            assert_eq!(t.remove(p(s)), None, "{s}");
            assert_eq!(t.entries(), before);
            check_all(&t);
        }
        assert_eq!(t.remove(p("10.0.0.0/8")), Some(1));
        assert_eq!(t.remove(p("10.0.0.0/8")), None);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(1));
        assert_eq!(t.lookup(ip("10.3.2.3")), None);
        check_all(&t);
    }

    #[test]
    fn remove_value_leaves_others() {
        let mut t = AllowedIps::new();
        t.insert(p("10.0.0.0/8"), 1u32);
        t.insert(p("10.1.0.0/16"), 2);
        t.insert(p("10.1.1.0/24"), 1);
        t.insert(p("10.1.1.1/32"), 2);
        t.insert(p("fd00::/8"), 1);
        t.insert(p("fd00::1/128"), 3);
        assert_eq!(t.remove_value(1), 3);
        check_all(&t);
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(ip("10.2.0.0")), None);
        assert_eq!(t.lookup(ip("10.1.1.2")), Some(2));
        assert_eq!(t.lookup(ip("10.1.1.1")), Some(2));
        assert_eq!(t.lookup(ip("fd00::1")), Some(3));
        assert_eq!(t.lookup(ip("fd00::2")), None);
        assert!(t.prefixes_of(1).is_empty());
        assert_eq!(t.prefixes_of(2), vec![p("10.1.0.0/16"), p("10.1.1.1/32")]);
        assert_eq!(t.remove_value(9), 0);
        assert_eq!(t.remove_value(2), 2);
        assert_eq!(t.remove_value(3), 1);
        assert!(t.is_empty());
        check_all(&t);
    }

    #[test]
    fn prefixes_of_sorted() {
        let mut t = AllowedIps::new();
        for s in ["fd00::/64", "10.0.0.2/32", "10.0.0.0/24", "10.0.0.1/32", "::/0", "0.0.0.0/0"] {
            t.insert(p(s), 7u8);
        }
        t.insert(p("10.0.0.3/32"), 8);
        let got: Vec<String> = t.prefixes_of(7).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["0.0.0.0/0", "10.0.0.0/24", "10.0.0.1/32", "10.0.0.2/32", "::/0", "fd00::/64"]);
        assert_eq!(t.entries().len(), 7);
        assert_eq!(format!("{:?}", t.clone()).matches(": ").count(), 7);
    }

    #[test]
    fn free_list_reuse_and_clear() {
        let mut t = AllowedIps::new();
        for i in 0..64u32 {
            t.insert(IpPrefix::host(IpAddr::V4(Ipv4Addr::from(i << 4))), i);
        }
        let arena = t.v4.nodes.len();
        for round in 0..10u32 {
            for i in 0..64u32 {
                assert_eq!(t.remove(IpPrefix::host(IpAddr::V4(Ipv4Addr::from(i << 4)))), Some(i + round));
            }
            check_all(&t);
            assert!(t.is_empty());
            for i in 0..64u32 {
                t.insert(IpPrefix::host(IpAddr::V4(Ipv4Addr::from(i << 4))), i + round + 1);
            }
            check_all(&t);
        }
        assert_eq!(t.v4.nodes.len(), arena, "freed nodes are reused");
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.lookup(ip("0.0.0.0")), None);
        check_all(&t);
    }

    #[test]
    fn clone_is_independent() {
        let mut a = AllowedIps::new();
        a.insert(p("10.0.0.0/8"), 1u32);
        let mut b = a.clone();
        b.insert(p("10.0.0.0/8"), 2);
        b.insert(p("10.1.0.0/16"), 3);
        assert_eq!(a.lookup(ip("10.1.0.1")), Some(1));
        assert_eq!(b.lookup(ip("10.1.0.1")), Some(3));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn all_lengths_nested() {
        // One prefix at every length along one address, v4 and v6.
        let mut t = AllowedIps::new();
        let a4 = ip("170.85.170.85");
        let a6 = ip("aaaa:5555:aaaa:5555:aaaa:5555:aaaa:5555");
        for len in 0..=32 {
            t.insert(IpPrefix::new(a4, len).unwrap(), u32::from(len));
        }
        for len in 0..=128 {
            t.insert(IpPrefix::new(a6, len).unwrap(), 1000 + u32::from(len));
        }
        check_all(&t);
        assert_eq!(t.len(), 33 + 129);
        // Flipping bit `i` of the address leaves the prefixes of length <= i.
        let v4 = u32::from(Ipv4Addr::from([170, 85, 170, 85]));
        for i in 0..32u8 {
            let probe = IpAddr::V4(Ipv4Addr::from(v4 ^ (1 << (31 - i))));
            assert_eq!(t.lookup(probe), Some(u32::from(i)));
        }
        let v6 = u128::from_be_bytes([0xaa, 0xaa, 0x55, 0x55, 0xaa, 0xaa, 0x55, 0x55, 0xaa, 0xaa, 0x55, 0x55, 0xaa, 0xaa, 0x55, 0x55]);
        for i in 0..128u8 {
            let probe = IpAddr::V6(Ipv6Addr::from(v6 ^ (1 << (127 - i))));
            assert_eq!(t.lookup(probe), Some(1000 + u32::from(i)));
        }
        assert_eq!(t.lookup(a4), Some(32));
        assert_eq!(t.lookup(a6), Some(1128));
        for len in (0..=32).step_by(2) {
            t.remove(IpPrefix::new(a4, len).unwrap());
        }
        check_all(&t);
        for i in 0..32u8 {
            let probe = IpAddr::V4(Ipv4Addr::from(v4 ^ (1 << (31 - i))));
            let want = if i % 2 == 1 { Some(u32::from(i)) } else { i.checked_sub(1).map(u32::from) };
            assert_eq!(t.lookup(probe), want, "bit {i}");
        }
    }

    proptest::proptest! {
        /// The structure stays canonical (no useless node, keys masked, counts right) under random
        /// inserts and removes of overlapping prefixes; answers are checked against a model in
        /// `tests/allowed_ips.rs`.
        #[test]
        fn structure_stays_canonical(ops in proptest::collection::vec((0u8..3, 0u32..64, 24u8..=32, 0u8..4), 1..200)) {
            let mut t = AllowedIps::new();
            for (op, low, len, value) in ops {
                let v4 = IpPrefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | low)), len).unwrap();
                let v6 = IpPrefix::new(IpAddr::V6(Ipv6Addr::from(u128::from(low) << 96)), len).unwrap();
                match op {
                    0 => {
                        t.insert(v4, value);
                        t.insert(v6, value);
                    }
                    1 => {
                        t.remove(v4);
                        t.remove(v6);
                    }
                    _ => {
                        t.remove_value(value);
                    }
                }
                check_all(&t);
                proptest::prop_assert!(t.v4.live_nodes() <= (2 * t.v4.entries).max(1));
            }
        }
    }

    #[test]
    fn node_sizes() {
        assert_eq!(std::mem::size_of::<Node<u32, u32>>(), 24);
        assert_eq!(std::mem::size_of::<Node<u128, u32>>(), 36);
    }

    /// The memory figure quoted in the `AllowedIps` docs: 10,000 peers, one /32 and one /128 each.
    #[test]
    fn memory_ten_thousand_peers() {
        let mut t = AllowedIps::new();
        for peer in 0..10_000u32 {
            // Spread like a real deployment: 10.0.0.0/16 and fd00::/64 host addresses, shuffled by
            // a multiplicative hash so the insertion order is not sorted.
            let host = peer.wrapping_mul(2_654_435_761) >> 16;
            t.insert(IpPrefix::host(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | host))), peer);
            t.insert(IpPrefix::host(IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | u128::from(host)))), peer);
        }
        check_all(&t);
        // The hash may map two peers to one host; count what the table really holds.
        let (n4, n6) = (t.v4.entries, t.v6.entries);
        assert!(n4 > 9_000 && n4 == n6);
        assert_eq!(t.v4.live_nodes(), 2 * n4 - 1);
        assert_eq!(t.v6.live_nodes(), 2 * n6 - 1);
        // A snapshot is a clone, which has no spare capacity.
        let snap = t.clone();
        let bytes = snap.v4.nodes.capacity() * std::mem::size_of::<Node<u32, u32>>()
            + snap.v6.nodes.capacity() * std::mem::size_of::<Node<u128, u32>>();
        let per_peer = bytes / n4;
        assert!(per_peer <= 120, "{per_peer} bytes per peer");

        // Exactly 10,000 distinct peers with sequential addresses: the figure in the docs.
        let mut t = AllowedIps::new();
        for peer in 0..10_000u32 {
            t.insert(IpPrefix::host(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | peer))), peer);
            t.insert(IpPrefix::host(IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | u128::from(peer)))), peer);
        }
        let snap = t.clone();
        assert_eq!(snap.v4.nodes.capacity() * 24, 479_976);
        assert_eq!(snap.v6.nodes.capacity() * 36, 719_964);
        assert_eq!(snap.lookup(ip("10.0.39.15")), Some(9999));
        assert_eq!(snap.lookup(ip("fd00::270f")), Some(9999));
        assert_eq!(snap.lookup(ip("10.0.39.16")), None);
    }
}
