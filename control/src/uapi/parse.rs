//! Parsing the body of a UAPI `set` request into a [`SetRequest`].
//!
//! A body is a sequence of `key=value` lines. Device keys (`private_key`, `listen_port`, `fwmark`,
//! `replace_peers`) come first; each `public_key` line starts a peer block, and every later key
//! belongs to that peer. Nothing is applied here: [`apply`](super::apply()) does that, to a copy.
//!
//! Values are checked exactly as wireguard-go checks them:
//!
//! | key | accepted |
//! |---|---|
//! | `private_key`, `public_key`, `preshared_key` | 64 hex digits, either case; an all-zero private key removes it, an all-zero PSK means none |
//! | `listen_port`, `persistent_keepalive_interval` | decimal digits only (leading zeros allowed, no sign), 0..=65535 |
//! | `fwmark` | decimal digits only, 0..=2^32-1 |
//! | `replace_peers`, `update_only`, `remove`, `replace_allowed_ips` | exactly `true` |
//! | `endpoint` | `a.b.c.d:port` or `[v6]:port`, optionally `[v6%zone]:port` (numeric scope id or interface name) |
//! | `allowed_ip` | `addr/len` (the `/len` is required, no leading zeros or sign in `len`, no zone); a leading `-` removes the prefix |
//! | `protocol_version` | exactly `1` |
//!
//! Errors: a line without `=` is `EPROTO`; an unknown key or a bad value is `EINVAL`. An error
//! message names the line number and the key, never the value (it may be a secret).
//!
//! Divergences from wireguard-go (its `device/uapi.go` applies each line as it reads it; we collect
//! the block first):
//! - lines of a block that come before `remove=true` have no effect at all; in wireguard-go an
//!   `allowed_ip` line there first takes the prefix away from its previous owner;
//! - `replace_allowed_ips=true` in the middle of a block drops the `allowed_ip` lines before it
//!   (as in wireguard-go) but does not take those prefixes away from other peers first;
//! - an interface name in an endpoint zone is resolved to its index when parsed, so an unknown
//!   name is `EINVAL` (wireguard-go keeps the name and fails when sending). `wg` only ever sends
//!   names it has just resolved itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;
use vpn_crypto::keys::{from_hex, is_all_zero};
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::IpPrefix;
use zeroize::Zeroize;

use super::Errno;

/// A parsed `set` request: what to change, in request order. Applying it is
/// [`apply`](super::apply()).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetRequest {
    /// `private_key=`: set or remove the interface's private key.
    pub private_key: Option<PrivateKeyChange>,
    /// `listen_port=` (0 lets the engine pick one).
    pub listen_port: Option<u16>,
    /// `fwmark=` (0 turns it off).
    pub fwmark: Option<u32>,
    /// `replace_peers=true`: remove every peer before the peer blocks are applied.
    pub replace_peers: bool,
    /// One entry per `public_key=` line, in request order (a key may appear more than once).
    pub peers: Vec<PeerRequest>,
}

/// A change of the interface's private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKeyChange {
    /// Use this key (stored clamped).
    Set(PrivateKey),
    /// An all-zero key was sent: the interface has no key any more.
    Clear,
}

/// One peer block of a `set` request: a `public_key=` line and the lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    /// The peer this block selects, creating it unless `update_only` is set.
    pub public_key: PublicKey,
    /// `update_only=true`: if the peer does not exist when the block is reached, the block is ignored.
    pub update_only: bool,
    /// `remove=true`: remove the peer; the rest of the block is ignored.
    pub remove: bool,
    /// `preshared_key=` (all zeros means none).
    pub preshared_key: Option<PresharedKey>,
    /// `endpoint=`.
    pub endpoint: Option<SocketAddr>,
    /// `persistent_keepalive_interval=` in seconds (0 turns it off).
    pub persistent_keepalive: Option<u16>,
    /// `replace_allowed_ips=true`: clear the peer's allowed IPs before `allowed_ips` are applied.
    pub replace_allowed_ips: bool,
    /// `allowed_ip=` lines in order, host bits cleared.
    pub allowed_ips: Vec<AllowedIpChange>,
}

impl PeerRequest {
    /// A block with only its `public_key` line.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            update_only: false,
            remove: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// One `allowed_ip=` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllowedIpChange {
    /// `allowed_ip=prefix`: give the prefix to this peer (taking it from any other peer) and put it
    /// last in the peer's list.
    Add(IpPrefix),
    /// `allowed_ip=-prefix`: remove the prefix if this peer has it.
    Remove(IpPrefix),
}

