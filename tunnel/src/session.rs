//! A transport session (the kernel's "keypair"): the two keys a handshake derived, the send
//! counter and the replay window.
//!
//! `seal` and `open` take `&self` so that worker threads can share a session through an `Arc`: the
//! send counter is an atomic and the replay window is the only critical section, a few
//! instructions long. Nothing here reads a clock; the caller passes `now`.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use vpn_crypto::aead::AeadKey;

use crate::constants::{REJECT_AFTER_MESSAGES, REJECT_AFTER_TIME};
use crate::noise::SessionKeys;
use crate::replay::ReplayWindow;
use crate::wire::{field, padded_len, write_data_header, DATA_HEADER_LEN, DATA_MIN_LEN, TAG_LEN};

/// Why a session refused to seal or open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The session is REJECT_AFTER_TIME old.
    #[error("session expired")]
    Expired,
    /// The counter reached REJECT_AFTER_MESSAGES.
    #[error("session counter exhausted")]
    CounterExhausted,
    /// The counter was seen before or is too far behind the window.
    #[error("replayed counter")]
    Replay,
    /// The AEAD did not authenticate.
    #[error("data message did not authenticate")]
    Decrypt,
    /// The buffer cannot hold the sealed message.
    #[error("buffer too small for the sealed message")]
    BufferTooSmall,
}

/// One direction pair of transport keys with its counters.
pub struct Session {
    send: AeadKey,
    recv: AeadKey,
    send_counter: AtomicU64,
    replay: Mutex<ReplayWindow>,
    created: Instant,
    /// Our index (data messages to us carry it).
    pub local_index: u32,
    /// The peer's index (our data messages carry it).
    pub remote_index: u32,
    /// Whether we were the initiator of the handshake that made this session.
    pub initiator: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .field("send_counter", &self.send_counter.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A fresh session created at `now`; the raw keys in `keys` are zeroized when it is dropped.
    pub fn new(keys: SessionKeys, now: Instant) -> Self {
        Self {
            send: AeadKey::new(&keys.send),
            recv: AeadKey::new(&keys.recv),
            send_counter: AtomicU64::new(0),
            replay: Mutex::new(ReplayWindow::default()),
            created: now,
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            initiator: keys.initiator,
        }
    }

    /// When the handshake that made it completed.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// Whether the session is past REJECT_AFTER_TIME at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.created) >= REJECT_AFTER_TIME
    }

    /// The next counter `seal` would use.
    pub fn send_counter(&self) -> u64 {
        self.send_counter.load(Ordering::Relaxed)
    }

    /// Whether the session can still send at `now`.
    pub fn can_send(&self, now: Instant) -> bool {
        !self.is_expired(now) && self.send_counter() < REJECT_AFTER_MESSAGES
    }

    /// Seals in place. `buf[16..16 + len]` holds the plaintext; `buf` must have room for padding
    /// (to a multiple of 16, capped at `mtu`) and the 16-byte tag. Writes the header and returns
    /// the length of the whole data message.
    pub fn seal(&self, now: Instant, buf: &mut [u8], len: usize, mtu: usize) -> Result<usize, SessionError> {
        if buf.len() < DATA_HEADER_LEN + padded_len(len, mtu) + TAG_LEN {
            return Err(SessionError::BufferTooSmall);
        }
        let counters = self.reserve(now, 1)?;
        self.seal_at(counters.start, buf, len, mtu)
    }

    /// Reserves up to `n` consecutive send counters for a batch that is sealed (possibly on
    /// several threads, with [`Session::seal_at`]) and then sent in counter order. The range is
    /// shorter than `n` when the session reaches REJECT_AFTER_MESSAGES; empty ranges are errors.
    pub fn reserve(&self, now: Instant, n: u64) -> Result<Range<u64>, SessionError> {
        if self.is_expired(now) {
            return Err(SessionError::Expired);
        }
        let first = self.send_counter.fetch_add(n, Ordering::Relaxed);
        if first.saturating_add(n) > REJECT_AFTER_MESSAGES {
            // Keep the counter pinned so it can never wrap around to reuse a nonce.
            self.send_counter.store(REJECT_AFTER_MESSAGES, Ordering::Relaxed);
        }
        let end = first.saturating_add(n).min(REJECT_AFTER_MESSAGES);
        if first >= end {
            return Err(SessionError::CounterExhausted);
        }
        Ok(first..end)
    }

