//! The anti-replay window, `vpn_tunnel::replay::ReplayWindow`, one counter per operation.
//!
//! - `in_order`: `accept` of increasing counters (the common case);
//! - `reordered`: `accept` of counters shuffled within blocks of 128 (as parallel senders or
//!   multi-path networks reorder), every one still new and inside the window;
//! - `check_duplicate` / `accept_duplicate`: the pre-check and the update on counters already
//!   received, which both refuse.

use std::hint::black_box;

use criterion::{criterion_main, Criterion, Throughput};
use rand_core::RngCore;
use vpn_benches::seeded_rng;
use vpn_tunnel::replay::ReplayWindow;

/// Reordering distance of the `reordered` benchmark.
const BLOCK: u64 = 128;
/// Counters received before the duplicate benchmarks (well inside the 8128-counter window).
const SEEN: u64 = 4096;

/// A seeded permutation of `0..BLOCK`.
fn shuffled_block() -> Vec<u64> {
    let mut rng = seeded_rng(21);
    let mut v: Vec<u64> = (0..BLOCK).collect();
    for i in (1..v.len()).rev() {
        let j = (rng.next_u32() as usize) % (i + 1);
        v.swap(i, j);
    }
    v
}

fn replay(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(1));

    let mut w = ReplayWindow::default();
    let mut next = 0u64;
    g.bench_function("in_order", |b| {
        b.iter(|| {
            let ok = w.accept(black_box(next));
            next += 1;
            black_box(ok)
        })
    });

    let perm = shuffled_block();
    // Every counter of the shuffled sequence is new and within the window: check it once, untimed.
    let mut w = ReplayWindow::default();
    for base in 0..4 {
        for &p in &perm {
            assert!(w.accept(base * BLOCK + p), "a reordered counter was refused");
        }
    }
    let mut w = ReplayWindow::default();
    let (mut base, mut i) = (0u64, 0usize);
    g.bench_function("reordered", |b| {
        b.iter(|| {
            let ok = w.accept(black_box(base + perm[i]));
            i += 1;
            if i == perm.len() {
                i = 0;
                base += BLOCK;
            }
            black_box(ok)
        })
    });

    let mut w = ReplayWindow::default();
    for c in 0..SEEN {
        assert!(w.accept(c));
    }
    let mut dup = 0u64;
    g.bench_function("check_duplicate", |b| {
        b.iter(|| {
            dup = (dup + 1) % SEEN;
            black_box(w.check(black_box(dup)))
        })
    });
    assert!(!w.check(0) && !w.check(SEEN - 1), "the duplicates must be refused");
    g.bench_function("accept_duplicate", |b| {
        b.iter(|| {
            dup = (dup + 1) % SEEN;
            black_box(w.accept(black_box(dup)))
        })
    });
    assert_eq!(w.greatest(), Some(SEEN - 1), "a duplicate moved the window");
    g.finish();
}

// `criterion_group!` defines an undocumented `pub fn`; keep it in a module of its own.
#[allow(missing_docs, unreachable_pub)]
mod group {
    criterion::criterion_group!(benches, super::replay);
}
criterion_main!(group::benches);
