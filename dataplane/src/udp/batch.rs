//! The batched system calls under [`super::Udp`]: `recvmmsg` that also reads UDP GRO's segment
//! size, `sendmsg` with a UDP_SEGMENT control message (GSO: many datagrams in one call, the
//! segments gathered from separate buffers), and `sendmmsg` where GSO is off or refused.
//!
//! Our own code rather than `quinn-udp`: GSO here sends the sealed packets straight from the
//! buffers they were sealed in (one iovec each), where quinn-udp wants them contiguous, which
//! would cost a copy of every packet.
//
// Unsafe by necessity: `std` offers none of these calls, and `socket2` has no batch calls.
#![allow(unsafe_code)]

use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

use crate::io::{RecvBatch, RecvMeta};

/// `setsockopt(SOL_UDP, UDP_SEGMENT)` / the GSO control message (Linux 4.18).
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
/// `setsockopt(SOL_UDP, UDP_GRO)` (Linux 5.0; reliable from 5.12).
pub(crate) const UDP_GRO: libc::c_int = 104;
/// The kernel's UDP_MAX_SEGMENTS: the most datagrams one GSO send may carry.
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;
/// Most buffers one `recvmmsg` fills.
const MAX_RECV: usize = 16;
/// Control-message space: one `int` (GRO) or `u16` (GSO) plus header, 8-byte aligned.
type Control = [u64; 8];

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn set_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its size.
    cvt(unsafe { libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), size_of::<libc::c_int>() as libc::socklen_t) })
        .map(|_| ())
}

pub(crate) fn get_int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live c_int and its size.
    cvt(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) })?;
    Ok(value)
}

/// A socket address in the C layout, for `msg_name`.
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn new(a: SocketAddr) -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match a {
            SocketAddr::V4(v4) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: v4.port().to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.ip().octets()) },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
                unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: v6.port().to_be(),
                    sin6_flowinfo: v6.flowinfo(),
                    sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                    sin6_scope_id: v6.scope_id(),
                };
                // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
                unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
                size_of::<libc::sockaddr_in6>()
            }
        };
        Self { storage, len: len as libc::socklen_t }
    }
}

fn parse_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and it is long enough.
            let sin: libc::sockaddr_in = unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6, and it is long enough.
            let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read((storage as *const libc::sockaddr_storage).cast()) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

/// The GRO segment size in a received message's control data, if any.
fn gro_stride(hdr: &libc::msghdr) -> Option<usize> {
    // SAFETY: the CMSG_* walkers stay within msg_control/msg_controllen, which the kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v: libc::c_int = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return usize::try_from(v).ok().filter(|&v| v > 0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Receives up to `batch.bufs.len()` (at most 16) datagram runs; 0 on timeout. Blocks for the
/// first run up to the socket's receive timeout (SO_RCVTIMEO), then takes only what is already
/// there: one system call, no poll before it.
pub(crate) fn recv_batch(fd: RawFd, batch: &mut RecvBatch) -> io::Result<usize> {
    let n = batch.count().min(MAX_RECV);
    // SAFETY: plain C structs for which all-zero is a valid value.
    let mut names: [libc::sockaddr_storage; MAX_RECV] = unsafe { zeroed() };
    let mut control: [Control; MAX_RECV] = [[0; 8]; MAX_RECV];
    // SAFETY: as above.
    let mut iovs: [libc::iovec; MAX_RECV] = unsafe { zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; MAX_RECV] = unsafe { zeroed() };
    for (i, slot) in batch.slots_mut().take(n).enumerate() {
        iovs[i] = libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot.len() };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        h.msg_control = control[i].as_mut_ptr().cast();
        h.msg_controllen = size_of::<Control>() as _;
    }
    // SAFETY: every header points at live buffers of the stated sizes, owned by this frame or by
    // `batch`, none of which moves during the call.
    let got = match cvt(unsafe { libc::recvmmsg(fd, hdrs.as_mut_ptr(), n as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut()) }) {
        Ok(got) => got as usize,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return Ok(0),
        // ICMP errors from earlier sends surface here; they say nothing about this socket.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)) => return Ok(0),
        Err(e) => return Err(e),
    };
    for i in 0..got {
        let h = &hdrs[i].msg_hdr;
        let len = hdrs[i].msg_len as usize;
        batch.meta[i] = match parse_addr(&names[i], h.msg_namelen) {
            // A truncated datagram (cannot happen with 64 KiB slots) is skipped whole.
            Some(source) if h.msg_flags & libc::MSG_TRUNC == 0 => RecvMeta { len, stride: gro_stride(h).unwrap_or(len).max(1), source },
            Some(source) => RecvMeta::single(0, source),
            None => RecvMeta::single(0, SocketAddr::from(([0, 0, 0, 0], 0))),
        };
    }
    Ok(got)
}

