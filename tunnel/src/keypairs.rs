//! The three session slots of a peer: previous, current and next.
//!
//! An initiator makes a new session current at once. A responder parks it in `next` and promotes
//! it only when the first authenticated data packet arrives on it (key confirmation); until then
//! it keeps sending with `current`. Receiving works on all three slots.

use std::sync::Arc;

use crate::session::Session;

/// previous / current / next.
#[derive(Debug, Default)]
pub struct Keypairs {
    /// The session that was current before the last rotation.
    pub previous: Option<Arc<Session>>,
    /// The session used for sending.
    pub current: Option<Arc<Session>>,
    /// A responder's unconfirmed session.
    pub next: Option<Arc<Session>>,
}

impl Keypairs {
    /// Installs a new session; returns the sessions that fell out of the slots (their indices must
    /// be released).
    pub fn install(&mut self, session: Arc<Session>) -> Vec<Arc<Session>> {
        let mut evicted = Vec::new();
        if session.initiator {
            if let Some(next) = self.next.take() {
                // An unconfirmed responder session becomes previous so late packets on it still
                // open; the old current and previous are dropped.
                evicted.extend(self.previous.replace(next));
                evicted.extend(self.current.take());
            } else {
                evicted.extend(std::mem::replace(&mut self.previous, self.current.take()));
            }
            self.current = Some(session);
        } else {
            evicted.extend(self.next.replace(session));
        }
        evicted
    }

    /// Called after a packet authenticated on the session with `local_index`: promotes `next` if
    /// that is the one. Returns the evicted previous session when a promotion happened.
    pub fn confirm(&mut self, local_index: u32) -> Option<Option<Arc<Session>>> {
        if self.next.as_ref().is_some_and(|n| n.local_index == local_index) {
            let next = self.next.take();
            let evicted = std::mem::replace(&mut self.previous, self.current.take());
            self.current = next;
            Some(evicted)
        } else {
            None
        }
    }

    /// The session with our index `local_index`, in any slot.
    pub fn find(&self, local_index: u32) -> Option<&Arc<Session>> {
        [&self.current, &self.previous, &self.next].into_iter().flatten().find(|s| s.local_index == local_index)
    }

    /// Empties every slot, returning the sessions.
    pub fn clear(&mut self) -> Vec<Arc<Session>> {
        [self.previous.take(), self.current.take(), self.next.take()].into_iter().flatten().collect()
    }

    /// Whether any slot holds a session.
    pub fn is_empty(&self) -> bool {
        self.previous.is_none() && self.current.is_none() && self.next.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::SessionKeys;
    use zeroize::Zeroizing;

    fn s(i: u32, initiator: bool) -> Arc<Session> {
        let keys = SessionKeys { send: Zeroizing::new([0; 32]), recv: Zeroizing::new([0; 32]), local_index: i, remote_index: 0, initiator };
        Arc::new(Session::new(keys, crate::test_instant()))
    }

    #[test]
    fn initiator_rotates_at_once() {
        let mut k = Keypairs::default();
        assert!(k.install(s(1, true)).is_empty());
        assert!(k.install(s(2, true)).is_empty());
        let ev = k.install(s(3, true));
        assert_eq!(ev.iter().map(|s| s.local_index).collect::<Vec<_>>(), vec![1]);
        assert_eq!(k.current.as_ref().unwrap().local_index, 3);
        assert_eq!(k.previous.as_ref().unwrap().local_index, 2);
    }

    #[test]
    fn responder_waits_for_confirmation() {
        let mut k = Keypairs::default();
        k.install(s(1, true));
        k.install(s(2, false));
        assert_eq!(k.current.as_ref().unwrap().local_index, 1);
        assert!(k.find(2).is_some());
        assert!(k.confirm(1).is_none());
        assert!(k.confirm(2).is_some());
        assert_eq!(k.current.as_ref().unwrap().local_index, 2);
        assert_eq!(k.previous.as_ref().unwrap().local_index, 1);
        assert!(k.next.is_none());
        // A newer responder session replaces an unconfirmed one.
        k.install(s(3, false));
        let ev = k.install(s(4, false));
        assert_eq!(ev[0].local_index, 3);
    }
}
