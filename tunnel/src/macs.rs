//! mac1, mac2 and cookies: WireGuard's defence against handshake floods.
//!
//! [`CookieChecker`] is the receiving side: it checks mac1 (proof that the sender knows our public
//! key), checks mac2 against the cookie it would hand to the sender's address, and builds cookie
//! replies. [`CookieState`] is the sending side, one per peer: it adds mac1 and, while it holds a
//! fresh cookie, mac2, and consumes cookie replies for the handshake message it last sent.
//! All comparisons are constant-time.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use vpn_crypto::blake2s::{mac, MAC_LEN};
use vpn_crypto::xaead;
use zeroize::Zeroizing;

use crate::constants::{COOKIE_SECRET_LATENCY, COOKIE_SECRET_MAX_AGE};
use crate::wire::{field, put_u32, CookieReply, COOKIE_REPLY_LEN, TYPE_COOKIE_REPLY};

/// Writes the address bytes a cookie is bound to: the IP address then the big-endian port.
fn source_bytes(src: &SocketAddr, out: &mut [u8; 18]) -> usize {
    let n = match src.ip() {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            out[..16].copy_from_slice(&a.octets());
            16
        }
    };
    out[n..n + 2].copy_from_slice(&src.port().to_be_bytes());
    n + 2
}

/// Whether a handshake message (initiation or response, whose mac1 and mac2 are its last 32
/// bytes) carries a valid mac1 under `mac1_key`: the cheap check a worker thread does before
/// queueing the message for the handshake path. Other messages give `false`.
pub fn verify_mac1(mac1_key: &[u8; 32], msg: &[u8]) -> bool {
    if msg.len() != crate::wire::INITIATION_LEN && msg.len() != crate::wire::RESPONSE_LEN {
        return false;
    }
    let n = msg.len();
    mac(mac1_key, &[&msg[..n - 32]]).ct_eq(&msg[n - 32..n - 16]).into()
}

/// Checks MACs on handshake messages addressed to us and makes cookie replies.
pub struct CookieChecker {
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    secret: Zeroizing<[u8; 32]>,
    secret_born: Option<Instant>,
}

impl std::fmt::Debug for CookieChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieChecker([redacted])")
    }
}

impl CookieChecker {
    /// A checker for messages sent to the owner of these keys (see [`crate::noise::StaticIdentity`]).
    pub fn new(mac1_key: [u8; 32], cookie_key: [u8; 32]) -> Self {
        Self { mac1_key, cookie_key, secret: Zeroizing::new([0; 32]), secret_born: None }
    }

    /// Whether `mac1` is MAC(mac1 key, `covered`).
    pub fn check_mac1(&self, covered: &[u8], mac1: &[u8]) -> bool {
        mac(&self.mac1_key, &[covered]).ct_eq(mac1).into()
    }

    fn cookie(&mut self, now: Instant, rng: &mut dyn CryptoRngCore, src: &SocketAddr) -> [u8; MAC_LEN] {
        let expired = self.secret_born.is_none_or(|born| now.saturating_duration_since(born) >= COOKIE_SECRET_MAX_AGE);
        if expired {
            rng.fill_bytes(&mut self.secret[..]);
            self.secret_born = Some(now);
        }
        let mut a = [0u8; 18];
        let n = source_bytes(src, &mut a);
        mac(&self.secret[..], &[&a[..n]])
    }

    /// Whether `mac2` is MAC(cookie for `src`, `covered`): proof that the sender received a
    /// cookie reply at this address recently.
    pub fn check_mac2(&mut self, now: Instant, rng: &mut dyn CryptoRngCore, src: &SocketAddr, covered: &[u8], mac2: &[u8]) -> bool {
        let cookie = self.cookie(now, rng, src);
        mac(&cookie, &[covered]).ct_eq(mac2).into()
    }

    /// Writes a cookie reply for a message from `src` whose sender index was `receiver` and whose
    /// mac1 was `mac1` (the reply's associated data).
    pub fn create_reply(
        &mut self,
        now: Instant,
        rng: &mut dyn CryptoRngCore,
        src: &SocketAddr,
        receiver: u32,
        mac1: &[u8],
        out: &mut [u8; COOKIE_REPLY_LEN],
    ) {
        let cookie = self.cookie(now, rng, src);
        out.fill(0);
        put_u32(out, field::TYPE, TYPE_COOKIE_REPLY);
        put_u32(out, field::cookie_reply::RECEIVER, receiver);
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        out[field::cookie_reply::NONCE].copy_from_slice(&nonce);
        xaead::seal(&self.cookie_key, &nonce, mac1, &cookie, &mut out[field::cookie_reply::COOKIE]);
    }
}

