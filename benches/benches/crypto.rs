//! Data-path cryptography.
//!
//! Groups `seal` and `open`, one inner packet size after the other, each size measured as:
//!
//! - `session`: `vpn_tunnel::Session`, the real data path (header, padding, tag; on open also the
//!   replay pre-check and update). Every open gets a fresh data message with a new, increasing
//!   counter, sealed outside the timed loop, so each one decrypts and passes the replay window.
//! - `ring`: `vpn_crypto::aead::AeadKey` alone (ring's assembly).
//! - `rustcrypto`: RustCrypto's `chacha20poly1305`, the reference. It runs right after `ring` at
//!   the same size so that the ratio of the two is taken under the same machine load.
//!
//! Plus `blake2s_mac`: keyed BLAKE2s-128 over 148 bytes, the size of an initiation.
//!
//! Throughput is the inner packet's length (the plaintext), not the size on the wire.

use std::hint::black_box;
use std::time::Instant;

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use criterion::{criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use vpn_benches::{data_buffer, mtu_for, session_pair, time_in_batches, OPEN_BATCH, PAYLOAD_SIZES};
use vpn_crypto::aead::{AeadKey, TAG_LEN};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

const KEY: [u8; 32] = [7; 32];

fn rc_nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n.into()
}

fn session_seal(g: &mut Group<'_>, len: usize) {
    let now = Instant::now();
    let (tx, _rx) = session_pair(1, now);
    let mtu = mtu_for(len);
    let mut buf = data_buffer(len);
    g.bench_function(BenchmarkId::new("session", len), |b| {
        // Re-sealing the previous ciphertext costs the same as sealing a fresh packet.
        b.iter(|| black_box(tx.seal(now, black_box(&mut buf), len, mtu).expect("seal")))
    });
}

fn session_open(g: &mut Group<'_>, len: usize) {
    let now = Instant::now();
    let (tx, rx) = session_pair(2, now);
    let mtu = mtu_for(len);
    let pristine = data_buffer(len);
    let mut bufs = vec![pristine.clone(); OPEN_BATCH];
    g.bench_function(BenchmarkId::new("session", len), |b| {
        b.iter_custom(|iters| {
            time_in_batches(
                iters,
                &mut bufs,
                |batch| {
                    for buf in batch {
                        buf.copy_from_slice(&pristine);
                        tx.seal(now, buf, len, mtu).expect("seal");
                    }
                },
                |buf| {
                    black_box(rx.open(now, black_box(buf)).expect("open"));
                },
            )
        })
    });
}

fn ring_seal(g: &mut Group<'_>, len: usize) {
    let key = AeadKey::new(&KEY);
    let mut buf = vec![0x5a; len];
    let mut counter = 0u64;
    g.bench_function(BenchmarkId::new("ring", len), |b| {
        b.iter(|| {
            counter += 1;
            black_box(key.seal_in_place(counter, &[], black_box(&mut buf)))
        })
    });
}

fn ring_open(g: &mut Group<'_>, len: usize) {
    let key = AeadKey::new(&KEY);
    let mut bufs = vec![(0u64, vec![0u8; len + TAG_LEN]); OPEN_BATCH];
    let mut counter = 0u64;
    g.bench_function(BenchmarkId::new("ring", len), |b| {
        b.iter_custom(|iters| {
            time_in_batches(
                iters,
                &mut bufs,
                |batch| {
                    for (n, buf) in batch {
                        counter += 1;
                        *n = counter;
                        buf[..len].fill(0x5a);
                        let tag = key.seal_in_place(counter, &[], &mut buf[..len]);
                        buf[len..].copy_from_slice(&tag);
                    }
                },
                |(n, buf)| {
                    black_box(key.open_in_place(*n, &[], black_box(buf)).expect("open"));
                },
            )
        })
    });
}

fn rustcrypto_seal(g: &mut Group<'_>, len: usize) {
    let key = ChaCha20Poly1305::new(&KEY.into());
    let mut buf = vec![0x5a; len];
    let mut counter = 0u64;
    g.bench_function(BenchmarkId::new("rustcrypto", len), |b| {
        b.iter(|| {
            counter += 1;
            black_box(key.encrypt_in_place_detached(&rc_nonce(counter), &[], black_box(&mut buf)).expect("seal"))
        })
    });
}

fn rustcrypto_open(g: &mut Group<'_>, len: usize) {
    let key = ChaCha20Poly1305::new(&KEY.into());
    let mut bufs = vec![(0u64, Tag::default(), vec![0u8; len]); OPEN_BATCH];
    let mut counter = 0u64;
    g.bench_function(BenchmarkId::new("rustcrypto", len), |b| {
        b.iter_custom(|iters| {
            time_in_batches(
                iters,
                &mut bufs,
                |batch| {
                    for (n, tag, buf) in batch {
                        counter += 1;
                        *n = counter;
                        buf.fill(0x5a);
                        *tag = key.encrypt_in_place_detached(&rc_nonce(counter), &[], buf).expect("seal");
                    }
                },
                |(n, tag, buf)| {
                    key.decrypt_in_place_detached(&rc_nonce(*n), &[], black_box(buf), tag).expect("open");
                },
            )
        })
    });
}

fn seal(c: &mut Criterion) {
    let mut g = c.benchmark_group("seal");
    for len in PAYLOAD_SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        session_seal(&mut g, len);
        ring_seal(&mut g, len);
        rustcrypto_seal(&mut g, len);
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let mut g = c.benchmark_group("open");
    for len in PAYLOAD_SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        session_open(&mut g, len);
        ring_open(&mut g, len);
        rustcrypto_open(&mut g, len);
    }
    g.finish();
}

fn blake2s(c: &mut Criterion) {
    let mut g = c.benchmark_group("blake2s_mac");
    let msg = [0x42u8; 148];
    let key = [9u8; 32];
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function(BenchmarkId::from_parameter(msg.len()), |b| {
        b.iter(|| black_box(vpn_crypto::blake2s::mac(black_box(&key), &[black_box(&msg[..])])))
    });
    g.finish();
}

// `criterion_group!` defines an undocumented `pub fn`; keep it in a module of its own.
#[allow(missing_docs, unreachable_pub)]
mod group {
    criterion::criterion_group!(benches, super::seal, super::open, super::blake2s);
}
criterion_main!(group::benches);
