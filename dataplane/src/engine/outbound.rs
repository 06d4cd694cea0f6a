//! TUN → UDP, a batch at a time: read a batch (a segmentation-offload super-packet arrives as
//! many MTU-sized packets), route each by destination in the allowed-IPs snapshot, and for each
//! run of packets to one peer reserve consecutive counters, seal in place (in parallel on the
//! crypto pool when the run is long) and send in counter order, equal-sized neighbours in one
//! UDP GSO call. The device lock is taken once per run to account for it. Packets for a peer
//! without a usable session go through `Device::send`, which stages them and starts a handshake.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use vpn_tunnel::wire::DATA_OVERHEAD;
use vpn_tunnel::{inner, PeerId, Session};

use super::{lock, Shared, StopReason, Table, POLL};
use crate::io::{TUN_HEADROOM, TUN_READ_SEGMENTS};

/// Largest UDP payload one GSO send may carry in all (IPv4's limit, the smaller one).
const GSO_MAX_BYTES: usize = 65_507;

/// Packets per batch: two super-packets' worth.
pub(super) const BATCH: usize = 2 * TUN_READ_SEGMENTS;

/// One batch being sent: the packet buffers (views into one allocation), their lengths and,
/// once sealed, the lengths of the messages.
pub(super) struct OutBatch<'a> {
    bufs: [&'a mut [u8]; BATCH],
    sizes: [usize; BATCH],
    /// Length of each sealed message (0: not sealed).
    sealed: [usize; BATCH],
}

impl<'a> OutBatch<'a> {
    /// Views `storage` (see [`buffer_size`]) as a batch.
    pub(super) fn new(storage: &'a mut [u8], mtu: usize) -> Self {
        let mut slots = storage.chunks_exact_mut(buffer_size(mtu));
        let bufs = std::array::from_fn(|_| slots.next().unwrap_or_default());
        Self { bufs, sizes: [0; BATCH], sealed: [0; BATCH] }
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
    for (i, peer) in peers.iter_mut().enumerate().take(n) {
        // A packet longer than its buffer was cut short by the read (the interface's MTU was
        // raised since the buffers were sized; the next batch has larger ones): drop it.
        let Some(packet) = batch.bufs[i].get(TUN_HEADROOM..TUN_HEADROOM + batch.sizes[i]) else {
            tracing::debug!(len = batch.sizes[i], "dropped a TUN packet longer than the buffers (MTU raised)");
            continue;
        };
        *peer = route(&table, packet, &mut cache);
    }
    drop(table);
    let mut i = 0;
    while i < n {
        // No peer has this destination among its allowed IPs: drop it, like the kernel.
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
            let (sent, bytes) = transmit(sh, batch, run.start..sealed_end, destination);
            let mut device = lock(&sh.device);
            // Like the kernel: the timers count the attempt, the transfer counter only what left.
            device.note_sent(now, peer, sealed_end - run.start, sent, bytes);
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
    let mtu = sh.tun.mtu();
    let bufs = &mut batch.bufs[range.clone()];
    let sizes = &batch.sizes[range.clone()];
    let sealed = &mut batch.sealed[range];
    sh.crypto.for_each_mut(bufs, sealed, |k, buf, out| {
        let counter = first + k as u64;
        *out = session.seal_at(counter, buf, sizes[k], mtu).unwrap_or(0);
    });
}

/// Sends the sealed packets of `range` in order; returns how many left and their bytes.
fn transmit(sh: &Shared, batch: &OutBatch<'_>, range: Range<usize>, destination: SocketAddr) -> (usize, u64) {
    let sockets = sh.sockets.load();
    let Some(socket) = sockets.list.iter().find(|s| s.serves(&destination)) else { return (0, 0) };
    let max_segments = socket.max_segments().clamp(1, 64);
    let mut slices = [IoSlice::new(&[]); 64];
    let (mut sent, mut bytes) = (0, 0u64);
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
            // A message larger than one UDP datagram (an MTU above 65,475): skip it.
            k += 1;
            continue;
        }
        match socket.send_segments(&slices[..count], destination) {
            Ok(n) => {
                sent += n;
                bytes += slices[..n.min(count)].iter().map(|s| s.len() as u64).sum::<u64>();
            }
            Err(e) => tracing::debug!(%destination, error = %e, "send failed"),
        }
    }
    (sent, bytes)
}
