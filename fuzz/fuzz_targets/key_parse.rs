//! Key parsing: base64 (`wg` form) and hex (UAPI form) never panic; whatever parses round-trips.
//!
//! Invariants: an accepted base64 key re-encodes to exactly the input (one spelling per key); an
//! accepted hex key re-encodes to the input in lowercase; the error tells the length apart from
//! the encoding; any 32 bytes from the input survive both encodings; the newtypes agree with the
//! free functions (a private key is clamped).

#![no_main]

use libfuzzer_sys::fuzz_target;
use vpn_crypto::keys::{from_base64, from_hex, to_base64, to_hex};
use vpn_crypto::{KeyParseError, PresharedKey, PrivateKey, PublicKey};

fn check_str(s: &str) {
    match from_base64(s) {
        Ok(k) => {
            assert_eq!(to_base64(&k), s, "base64 is not canonical");
            assert_eq!(PublicKey::from_base64(s), Ok(PublicKey(k)));
            assert_eq!(PresharedKey::from_base64(s).map(|p| *p.as_bytes()), Ok(k));
            let sk = PrivateKey::from_base64(s).expect("same string");
            assert_eq!(sk, PrivateKey::from_bytes(k));
            assert_eq!(PrivateKey::from_base64(&sk.to_base64()).as_ref(), Ok(&sk));
        }
        Err(KeyParseError::Length { expected, got }) => assert!(expected == 44 && got == s.len() && got != 44),
        Err(e) => {
            assert_eq!(e, KeyParseError::Encoding);
            assert_eq!(s.len(), 44);
            assert!(PublicKey::from_base64(s).is_err() && PrivateKey::from_base64(s).is_err());
        }
    }
    match from_hex(s) {
        Ok(k) => assert_eq!(to_hex(&k), s.to_ascii_lowercase()),
        Err(KeyParseError::Length { expected, got }) => assert!(expected == 64 && got == s.len() && got != 64),
        Err(e) => {
            assert_eq!(e, KeyParseError::Encoding);
            assert_eq!(s.len(), 64);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check_str(s);
        check_str(s.trim());
    }
    let lossy = String::from_utf8_lossy(data);
    check_str(&lossy);

    // Any 32 bytes round-trip through both encodings, and a one-character change of a valid
    // encoding is either refused or another canonical key.
    if let Some(raw) = data.get(..32) {
        let k: [u8; 32] = raw.try_into().unwrap();
        let b = to_base64(&k);
        let h = to_hex(&k);
        assert_eq!(from_base64(&b), Ok(k));
        assert_eq!(from_hex(&h), Ok(k));
        assert_eq!(from_hex(&h.to_ascii_uppercase()), Ok(k));
        if let (Some(&pos), Some(&ch)) = (data.get(32), data.get(33)) {
            let mut bytes = b.into_bytes();
            bytes[usize::from(pos) % 44] = ch;
            if let Ok(s) = String::from_utf8(bytes) {
                check_str(&s);
            }
            let mut bytes = h.into_bytes();
            bytes[usize::from(pos) % 64] = ch;
            if let Ok(s) = String::from_utf8(bytes) {
                check_str(&s);
            }
        }
    }
});
