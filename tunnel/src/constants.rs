//! Protocol constants, named as in the WireGuard whitepaper and the Linux driver.
//!
//! Only values fixed by the protocol live here; sizes chosen by this implementation sit next to the
//! code that uses them.

use std::time::Duration;

/// Noise construction name, hashed into the initial chaining key.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// WireGuard identifier, the Noise prologue.
pub const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
/// Label of the mac1 key derivation.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label of the cookie key derivation.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Send a new handshake once a keypair has sealed this many messages.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Never seal or open with a counter at or beyond this (wireguard-go's value).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// The initiator starts a new handshake when its keypair is this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// No keypair is used for sending or receiving once it is this old.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Give up retransmitting initiations after this long (the 20-initiation rule below matches it).
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Wait this long (plus jitter) for a response before retransmitting an initiation.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound (exclusive) of the random jitter added to REKEY_TIMEOUT.
pub const REKEY_TIMEOUT_JITTER_MAX: Duration = Duration::from_millis(334);
/// Send a keepalive this long after receiving data if nothing was sent meanwhile.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The retransmit timer gives up once it has fired with more than this many attempts counted: the
/// first initiation and 19 retransmissions, 20 initiations in total (the kernel's rule).
pub const MAX_TIMER_HANDSHAKES: u32 = (REKEY_ATTEMPT_TIME.as_secs() / REKEY_TIMEOUT.as_secs()) as u32;
/// The responder's cookie secret is regenerated this often.
pub const COOKIE_SECRET_MAX_AGE: Duration = Duration::from_secs(120);
/// Margin for clock and network latency when using a received cookie.
pub const COOKIE_SECRET_LATENCY: Duration = Duration::from_secs(5);
/// A responder accepts at most one initiation per peer in this interval (50 per second).
pub const INITIATION_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Keys are zeroed when nothing renewed them for this long (3 × REJECT_AFTER_TIME).
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
/// When receiving, the initiator renews a keypair this old
/// (REJECT_AFTER_TIME − KEEPALIVE_TIMEOUT − REKEY_TIMEOUT).
pub const REKEY_ON_RECEIVE_AGE: Duration = Duration::from_secs(180 - 10 - 5);

/// Replay window size in bits (the usable window is one machine word less).
pub const COUNTER_BITS_TOTAL: u64 = 8192;
/// Packets waiting for a handshake, per peer.
pub const MAX_STAGED_PACKETS: usize = 128;

/// Handshake packets per second a single source may send while under load.
pub const RATELIMIT_PACKETS_PER_SECOND: u64 = 20;
/// Burst of the per-source token bucket.
pub const RATELIMIT_BURST: u64 = 5;
/// Bound on the per-source rate-limiter table (the kernel's maximum).
pub const RATELIMIT_MAX_ENTRIES: usize = 65_536;
/// Under load from this queue length on: capacity / 8.
pub const UNDER_LOAD_QUEUE_FRACTION: usize = 8;
/// Stay under load this long after the queue last crossed the threshold.
pub const UNDER_LOAD_AFTER_TIME: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values() {
        assert_eq!(MAX_TIMER_HANDSHAKES, 18);
        assert_eq!(REJECT_AFTER_MESSAGES, 18_446_744_073_709_543_423);
        assert_eq!(ZERO_KEYS_AFTER, REJECT_AFTER_TIME * 3);
        assert_eq!(REKEY_ON_RECEIVE_AGE, REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT);
    }
}
