//! Receive coalescing (GRO) for TUN writes, without I/O and without copying: a batch of
//! decrypted packets is grouped so that consecutive TCP segments (and, where the kernel takes
//! UDP segmentation offload, UDP datagrams) of one flow become one super-packet. The first
//! packet of a group keeps its headers, patched in place (lengths, the IPv4 header checksum, the
//! pseudo-header checksum the kernel completes); the others contribute only their payloads, which
//! the writer gathers with one `writev` behind a virtio-net header. Nothing is allocated per
//! packet: the plan lives in vectors reused from batch to batch.
//!
//! Rules, so the kernel sees what it would have seen without coalescing:
//! - only plain segments join a group: IPv4 without options or fragmentation, or IPv6 without
//!   extension headers; TCP with ACK (PSH allowed, and it ends the group) and data; the same
//!   addresses, ports, IP header fields (TOS, DF, TTL; traffic class, flow label, hop limit),
//!   acknowledgment number, window and TCP options; the sequence number that continues the
//!   group; a payload no longer than the group's first (a shorter one ends the group);
//! - a group holds at most [`MAX_SEGMENTS`] packets and fits the IP length field;
//! - per flow, packets keep their order: a packet joins only its flow's newest group, and a
//!   packet that cannot be parsed to its ports (a fragment, an IPv6 extension header) is a
//!   barrier for every flow between its two addresses;
//! - the segments' own TCP/UDP checksums are not verified: the AEAD has already authenticated
//!   every byte, as the kernel's WireGuard trusts them (it marks decrypted packets checksum-
//!   verified). Packets written alone keep their checksums for the kernel to verify.

/// Length of the virtio-net header in front of every TUN write when offloads are on.
pub const VNET_HDR_LEN: usize = 10;

/// Most packets coalesced into one write.
pub const MAX_SEGMENTS: usize = 64;

/// How many of the newest groups a packet's flow is looked up in.
const WINDOW: usize = 32;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_UDP_L4: u8 = 5;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Which packets a group may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Written alone; its flow key still orders later packets.
    Single,
    /// Written alone and blocks every flow between its addresses.
    Barrier,
    Tcp,
    Udp,
}

/// What a packet's headers say, as far as grouping needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flow {
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    proto: u8,
    ports: [u8; 4],
}

impl Flow {
    fn same_pair(&self, other: &Flow) -> bool {
        self.v6 == other.v6 && self.src == other.src && self.dst == other.dst
    }
}

/// A parsed packet.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    flow: Flow,
    kind: Kind,
    /// IP header length (where the transport header starts).
    l4: usize,
    /// IP + transport header length (where the payload starts).
    headers: usize,
    payload: usize,
    seq: u32,
    psh: bool,
}

/// One write: a packet alone, or a group of segments.
#[derive(Debug, Clone, Copy)]
struct Group {
    flow: Flow,
    kind: Kind,
    first: u16,
    last: u16,
    count: u16,
    /// Whether later packets may still join.
    open: bool,
    psh: bool,
    l4: u16,
    headers: u16,
    /// Payload bytes of each segment (the first one's).
    gso_size: u16,
    /// IP length of the whole group.
    len: u32,
    next_seq: u32,
}

/// The plan for one batch, reused across batches.
#[derive(Debug, Default)]
pub struct Coalescer {
    groups: Vec<Group>,
    /// `next[i]`: the packet after packet `i` in its group (`u16::MAX`: none).
    next: Vec<u16>,
    tcp: bool,
    udp: bool,
}

/// One planned write, in batch order.
#[derive(Debug, Clone, Copy)]
pub struct Write<'p> {
    plan: &'p Coalescer,
    group: Group,
}

