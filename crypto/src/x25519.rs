//! X25519 Diffie-Hellman (RFC 7748) through `x25519-dalek`.
//!
//! WireGuard requires rejecting an all-zero shared secret, which a peer obtains by sending a
//! low-order point; the comparison is constant-time.

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The shared secret was all zeros: the other side's public key is a low-order point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X25519 produced an all-zero shared secret (low-order public key)")]
pub struct LowOrderPoint;

/// Clamps a scalar as X25519 does (RFC 7748 §5).
pub fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

/// The public key of a private scalar: X25519(k, 9).
pub fn public(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*private, x25519_dalek::X25519_BASEPOINT_BYTES)
}

/// DH(private, public), refusing an all-zero result.
pub fn dh(private: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, LowOrderPoint> {
    let shared = Zeroizing::new(x25519_dalek::x25519(*private, *public));
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(LowOrderPoint);
    }
    Ok(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_order_point_is_rejected() {
        assert_eq!(dh(&[7; 32], &[0; 32]), Err(LowOrderPoint));
        // u = 1, a point of order 4.
        let mut p = [0u8; 32];
        p[0] = 1;
        assert_eq!(dh(&[7; 32], &p), Err(LowOrderPoint));
    }

    #[test]
    fn dh_agrees() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(*dh(&a, &public(&b)).unwrap(), *dh(&b, &public(&a)).unwrap());
    }
}
