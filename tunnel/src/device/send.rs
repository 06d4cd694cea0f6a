//! The sending side of a peer: sealing data, staging packets while a handshake is pending,
//! initiations, keepalives, key freshness and the timer handlers.

use std::sync::Arc;
use std::time::Instant;

use vpn_crypto::PrivateKey;

use super::{Ctx, Device};
use crate::constants::{
    MAX_STAGED_PACKETS, MAX_TIMER_HANDSHAKES, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME, REKEY_ON_RECEIVE_AGE, REKEY_TIMEOUT,
};
use crate::noise::create_initiation;
use crate::peer::{Peer, PeerId};
use crate::stats::DropReason;
use crate::timers::TimerEvent;
use crate::wire::{padded_len, DATA_OVERHEAD, INITIATION_LEN};
use vpn_crypto::Tai64N;

impl Device {
    /// Sends an IP packet to a peer: sealed at once when a session is ready, otherwise staged
    /// (at most 128 per peer, the oldest dropped) while a handshake is started.
    pub fn send(&mut self, now: Instant, id: PeerId, packet: &[u8]) -> Result<(), crate::ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(crate::ConfigError::NoSuchPeer)?;
        stage(&mut self.ctx, peer, packet.to_vec());
        send_staged(&mut self.ctx, id, peer, now);
        self.reschedule(id);
        Ok(())
    }

    /// Sends a keepalive to a peer now (or stages one and starts a handshake).
    pub fn send_keepalive(&mut self, now: Instant, id: PeerId) -> Result<(), crate::ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(crate::ConfigError::NoSuchPeer)?;
        send_keepalive(&mut self.ctx, id, peer, now);
        self.reschedule(id);
        Ok(())
    }

    /// Starts a handshake with a peer now (subject to the one-per-REKEY_TIMEOUT limit).
    pub fn initiate_handshake(&mut self, now: Instant, id: PeerId) -> Result<(), crate::ConfigError> {
        let peer = self.peers.get_mut(&id).ok_or(crate::ConfigError::NoSuchPeer)?;
        send_initiation(&mut self.ctx, id, peer, now, false);
        self.reschedule(id);
        Ok(())
    }
}

fn stage(ctx: &mut Ctx, peer: &mut Peer, packet: Vec<u8>) {
    if peer.staged.len() >= MAX_STAGED_PACKETS {
        peer.staged.pop_front();
        ctx.stats.count(DropReason::StagedQueueFull);
    }
    peer.staged.push_back(packet);
}

/// Seals and queues every staged packet when the current session can send; otherwise keeps them
/// and asks for a handshake.
pub(super) fn send_staged(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant) {
    if peer.staged.is_empty() {
        return;
    }
    let session = match peer.keypairs.current.as_ref() {
        Some(s) if s.can_send(now) => Arc::clone(s),
        _ => {
            send_initiation(ctx, id, peer, now, false);
            return;
        }
    };
    let mut sent_data = false;
    let mut sent_any = false;
    while let Some(packet) = peer.staged.pop_front() {
        let len = packet.len();
        let mut buf = vec![0u8; DATA_OVERHEAD + padded_len(len, ctx.mtu)];
        buf[16..16 + len].copy_from_slice(&packet);
        match session.seal(now, &mut buf, len, ctx.mtu) {
            Ok(n) => {
                buf.truncate(n);
                ctx.transmit(id, peer, buf);
                sent_any = true;
                sent_data |= len > 0;
            }
            Err(_) => {
                // The counter ran out under our feet: keep the packet for the next session.
                peer.staged.push_front(packet);
                send_initiation(ctx, id, peer, now, false);
                break;
            }
        }
    }
    after_send(ctx, id, peer, now, sent_any, sent_data);
}

/// Timer bookkeeping after data messages went out, then the send-side key freshness check.
pub(super) fn after_send(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant, sent_any: bool, sent_data: bool) {
    if sent_any {
        peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
        peer.timers.any_authenticated_packet_sent();
        if sent_data {
            peer.timers.data_sent(now, || ctx.jitter());
        }
        keep_key_fresh_sending(ctx, id, peer, now);
    }
}

