//! Handshakes between two `vpn_tunnel::Device`s in memory, through the public driving API
//! (`initiate_handshake`, `handle_datagram`, `poll_transmit`).
//!
//! - `handshake/full`: initiation, response and the initiator's first keepalive, consumed by the
//!   responder (key confirmation): everything both sides compute for one handshake.
//! - `handshake/responder`: consuming an initiation and producing the response, which bounds how
//!   many handshakes per second one core can answer. The initiations are made untimed.
//! - `handshake/mac1_reject`: an initiation whose mac1 is wrong is dropped; the cost of junk.
//!
//! The devices run on a virtual clock advanced by a few seconds per handshake, so neither the
//! initiator's one-initiation-per-REKEY_TIMEOUT rule nor the responder's flood and timestamp
//! checks refuse anything.

use std::hint::black_box;

use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use vpn_benches::{allow_all, DevicePair};
use vpn_tunnel::wire::field;
use vpn_tunnel::DropReason;

fn handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));

    let mut pair = DevicePair::new(11);
    g.bench_function("full", |b| b.iter(|| pair.handshake()));

    let mut pair = DevicePair::new(12);
    // Both closures need the pair: the setup as initiator, the routine as responder.
    let pair = std::cell::RefCell::new(&mut pair);
    g.bench_function("responder", |b| {
        b.iter_batched(
            || pair.borrow_mut().next_initiation(),
            |(now, mut initiation)| black_box(pair.borrow_mut().respond(now, &mut initiation)),
            BatchSize::SmallInput,
        )
    });

    let mut pair = DevicePair::new(13);
    let (now, mut junk) = pair.next_initiation();
    junk[field::initiation::MAC1.start] ^= 1;
    let src = pair.initiator_addr;
    let r = pair.responder.handle_datagram(now, src, &mut junk, &allow_all);
    assert_eq!(r, Err(DropReason::InvalidMac1), "the corrupted initiation must fail mac1");
    g.bench_function("mac1_reject", |b| b.iter(|| black_box(pair.responder.handle_datagram(now, src, black_box(&mut junk), &allow_all))));
    g.finish();
}

// `criterion_group!` defines an undocumented `pub fn`; keep it in a module of its own.
#[allow(missing_docs, unreachable_pub)]
mod group {
    criterion::criterion_group!(benches, super::handshake);
}
criterion_main!(group::benches);
