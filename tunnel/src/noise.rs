//! The Noise_IKpsk2 handshake as WireGuard frames it: building and consuming initiations and
//! responses, and deriving the transport keys.
//!
//! Pure functions over explicit inputs: ephemeral keys, indices and timestamps are parameters, so
//! the known-answer vector can be replayed byte for byte. MACs are added and checked in
//! [`crate::macs`]; replay and flood checks and all state belong to the caller.
//!
//! Responder side, in order: [`begin_consume_initiation`] (decrypts the initiator's static key so the
//! caller can find the peer), [`InitiationStage1::finish`] (decrypts the timestamp with that
//! peer's keys), then [`create_response`].

use vpn_crypto::blake2s::{hash, kdf1, kdf2, kdf3};
use vpn_crypto::tai64n::{Tai64N, TAI64N_LEN};
use vpn_crypto::{aead, x25519, PresharedKey, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::constants::{CONSTRUCTION, IDENTIFIER, LABEL_COOKIE, LABEL_MAC1};
use crate::wire::{field, put_u32, Initiation, Response, INITIATION_LEN, RESPONSE_LEN, TYPE_INITIATION, TYPE_RESPONSE};

/// Why a handshake message was not accepted. Deliberately coarse: an attacker learns nothing from
/// which step failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// An AEAD did not authenticate.
    #[error("handshake message did not decrypt")]
    Decrypt,
    /// A Diffie-Hellman result was all zeros (low-order point).
    #[error("handshake used a low-order public key")]
    LowOrder,
}

impl From<x25519::LowOrderPoint> for HandshakeError {
    fn from(_: x25519::LowOrderPoint) -> Self {
        HandshakeError::LowOrder
    }
}

impl From<aead::AeadError> for HandshakeError {
    fn from(_: aead::AeadError) -> Self {
        HandshakeError::Decrypt
    }
}

type Key = Zeroizing<[u8; 32]>;

/// Initial chaining key HASH(CONSTRUCTION).
pub fn initial_chaining_key() -> [u8; 32] {
    hash(&[CONSTRUCTION])
}

/// Initial hash HASH(HASH(CONSTRUCTION) || IDENTIFIER), before the responder's static key.
pub fn initial_hash() -> [u8; 32] {
    hash(&[&initial_chaining_key(), IDENTIFIER])
}

/// HASH(label || public key): the key of mac1 (with `LABEL_MAC1`) or of cookie replies (with
/// `LABEL_COOKIE`) for messages sent to the owner of `public`.
pub fn labelled_key(label: &[u8], public: &PublicKey) -> [u8; 32] {
    hash(&[label, public.as_bytes()])
}

/// Our own static identity, with the values derived from it.
pub struct StaticIdentity {
    private: PrivateKey,
    public: PublicKey,
    /// Hash state after mixing our public key: the responder's starting point.
    hash0: [u8; 32],
    /// Key under which peers compute mac1 for messages to us.
    pub mac1_key: [u8; 32],
    /// Key under which we encrypt cookie replies.
    pub cookie_key: [u8; 32],
}

impl StaticIdentity {
    /// Derives everything from a private key.
    pub fn new(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self {
            hash0: hash(&[&initial_hash(), public.as_bytes()]),
            mac1_key: labelled_key(LABEL_MAC1, &public),
            cookie_key: labelled_key(LABEL_COOKIE, &public),
            private,
            public,
        }
    }
    /// Our public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
    /// Our private key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.private
    }
}

impl std::fmt::Debug for StaticIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticIdentity").field("public", &self.public).finish_non_exhaustive()
    }
}