    /// Seals in place, like [`Session::seal`], with a counter taken from [`Session::reserve`]
    /// (each counter must be used once: a nonce must never repeat).
    pub fn seal_at(&self, counter: u64, buf: &mut [u8], len: usize, mtu: usize) -> Result<usize, SessionError> {
        let padded = padded_len(len, mtu);
        let total = DATA_HEADER_LEN + padded + TAG_LEN;
        if buf.len() < total {
            return Err(SessionError::BufferTooSmall);
        }
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(SessionError::CounterExhausted);
        }
        write_data_header(buf, self.remote_index, counter);
        let body = &mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + padded];
        body[len..].fill(0);
        let tag = self.send.seal_in_place(counter, &[], body);
        buf[DATA_HEADER_LEN + padded..total].copy_from_slice(&tag);
        Ok(total)
    }

    /// Opens a data message (already parsed as one) in place: checks age and replay, authenticates, then records the
    /// counter. On success the plaintext (still padded) is `buf[16..16 + returned length]`.
    pub fn open(&self, now: Instant, buf: &mut [u8]) -> Result<usize, SessionError> {
        if buf.len() < DATA_MIN_LEN {
            return Err(SessionError::Decrypt);
        }
        let mut c = [0u8; 8];
        c.copy_from_slice(&buf[field::data::COUNTER]);
        let counter = u64::from_le_bytes(c);
        if self.is_expired(now) {
            return Err(SessionError::Expired);
        }
        if !self.lock_replay().check(counter) {
            return Err(if counter >= REJECT_AFTER_MESSAGES { SessionError::CounterExhausted } else { SessionError::Replay });
        }
        let plain_len = self.recv.open_in_place(counter, &[], &mut buf[field::data::PAYLOAD..]).map_err(|_| SessionError::Decrypt)?.len();
        if !self.lock_replay().accept(counter) {
            return Err(SessionError::Replay);
        }
        Ok(plain_len)
    }

    /// The greatest counter received so far.
    pub fn greatest_received(&self) -> Option<u64> {
        self.lock_replay().greatest()
    }

    fn lock_replay(&self) -> std::sync::MutexGuard<'_, ReplayWindow> {
        // The window holds no invariant a panicking holder could break: recover from poisoning.
        self.replay.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(crate) fn force_send_counter(&self, v: u64) {
        self.send_counter.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn pair(now: Instant) -> (Session, Session) {
        let k = |s: u8, r: u8, i| SessionKeys {
            send: Zeroizing::new([s; 32]),
            recv: Zeroizing::new([r; 32]),
            local_index: i,
            remote_index: 3 - i,
            initiator: i == 1,
        };
        (Session::new(k(1, 2, 1), now), Session::new(k(2, 1, 2), now))
    }

    #[test]
    fn seal_open_pads_and_rejects_replay() {
        let now = crate::test_instant();
        let (a, b) = pair(now);
        let mut buf = vec![0u8; 16 + 96 + 16];
        buf[16..16 + 84].fill(0xaa);
        let n = a.seal(now, &mut buf, 84, 1420).unwrap();
        assert_eq!(n, 128);
        let copy = buf.clone();
        let len = b.open(now, &mut buf).unwrap();
        assert_eq!(len, 96);
        assert!(buf[16..100].iter().all(|&x| x == 0xaa) && buf[100..112].iter().all(|&x| x == 0));
        let mut again = copy.clone();
        assert_eq!(b.open(now, &mut again), Err(SessionError::Replay));
        let mut forged = copy;
        forged[8] = 9; // another counter: authentication fails and the window does not move
        assert_eq!(b.open(now, &mut forged), Err(SessionError::Decrypt));
        assert_eq!(b.greatest_received(), Some(0));
    }

    #[test]
    fn expiry_and_counter_limit() {
        let now = crate::test_instant();
        let (a, b) = pair(now);
        let mut buf = vec![0u8; 64];
        assert_eq!(a.seal(now + REJECT_AFTER_TIME, &mut buf, 0, 1420), Err(SessionError::Expired));
        a.force_send_counter(REJECT_AFTER_MESSAGES - 1);
        let n = a.seal(now, &mut buf, 0, 1420).unwrap();
        assert!(b.open(now, &mut buf[..n]).is_ok());
        assert_eq!(a.seal(now, &mut buf, 0, 1420), Err(SessionError::CounterExhausted));
        assert_eq!(a.seal(now, &mut buf, 0, 1420), Err(SessionError::CounterExhausted));
        assert!(!a.can_send(now));
    }

    #[test]
    fn reserved_counters_are_consecutive_and_stop_at_the_limit() {
        let now = crate::test_instant();
        let (a, b) = pair(now);
        assert_eq!(a.reserve(now, 3), Ok(0..3));
        let mut bufs = vec![vec![0u8; 64]; 3];
        // Sealed out of order, opened in any order: each counter is used once.
        for c in [2u64, 0, 1] {
            let n = a.seal_at(c, &mut bufs[c as usize], 0, 1420).unwrap();
            bufs[c as usize].truncate(n);
        }
        for buf in &mut bufs {
            assert!(b.open(now, buf).is_ok());
        }
        assert_eq!(a.send_counter(), 3);
        a.force_send_counter(REJECT_AFTER_MESSAGES - 2);
        assert_eq!(a.reserve(now, 5), Ok(REJECT_AFTER_MESSAGES - 2..REJECT_AFTER_MESSAGES));
        assert_eq!(a.reserve(now, 1), Err(SessionError::CounterExhausted));
        assert_eq!(a.send_counter(), REJECT_AFTER_MESSAGES);
        assert_eq!(a.reserve(now + REJECT_AFTER_TIME, 1), Err(SessionError::Expired));
        assert_eq!(a.seal_at(REJECT_AFTER_MESSAGES, &mut bufs[0], 0, 1420), Err(SessionError::CounterExhausted));
    }
}
