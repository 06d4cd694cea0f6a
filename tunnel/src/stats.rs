//! Why packets were dropped, counted by reason. Every byte string from the network that is not
//! processed ends up in exactly one of these counters, and so does every packet read from the
//! interface that does not leave (the outbound reasons, counted by the data plane).

/// A reason for dropping a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// Not a WireGuard message: unknown type, non-zero reserved bytes or wrong length.
    #[error("malformed message")]
    Malformed,
    /// A handshake message arrived while the interface has no private key.
    #[error("no private key configured")]
    NoPrivateKey,
    /// mac1 did not verify: the sender does not know our public key.
    #[error("invalid mac1")]
    InvalidMac1,
    /// Under load, the source exceeded its handshake rate.
    #[error("handshake rate limit")]
    RateLimited,
    /// A handshake message did not decrypt or used a low-order key.
    #[error("handshake failed")]
    HandshakeFailed,
    /// An initiation from a static key that is not a configured peer.
    #[error("unknown peer")]
    UnknownPeer,
    /// An initiation whose timestamp is not newer than the last one accepted.
    #[error("replayed initiation")]
    ReplayedInitiation,
    /// A second initiation from the same peer within 20 ms.
    #[error("initiation flood")]
    InitiationFlood,
    /// A response to no pending initiation.
    #[error("unexpected handshake response")]
    UnexpectedResponse,
    /// A receiver index that names nothing.
    #[error("unknown receiver index")]
    UnknownIndex,
    /// A cookie reply we did not ask for or that did not decrypt.
    #[error("invalid cookie reply")]
    InvalidCookieReply,
    /// A data message on a session past its lifetime or counter limit.
    #[error("session expired")]
    SessionExpired,
    /// A data message with a counter seen before or too old.
    #[error("replayed data counter")]
    ReplayedCounter,
    /// A data message that did not authenticate.
    #[error("data decryption failed")]
    DecryptFailed,
    /// The decrypted packet is not a consistent IPv4 or IPv6 packet.
    #[error("invalid inner packet")]
    InvalidInnerPacket,
    /// The inner source address is not among the sending peer's allowed IPs.
    #[error("inner source address not allowed for peer")]
    DisallowedSource,
    /// Outbound: the peer has no known endpoint.
    #[error("peer has no endpoint")]
    NoEndpoint,
    /// Outbound: the queue of packets waiting for a handshake overflowed (oldest dropped).
    #[error("staged queue full")]
    StagedQueueFull,
    /// Outbound: packets still waiting when the handshake was abandoned.
    #[error("handshake abandoned with packets staged")]
    HandshakeAbandoned,
    /// Inbound: the driver's queue of handshake messages was full.
    #[error("handshake queue full")]
    HandshakeQueueFull,
    /// Inbound: the driver's queue of cookie replies was full (they have their own queue, since
    /// anyone can forge one: a flood of them fills only that queue).
    #[error("cookie reply queue full")]
    CookieQueueFull,
    /// Outbound: no peer's allowed IPs contain the packet's destination.
    #[error("no peer for the destination")]
    NoRoute,
    /// Outbound: the sealed message is larger than one UDP datagram can carry (an interface MTU
    /// above 65,475).
    #[error("packet too large for one UDP datagram")]
    TooLarge,
    /// Outbound: the UDP socket refused the datagram (no route to the endpoint, buffers full, a
    /// firewall rule).
    #[error("UDP send failed")]
    SendFailed,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 24] = [
        DropReason::Malformed,
        DropReason::NoPrivateKey,
        DropReason::InvalidMac1,
        DropReason::RateLimited,
        DropReason::HandshakeFailed,
        DropReason::UnknownPeer,
        DropReason::ReplayedInitiation,
        DropReason::InitiationFlood,
        DropReason::UnexpectedResponse,
        DropReason::UnknownIndex,
        DropReason::InvalidCookieReply,
        DropReason::SessionExpired,
        DropReason::ReplayedCounter,
        DropReason::DecryptFailed,
        DropReason::InvalidInnerPacket,
        DropReason::DisallowedSource,
        DropReason::NoEndpoint,
        DropReason::StagedQueueFull,
        DropReason::HandshakeAbandoned,
        DropReason::HandshakeQueueFull,
        DropReason::NoRoute,
        DropReason::TooLarge,
        DropReason::SendFailed,
        DropReason::CookieQueueFull,
    ];

    /// A stable snake_case name for metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::NoPrivateKey => "no_private_key",
            DropReason::InvalidMac1 => "invalid_mac1",
            DropReason::RateLimited => "rate_limited",
            DropReason::HandshakeFailed => "handshake_failed",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::ReplayedInitiation => "replayed_initiation",
            DropReason::InitiationFlood => "initiation_flood",
            DropReason::UnexpectedResponse => "unexpected_response",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::InvalidCookieReply => "invalid_cookie_reply",
            DropReason::SessionExpired => "session_expired",
            DropReason::ReplayedCounter => "replayed_counter",
            DropReason::DecryptFailed => "decrypt_failed",
            DropReason::InvalidInnerPacket => "invalid_inner_packet",
            DropReason::DisallowedSource => "disallowed_source",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::StagedQueueFull => "staged_queue_full",
            DropReason::HandshakeAbandoned => "handshake_abandoned",
            DropReason::HandshakeQueueFull => "handshake_queue_full",
            DropReason::NoRoute => "no_route",
            DropReason::TooLarge => "too_large",
            DropReason::SendFailed => "send_failed",
            DropReason::CookieQueueFull => "cookie_queue_full",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Drop counters and a few totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    drops: [u64; DropReason::ALL.len()],
    /// Cookie replies sent while under load.
    pub cookie_replies_sent: u64,
}