impl Write<'_> {
    /// The virtio-net header for this write.
    pub fn header(&self) -> [u8; VNET_HDR_LEN] {
        let g = &self.group;
        let mut h = [0u8; VNET_HDR_LEN];
        if g.count < 2 {
            return h;
        }
        let (gso_type, csum_offset) = match (g.kind, g.flow.v6) {
            (Kind::Udp, _) => (VIRTIO_NET_HDR_GSO_UDP_L4, 6u16),
            (_, false) => (VIRTIO_NET_HDR_GSO_TCPV4, 16),
            (_, true) => (VIRTIO_NET_HDR_GSO_TCPV6, 16),
        };
        h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        h[1] = gso_type;
        h[2..4].copy_from_slice(&g.headers.to_ne_bytes());
        h[4..6].copy_from_slice(&g.gso_size.to_ne_bytes());
        h[6..8].copy_from_slice(&g.l4.to_ne_bytes());
        h[8..10].copy_from_slice(&csum_offset.to_ne_bytes());
        h
    }

    /// Number of packets in this write.
    pub fn count(&self) -> usize {
        usize::from(self.group.count)
    }

    /// Whether this write coalesces UDP datagrams (else TCP segments, or one packet).
    pub fn is_udp(&self) -> bool {
        self.group.kind == Kind::Udp
    }

    /// The pieces to write after the header, in order: the first packet whole, then each later
    /// segment's payload. `packets` is the batch given to [`Coalescer::plan`].
    pub fn pieces<'b>(&self, packets: &'b [&mut [u8]]) -> impl Iterator<Item = &'b [u8]> + use<'b, '_> {
        let headers = usize::from(self.group.headers);
        let mut at = self.group.first;
        let mut first = true;
        std::iter::from_fn(move || {
            let i = usize::from(at);
            let p: &[u8] = packets.get(i)?;
            at = self.plan.next.get(i).copied().unwrap_or(u16::MAX);
            Some(if std::mem::take(&mut first) { p } else { p.get(headers..).unwrap_or_default() })
        })
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a packet's headers; `None` for anything that is not IPv4 or IPv6 (written alone, no
/// effect on other packets).
fn parse(p: &[u8], tcp: bool, udp: bool) -> Option<Parsed> {
    let mut flow = Flow { v6: false, src: [0; 16], dst: [0; 16], proto: 0, ports: [0; 4] };
    let (l4, proto, plain_ip) = match p.first()? >> 4 {
        4 if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            flow.src[..4].copy_from_slice(&p[12..16]);
            flow.dst[..4].copy_from_slice(&p[16..20]);
            let fragment = be16(p, 6) & 0x3fff != 0;
            if ihl < 20 || p.len() < ihl || fragment || usize::from(be16(p, 2)) != p.len() {
                return Some(barrier(flow));
            }
            (ihl, p[9], ihl == 20)
        }
        6 if p.len() >= 40 => {
            flow.v6 = true;
            flow.src.copy_from_slice(&p[8..24]);
            flow.dst.copy_from_slice(&p[24..40]);
            if usize::from(be16(p, 4)) != p.len() - 40 || !matches!(p[6], PROTO_TCP | PROTO_UDP) {
                return Some(barrier(flow));
            }
            (40, p[6], true)
        }
        _ => return None,
    };
    flow.proto = proto;
    let mut parsed = Parsed { flow, kind: Kind::Single, l4, headers: l4, payload: 0, seq: 0, psh: false };
    match proto {
        PROTO_TCP if p.len() >= l4 + 20 => {
            let doff = usize::from(p[l4 + 12] >> 4) * 4;
            if doff < 20 || p.len() < l4 + doff {
                return Some(barrier(flow));
            }
            parsed.flow.ports.copy_from_slice(&p[l4..l4 + 4]);
            parsed.headers = l4 + doff;
            parsed.payload = p.len() - parsed.headers;
            parsed.seq = be32(p, l4 + 4);
            let flags = p[l4 + 13];
            parsed.psh = flags & TCP_PSH != 0;
            if tcp && plain_ip && flags & !TCP_PSH == TCP_ACK && parsed.payload > 0 {
                parsed.kind = Kind::Tcp;
            }
        }
        PROTO_UDP if p.len() >= l4 + 8 => {
            parsed.flow.ports.copy_from_slice(&p[l4..l4 + 4]);
            parsed.headers = l4 + 8;
            parsed.payload = p.len() - parsed.headers;
            let whole = usize::from(be16(p, l4 + 4)) == p.len() - l4;
            // A zero checksum (IPv4: none) would be filled in by the kernel: leave such alone.
            let checksummed = flow.v6 || be16(p, l4 + 6) != 0;
            if udp && plain_ip && whole && checksummed && parsed.payload > 0 {
                parsed.kind = Kind::Udp;
            }
        }
        PROTO_TCP | PROTO_UDP => return Some(barrier(flow)),
        _ => {}
    }
    Some(parsed)
}

