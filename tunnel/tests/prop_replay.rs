//! Property tests of the anti-replay window against a naive model.
//!
//! The model remembers every counter it ever accepted in a `HashSet` plus the greatest one, and
//! accepts a counter iff it is below REJECT_AFTER_MESSAGES, was never accepted before, and is not
//! more than WINDOW behind the greatest counter accepted so far. The real window, a fixed bitmap,
//! must agree with it on every step of sequences that mix in-order delivery, reordering, duplicates,
//! far jumps and counters near `u64::MAX`; `check` must agree with `accept` and never change the
//! state.

use std::collections::HashSet;

use proptest::prelude::*;
use vpn_tunnel::constants::REJECT_AFTER_MESSAGES;
use vpn_tunnel::replay::{ReplayWindow, WINDOW};

/// The naive model: unbounded memory, no bit tricks.
#[derive(Debug, Default, Clone)]
struct Model {
    seen: HashSet<u64>,
    greatest: Option<u64>,
}

impl Model {
    fn would_accept(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES || self.seen.contains(&counter) {
            return false;
        }
        match self.greatest {
            None => true,
            // u128 so that the model itself can never overflow.
            Some(g) => u128::from(counter) + u128::from(WINDOW) >= u128::from(g),
        }
    }

    fn accept(&mut self, counter: u64) -> bool {
        let ok = self.would_accept(counter);
        if ok {
            self.seen.insert(counter);
            self.greatest = Some(self.greatest.map_or(counter, |g| g.max(counter)));
        }
        ok
    }
}

/// One step, interpreted relative to the state of the model when it runs.
#[derive(Debug, Clone)]
enum Op {
    /// The next counter after the greatest (in-order delivery).
    Next,
    /// A counter `d` behind the greatest (reordering, sometimes past the window's edge).
    Behind(u64),
    /// Exactly at the window's edge, shifted by -2..=2.
    Edge(i8),
    /// A counter `d` ahead of the greatest.
    Ahead(u64),
    /// A counter tried earlier (duplicates), picked by index into the history.
    Repeat(usize),
    /// A far jump forward (at least a whole window).
    FarJump(u64),
    /// Around REJECT_AFTER_MESSAGES.
    NearReject(i16),
    /// Near u64::MAX.
    NearMax(u16),
    /// Any counter at all.
    Absolute(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Next),
        4 => (0..WINDOW + 200).prop_map(Op::Behind),
        2 => (-2i8..=2).prop_map(Op::Edge),
        3 => (1u64..300).prop_map(Op::Ahead),
        3 => any::<usize>().prop_map(Op::Repeat),
        1 => (WINDOW..u64::MAX / 4).prop_map(Op::FarJump),
        1 => (-64i16..=64).prop_map(Op::NearReject),
        1 => any::<u16>().prop_map(Op::NearMax),
        1 => any::<u64>().prop_map(Op::Absolute),
    ]
}

/// Turns an op into a concrete counter; `history` holds every counter tried so far.
fn counter(op: &Op, model: &Model, history: &[u64]) -> u64 {
    let g = model.greatest.unwrap_or(0);
    match *op {
        Op::Next => model.greatest.map_or(0, |g| g.wrapping_add(1)),
        Op::Behind(d) => g.saturating_sub(d),
        Op::Edge(s) => g.saturating_sub(WINDOW).saturating_add_signed(i64::from(s)),
        Op::Ahead(d) => g.saturating_add(d),
        Op::Repeat(i) if !history.is_empty() => history[i % history.len()],
        Op::Repeat(_) => 0,
        Op::FarJump(d) => g.saturating_add(d),
        Op::NearReject(s) => REJECT_AFTER_MESSAGES.saturating_add_signed(i64::from(s)),
        Op::NearMax(k) => u64::MAX - u64::from(k),
        Op::Absolute(c) => c,
    }
}

/// Counters worth probing around `c` and the greatest counter: both edges of the window, the
/// neighbours, and the rejection limit.
fn probes(c: u64, greatest: Option<u64>) -> Vec<u64> {
    let mut v = vec![c, c.wrapping_sub(1), c.wrapping_add(1), 0, REJECT_AFTER_MESSAGES - 1, REJECT_AFTER_MESSAGES, u64::MAX];
    if let Some(g) = greatest {
        for base in [g, g.saturating_sub(WINDOW)] {
            v.extend([base.wrapping_sub(1), base, base.wrapping_add(1)]);
        }
    }
    v
}

