//! Address allocation: the lowest free host address of a pool, found by SQLite.
//!
//! A device may take any address of its pool but the network address, the server's (the first
//! host address) and, for IPv4, the broadcast address. IPv6 pools larger than a /64 are used
//! through their first /64 only.
//!
//! The allocated addresses are indexed integers (see [`super::schema`] for the encodings), so the
//! lowest free one is "the first of the range if free, else the first allocated address whose
//! successor is not allocated, plus one": one ordered index scan that stops at the first gap.
//! Callers run this inside their write transaction, so no two devices get the same address, and
//! an address is free again as soon as its device is removed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rusqlite::{params_from_iter, Connection};
use vpn_dataplane::IpPrefix;

use super::StoreError;

/// A 64-bit unsigned half as stored: XOR with 2^63 turns unsigned order into signed order.
pub(crate) fn to_ordered(half: u64) -> i64 {
    (half ^ (1 << 63)) as i64
}

/// The inverse of [`to_ordered`].
pub(crate) fn from_ordered(stored: i64) -> u64 {
    (stored as u64) ^ (1 << 63)
}

/// An IPv6 address as its stored `(ipv6_hi, ipv6_lo)` pair.
pub(crate) fn split_v6(a: Ipv6Addr) -> (i64, i64) {
    let v = u128::from(a);
    (to_ordered((v >> 64) as u64), to_ordered(v as u64))
}

/// An IPv6 address from its stored pair.
pub(crate) fn join_v6(hi: i64, lo: i64) -> Ipv6Addr {
    Ipv6Addr::from((u128::from(from_ordered(hi)) << 64) | u128::from(from_ordered(lo)))
}

/// The addresses devices may take from an IPv4 pool, or `None` when it has none (/31, /32).
pub(crate) fn v4_hosts(pool: IpPrefix) -> Result<Option<(u32, u32)>, StoreError> {
    let IpAddr::V4(net) = pool.addr() else {
        return Err(StoreError::PoolFamily { family: "IPv4", pool });
    };
    let size = 1u64 << (32 - u32::from(pool.len()));
    if size < 4 {
        return Ok(None);
    }
    let net = u64::from(u32::from(net));
    // Skip the network address and the server's; the last one is the broadcast address.
    Ok(Some(((net + 2) as u32, (net + size - 2) as u32)))
}

/// The `(high half, first low half, last low half)` devices may take from an IPv6 pool, or
/// `None` when it has none (/127, /128).
pub(crate) fn v6_hosts(pool: IpPrefix) -> Result<Option<(u64, u64, u64)>, StoreError> {
    let IpAddr::V6(net) = pool.addr() else {
        return Err(StoreError::PoolFamily { family: "IPv6", pool });
    };
    let net = u128::from(net);
    let host_bits = 128 - u32::from(pool.len().max(64));
    let last_offset = if host_bits == 64 { u64::MAX } else { (1u64 << host_bits) - 1 };
    if last_offset < 2 {
        return Ok(None);
    }
    let lo = net as u64;
    // Skip the network (subnet-router anycast) address and the server's.
    Ok(Some(((net >> 64) as u64, lo + 2, lo + last_offset)))
}

/// The queries that find free values in one address column. Parameters: `?1` the first value of
/// the range, `?2` the last, `?3` (IPv6 only) the high half. Every query of a column mentions all
/// of them (hence `?2 IS NOT NULL`), so that all take the same parameter list.
struct Column {
    /// Whether `?1` is allocated.
    taken: &'static str,
    /// How many values of the range are allocated, and the largest.
    stats: &'static str,
    /// The first allocated value of the range whose successor is free.
    gap: &'static str,
}

const IPV4: Column = Column {
    taken: "SELECT EXISTS (SELECT 1 FROM devices WHERE ipv4 = ?1 AND ?2 IS NOT NULL)",
    stats: "SELECT COUNT(*), MAX(ipv4) FROM devices WHERE ipv4 BETWEEN ?1 AND ?2",
    gap: "SELECT d.ipv4 FROM devices d
          WHERE d.ipv4 BETWEEN ?1 AND ?2 AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.ipv4 = d.ipv4 + 1)
          ORDER BY d.ipv4 LIMIT 1",
};

const IPV6: Column = Column {
    taken: "SELECT EXISTS (SELECT 1 FROM devices WHERE ipv6_hi = ?3 AND ipv6_lo = ?1 AND ?2 IS NOT NULL)",
    stats: "SELECT COUNT(*), MAX(ipv6_lo) FROM devices WHERE ipv6_hi = ?3 AND ipv6_lo BETWEEN ?1 AND ?2",
    gap: "SELECT d.ipv6_lo FROM devices d
          WHERE d.ipv6_hi = ?3 AND d.ipv6_lo BETWEEN ?1 AND ?2
            AND NOT EXISTS (SELECT 1 FROM devices e WHERE e.ipv6_hi = ?3 AND e.ipv6_lo = d.ipv6_lo + 1)
          ORDER BY d.ipv6_lo LIMIT 1",
};

