//! TUN → UDP, a batch at a time: read a batch (a segmentation-offload super-packet arrives as
//! many MTU-sized packets), route each by destination in the allowed-IPs snapshot, and for each
//! run of packets to one peer reserve consecutive counters, seal in place (in parallel on the
//! crypto pool when the run is long) and send in counter order, equal-sized neighbours in one
//! UDP GSO call. The device lock is taken once per run to account for it. Packets for a peer
//! without a usable session go through `Device::send`, which stages them and starts a handshake.
//! Packets no peer's allowed IPs contain are counted (`no_route`) and answered with an ICMP
//! destination unreachable written back to TUN (`icmp.rs`, rate-limited), as the kernel does.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use vpn_tunnel::wire::DATA_OVERHEAD;
use vpn_tunnel::{inner, DropReason, PeerId, Session};

use super::{lock, Shared, StopReason, Table, POLL};
use crate::icmp::{self, RateLimit};
use crate::io::{TUN_HEADROOM, TUN_READ_SEGMENTS};

/// Largest UDP payload one GSO send may carry in all (IPv4's limit, the smaller one).
const GSO_MAX_BYTES: usize = 65_507;

/// The largest inner packet the tunnel carries: sealed, it fills one IPv4 UDP datagram. Packets
/// from an interface with a larger MTU are dropped and counted as [`DropReason::TooLarge`].
pub(super) const MAX_INNER_MTU: usize = GSO_MAX_BYTES - DATA_OVERHEAD;

/// The MTU messages are padded within: the interface's, but never so large that padding alone
/// would push a packet the tunnel can carry past one UDP datagram.
pub(super) fn padding_mtu(mtu: usize) -> usize {
    mtu.min(MAX_INNER_MTU)
}

/// Says once per MTU change that the interface's MTU is above what the tunnel carries.
pub(super) fn warn_if_mtu_too_large(mtu: usize) {
    if mtu > MAX_INNER_MTU {
        tracing::warn!(
            mtu,
            max = MAX_INNER_MTU,
            "the interface's MTU is above the largest packet one UDP datagram carries; larger packets are dropped (counted as too_large): lower it with `ip link set dev <interface> mtu {MAX_INNER_MTU}`"
        );
    }
}

/// Packets per batch: two super-packets' worth.
pub(super) const BATCH: usize = 2 * TUN_READ_SEGMENTS;

/// One batch being sent: the packet buffers (views into one allocation), their lengths and,
/// once sealed, the lengths of the messages.
pub(super) struct OutBatch<'a> {
    bufs: [&'a mut [u8]; BATCH],
    sizes: [usize; BATCH],
    /// Length of each sealed message (0: not sealed).
    sealed: [usize; BATCH],
    /// For the ICMP answers to packets no peer takes: their rate limit, and a buffer reused for
    /// each.
    unreachable: (RateLimit, Vec<u8>),
}

impl<'a> OutBatch<'a> {
    /// Views `storage` (see [`buffer_size`]) as a batch.
    pub(super) fn new(storage: &'a mut [u8], mtu: usize) -> Self {
        let mut slots = storage.chunks_exact_mut(buffer_size(mtu));
        let bufs = std::array::from_fn(|_| slots.next().unwrap_or_default());
        Self { bufs, sizes: [0; BATCH], sealed: [0; BATCH], unreachable: (RateLimit::default(), Vec::new()) }
    }
}

/// Bytes per packet buffer for inner packets of up to `mtu` bytes: headroom for the data
/// header, tailroom for padding and the tag, so sealing happens in place. The padding is to the
/// next multiple of 16 at most, whatever MTU it is capped with (the MTU may have grown since).
pub(super) fn buffer_size(mtu: usize) -> usize {
    DATA_OVERHEAD + mtu.next_multiple_of(16)
}

/// Reads the TUN device until shutdown or until the interface disappears. The buffers are sized
/// for the MTU, and sized again when it grows on the running interface (`ip link set mtu`, jumbo
/// frames): the packets read before the device noticed the new MTU are dropped, as a NIC whose
/// MTU changes under traffic would.
pub(super) fn tun_reader(sh: Arc<Shared>) {
    let mut mtu = sh.tun.mtu();
    while sh.running() {
        // One allocation, large enough that its pages are only mapped as they are written.
        let mut storage = vec![0u8; BATCH * buffer_size(mtu)];
        let mut batch = OutBatch::new(&mut storage, mtu);
        mtu = read_batches(&sh, &mut batch, mtu);
    }
}