/// Why a request was refused, with the 1-based line number (line 1 is `set=1` or `get=1`).
///
/// The message names the key, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("UAPI request line {line}: {kind}")]
pub struct ParseError {
    /// The offending line, counting the `set=1` line as line 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: ParseErrorKind,
}

/// The kinds of [`ParseError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A line without `=` (`EPROTO`).
    #[error("line is not of the form key=value")]
    NoSeparator,
    /// A key that is not an interface key, before the first `public_key` (`EINVAL`).
    #[error("unknown interface key")]
    UnknownDeviceKey,
    /// A key that is not a peer key, after a `public_key` (`EINVAL`).
    #[error("unknown peer key")]
    UnknownPeerKey,
    /// A known key with a value it does not accept (`EINVAL`).
    #[error("invalid value for {key}")]
    InvalidValue {
        /// The key whose value was refused.
        key: &'static str,
    },
    /// `get=1` followed by something other than a blank line (`EINVAL`).
    #[error("get=1 must be followed by a blank line")]
    TrailingGetData,
}

impl ParseError {
    /// The errno wireguard-go answers with for this error.
    pub fn errno(&self) -> Errno {
        match self.kind {
            ParseErrorKind::NoSeparator => Errno::EPROTO,
            _ => Errno::EINVAL,
        }
    }
}

/// Parses the lines of one `set` body, one at a time.
///
/// Feed each line without its `\n` (and without a trailing `\r`, which wireguard-go also strips)
/// to [`feed_line`](Self::feed_line), stop at the blank line, and take the result with
/// [`finish`](Self::finish).
#[derive(Debug)]
pub struct SetParser {
    req: SetRequest,
    line: usize,
    in_peers: bool,
    /// The current block had `remove=true`: later lines are checked but not recorded.
    removed: bool,
}

impl Default for SetParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SetParser {
    /// A parser positioned after the `set=1` line.
    pub fn new() -> Self {
        Self { req: SetRequest::default(), line: 1, in_peers: false, removed: false }
    }

    /// Parses one `key=value` line (not the blank line that ends the request).
    pub fn feed_line(&mut self, line: &[u8]) -> Result<(), ParseError> {
        self.line += 1;
        let at = self.line;
        let err = |kind| ParseError { line: at, kind };
        let eq = line.iter().position(|&b| b == b'=').ok_or(err(ParseErrorKind::NoSeparator))?;
        let (key, raw) = (&line[..eq], &line[eq + 1..]);
        if key == b"public_key" {
            let pk = parse_key(raw).ok_or(err(invalid("public_key")))?;
            self.in_peers = true;
            self.removed = false;
            self.req.peers.push(PeerRequest::new(PublicKey(pk)));
            return Ok(());
        }
        if self.in_peers {
            self.peer_line(key, raw).map_err(err)
        } else {
            self.device_line(key, raw).map_err(err)
        }
    }

    /// The request parsed so far.
    pub fn finish(self) -> SetRequest {
        self.req
    }

    fn device_line(&mut self, key: &[u8], raw: &[u8]) -> Result<(), ParseErrorKind> {
        match key {
            b"private_key" => {
                let mut bytes = parse_key(raw).ok_or(invalid("private_key"))?;
                let change =
                    if is_all_zero(&bytes) { PrivateKeyChange::Clear } else { PrivateKeyChange::Set(PrivateKey::from_bytes(bytes)) };
                bytes.zeroize();
                self.req.private_key = Some(change);
            }
            b"listen_port" => {
                self.req.listen_port = Some(parse_decimal(raw, u16::MAX.into()).ok_or(invalid("listen_port"))? as u16);
            }
            b"fwmark" => {
                self.req.fwmark = Some(parse_decimal(raw, u32::MAX.into()).ok_or(invalid("fwmark"))? as u32);
            }
            b"replace_peers" => {
                expect_true(raw, "replace_peers")?;
                self.req.replace_peers = true;
            }
            _ => return Err(ParseErrorKind::UnknownDeviceKey),
        }
        Ok(())
    }

