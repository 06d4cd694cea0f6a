//! The two kinds of I/O the engine does, behind small traits so tests can run engines over
//! in-memory twins ([`crate::memory`]) and the real ones live in [`crate::tun`] and
//! [`crate::udp`].
//!
//! Every receive takes a timeout so reader threads can notice shutdown without signals.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A TUN device: whole IP packets in and out.
pub trait TunIo: Send + Sync {
    /// Reads one packet; `Ok(None)` when nothing arrived within `timeout`. An error means the
    /// device is gone (the engine then stops).
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>>;
    /// Writes one packet.
    fn send(&self, packet: &[u8]) -> io::Result<()>;
    /// The device MTU (the largest inner packet).
    fn mtu(&self) -> usize;
}

/// One bound UDP socket.
pub trait UdpIo: Send + Sync {
    /// Receives one datagram; `Ok(None)` on timeout.
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<(usize, SocketAddr)>>;
    /// Sends one datagram.
    fn send(&self, buf: &[u8], destination: SocketAddr) -> io::Result<()>;
    /// Whether this socket can send to `destination`'s address family.
    fn serves(&self, destination: &SocketAddr) -> bool;
    /// Sets the fwmark (SO_MARK) of outgoing packets; 0 clears it.
    fn set_mark(&self, mark: u32) -> io::Result<()>;
}

/// The sockets bound for one listen port (IPv4 and IPv6 where available).
pub struct BoundSockets {
    /// The port actually bound (never 0).
    pub port: u16,
    /// One socket per address family.
    pub sockets: Vec<Arc<dyn UdpIo>>,
}

/// Binds UDP sockets.
pub trait Network: Send + Sync {
    /// Binds `port` (0 = any free port) on every address family, with `fwmark` (0 = none). Fails
    /// with `AddrInUse` when the port is taken.
    fn bind(&self, port: u16, fwmark: u32) -> io::Result<BoundSockets>;
}