/// Reads and sends batches until shutdown, or until the device's MTU exceeds `sized_for`, the
/// MTU `batch`'s buffers hold; returns the MTU to size them for next.
fn read_batches(sh: &Shared, batch: &mut OutBatch<'_>, sized_for: usize) -> usize {
    while sh.running() {
        let mtu = sh.tun.mtu();
        if mtu > sized_for {
            tracing::debug!(from = sized_for, to = mtu, "TUN read buffers resized for a larger MTU");
            return mtu;
        }
        let n = match sh.tun.recv_batch(&mut batch.bufs, &mut batch.sizes, TUN_HEADROOM, POLL) {
            Ok(n) => n,
            Err(e) => {
                sh.stop(StopReason::TunGone(e.to_string()));
                break;
            }
        };
        if n > 0 {
            send_batch(sh, batch, n);
        }
    }
    sized_for
}

/// Answers each packet of the batch that has no peer (and was read whole) with an ICMP
/// destination unreachable written to TUN, as far as [`icmp::Unreachable::of`] and the rate limit
/// allow: one write each, at most [`RateLimit::PER_SECOND`] a second.
fn answer_unreachable(sh: &Shared, batch: &mut OutBatch<'_>, peers: &[Option<PeerId>], now: Instant) {
    let (limit, answer) = &mut batch.unreachable;
    for (i, _) in peers.iter().enumerate().filter(|(_, p)| p.is_none()) {
        let Some(packet) = batch.bufs[i].get(TUN_HEADROOM..TUN_HEADROOM + batch.sizes[i]) else { continue };
        let Some(unreachable) = icmp::Unreachable::of(packet) else { continue };
        if limit.allow(now) {
            unreachable.write_to(answer);
            if let Err(e) = sh.tun.send_batch(&mut [&mut answer[..]]) {
                tracing::debug!(error = %e, "could not write an ICMP destination unreachable to TUN");
            }
        }
    }
}

/// The peer a packet goes to, with a one-entry cache (a batch is mostly one flow).
fn route(table: &Table, packet: &[u8], cache: &mut Option<(IpAddr, Option<PeerId>)>) -> Option<PeerId> {
    let destination = inner::parse(packet).ok()?.destination;
    match *cache {
        Some((ip, peer)) if ip == destination => peer,
        _ => {
            let peer = table.routes.lookup(destination);
            *cache = Some((destination, peer));
            peer
        }
    }
}

/// Routes and sends the first `n` packets of `batch`.
pub(super) fn send_batch(sh: &Shared, batch: &mut OutBatch<'_>, n: usize) {
    let table = sh.table.load();
    let now = Instant::now();
    let mut cache = None;
    let mut peers = [None; BATCH];
    let (mut too_long, mut no_route) = (0, 0);
    for (i, peer) in peers.iter_mut().enumerate().take(n) {
        // A packet longer than its buffer was cut short by the read (the interface's MTU was
        // raised since the buffers were sized; the next batch has larger ones): drop it.
        let Some(packet) = batch.bufs[i].get(TUN_HEADROOM..TUN_HEADROOM + batch.sizes[i]) else {
            tracing::debug!(len = batch.sizes[i], "dropped a TUN packet longer than the buffers (MTU raised)");
            too_long += 1;
            continue;
        };
        *peer = route(&table, packet, &mut cache);
        // No peer has this destination among its allowed IPs: dropped, and answered below.
        no_route += u64::from(peer.is_none());
    }
    drop(table);
    if too_long + no_route > 0 {
        let mut device = lock(&sh.device);
        device.count_drops(DropReason::TooLarge, too_long);
        device.count_drops(DropReason::NoRoute, no_route);
    }
    if no_route > 0 {
        answer_unreachable(sh, batch, &peers[..n], now);
    }
    let mut i = 0;
    while i < n {
        let Some(peer) = peers[i] else {
            i += 1;
            continue;
        };
        let end = (i + 1..n).find(|&j| peers[j] != Some(peer)).unwrap_or(n);
        send_run(sh, batch, i..end, peer, now);
        i = end;
    }
}

