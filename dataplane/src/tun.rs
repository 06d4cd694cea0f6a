//! The real TUN device, through `tun-rs`: a Linux TUN interface without packet information
//! headers. Addresses and routes are the caller's business (`wg-quick`, or `vpn up`).

use std::io;
use std::time::Duration;

use tun_rs::{DeviceBuilder, InterruptEvent, SyncDevice};

use crate::io::TunIo;

/// A TUN interface opened by name.
pub struct Tun {
    dev: SyncDevice,
    event: InterruptEvent,
    mtu: usize,
    name: String,
}

impl std::fmt::Debug for Tun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tun").field("name", &self.name).field("mtu", &self.mtu).finish()
    }
}

impl Tun {
    /// Creates (or attaches to) the TUN interface `name` with `mtu` and brings it up.
    pub fn open(name: &str, mtu: u16) -> io::Result<Self> {
        let dev = DeviceBuilder::new().name(name).mtu(mtu).tx_queue_len(1000).build_sync()?;
        dev.set_nonblocking(true)?;
        let name = dev.name().unwrap_or_else(|_| name.to_string());
        Ok(Self { dev, event: InterruptEvent::new()?, mtu: usize::from(mtu), name })
    }

    /// The interface name the kernel gave.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface index, to notice when the interface is deleted.
    pub fn if_index(&self) -> io::Result<u32> {
        self.dev.if_index()
    }

    /// Wakes a reader blocked in [`TunIo::recv`] (for shutdown).
    pub fn interrupt(&self) {
        let _ = self.event.trigger();
    }
}

impl TunIo for Tun {
    fn recv(&self, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
        match self.dev.recv_intr_timeout(buf, &self.event, Some(timeout)) {
            Ok(n) => Ok(Some(n)),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn send(&self, packet: &[u8]) -> io::Result<()> {
        match self.dev.send(packet) {
            Ok(_) => Ok(()),
            // The queue is full: drop, as a NIC would.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn mtu(&self) -> usize {
        self.mtu
    }
}
