//! The whole engine pipeline over in-memory devices: packets injected into one engine's TUN
//! twin travel through its TUN reader (route, seal), the in-memory UDP network, the other engine's
//! UDP reader (open, source check) and out of its TUN twin. Reported as packets per second for the
//! whole process (both engines share this machine's cores; divide by the core count for a
//! per-core figure). No kernel is involved, so this is the engine's own cost: the twins' buffers
//! are recycled (packets are written into [`MemoryTun::buffer`]s, and what comes out goes back
//! with [`MemoryTun::recycle`]), so in steady state nothing is allocated per packet here either.
//!
//! [`MemoryTun::buffer`]: vpn_dataplane::memory::MemoryTun::buffer
//! [`MemoryTun::recycle`]: vpn_dataplane::memory::MemoryTun::recycle

use std::time::{Duration, Instant};

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use vpn_dataplane::memory::MemoryNetwork;
use vpn_tests::{deliver, ipv4, Node};

/// Packets per measured batch.
const BATCH: u64 = 2_000;

mod benches {
    #![allow(missing_docs, unreachable_pub)]
    use super::*;

    pub fn pipeline(c: &mut Criterion) {
        let net = MemoryNetwork::new();
        let a = Node::start(&net, "192.0.2.1", 1, "10.9.0.1");
        let b = Node::start(&net, "192.0.2.2", 2, "10.9.0.2");
        a.peer_with(&b, true);
        b.peer_with(&a, false);
        assert!(deliver(&a, &b, &ipv4(a.tunnel_ip, b.tunnel_ip, 0, 100), Duration::from_secs(10)), "handshake");
        let mut g = c.benchmark_group("pipeline");
        g.sample_size(10).throughput(Throughput::Elements(BATCH));
        for size in [64usize, 1420] {
            let packet = ipv4(a.tunnel_ip, b.tunnel_ip, 1, size);
            g.bench_with_input(BenchmarkId::new("a_to_b", size), &packet, |bench, packet| {
                bench.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        // Keep the in-flight count below the twins' queue sizes: send in chunks
                        // and wait for each chunk, so nothing is dropped and the count is exact.
                        let mut sent = 0;
                        while sent < BATCH {
                            let chunk = 256.min(BATCH - sent);
                            for _ in 0..chunk {
                                let mut p = a.tun.buffer();
                                p.extend_from_slice(packet);
                                a.tun.inject(p);
                            }
                            for _ in 0..chunk {
                                let got = b.receive(Duration::from_secs(10)).expect("packet lost in the pipeline");
                                b.tun.recycle(got);
                            }
                            sent += chunk;
                        }
                    }
                    start.elapsed()
                })
            });
        }
        g.finish();
    }
}

// `criterion_group!` defines an undocumented `pub fn`; keep it in a module of its own.
#[allow(missing_docs, unreachable_pub)]
mod group {
    criterion::criterion_group!(pipeline, super::benches::pipeline);
}
criterion_main!(group::pipeline);
