//! The receiving side: classify a datagram, check MACs and load, consume handshake messages and
//! cookie replies, open data messages and validate what they carry.
//!
//! Nothing is sent to a source that has not shown a valid mac1; every refusal returns a
//! [`DropReason`] and is counted.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Instant;

use vpn_crypto::PrivateKey;

use super::fast::RxOutcome;
use super::send::send_keepalive;
use super::{Device, Transmit};
use crate::constants::INITIATION_MIN_INTERVAL;
use crate::inner;
use crate::noise::{begin_consume_initiation, consume_response, create_response, InitiationStage1};
use crate::peer::{LocalIdentity, PeerId};
use crate::session::{Session, SessionError};
use crate::stats::DropReason;
use crate::wire::{CookieReply, Initiation, Message, Response, COOKIE_REPLY_LEN, DATA_HEADER_LEN, INITIATION_LEN, RESPONSE_LEN};

/// What a datagram turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A data message carrying an IP packet from `peer`, decrypted in place: the packet is
    /// `datagram[range]`, padding removed.
    Packet {
        /// The sending peer.
        peer: PeerId,
        /// Where the inner packet lies in the datagram buffer.
        range: Range<usize>,
    },
    /// An authenticated keepalive.
    Keepalive(PeerId),
    /// An initiation was consumed and a response queued.
    Initiation(PeerId),
    /// A response was consumed; the session is ready.
    Response(PeerId),
    /// A cookie reply was taken.
    CookieReply(PeerId),
    /// Under load: a cookie reply was queued instead of processing the handshake message.
    CookieSent,
}

impl Received {
    /// The peer the message came from, when known.
    pub fn peer(&self) -> Option<PeerId> {
        match *self {
            Received::Packet { peer, .. } => Some(peer),
            Received::Keepalive(p) | Received::Initiation(p) | Received::Response(p) | Received::CookieReply(p) => Some(p),
            Received::CookieSent => None,
        }
    }
}

impl From<SessionError> for DropReason {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Expired | SessionError::CounterExhausted => DropReason::SessionExpired,
            SessionError::Replay => DropReason::ReplayedCounter,
            SessionError::Decrypt | SessionError::BufferTooSmall => DropReason::DecryptFailed,
        }
    }
}

enum Precheck {
    /// Go on, handling the message as addressed to this identity.
    Process(LocalIdentity),
    CookieSent,
}

