//! The split used by a multithreaded data plane: it looks a session up here (under its lock),
//! seals or opens outside the lock on worker threads with the shared `Arc<Session>`, then reports
//! back here once per batch so counters, roaming, key confirmation and timers stay exact.
//!
//! `handle_datagram` and `send` are built on the same functions, so both paths keep the same
//! protocol behaviour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::send::{after_send, keep_key_fresh_receiving, send_staged};
use super::Device;
use crate::peer::PeerId;
use crate::session::Session;
use crate::stats::DropReason;

/// What became of an authenticated data message the caller opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxOutcome {
    /// Empty payload.
    Keepalive,
    /// An inner packet that was valid, allowed and handed on.
    Delivered,
    /// An inner packet refused after authentication (invalid, or source not allowed); the caller
    /// counts the drop with [`Device::count_drop`].
    Refused,
}

impl Device {
    /// Outbound fast path: the caller sealed `datagrams` messages for `id` with the session from
    /// [`Device::current_sending`] (after checking [`Session::can_send`]) and sent them, `data` of which carried data (the rest were
    /// keepalives), `bytes` in all.
    pub fn note_sent(&mut self, now: Instant, id: PeerId, datagrams: usize, data: usize, bytes: u64) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.tx_bytes += bytes;
            after_send(&mut self.ctx, id, peer, now, datagrams > 0, data > 0);
            self.reschedule(id);
        }
    }

    /// Inbound fast path: the peer and session named by a data message's receiver index.
    pub fn receiving_session(&self, receiver: u32) -> Option<(PeerId, Arc<Session>)> {
        let id = *self.ctx.indices.get(&receiver)?;
        let session = self.peers.get(&id)?.keypairs.find(receiver)?;
        Some((id, Arc::clone(session)))
    }

    /// Inbound fast path: the caller opened a `bytes`-long data message from `src` with the
    /// session whose index is `local_index` (authentication succeeded), with this outcome.
    /// Updates the endpoint (roaming), confirms a responder's new session, keeps keys fresh, runs
    /// the timers and counts.
    pub fn note_received(&mut self, now: Instant, id: PeerId, local_index: u32, src: SocketAddr, bytes: u64, outcome: RxOutcome) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        let ctx = &mut self.ctx;
        ctx.set_endpoint(id, peer, src);
        if let Some(evicted) = peer.keypairs.confirm(local_index) {
            ctx.release_sessions(evicted);
            ctx.event(super::Event::PeerChanged(id));
            peer.timers.handshake_complete();
            peer.last_handshake = Some(ctx.clock.unix(now));
            send_staged(ctx, id, peer, now);
        }
        keep_key_fresh_receiving(ctx, id, peer, now);
        peer.timers.any_authenticated_packet_received();
        peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
        match outcome {
            RxOutcome::Keepalive => peer.rx_bytes += bytes,
            RxOutcome::Delivered => {
                peer.timers.data_received(now);
                peer.rx_bytes += bytes;
            }
            RxOutcome::Refused => peer.timers.data_received(now),
        }
        self.reschedule(id);
    }

    /// A datagram queued by the device for `id` could not be sent after all: take its bytes back
    /// out of the peer's transmit counter (which counts only what left).
    pub fn note_send_failed(&mut self, id: PeerId, bytes: u64) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.tx_bytes = peer.tx_bytes.saturating_sub(bytes);
        }
    }

    /// Counts a drop decided by the caller (e.g. a data message that failed to open).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.ctx.stats.count(reason);
    }

    /// Counts `n` drops decided by the caller (e.g. datagrams the socket refused).
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.ctx.stats.count_many(reason, n);
    }
}
