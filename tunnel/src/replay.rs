//! The anti-replay window for transport counters: 8192 bits, of which 8128 counters behind the
//! greatest one are always remembered (one 64-bit word is kept free so that advancing never has
//! to wipe a word that is still in use).
//!
//! [`ReplayWindow::check`] is the read-only pre-check done before decryption;
//! [`ReplayWindow::accept`] is the update, done only after the packet authenticated, so a forged
//! packet can never move the window.

use crate::constants::{COUNTER_BITS_TOTAL, REJECT_AFTER_MESSAGES};

const WORD_BITS: u64 = 64;
const WORDS: usize = (COUNTER_BITS_TOTAL / WORD_BITS) as usize;
/// How far behind the greatest counter seen a counter is still accepted.
pub const WINDOW: u64 = COUNTER_BITS_TOTAL - WORD_BITS;

/// Sliding bitmap of received counters.
#[derive(Clone)]
pub struct ReplayWindow {
    /// The greatest counter accepted plus one; 0 before the first packet.
    top: u64,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self { top: 0, bits: [0; WORDS] }
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow").field("top", &self.top).finish_non_exhaustive()
    }
}

fn slot(n: u64) -> (usize, u64) {
    (((n / WORD_BITS) % WORDS as u64) as usize, 1u64 << (n % WORD_BITS))
}

impl ReplayWindow {
    /// Whether `counter` would be accepted now; changes nothing.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        let n = counter + 1;
        if n > self.top {
            return true;
        }
        if n + WINDOW < self.top {
            return false;
        }
        let (w, bit) = slot(n);
        self.bits[w] & bit == 0
    }

    /// Records `counter` if it is acceptable; returns whether it was.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        let n = counter + 1;
        if n > self.top {
            // Clear the words between the old top and the new one (all of them on a big jump).
            let old_word = self.top / WORD_BITS;
            let new_word = n / WORD_BITS;
            let steps = (new_word - old_word).min(WORDS as u64);
            for i in 1..=steps {
                self.bits[((old_word + i) % WORDS as u64) as usize] = 0;
            }
            self.top = n;
        }
        let (w, bit) = slot(n);
        self.bits[w] |= bit;
        true
    }

    /// The greatest counter accepted so far, if any.
    pub fn greatest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        for c in 0..20_000 {
            assert!(w.accept(c));
            assert!(!w.accept(c));
        }
        assert_eq!(w.greatest(), Some(19_999));
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(10_000));
        assert!(w.check(10_000 - WINDOW));
        assert!(!w.check(10_000 - WINDOW - 1));
        assert!(w.accept(10_000 - WINDOW));
        assert!(!w.accept(10_000 - WINDOW));
        // A jump far ahead forgets everything behind the window.
        assert!(w.accept(1_000_000));
        assert!(!w.check(10_000));
        assert!(w.accept(1_000_000 - 1));
    }

    #[test]
    fn reject_after_messages() {
        let mut w = ReplayWindow::default();
        assert!(!w.accept(REJECT_AFTER_MESSAGES));
        assert!(!w.accept(u64::MAX));
        assert!(w.accept(REJECT_AFTER_MESSAGES - 1));
    }
}
