//! UDP → TUN: data messages are opened on the reader thread with the peer's session (looked up
//! under the device lock, decrypted outside it), their inner source checked against the
//! allowed-IPs snapshot and written to TUN. Handshake messages with a valid mac1 are queued for the
//! handshake thread; a full queue drops and counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use vpn_tunnel::macs::verify_mac1;
use vpn_tunnel::noise::begin_consume_initiation;
use vpn_tunnel::wire::{Message, DATA_HEADER_LEN, DATA_MIN_LEN, TYPE_COOKIE_REPLY, TYPE_DATA, TYPE_INITIATION};
use vpn_tunnel::{inner, DropReason, RxOutcome};

use super::{lock, routes_to, Shared, HANDSHAKE_QUEUE, POLL};
use crate::io::UdpIo;

/// Reads one socket until shutdown or until it is replaced by a newer generation.
pub(super) fn socket_reader(sh: Arc<Shared>, socket: Arc<dyn UdpIo>, generation: u64) {
    let mut buf = vec![0u8; 65_536];
    while sh.running() && sh.sockets.load().generation == generation {
        match socket.recv(&mut buf, POLL) {
            Ok(Some((n, src))) => receive(&sh, &mut buf[..n], src),
            Ok(None) => {}
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

fn receive(sh: &Shared, datagram: &mut [u8], src: SocketAddr) {
    match message_type(datagram) {
        Some(TYPE_DATA) if datagram.len() >= DATA_MIN_LEN => receive_data(sh, datagram, src),
        Some(TYPE_COOKIE_REPLY) => queue_handshake(sh, datagram, src),
        Some(_) => {
            // Initiations and responses must show a valid mac1 before they cost anything more.
            let valid = sh.table.load().mac1_key.is_some_and(|k| verify_mac1(&k, datagram));
            if valid {
                queue_handshake(sh, datagram, src);
            } else {
                // Let the device classify and count it (malformed or bad mac1): cheap.
                let mut device = lock(&sh.device);
                let _ = device.handle_datagram(Instant::now(), src, datagram, &|_, _| false);
                let _ = sh.sync(&mut device);
            }
        }
        None => lock(&sh.device).count_drop(DropReason::Malformed),
    }
}

fn queue_handshake(sh: &Shared, datagram: &[u8], src: SocketAddr) {
    if sh.handshakes.try_send((datagram.to_vec(), src)).is_err() {
        lock(&sh.device).count_drop(DropReason::HandshakeQueueFull);
    }
}

fn receive_data(sh: &Shared, datagram: &mut [u8], src: SocketAddr) {
    let receiver = u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    let now = Instant::now();
    let Some((peer, session)) = sh.sessions.get(&receiver).map(|e| e.value().clone()) else {
        lock(&sh.device).count_drop(DropReason::UnknownIndex);
        return;
    };
    let plain_len = match session.open(now, datagram) {
        Ok(n) => n,
        Err(e) => {
            lock(&sh.device).count_drop(e.into());
            return;
        }
    };
    let inner_len = if plain_len == 0 { Ok(0) } else { check_inner(sh, &datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + plain_len], peer) };
    let outcome = match inner_len {
        Ok(0) => RxOutcome::Keepalive,
        Ok(_) => RxOutcome::Delivered,
        Err(_) => RxOutcome::Refused,
    };
    // Account first, so that the endpoint follows a roaming peer before the packet reaches the
    // host and the host's answer is sent back to where the packet came from.
    let mut device = lock(&sh.device);
    device.note_received(now, peer, receiver, src, datagram.len() as u64, outcome);
    if let Err(reason) = inner_len {
        device.count_drop(reason);
    }
    let transmits = sh.sync(&mut device);
    drop(device);
    if let Ok(n @ 1..) = inner_len {
        if let Err(e) = sh.tun.send(&datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + n]) {
            tracing::debug!(error = %e, "TUN write failed");
        }
    }
    sh.send_all(transmits);
}

/// Validates a decrypted packet and checks that its source routes back to `peer`; returns its
/// length without padding.
fn check_inner(sh: &Shared, plaintext: &[u8], peer: vpn_tunnel::PeerId) -> Result<usize, DropReason> {
    let p = inner::parse(plaintext).map_err(|_| DropReason::InvalidInnerPacket)?;
    if !routes_to(&sh.table.load(), p.source, peer) {
        return Err(DropReason::DisallowedSource);
    }
    Ok(p.len)
}

/// Consumes queued handshake messages and cookie replies. For an initiation, the first
/// Diffie-Hellman (the one any junk initiation with a valid mac1 costs) runs without the device
/// lock, so a flood does not hold up the packet path's accounting.
pub(super) fn handshake_worker(sh: Arc<Shared>) {
    while sh.running() {
        let Ok((mut datagram, src)) = sh.handshake_rx.recv_timeout(POLL) else { continue };
        let now = Instant::now();
        if message_type(&datagram) == Some(TYPE_INITIATION) {
            consume_initiation(&sh, now, &datagram, src);
            continue;
        }
        let mut device = lock(&sh.device);
        device.set_handshake_backlog(sh.handshake_rx.len(), HANDSHAKE_QUEUE);
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
        device.set_handshake_backlog(sh.handshake_rx.len(), HANDSHAKE_QUEUE);
        let pre = device.precheck_handshake(now, src, datagram);
        (matches!(pre, Ok(None)), device.identity(), sh.sync(&mut device))
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
