//! UDP → TUN, a batch at a time: one receive brings several datagram runs (with UDP GRO, dozens
//! of datagrams per buffer). Each data message is opened in place in the receive buffer (in
//! parallel on the crypto pool when the batch is long), its inner source checked against the
//! allowed-IPs snapshot; then the device lock is taken once to account for the batch, and the
//! inner packets are written to TUN from where they were decrypted, in arrival order, coalesced
//! by GRO: no copy and no allocation per packet. Handshake messages with a valid mac1, and
//! cookie replies of the exact length, are queued for the handshake thread (`queues.rs`); a full
//! queue drops and counts. What is refused here (unknown receiver index, malformed, bad mac1, no
//! private key yet, a full queue) is counted per batch, under the one device lock the batch
//! takes anyway, so a flood of junk costs no lock per datagram.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use vpn_tunnel::macs::verify_mac1;
use vpn_tunnel::noise::begin_consume_initiation;
use vpn_tunnel::wire::{Message, COOKIE_REPLY_LEN, DATA_HEADER_LEN, DATA_MIN_LEN, TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_INITIATION};
use vpn_tunnel::{inner, Device, DropReason, PeerId, RxOutcome, Session};

use super::{lock, routes_to, Shared, Table, POLL};
use crate::io::{RecvBatch, UdpIo};

/// Receive buffers per socket reader, each large enough for one GRO run (64 KiB).
const RECV_BUFFERS: usize = 8;
const RECV_BUFFER_SIZE: usize = 65_536;

/// One data message of the batch, to be opened where it was received.
struct Job {
    peer: PeerId,
    receiver: u32,
    source: SocketAddr,
    session: Arc<Session>,
    /// Where the datagram lies in the receive buffers.
    at: Range<usize>,
    /// After opening: the inner packet's length (0 for a keepalive) or why it was dropped.
    result: Result<usize, DropReason>,
}

/// The socket reader's bookkeeping, reused for every batch: no allocation per packet.
struct InBatch {
    jobs: Vec<Job>,
    /// Drops decided before opening, counted at the next flush.
    refused: Refused,
    /// Storage for the per-batch views into the receive buffers (empty between batches).
    views: Vec<&'static mut [u8]>,
}

impl InBatch {
    fn new() -> Self {
        Self { jobs: Vec::new(), refused: Refused::default(), views: Vec::new() }
    }
}

/// Datagrams refused on the reader before they touch any shared state, added to the device's
/// counters once per batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Refused {
    unknown_index: u64,
    malformed: u64,
    invalid_mac1: u64,
    no_private_key: u64,
    handshake_queue_full: u64,
    cookie_queue_full: u64,
}

impl Refused {
    fn any(&self) -> bool {
        *self != Refused::default()
    }

    /// Adds the counts to the device's and starts again from zero.
    fn count_into(&mut self, device: &mut Device) {
        let r = std::mem::take(self);
        for (reason, n) in [
            (DropReason::UnknownIndex, r.unknown_index),
            (DropReason::Malformed, r.malformed),
            (DropReason::InvalidMac1, r.invalid_mac1),
            (DropReason::NoPrivateKey, r.no_private_key),
            (DropReason::HandshakeQueueFull, r.handshake_queue_full),
            (DropReason::CookieQueueFull, r.cookie_queue_full),
        ] {
            if n > 0 {
                device.count_drops(reason, n);
            }
        }
    }
}

/// Reuses a vector's allocation for references of another lifetime (the vector is emptied; an
/// empty `Vec` collected in place keeps its buffer).
fn recycle<'b>(mut v: Vec<&mut [u8]>) -> Vec<&'b mut [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b mut [u8] { unreachable!("the vector is empty") }).collect()
}