/// What the handshake needs to know about one remote peer.
pub struct PeerKeys {
    /// The peer's static public key.
    pub remote_static: PublicKey,
    /// The pre-shared key (zeros when none).
    pub psk: PresharedKey,
    /// DH(our static, their static), one per local identity used with this peer: at most two, the
    /// primary identity and, during a key rotation, the retiring one. Each is tagged with our
    /// public key, so a handshake always uses the secret of the identity it is addressed to (or
    /// sent from), never another's. Computed on first use because a server configuring thousands
    /// of peers would otherwise spend one scalar multiplication (~90 µs) per peer before it
    /// answers anything. The newest is first.
    static_secrets: [Option<StaticSecret>; 2],
    /// Hash state after mixing the peer's public key: the initiator's starting point.
    hash0: [u8; 32],
    /// Key for mac1 of messages we send to this peer.
    pub mac1_key: [u8; 32],
    /// Key of cookie replies this peer sends us.
    pub cookie_key: [u8; 32],
}

/// DH(our static, their static) for one of our identities.
struct StaticSecret {
    /// Our public key: which identity this secret belongs to.
    local: PublicKey,
    /// The shared secret; `None` when their key is a low-order point (such a peer is accepted in
    /// the configuration but can never complete a handshake).
    secret: Option<Key>,
}

impl PeerKeys {
    /// Precomputes the per-peer values, the static-static DH included.
    pub fn new(identity: Option<&StaticIdentity>, remote_static: PublicKey, psk: PresharedKey) -> Self {
        let mut keys = Self::new_lazy(remote_static, psk);
        keys.ensure_static_secret(identity);
        keys
    }

    /// The per-peer values, leaving the static-static DH for [`PeerKeys::ensure_static_secret`].
    pub fn new_lazy(remote_static: PublicKey, psk: PresharedKey) -> Self {
        Self {
            static_secrets: [None, None],
            hash0: hash(&[&initial_hash(), remote_static.as_bytes()]),
            mac1_key: labelled_key(LABEL_MAC1, &remote_static),
            cookie_key: labelled_key(LABEL_COOKIE, &remote_static),
            remote_static,
            psk,
        }
    }

    /// Computes the static-static DH with `identity` unless it is already known. Call before
    /// [`create_initiation`], [`InitiationStage1::finish`] or [`consume_response`] with that
    /// identity. Two identities are remembered; a third evicts the older one.
    pub fn ensure_static_secret(&mut self, identity: Option<&StaticIdentity>) {
        let Some(id) = identity else { return };
        if self.entry(&id.public).is_some() {
            return;
        }
        let secret = x25519::dh(id.private.as_bytes(), self.remote_static.as_bytes()).ok();
        self.static_secrets[1] = self.static_secrets[0].take();
        self.static_secrets[0] = Some(StaticSecret { local: id.public, secret });
    }

    /// Forgets every static-static DH after our private key changed (recomputed on next use).
    pub fn rekey_identity(&mut self, identity: Option<&StaticIdentity>) {
        self.static_secrets = [None, None];
        let _ = identity;
    }

    /// Forgets the static-static DH of every identity whose public key `keep` refuses (after one
    /// of our identities was dropped); the secret is zeroized.
    pub fn retain_static_secrets(&mut self, mut keep: impl FnMut(&PublicKey) -> bool) {
        for slot in &mut self.static_secrets {
            if slot.as_ref().is_some_and(|s| !keep(&s.local)) {
                *slot = None;
            }
        }
        if self.static_secrets[0].is_none() {
            self.static_secrets.swap(0, 1);
        }
    }

    /// Whether a handshake with this peer is possible (after [`PeerKeys::ensure_static_secret`]).
    pub fn can_handshake(&self) -> bool {
        self.static_secrets.iter().flatten().any(|s| s.secret.is_some())
    }

    /// Whether a handshake with this peer is possible as `identity` (after
    /// [`PeerKeys::ensure_static_secret`] with it).
    pub fn can_handshake_as(&self, identity: &StaticIdentity) -> bool {
        self.entry(&identity.public).is_some_and(|s| s.secret.is_some())
    }

    fn entry(&self, local: &PublicKey) -> Option<&StaticSecret> {
        self.static_secrets.iter().flatten().find(|s| s.local == *local)
    }

