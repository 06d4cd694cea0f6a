//! In-memory twins of the TUN device and the UDP network, so whole engines can be tested in one
//! process without root: [`MemoryTun`] is a pair of queues, [`MemoryNetwork`] a switch that
//! delivers datagrams between [`MemoryHost`]s by address. A host can change its address
//! (roaming) and a network can be told to drop traffic.
//!
//! Both recycle their packet buffers through bounded free lists, so that a test can watch the
//! engine's own allocations: in steady state the twins allocate nothing per packet. The network
//! does it by itself (a datagram's buffer goes back to the network's free list once the receiver
//! has copied it out). The TUN twin needs the test's help: buffers from [`MemoryTun::take`] come
//! back through [`MemoryTun::recycle`], and packets to [`MemoryTun::inject`] can be written into
//! buffers from [`MemoryTun::buffer`], which hands out the injected ones the engine has read.
//! Without that help the TUN twin allocates a buffer for every packet the engine writes.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::io::{BoundSockets, Network, RecvBatch, RecvMeta, TunIo, UdpIo};

const QUEUE: usize = 4096;

/// Capacity given to a new datagram buffer: a datagram of a 1500-byte path MTU fits, so recycled
/// buffers rarely need to grow (a larger datagram grows its buffer once, and it stays grown).
const DATAGRAM_CAPACITY: usize = 2048;

/// A bounded free list of buffers: taking and returning allocate nothing.
struct FreeList {
    tx: Sender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
}

impl FreeList {
    fn new() -> Self {
        let (tx, rx) = bounded(QUEUE);
        Self { tx, rx }
    }

    /// An empty buffer: a recycled one, or a new one with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        match self.rx.try_recv() {
            Ok(mut buf) => {
                buf.clear();
                buf
            }
            Err(_) => Vec::with_capacity(capacity),
        }
    }

    /// Keeps `buf` for reuse, or frees it when the list is full.
    fn put(&self, buf: Vec<u8>) {
        let _ = self.tx.try_send(buf);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TUN device made of two queues, each with a free list of buffers to recycle.
pub struct MemoryTun {
    inbound: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    outbound: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
    /// Injected buffers the engine has read, for [`MemoryTun::buffer`].
    inbound_free: FreeList,
    /// Buffers handed back by [`MemoryTun::recycle`], for the packets the engine writes.
    outbound_free: FreeList,
    closed: AtomicBool,
    mtu: AtomicUsize,
}

impl MemoryTun {
    /// A device with this MTU.
    pub fn new(mtu: usize) -> Arc<Self> {
        Arc::new(Self {
            inbound: bounded(QUEUE),
            outbound: bounded(QUEUE),
            inbound_free: FreeList::new(),
            outbound_free: FreeList::new(),
            closed: AtomicBool::new(false),
            mtu: AtomicUsize::new(mtu),
        })
    }

    /// Hands the engine a packet, as if the host's stack had routed it into the interface. Once
    /// the engine has read it, its buffer is kept for [`MemoryTun::buffer`] if it has room for an
    /// MTU-sized packet (and the free list has room).
    pub fn inject(&self, packet: Vec<u8>) {
        let _ = self.inbound.0.send(packet);
    }

    /// An empty buffer to write a packet for [`MemoryTun::inject`] into, with room for an
    /// MTU-sized packet: one the engine has read already, or a new one when there is none.
    pub fn buffer(&self) -> Vec<u8> {
        self.inbound_free.take(self.mtu())
    }

    /// The next packet the engine wrote to the interface.
    pub fn take(&self, timeout: Duration) -> Option<Vec<u8>> {
        self.outbound.1.recv_timeout(timeout).ok()
    }

    /// Hands back a buffer from [`MemoryTun::take`], for a later packet the engine writes to
    /// reuse; kept while the free list has room (as many buffers as the queue holds packets).
    pub fn recycle(&self, buf: Vec<u8>) {
        self.outbound_free.put(buf);
    }

    /// Changes the MTU, as `ip link set mtu` would on a running interface.
    pub fn set_mtu(&self, mtu: usize) {
        self.mtu.store(mtu, Ordering::SeqCst);
    }

    /// Removes the interface: the engine's next read fails.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl TunIo for MemoryTun {
    fn recv_batch(&self, bufs: &mut [&mut [u8]], sizes: &mut [usize], offset: usize, timeout: Duration) -> io::Result<usize> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "interface removed"));
        }
        let first = match self.inbound.1.recv_timeout(timeout) {
            Ok(p) => p,
            Err(RecvTimeoutError::Timeout) => return Ok(0),
            Err(RecvTimeoutError::Disconnected) => return Err(io::Error::new(io::ErrorKind::NotConnected, "interface removed")),
        };
        // Then whatever else is already queued, as a batched read would.
        let mut n = 0;
        for p in std::iter::once(first).chain(std::iter::from_fn(|| self.inbound.1.try_recv().ok())) {
            // A packet longer than the buffer is cut short and reported whole, as a TUN device
            // without offload does.
            let room = &mut bufs[n][offset..];
            let len = p.len().min(room.len());
            room[..len].copy_from_slice(&p[..len]);
            sizes[n] = p.len();
            n += 1;
            // Only buffers that hold any packet without growing are worth keeping.
            if p.capacity() >= self.mtu() {
                self.inbound_free.put(p);
            }
            if n == bufs.len().min(sizes.len()) {
                break;
            }
        }
        Ok(n)
    }

    fn send_batch(&self, packets: &mut [&mut [u8]]) -> io::Result<()> {
        for p in packets.iter() {
            let mut buf = self.outbound_free.take(self.mtu().max(p.len()));
            buf.extend_from_slice(p);
            if let Err(full) = self.outbound.0.try_send(buf) {
                self.outbound_free.put(full.into_inner());
            }
        }
        Ok(())
    }

    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::SeqCst)
    }
}

