//! The WireGuard protocol without I/O.
//!
//! This crate opens no socket or file, spawns no thread, reads no clock and owns no global random
//! number generator: time (`now: Instant`) and a cryptographically secure RNG are parameters, so
//! everything here runs deterministically under a virtual clock. (clippy's `disallowed-methods`
//! enforces the clock rule; see `clippy.toml`.)
//!
//! Layers, bottom up:
//!
//! - [`wire`]: checked views of the four messages;
//! - [`noise`]: the Noise_IKpsk2 handshake; [`macs`]: mac1/mac2 and cookies;
//! - [`session`]: transport keys, counters and the [`replay`] window; [`keypairs`]: the
//!   previous/current/next slots;
//! - [`ratelimit`] and [`load`]: the defences used under load; [`inner`]: checks on decrypted packets;
//! - [`timers`]: the per-peer protocol timers;
//! - [`Device`]: one interface, tying it all together behind `handle_*` / `poll_*` methods.

pub mod constants;
mod device;
pub mod inner;
pub mod keypairs;
pub mod load;
pub mod macs;
pub mod noise;
mod peer;
pub mod ratelimit;
pub mod replay;
pub mod session;
mod stats;
pub mod timers;
pub mod wire;

pub use device::{ConfigError, Device, Event, Received, RxOutcome, Transmit, DEFAULT_HANDSHAKE_QUEUE, DEFAULT_MTU};
pub use peer::{Peer, PeerConfig, PeerId, PeerInfo};
pub use session::{Session, SessionError};
pub use stats::{summary as drop_summary, DropReason, Stats};

/// A real instant for unit tests, which otherwise never read the clock.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_instant() -> std::time::Instant {
    std::time::Instant::now()
}