    fn peer_line(&mut self, key: &[u8], raw: &[u8]) -> Result<(), ParseErrorKind> {
        // Every value is checked even when the block is dead (removed), as wireguard-go does.
        let live = !self.removed;
        let Some(peer) = self.req.peers.last_mut() else {
            return Err(ParseErrorKind::UnknownDeviceKey);
        };
        match key {
            b"update_only" => {
                expect_true(raw, "update_only")?;
                peer.update_only = true;
            }
            b"remove" => {
                expect_true(raw, "remove")?;
                peer.remove = true;
                self.removed = true;
            }
            b"preshared_key" => {
                let mut bytes = parse_key(raw).ok_or(invalid("preshared_key"))?;
                if live {
                    peer.preshared_key = Some(PresharedKey::from_bytes(bytes));
                }
                bytes.zeroize();
            }
            b"endpoint" => {
                let ep = value_str(raw).and_then(parse_endpoint).ok_or(invalid("endpoint"))?;
                if live {
                    peer.endpoint = Some(ep);
                }
            }
            b"persistent_keepalive_interval" => {
                let secs = parse_decimal(raw, u16::MAX.into()).ok_or(invalid("persistent_keepalive_interval"))? as u16;
                if live {
                    peer.persistent_keepalive = Some(secs);
                }
            }
            b"replace_allowed_ips" => {
                expect_true(raw, "replace_allowed_ips")?;
                if live {
                    peer.replace_allowed_ips = true;
                    peer.allowed_ips.clear();
                }
            }
            b"allowed_ip" => {
                let change = value_str(raw).and_then(parse_allowed_ip).ok_or(invalid("allowed_ip"))?;
                if live {
                    peer.allowed_ips.push(change);
                }
            }
            b"protocol_version" => {
                if raw != b"1" {
                    return Err(invalid("protocol_version"));
                }
            }
            _ => return Err(ParseErrorKind::UnknownPeerKey),
        }
        Ok(())
    }
}

/// Parses a complete `set` body (the lines after `set=1`, up to an optional blank line).
///
/// Lines end with `\n`; a `\r` before it is ignored. Lines after the blank line are ignored.
pub fn parse_set(body: &[u8]) -> Result<SetRequest, ParseError> {
    let mut parser = SetParser::new();
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    if !body.is_empty() {
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                break;
            }
            parser.feed_line(line)?;
        }
    }
    Ok(parser.finish())
}

fn invalid(key: &'static str) -> ParseErrorKind {
    ParseErrorKind::InvalidValue { key }
}

fn expect_true(raw: &[u8], key: &'static str) -> Result<(), ParseErrorKind> {
    if raw == b"true" {
        Ok(())
    } else {
        Err(invalid(key))
    }
}

fn value_str(raw: &[u8]) -> Option<&str> {
    std::str::from_utf8(raw).ok()
}

/// 64 hex digits (Go's `hex.DecodeString` plus a length check).
fn parse_key(raw: &[u8]) -> Option<[u8; 32]> {
    from_hex(value_str(raw)?).ok()
}

/// Decimal digits only, at most `max` (Go's `strconv.ParseUint(s, 10, bits)`).
fn parse_decimal(raw: &[u8], max: u64) -> Option<u64> {
    if raw.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in raw {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if n > max {
            return None;
        }
    }
    Some(n)
}

/// `a.b.c.d:port`, `[v6]:port` or `[v6%zone]:port` (Go's `netip.ParseAddrPort`).
pub(crate) fn parse_endpoint(v: &str) -> Option<SocketAddr> {
    let colon = v.rfind(':')?;
    let (host, port) = (&v[..colon], &v[colon + 1..]);
    let port = parse_decimal(port.as_bytes(), u16::MAX.into())? as u16;
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        let (addr, zone) = match inner.split_once('%') {
            Some((a, z)) => (a, Some(z)),
            None => (inner, None),
        };
        let ip: Ipv6Addr = addr.parse().ok()?;
        let scope = match zone {
            None => 0,
            Some(z) => resolve_zone(z)?,
        };
        Some(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope)))
    } else {
        let ip: Ipv4Addr = host.parse().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
    }
}