/// Compares every counter within reach of the window (and a little beyond) with the model.
fn assert_whole_window_agrees(w: &ReplayWindow, model: &Model) {
    let g = model.greatest.unwrap_or(0);
    let lo = g.saturating_sub(WINDOW + 70);
    let hi = g.saturating_add(70);
    for c in lo..=hi {
        assert_eq!(w.check(c), model.would_accept(c), "counter {c}, greatest {:?}", model.greatest);
    }
}

fn run(ops: &[(Op, bool)]) {
    let mut w = ReplayWindow::default();
    let mut model = Model::default();
    let mut history = Vec::new();
    for (op, authenticated) in ops {
        let c = counter(op, &model, &history);
        history.push(c);

        // The pre-check agrees with the model and changes nothing.
        let before = w.clone();
        let checked = w.check(c);
        assert_eq!(checked, model.would_accept(c), "check({c}) after {:?}, greatest {:?}", op, model.greatest);
        assert_eq!(w.check(c), checked, "check is not repeatable");
        assert_eq!(w.greatest(), before.greatest());
        for p in probes(c, model.greatest) {
            assert_eq!(w.check(p), before.check(p), "check({c}) changed the answer for {p}");
        }

        // A packet that failed authentication only sees the pre-check: nothing moves.
        if !*authenticated {
            continue;
        }
        let accepted = w.accept(c);
        assert_eq!(accepted, checked, "accept({c}) disagrees with check({c})");
        assert_eq!(accepted, model.accept(c), "accept({c})");
        assert!(!w.check(c), "{c} is still acceptable after accept");
        assert!(!w.accept(c), "{c} accepted twice");
        assert_eq!(w.greatest(), model.greatest);
    }
    assert_whole_window_agrees(&w, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn window_matches_model(ops in prop::collection::vec((op(), prop::bool::weighted(0.9)), 1..300)) {
        run(&ops);
    }

    /// Any single counter on a fresh window: accepted iff below the limit.
    #[test]
    fn fresh_window(c in any::<u64>()) {
        let mut w = ReplayWindow::default();
        prop_assert_eq!(w.check(c), c < REJECT_AFTER_MESSAGES);
        prop_assert_eq!(w.accept(c), c < REJECT_AFTER_MESSAGES);
    }
}

proptest! {
    // Each case pushes 20,000 counters through both implementations: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Long runs of mostly in-order counters with local shuffling, which wrap the bitmap many times.
    #[test]
    fn shuffled_streams_match_model(start in prop_oneof![Just(0u64), any::<u64>(), (REJECT_AFTER_MESSAGES - 20_000)..REJECT_AFTER_MESSAGES],
                                   swaps in prop::collection::vec((0usize..20_000, 0usize..64), 0..500),
                                   dups in prop::collection::vec(0usize..20_000, 0..50)) {
        let mut counters: Vec<u64> = (0..20_000u64).map(|i| start.saturating_add(i)).collect();
        for (i, d) in swaps {
            let j = (i + d).min(counters.len() - 1);
            counters.swap(i, j);
        }
        for (k, i) in dups.into_iter().enumerate() {
            let c = counters[i];
            counters.insert((i + k) % counters.len(), c);
        }
        let mut w = ReplayWindow::default();
        let mut model = Model::default();
        for c in counters {
            prop_assert_eq!(w.check(c), model.would_accept(c));
            prop_assert_eq!(w.accept(c), model.accept(c), "counter {}", c);
        }
        prop_assert_eq!(w.greatest(), model.greatest);
        assert_whole_window_agrees(&w, &model);
    }
}

#[test]
fn window_edges_near_the_limit() {
    let top = REJECT_AFTER_MESSAGES - 1;
    run(&[
        (Op::NearReject(-1), true),
        (Op::Edge(0), true),
        (Op::Edge(-1), true),
        (Op::Edge(1), true),
        (Op::NearReject(0), true),
        (Op::NearMax(0), true),
    ]);
    let mut w = ReplayWindow::default();
    assert!(w.accept(top));
    assert!(w.accept(top - WINDOW));
    assert!(!w.check(top - WINDOW - 1));
    assert!(!w.accept(REJECT_AFTER_MESSAGES));
    assert_eq!(w.greatest(), Some(top));
}