type Datagram = (Vec<u8>, SocketAddr);

/// A switch between in-memory hosts. Datagram buffers are recycled: a receiving socket hands
/// each one back to the network once it has copied the datagram out.
pub struct MemoryNetwork {
    ports: Mutex<HashMap<SocketAddr, Sender<Datagram>>>,
    down: AtomicBool,
    refusing: AtomicBool,
    free: FreeList,
}

impl Default for MemoryNetwork {
    fn default() -> Self {
        Self { ports: Mutex::default(), down: AtomicBool::new(false), refusing: AtomicBool::new(false), free: FreeList::new() }
    }
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

    /// Makes every send fail (true), as a socket with no route to its destination does, or
    /// succeed again (false).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
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
    fn recv_batch(&self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize> {
        let Ok(first) = self.rx.recv_timeout(timeout) else { return Ok(0) };
        let mut n = 0;
        for (d, from) in std::iter::once(first).chain(std::iter::from_fn(|| self.rx.try_recv().ok())) {
            let buf = batch.slot_mut(n);
            let len = d.len().min(buf.len());
            buf[..len].copy_from_slice(&d[..len]);
            batch.meta[n] = RecvMeta::single(len, from);
            self.net.free.put(d);
            n += 1;
            if n == batch.count() {
                break;
            }
        }
        Ok(n)
    }

    fn send_segments(&self, segments: &[IoSlice<'_>], destination: SocketAddr) -> io::Result<usize> {
        if self.net.refusing.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::NetworkUnreachable.into());
        }
        if self.net.down.load(Ordering::SeqCst) {
            return Ok(segments.len());
        }
        let from = *lock(&self.addr);
        if let Some(tx) = lock(&self.net.ports).get(&destination) {
            for s in segments {
                let mut buf = self.net.free.take(DATAGRAM_CAPACITY.max(s.len()));
                buf.extend_from_slice(s);
                if let Err(full) = tx.try_send((buf, from)) {
                    self.net.free.put(full.into_inner().0);
                }
            }
        }
        Ok(segments.len())
    }

    fn max_segments(&self) -> usize {
        64
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
