//! The packet engine's steady state allocates nothing per packet: with two engines warmed up
//! (handshake done, buffers, queues and vectors at their working size), a window of tens of
//! thousands of packets through them costs at most a few incidental allocations.
//!
//! A counting global allocator sees every allocation of the process, the engines' threads
//! included. The in-memory TUN and UDP twins recycle their buffers (the test hands the TUN's
//! back with `MemoryTun::recycle` and injects into `MemoryTun::buffer`s), so what is counted is
//! the engine's own behaviour. This file is its own test binary (its own process), so the
//! allocator affects no other test; it holds a single `#[test]`, so no other test's
//! allocations run during the window.

// A global allocator needs an `unsafe impl GlobalAlloc`, which the workspace's `unsafe_code =
// "deny"` forbids; it only forwards to `System` and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use vpn_dataplane::memory::MemoryNetwork;
use vpn_dataplane::EngineOptions;
use vpn_tests::{deliver, ipv4, ipv4_into, Node};

/// Counts allocations (fresh or grown: `alloc`, `alloc_zeroed`, `realloc`) and leaves the work
/// to [`System`].
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches only an atomic, never the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees for `layout` are those `System.alloc` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by this allocator, that is by `System`, with `layout`
        // (the caller's promise), and `new_size` meets `realloc`'s requirements.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::SeqCst)
}

const T: Duration = Duration::from_secs(10);

/// Packets A→B in the measured window.
const N: u32 = 20_000;
/// Packets injected before they are all taken from the other side.
const BURST: u32 = 64;
/// Every this many A→B bursts, one B→A burst follows.
const REVERSE_EVERY: u32 = 4;
/// Packets each way before the window, so that every buffer, queue and vector has its working
/// capacity (the twins' free lists included).
const WARMUP: u32 = 4_000;

/// Allowed allocations in the window. The packet path must allocate nothing; what is allowed is
/// incidental work of the other threads (the timer thread wakes every 20 ms, the handshake
/// thread every 200 ms) and of the test harness, a few dozen at most in a window that lasts
/// seconds. One allocation per packet would be over 20,000; one per burst (64 packets) over 300;
/// one per receive batch (at most 8 datagrams) over 2,500: any of them fails this clearly.
const BOUND: u64 = N as u64 / 100;

/// Packet sizes vary from 60 to 1400 bytes, so batches mix lengths (and GSO groups).
fn size(id: u32) -> usize {
    60 + (id as usize * 37) % 1341
}

/// Writes packet `id` from `src` to `dst` into `p`: an IPv4 header and a payload made from `id`.
fn fill(p: &mut Vec<u8>, src: IpAddr, dst: IpAddr, id: u32) {
    ipv4_into(p, src, dst, id, size(id));
    for (i, b) in p[28..].iter_mut().enumerate() {
        *b = (id as usize).wrapping_add(i) as u8;
    }
}

/// Injects packets `ids` into `from`'s TUN, then takes them all from `to`'s, checking each is
/// whole and in order, and recycles every buffer. `expected` is scratch space.
fn burst(from: &Node, to: &Node, ids: std::ops::Range<u32>, expected: &mut Vec<u8>) {
    for id in ids.clone() {
        let mut p = from.tun.buffer();
        fill(&mut p, from.tunnel_ip, to.tunnel_ip, id);
        from.tun.inject(p);
    }
    for id in ids {
        let Some(got) = to.receive(T) else { panic!("packet {id} never arrived") };
        fill(expected, from.tunnel_ip, to.tunnel_ip, id);
        if got != *expected {
            let got_id = got.get(24..28).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            panic!("packet {id}: got {} bytes (id {got_id:?}), expected {} bytes", got.len(), expected.len());
        }
        to.tun.recycle(got);
    }
}

/// Runs A→B bursts of `count` packets from id `first`, with a B→A burst every
/// [`REVERSE_EVERY`]; returns the packets sent B→A.
fn traffic(a: &Node, b: &Node, first: u32, count: u32, expected: &mut Vec<u8>) -> u32 {
    let mut reverse = 0;
    for (k, start) in (first..first + count).step_by(BURST as usize).enumerate() {
        burst(a, b, start..(start + BURST).min(first + count), expected);
        if k as u32 % REVERSE_EVERY == 0 {
            burst(b, a, start..start + BURST, expected);
            reverse += BURST;
        }
    }
    reverse
}

/// Allocations during a measured window of [`N`] packets A→B (and some B→A) through two warmed
/// up engines with `crypto_threads` pool threads.
fn measure(crypto_threads: usize) -> u64 {
    let net = MemoryNetwork::new();
    let options = EngineOptions { crypto_threads: Some(crypto_threads) };
    let a = Node::start_with(&net, "192.0.2.1", 1, "10.9.0.1", options);
    let b = Node::start_with(&net, "192.0.2.2", 2, "10.9.0.2", options);
    a.peer_with(&b, true);
    b.peer_with(&a, false);
    assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 0, 100), T), "handshake");
    assert!(deliver(&b, &a, &ipv4(b.tunnel_ip, a.tunnel_ip, 0, 100), T), "B answers");
    // `deliver` may have resent: drop the copies still on their way.
    std::thread::sleep(Duration::from_millis(300));
    while a.receive(Duration::from_millis(100)).is_some() || b.receive(Duration::from_millis(100)).is_some() {}

    let mut expected = Vec::with_capacity(2048);
    traffic(&a, &b, 1, WARMUP, &mut expected);
    traffic(&b, &a, 1, WARMUP, &mut expected);

    let before = allocations();
    let reverse = traffic(&a, &b, WARMUP + 1, N, &mut expected);
    let during = allocations() - before;

    println!("crypto_threads={crypto_threads}: {during} allocations for {N} packets A→B and {reverse} B→A (bound {BOUND})");
    assert!(a.engine.is_running() && b.engine.is_running());
    during
}

#[test]
fn steady_state_allocates_nothing_per_packet() {
    // Crypto on the readers, then on a pool of two threads (chunks of a batch handed over).
    for crypto_threads in [0, 2] {
        let during = measure(crypto_threads);
        assert!(
            during < BOUND,
            "{during} allocations for {N} packets with {crypto_threads} crypto threads (bound {BOUND}): \
             something on the packet path allocates per packet or per batch"
        );
    }
}