    /// The static-static secret of our identity `local`.
    fn static_secret(&self, local: &PublicKey) -> Result<&Key, HandshakeError> {
        self.entry(local).and_then(|s| s.secret.as_ref()).ok_or(HandshakeError::LowOrder)
    }
}

impl std::fmt::Debug for PeerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerKeys").field("remote_static", &self.remote_static).finish_non_exhaustive()
    }
}

/// Transport keys and indices produced by a completed handshake.
pub struct SessionKeys {
    /// Key we seal with.
    pub send: Key,
    /// Key we open with.
    pub recv: Key,
    /// Our index: data messages to us carry it.
    pub local_index: u32,
    /// Their index: our data messages carry it.
    pub remote_index: u32,
    /// Whether we initiated this handshake.
    pub initiator: bool,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

/// The initiator's state between sending an initiation and receiving the response.
pub struct InitiatorState {
    /// Our sender index in the initiation.
    pub local_index: u32,
    /// The public key of the identity the initiation was sent as.
    local_static: PublicKey,
    hash: [u8; 32],
    chaining_key: Key,
    ephemeral: PrivateKey,
}

impl InitiatorState {
    /// The public key of our identity that sent the initiation: the response must be consumed
    /// with that identity.
    pub fn local_static(&self) -> &PublicKey {
        &self.local_static
    }
}

impl std::fmt::Debug for InitiatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiatorState").field("local_index", &self.local_index).finish_non_exhaustive()
    }
}

fn mix_hash(h: &[u8; 32], data: &[u8]) -> [u8; 32] {
    hash(&[h, data])
}

/// Writes an initiation (without mac1/mac2) into `out` and returns the state to keep until the
/// response arrives.
pub fn create_initiation(
    identity: &StaticIdentity,
    peer: &PeerKeys,
    local_index: u32,
    ephemeral: PrivateKey,
    timestamp: Tai64N,
    out: &mut [u8; INITIATION_LEN],
) -> Result<InitiatorState, HandshakeError> {
    use field::initiation as f;
    let ss = peer.static_secret(&identity.public)?;
    out.fill(0);
    put_u32(out, field::TYPE, TYPE_INITIATION);
    put_u32(out, f::SENDER, local_index);

    let e_pub = ephemeral.public_key();
    out[f::EPHEMERAL].copy_from_slice(e_pub.as_bytes());
    let mut ck = kdf1(&initial_chaining_key(), e_pub.as_bytes());
    let mut h = mix_hash(&peer.hash0, e_pub.as_bytes());

    let es = x25519::dh(ephemeral.as_bytes(), peer.remote_static.as_bytes())?;
    let (ck2, k) = kdf2(&ck, &es[..]);
    ck = ck2;
    aead::seal(&k, 0, &h, identity.public.as_bytes(), &mut out[f::STATIC]);
    h = mix_hash(&h, &out[f::STATIC]);

    let (ck2, k) = kdf2(&ck, &ss[..]);
    ck = ck2;
    aead::seal(&k, 0, &h, &timestamp.0, &mut out[f::TIMESTAMP]);
    h = mix_hash(&h, &out[f::TIMESTAMP]);

    Ok(InitiatorState { local_index, local_static: identity.public, hash: h, chaining_key: ck, ephemeral })
}

/// A decrypted initiator identity, before the peer-specific part of the initiation is checked.
pub struct InitiationStage1 {
    /// The initiator's static public key: look the peer up by it.
    pub remote_static: PublicKey,
    /// The initiator's sender index.
    pub remote_index: u32,
    /// The public key of our identity the initiation was addressed to.
    responder: PublicKey,
    remote_ephemeral: [u8; 32],
    hash: [u8; 32],
    chaining_key: Key,
    encrypted_timestamp: [u8; TAI64N_LEN + 16],
}