/// Why a cookie reply was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// We have not sent a handshake message this reply could answer.
    #[error("cookie reply without a pending handshake message")]
    Unexpected,
    /// The reply did not decrypt under the peer's cookie key with our last mac1 as data.
    #[error("cookie reply did not authenticate")]
    Decrypt,
}

/// Per-peer sending side of the MACs.
#[derive(Default)]
pub struct CookieState {
    cookie: Option<([u8; MAC_LEN], Instant)>,
    last_mac1: Option<[u8; MAC_LEN]>,
}

impl std::fmt::Debug for CookieState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieState").field("has_cookie", &self.cookie.is_some()).finish()
    }
}

impl CookieState {
    /// Fills mac1 and mac2 of a handshake message whose last 32 bytes are the two MACs, using the
    /// peer's mac1 key.
    pub fn add_macs(&mut self, now: Instant, mac1_key: &[u8; 32], msg: &mut [u8]) {
        let n = msg.len();
        let m1 = mac(mac1_key, &[&msg[..n - 32]]);
        msg[n - 32..n - 16].copy_from_slice(&m1);
        self.last_mac1 = Some(m1);
        let fresh = self.cookie.filter(|(_, at)| now.saturating_duration_since(*at) < COOKIE_SECRET_MAX_AGE - COOKIE_SECRET_LATENCY);
        let m2 = match fresh {
            Some((cookie, _)) => mac(&cookie, &[&msg[..n - 16]]),
            None => [0; MAC_LEN],
        };
        msg[n - 16..].copy_from_slice(&m2);
    }

    /// Takes a cookie from a reply to the last message we sent, decrypted with the peer's cookie
    /// key.
    pub fn consume_reply(&mut self, now: Instant, cookie_key: &[u8; 32], reply: &CookieReply<'_>) -> Result<(), CookieError> {
        let last_mac1 = self.last_mac1.ok_or(CookieError::Unexpected)?;
        let mut cookie = [0u8; MAC_LEN];
        xaead::open(cookie_key, reply.nonce(), &last_mac1, reply.encrypted_cookie(), &mut cookie).map_err(|_| CookieError::Decrypt)?;
        self.cookie = Some((cookie, now));
        self.last_mac1 = None;
        Ok(())
    }

    /// How old the held cookie is, if any.
    pub fn cookie_age(&self, now: Instant) -> Option<Duration> {
        self.cookie.map(|(_, at)| now.saturating_duration_since(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn cookie_round_trip_gives_valid_mac2() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let now = crate::test_instant();
        let (mac1_key, cookie_key) = ([1u8; 32], [2u8; 32]);
        let mut checker = CookieChecker::new(mac1_key, cookie_key);
        let mut sender = CookieState::default();
        let src: SocketAddr = "10.0.0.1:5000".parse().unwrap();

        let mut msg = [7u8; 148];
        sender.add_macs(now, &mac1_key, &mut msg);
        assert!(checker.check_mac1(&msg[..116], &msg[116..132]));
        assert!(!checker.check_mac2(now, &mut rng, &src, &msg[..132], &msg[132..]));

        let mut reply = [0u8; 64];
        checker.create_reply(now, &mut rng, &src, 42, &msg[116..132], &mut reply);
        let Ok(Message::CookieReply(r)) = Message::parse(&reply) else { panic!("not a cookie reply") };
        assert_eq!(r.receiver(), 42);
        sender.consume_reply(now, &cookie_key, &r).unwrap();
        // A second reply to the same message is refused: the mac1 it answers was used up.
        assert_eq!(sender.consume_reply(now, &cookie_key, &r), Err(CookieError::Unexpected));

        sender.add_macs(now, &mac1_key, &mut msg);
        assert!(checker.check_mac2(now, &mut rng, &src, &msg[..132], &msg[132..]));
        let other: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        assert!(!checker.check_mac2(now, &mut rng, &other, &msg[..132], &msg[132..]));

        // After 115 s the sender stops using the cookie.
        sender.add_macs(now + Duration::from_secs(116), &mac1_key, &mut msg);
        assert_eq!(&msg[132..], &[0u8; 16]);
    }
}
