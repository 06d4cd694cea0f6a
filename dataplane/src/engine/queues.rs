//! The bounded queues from the socket readers to the handshake thread: one for initiations and
//! responses (only those with a valid mac1 reach it), one for cookie replies.
//!
//! They are separate because a cookie reply needs no key to forge: any 64 bytes of type 3 pass
//! the readers' checks (it can only be authenticated against the handshake it answers, on the
//! handshake thread). In one shared queue a flood of such datagrams, from anyone, would crowd out
//! every initiation (each refused as `handshake_queue_full`) and, by filling the queue, put the
//! device "under load" so that the initiations that did get in were answered with cookie replies
//! instead of handshakes. Here the flood fills only the cookie queue; the handshake queue, whose
//! length is the backlog that decides "under load", holds only handshake messages.
//!
//! The handshake thread takes from whichever queue has something, at random when both do, so
//! neither kind starves the other: a flood of valid-mac1 initiations (each a Diffie-Hellman) does
//! not keep the cookie replies of our own handshakes waiting, and a cookie flood costs the
//! handshake thread at most every other turn.

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::{bounded, select, Receiver, Sender};

/// Capacity of the handshake queue (wireguard-go's); under load from 1/8 of it.
pub const HANDSHAKE_QUEUE: usize = 1024;

/// Capacity of the cookie-reply queue. A genuine cookie reply answers one of our initiations
/// (at most one every 5 s per peer) and costs the handshake thread a microsecond or so.
pub const COOKIE_QUEUE: usize = 256;

/// A queued datagram and its sender.
pub(crate) type Queued = (Vec<u8>, SocketAddr);

/// The two queues, each bounded: a push to a full one fails (the caller counts the drop).
pub(crate) struct HandshakeQueues {
    handshakes: (Sender<Queued>, Receiver<Queued>),
    cookies: (Sender<Queued>, Receiver<Queued>),
}

impl HandshakeQueues {
    pub(crate) fn new() -> Self {
        Self::with_capacity(HANDSHAKE_QUEUE, COOKIE_QUEUE)
    }

    fn with_capacity(handshakes: usize, cookies: usize) -> Self {
        Self { handshakes: bounded(handshakes), cookies: bounded(cookies) }
    }

    /// Queues an initiation or response (its mac1 already checked); false when the queue is full.
    pub(crate) fn push_handshake(&self, datagram: &[u8], source: SocketAddr) -> bool {
        push(&self.handshakes.0, datagram, source)
    }

    /// Queues a cookie reply (of the exact length); false when its queue is full.
    pub(crate) fn push_cookie_reply(&self, datagram: &[u8], source: SocketAddr) -> bool {
        push(&self.cookies.0, datagram, source)
    }

    /// Handshake messages waiting, and the queue's capacity: the device's measure of load.
    pub(crate) fn backlog(&self) -> (usize, usize) {
        (self.handshakes.1.len(), self.handshakes.1.capacity().unwrap_or(HANDSHAKE_QUEUE))
    }

    /// The next queued datagram of either kind, waiting at most `timeout`.
    pub(crate) fn recv(&self, timeout: Duration) -> Option<Queued> {
        select! {
            recv(self.handshakes.1) -> m => m.ok(),
            recv(self.cookies.1) -> m => m.ok(),
            default(timeout) => None,
        }
    }
}

/// Copies the datagram into the queue, unless it is full (then without copying: a flood is
/// refused at the cost of a length check).
fn push(queue: &Sender<Queued>, datagram: &[u8], source: SocketAddr) -> bool {
    !queue.is_full() && queue.try_send((datagram.to_vec(), source)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 51820))
    }

    #[test]
    fn a_cookie_flood_leaves_room_for_handshakes_and_the_backlog_untouched() {
        let q = HandshakeQueues::new();
        let junk = [3u8; 64];
        let accepted = (0..10 * COOKIE_QUEUE).filter(|_| q.push_cookie_reply(&junk, from(1))).count();
        assert_eq!(accepted, COOKIE_QUEUE, "the cookie queue is bounded");
        assert_eq!(q.backlog(), (0, HANDSHAKE_QUEUE), "cookie replies are no handshake backlog");
        let initiation = [1u8; 148];
        assert!(q.push_handshake(&initiation, from(2)), "an initiation still gets in");
        assert_eq!(q.backlog(), (1, HANDSHAKE_QUEUE));
    }

    #[test]
    fn both_kinds_are_served_and_neither_starves() {
        let q = HandshakeQueues::with_capacity(64, 64);
        for _ in 0..64 {
            assert!(q.push_handshake(&[1; 148], from(1)));
            assert!(q.push_cookie_reply(&[3; 64], from(2)));
        }
        assert!(!q.push_handshake(&[1; 148], from(1)), "full");
        // While both queues stay full, the first 32 taken include both kinds.
        let firsts: Vec<u8> = (0..32).map(|_| q.recv(Duration::ZERO).expect("queued").0[0]).collect();
        assert!(firsts.contains(&1) && firsts.contains(&3), "{firsts:?}");
        let rest = std::iter::from_fn(|| q.recv(Duration::ZERO)).count();
        assert_eq!(rest, 128 - 32);
        assert_eq!(q.recv(Duration::from_millis(1)), None);
    }
}