/// Decrypts the static key of an initiation addressed to `identity` (mac1 already checked).
pub fn begin_consume_initiation(identity: &StaticIdentity, msg: &Initiation<'_>) -> Result<InitiationStage1, HandshakeError> {
    use field::initiation as f;
    let b = msg.bytes();
    let e: [u8; 32] = b[f::EPHEMERAL].try_into().expect("fixed field");
    let mut ck = kdf1(&initial_chaining_key(), &e);
    let mut h = mix_hash(&identity.hash0, &e);

    let es = x25519::dh(identity.private.as_bytes(), &e)?;
    let (ck2, k) = kdf2(&ck, &es[..]);
    ck = ck2;
    let mut s = [0u8; 32];
    aead::open(&k, 0, &h, &b[f::STATIC], &mut s)?;
    h = mix_hash(&h, &b[f::STATIC]);
    Ok(InitiationStage1 {
        remote_static: PublicKey(s),
        remote_index: msg.sender(),
        responder: identity.public,
        remote_ephemeral: e,
        hash: h,
        chaining_key: ck,
        encrypted_timestamp: b[f::TIMESTAMP].try_into().expect("fixed field"),
    })
}

/// A fully authenticated initiation, ready to be answered.
pub struct ConsumedInitiation {
    /// The initiator's timestamp: the caller checks it is newer than the last one accepted.
    pub timestamp: Tai64N,
    /// The initiator's sender index.
    pub remote_index: u32,
    remote_ephemeral: [u8; 32],
    hash: [u8; 32],
    chaining_key: Key,
}

impl InitiationStage1 {
    /// The public key of our identity the initiation was addressed to (the one given to
    /// [`begin_consume_initiation`]).
    pub fn responder(&self) -> &PublicKey {
        &self.responder
    }

    /// Decrypts the timestamp with the peer's precomputed static-static secret for the identity
    /// the initiation was addressed to (see [`PeerKeys::ensure_static_secret`]).
    pub fn finish(self, peer: &PeerKeys) -> Result<ConsumedInitiation, HandshakeError> {
        let ss = peer.static_secret(&self.responder)?;
        let (ck, k) = kdf2(&self.chaining_key, &ss[..]);
        let mut t = [0u8; TAI64N_LEN];
        aead::open(&k, 0, &self.hash, &self.encrypted_timestamp, &mut t)?;
        Ok(ConsumedInitiation {
            timestamp: Tai64N(t),
            remote_index: self.remote_index,
            remote_ephemeral: self.remote_ephemeral,
            hash: mix_hash(&self.hash, &self.encrypted_timestamp),
            chaining_key: ck,
        })
    }
}

/// Writes a response (without mac1/mac2) to a consumed initiation and returns the session keys.
pub fn create_response(
    peer: &PeerKeys,
    consumed: &ConsumedInitiation,
    local_index: u32,
    ephemeral: PrivateKey,
    out: &mut [u8; RESPONSE_LEN],
) -> Result<SessionKeys, HandshakeError> {
    use field::response as f;
    out.fill(0);
    put_u32(out, field::TYPE, TYPE_RESPONSE);
    put_u32(out, f::SENDER, local_index);
    put_u32(out, f::RECEIVER, consumed.remote_index);
    let e_pub = ephemeral.public_key();
    out[f::EPHEMERAL].copy_from_slice(e_pub.as_bytes());

    let mut ck = kdf1(&consumed.chaining_key, e_pub.as_bytes());
    let mut h = mix_hash(&consumed.hash, e_pub.as_bytes());
    ck = kdf1(&ck, &x25519::dh(ephemeral.as_bytes(), &consumed.remote_ephemeral)?[..]);
    ck = kdf1(&ck, &x25519::dh(ephemeral.as_bytes(), peer.remote_static.as_bytes())?[..]);
    let (ck2, tau, k) = kdf3(&ck, peer.psk.as_bytes());
    ck = ck2;
    h = mix_hash(&h, &tau[..]);
    aead::seal(&k, 0, &h, &[], &mut out[f::EMPTY]);
    let (recv, send) = kdf2(&ck, &[]);
    Ok(SessionKeys { send, recv, local_index, remote_index: consumed.remote_index, initiator: false })
}

