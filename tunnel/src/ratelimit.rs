//! Per-source token bucket for handshake messages under load: 20 per second with a burst of 5,
//! keyed by IPv4 address or IPv6 /64. The table is bounded (new sources are refused when it is
//! full) and entries idle for a second are dropped, so its memory cannot grow with attacker input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::constants::{RATELIMIT_BURST, RATELIMIT_MAX_ENTRIES, RATELIMIT_PACKETS_PER_SECOND};

const PACKET_COST_NS: u64 = 1_000_000_000 / RATELIMIT_PACKETS_PER_SECOND;
const TOKEN_MAX_NS: u64 = PACKET_COST_NS * RATELIMIT_BURST;
const IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Source::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => Source::V6(a.octets()[..8].try_into().expect("8 of 16 bytes")),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    last: Instant,
    tokens: u64,
}

/// The per-source limiter.
#[derive(Debug)]
pub struct RateLimiter {
    table: HashMap<Source, Bucket>,
    max_entries: usize,
    last_gc: Option<Instant>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_capacity(RATELIMIT_MAX_ENTRIES)
    }
}

impl RateLimiter {
    /// A limiter tracking at most `max_entries` sources.
    pub fn with_capacity(max_entries: usize) -> Self {
        Self { table: HashMap::new(), max_entries, last_gc: None }
    }

    /// Whether a handshake message from `ip` may be processed at `now`; spends a token if so.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        self.collect(now);
        let key = Source::from(ip);
        if let Some(b) = self.table.get_mut(&key) {
            let elapsed = now.saturating_duration_since(b.last).as_nanos().min(u128::from(TOKEN_MAX_NS)) as u64;
            b.tokens = (b.tokens + elapsed).min(TOKEN_MAX_NS);
            b.last = now;
            if b.tokens >= PACKET_COST_NS {
                b.tokens -= PACKET_COST_NS;
                return true;
            }
            return false;
        }
        if self.table.len() >= self.max_entries {
            return false;
        }
        self.table.insert(key, Bucket { last: now, tokens: TOKEN_MAX_NS - PACKET_COST_NS });
        true
    }

    /// Drops entries idle for a second, at most once a second.
    fn collect(&mut self, now: Instant) {
        if self.last_gc.is_some_and(|t| now.saturating_duration_since(t) < IDLE) {
            return;
        }
        self.last_gc = Some(now);
        self.table.retain(|_, b| now.saturating_duration_since(b.last) < IDLE);
    }

    /// Number of sources tracked.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = crate::test_instant();
        let mut r = RateLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let allowed = (0..10).filter(|_| r.allow(t0, ip)).count();
        assert_eq!(allowed, 5);
        // 50 ms buys one more packet.
        assert!(r.allow(t0 + Duration::from_millis(50), ip));
        assert!(!r.allow(t0 + Duration::from_millis(50), ip));
        // Over 10 s at 100 packets per second, about 20 per second pass.
        let mut n = 0;
        for i in 0..1000u64 {
            if r.allow(t0 + Duration::from_millis(100 + i * 10), ip) {
                n += 1;
            }
        }
        assert!((195..=206).contains(&n), "{n}");
    }

    #[test]
    fn ipv6_shares_a_64_and_table_is_bounded() {
        let t0 = crate::test_instant();
        let mut r = RateLimiter::with_capacity(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..5 {
            assert!(r.allow(t0, a));
        }
        assert!(!r.allow(t0, b), "same /64 shares a bucket");
        assert!(r.allow(t0, "192.0.2.1".parse().unwrap()));
        assert!(!r.allow(t0, "192.0.2.2".parse().unwrap()), "table full");
        // After a second idle the entries are collected and new sources fit again.
        assert!(r.allow(t0 + Duration::from_secs(2), "192.0.2.2".parse().unwrap()));
        assert_eq!(r.len(), 1);
    }
}