impl Stats {
    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        self.count_many(reason, 1);
    }
    /// Counts `n` drops for the same reason.
    pub fn count_many(&mut self, reason: DropReason, n: u64) {
        let c = &mut self.drops[reason.index()];
        *c = c.saturating_add(n);
    }
    /// Drops counted for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }
    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Non-zero counters, by name.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (r.name(), self.drops(*r))).filter(|(_, n)| *n > 0)
    }

    /// What was dropped since `earlier` (a copy of these counters taken before), most frequent
    /// first, as "120 invalid_mac1, 3 no_route"; `None` when nothing was.
    pub fn summary_since(&self, earlier: &Stats) -> Option<String> {
        summary(DropReason::ALL.iter().map(|r| (r.name(), self.drops(*r).saturating_sub(earlier.drops(*r)))))
    }
}

/// Drop counts by name as "120 invalid_mac1, 3 no_route": non-zero ones only, most frequent
/// first (ties by name); `None` when all are zero.
pub fn summary<'a>(counts: impl IntoIterator<Item = (&'a str, u64)>) -> Option<String> {
    let mut list: Vec<(&str, u64)> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
    if list.is_empty() {
        return None;
    }
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    Some(list.iter().map(|(name, n)| format!("{n} {name}")).collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_distinct() {
        let mut s = Stats::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                s.count(*r);
            }
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(s.drops(*r), i as u64 + 1, "{}", r.name());
        }
    }

    #[test]
    fn summary_of_what_changed() {
        let mut s = Stats::default();
        s.count_many(DropReason::InvalidMac1, 5);
        s.count(DropReason::NoRoute);
        let earlier = s.clone();
        assert_eq!(s.summary_since(&earlier), None, "nothing new");
        s.count_many(DropReason::InvalidMac1, 120);
        s.count_many(DropReason::NoRoute, 3);
        s.count_many(DropReason::Malformed, 3);
        assert_eq!(s.summary_since(&earlier).as_deref(), Some("120 invalid_mac1, 3 malformed, 3 no_route"));
        assert_eq!(s.summary_since(&Stats::default()).as_deref(), Some("125 invalid_mac1, 4 no_route, 3 malformed"));
    }
}