impl Device {
    /// Handles one datagram from `src`. A data message is decrypted in place in `datagram`.
    /// `allowed(peer, source)` tells whether `source` routes back to `peer` in the allowed-IPs
    /// table; a packet whose inner source does not is dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &mut [u8],
        allowed: &dyn Fn(PeerId, IpAddr) -> bool,
    ) -> Result<Received, DropReason> {
        // A data message names its session's receiver index; read it before decryption.
        let receiver =
            (datagram.len() >= 8 && datagram[0] == 4).then(|| u32::from_le_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]));
        let result = self.receive(now, src, datagram, allowed);
        if let Err(reason) = result {
            self.ctx.stats.count(reason);
        }
        // Whatever happened, the peer involved may have new timers.
        let peer = result.as_ref().ok().and_then(Received::peer).or_else(|| receiver.and_then(|r| self.ctx.indices.get(&r).copied()));
        if let Some(id) = peer {
            self.reschedule(id);
        }
        result
    }

    fn receive(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &mut [u8],
        allowed: &dyn Fn(PeerId, IpAddr) -> bool,
    ) -> Result<Received, DropReason> {
        match Message::parse(datagram).map_err(|_| DropReason::Malformed)? {
            Message::Initiation(m) => {
                let receiver_of_cookie = m.sender();
                match self.precheck(now, src, m.mac1_input(), m.mac1(), m.mac2_input(), m.mac2(), receiver_of_cookie)? {
                    Precheck::CookieSent => Ok(Received::CookieSent),
                    Precheck::Process(which) => self.consume_initiation(now, src, &m, which),
                }
            }
            Message::Response(m) => {
                let receiver_of_cookie = m.sender();
                match self.precheck(now, src, m.mac1_input(), m.mac1(), m.mac2_input(), m.mac2(), receiver_of_cookie)? {
                    Precheck::CookieSent => Ok(Received::CookieSent),
                    Precheck::Process(_) => self.consume_response(now, src, &m),
                }
            }
            Message::CookieReply(m) => self.consume_cookie_reply(now, &m),
            Message::Data(d) => {
                let receiver = d.receiver();
                self.receive_data(now, src, receiver, datagram, allowed)
            }
        }
    }

    /// mac1, then under load mac2 (or a cookie reply) and the per-source rate limit. mac1 tells
    /// which of our identities the sender addressed: the primary one is tried first, then the
    /// retiring one if set; mac2 and cookie replies use that identity's cookie machinery.
    #[allow(clippy::too_many_arguments)]
    fn precheck(
        &mut self,
        now: Instant,
        src: SocketAddr,
        mac1_input: &[u8],
        mac1: &[u8],
        mac2_input: &[u8],
        mac2: &[u8],
        sender: u32,
    ) -> Result<Precheck, DropReason> {
        let ctx = &mut self.ctx;
        let (_, primary) = ctx.identity.as_mut().ok_or(DropReason::NoPrivateKey)?;
        let (which, checker) = if primary.check_mac1(mac1_input, mac1) {
            (LocalIdentity::Primary, primary)
        } else {
            match ctx.retiring.as_mut() {
                Some((_, retiring)) if retiring.check_mac1(mac1_input, mac1) => (LocalIdentity::Retiring, retiring),
                _ => return Err(DropReason::InvalidMac1),
            }
        };
        let (len, cap) = ctx.backlog;
        if !ctx.load.observe(now, len, cap) {
            return Ok(Precheck::Process(which));
        }
        if !checker.check_mac2(now, &mut *ctx.rng, &src, mac2_input, mac2) {
            let mut reply = [0u8; COOKIE_REPLY_LEN];
            checker.create_reply(now, &mut *ctx.rng, &src, sender, mac1, &mut reply);
            ctx.transmits.push_back(Transmit { peer: None, destination: src, payload: reply.to_vec() });
            ctx.stats.cookie_replies_sent += 1;
            return Ok(Precheck::CookieSent);
        }
        if !ctx.ratelimiter.allow(now, src.ip()) {
            return Err(DropReason::RateLimited);
        }
        Ok(Precheck::Process(which))
    }

    fn consume_initiation(
        &mut self,
        now: Instant,
        src: SocketAddr,
        m: &Initiation<'_>,
        which: LocalIdentity,
    ) -> Result<Received, DropReason> {
        let identity = self.ctx.identity_for(which).ok_or(DropReason::NoPrivateKey)?;
        let stage1 = begin_consume_initiation(identity, m).map_err(|_| DropReason::HandshakeFailed)?;
        self.consume_initiation_stage1(now, src, stage1)
    }

    /// A multithreaded driver's split of an initiation: [`Device::precheck_handshake`] under its
    /// lock (cheap), [`begin_consume_initiation`] with [`Device::handshake_identity`] outside it
    /// (the Diffie-Hellman that junk initiations cost), then this, under the lock again, for the peer
    /// lookup, replay and flood checks and the response. Refusals are counted.
    pub fn handle_initiation_stage1(&mut self, now: Instant, src: SocketAddr, stage1: InitiationStage1) -> Result<Received, DropReason> {
        let result = self.consume_initiation_stage1(now, src, stage1);
        if let Err(reason) = result {
            self.ctx.stats.count(reason);
        }
        if let Some(id) = result.as_ref().ok().and_then(Received::peer) {
            self.reschedule(id);
        }
        result
    }

    /// The checks every handshake message passes before any Diffie-Hellman: type and length,
    /// mac1, and under load mac2 (a cookie reply is queued instead when it is missing) and the
    /// per-source rate limit. `Ok(None)` means: go on and process it. Refusals are counted.
    pub fn precheck_handshake(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<Option<Received>, DropReason> {
        let result = match Message::parse(datagram) {
            Ok(Message::Initiation(m)) => self.precheck(now, src, m.mac1_input(), m.mac1(), m.mac2_input(), m.mac2(), m.sender()),
            Ok(Message::Response(m)) => self.precheck(now, src, m.mac1_input(), m.mac1(), m.mac2_input(), m.mac2(), m.sender()),
            Ok(_) => Ok(Precheck::Process(LocalIdentity::Primary)),
            Err(_) => Err(DropReason::Malformed),
        };
        match result {
            Ok(Precheck::Process(_)) => Ok(None),
            Ok(Precheck::CookieSent) => Ok(Some(Received::CookieSent)),
            Err(reason) => {
                self.ctx.stats.count(reason);
                Err(reason)
            }
        }
    }

    fn consume_initiation_stage1(&mut self, now: Instant, src: SocketAddr, stage1: InitiationStage1) -> Result<Received, DropReason> {
        // The identity it was addressed to (gone if our keys changed since the first stage).
        let which = self.ctx.which_identity(stage1.responder()).ok_or(DropReason::HandshakeFailed)?;
        let id = *self.by_key.get(&stage1.remote_static).ok_or(DropReason::UnknownPeer)?;
        let peer = self.peers.get_mut(&id).ok_or(DropReason::UnknownPeer)?;
        // The static-static DH of that identity: `finish` looks it up by our public key.
        peer.keys.ensure_static_secret(self.ctx.identity_for(which).map(|i| &**i));
        let consumed = stage1.finish(&peer.keys).map_err(|_| DropReason::HandshakeFailed)?;
        if consumed.timestamp <= peer.latest_timestamp {
            return Err(DropReason::ReplayedInitiation);
        }
        if peer.last_initiation_consumed.is_some_and(|t| now.saturating_duration_since(t) < INITIATION_MIN_INTERVAL) {
            return Err(DropReason::InitiationFlood);
        }
        peer.latest_timestamp = consumed.timestamp;
        peer.last_initiation_consumed = Some(now);
        // Our handshakes to this peer go to the key it knows.
        peer.identity = which;
        // Their initiation wins over ours: the response to ours would no longer be accepted.
        if let Some(ours) = peer.handshake.take() {
            self.ctx.indices.remove(&ours.local_index);
        }
        self.ctx.set_endpoint(id, peer, src);
        peer.rx_bytes += INITIATION_LEN as u64;

        let ctx = &mut self.ctx;
        let index = ctx.alloc_index(id);
        let ephemeral = PrivateKey::generate(&mut *ctx.rng);
        let mut response = [0u8; RESPONSE_LEN];
        let keys = match create_response(&peer.keys, &consumed, index, ephemeral, &mut response) {
            Ok(k) => k,
            Err(_) => {
                ctx.indices.remove(&index);
                return Err(DropReason::HandshakeFailed);
            }
        };
        peer.cookie.add_macs(now, &peer.keys.mac1_key, &mut response);
        ctx.install(id, peer, Session::new(keys, now));
        peer.timers.session_derived(now);
        peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
        peer.timers.any_authenticated_packet_sent();
        peer.last_handshake_sent = Some(now);
        ctx.transmit(id, peer, response.to_vec());

        peer.timers.any_authenticated_packet_received();
        peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
        Ok(Received::Initiation(id))
    }

    fn consume_response(&mut self, now: Instant, src: SocketAddr, m: &Response<'_>) -> Result<Received, DropReason> {
        if self.ctx.identity.is_none() {
            return Err(DropReason::NoPrivateKey);
        }
        let id = *self.ctx.indices.get(&m.receiver()).ok_or(DropReason::UnknownIndex)?;
        let peer = self.peers.get_mut(&id).ok_or(DropReason::UnknownIndex)?;
        let state = peer.handshake.as_ref().filter(|s| s.local_index == m.receiver()).ok_or(DropReason::UnexpectedResponse)?;
        // The identity our initiation was sent as.
        let which = self.ctx.which_identity(state.local_static()).ok_or(DropReason::HandshakeFailed)?;
        let identity = self.ctx.identity_for(which).ok_or(DropReason::NoPrivateKey)?;
        let keys = consume_response(identity, &peer.keys, state, m).map_err(|_| DropReason::HandshakeFailed)?;
        // The handshake's index now names the session.
        peer.handshake = None;
        let ctx = &mut self.ctx;
        ctx.install(id, peer, Session::new(keys, now));
        ctx.set_endpoint(id, peer, src);
        peer.timers.session_derived(now);
        peer.timers.handshake_complete();
        peer.last_handshake = Some(ctx.clock.unix(now));
        peer.rx_bytes += RESPONSE_LEN as u64;
        // Key confirmation for the responder: queued data, or a keepalive.
        send_keepalive(ctx, id, peer, now);
        peer.timers.any_authenticated_packet_received();
        peer.timers.any_authenticated_packet_traversal(now, peer.persistent_keepalive);
        Ok(Received::Response(id))
    }

    fn consume_cookie_reply(&mut self, now: Instant, m: &CookieReply<'_>) -> Result<Received, DropReason> {
        let id = *self.ctx.indices.get(&m.receiver()).ok_or(DropReason::UnknownIndex)?;
        let peer = self.peers.get_mut(&id).ok_or(DropReason::UnknownIndex)?;
        peer.cookie.consume_reply(now, &peer.keys.cookie_key, m).map_err(|_| DropReason::InvalidCookieReply)?;
        Ok(Received::CookieReply(id))
    }

    fn receive_data(
        &mut self,
        now: Instant,
        src: SocketAddr,
        receiver: u32,
        datagram: &mut [u8],
        allowed: &dyn Fn(PeerId, IpAddr) -> bool,
    ) -> Result<Received, DropReason> {
        let (id, session) = self.receiving_session(receiver).ok_or(DropReason::UnknownIndex)?;
        let plain_len = session.open(now, datagram)?;
        let bytes = datagram.len() as u64;
        let (outcome, result) = if plain_len == 0 {
            (RxOutcome::Keepalive, Ok(Received::Keepalive(id)))
        } else {
            match inner::parse(&datagram[DATA_HEADER_LEN..DATA_HEADER_LEN + plain_len]) {
                Err(_) => (RxOutcome::Refused, Err(DropReason::InvalidInnerPacket)),
                Ok(p) if !allowed(id, p.source) => (RxOutcome::Refused, Err(DropReason::DisallowedSource)),
                Ok(p) => (RxOutcome::Delivered, Ok(Received::Packet { peer: id, range: DATA_HEADER_LEN..DATA_HEADER_LEN + p.len })),
            }
        };
        self.note_received(now, id, receiver, src, bytes, outcome);
        result
    }
}
