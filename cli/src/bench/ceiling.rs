//! The crypto ceiling: what this machine's cores could move through the tunnel if they did nothing
//! but the AEAD.
//!
//! In the two-namespace testbed every inner byte is sealed once (by the sending daemon) and opened
//! once (by the receiving daemon), and both ends share all the machine's cores, so with `seal` and
//! `open` the single-core rates of ChaCha20-Poly1305 on 1420-byte packets (the tunnel MTU of the
//! bench), in bytes of inner packet per second,
//!
//! ```text
//! ceiling (bytes/s) = cores / (1/seal + 1/open)
//! ```
//!
//! Each byte costs `1/seal + 1/open` core-seconds, and `cores` core-seconds are available per
//! second. The report gives vpn's one-stream TCP throughput as a share of it (issue #4 asks for at
//! least 40 %).
//!
//! The rates are measured with the data path's own AEAD ([`AeadKey`], ring) on the calling thread,
//! once per round, before that round's implementations run. Measuring them in the same run, rather
//! than taking them from a separate criterion run, matters on a shared machine: the same criterion
//! benchmark moves by 30 % between runs there, so a ceiling from another time says little about the
//! throughput measured now. A sample per round also shows how much the ceiling itself moved.
//!
//! Each pass goes over a batch of [`BATCH`] buffers of [`PACKET_BYTES`] bytes (about 90 KiB, more
//! than an L1 data cache, as on the data path, where packets are not hot in L1), each seal with a
//! fresh counter. Opening needs valid ciphertexts, so the batch is re-sealed, untimed, before each
//! timed open pass. The whole measurement takes well under a second.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vpn_crypto::aead::{AeadKey, TAG_LEN};

/// The inner packet size sealed and opened: the tunnel MTU of the bench.
pub(crate) const PACKET_BYTES: usize = 1420;

/// Buffers per pass.
const BATCH: usize = 64;

/// Timed seal time per measurement.
const SEAL_TIME: Duration = Duration::from_millis(250);

/// Timed open time per measurement (its wall time is about twice that, with the re-sealing).
const OPEN_TIME: Duration = Duration::from_millis(250);

/// Untimed warm-up, of each of seal and open, before the timed passes.
const WARM_UP: Duration = Duration::from_millis(30);

/// One measurement of the ceiling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Ceiling {
    /// Single-core seal rate, bytes of inner packet per second.
    pub(crate) seal_bytes_per_s: f64,
    /// Single-core open rate, bytes of inner packet per second.
    pub(crate) open_bytes_per_s: f64,
    /// The ceiling for all the cores, in Gbit/s of inner packets.
    pub(crate) gbps: f64,
}

/// `cores / (1/seal + 1/open)` bytes per second, in Gbit/s; rates in bytes per second per core.
pub(crate) fn ceiling_gbps(cores: usize, seal_bytes_per_s: f64, open_bytes_per_s: f64) -> f64 {
    cores as f64 / (1.0 / seal_bytes_per_s + 1.0 / open_bytes_per_s) * 8.0 / 1e9
}

/// Measures the single-core seal and open rates on the calling thread (in about 0.8 s) and the
/// ceiling for `cores` cores.
pub(crate) fn measure(cores: usize) -> Ceiling {
    measure_for(cores, WARM_UP, SEAL_TIME, OPEN_TIME)
}

fn measure_for(cores: usize, warm_up: Duration, seal_time: Duration, open_time: Duration) -> Ceiling {
    // Any key does: the rate does not depend on it.
    let key = AeadKey::new(&[0x42; 32]);
    let mut bufs = vec![vec![0x5au8; PACKET_BYTES + TAG_LEN]; BATCH];
    let mut counter = 0u64;
    seal_rate(&key, &mut bufs, &mut counter, warm_up);
    let seal_bytes_per_s = seal_rate(&key, &mut bufs, &mut counter, seal_time);
    open_rate(&key, &mut bufs, &mut counter, warm_up);
    let open_bytes_per_s = open_rate(&key, &mut bufs, &mut counter, open_time);
    Ceiling { seal_bytes_per_s, open_bytes_per_s, gbps: ceiling_gbps(cores, seal_bytes_per_s, open_bytes_per_s) }
}

/// Seals the first [`PACKET_BYTES`] of every buffer, each with a fresh counter, and stores the tag
/// after it: the buffers then hold valid packets for the last `bufs.len()` counters, in order.
fn seal_batch(key: &AeadKey, bufs: &mut [Vec<u8>], counter: &mut u64) {
    for buf in bufs {
        *counter += 1;
        let (body, tag) = buf.split_at_mut(PACKET_BYTES);
        tag.copy_from_slice(&key.seal_in_place(*counter, &[], black_box(body)));
    }
}

/// Seals whole batches for at least `time`; bytes sealed per second.
fn seal_rate(key: &AeadKey, bufs: &mut [Vec<u8>], counter: &mut u64, time: Duration) -> f64 {
    let start = Instant::now();
    let mut packets = 0u64;
    loop {
        seal_batch(key, bufs, counter);
        black_box(&mut *bufs);
        packets += bufs.len() as u64;
        let elapsed = start.elapsed();
        if elapsed >= time {
            return (packets * PACKET_BYTES as u64) as f64 / elapsed.as_secs_f64();
        }
    }
}

/// Opens whole freshly sealed batches until the opening alone has taken at least `time`; bytes
/// opened per second of opening.
fn open_rate(key: &AeadKey, bufs: &mut [Vec<u8>], counter: &mut u64, time: Duration) -> f64 {
    let mut opening = Duration::ZERO;
    let mut packets = 0u64;
    loop {
        // Untimed: valid ciphertexts, the last `bufs.len()` counters, in order.
        seal_batch(key, bufs, counter);
        let first = *counter + 1 - bufs.len() as u64;
        let start = Instant::now();
        for (n, buf) in (first..).zip(bufs.iter_mut()) {
            let plain = key.open_in_place(n, &[], black_box(buf)).expect("a freshly sealed packet opens");
            black_box(plain);
        }
        opening += start.elapsed();
        packets += bufs.len() as u64;
        if opening >= time {
            return (packets * PACKET_BYTES as u64) as f64 / opening.as_secs_f64();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_formula() {
        // 1 GB/s each way on one core: each byte costs 2 ns, so 0.5 GB/s = 4 Gbit/s.
        assert!((ceiling_gbps(1, 1e9, 1e9) - 4.0).abs() < 1e-9);
        // It scales with the cores.
        assert!((ceiling_gbps(16, 1e9, 1e9) - 64.0).abs() < 1e-9);
        // 1 GB/s sealing and 3 GB/s opening: 1/(1e-9 + 1/3e-9) = 0.75 GB/s = 6 Gbit/s per core.
        assert!((ceiling_gbps(2, 1e9, 3e9) - 12.0).abs() < 1e-9);
    }

    #[test]
    fn a_short_measurement_gives_positive_finite_rates() {
        let ms = Duration::from_millis;
        let c = measure_for(4, ms(1), ms(10), ms(10));
        for v in [c.seal_bytes_per_s, c.open_bytes_per_s, c.gbps] {
            assert!(v.is_finite() && v > 0.0, "{c:?}");
        }
        assert_eq!(c.gbps, ceiling_gbps(4, c.seal_bytes_per_s, c.open_bytes_per_s));
    }
}
