//! The two kinds of I/O the engine does, behind small traits so tests can run engines over
//! in-memory twins ([`crate::memory`]) and the real ones live in [`crate::tun`] and
//! [`crate::udp`].
//!
//! Both move packets in batches: one call reads or writes many packets (with segmentation
//! offload, one system call carries a 64 KiB super-packet). Every receive takes a timeout so
//! reader threads can notice shutdown without signals.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Room the engine leaves in front of every packet buffer it hands [`TunIo::recv_batch`], for
/// the data message header that is written there when the packet is sealed in place.
pub const TUN_HEADROOM: usize = 16;

/// Buffers a single TUN read may need: the segments of one 64 KiB super-packet at the smallest
/// MSS the engine expects (512 bytes).
pub const TUN_READ_SEGMENTS: usize = 128;

/// A TUN device: whole IP packets in and out, in batches.
pub trait TunIo: Send + Sync {
    /// Reads one batch into `bufs`: packet `i` is `bufs[i][offset..offset + sizes[i]]`. Returns
    /// the number of packets, 0 when nothing arrived within `timeout`. A segmentation-offload
    /// super-packet is split here into MTU-sized packets. An error means the device is gone (the
    /// engine then stops). Each buffer should hold `offset` plus the MTU: a packet that does not
    /// fit is reported with `sizes[i]` past the end of its buffer, or dropped here, and the
    /// implementation's [`TunIo::mtu`] then says how large the buffers need to be. Implementations keep
    /// reading while packets are ready and at least [`TUN_READ_SEGMENTS`] buffers are left.
    fn recv_batch(&self, bufs: &mut [&mut [u8]], sizes: &mut [usize], offset: usize, timeout: Duration) -> io::Result<usize>;
    /// Writes whole IP packets, in order for each flow. The device may coalesce consecutive
    /// packets of one flow into one write (GRO), rewriting the first one's headers in place.
    fn send_batch(&self, packets: &mut [&mut [u8]]) -> io::Result<()>;
    /// The device MTU (the largest inner packet) as last seen. It can change while the engine
    /// runs (`ip link set mtu`): an implementation notices when a packet does not fit the buffers
    /// it was given (that packet is reported with its whole length, longer than its buffer, and
    /// dropped by the engine) and whenever [`TunIo::refresh_mtu`] is called.
    fn mtu(&self) -> usize;
    /// Asks the device for its MTU now and returns it (what [`TunIo::mtu`] says from then on).
    /// The engine calls this about once a second. Default: [`TunIo::mtu`], for devices whose MTU
    /// is known without asking.
    fn refresh_mtu(&self) -> usize {
        self.mtu()
    }
}

/// Where one received datagram run came from. With UDP GRO, one receive buffer holds several
/// datagrams of `stride` bytes each (the last may be shorter).
#[derive(Debug, Clone, Copy)]
pub struct RecvMeta {
    /// Bytes in the buffer.
    pub len: usize,
    /// Size of each datagram in the buffer (`len` when it holds one).
    pub stride: usize,
    /// The sender.
    pub source: SocketAddr,
}

impl RecvMeta {
    /// A buffer holding a single datagram.
    pub fn single(len: usize, source: SocketAddr) -> Self {
        Self { len, stride: len.max(1), source }
    }
}

/// Receive buffers for [`UdpIo::recv_batch`], reused from call to call: `count` slots of `size`
/// bytes in one allocation (whose pages the kernel only maps as they are written).
#[derive(Debug)]
pub struct RecvBatch {
    data: Vec<u8>,
    size: usize,
    /// What arrived in each slot (valid for the first `n` after a receive; `len` 0 for a slot
    /// to skip).
    pub meta: Vec<RecvMeta>,
}

impl RecvBatch {
    /// `count` slots of `size` bytes.
    pub fn new(count: usize, size: usize) -> Self {
        let (count, size) = (count.max(1), size.max(1));
        let blank = RecvMeta::single(0, SocketAddr::from(([0, 0, 0, 0], 0)));
        Self { data: vec![0u8; count * size], size, meta: vec![blank; count] }
    }

    /// Number of slots.
    pub fn count(&self) -> usize {
        self.meta.len()
    }

    /// Slot `i`, whole.
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.data[i * self.size..(i + 1) * self.size]
    }

    /// All slots, for the system call to fill.
    pub fn slots_mut(&mut self) -> std::slice::ChunksExactMut<'_, u8> {
        self.data.chunks_exact_mut(self.size)
    }

    /// Where the datagrams of slot `i` (split by the GRO stride) lie in [`RecvBatch::data_mut`],
    /// in order; their sender is `meta[i].source`.
    pub fn datagram_ranges(&self, i: usize) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let m = self.meta[i];
        let (start, end) = (i * self.size, i * self.size + m.len.min(self.size));
        (start..end).step_by(m.stride.max(1)).map(move |at| at..(at + m.stride).min(end))
    }

    /// All slots as one buffer.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// One bound UDP socket.
pub trait UdpIo: Send + Sync {
    /// Receives one or more datagram runs into `batch`; returns how many buffers were filled, 0
    /// on timeout.
    fn recv_batch(&self, batch: &mut RecvBatch, timeout: Duration) -> io::Result<usize>;
    /// Sends `segments` to `destination`, one datagram each, in order, and returns how many left
    /// (the first ones; fewer than all when an error stopped the rest, an error when none left).
    /// Every segment but the last has the same length (so UDP GSO can send them in one call);
    /// the caller keeps each call within [`UdpIo::max_segments`] and 64 KiB in all.
    fn send_segments(&self, segments: &[IoSlice<'_>], destination: SocketAddr) -> io::Result<usize>;
    /// Sends one datagram.
    fn send(&self, buf: &[u8], destination: SocketAddr) -> io::Result<()> {
        self.send_segments(&[IoSlice::new(buf)], destination).map(|_| ())
    }
    /// The most segments one [`UdpIo::send_segments`] call may carry.
    fn max_segments(&self) -> usize {
        1
    }
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
