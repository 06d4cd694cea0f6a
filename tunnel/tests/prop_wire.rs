//! Property tests of the wire parsers against naive models written from the specification.
//!
//! `Message::parse` is compared with a model of the protocol's message table (type as a
//! little-endian u32 in 1..=4, exact sizes 148/92/64, data at least 32 bytes), and every field
//! accessor with the bytes at the offsets the table documents. `inner::parse` is compared with a
//! model of the IPv4/IPv6 header rules. Arbitrary bytes never make either panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vpn_tunnel::inner::{self, InnerError, InnerPacket};
use vpn_tunnel::wire::{Message, ParseError};

// ---------------------------------------------------------------------------------------------
// The message model.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Initiation,
    Response,
    CookieReply,
    Data,
}

/// Straight from the table in protocol.md.
fn model_parse(b: &[u8]) -> Result<Kind, ParseError> {
    let Some(head) = b.get(..4) else { return Err(ParseError::TooShort) };
    let ty = u32::from(head[0]) | u32::from(head[1]) << 8 | u32::from(head[2]) << 16 | u32::from(head[3]) << 24;
    let (kind, ok) = match ty {
        1 => (Kind::Initiation, b.len() == 148),
        2 => (Kind::Response, b.len() == 92),
        3 => (Kind::CookieReply, b.len() == 64),
        4 => (Kind::Data, b.len() >= 32),
        _ => return Err(ParseError::UnknownType),
    };
    if ok {
        Ok(kind)
    } else {
        Err(ParseError::BadLength)
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    (0..4).map(|i| u32::from(b[at + i]) << (8 * i)).sum()
}

fn le64(b: &[u8], at: usize) -> u64 {
    (0..8).map(|i| u64::from(b[at + i]) << (8 * i)).sum()
}

/// Parses and checks every accessor against the documented offsets.
fn check_message(b: &[u8]) -> Result<(), TestCaseError> {
    let got = Message::parse(b);
    let want = model_parse(b);
    match (got, want) {
        (Err(e), Err(w)) => prop_assert_eq!(e, w),
        (Ok(Message::Initiation(m)), Ok(Kind::Initiation)) => {
            // type · sender(4) · ephemeral(32) · enc_static(48) · enc_timestamp(28) · mac1 · mac2
            prop_assert_eq!(m.bytes(), b);
            prop_assert_eq!(m.sender(), le32(b, 4));
            prop_assert_eq!(m.mac1_input(), &b[..4 + 4 + 32 + 48 + 28]);
            prop_assert_eq!(m.mac1(), &b[116..132]);
            prop_assert_eq!(m.mac2_input(), &b[..132]);
            prop_assert_eq!(m.mac2(), &b[132..148]);
        }
        (Ok(Message::Response(m)), Ok(Kind::Response)) => {
            // type · sender(4) · receiver(4) · ephemeral(32) · enc_nothing(16) · mac1 · mac2
            prop_assert_eq!(m.bytes(), b);
            prop_assert_eq!(m.sender(), le32(b, 4));
            prop_assert_eq!(m.receiver(), le32(b, 8));
            prop_assert_eq!(m.mac1_input(), &b[..4 + 4 + 4 + 32 + 16]);
            prop_assert_eq!(m.mac1(), &b[60..76]);
            prop_assert_eq!(m.mac2_input(), &b[..76]);
            prop_assert_eq!(m.mac2(), &b[76..92]);
        }
        (Ok(Message::CookieReply(m)), Ok(Kind::CookieReply)) => {
            // type · receiver(4) · nonce(24) · enc_cookie(32)
            prop_assert_eq!(m.bytes(), b);
            prop_assert_eq!(m.receiver(), le32(b, 4));
            prop_assert_eq!(&m.nonce()[..], &b[8..32]);
            prop_assert_eq!(m.encrypted_cookie(), &b[32..64]);
        }
        (Ok(Message::Data(m)), Ok(Kind::Data)) => {
            // type · receiver(4) · counter(8) · AEAD payload + tag
            prop_assert_eq!(m.bytes(), b);
            prop_assert_eq!(m.receiver(), le32(b, 4));
            prop_assert_eq!(m.counter(), le64(b, 8));
        }
        (got, want) => return Err(TestCaseError::fail(format!("parse gave {got:?}, model {want:?} for {} bytes", b.len()))),
    }
    Ok(())
}

/// Bytes that look like a message: a type near the valid ones (sometimes with a reserved byte
/// set), a length near the valid ones, random content.
fn message_like() -> impl Strategy<Value = Vec<u8>> {
    let ty = prop_oneof![
        8 => 0u32..=6,
        1 => (1u32..=4).prop_map(|t| t | 1 << 8),
        1 => (1u32..=4).prop_map(|t| t | 1 << 24),
        1 => any::<u32>(),
    ];
    let len = prop_oneof![0usize..=8, 146usize..=150, 90usize..=94, 62usize..=66, 30usize..=34, 0usize..1600,];
    (ty, len, prop::collection::vec(any::<u8>(), 1600)).prop_map(|(ty, len, mut body)| {
        let t = ty.to_le_bytes();
        for (i, b) in t.iter().enumerate() {
            body[i] = *b;
        }
        body.truncate(len);
        body
    })
}

// ---------------------------------------------------------------------------------------------
// The inner-packet model.

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(b[at]) * 256 + usize::from(b[at + 1])
}