/// The lowest free IPv4 address of `pool`.
pub(crate) fn lowest_free_v4(conn: &Connection, pool: IpPrefix) -> Result<Ipv4Addr, StoreError> {
    let (first, last) = v4_hosts(pool)?.ok_or(StoreError::PoolExhausted(pool))?;
    let found = lowest_free(conn, &IPV4, &[i64::from(first), i64::from(last)])?;
    let addr = found.and_then(|v| u32::try_from(v).ok()).ok_or(StoreError::PoolExhausted(pool))?;
    Ok(Ipv4Addr::from(addr))
}

/// The lowest free IPv6 address of `pool`.
pub(crate) fn lowest_free_v6(conn: &Connection, pool: IpPrefix) -> Result<Ipv6Addr, StoreError> {
    let (hi, first, last) = v6_hosts(pool)?.ok_or(StoreError::PoolExhausted(pool))?;
    let hi = to_ordered(hi);
    let lo = lowest_free(conn, &IPV6, &[to_ordered(first), to_ordered(last), hi])?.ok_or(StoreError::PoolExhausted(pool))?;
    Ok(join_v6(hi, lo))
}

/// The lowest value of the range `params[0]..=params[1]` that is not allocated in `col`, in the
/// stored (signed, ordered) domain; `None` when all are.
///
/// Allocation always takes the lowest free value, so the allocated values usually form one run
/// from the start of the range: that case costs a count over the index, and only a range with a
/// hole (left by a removed device) is searched for its first hole.
fn lowest_free(conn: &Connection, col: &Column, params: &[i64]) -> Result<Option<i64>, StoreError> {
    let (first, last) = (params[0], params[1]);
    let first_taken: bool = conn.prepare_cached(col.taken)?.query_row(params_from_iter(params), |r| r.get(0))?;
    if !first_taken {
        return Ok(Some(first));
    }
    let (count, max): (i64, i64) = conn.prepare_cached(col.stats)?.query_row(params_from_iter(params), |r| Ok((r.get(0)?, r.get(1)?)))?;
    let before_gap = if i128::from(max) - i128::from(first) + 1 == i128::from(count) {
        max
    } else {
        conn.prepare_cached(col.gap)?.query_row(params_from_iter(params), |r| r.get(0))?
    };
    // The value after it, unless that is past the end of the range (`+ 1` of the largest
    // integer would overflow: it is the end of the range then).
    Ok((before_gap < last).then(|| before_gap + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_encoding_keeps_order() {
        let vals = [0u64, 1, 2, (1 << 63) - 1, 1 << 63, u64::MAX - 1, u64::MAX];
        for w in vals.windows(2) {
            assert!(to_ordered(w[0]) < to_ordered(w[1]));
            assert_eq!(from_ordered(to_ordered(w[0])), w[0]);
        }
        let a: Ipv6Addr = "fd00:1:2:3:ffff::1".parse().unwrap();
        let (hi, lo) = split_v6(a);
        assert_eq!(join_v6(hi, lo), a);
    }

    #[test]
    fn host_ranges() {
        let r = |s: &str| v4_hosts(s.parse().unwrap()).unwrap();
        assert_eq!(r("10.0.0.0/30"), Some((0x0a00_0002, 0x0a00_0002)));
        assert_eq!(r("10.0.0.0/24"), Some((0x0a00_0002, 0x0a00_00fe)));
        assert_eq!(r("10.0.0.0/31"), None);
        assert_eq!(r("0.0.0.0/0"), Some((2, u32::MAX - 1)));
        let r6 = |s: &str| v6_hosts(s.parse().unwrap()).unwrap();
        assert_eq!(r6("fd00::/126"), Some((0xfd00 << 48, 2, 3)));
        assert_eq!(r6("fd00::/64"), Some((0xfd00 << 48, 2, u64::MAX)));
        assert_eq!(r6("fd00::/48"), Some((0xfd00 << 48, 2, u64::MAX)));
        assert_eq!(r6("fd00::/127"), None);
        assert!(matches!(v4_hosts("fd00::/64".parse().unwrap()), Err(StoreError::PoolFamily { .. })));
        assert!(matches!(v6_hosts("10.0.0.0/8".parse().unwrap()), Err(StoreError::PoolFamily { .. })));
    }
}