/// Sends `segments` as one GSO call: the kernel cuts the concatenation into datagrams of the
/// first segment's length.
pub(crate) fn send_gso(fd: RawFd, segments: &[IoSlice<'_>], destination: SocketAddr) -> io::Result<()> {
    let stride = u16::try_from(segments[0].len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut name = RawAddr::new(destination);
    let mut control: Control = [0; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers set below refer to live data that outlives
    // the call, and the control message is written within `control` (CMSG_SPACE(2) <= 64 bytes).
    unsafe {
        let mut msg: libc::msghdr = zeroed();
        msg.msg_name = (&mut name.storage as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = name.len;
        // IoSlice is guaranteed ABI-compatible with iovec.
        msg.msg_iov = segments.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = segments.len() as _;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), stride);
        loop {
            match cvt(libc::sendmsg(fd, &msg, 0) as libc::c_int) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(|_| ()),
            }
        }
    }
}

/// Sends each segment as its own datagram, in as few `sendmmsg` calls as the kernel allows;
/// returns how many left (an error only when none did).
pub(crate) fn send_each(fd: RawFd, segments: &[IoSlice<'_>], destination: SocketAddr) -> io::Result<usize> {
    const CHUNK: usize = 64;
    let mut name = RawAddr::new(destination);
    let mut sent = 0;
    while sent < segments.len() {
        let part = &segments[sent..segments.len().min(sent + CHUNK)];
        // SAFETY: zeroed mmsghdrs are valid; each points at the shared address and one iovec of
        // `part`, all alive across the call (IoSlice is ABI-compatible with iovec).
        let mut hdrs: [libc::mmsghdr; CHUNK] = unsafe { zeroed() };
        for (h, seg) in hdrs.iter_mut().zip(part) {
            h.msg_hdr.msg_name = (&mut name.storage as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = name.len;
            h.msg_hdr.msg_iov = (seg as *const IoSlice<'_>).cast_mut().cast();
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: see above.
        match cvt(unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), part.len() as libc::c_uint, 0) }) {
            Ok(n) => sent += (n as usize).max(1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if sent > 0 => {
                tracing::debug!(error = %e, sent, of = segments.len(), "sendmmsg stopped part-way");
                return Ok(sent);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// Whether a GSO send failed because the socket cannot do GSO at all (the route's device lacks
/// checksum offload: EIO; the kernel lacks UDP_SEGMENT), so it should stop trying.
pub(crate) fn gso_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP))
}

/// Whether a GSO send was refused for this destination only (EINVAL: e.g. the segment size does
/// not fit the path's MTU), so these datagrams should go one by one.
pub(crate) fn gso_refused_here(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_the_c_layout() {
        for a in ["192.0.2.7:51820", "[2001:db8::1]:443", "[fe80::1%3]:9"] {
            let a: SocketAddr = a.parse().unwrap();
            let raw = RawAddr::new(a);
            assert_eq!(parse_addr(&raw.storage, raw.len), Some(a));
        }
        let raw = RawAddr::new("192.0.2.7:1".parse().unwrap());
        assert_eq!(parse_addr(&raw.storage, 4), None, "a truncated address is refused");
    }
}
