use super::*;

/// An IPv4 packet of `len` bytes, protocol `proto`, whose payload starts with `first`.
fn v4_packet(src: [u8; 4], dst: [u8; 4], proto: u8, first: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    if len > 20 {
        p[20] = first;
        for (i, b) in p[21..].iter_mut().enumerate() {
            *b = i as u8;
        }
    }
    p
}

/// An IPv6 packet with `payload` after the fixed header, the first next header `next`.
fn v6_packet(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    p[6] = next;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
    p[24..40].copy_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(payload);
    p
}

fn answer(p: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0xaa; 3];
    unreachable(p, &mut out).then_some(out)
}

fn checksum_ok(bytes: &[u8], initial: u64) -> bool {
    fold(sum16(bytes, initial)) == 0xffff
}

#[test]
fn ipv4_host_unreachable_quotes_the_packet() {
    let p = v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 17, 0x12, 100);
    let a = answer(&p).expect("an answer");
    assert_eq!(a.len(), 28 + 100);
    assert_eq!(a[0], 0x45);
    assert_eq!(u16::from_be_bytes([a[2], a[3]]), 128);
    assert_eq!(a[9], 1, "ICMP");
    assert_eq!(&a[12..16], &[10, 9, 0, 99], "from the unreachable address");
    assert_eq!(&a[16..20], &[10, 9, 0, 1], "to the sender");
    assert_eq!((a[20], a[21]), (3, 1), "destination unreachable, host");
    assert_eq!(&a[24..28], &[0; 4]);
    assert_eq!(&a[28..], &p[..]);
    assert!(checksum_ok(&a[..20], 0), "IP header checksum");
    assert!(checksum_ok(&a[20..], 0), "ICMP checksum");
}

#[test]
fn ipv4_answers_stay_within_576_bytes() {
    let p = v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 6, 0, 1420);
    let a = answer(&p).unwrap();
    assert_eq!(a.len(), 576);
    assert_eq!(&a[28..], &p[..548]);
    assert!(checksum_ok(&a[20..], 0));
    // Bytes past the IP total length (padding from the reader) are not quoted.
    let mut padded = v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 17, 0, 60);
    padded.extend_from_slice(&[0xee; 20]);
    assert_eq!(answer(&padded).unwrap().len(), 28 + 60);
}

#[test]
fn ipv4_echo_requests_are_answered_icmp_errors_are_not() {
    assert!(answer(&v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 1, 8, 84)).is_some(), "echo request");
    for t in [3, 4, 5, 11, 12] {
        assert!(answer(&v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 1, t, 56)).is_none(), "ICMP error type {t}");
    }
    assert!(answer(&v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 1, 42, 56)).is_none(), "unknown ICMP type");
    assert!(answer(&v4_packet([10, 9, 0, 1], [10, 9, 0, 99], 1, 0, 20)).is_none(), "ICMP without a type");
}

