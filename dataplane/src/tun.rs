//! The real TUN device, through `tun-rs`: a Linux TUN interface without packet information
//! headers. Addresses and routes are the caller's business (`wg-quick`, or `vpn up`).
//!
//! With offload on (the default) the device is opened with the virtio-net header and
//! TUNSETOFFLOAD: the kernel hands us TCP (and, from Linux 6.2, UDP) super-packets of up to
//! 64 KiB, split here into MTU-sized packets before encryption, and decrypted packets of one flow
//! are coalesced again ([`crate::gro`]) and written with one `writev` each, straight from the
//! buffers they were decrypted in. Where the kernel refuses the offloads the device opens
//! without them; where it refuses a coalesced write, coalescing of that kind stops.
//!
//! The MTU can be changed on the running interface (`ip link set mtu`, jumbo frames included; the
//! tunnel carries inner packets of up to 65,475 bytes, what one IPv4 UDP datagram holds). The device asks the kernel for it when told to ([`TunIo::refresh_mtu`]) and
//! at once when a packet did not fit the buffers it was handed, so the engine can grow them.

use std::fs::File;
use std::io::{self, IoSlice, Write as _};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tun_rs::{DeviceBuilder, InterruptEvent, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::gro::{Coalescer, MAX_SEGMENTS};
use crate::io::{TunIo, TUN_READ_SEGMENTS};

/// Default TUN transmit queue length, in packets (the kernel's default is 500). The queue is
/// the ring the kernel puts packets in for the reader thread; when it is full the kernel drops.
/// On a busy machine the reader can wait for a core for tens of milliseconds: 4000 packets hold
/// 45 ms of 1 Gbit/s in MTU-sized packets (measured on 2 vCPUs: 1000 lost 0.3-1.2 % of a
/// 1 Gbit/s UDP stream, 2000 up to 2.4 %, 4000 none). The ring counts packets, not bytes, so
/// segmentation-offload super-packets make a full one hold more.
pub const DEFAULT_TX_QUEUE_LEN: u32 = 4000;

/// How to open the TUN device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunOptions {
    /// Segmentation offload (TSO, and USO where the kernel has it) with GRO on writes.
    pub offload: bool,
    /// Transmit queue length in packets (`ip link set DEV txqueuelen N` changes it later).
    pub queue_len: u32,
}

impl Default for TunOptions {
    fn default() -> Self {
        Self { offload: true, queue_len: DEFAULT_TX_QUEUE_LEN }
    }
}

/// A TUN interface opened by name.
pub struct Tun {
    dev: SyncDevice,
    event: InterruptEvent,
    /// The MTU as last asked of the kernel.
    mtu: AtomicUsize,
    name: String,
    /// The reader's state: the raw (virtio header + super-packet) read before it is split.
    reader: Mutex<Reader>,
    /// The device's file again, for gathered writes (`writev`).
    writer: File,
    gro: Mutex<Coalescer>,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun").field("name", &self.name).field("mtu", &self.mtu()).field("offload", &self.offload()).finish()
    }
}

/// What the reader keeps between batches.
struct Reader {
    /// Receives the raw (virtio header + super-packet) read before it is split.
    scratch: Vec<u8>,
    /// Whether the next batch starts with a read rather than a poll: after a batch that ended
    /// full, with packets still queued, a poll would be a system call for nothing. After one
    /// that emptied the queue, the poll comes first (a read would most likely fail).
    read_first: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn build(name: &str, mtu: u16, offload: bool, queue_len: u32) -> io::Result<SyncDevice> {
    DeviceBuilder::new().name(name).mtu(mtu).tx_queue_len(queue_len).offload(offload).build_sync()
}

impl Tun {
    /// Creates (or attaches to) the TUN interface `name` with `mtu` and brings it up, with the
    /// default offloads.
    pub fn open(name: &str, mtu: u16) -> io::Result<Self> {
        Self::open_with(name, mtu, TunOptions::default())
    }

