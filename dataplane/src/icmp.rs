//! ICMP "destination unreachable" for packets read from TUN that no peer can carry, as the
//! kernel's WireGuard answers them: a program on the host, or a client whose packet the server
//! forwards back into the tunnel, learns at once that the address is unreachable (ping prints
//! "Destination Host Unreachable", `connect` fails with EHOSTUNREACH) instead of waiting for a
//! timeout.
//!
//! The answer is an ICMPv4 type 3 code 1 (host unreachable) or ICMPv6 type 1 code 3 (address
//! unreachable), quoting as much of the refused packet as fits in 576 bytes (IPv4, RFC 1812
//! 4.3.2.3) or 1280 bytes (IPv6, RFC 4443 2.4), and is written to TUN. Its source address is the
//! refused packet's destination: the interface's own address would arrive at the host as a packet
//! from itself, which the kernel drops as martian, whereas the unreachable address is routed
//! through the interface, so the reply passes reverse-path filtering on the host and is forwarded
//! to a client like any packet from the tunnel.
//!
//! No answer (RFC 1122 3.2.2, RFC 4443 2.4(e)) for: an ICMP error (never an error about an
//! error), a fragment other than the first, a packet to or from an address that names no single
//! host (unspecified, loopback, multicast, reserved, the limited broadcast address, IPv4-mapped);
//! nor for anything not a well-formed IP packet. The answers are rate-limited by [`RateLimit`];
//! the caller asks [`Unreachable::of`] first, which copies nothing, so a flood of packets that
//! the limit refuses costs no answer built.
//!
//! Two differences from the kernel's answers, both from being a userspace program behind TUN:
//! the source (ping prints "From 10.77.0.200" where the kernel's would print the interface's own
//! address, see above), and a packet to the interface subnet's broadcast address (which only the
//! host's routing table knows) is answered from that address, and the host drops the answer as
//! a martian.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use vpn_tunnel::inner;

use crate::gro::{fold, sum16};

/// Largest IPv4 ICMP error (RFC 1812).
const V4_MAX: usize = 576;
/// Largest ICMPv6 error: the IPv6 minimum MTU (RFC 4443).
const V6_MAX: usize = 1280;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// A packet that gets an answer: what the answer needs from it, found without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable<'a> {
    /// The refused packet, cut to its IP total length.
    packet: &'a [u8],
    v6: bool,
}

impl<'a> Unreachable<'a> {
    /// Whether `packet` (a whole IP packet as read from TUN) gets an answer (see the module
    /// documentation): cheap, so that the rate limit is only asked for packets that do. The
    /// packet's header and length are checked by [`inner::parse`], as for every packet the
    /// tunnel carries.
    pub fn of(packet: &'a [u8]) -> Option<Self> {
        let checked = inner::parse(packet).ok()?;
        let packet = &packet[..checked.len];
        let answered = match (checked.source, checked.destination) {
            (IpAddr::V4(s), IpAddr::V4(d)) => names_a_host_v4(s) && names_a_host_v4(d) && v4_upper_layer_eligible(packet),
            (IpAddr::V6(s), IpAddr::V6(d)) => names_a_host_v6(s) && names_a_host_v6(d) && v6_upper_layer_eligible(packet),
            _ => false,
        };
        answered.then_some(Self { packet, v6: checked.source.is_ipv6() })
    }

    /// Writes the answer into `out` (replacing what it held, reusing its allocation).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.v6 {
            v6_answer(self.packet, out);
        } else {
            v4_answer(self.packet, out);
        }
    }
}

/// [`Unreachable::of`] then [`Unreachable::write_to`]: false when `packet` gets no answer.
pub fn unreachable(packet: &[u8], out: &mut Vec<u8>) -> bool {
    Unreachable::of(packet).map(|u| u.write_to(out)).is_some()
}

/// Whether an IPv4 packet (checked by [`inner::parse`]) is the first or only fragment and, if
/// ICMP, an informational message of a known type (Linux's rule).
fn v4_upper_layer_eligible(p: &[u8]) -> bool {
    let fragment_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
    let header_len = usize::from(p[0] & 0x0f) * 4;
    fragment_offset == 0 && (p[9] != IPPROTO_ICMP || p.get(header_len).is_some_and(|&t| t <= 18 && !matches!(t, 3 | 4 | 5 | 11 | 12)))
}

/// Whether `a` can be one host's address: not in 0.0.0.0/8 ("this network"), loopback,
/// multicast, or 240.0.0.0/4 (reserved, and the limited broadcast address).
fn names_a_host_v4(a: Ipv4Addr) -> bool {
    let first = a.octets()[0];
    !(first == 0 || a.is_loopback() || a.is_multicast() || first >= 240)
}