#[test]
fn ipv4_packets_that_get_no_answer() {
    let host = [10, 9, 0, 1];
    for (what, src, dst) in [
        ("multicast destination", host, [224, 0, 0, 251]),
        ("broadcast destination", host, [255, 255, 255, 255]),
        ("unspecified source", [0, 0, 0, 0], [10, 9, 0, 99]),
        ("multicast source", [239, 1, 2, 3], [10, 9, 0, 99]),
        ("loopback source", [127, 0, 0, 1], [10, 9, 0, 99]),
        ("broadcast source", [255, 255, 255, 255], [10, 9, 0, 99]),
        ("loopback destination", host, [127, 0, 0, 1]),
        ("\"this network\" destination", host, [0, 1, 2, 3]),
        ("reserved destination", host, [240, 0, 0, 1]),
    ] {
        assert!(answer(&v4_packet(src, dst, 17, 0, 60)).is_none(), "{what}");
    }
    let mut later_fragment = v4_packet(host, [10, 9, 0, 99], 17, 0, 60);
    later_fragment[6..8].copy_from_slice(&(0x2000u16 | 185).to_be_bytes());
    assert!(answer(&later_fragment).is_none(), "a fragment other than the first");
    let mut first_fragment = v4_packet(host, [10, 9, 0, 99], 17, 0, 60);
    first_fragment[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
    assert!(answer(&first_fragment).is_some(), "the first fragment");
    let mut truncated = v4_packet(host, [10, 9, 0, 99], 17, 0, 60);
    truncated.truncate(50);
    assert!(answer(&truncated).is_none(), "shorter than its total length");
    let mut bad_ihl = v4_packet(host, [10, 9, 0, 99], 17, 0, 60);
    bad_ihl[0] = 0x44;
    assert!(answer(&bad_ihl).is_none(), "header length below 20");
    assert!(answer(&[0x45, 0, 0]).is_none());
    assert!(answer(&[]).is_none());
    assert!(answer(&[0x50; 60]).is_none(), "not IP");
}

#[test]
fn ipv6_address_unreachable_quotes_the_packet() {
    let p = v6_packet("fd00::2", "fd00::99", 17, &[0x42; 60]);
    let a = answer(&p).expect("an answer");
    assert_eq!(a.len(), 48 + 100);
    assert_eq!(a[0] >> 4, 6);
    assert_eq!(u16::from_be_bytes([a[4], a[5]]), 108);
    assert_eq!(a[6], 58, "ICMPv6");
    assert_eq!(&a[8..24], &p[24..40], "from the unreachable address");
    assert_eq!(&a[24..40], &p[8..24], "to the sender");
    assert_eq!((a[40], a[41]), (1, 3), "destination unreachable, address");
    assert_eq!(&a[48..], &p[..]);
    let pseudo = sum16(&a[8..40], 0) + 108 + 58;
    assert!(checksum_ok(&a[40..], pseudo), "ICMPv6 checksum");
}

#[test]
fn ipv6_answers_stay_within_1280_bytes() {
    let p = v6_packet("fd00::2", "fd00::99", 6, &[7; 1380]);
    let a = answer(&p).unwrap();
    assert_eq!(a.len(), 1280);
    assert_eq!(&a[48..], &p[..1232]);
    let pseudo = sum16(&a[8..40], 0) + 1240 + 58;
    assert!(checksum_ok(&a[40..], pseudo));
}

#[test]
fn ipv6_packets_that_get_no_answer() {
    let udp = [0u8; 16];
    for (what, src, dst) in [
        ("multicast destination", "fd00::2", "ff02::2"),
        ("unspecified source", "::", "fd00::99"),
        ("multicast source", "ff05::1", "fd00::99"),
        ("loopback source", "::1", "fd00::99"),
        ("IPv4-mapped source", "::ffff:10.9.0.1", "fd00::99"),
        ("unspecified destination", "fd00::2", "::"),
        ("loopback destination", "fd00::2", "::1"),
    ] {
        assert!(answer(&v6_packet(src, dst, 17, &udp)).is_none(), "{what}");
    }
    // ICMPv6: errors (types below 128) get no answer, informational messages do.
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 58, &[1, 3, 0, 0, 0, 0, 0, 0])).is_none(), "an error");
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 58, &[128, 0, 0, 0, 0, 0, 0, 0])).is_some(), "echo request");
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 58, &[])).is_none(), "no type");
    // Behind a hop-by-hop header (8 bytes) too.
    let mut behind = vec![58, 0, 0, 0, 0, 0, 0, 0];
    behind.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 0, &behind)).is_none(), "an error behind a hop-by-hop header");
    behind[8] = 129;
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 0, &behind)).is_some(), "echo reply behind a hop-by-hop header");
    // Fragments: only the first is answered.
    let fragment = |offset: u16| {
        let mut f = vec![17, 0, 0, 0, 0, 0, 0, 1];
        f[2..4].copy_from_slice(&((offset << 3) | 1).to_be_bytes());
        f.extend_from_slice(&udp);
        v6_packet("fd00::2", "fd00::99", 44, &f)
    };
    assert!(answer(&fragment(0)).is_some(), "the first fragment");
    assert!(answer(&fragment(100)).is_none(), "a later fragment");
    // Extension headers that run past the packet.
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 0, &[58])).is_none());
    assert!(answer(&v6_packet("fd00::2", "fd00::99", 44, &[17, 0, 0])).is_none());
    assert!(
        answer(&v6_packet("fd00::2", "fd00::99", 0, &[17, 1, 0, 0, 0, 0, 0, 0])).is_none(),
        "a hop-by-hop header longer than the packet"
    );
    // A payload length past the packet.
    let mut truncated = v6_packet("fd00::2", "fd00::99", 17, &udp);
    truncated.truncate(50);
    assert!(answer(&truncated).is_none());
}

#[test]
fn rate_limit_allows_a_burst_then_the_rate() {
    let mut limit = RateLimit::default();
    let t0 = Instant::now();
    let burst = (0..1000).filter(|_| limit.allow(t0)).count();
    assert_eq!(burst as f64, RateLimit::BURST);
    // One answer per 1/PER_SECOND seconds after that.
    let step = Duration::from_secs_f64(1.0 / RateLimit::PER_SECOND);
    assert!(limit.allow(t0 + step));
    assert!(!limit.allow(t0 + step));
    let later = t0 + step + Duration::from_secs(1);
    let refilled = (0..1000).filter(|_| limit.allow(later)).count();
    assert_eq!(refilled as f64, RateLimit::PER_SECOND.min(RateLimit::BURST));
}
