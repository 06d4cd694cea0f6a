//! BLAKE2s as WireGuard uses it: HASH (BLAKE2s-256), MAC (keyed BLAKE2s-128), HMAC-BLAKE2s and the
//! HKDF-style chain KDF1..KDF3 over HMAC.
//!
//! Every function takes its input as a list of parts that are hashed as one concatenation, which
//! lets callers hash `a || b` without copying into a temporary buffer.

use blake2::digest::{consts::U16, FixedOutput, KeyInit, Mac, Update};
use blake2::{Blake2s256, Blake2sMac};
use zeroize::{Zeroize, Zeroizing};

/// Output length of HASH and HMAC.
pub const HASH_LEN: usize = 32;
/// Output length of MAC (mac1, mac2, cookies).
pub const MAC_LEN: usize = 16;
const BLOCK_LEN: usize = 64;

/// `HASH(parts[0] || parts[1] || ...)`: unkeyed BLAKE2s with a 32-byte output.
pub fn hash(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut h = Blake2s256::default();
    for p in parts {
        Update::update(&mut h, p);
    }
    h.finalize_fixed().into()
}

/// MAC(key, parts...): keyed BLAKE2s with a 16-byte output (the key is at most 32 bytes).
///
/// # Panics
/// If `key` is longer than 32 bytes (a caller bug: every key in WireGuard is 16 or 32 bytes).
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("BLAKE2s key of at most 32 bytes");
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize_fixed().into()
}

/// HMAC-BLAKE2s(key, parts...) with the 64-byte block size of BLAKE2s (RFC 2104).
pub fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut pad = Zeroizing::new([0u8; BLOCK_LEN]);
    pad[..HASH_LEN].copy_from_slice(key);
    for b in pad.iter_mut() {
        *b ^= 0x36;
    }
    let mut inner = Blake2s256::default();
    Update::update(&mut inner, &pad[..]);
    for p in parts {
        Update::update(&mut inner, p);
    }
    let mut inner_out: [u8; HASH_LEN] = inner.finalize_fixed().into();
    for b in pad.iter_mut() {
        *b ^= 0x36 ^ 0x5c;
    }
    let mut outer = Blake2s256::default();
    Update::update(&mut outer, &pad[..]);
    Update::update(&mut outer, &inner_out);
    inner_out.zeroize();
    outer.finalize_fixed().into()
}

/// KDF1(key, input): the first output of the WireGuard KDF chain.
pub fn kdf1(key: &[u8; HASH_LEN], input: &[u8]) -> Zeroizing<[u8; HASH_LEN]> {
    let t = Zeroizing::new(hmac(key, &[input]));
    Zeroizing::new(hmac(&t, &[&[1]]))
}

/// KDF2(key, input): the first two outputs of the WireGuard KDF chain.
pub fn kdf2(key: &[u8; HASH_LEN], input: &[u8]) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
    let t = Zeroizing::new(hmac(key, &[input]));
    let o1 = Zeroizing::new(hmac(&t, &[&[1]]));
    let o2 = Zeroizing::new(hmac(&t, &[&o1[..], &[2]]));
    (o1, o2)
}

/// KDF3(key, input): the three outputs of the WireGuard KDF chain.
#[allow(clippy::type_complexity)]
pub fn kdf3(key: &[u8; HASH_LEN], input: &[u8]) -> (Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>, Zeroizing<[u8; HASH_LEN]>) {
    let t = Zeroizing::new(hmac(key, &[input]));
    let o1 = Zeroizing::new(hmac(&t, &[&[1]]));
    let o2 = Zeroizing::new(hmac(&t, &[&o1[..], &[2]]));
    let o3 = Zeroizing::new(hmac(&t, &[&o2[..], &[3]]));
    (o1, o2, o3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_concatenated() {
        assert_eq!(hash(&[b"ab", b"c"]), hash(&[b"abc"]));
        assert_eq!(mac(&[7; 32], &[b"a", b"bc"]), mac(&[7; 32], &[b"abc"]));
        assert_eq!(hmac(&[7; 32], &[b"a", b"bc"]), hmac(&[7; 32], &[b"abc"]));
    }

    #[test]
    fn kdf_outputs_chain() {
        let k = [9u8; 32];
        let (a, b, c) = kdf3(&k, b"in");
        let (a2, b2) = kdf2(&k, b"in");
        assert_eq!(*a, *kdf1(&k, b"in"));
        assert_eq!((*a, *b), (*a2, *b2));
        assert_ne!(*b, *c);
    }
}
