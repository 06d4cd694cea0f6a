//! The five per-peer protocol timers, as deadlines on the caller's clock, and the events that arm
//! and disarm them (the Linux driver's `timers.c` is the reference for every rule here).
//!
//! | timer | armed by | fires |
//! |---|---|---|
//! | retransmit handshake | an initiation sent | resend it, or give up after 20 |
//! | send keepalive | data received | an empty data packet, unless something was sent first |
//! | new handshake | data sent | a fresh handshake when nothing came back in 15 s |
//! | zero key material | a session derived | every key of the peer is destroyed after 540 s |
//! | persistent keepalive | any authenticated packet sent or received | an empty data packet |

use std::time::{Duration, Instant};

use crate::constants::{KEEPALIVE_TIMEOUT, REKEY_TIMEOUT, ZERO_KEYS_AFTER};

/// A timer that fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerEvent {
    /// The initiation went unanswered.
    RetransmitHandshake,
    /// Time to answer received data with a keepalive.
    SendKeepalive,
    /// Data sent got no answer: start a new handshake.
    NewHandshake,
    /// Destroy all keys.
    ZeroKeyMaterial,
    /// The persistent keepalive interval elapsed.
    PersistentKeepalive,
}

/// Deadlines of one peer.
#[derive(Debug, Default, Clone)]
pub struct Timers {
    retransmit_handshake: Option<Instant>,
    send_keepalive: Option<Instant>,
    new_handshake: Option<Instant>,
    zero_key_material: Option<Instant>,
    persistent_keepalive: Option<Instant>,
    need_another_keepalive: bool,
    /// Retransmissions of the current initiation so far.
    pub handshake_attempts: u32,
    /// Whether the receive-side "last-minute" handshake was already sent for this session.
    pub sent_lastminute_handshake: bool,
}

impl Timers {
    fn slots(&mut self) -> [(&mut Option<Instant>, TimerEvent); 5] {
        [
            (&mut self.retransmit_handshake, TimerEvent::RetransmitHandshake),
            (&mut self.send_keepalive, TimerEvent::SendKeepalive),
            (&mut self.new_handshake, TimerEvent::NewHandshake),
            (&mut self.zero_key_material, TimerEvent::ZeroKeyMaterial),
            (&mut self.persistent_keepalive, TimerEvent::PersistentKeepalive),
        ]
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_handshake, self.send_keepalive, self.new_handshake, self.zero_key_material, self.persistent_keepalive]
            .into_iter()
            .flatten()
            .min()
    }

    /// Disarms and returns every timer whose deadline is at or before `now`, in a fixed order.
    pub fn take_expired(&mut self, now: Instant) -> Vec<TimerEvent> {
        let mut out = Vec::new();
        for (slot, ev) in self.slots() {
            if slot.is_some_and(|t| t <= now) {
                *slot = None;
                out.push(ev);
            }
        }
        out
    }

    /// Disarms everything (peer removed or keys destroyed).
    pub fn clear(&mut self) {
        *self = Timers::default();
    }

    /// A data packet (not a keepalive) was sent. `jitter` is only drawn when the timer is armed,
    /// not for every packet of a flow (with the OS RNG a draw is a system call).
    pub fn data_sent(&mut self, now: Instant, jitter: impl FnOnce() -> Duration) {
        if self.new_handshake.is_none() {
            self.new_handshake = Some(now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter());
        }
    }

    /// A data packet (not a keepalive) was received.
    pub fn data_received(&mut self, now: Instant) {
        if self.send_keepalive.is_none() {
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        } else {
            self.need_another_keepalive = true;
        }
    }

    /// Any authenticated packet (data, keepalive or handshake) was sent.
    pub fn any_authenticated_packet_sent(&mut self) {
        self.send_keepalive = None;
    }

    /// Any authenticated packet was received.
    pub fn any_authenticated_packet_received(&mut self) {
        self.new_handshake = None;
    }

    /// Any authenticated packet went either way: restart the persistent keepalive.
    pub fn any_authenticated_packet_traversal(&mut self, now: Instant, persistent_keepalive: u16) {
        if persistent_keepalive > 0 {
            self.persistent_keepalive = Some(now + Duration::from_secs(u64::from(persistent_keepalive)));
        }
    }

    /// An initiation was sent.
    pub fn handshake_initiated(&mut self, now: Instant, jitter: Duration) {
        self.retransmit_handshake = Some(now + REKEY_TIMEOUT + jitter);
    }

    /// A handshake completed (response consumed, or a responder session confirmed).
    pub fn handshake_complete(&mut self) {
        self.retransmit_handshake = None;
        self.handshake_attempts = 0;
        self.sent_lastminute_handshake = false;
    }

    /// New session keys were derived.
    pub fn session_derived(&mut self, now: Instant) {
        self.zero_key_material = Some(now + ZERO_KEYS_AFTER);
    }

    /// After giving up on a handshake: no keepalive; keys zeroed in 540 s unless already due.
    pub fn handshake_abandoned(&mut self, now: Instant) {
        self.send_keepalive = None;
        if self.zero_key_material.is_none() {
            self.zero_key_material = Some(now + ZERO_KEYS_AFTER);
        }
    }

    /// After a keepalive fired: re-arm it when more data arrived meanwhile.
    pub fn keepalive_sent_by_timer(&mut self, now: Instant) {
        if self.need_another_keepalive {
            self.need_another_keepalive = false;
            self.send_keepalive = Some(now + KEEPALIVE_TIMEOUT);
        }
    }

    /// Persistent keepalive turned off.
    pub fn disable_persistent_keepalive(&mut self) {
        self.persistent_keepalive = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_fire_disarm() {
        let t0 = crate::test_instant();
        let mut t = Timers::default();
        assert_eq!(t.next_deadline(), None);
        t.data_sent(t0, || Duration::from_millis(100));
        // Already armed: unchanged, and no jitter drawn.
        t.data_sent(t0 + Duration::from_secs(3), || unreachable!("jitter drawn for an armed timer"));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(15_100)));
        t.any_authenticated_packet_received();
        assert_eq!(t.next_deadline(), None);
        t.data_received(t0);
        t.data_received(t0 + Duration::from_secs(1));
        assert_eq!(t.take_expired(t0 + Duration::from_secs(10)), vec![TimerEvent::SendKeepalive]);
        t.keepalive_sent_by_timer(t0 + Duration::from_secs(10));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(20)));
    }
}
