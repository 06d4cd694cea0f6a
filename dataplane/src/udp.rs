//! Real UDP sockets through `socket2`: one IPv4 and one IPv6-only socket on the same port, large
//! buffers, optional SO_MARK (fwmark), and batched I/O (the `batch` module): `recvmmsg` with UDP GRO,
//! `sendmsg` with UDP GSO. GSO and GRO are probed per socket and can be turned off
//! ([`UdpOptions`]); a GSO send the route's device refuses turns GSO off for that socket and
//! falls back to `sendmmsg`.

mod batch;

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::io::{BoundSockets, Network, RecvBatch, UdpIo};

/// Socket buffer size asked for: past the kernel's cap (net.core.[rw]mem_max) with the FORCE
/// variants when running as root.
const SOCKET_BUFFER: usize = 8 << 20;

/// Which UDP offloads to use where the kernel has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpOptions {
    /// Send many datagrams per call with UDP_SEGMENT (GSO).
    pub gso: bool,
    /// Receive coalesced datagrams with UDP_GRO.
    pub gro: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        Self { gso: true, gro: true }
    }
}

/// The host's network stack.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNetwork {
    options: UdpOptions,
}

impl SystemNetwork {
    /// The host's stack with these offload choices.
    pub fn new(options: UdpOptions) -> Self {
        Self { options }
    }
}

struct Udp {
    socket: UdpSocket,
    v6: bool,
    gso: AtomicBool,
    /// The receive timeout set on the socket (SO_RCVTIMEO), in milliseconds; 0 while none is.
    read_timeout_ms: AtomicU64,
}

impl Udp {
    /// Makes a blocking receive give up after `timeout` (at least 1 ms); a system call only when
    /// the timeout changes.
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u64;
        if self.read_timeout_ms.load(Ordering::Relaxed) != ms {
            self.socket.set_read_timeout(Some(Duration::from_millis(ms)))?;
            self.read_timeout_ms.store(ms, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl UdpIo for Udp {
    fn recv_batch(&self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        self.set_read_timeout(timeout)?;
        let n = batch::recv_batch(self.socket.as_raw_fd(), batch)?;
        for m in &mut batch.meta[..n] {
            m.source = canonical(m.source);
        }
        Ok(n)
    }

    fn send_segments(&self, segments: &[IoSlice<'_>], destination: SocketAddr) -> io::Result<usize> {
        let fd = self.socket.as_raw_fd();
        if segments.len() > 1 && self.gso.load(Ordering::Relaxed) {
            match batch::send_gso(fd, segments, destination) {
                Ok(()) => return Ok(segments.len()),
                // The socket or its device cannot do GSO at all: off for good.
                Err(e) if batch::gso_unsupported(&e) => {
                    self.gso.store(false, Ordering::Relaxed);
                    tracing::info!(error = %e, "UDP GSO refused on this socket; sending datagrams one by one");
                }
                // This destination's path refused it (e.g. its MTU is below the segment size):
                // these datagrams one by one, GSO stays on for the others.
                Err(e) if batch::gso_refused_here(&e) => tracing::debug!(%destination, error = %e, "UDP GSO refused for this send"),
                Err(e) => return Err(e),
            }
        }
        batch::send_each(fd, segments, destination)
    }

    fn max_segments(&self) -> usize {
        batch::MAX_GSO_SEGMENTS
    }

    fn serves(&self, destination: &SocketAddr) -> bool {
        destination.is_ipv6() == self.v6
    }

    fn set_mark(&self, mark: u32) -> io::Result<()> {
        socket2::SockRef::from(&self.socket).set_mark(mark)
    }
}

/// IPv4-mapped IPv6 sources are reported as IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

fn set_buffers(s: &Socket) {
    let fd = s.as_raw_fd();
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        // FORCE needs CAP_NET_ADMIN; without it the kernel caps the plain option. Best effort.
        if batch::set_int_option(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER as libc::c_int).is_err() {
            let _ = batch::set_int_option(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER as libc::c_int);
        }
    }
}

fn open(addr: SocketAddr, fwmark: u32, options: UdpOptions) -> io::Result<Udp> {
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    set_buffers(&s);
    if fwmark != 0 {
        s.set_mark(fwmark)?;
    }
    s.bind(&addr.into())?;
    let fd = s.as_raw_fd();
    // GSO is there when the kernel knows the option (4.18); GRO when it accepts it.
    let gso = options.gso && batch::get_int_option(fd, libc::SOL_UDP, batch::UDP_SEGMENT).is_ok();
    if options.gro {
        let _ = batch::set_int_option(fd, libc::SOL_UDP, batch::UDP_GRO, 1);
    }
    Ok(Udp { socket: s.into(), v6: addr.is_ipv6(), gso: AtomicBool::new(gso), read_timeout_ms: AtomicU64::new(0) })
}

fn local_port(s: &UdpSocket) -> io::Result<u16> {
    Ok(s.local_addr()?.port())
}

impl Network for SystemNetwork {
    fn bind(&self, port: u16, fwmark: u32) -> io::Result<BoundSockets> {
        // With port 0 the IPv6 socket must get the port the IPv4 one drew; retry a few times when
        // it is taken on IPv6 only.
        for _ in 0..10 {
            let v4 = open(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), fwmark, self.options)?;
            let bound = local_port(&v4.socket)?;
            let v6 = match open(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), bound), fwmark, self.options) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && port == 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
                // No IPv6 on this host: run on IPv4 alone.
                Err(_) => None,
            };
            let mut sockets: Vec<Arc<dyn UdpIo>> = vec![Arc::new(v4)];
            if let Some(v6) = v6 {
                sockets.push(Arc::new(v6));
            }
            return Ok(BoundSockets { port: bound, sockets });
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, "no port free on both IPv4 and IPv6"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(options: UdpOptions) {
        let net = SystemNetwork::new(options);
        let a = net.bind(0, 0).unwrap();
        assert_ne!(a.port, 0);
        let err = net.bind(a.port, 0).err().expect("port in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let b = net.bind(0, 0).unwrap();
        let dst = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), b.port);
        // Three equal segments and a shorter last one, in one call: four datagrams in order.
        let segs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; if i == 3 { 50 } else { 200 }]).collect();
        let slices: Vec<IoSlice<'_>> = segs.iter().map(|s| IoSlice::new(s)).collect();
        assert_eq!(a.sockets[0].send_segments(&slices, dst).unwrap(), 4);
        let mut batch = RecvBatch::new(8, 65_536);
        let mut got = Vec::new();
        while got.len() < 4 {
            let n = b.sockets[0].recv_batch(&mut batch, Duration::from_secs(2)).unwrap();
            assert!(n > 0, "datagrams arrive");
            for i in 0..n {
                assert_eq!(batch.meta[i].source.port(), a.port);
                for at in batch.datagram_ranges(i) {
                    got.push(batch.data_mut()[at].to_vec());
                }
            }
        }
        assert_eq!(got, segs);
        // Nothing more: a timeout reads as 0.
        assert_eq!(b.sockets[0].recv_batch(&mut batch, Duration::from_millis(20)).unwrap(), 0);
    }

    #[test]
    fn batched_round_trip_with_offloads() {
        round_trip(UdpOptions::default());
    }

    #[test]
    fn batched_round_trip_without_offloads() {
        round_trip(UdpOptions { gso: false, gro: false });
    }
}