/// Reads one socket until shutdown or until it is replaced by a newer generation.
pub(super) fn socket_reader(sh: Arc<Shared>, socket: Arc<dyn UdpIo>, generation: u64) {
    let mut rx = RecvBatch::new(RECV_BUFFERS, RECV_BUFFER_SIZE);
    let mut batch = InBatch::new();
    while sh.running() && sh.sockets.load().generation == generation {
        match socket.recv_batch(&mut rx, POLL) {
            Ok(n) => {
                for i in 0..n {
                    let source = rx.meta[i].source;
                    for at in rx.datagram_ranges(i) {
                        receive(&sh, &mut batch, rx.data_mut(), at, source);
                    }
                }
                flush(&sh, &mut batch, rx.data_mut());
            }
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

fn message_type(d: &[u8]) -> Option<u32> {
    d.get(..4).map(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
}

/// Where a received datagram goes first, from its type and length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A data message: opened on this thread.
    Data,
    /// A cookie reply of the right length: to the handshake queue (it is authenticated there,
    /// against the handshake it answers).
    CookieReply,
    /// Anything else: an initiation or response with a valid mac1 is queued, the rest is
    /// classified and counted by the device.
    CheckMac1,
    /// Too short to have a type.
    Malformed,
}

fn route_of(datagram: &[u8]) -> Route {
    match message_type(datagram) {
        Some(TYPE_DATA) if datagram.len() >= DATA_MIN_LEN => Route::Data,
        // Only the exact length is queued: the queue holds a copy of each message, and a
        // datagram of another length (up to 64 KiB) can be no cookie reply.
        Some(TYPE_COOKIE_REPLY) if datagram.len() == COOKIE_REPLY_LEN => Route::CookieReply,
        Some(_) => Route::CheckMac1,
        None => Route::Malformed,
    }
}

fn receive(sh: &Shared, batch: &mut InBatch, data: &mut [u8], at: Range<usize>, src: SocketAddr) {
    let datagram = &mut data[at.clone()];
    match route_of(datagram) {
        Route::Data => queue_data(sh, batch, datagram, at, src),
        Route::CookieReply => {
            if !sh.handshakes.push_cookie_reply(datagram, src) {
                batch.refused.cookie_queue_full += 1;
            }
        }
        Route::CheckMac1 => {
            // Initiations and responses must show a valid mac1 before they cost anything more: for
            // the primary identity or, during a key rotation, the retiring one.
            let table = sh.table.load();
            let keyed = table.mac1_key.is_some();
            let valid = table.mac1_key.is_some_and(|k| verify_mac1(&k, datagram))
                || table.retiring_mac1_key.is_some_and(|k| verify_mac1(&k, datagram));
            drop(table);
            if valid {
                if !sh.handshakes.push_handshake(datagram, src) {
                    batch.refused.handshake_queue_full += 1;
                }
                return;
            }
            match Message::parse(datagram) {
                Ok(Message::Initiation(_) | Message::Response(_)) if keyed => batch.refused.invalid_mac1 += 1,
                Ok(Message::Initiation(_) | Message::Response(_)) => batch.refused.no_private_key += 1,
                // Whole cookie replies and data messages never get here (`route_of`).
                _ => batch.refused.malformed += 1,
            }
        }
        Route::Malformed => batch.refused.malformed += 1,
    }
}

/// Notes a data message, to be opened in place at the flush.
fn queue_data(sh: &Shared, batch: &mut InBatch, datagram: &[u8], at: Range<usize>, src: SocketAddr) {
    let receiver = u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    let Some((peer, session)) = sh.sessions.get(&receiver).map(|e| e.value().clone()) else {
        batch.refused.unknown_index += 1;
        return;
    };
    batch.jobs.push(Job { peer, receiver, source: src, session, at, result: Ok(0) });
}

/// Opens the queued data messages in `data` (the receive buffers), accounts for them under one
/// device lock, and writes the good ones to TUN in arrival order.
fn flush(sh: &Shared, batch: &mut InBatch, data: &mut [u8]) {
    if batch.jobs.is_empty() && !batch.refused.any() {
        return;
    }
    let now = Instant::now();
    let n = batch.jobs.len();
    // A view of each message; the jobs are in buffer order and do not overlap.
    let mut views = recycle(std::mem::take(&mut batch.views));
    let mut rest = data;
    let mut consumed = 0;
    for job in &batch.jobs {
        let tail = std::mem::take(&mut rest);
        let (_, tail) = tail.split_at_mut(job.at.start - consumed);
        let (message, tail) = tail.split_at_mut(job.at.len());
        views.push(message);
        rest = tail;
        consumed = job.at.end;
    }
    {
        let table = sh.table.load();
        let table: &Table = &table;
        sh.crypto.for_each_mut(&mut views[..], &mut batch.jobs[..], |_, buf, job| {
            job.result = open(now, table, buf, job);
        });
    }
    // Account first, so that the endpoint follows a roaming peer before the packets reach the
    // host and the host's answers are sent back to where the packets came from.
    let mut device = lock(&sh.device);
    batch.refused.count_into(&mut device);
    let mut i = 0;
    while i < n {
        // Consecutive messages of one session from one source: one accounting call.
        let j = &batch.jobs[i];
        let (peer, receiver, source) = (j.peer, j.receiver, j.source);
        let (mut bytes, mut delivered, mut refused, mut keepalive) = (0u64, false, false, false);
        while i < n && (batch.jobs[i].receiver, batch.jobs[i].source) == (receiver, source) {
            let job = &batch.jobs[i];
            match job.result {
                Ok(0) => keepalive = true,
                Ok(_) => delivered = true,
                Err(DropReason::InvalidInnerPacket | DropReason::DisallowedSource) => refused = true,
                Err(_) => {}
            }
            if let Err(reason) = job.result {
                device.count_drop(reason);
            }
            if job.result.is_ok() {
                bytes += job.at.len() as u64;
            }
            i += 1;
        }
        if delivered || keepalive || refused {
            let outcome = match (delivered, keepalive) {
                (true, _) => RxOutcome::Delivered,
                (false, true) => RxOutcome::Keepalive,
                (false, false) => RxOutcome::Refused,
            };
            device.note_received(now, peer, receiver, source, bytes, outcome);
        }
    }
    let transmits = sh.sync(&mut device);
    drop(device);
    // Keep the inner packets to deliver, in order.
    let mut w = 0;
    for r in 0..n {
        if let Ok(len @ 1..) = batch.jobs[r].result {
            let message = std::mem::take(&mut views[r]);
            views[w] = &mut message[DATA_HEADER_LEN..DATA_HEADER_LEN + len];
            w += 1;
        }
    }
    views.truncate(w);
    batch.jobs.clear();
    if w > 0 {
        if let Err(e) = sh.tun.send_batch(&mut views) {
            tracing::debug!(error = %e, "TUN write failed");
        }
    }
    batch.views = recycle(views);
    sh.send_all(transmits);
}

/// Opens one message in place and checks its inner packet; returns the inner length (0 for a
/// keepalive).
fn open(now: Instant, table: &Table, buf: &mut [u8], job: &Job) -> Result<usize, DropReason> {
    let plain_len = job.session.open(now, buf).map_err(DropReason::from)?;
    if plain_len == 0 {
        return Ok(0);
    }
    let p = inner::parse(&buf[DATA_HEADER_LEN..DATA_HEADER_LEN + plain_len]).map_err(|_| DropReason::InvalidInnerPacket)?;
    if !routes_to(table, p.source, job.peer) {
        return Err(DropReason::DisallowedSource);
    }
    Ok(p.len)
}

/// Consumes queued handshake messages and cookie replies (from both queues, neither starving the
/// other). For an initiation, the first Diffie-Hellman (the one any junk initiation with a valid
/// mac1 costs) runs without the device lock, so a flood does not hold up the packet path's
/// accounting.
pub(super) fn handshake_worker(sh: Arc<Shared>) {
    while sh.running() {
        let Some((mut datagram, src)) = sh.handshakes.recv(POLL) else { continue };
        let now = Instant::now();
        if message_type(&datagram) == Some(TYPE_INITIATION) {
            consume_initiation(&sh, now, &datagram, src);
            continue;
        }
        let mut device = lock(&sh.device);
        let (backlog, capacity) = sh.handshakes.backlog();
        device.set_handshake_backlog(backlog, capacity);
        let table = sh.table.load();
        let _ = device.handle_datagram(now, src, &mut datagram, &|peer, ip| routes_to(&table, ip, peer));
        let transmits = sh.sync(&mut device);
        drop(device);
        sh.send_all(transmits);
    }
}

fn consume_initiation(sh: &Shared, now: Instant, datagram: &[u8], src: SocketAddr) {
    let (proceed, identity, transmits) = {
        let mut device = lock(&sh.device);
        let (backlog, capacity) = sh.handshakes.backlog();
        device.set_handshake_backlog(backlog, capacity);
        let pre = device.precheck_handshake(now, src, datagram);
        // The identity the initiation is addressed to (the primary or the retiring one).
        (matches!(pre, Ok(None)), device.handshake_identity(datagram), sh.sync(&mut device))
    };
    sh.send_all(transmits);
    let (true, Some(identity)) = (proceed, identity) else { return };
    let Ok(Message::Initiation(m)) = Message::parse(datagram) else { return };
    let stage1 = begin_consume_initiation(&identity, &m);
    let mut device = lock(&sh.device);
    match stage1 {
        Ok(stage1) => {
            let _ = device.handle_initiation_stage1(now, src, stage1);
        }
        Err(_) => device.count_drop(DropReason::HandshakeFailed),
    }
    let transmits = sh.sync(&mut device);
    drop(device);
    sh.send_all(transmits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpn_tunnel::wire::{INITIATION_LEN, RESPONSE_LEN, TYPE_RESPONSE};

    #[test]
    fn recycled_views_keep_their_allocation() {
        let mut data = [0u8; 64];
        let mut views: Vec<&mut [u8]> = Vec::with_capacity(32);
        views.extend(data.chunks_mut(8));
        let (ptr, capacity) = (views.as_ptr() as usize, views.capacity());
        let stored: Vec<&'static mut [u8]> = recycle(views);
        assert!(stored.is_empty());
        assert_eq!((stored.as_ptr() as usize, stored.capacity()), (ptr, capacity));
        let again: Vec<&mut [u8]> = recycle(stored);
        assert_eq!((again.as_ptr() as usize, again.capacity()), (ptr, capacity));
    }

    fn datagram(kind: u32, len: usize) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[..4.min(len)].copy_from_slice(&kind.to_le_bytes()[..4.min(len)]);
        d
    }

    #[test]
    fn only_whole_cookie_replies_are_queued() {
        assert_eq!(route_of(&datagram(TYPE_COOKIE_REPLY, COOKIE_REPLY_LEN)), Route::CookieReply);
        for len in [4, 63, 65, 148, 1500, 65_000] {
            assert_eq!(route_of(&datagram(TYPE_COOKIE_REPLY, len)), Route::CheckMac1, "cookie reply of {len} bytes");
        }
    }

    #[test]
    fn routes_by_type_and_length() {
        assert_eq!(route_of(&datagram(TYPE_DATA, DATA_MIN_LEN)), Route::Data);
        assert_eq!(route_of(&datagram(TYPE_DATA, 1452)), Route::Data);
        assert_eq!(route_of(&datagram(TYPE_DATA, DATA_MIN_LEN - 1)), Route::CheckMac1);
        assert_eq!(route_of(&datagram(TYPE_INITIATION, INITIATION_LEN)), Route::CheckMac1);
        assert_eq!(route_of(&datagram(TYPE_RESPONSE, RESPONSE_LEN)), Route::CheckMac1);
        assert_eq!(route_of(&datagram(7, 100)), Route::CheckMac1);
        assert_eq!(route_of(&[1, 0, 0]), Route::Malformed);
        assert_eq!(route_of(&[]), Route::Malformed);
    }
}
