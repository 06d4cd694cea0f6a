//! The bytes of UAPI replies: a `get` reply from an [`InterfaceStatus`], and the `errno=` trailer.
//!
//! Byte-exact with wireguard-go's `IpcGetOperation` (checked against captured replies in
//! `tests/format.rs`):
//!
//! ```text
//! private_key=<hex>                 if set
//! listen_port=<n>                   if not 0
//! fwmark=<n>                        if not 0
//! public_key=<hex>                  per peer, in configuration order:
//! preshared_key=<hex>               64 zeros when none
//! protocol_version=1
//! endpoint=<a.b.c.d:port|[v6]:port> if known
//! last_handshake_time_sec=<n>       0 and 0 mean never
//! last_handshake_time_nsec=<n>
//! tx_bytes=<n>
//! rx_bytes=<n>
//! persistent_keepalive_interval=<n>
//! allowed_ip=<prefix>               each, in configuration order
//! errno=0
//! (blank line)
//! ```
//!
//! Divergences: wireguard-go lists peers in Go map order (it changes from one `get` to the next);
//! we keep configuration order. An IPv6 endpoint with a scope is written with the numeric scope id
//! (`[fe80::1%2]:51820`); current wireguard-go writes the zone as it was given (often an interface
//! name), the one in Debian 12 drops it. `wg` reads either.
//!
//! The reply holds the private key in hex: it is built in a [`Zeroizing`] buffer with room
//! reserved up front, so no stray copy is left behind by reallocation.

use std::io::Write as _;

use vpn_crypto::keys::{is_all_zero, to_hex};
use vpn_dataplane::{InterfaceStatus, PeerStatus};
use zeroize::{Zeroize, Zeroizing};

use super::Errno;

/// The full reply to `get=1`: the status lines, `errno=0` and a blank line.
pub fn get_response(status: &InterfaceStatus) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(estimate(status)));
    write_status(status, &mut out);
    out.extend_from_slice(b"errno=0\n\n");
    out
}

/// The reply to a request that produced no lines: `errno=0` or `errno=-N`, then a blank line.
pub fn errno_response(result: Result<(), Errno>) -> Vec<u8> {
    match result {
        Ok(()) => b"errno=0\n\n".to_vec(),
        Err(e) => format!("errno={}\n\n", e.wire_value()).into_bytes(),
    }
}

/// Appends the `key=value` lines of a `get` reply (without `errno=`) to `out`.
pub fn write_status(status: &InterfaceStatus, out: &mut Vec<u8>) {
    if let Some(key) = &status.private_key {
        if !is_all_zero(key.as_bytes()) {
            write_key(out, "private_key", key.as_bytes());
        }
    }
    if status.listen_port != 0 {
        line(out, format_args!("listen_port={}", status.listen_port));
    }
    if status.fwmark != 0 {
        line(out, format_args!("fwmark={}", status.fwmark));
    }
    for peer in &status.peers {
        write_peer(peer, out);
    }
}

fn write_peer(peer: &PeerStatus, out: &mut Vec<u8>) {
    write_key(out, "public_key", peer.public_key.as_bytes());
    write_key(out, "preshared_key", peer.preshared_key.as_bytes());
    out.extend_from_slice(b"protocol_version=1\n");
    if let Some(ep) = peer.endpoint {
        // SocketAddr's Display is Go's AddrPort.String: `a.b.c.d:p`, `[v6]:p`, `[v6%scope]:p`.
        line(out, format_args!("endpoint={ep}"));
    }
    let (secs, nanos) = peer.last_handshake.map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
    line(out, format_args!("last_handshake_time_sec={secs}"));
    line(out, format_args!("last_handshake_time_nsec={nanos}"));
    line(out, format_args!("tx_bytes={}", peer.tx_bytes));
    line(out, format_args!("rx_bytes={}", peer.rx_bytes));
    line(out, format_args!("persistent_keepalive_interval={}", peer.persistent_keepalive));
    for prefix in &peer.allowed_ips {
        line(out, format_args!("allowed_ip={prefix}"));
    }
}

fn line(out: &mut Vec<u8>, args: std::fmt::Arguments<'_>) {
    // Writing to a Vec cannot fail.
    let _ = out.write_fmt(args);
    out.push(b'\n');
}

fn write_key(out: &mut Vec<u8>, name: &str, key: &[u8; 32]) {
    let mut hex = to_hex(key);
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    out.extend_from_slice(hex.as_bytes());
    out.push(b'\n');
    hex.zeroize();
}

/// A generous size for the reply, so the buffer never reallocates while it holds a key.
fn estimate(status: &InterfaceStatus) -> usize {
    let peers: usize = status.peers.iter().map(|p| 520 + p.allowed_ips.len() * 64).sum();
    256 + peers
}
