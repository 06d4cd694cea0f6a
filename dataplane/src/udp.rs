//! Real UDP sockets through `socket2`: one IPv4 and one IPv6-only socket on the same port, large
//! buffers, optional SO_MARK (fwmark).

use std::io;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::io::{BoundSockets, Network, UdpIo};

/// Socket buffer size asked for (the kernel may cap it).
const SOCKET_BUFFER: usize = 4 << 20;

/// The host's network stack.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemNetwork;

struct Udp {
    socket: UdpSocket,
    v6: bool,
}

impl UdpIo for Udp {
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<(usize, SocketAddr)>> {
        self.socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        match self.socket.recv_from(buf) {
            Ok((n, from)) => Ok(Some((n, canonical(from)))),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => Ok(None),
            // ICMP errors from earlier sends surface here; they say nothing about this socket.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&self, buf: &[u8], destination: SocketAddr) -> io::Result<()> {
        self.socket.send_to(buf, destination).map(|_| ())
    }

    fn serves(&self, destination: &SocketAddr) -> bool {
        destination.is_ipv6() == self.v6
    }

    fn set_mark(&self, mark: u32) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            socket2::SockRef::from(&self.socket).set_mark(mark)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = mark;
            Err(io::Error::from(io::ErrorKind::Unsupported))
        }
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

fn open(addr: SocketAddr, fwmark: u32) -> io::Result<Socket> {
    let domain = if addr.is_ipv6() { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max; FORCE variants need root.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    #[cfg(target_os = "linux")]
    if fwmark != 0 {
        s.set_mark(fwmark)?;
    }
    s.bind(&addr.into())?;
    Ok(s)
}

fn local_port(s: &Socket) -> io::Result<u16> {
    s.local_addr()?.as_socket().map(|a| a.port()).ok_or_else(|| io::Error::other("socket without address"))
}

impl Network for SystemNetwork {
    fn bind(&self, port: u16, fwmark: u32) -> io::Result<BoundSockets> {
        // With port 0 the IPv6 socket must get the port the IPv4 one drew; retry a few times when
        // it is taken on IPv6 only.
        for _ in 0..10 {
            let v4 = open(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), fwmark)?;
            let bound = local_port(&v4)?;
            let v6 = match open(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), bound), fwmark) {
                Ok(s) => Some(s),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && port == 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
                // No IPv6 on this host: run on IPv4 alone.
                Err(_) => None,
            };
            let mut sockets: Vec<Arc<dyn UdpIo>> = vec![Arc::new(Udp { socket: v4.into(), v6: false })];
            if let Some(v6) = v6 {
                sockets.push(Arc::new(Udp { socket: v6.into(), v6: true }));
            }
            return Ok(BoundSockets { port: bound, sockets });
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, "no port free on both IPv4 and IPv6"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_both_families_on_one_port_and_refuses_a_taken_one() {
        let net = SystemNetwork;
        let a = net.bind(0, 0).unwrap();
        assert_ne!(a.port, 0);
        let err = net.bind(a.port, 0).err().expect("port in use");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // Loopback round trip on the IPv4 socket.
        let b = net.bind(0, 0).unwrap();
        let dst = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), b.port);
        a.sockets[0].send(b"hi", dst).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.sockets[0].recv(&mut buf, Duration::from_secs(2)).unwrap().unwrap();
        assert_eq!(&buf[..n], b"hi");
        assert_eq!(from.port(), a.port);
    }
}