/// Seals and sends packets `run`, all to `peer`.
fn send_run(sh: &Shared, batch: &mut OutBatch<'_>, run: Range<usize>, peer: PeerId, now: Instant) {
    let fast = sh.sending.get(&peer).map(|e| e.value().clone()).filter(|(s, _)| s.can_send(now));
    let mut staged_from = run.start;
    if let Some((session, destination)) = fast {
        if let Ok(counters) = session.reserve(now, run.len() as u64) {
            let sealed_end = run.start + (counters.end - counters.start) as usize;
            seal(sh, &session, batch, run.start..sealed_end, counters.start);
            let t = transmit(sh, batch, run.start..sealed_end, destination);
            let mut device = lock(&sh.device);
            // Like the kernel: the timers count the attempt, the transfer counter only what left.
            device.note_sent(now, peer, sealed_end - run.start, t.sent, t.bytes);
            device.count_drops(DropReason::TooLarge, t.too_large);
            device.count_drops(DropReason::SendFailed, t.failed);
            let transmits = sh.sync(&mut device);
            drop(device);
            sh.send_all(transmits);
            staged_from = sealed_end;
        }
    }
    if staged_from < run.end {
        let mut device = lock(&sh.device);
        for k in staged_from..run.end {
            let _ = device.send(now, peer, &batch.bufs[k][TUN_HEADROOM..TUN_HEADROOM + batch.sizes[k]]);
        }
        let transmits = sh.sync(&mut device);
        drop(device);
        sh.send_all(transmits);
    }
}

/// Seals packets `range` in place with counters `first..`, on the crypto pool when it pays.
fn seal(sh: &Shared, session: &Session, batch: &mut OutBatch<'_>, range: Range<usize>, first: u64) {
    let mtu = padding_mtu(sh.tun.mtu());
    let bufs = &mut batch.bufs[range.clone()];
    let sizes = &batch.sizes[range.clone()];
    let sealed = &mut batch.sealed[range];
    sh.crypto.for_each_mut(bufs, sealed, |k, buf, out| {
        let counter = first + k as u64;
        *out = session.seal_at(counter, buf, sizes[k], mtu).unwrap_or(0);
    });
}

/// What became of the sealed messages of one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Transmitted {
    /// Messages that left, and their bytes.
    sent: usize,
    bytes: u64,
    /// Messages larger than one UDP datagram, not sent.
    too_large: u64,
    /// Messages the socket refused (or no socket of the destination's family).
    failed: u64,
}

/// Sends the sealed packets of `range` in order.
fn transmit(sh: &Shared, batch: &OutBatch<'_>, range: Range<usize>, destination: SocketAddr) -> Transmitted {
    let mut t = Transmitted::default();
    let sockets = sh.sockets.load();
    let Some(socket) = sockets.list.iter().find(|s| s.serves(&destination)) else {
        t.failed = batch.sealed[range].iter().filter(|&&len| len > 0).count() as u64;
        return t;
    };
    let max_segments = socket.max_segments().clamp(1, 64);
    let mut slices = [IoSlice::new(&[]); 64];
    let mut k = range.start;
    while k < range.end {
        if batch.sealed[k] == 0 {
            k += 1;
            continue;
        }
        // A group: equal-sized messages, the last of which may be shorter; within GSO's limits.
        let stride = batch.sealed[k];
        let (mut count, mut total) = (0, 0);
        while k < range.end && count < max_segments && total + batch.sealed[k] <= GSO_MAX_BYTES {
            let len = batch.sealed[k];
            if len == 0 || len > stride {
                break;
            }
            slices[count] = IoSlice::new(&batch.bufs[k][..len]);
            count += 1;
            total += len;
            k += 1;
            if len < stride {
                break;
            }
        }
        if count == 0 {
            // A message larger than one UDP datagram (an MTU above MAX_INNER_MTU): skip it.
            t.too_large += 1;
            k += 1;
            continue;
        }
        match socket.send_segments(&slices[..count], destination) {
            Ok(n) => {
                let n = n.min(count);
                t.sent += n;
                t.bytes += slices[..n].iter().map(|s| s.len() as u64).sum::<u64>();
                t.failed += (count - n) as u64;
            }
            Err(e) => {
                tracing::debug!(%destination, error = %e, "send failed");
                t.failed += count as u64;
            }
        }
    }
    t
}