/// A zone: a numeric scope id, or the name of an existing interface (looked up in sysfs).
fn resolve_zone(zone: &str) -> Option<u32> {
    if zone.is_empty() {
        return None;
    }
    if zone.bytes().all(|b| b.is_ascii_digit()) {
        return parse_decimal(zone.as_bytes(), u32::MAX.into()).map(|n| n as u32);
    }
    if zone.len() > 15 || zone.contains('/') || zone == "." || zone == ".." || zone.bytes().any(|b| b.is_ascii_whitespace() || b == 0) {
        return None;
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{zone}/ifindex")).ok()?;
    text.trim().parse().ok()
}

/// `[-]addr/len` (Go's `netip.ParsePrefix`, with its refusal of leading zeros and signs in `len`).
fn parse_allowed_ip(v: &str) -> Option<AllowedIpChange> {
    let (remove, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let slash = v.rfind('/')?;
    let (addr, bits) = (&v[..slash], &v[slash + 1..]);
    let addr: IpAddr = addr.parse().ok()?;
    if bits.len() > 1 && bits.starts_with('0') {
        return None;
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = parse_decimal(bits.as_bytes(), max)? as u8;
    let prefix = IpPrefix::new(addr, bits).ok()?;
    Some(if remove { AllowedIpChange::Remove(prefix) } else { AllowedIpChange::Add(prefix) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0051821", 65535), Some(51821));
        assert_eq!(parse_decimal(b"65535", 65535), Some(65535));
        assert_eq!(parse_decimal(b"65536", 65535), None);
        assert_eq!(parse_decimal(b"+5", 65535), None);
        assert_eq!(parse_decimal(b"", 65535), None);
        assert_eq!(parse_decimal(b" 5", 65535), None);
        assert_eq!(parse_decimal(b"99999999999999999999999", u64::MAX), None);
    }

    #[test]
    fn endpoints() {
        let ok = |s: &str| parse_endpoint(s).map(|a| a.to_string());
        assert_eq!(ok("192.0.2.1:51820").as_deref(), Some("192.0.2.1:51820"));
        assert_eq!(ok("1.2.3.4:080").as_deref(), Some("1.2.3.4:80"));
        assert_eq!(ok("1.2.3.4:0").as_deref(), Some("1.2.3.4:0"));
        assert_eq!(ok("[2001:db8::1]:12345").as_deref(), Some("[2001:db8::1]:12345"));
        assert_eq!(ok("[::ffff:1.2.3.4]:80").as_deref(), Some("[::ffff:1.2.3.4]:80"));
        assert_eq!(ok("[fe80::1%7]:80").as_deref(), Some("[fe80::1%7]:80"));
        assert_eq!(ok("[fe80::1%lo]:80").as_deref(), Some("[fe80::1%1]:80"));
        for bad in [
            "1.2.3.4",
            "1.2.3.4:",
            ":80",
            "::1:80",
            "[1.2.3.4]:80",
            "[::1]",
            "[::1]80",
            "[::1:80",
            "example.com:80",
            "1.2.3.4:65536",
            "1.2.3.4:+80",
            "01.2.3.4:80",
            "[fe80::1%]:80",
            "[fe80::1%no-such-if0]:80",
            "[fe80::1%../x]:80",
            "1.2.3.4%1:80",
        ] {
            assert_eq!(parse_endpoint(bad), None, "{bad}");
        }
    }

    #[test]
    fn allowed_ips() {
        let add = |s: &str| match parse_allowed_ip(s) {
            Some(AllowedIpChange::Add(p)) => Some(p.to_string()),
            _ => None,
        };
        assert_eq!(add("192.95.5.65/27").as_deref(), Some("192.95.5.64/27"));
        assert_eq!(add("fd00::1/64").as_deref(), Some("fd00::/64"));
        assert_eq!(add("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        assert_eq!(add("::ffff:10.0.0.1/104").as_deref(), Some("::ffff:10.0.0.0/104"));
        assert_eq!(parse_allowed_ip("-10.0.0.0/8"), Some(AllowedIpChange::Remove("10.0.0.0/8".parse().unwrap())));
        for bad in [
            "10.0.0.1",
            "10.0.0.0/",
            "10.0.0.0/024",
            "10.0.0.0/+24",
            "10.0.0.0/33",
            "::/129",
            "fe80::%1/64",
            "--10.0.0.0/8",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert_eq!(parse_allowed_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_text_never_holds_the_value() {
        let secret = "ab".repeat(31) + "zz";
        let err = parse_set(format!("private_key={secret}\n").as_bytes()).unwrap_err();
        assert_eq!(err, ParseError { line: 2, kind: ParseErrorKind::InvalidValue { key: "private_key" } });
        assert!(!err.to_string().contains("abab"));
        assert!(!format!("{err:?}").contains("abab"));
    }
}