fn barrier(flow: Flow) -> Parsed {
    Parsed { flow, kind: Kind::Barrier, l4: 0, headers: 0, payload: 0, seq: 0, psh: false }
}

/// Whether the IP and transport header fields that must match do (everything but lengths, IPv4
/// ID and checksums, and the sequence number).
fn same_headers(a: &[u8], b: &[u8], p: &Parsed) -> bool {
    let ip = if p.flow.v6 { a[..4] == b[..4] && a[7] == b[7] } else { a[1] == b[1] && a[6] & 0x40 == b[6] & 0x40 && a[8] == b[8] };
    if !ip || a.len() < p.headers || b.len() < p.headers {
        return false;
    }
    let l4 = p.l4;
    match p.kind {
        // Data offset, ACK number, window, options.
        Kind::Tcp => {
            a[l4 + 12] == b[l4 + 12]
                && a[l4 + 8..l4 + 12] == b[l4 + 8..l4 + 12]
                && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
                && a[l4 + 20..p.headers] == b[l4 + 20..p.headers]
        }
        _ => true,
    }
}

impl Coalescer {
    /// A coalescer; `udp` when the device takes UDP segmentation offload (Linux 6.2 and later).
    pub fn new(udp: bool) -> Self {
        Self { groups: Vec::new(), next: Vec::new(), tcp: true, udp }
    }

    /// Stops coalescing TCP segments (`udp` false) or UDP datagrams (`udp` true), after the
    /// kernel refused such a write.
    pub fn disable(&mut self, udp: bool) {
        match udp {
            true => self.udp = false,
            false => self.tcp = false,
        }
    }

    /// Plans the writes for `packets` (whole IP packets, in arrival order) and patches the
    /// headers of each group's first packet in place. At most `u16::MAX` packets.
    pub fn plan(&mut self, packets: &mut [&mut [u8]]) {
        self.groups.clear();
        self.next.clear();
        let n = packets.len().min(usize::from(u16::MAX));
        self.next.resize(n, u16::MAX);
        for i in 0..n {
            self.add(packets, i);
        }
        for g in &self.groups {
            if g.count > 1 {
                if let Some(first) = packets.get_mut(usize::from(g.first)) {
                    patch(first, g);
                }
            }
        }
    }

