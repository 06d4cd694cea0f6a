//! TUN → UDP: read a packet, find its peer by destination in the allowed-IPs snapshot, seal it
//! with the peer's current session outside the device lock, send it. Packets for a peer without a
//! usable session go through `Device::send`, which stages them and starts a handshake.

use std::sync::Arc;
use std::time::Instant;

use vpn_tunnel::inner;
use vpn_tunnel::wire::{padded_len, DATA_OVERHEAD};

use super::{lock, Shared, StopReason, POLL};

/// Reads the TUN device until shutdown or until the interface disappears.
pub(super) fn tun_reader(sh: Arc<Shared>) {
    let mtu = sh.mtu;
    // Headroom for the data header, tailroom for padding and the tag: sealing happens in place.
    let mut buf = vec![0u8; DATA_OVERHEAD + padded_len(65_535, 65_535) + 16];
    while sh.running() {
        let n = match sh.tun.recv(&mut buf[16..16 + 65_535], POLL) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => {
                sh.stop(StopReason::TunGone(e.to_string()));
                break;
            }
        };
        send_packet(&sh, &mut buf, n, mtu);
    }
}

/// Routes and sends the packet at `buf[16..16 + len]`.
fn send_packet(sh: &Shared, buf: &mut [u8], len: usize, mtu: usize) {
    let Ok(packet) = inner::parse(&buf[16..16 + len]) else { return };
    let table = sh.table.load();
    // No peer has this destination among its allowed IPs: nothing to do (like the kernel, drop).
    let Some(peer) = table.routes.lookup(packet.destination) else { return };
    let now = Instant::now();
    let fast = sh.sending.get(&peer).map(|e| e.value().clone()).filter(|(s, _)| s.can_send(now));
    if let Some((session, destination)) = fast {
        if let Ok(total) = session.seal(now, buf, len, mtu) {
            let sockets = sh.sockets.load();
            let sent = sh.send_to(&sockets, &buf[..total], destination);
            let mut device = lock(&sh.device);
            // Like the kernel: the timers count the attempt, the transfer counter only what left.
            device.note_sent(now, peer, 1, usize::from(sent), if sent { total as u64 } else { 0 });
            let transmits = sh.sync(&mut device);
            drop(device);
            sh.send_all(transmits);
            return;
        }
    }
    let mut device = lock(&sh.device);
    let _ = device.send(now, peer, &buf[16..16 + len]);
    let transmits = sh.sync(&mut device);
    drop(device);
    sh.send_all(transmits);
}