fn v4_answer(p: &[u8], out: &mut Vec<u8>) {
    let quoted = p.len().min(V4_MAX - 28);
    out.clear();
    out.resize(28 + quoted, 0);
    out[0] = 0x45;
    // Precedence "internetwork control", as ICMP errors carry.
    out[1] = 0xc0;
    out[2..4].copy_from_slice(&((28 + quoted) as u16).to_be_bytes());
    out[8] = 64;
    out[9] = IPPROTO_ICMP;
    // From the unreachable address, to the sender.
    out[12..16].copy_from_slice(&p[16..20]);
    out[16..20].copy_from_slice(&p[12..16]);
    out[20] = 3; // destination unreachable
    out[21] = 1; // host unreachable
    out[28..].copy_from_slice(&p[..quoted]);
    let icmp_sum = !fold(sum16(&out[20..], 0));
    out[22..24].copy_from_slice(&icmp_sum.to_be_bytes());
    let header_sum = !fold(sum16(&out[..20], 0));
    out[10..12].copy_from_slice(&header_sum.to_be_bytes());
}

/// Whether `a` can be one host's IPv6 address: not unspecified, loopback, multicast, or an
/// IPv4-mapped address (`::ffff:0:0/96`, never on the wire).
fn names_a_host_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some())
}

fn v6_answer(p: &[u8], out: &mut Vec<u8>) {
    let quoted = p.len().min(V6_MAX - 48);
    let icmp_len = 8 + quoted;
    out.clear();
    out.resize(40 + icmp_len, 0);
    out[0] = 0x60;
    out[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    out[6] = IPPROTO_ICMPV6;
    out[7] = 64;
    // From the unreachable address, to the sender.
    out[8..24].copy_from_slice(&p[24..40]);
    out[24..40].copy_from_slice(&p[8..24]);
    out[40] = 1; // destination unreachable
    out[41] = 3; // address unreachable
    out[48..].copy_from_slice(&p[..quoted]);
    // Checksum over the pseudo-header (addresses, upper-layer length, next header) and the message.
    let mut sum = sum16(&out[8..40], 0);
    sum += icmp_len as u64 + u64::from(IPPROTO_ICMPV6);
    let icmp_sum = !fold(sum16(&out[40..], sum));
    out[42..44].copy_from_slice(&icmp_sum.to_be_bytes());
}

/// Walks the extension headers of an IPv6 packet (checked by [`inner::parse`]): false for a
/// fragment other than the first, an ICMPv6 error (or an ICMPv6 message too short to have a
/// type), or headers that run past the packet.
fn v6_upper_layer_eligible(p: &[u8]) -> bool {
    let (mut next, mut at) = (p[6], 40);
    // A packet with more extension headers than this gets no answer.
    for _ in 0..8 {
        match next {
            // Hop-by-hop, routing, destination options: length in 8-byte units, not counting the first.
            0 | 43 | 60 => {
                let (Some(&n), Some(&len)) = (p.get(at), p.get(at + 1)) else { return false };
                next = n;
                at += (usize::from(len) + 1) * 8;
            }
            // Fragment: fixed 8 bytes; only the first fragment (offset 0) gets an answer.
            44 => {
                let Some(h) = p.get(at..at + 8) else { return false };
                if u16::from_be_bytes([h[2], h[3]]) >> 3 != 0 {
                    return false;
                }
                next = h[0];
                at += 8;
            }
            // Authentication header: length in 4-byte units, not counting the first two.
            51 => {
                let (Some(&n), Some(&len)) = (p.get(at), p.get(at + 1)) else { return false };
                next = n;
                at += (usize::from(len) + 2) * 4;
            }
            // Informational ICMPv6 messages are types 128 and up.
            IPPROTO_ICMPV6 => return p.get(at).is_some_and(|&t| t >= 128),
            // Any other upper layer, if the headers before it fit in the packet.
            _ => return at <= p.len(),
        }
    }
    false
}

/// A token bucket for the answers: [`RateLimit::PER_SECOND`] a second on average, at most
/// [`RateLimit::BURST`] at once. A client scanning the tunnel's free addresses gets answers at
/// that rate and the rest of its packets are only counted.
#[derive(Debug, Clone)]
pub struct RateLimit {
    tokens: f64,
    last: Option<Instant>,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { tokens: Self::BURST, last: None }
    }
}

impl RateLimit {
    /// Answers a second, on average.
    pub const PER_SECOND: f64 = 100.0;
    /// Answers at once after a quiet second.
    pub const BURST: f64 = 100.0;

    /// Whether one more answer may go out at `now`.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = self.last.map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * Self::PER_SECOND).min(Self::BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