/// Consumes a response (mac1 already checked) to the initiation described by `state`.
pub fn consume_response(
    identity: &StaticIdentity,
    peer: &PeerKeys,
    state: &InitiatorState,
    msg: &Response<'_>,
) -> Result<SessionKeys, HandshakeError> {
    use field::response as f;
    let b = msg.bytes();
    let e: [u8; 32] = b[f::EPHEMERAL].try_into().expect("fixed field");
    let mut ck = kdf1(&state.chaining_key, &e);
    let mut h = mix_hash(&state.hash, &e);
    ck = kdf1(&ck, &x25519::dh(state.ephemeral.as_bytes(), &e)?[..]);
    ck = kdf1(&ck, &x25519::dh(identity.private.as_bytes(), &e)?[..]);
    let (ck2, tau, k) = kdf3(&ck, peer.psk.as_bytes());
    ck = ck2;
    h = mix_hash(&h, &tau[..]);
    aead::open(&k, 0, &h, &b[f::EMPTY], &mut [])?;
    let (send, recv) = kdf2(&ck, &[]);
    Ok(SessionKeys { send, recv, local_index: state.local_index, remote_index: msg.sender(), initiator: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    fn initiation(from: &StaticIdentity, to: &PublicKey) -> [u8; INITIATION_LEN] {
        let keys = PeerKeys::new(Some(from), *to, PresharedKey::default());
        let mut out = [0u8; INITIATION_LEN];
        create_initiation(from, &keys, 7, PrivateKey::from_bytes([9; 32]), Tai64N([1; 12]), &mut out).unwrap();
        out
    }

    #[test]
    fn each_identity_uses_its_own_static_secret() {
        let client = StaticIdentity::new(PrivateKey::from_bytes([1; 32]));
        let primary = StaticIdentity::new(PrivateKey::from_bytes([2; 32]));
        let retiring = StaticIdentity::new(PrivateKey::from_bytes([3; 32]));
        let msg = initiation(&client, retiring.public_key());
        let Ok(Message::Initiation(m)) = Message::parse(&msg) else { panic!("initiation") };
        // Only the retiring identity can open the static key.
        assert!(begin_consume_initiation(&primary, &m).is_err());
        let stage1 = || begin_consume_initiation(&retiring, &m).unwrap();
        assert_eq!(stage1().responder(), retiring.public_key());

        // With only the primary identity's DH cached, the stage is refused, never finished with it.
        let mut keys = PeerKeys::new(Some(&primary), *client.public_key(), PresharedKey::default());
        assert!(keys.can_handshake_as(&primary) && !keys.can_handshake_as(&retiring));
        assert!(stage1().finish(&keys).is_err());
        // With both, it finishes with the retiring one's.
        keys.ensure_static_secret(Some(&retiring));
        assert!(keys.can_handshake_as(&primary) && keys.can_handshake_as(&retiring));
        assert_eq!(stage1().finish(&keys).unwrap().timestamp, Tai64N([1; 12]));
        // Dropping the retiring identity forgets its DH.
        keys.retain_static_secrets(|k| k == primary.public_key());
        assert!(keys.can_handshake_as(&primary) && !keys.can_handshake_as(&retiring));
        assert!(stage1().finish(&keys).is_err());
        // A third identity evicts the older of two.
        let third = StaticIdentity::new(PrivateKey::from_bytes([4; 32]));
        keys.ensure_static_secret(Some(&retiring));
        keys.ensure_static_secret(Some(&third));
        assert!(!keys.can_handshake_as(&primary) && keys.can_handshake_as(&retiring) && keys.can_handshake_as(&third));
    }
}
