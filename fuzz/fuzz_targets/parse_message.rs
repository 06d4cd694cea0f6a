//! Wire parsing: `Message::parse` on arbitrary bytes, then every accessor of the view it returns.
//!
//! Invariants: parsing never panics; it accepts exactly the sizes of the protocol's message table
//! (type as a little-endian u32 in 1..=4; 148, 92, 64 bytes; data at least 32); accessors return
//! the bytes at the documented offsets; rewriting a data header from its parsed fields is the
//! identity.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpn_tunnel::wire::{self, Message, ParseError};

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let parsed = Message::parse(data);
    let ty = data.get(..4).map(|t| le32(t, 0));
    match parsed {
        Err(ParseError::TooShort) => assert!(data.len() < 4),
        Err(ParseError::UnknownType) => assert!(!matches!(ty, Some(1..=4))),
        Err(ParseError::BadLength) => {
            let expected_ok = match ty {
                Some(1) => data.len() == 148,
                Some(2) => data.len() == 92,
                Some(3) => data.len() == 64,
                Some(4) => data.len() >= 32,
                _ => panic!("BadLength for type {ty:?}"),
            };
            assert!(!expected_ok, "BadLength for a well-sized type {ty:?}");
        }
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(Message::Initiation(m)) => {
            assert_eq!((ty, data.len()), (Some(1), 148));
            assert_eq!(m.bytes(), data);
            assert_eq!(m.sender(), le32(data, 4));
            assert_eq!(m.mac1_input(), &data[..116]);
            assert_eq!(m.mac1(), &data[116..132]);
            assert_eq!(m.mac2_input(), &data[..132]);
            assert_eq!(m.mac2(), &data[132..148]);
            let _ = format!("{m:?}");
        }
        Ok(Message::Response(m)) => {
            assert_eq!((ty, data.len()), (Some(2), 92));
            assert_eq!(m.bytes(), data);
            assert_eq!(m.sender(), le32(data, 4));
            assert_eq!(m.receiver(), le32(data, 8));
            assert_eq!(m.mac1_input(), &data[..60]);
            assert_eq!(m.mac1(), &data[60..76]);
            assert_eq!(m.mac2_input(), &data[..76]);
            assert_eq!(m.mac2(), &data[76..92]);
            let _ = format!("{m:?}");
        }
        Ok(Message::CookieReply(m)) => {
            assert_eq!((ty, data.len()), (Some(3), 64));
            assert_eq!(m.bytes(), data);
            assert_eq!(m.receiver(), le32(data, 4));
            assert_eq!(&m.nonce()[..], &data[8..32]);
            assert_eq!(m.encrypted_cookie(), &data[32..64]);
            let _ = format!("{m:?}");
        }
        Ok(Message::Data(m)) => {
            assert_eq!(ty, Some(4));
            assert!(data.len() >= wire::DATA_MIN_LEN);
            assert_eq!(m.bytes(), data);
            assert_eq!(m.receiver(), le32(data, 4));
            assert_eq!(m.counter(), u64::from_le_bytes(data[8..16].try_into().unwrap()));
            let mut header = [0u8; 16];
            wire::write_data_header(&mut header, m.receiver(), m.counter());
            assert_eq!(&header[..], &data[..16]);
            let _ = format!("{m:?}");
        }
    }
    // Padding arithmetic on lengths taken from the input.
    if data.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let mtu = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let p = wire::padded_len(len, mtu);
        assert!(p >= len && (p.is_multiple_of(16) || p == mtu.max(len)));
    }
});
