//! In-memory twins of the TUN device and the UDP network, so whole engines can be tested in one
//! process without root: [`MemoryTun`] is a pair of queues, [`MemoryNetwork`] a switch that
//! delivers datagrams between [`MemoryHost`]s by address. A host can change its address
//! (roaming) and a network can be told to drop traffic.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::io::{BoundSockets, Network, TunIo, UdpIo};

const QUEUE: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TUN device made of two queues.
pub struct MemoryTun {
    inbound: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    outbound: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    closed: AtomicBool,
    mtu: usize,
}

impl MemoryTun {
    /// A device with this MTU.
    pub fn new(mtu: usize) -> Arc<Self> {
        Arc::new(Self { inbound: bounded(QUEUE), outbound: bounded(QUEUE), closed: AtomicBool::new(false), mtu })
    }

    /// Hands the engine a packet, as if the host's stack had routed it into the interface.
    pub fn inject(&self, packet: Vec<u8>) {
        let _ = self.inbound.0.send(packet);
    }

    /// The next packet the engine wrote to the interface.
    pub fn take(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.outbound.1.recv_timeout(timeout).ok()
    }

    /// Removes the interface: the engine's next read fails.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl TunIo for MemoryTun {
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "interface removed"));
        }
        match self.inbound.1.recv_timeout(timeout) {
            Ok(p) => {
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                Ok(Some(n))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(io::Error::new(io::ErrorKind::NotConnected, "interface removed")),
        }
    }

    fn send(&self, packet: &[u8]) -> io::Result<()> {
        let _ = self.outbound.0.try_send(packet.to_vec());
        Ok(())
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}

type Datagram = (Vec<u8>, SocketAddr);

/// A switch between in-memory hosts.
#[derive(Default)]
pub struct MemoryNetwork {
    ports: Mutex<HashMap<SocketAddr, Sender<Datagram>>>,
    down: AtomicBool,
}

impl MemoryNetwork {
    /// A network with no host.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A host with this address on the network.
    pub fn host(self: &Arc<Self>, ip: IpAddr) -> Arc<MemoryHost> {
        Arc::new(MemoryHost { net: Arc::clone(self), ip: Mutex::new(ip), sockets: Mutex::new(Vec::new()) })
    }

    /// Drops (true) or delivers (false) every datagram from now on.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

/// One host's view of the network: binds sockets on its address.
pub struct MemoryHost {
    net: Arc<MemoryNetwork>,
    ip: Mutex<IpAddr>,
    sockets: Mutex<Vec<Weak<MemoryUdp>>>,
}

impl MemoryHost {
    /// The host's address now.
    pub fn ip(&self) -> IpAddr {
        *lock(&self.ip)
    }

    /// Moves the host to another address (roaming): its sockets keep their ports.
    pub fn move_to(&self, ip: IpAddr) {
        *lock(&self.ip) = ip;
        let mut ports = lock(&self.net.ports);
        for s in lock(&self.sockets).iter().filter_map(Weak::upgrade) {
            let mut addr = lock(&s.addr);
            if let Some(tx) = ports.remove(&addr) {
                addr.set_ip(ip);
                ports.insert(*addr, tx);
            }
        }
    }
}

/// A socket of a [`MemoryHost`].
pub struct MemoryUdp {
    net: Arc<MemoryNetwork>,
    addr: Mutex<SocketAddr>,
    rx: Receiver<Datagram>,
}

impl Drop for MemoryUdp {
    fn drop(&mut self) {
        lock(&self.net.ports).remove(&lock(&self.addr));
    }
}

impl UdpIo for MemoryUdp {
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<(usize, SocketAddr)>> {
        match self.rx.recv_timeout(timeout) {
            Ok((d, from)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(Some((n, from)))
            }
            Err(_) => Ok(None),
        }
    }

    fn send(&self, buf: &[u8], destination: SocketAddr) -> io::Result<()> {
        if self.net.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let from = *lock(&self.addr);
        if let Some(tx) = lock(&self.net.ports).get(&destination) {
            let _ = tx.try_send((buf.to_vec(), from));
        }
        Ok(())
    }

    fn serves(&self, destination: &SocketAddr) -> bool {
        destination.is_ipv4() == lock(&self.addr).is_ipv4()
    }

    fn set_mark(&self, _mark: u32) -> io::Result<()> {
        Ok(())
    }
}

impl Network for MemoryHost {
    fn bind(&self, port: u16, _fwmark: u32) -> io::Result<BoundSockets> {
        let ip = self.ip();
        let mut ports = lock(&self.net.ports);
        let port = if port == 0 {
            (40000..u16::MAX).find(|p| !ports.contains_key(&SocketAddr::new(ip, *p))).ok_or(io::ErrorKind::AddrInUse)?
        } else {
            port
        };
        let addr = SocketAddr::new(ip, port);
        if ports.contains_key(&addr) {
            return Err(io::ErrorKind::AddrInUse.into());
        }
        let (tx, rx) = bounded(QUEUE);
        ports.insert(addr, tx);
        drop(ports);
        let sock = Arc::new(MemoryUdp { net: Arc::clone(&self.net), addr: Mutex::new(addr), rx });
        let mut mine = lock(&self.sockets);
        mine.retain(|s| s.strong_count() > 0);
        mine.push(Arc::downgrade(&sock));
        Ok(BoundSockets { port, sockets: vec![sock] })
    }
}