/// An empty data packet, unless real packets are already waiting.
pub(super) fn send_keepalive(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant) {
    if peer.staged.is_empty() {
        peer.staged.push_back(Vec::new());
    }
    send_staged(ctx, id, peer, now);
}

/// Sends an initiation unless one went out less than REKEY_TIMEOUT ago. `is_retry` keeps the
/// attempt count of the retransmit timer; anything else starts counting afresh.
pub(super) fn send_initiation(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant, is_retry: bool) {
    if !is_retry {
        peer.timers.handshake_attempts = 0;
    }
    if peer.last_handshake_sent.is_some_and(|t| now.saturating_duration_since(t) < REKEY_TIMEOUT) {
        return;
    }
    // As the identity the peer last addressed (the primary one unless it still uses the retiring
    // key during a rotation).
    let Some(identity) = ctx.identity_for(peer.identity).map(Arc::clone) else { return };
    peer.keys.ensure_static_secret(Some(&identity));
    if !peer.keys.can_handshake_as(&identity) {
        return;
    }
    if let Some(old) = peer.handshake.take() {
        ctx.indices.remove(&old.local_index);
    }
    let index = ctx.alloc_index(id);
    let ephemeral = PrivateKey::generate(&mut *ctx.rng);
    let timestamp = Tai64N::from_unix(ctx.clock.unix(now));
    let mut msg = [0u8; INITIATION_LEN];
    match create_initiation(&identity, &peer.keys, index, ephemeral, timestamp, &mut msg) {
        Ok(state) => peer.handshake = Some(state),
        Err(_) => {
            ctx.indices.remove(&index);
            return;
        }
    }
    peer.cookie.add_macs(now, &peer.keys.mac1_key, &mut msg);
    peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
    peer.timers.any_authenticated_packet_sent();
    peer.last_handshake_sent = Some(now);
    ctx.transmit(id, peer, msg.to_vec());
    let j = ctx.jitter();
    peer.timers.handshake_initiated(now, j);
}

/// After sending: renew a session that has sealed REKEY_AFTER_MESSAGES messages or, on the
/// initiator's side, is REKEY_AFTER_TIME old.
fn keep_key_fresh_sending(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant) {
    let stale = peer.keypairs.current.as_ref().is_some_and(|s| {
        s.send_counter() > REKEY_AFTER_MESSAGES || (s.initiator && now.saturating_duration_since(s.created()) >= REKEY_AFTER_TIME)
    });
    if stale {
        send_initiation(ctx, id, peer, now, false);
    }
}

/// After receiving: the initiator renews a session 165 s old, once per session, so that it is
/// replaced before the peer stops accepting it at 180 s.
pub(super) fn keep_key_fresh_receiving(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant) {
    if peer.timers.sent_lastminute_handshake {
        return;
    }
    let old =
        peer.keypairs.current.as_ref().is_some_and(|s| s.initiator && now.saturating_duration_since(s.created()) >= REKEY_ON_RECEIVE_AGE);
    if old {
        peer.timers.sent_lastminute_handshake = true;
        send_initiation(ctx, id, peer, now, false);
    }
}

/// Runs the handler of a timer that fired.
pub(super) fn on_timer(ctx: &mut Ctx, id: PeerId, peer: &mut Peer, now: Instant, ev: TimerEvent) {
    match ev {
        TimerEvent::RetransmitHandshake => {
            if peer.timers.handshake_attempts > MAX_TIMER_HANDSHAKES {
                for _ in peer.staged.drain(..) {
                    ctx.stats.count(DropReason::HandshakeAbandoned);
                }
                peer.timers.handshake_abandoned(now);
            } else {
                peer.timers.handshake_attempts += 1;
                send_initiation(ctx, id, peer, now, true);
            }
        }
        TimerEvent::SendKeepalive => {
            send_keepalive(ctx, id, peer, now);
            peer.timers.keepalive_sent_by_timer(now);
        }
        TimerEvent::NewHandshake => send_initiation(ctx, id, peer, now, false),
        TimerEvent::ZeroKeyMaterial => ctx.clear_sessions(id, peer),
        TimerEvent::PersistentKeepalive => {
            if peer.persistent_keepalive > 0 {
                send_keepalive(ctx, id, peer, now);
            }
        }
    }
}