    /// The planned writes, in order.
    pub fn writes(&self) -> impl Iterator<Item = Write<'_>> {
        self.groups.iter().map(move |g| Write { plan: self, group: *g })
    }

    fn add(&mut self, packets: &[&mut [u8]], i: usize) {
        let p: &[u8] = packets[i];
        let Some(parsed) = parse(p, self.tcp, self.udp) else {
            return self.push_single(i, None);
        };
        if parsed.kind == Kind::Barrier {
            return self.push_single(i, Some(parsed));
        }
        let start = self.groups.len().saturating_sub(WINDOW);
        let mut found = None;
        for k in (start..self.groups.len()).rev() {
            let g = &self.groups[k];
            if g.kind == Kind::Barrier && g.flow.same_pair(&parsed.flow) {
                break;
            }
            if g.kind != Kind::Barrier && g.flow == parsed.flow {
                found = Some(k);
                break;
            }
        }
        if let Some(k) = found {
            if self.try_append(packets, k, i, &parsed) {
                return;
            }
        }
        self.push_single(i, Some(parsed));
    }

    fn try_append(&mut self, packets: &[&mut [u8]], k: usize, i: usize, p: &Parsed) -> bool {
        let g = self.groups[k];
        let fits = g.open
            && g.kind == p.kind
            && usize::from(g.count) < MAX_SEGMENTS
            && p.headers == usize::from(g.headers)
            && p.payload <= usize::from(g.gso_size)
            && g.len as usize + p.payload <= ip_len_limit(p.flow.v6)
            && (p.kind != Kind::Tcp || p.seq == g.next_seq)
            && same_headers(packets[usize::from(g.first)], packets[i], p);
        if !fits {
            return false;
        }
        let g = &mut self.groups[k];
        self.next[usize::from(g.last)] = i as u16;
        g.last = i as u16;
        g.count += 1;
        g.len += p.payload as u32;
        g.next_seq = p.seq.wrapping_add(p.payload as u32);
        g.psh |= p.psh;
        g.open = !p.psh && p.payload == usize::from(g.gso_size);
        true
    }

    fn push_single(&mut self, i: usize, parsed: Option<Parsed>) {
        let blank = Flow { v6: false, src: [0; 16], dst: [0; 16], proto: 0, ports: [0; 4] };
        let (flow, kind, l4, headers, payload, seq, psh) = match parsed {
            Some(p) => (p.flow, p.kind, p.l4, p.headers, p.payload, p.seq, p.psh),
            // Not IP: a group no packet will match (kind Single with an all-zero flow never
            // equals a parsed flow, which has a version-specific pair and protocol).
            None => (blank, Kind::Single, 0, 0, 0, 0, false),
        };
        let coalescable = matches!(kind, Kind::Tcp | Kind::Udp);
        self.groups.push(Group {
            flow,
            kind,
            first: i as u16,
            last: i as u16,
            count: 1,
            open: coalescable && !psh,
            psh,
            l4: l4 as u16,
            headers: headers as u16,
            gso_size: payload as u16,
            len: (headers + payload) as u32,
            next_seq: seq.wrapping_add(payload as u32),
        });
    }
}

/// Largest IP packet: IPv4's total length field, IPv6's payload length field plus its header.
fn ip_len_limit(v6: bool) -> usize {
    if v6 {
        65_535 + 40
    } else {
        65_535
    }
}

/// Rewrites the first packet of a group to describe the whole group.
fn patch(p: &mut [u8], g: &Group) {
    let (l4, len) = (usize::from(g.l4), g.len as usize);
    if p.len() < usize::from(g.headers) {
        return;
    }
    if g.flow.v6 {
        p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    } else {
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[10..12].fill(0);
        let sum = !fold(sum16(&p[..20], 0));
        p[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    let l4_len = len - l4;
    let check_at = match g.kind {
        Kind::Udp => {
            p[l4 + 4..l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            l4 + 6
        }
        _ => {
            if g.psh {
                p[l4 + 13] |= TCP_PSH;
            }
            l4 + 16
        }
    };
    // The pseudo-header sum, not inverted: the kernel adds the rest (CHECKSUM_PARTIAL).
    let addr = if g.flow.v6 { 16 } else { 4 };
    let mut sum = sum16(&g.flow.src[..addr], 0);
    sum = sum16(&g.flow.dst[..addr], sum);
    sum += u64::from(g.flow.proto) + l4_len as u64;
    p[check_at..check_at + 2].copy_from_slice(&fold(sum).to_be_bytes());
}

/// Adds `b` as big-endian 16-bit words (an odd last byte padded with zero) to `sum`.
pub(crate) fn sum16(b: &[u8], mut sum: u64) -> u64 {
    let mut words = b.chunks_exact(2);
    for w in &mut words {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u64::from(*last) << 8;
    }
    sum
}

/// Folds a one's-complement sum to 16 bits.
pub(crate) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests;