/// IPv4 (RFC 791): a header of IHL 32-bit words, at least 5, inside a total length that fits in the
/// plaintext. IPv6 (RFC 8200): a 40-byte fixed header plus the payload length, inside the plaintext.
fn model_inner(p: &[u8]) -> Result<InnerPacket, InnerError> {
    if p.is_empty() {
        return Err(InnerError::NotIp);
    }
    let version = p[0] / 16;
    if version == 4 {
        if p.len() < 20 {
            return Err(InnerError::BadLength);
        }
        let header = usize::from(p[0] % 16) * 4;
        let total = be16(p, 2);
        if !(20 <= header && header <= total && total <= p.len()) {
            return Err(InnerError::BadLength);
        }
        let src = Ipv4Addr::from([p[12], p[13], p[14], p[15]]);
        let dst = Ipv4Addr::from([p[16], p[17], p[18], p[19]]);
        Ok(InnerPacket { len: total, source: IpAddr::V4(src), destination: IpAddr::V4(dst) })
    } else if version == 6 {
        if p.len() < 40 {
            return Err(InnerError::BadLength);
        }
        let total = 40 + be16(p, 4);
        if total > p.len() {
            return Err(InnerError::BadLength);
        }
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&p[8..24]);
        dst.copy_from_slice(&p[24..40]);
        Ok(InnerPacket { len: total, source: IpAddr::V6(Ipv6Addr::from(src)), destination: IpAddr::V6(Ipv6Addr::from(dst)) })
    } else {
        Err(InnerError::NotIp)
    }
}

/// Plaintexts that look like IPv4 or IPv6 packets with lengths near the edges, plus padding.
fn inner_like() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (0u8..16, 0usize..120, 0usize..120, prop::collection::vec(any::<u8>(), 0..120)).prop_map(|(ihl, total, len, mut p)| {
        p.resize(len.max(20), 0);
        p[0] = 0x40 | ihl;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p.truncate(len);
        p
    });
    let v6 = (0usize..100, 0usize..160, prop::collection::vec(any::<u8>(), 0..160)).prop_map(|(payload, len, mut p)| {
        p.resize(len.max(40), 0);
        p[0] = 0x60 | (p[0] & 0x0f);
        p[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        p.truncate(len);
        p
    });
    prop_oneof![v4, v6, prop::collection::vec(any::<u8>(), 0..80)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn parse_matches_model_on_message_like_bytes(b in message_like()) {
        check_message(&b)?;
    }

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..400)) {
        check_message(&b)?;
    }

    #[test]
    fn inner_matches_model(p in inner_like()) {
        let got = inner::parse(&p);
        prop_assert_eq!(got, model_inner(&p));
        if let Ok(packet) = got {
            prop_assert!(packet.len <= p.len());
        }
    }

    #[test]
    fn inner_never_panics_on_arbitrary_bytes(p in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert_eq!(inner::parse(&p), model_inner(&p));
    }
}

#[test]
fn every_type_and_length_up_to_200() {
    for ty in 0u32..=6 {
        for len in 0..200 {
            let mut b: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
            if len >= 4 {
                b[..4].copy_from_slice(&ty.to_le_bytes());
            }
            check_message(&b).unwrap();
        }
    }
}

#[test]
fn named_field_ranges_match_the_table() {
    use vpn_tunnel::wire::field::{self, cookie_reply, data, initiation, response};
    assert_eq!(field::TYPE, 0..4);
    assert_eq!(
        [initiation::SENDER, initiation::EPHEMERAL, initiation::STATIC, initiation::TIMESTAMP, initiation::MAC1, initiation::MAC2],
        [4..8, 8..40, 40..88, 88..116, 116..132, 132..148]
    );
    assert_eq!(
        [response::SENDER, response::RECEIVER, response::EPHEMERAL, response::EMPTY, response::MAC1, response::MAC2],
        [4..8, 8..12, 12..44, 44..60, 60..76, 76..92]
    );
    assert_eq!([cookie_reply::RECEIVER, cookie_reply::NONCE, cookie_reply::COOKIE], [4..8, 8..32, 32..64]);
    assert_eq!((data::RECEIVER, data::COUNTER, data::PAYLOAD), (4..8, 8..16, 16));
}
