//! Tests of the coalescer: each write is cut up again as the kernel would (by `gso_size`, with
//! the first packet's headers), and what comes out must be the packets that went in, flow by
//! flow in order, with checksums the kernel accepts.

use proptest::prelude::*;

use super::*;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const C: [u8; 4] = [10, 0, 0, 3];

/// A TCP segment description.
#[derive(Debug, Clone)]
struct Seg {
    v6: bool,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    ttl: u8,
    options: Vec<u8>,
    payload: Vec<u8>,
    udp: bool,
    fragment: bool,
}

impl Seg {
    fn tcp(sport: u16, seq: u32, len: usize) -> Self {
        Seg {
            v6: false,
            src: A,
            dst: B,
            sport,
            dport: 5201,
            seq,
            ack: 1000,
            flags: TCP_ACK,
            window: 512,
            ttl: 64,
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            payload: (0..len).map(|i| (i as u32 ^ seq) as u8).collect(),
            udp: false,
            fragment: false,
        }
    }

    fn udp(sport: u16, len: usize, tag: u8) -> Self {
        let mut s = Seg::tcp(sport, 0, len);
        s.udp = true;
        s.options.clear();
        s.payload.iter_mut().for_each(|b| *b ^= tag);
        s
    }

    fn build(&self) -> Vec<u8> {
        let l4_header = if self.udp { 8 } else { 20 + self.options.len() };
        let l4_len = l4_header + self.payload.len();
        let mut p = Vec::new();
        let (src, dst) = addrs(self);
        if self.v6 {
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.push(if self.udp { PROTO_UDP } else { PROTO_TCP });
            p.push(self.ttl);
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
        } else {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            p.extend_from_slice(&[0x12, 0x34]);
            p.extend_from_slice(if self.fragment { &[0x20, 0] } else { &[0x40, 0] });
            p.push(self.ttl);
            p.push(if self.udp { PROTO_UDP } else { PROTO_TCP });
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&src);
            p.extend_from_slice(&dst);
            let c = !fold(sum16(&p, 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = p.len();
        p.extend_from_slice(&self.sport.to_be_bytes());
        p.extend_from_slice(&self.dport.to_be_bytes());
        if self.udp {
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        } else {
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&self.ack.to_be_bytes());
            p.push(((l4_header / 4) as u8) << 4);
            p.push(self.flags);
            p.extend_from_slice(&self.window.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&self.options);
        }
        p.extend_from_slice(&self.payload);
        let at = l4 + if self.udp { 6 } else { 16 };
        let c = !fold(sum16(&p[l4..], pseudo(self, l4_len)));
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }
}

fn addrs(s: &Seg) -> (Vec<u8>, Vec<u8>) {
    if s.v6 {
        let mut src = vec![0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut dst = src.clone();
        src.extend_from_slice(&s.src);
        dst.extend_from_slice(&s.dst);
        (src, dst)
    } else {
        (s.src.to_vec(), s.dst.to_vec())
    }
}

fn pseudo(s: &Seg, l4_len: usize) -> u64 {
    let (src, dst) = addrs(s);
    sum16(&src, sum16(&dst, 0)) + u64::from(if s.udp { PROTO_UDP } else { PROTO_TCP }) + l4_len as u64
}

/// Whether a packet's transport checksum is right, given its IP header.
fn checksum_ok(p: &[u8]) -> bool {
    let (v6, l4) = if p[0] >> 4 == 6 { (true, 40) } else { (false, usize::from(p[0] & 15) * 4) };
    let proto = if v6 { p[6] } else { p[9] };
    let (src, dst) = if v6 { (&p[8..24], &p[24..40]) } else { (&p[12..16], &p[16..20]) };
    let sum = sum16(src, sum16(dst, 0)) + u64::from(proto) + (p.len() - l4) as u64;
    let ip_ok = v6 || fold(sum16(&p[..20], 0)) == 0xffff;
    ip_ok && fold(sum16(&p[l4..], sum)) == 0xffff
}

/// What the kernel does with one write: completes the partial checksum, then cuts the
/// super-packet into `gso_size` segments, each with the first packet's headers (lengths,
/// sequence numbers and checksums fixed; PSH only on the last).
fn segment(header: [u8; VNET_HDR_LEN], bytes: &[u8]) -> Vec<Vec<u8>> {
    if header == [0; VNET_HDR_LEN] {
        return vec![bytes.to_vec()];
    }
    assert_eq!(header[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
    let hdr_len = usize::from(u16::from_ne_bytes([header[2], header[3]]));
    let gso = usize::from(u16::from_ne_bytes([header[4], header[5]]));
    let l4 = usize::from(u16::from_ne_bytes([header[6], header[7]]));
    let csum_offset = usize::from(u16::from_ne_bytes([header[8], header[9]]));
    let udp = header[1] == VIRTIO_NET_HDR_GSO_UDP_L4;
    let v6 = bytes[0] >> 4 == 6;
    assert_eq!(
        header[1],
        if udp {
            VIRTIO_NET_HDR_GSO_UDP_L4
        } else if v6 {
            VIRTIO_NET_HDR_GSO_TCPV6
        } else {
            VIRTIO_NET_HDR_GSO_TCPV4
        }
    );
    assert_eq!(csum_offset, if udp { 6 } else { 16 });
    // The headers the kernel reads must already be consistent.
    if v6 {
        assert_eq!(usize::from(be16(bytes, 4)), bytes.len() - 40);
    } else {
        assert_eq!(usize::from(be16(bytes, 2)), bytes.len());
        assert_eq!(fold(sum16(&bytes[..20], 0)), 0xffff, "IPv4 header checksum");
    }
    // Complete the partial checksum on the super-packet: it must then verify.
    let mut whole = bytes.to_vec();
    let c = !fold(sum16(&whole[l4..], 0));
    whole[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&c.to_be_bytes());
    assert!(checksum_ok(&whole), "the completed checksum of the super-packet verifies");

    let head = &bytes[..hdr_len];
    let payload = &bytes[hdr_len..];
    let chunks: Vec<&[u8]> = payload.chunks(gso).collect();
    let base_seq = be32(head, l4 + 4);
    let mut out = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut p = head.to_vec();
        p.extend_from_slice(chunk);
        let len = p.len();
        if v6 {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            p[10..12].fill(0);
            let c = !fold(sum16(&p[..20], 0));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if udp {
            p[l4 + 4..l4 + 6].copy_from_slice(&((len - l4) as u16).to_be_bytes());
        } else {
            p[l4 + 4..l4 + 8].copy_from_slice(&base_seq.wrapping_add((k * gso) as u32).to_be_bytes());
            if k + 1 < chunks.len() {
                p[l4 + 13] &= !TCP_PSH;
            }
        }
        p[l4 + csum_offset..l4 + csum_offset + 2].fill(0);
        let (src, dst) = if v6 { (&p[8..24], &p[24..40]) } else { (&p[12..16], &p[16..20]) };
        let sum = sum16(src, sum16(dst, 0)) + u64::from(if udp { PROTO_UDP } else { PROTO_TCP }) + (len - l4) as u64;
        let c = !fold(sum16(&p[l4..], sum));
        p[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&c.to_be_bytes());
        out.push(p);
    }
    out
}

/// Plans `packets` and returns, per write, the number of packets and what the kernel makes of it.
fn run(packets: &[Vec<u8>], udp: bool) -> (Vec<usize>, Vec<Vec<u8>>) {
    let mut owned: Vec<Vec<u8>> = packets.to_vec();
    let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
    let mut c = Coalescer::new(udp);
    c.plan(&mut views);
    let mut counts = Vec::new();
    let mut out = Vec::new();
    for w in c.writes() {
        let bytes: Vec<u8> = w.pieces(&views).flatten().copied().collect();
        counts.push(w.count());
        out.extend(segment(w.header(), &bytes));
    }
    (counts, out)
}

/// A flow key for comparing orders: addresses, protocol and ports (or the whole packet for
/// anything else).
fn key(p: &[u8]) -> Vec<u8> {
    match parse(p, true, true) {
        Some(x) if x.kind != Kind::Barrier => {
            let mut k = vec![u8::from(x.flow.v6), x.flow.proto];
            k.extend_from_slice(&x.flow.src);
            k.extend_from_slice(&x.flow.dst);
            k.extend_from_slice(&x.flow.ports);
            k
        }
        Some(x) => {
            let mut k = vec![u8::from(x.flow.v6), 0xff];
            k.extend_from_slice(&x.flow.src);
            k.extend_from_slice(&x.flow.dst);
            k
        }
        None => p.to_vec(),
    }
}

/// The packets as the host sees them are the packets that went in: the same multiset, and per
/// flow the same order (and no packet of a flow passes a barrier of its address pair).
fn assert_same_per_flow(input: &[Vec<u8>], output: &[Vec<u8>]) {
    assert_eq!(input.len(), output.len(), "as many packets out as in");
    let mut keys: Vec<Vec<u8>> = input.iter().map(|p| key(p)).collect();
    keys.sort();
    keys.dedup();
    let barrier = |pk: &[u8]| pk.len() == 34 && pk[1] == 0xff;
    for k in keys {
        // A flow's packets, and the barriers of its address pair, keep their order.
        let relevant = |p: &&Vec<u8>| {
            let pk = key(p);
            pk == k || (k.len() == 38 && barrier(&pk) && pk[0] == k[0] && pk[2..34] == k[2..34])
        };
        let a: Vec<&Vec<u8>> = input.iter().filter(relevant).collect();
        let b: Vec<&Vec<u8>> = output.iter().filter(relevant).collect();
        assert_eq!(a, b, "packets of flow {k:?} in order");
    }
}

fn bytes(segs: &[Seg]) -> Vec<Vec<u8>> {
    segs.iter().map(Seg::build).collect()
}

#[test]
fn consecutive_segments_of_one_flow_become_one_write() {
    let segs: Vec<Seg> = (0..10).map(|k| Seg::tcp(40000, 1 + k * 1368, 1368)).collect();
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    assert_eq!(counts, vec![10]);
    assert_eq!(out, input);
}

#[test]
fn interleaved_flows_coalesce_separately() {
    let mut segs = Vec::new();
    for k in 0..8u32 {
        for port in [40000u16, 40001, 40002, 40003] {
            segs.push(Seg::tcp(port, 7 + k * 1368, 1368));
        }
    }
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    assert_eq!(counts, vec![8, 8, 8, 8]);
    assert_same_per_flow(&input, &out);
}

#[test]
fn psh_and_short_segments_end_a_group() {
    let mut segs: Vec<Seg> = (0..3).map(|k| Seg::tcp(1, k * 100, 100)).collect();
    segs[1].flags |= TCP_PSH;
    // The PSH ended the first group; 200 starts the next, which 300 (shorter) joins and ends.
    segs.push(Seg::tcp(1, 300, 40));
    segs.push(Seg::tcp(1, 340, 40));
    segs.push(Seg::tcp(1, 380, 10));
    segs.push(Seg::tcp(1, 390, 10));
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    assert_eq!(counts, vec![2, 2, 2, 1]);
    assert_eq!(out, input);
}

#[test]
fn a_gap_or_a_changed_header_starts_a_new_group() {
    let base = |seq| Seg::tcp(1, seq, 100);
    let mut gap = base(300);
    gap.seq = 350;
    let mut ack = base(450);
    ack.ack = 2000;
    let mut opt = base(550);
    opt.options[11] = 3;
    let mut ttl = base(650);
    ttl.ttl = 63;
    let mut win = base(750);
    win.window = 100;
    let mut longer = base(850);
    longer.payload.push(1);
    let segs = vec![base(0), base(100), base(200), gap, ack, opt, ttl, win, longer];
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    assert_eq!(counts, vec![3, 1, 1, 1, 1, 1, 1]);
    assert_eq!(out, input);
}

#[test]
fn control_segments_and_other_protocols_are_written_alone_in_order() {
    let mut syn = Seg::tcp(1, 0, 0);
    syn.flags = 0x02;
    let ack_only = Seg::tcp(1, 0, 0);
    let mut fin = Seg::tcp(1, 100, 10);
    fin.flags = TCP_ACK | 0x01;
    let segs = vec![syn, Seg::tcp(1, 0, 50), ack_only, Seg::tcp(1, 50, 50), fin, Seg::tcp(1, 110, 50)];
    let mut input = bytes(&segs);
    input.insert(2, vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 8, 0, 0, 0, 0, 0, 0, 0]);
    input.push(vec![0x00, 0x01, 0x02]); // not IP at all
    let (counts, out) = run(&input, true);
    assert_eq!(counts.iter().sum::<usize>(), input.len());
    assert!(counts.iter().all(|&c| c == 1), "nothing to coalesce: {counts:?}");
    assert_eq!(out, input);
}

#[test]
fn a_fragment_is_a_barrier_for_its_address_pair_only() {
    let mut frag = Seg::udp(9, 100, 0);
    frag.fragment = true;
    let mut other_pair = Seg::tcp(2, 0, 100);
    other_pair.dst = C;
    let mut other_pair2 = other_pair.clone();
    other_pair2.seq = 100;
    let segs = vec![Seg::tcp(1, 0, 100), other_pair, frag, Seg::tcp(1, 100, 100), other_pair2];
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    // The flow A→B cannot join across the fragment of A→B; A→C can.
    assert_eq!(counts, vec![1, 2, 1, 1]);
    assert_same_per_flow(&input, &out);
}

#[test]
fn limits_of_one_write() {
    // 64 segments at most.
    let segs: Vec<Seg> = (0..70).map(|k| Seg::tcp(1, k * 100, 100)).collect();
    let (counts, out) = run(&bytes(&segs), true);
    assert_eq!(counts, vec![64, 6]);
    assert_eq!(out, bytes(&segs));
    // And the IPv4 length field: 1400-byte payloads, 46 of them pass 65,535 bytes.
    let segs: Vec<Seg> = (0..47).map(|k| Seg::tcp(1, k * 1400, 1400)).collect();
    let (counts, _) = run(&bytes(&segs), true);
    assert_eq!(counts, vec![46, 1]);
    let total = 20 + 32 + 46 * 1400;
    assert!(total <= 65_535 && total + 1400 > 65_535);
}

#[test]
fn ipv6_and_udp() {
    let mut segs: Vec<Seg> = (0..5).map(|k| Seg::tcp(1, k * 1000, 1000)).collect();
    segs.iter_mut().for_each(|s| s.v6 = true);
    for k in 0..4 {
        let mut u = Seg::udp(7, 1200, k);
        u.v6 = k % 2 == 0;
        segs.push(u);
    }
    segs.extend((0..4).map(|k| Seg::udp(8, if k == 3 { 500 } else { 1200 }, k as u8)));
    let input = bytes(&segs);
    let (counts, out) = run(&input, true);
    // Port 7 alternates IPv6 and IPv4: two flows, each coalesced across the other.
    assert_eq!(counts, vec![5, 2, 2, 4]);
    assert_same_per_flow(&input, &out);
    // Without UDP segmentation offload, UDP is written packet by packet.
    let (counts, out) = run(&input, false);
    assert_eq!(counts, vec![5, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(out, input);
}

#[test]
fn udp_without_checksum_is_left_alone() {
    let mut input = bytes(&[Seg::udp(7, 100, 0), Seg::udp(7, 100, 1)]);
    for p in &mut input {
        p[26..28].fill(0);
    }
    let (counts, out) = run(&input, true);
    assert_eq!(counts, vec![1, 1]);
    assert_eq!(out, input);
}

#[test]
fn malformed_packets_do_not_panic_and_pass_unchanged() {
    let good = Seg::tcp(1, 0, 100).build();
    let mut input = vec![good.clone()];
    for cut in [0, 1, 19, 20, 21, 39, 40, 41, 51] {
        input.push(good[..cut].to_vec());
    }
    let mut bad_doff = good.clone();
    bad_doff[32] = 0x20;
    input.push(bad_doff);
    let mut bad_len = good.clone();
    bad_len[3] ^= 1;
    input.push(bad_len);
    let mut views_owned = input.clone();
    let mut views: Vec<&mut [u8]> = views_owned.iter_mut().map(|p| p.as_mut_slice()).collect();
    let mut c = Coalescer::new(true);
    c.plan(&mut views);
    let written: Vec<Vec<u8>> = c.writes().map(|w| w.pieces(&views).flatten().copied().collect()).collect();
    assert_eq!(written, input);
}

#[test]
fn reuse_across_batches() {
    let mut c = Coalescer::new(true);
    for round in 0..3u32 {
        let mut owned = bytes(&(0..5).map(|k| Seg::tcp(1, round * 10_000 + k * 100, 100)).collect::<Vec<_>>());
        let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
        c.plan(&mut views);
        assert_eq!(c.writes().map(|w| w.count()).collect::<Vec<_>>(), vec![5]);
    }
}

/// One step of a random batch.
#[derive(Debug, Clone)]
enum Step {
    /// Next segment of flow `f` (0..4; flows 0-2 share an address pair), `len` bytes.
    Next { f: usize, len: usize, psh: bool },
    /// A retransmission of flow `f` (an old sequence number).
    Old { f: usize },
    /// A new ACK number on flow `f`.
    Ack { f: usize },
    /// A pure ACK on flow `f`.
    PureAck { f: usize },
    /// A fragment between the addresses of flows 0-2.
    Fragment,
    /// A UDP datagram of flow `f` (0..2).
    Udp { f: usize, len: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (0..4usize, prop_oneof![3 => Just(1368usize), 1 => 1..1400usize], prop::bool::weighted(0.1)).prop_map(|(f, len, psh)| Step::Next { f, len, psh }),
        1 => (0..4usize).prop_map(|f| Step::Old { f }),
        1 => (0..4usize).prop_map(|f| Step::Ack { f }),
        1 => (0..4usize).prop_map(|f| Step::PureAck { f }),
        1 => Just(Step::Fragment),
        2 => (0..2usize, prop_oneof![Just(1200usize), 1..1300usize]).prop_map(|(f, len)| Step::Udp { f, len }),
    ]
}

fn flow_seg(f: usize, v6: bool) -> Seg {
    let mut s = Seg::tcp(40000 + f as u16, 0, 0);
    s.v6 = v6;
    if f == 3 {
        s.dst = C;
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn what_the_host_receives_is_what_was_sent(steps in prop::collection::vec(step(), 1..160), v6 in any::<bool>(), udp in any::<bool>()) {
        let mut seq = [1u32; 4];
        let mut ack = [5u32; 4];
        let mut segs = Vec::new();
        for (n, s) in steps.iter().enumerate() {
            match *s {
                Step::Next { f, len, psh } => {
                    let mut x = flow_seg(f, v6);
                    x.seq = seq[f];
                    x.ack = ack[f];
                    x.payload = (0..len).map(|i| (i + n) as u8).collect();
                    if psh { x.flags |= TCP_PSH; }
                    seq[f] = seq[f].wrapping_add(len as u32);
                    segs.push(x);
                }
                Step::Old { f } => {
                    let mut x = flow_seg(f, v6);
                    x.seq = seq[f].wrapping_sub(1368);
                    x.ack = ack[f];
                    x.payload = vec![n as u8; 1368];
                    segs.push(x);
                }
                Step::Ack { f } => ack[f] += 1,
                Step::PureAck { f } => {
                    let mut x = flow_seg(f, v6);
                    x.seq = seq[f];
                    x.ack = ack[f];
                    segs.push(x);
                }
                Step::Fragment => {
                    let mut x = Seg::udp(99, 100, n as u8);
                    x.fragment = true;
                    if !v6 { segs.push(x); }
                }
                Step::Udp { f, len } => {
                    let mut x = Seg::udp(7 + f as u16, len, n as u8);
                    x.v6 = v6;
                    segs.push(x);
                }
            }
        }
        let input = bytes(&segs);
        let (counts, out) = run(&input, udp);
        prop_assert_eq!(counts.iter().sum::<usize>(), input.len());
        prop_assert!(counts.iter().all(|&c| c <= MAX_SEGMENTS));
        for p in &out {
            prop_assert!(checksum_ok(p), "every packet the host sees has valid checksums");
        }
        assert_same_per_flow(&input, &out);
    }
}

#[test]
fn a_refused_kind_is_no_longer_coalesced() {
    let mut segs: Vec<Seg> = (0..3).map(|k| Seg::tcp(1, k * 100, 100)).collect();
    segs.extend((0..3).map(|k| Seg::udp(7, 100, k)));
    let mut owned = bytes(&segs);
    let mut c = Coalescer::new(true);
    let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
    c.plan(&mut views);
    assert_eq!(c.writes().map(|w| (w.count(), w.is_udp())).collect::<Vec<_>>(), vec![(3, false), (3, true)]);
    c.disable(true);
    let mut owned = bytes(&segs);
    let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
    c.plan(&mut views);
    assert_eq!(c.writes().map(|w| w.count()).collect::<Vec<_>>(), vec![3, 1, 1, 1]);
    c.disable(false);
    let mut owned = bytes(&segs);
    let mut views: Vec<&mut [u8]> = owned.iter_mut().map(|p| p.as_mut_slice()).collect();
    c.plan(&mut views);
    assert_eq!(c.writes().map(|w| w.count()).collect::<Vec<_>>(), vec![1; 6]);
}