    /// [`Tun::open`] with explicit offload choices.
    pub fn open_with(name: &str, mtu: u16, options: TunOptions) -> io::Result<Self> {
        let dev = match options.offload {
            true => build(name, mtu, true, options.queue_len).or_else(|e| {
                tracing::info!(error = %e, "TUN segmentation offload refused; continuing without it");
                build(name, mtu, false, options.queue_len)
            })?,
            false => build(name, mtu, false, options.queue_len)?,
        };
        dev.set_nonblocking(true)?;
        let name = dev.name().unwrap_or_else(|_| name.to_string());
        let writer = File::from(dev.as_fd().try_clone_to_owned()?);
        let gro = Coalescer::new(dev.udp_gso());
        Ok(Self {
            dev,
            event: InterruptEvent::new()?,
            mtu: AtomicUsize::new(usize::from(mtu)),
            name,
            reader: Mutex::new(Reader { scratch: vec![0u8; VIRTIO_NET_HDR_LEN + 65_535], read_first: false }),
            writer,
            gro: Mutex::new(gro),
        })
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether TCP segmentation offload is on (then so is GRO on writes).
    pub fn offload(&self) -> bool {
        self.dev.tcp_gso()
    }

    /// Whether UDP segmentation offload is on as well (Linux 6.2 and later).
    pub fn udp_offload(&self) -> bool {
        self.dev.udp_gso()
    }

    /// The interface index, to notice when the interface is deleted.
    pub fn if_index(&self) -> io::Result<u32> {
        self.dev.if_index()
    }

    /// Wakes a reader blocked in [`TunIo::recv_batch`] (for shutdown).
    pub fn interrupt(&self) {
        let _ = self.event.trigger();
    }

    /// Waits up to `timeout` for a packet (or for [`Tun::interrupt`]); false when none came.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        match self.dev.wait_readable_intr_timeout(&self.event, Some(timeout)) {
            Ok(()) => Ok(true),
            Err(e) if transient(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One gathered write. Only a vanished device is an error: a full queue or a packet the
    /// kernel refuses is dropped, as a NIC would (EINVAL is returned for the caller to notice).
    fn write(&self, iov: &[IoSlice<'_>]) -> io::Result<()> {
        match (&self.writer).write_vectored(iov) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBADFD) || refused(&e) => Err(e),
            Err(e) => {
                tracing::trace!(error = %e, "TUN write dropped");
                Ok(())
            }
        }
    }

    /// [`TunIo::recv_batch`], noting in `too_long` whether a packet did not fit its buffer (the
    /// MTU was raised since the buffers were sized).
    fn read_batch(
        &self,
        bufs: &mut [&mut [u8]],
        sizes: &mut [usize],
        offset: usize,
        timeout: Duration,
        too_long: &mut bool,
    ) -> io::Result<usize> {
        let mut reader = lock(&self.reader);
        let Reader { scratch, read_first } = &mut *reader;
        let mut waited = !std::mem::take(read_first);
        if waited && !self.wait(timeout)? {
            return Ok(0);
        }
        let mut total = 0;
        // Keep reading while packets are ready and a whole super-packet still fits.
        while total == 0 || bufs.len() - total >= TUN_READ_SEGMENTS {
            match self.dev.recv_multiple(scratch, &mut bufs[total..], &mut sizes[total..], offset) {
                Ok(n) => {
                    // Without offload the kernel cuts a long packet short and reports its length.
                    *too_long |= (total..total + n).any(|k| offset + sizes[k] > bufs[k].len());
                    total += n;
                }
                Err(e) if transient(&e) && (total > 0 || waited) => return Ok(total),
                // Read first and found nothing: wait after all.
                Err(e) if transient(&e) => {
                    if !self.wait(timeout)? {
                        return Ok(0);
                    }
                    waited = true;
                }
                // EINVAL consumed one packet the kernel could not hand over (an unexpected GSO
                // type): drop it. Any other OS error means the device is gone. Anything else is
                // a super-packet that could not be split (bad header): drop it, as a NIC would.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => tracing::debug!(error = %e, "dropped a TUN packet"),
                Err(e) if e.raw_os_error().is_some() => return if total > 0 { Ok(total) } else { Err(e) },
                // (With offload, a segment longer than its buffer is one of these too.)
                Err(e) => {
                    tracing::debug!(error = %e, "dropped a TUN packet that could not be split");
                    *too_long = true;
                }
            }
        }
        // Stopped with the batch full: packets are probably still queued.
        *read_first = true;
        Ok(total)
    }
}

/// The kernel refused this one write (the device is still there).
fn refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

impl TunIo for Tun {
    fn recv_batch(&self, bufs: &mut [&mut [u8]], sizes: &mut [usize], offset: usize, timeout: Duration) -> io::Result<usize> {
        let mut too_long = false;
        let read = self.read_batch(bufs, sizes, offset, timeout, &mut too_long);
        if too_long {
            self.refresh_mtu();
        }
        read
    }

    fn send_batch(&self, packets: &mut [&mut [u8]]) -> io::Result<()> {
        if !self.offload() {
            for p in packets.iter() {
                match self.write(&[IoSlice::new(p)]) {
                    Err(e) if !refused(&e) => return Err(e),
                    _ => {}
                }
            }
            return Ok(());
        }
        let mut gro = lock(&self.gro);
        gro.plan(packets);
        let mut gave_up = None;
        for w in gro.writes() {
            let header = w.header();
            let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS + 1];
            iov[0] = IoSlice::new(&header);
            let mut k = 1;
            for (slot, piece) in iov[1..].iter_mut().zip(w.pieces(packets)) {
                *slot = IoSlice::new(piece);
                k += 1;
            }
            match self.write(&iov[..k]) {
                Ok(()) => {}
                Err(e) if refused(&e) && w.count() > 1 => gave_up = Some((w.is_udp(), e)),
                Err(e) if refused(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some((udp, e)) = gave_up {
            tracing::warn!(error = %e, udp, "the kernel refused a coalesced TUN write; writing these packets one by one from now on");
            gro.disable(udp);
        }
        Ok(())
    }

    fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Relaxed)
    }

    fn refresh_mtu(&self) -> usize {
        let Ok(mtu) = self.dev.mtu().map(usize::from) else { return self.mtu() };
        let old = self.mtu.swap(mtu, Ordering::Relaxed);
        if old != mtu {
            tracing::info!(interface = %self.name, old, mtu, "the interface's MTU changed");
        }
        mtu
    }
}
