//! The reader of a wg-quick server configuration (`/etc/wireguard/wg0.conf`): the file as
//! [`WgQuickFile`], every value checked and paired with its line, plus the peers' names found in
//! the comments that installers write around them.
//!
//! The syntax is the one `wg-quick` and `wg setconf` accept: `[Interface]` and `[Peer]` section
//! headers (any case), `Key = value` lines (keys in any case), `#` starting a comment anywhere on
//! a line, blank lines, CRLF line ends and a leading byte order mark tolerated. Lists (`Address`,
//! `DNS`, `AllowedIPs`) are comma-separated and may be repeated on several lines. Anything `wg`
//! would refuse (a bad key, address or port, a line outside a section, a peer without a public
//! key) is a [`Problem`] that stops the import, all of them reported at once. Keys that `vpn`
//! cannot carry over (hooks, `Table`, `FwMark`, `SaveConfig`, a peer's `Endpoint` ...) are kept
//! as notes for the plan to report.
//!
//! # Peer names in comments
//!
//! A peer's name comes from the comments next to its `[Peer]` line: those since the previous
//! setting (its "leading" comments) and those inside its section before its last setting. These
//! forms are recognised, the first that matches wins:
//!
//! | comment | written by |
//! |---|---|
//! | `# BEGIN_PEER alice` (and `# END_PEER alice` after the section) | Nyr/wireguard-install |
//! | `### begin alice ###` (and `### end alice ###`) | PiVPN |
//! | `### Client alice` | angristan/wireguard-install |
//! | `# Client: alice (2f1c...-uuid)` (the id in parentheses is dropped) | wg-easy |
//! | `# Name = alice`, `# Name: alice`, `# friendly_name = alice` | wireguard-ui and hand-written files |
//! | `# alice` or `#alice` directly above `[Peer]` (only blank lines between) or directly below it | hand-written files |
//!
//! A plain comment counts as a name only if it does not look like a commented-out setting (it
//! has no `=`) nor an end marker. PiVPN comments out a disabled client with `#[disabled] `: such a
//! peer is not in the running interface, so it is reported, not imported.

use std::net::IpAddr;

use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};

use super::Problem;
use crate::netconf::InterfaceAddress;

/// A value and the line (1-based) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lined<T> {
    /// The line.
    pub line: usize,
    /// The value.
    pub value: T,
}

/// One entry of a peer's `AllowedIPs`, as written (host bits kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowedIp {
    /// The line.
    pub line: usize,
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (32 or 128 for a single host).
    pub len: u8,
}

impl AllowedIp {
    /// Whether this is a single host (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.len == if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

impl std::fmt::Display for AllowedIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The `[Interface]` section: what can be carried over. What cannot is in
/// [`WgQuickFile::notes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// The line of `[Interface]`.
    pub line: usize,
    /// `PrivateKey`: the server's key.
    pub private_key: Option<Lined<PrivateKey>>,
    /// Every `Address`, in order.
    pub addresses: Vec<Lined<InterfaceAddress>>,
    /// `ListenPort`, when set and not 0.
    pub listen_port: Option<Lined<u16>>,
    /// The IP addresses of `DNS` (search domains are in the notes).
    pub dns: Vec<Lined<IpAddr>>,
    /// `MTU`.
    pub mtu: Option<Lined<u16>>,
    /// The server's public address from a `# ENDPOINT host` comment (Nyr/wireguard-install).
    pub endpoint_hint: Option<Lined<String>>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The line of `[Peer]`.
    pub line: usize,
    /// Its position among the file's peers, from 1.
    pub index: usize,
    /// The name found in its comments (see the module documentation), as written.
    pub name: Option<Lined<String>>,
    /// `PublicKey`.
    pub public_key: Lined<PublicKey>,
    /// `PresharedKey`, unless absent or all zero.
    pub preshared_key: Option<PresharedKey>,
    /// Every `AllowedIPs` entry, in order.
    pub allowed_ips: Vec<AllowedIp>,
    /// What of this peer cannot be carried over (`Endpoint`, `PersistentKeepalive`, unknown
    /// keys); the messages do not name the peer.
    pub notes: Vec<Problem>,
}

/// A wg-quick configuration, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickFile {
    /// The `[Interface]` section.
    pub interface: Interface,
    /// The `[Peer]` sections, in order.
    pub peers: Vec<Peer>,
    /// What of the interface cannot be carried over, and peers disabled by comments.
    pub notes: Vec<Problem>,
}

/// A peer section while it is being read.
struct PeerDraft {
    line: usize,
    leading: Vec<Comment>,
    inner: Vec<Comment>,
    public_key: Option<Lined<PublicKey>>,
    preshared_key: Option<PresharedKey>,
    allowed_ips: Vec<AllowedIp>,
    notes: Vec<Problem>,
    /// Whether a line with a bad value was seen (the peer is dropped with the file).
    broken: bool,
}

/// A comment line: its number, the text after the leading `#`s (trimmed), and how many `#`.
#[derive(Debug, Clone)]
struct Comment {
    line: usize,
    text: String,
    hashes: usize,
}

enum Section {
    None,
    Interface,
    Peer(Box<PeerDraft>),
}

/// How much of a hook command a note shows.
const HOOK_SHOWN: usize = 100;

/// Reads a wg-quick configuration. On success, the notes say what cannot be carried over; on
/// failure, every problem of the file, each with its line.
pub fn parse(text: &str) -> Result<WgQuickFile, Vec<Problem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut interface: Option<Interface> = None;
    let mut peers = Vec::new();
    let mut section = Section::None;
    let mut pending: Vec<Comment> = Vec::new();
    // The interface's settings seen, valid or not (a bad PrivateKey is not also a missing one).
    let mut seen: Vec<String> = Vec::new();

    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (content, comment) = match raw.find('#') {
            Some(at) => (&raw[..at], Some(&raw[at..])),
            None => (raw, None),
        };
        let content = content.trim();
        if content.is_empty() {
            let Some(c) = comment else { continue };
            let hashes = c.bytes().take_while(|&b| b == b'#').count();
            let text = c[hashes..].trim().to_owned();
            if let (Section::Interface, Some(iface)) = (&section, interface.as_mut()) {
                if let Some(value) = endpoint_comment(&text) {
                    iface.endpoint_hint.get_or_insert(Lined { line: n, value });
                }
            }
            if is_disabled_peer(&text) {
                let who = name_from(&pending, &[]).map_or_else(String::new, |l| format!(" {:?}", l.value));
                notes.push(Problem::new(
                    n,
                    format!(
                        "peer{who} is disabled (commented out with #[disabled]) and is not imported; add it later if it is still wanted"
                    ),
                ));
            }
            pending.push(Comment { line: n, text, hashes });
            continue;
        }

        // A section header.
        if content.starts_with('[') {
            let name = content.strip_prefix('[').and_then(|s| s.strip_suffix(']')).map(str::trim);
            let leading = std::mem::take(&mut pending);
            close(&mut section, &mut peers, &mut problems);
            match name {
                Some(s) if s.eq_ignore_ascii_case("Interface") => {
                    if interface.is_some() {
                        problems.push(Problem::new(n, "a second [Interface] section: a configuration has exactly one"));
                    } else {
                        let endpoint_hint = leading_endpoint(&leading);
                        interface = Some(Interface {
                            line: n,
                            private_key: None,
                            addresses: Vec::new(),
                            listen_port: None,
                            dns: Vec::new(),
                            mtu: None,
                            endpoint_hint,
                        });
                    }
                    section = Section::Interface;
                }
                Some(s) if s.eq_ignore_ascii_case("Peer") => {
                    section = Section::Peer(Box::new(PeerDraft {
                        line: n,
                        leading,
                        inner: Vec::new(),
                        public_key: None,
                        preshared_key: None,
                        allowed_ips: Vec::new(),
                        notes: Vec::new(),
                        broken: false,
                    }));
                }
                _ => {
                    problems.push(Problem::new(n, format!("unknown section {content}: only [Interface] and [Peer] exist")));
                    section = Section::None;
                }
            }
            continue;
        }

        // A setting.
        let Some((key, value)) = content.split_once('=') else {
            problems.push(Problem::new(n, format!("{:?} is neither a section header nor a `Key = value` setting", shown(content))));
            continue;
        };
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        let value = value.trim();
        // Not echoed: it may be a key with its `=` taken for the separator.
        if key.is_empty() || key.len() > 32 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            problems.push(Problem::new(n, "this line is not a `Key = value` setting"));
            continue;
        }
        match &mut section {
            Section::None => {
                problems.push(Problem::new(n, format!("{key} comes before any section: put it under [Interface] or [Peer]")));
            }
            Section::Interface => {
                // Comments inside the interface section belong to nobody.
                pending.clear();
                seen.push(key.to_ascii_lowercase());
                let iface = interface.as_mut().expect("the interface section exists while it is read");
                interface_setting(iface, &key, value, n, &mut problems, &mut notes);
            }
            Section::Peer(p) => {
                p.inner.append(&mut pending);
                peer_setting(p, &key, value, n, &mut problems);
            }
        }
    }
    close(&mut section, &mut peers, &mut problems);

    let Some(interface) = interface else {
        problems.push(Problem::new(1, "no [Interface] section: this is not a wg-quick configuration"));
        return Err(sorted(problems));
    };
    if interface.private_key.is_none() && !seen.iter().any(|k| k == "privatekey") {
        problems.push(Problem::new(
            interface.line,
            "[Interface] has no PrivateKey: the server's key is needed so that clients keep working (put it in the file if PostUp loads it from elsewhere)",
        ));
    }
    if interface.addresses.is_empty() && !seen.iter().any(|k| k == "address") {
        problems.push(Problem::new(interface.line, "[Interface] has no Address: the tunnel's subnets cannot be known"));
    }
    if !problems.is_empty() {
        return Err(sorted(problems));
    }
    Ok(WgQuickFile { interface, peers, notes: sorted(notes) })
}

fn sorted(mut v: Vec<Problem>) -> Vec<Problem> {
    v.sort_by_key(|p| p.line);
    v
}

/// A value for a message: anything that looks like a base64 key (43 base64 characters and `=`)
/// hidden, since a key pasted in the wrong place may be a private one, and cut short.
fn shown(s: &str) -> String {
    let b = s.as_bytes();
    let is_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let run = b[i..].iter().take_while(|&&c| is_b64(c)).count();
        if run == 0 {
            let ch = s[i..].chars().next().expect("i is on a character boundary");
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        if run == 43 && b.get(i + 43) == Some(&b'=') {
            out.push_str("[key hidden]");
            i += 44;
        } else {
            out.push_str(&s[i..i + run]);
            i += run;
        }
    }
    if out.chars().count() > HOOK_SHOWN {
        format!("{}...", out.chars().take(HOOK_SHOWN).collect::<String>())
    } else {
        out
    }
}

/// `ENDPOINT host` (Nyr/wireguard-install writes the server's public address so).
fn endpoint_comment(text: &str) -> Option<String> {
    let rest = text.strip_prefix("ENDPOINT")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let host = rest.trim();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_owned())
}

/// The `# ENDPOINT host` among the comments above `[Interface]`.
fn leading_endpoint(leading: &[Comment]) -> Option<Lined<String>> {
    leading.iter().find_map(|c| endpoint_comment(&c.text).map(|value| Lined { line: c.line, value }))
}

/// PiVPN's `#[disabled] [Peer]`.
fn is_disabled_peer(text: &str) -> bool {
    text.strip_prefix("[disabled]").is_some_and(|rest| rest.trim().eq_ignore_ascii_case("[Peer]"))
}

/// An end marker: `# END_PEER alice` (Nyr) or `### end alice ###` (PiVPN).
fn is_end_marker(c: &Comment) -> bool {
    let t = c.text.to_ascii_lowercase();
    t.starts_with("end_peer") || (c.hashes >= 3 && t.starts_with("end "))
}

/// Ends the section being read: a finished peer joins `peers`.
fn close(section: &mut Section, peers: &mut Vec<Peer>, problems: &mut Vec<Problem>) {
    let Section::Peer(p) = std::mem::replace(section, Section::None) else { return };
    let index = peers.len() + 1;
    let Some(public_key) = p.public_key else {
        if !p.broken {
            problems.push(Problem::new(p.line, "this [Peer] has no PublicKey"));
        }
        return;
    };
    if p.broken {
        return;
    }
    let name = name_from(&p.leading, &p.inner);
    peers.push(Peer { line: p.line, index, name, public_key, preshared_key: p.preshared_key, allowed_ips: p.allowed_ips, notes: p.notes });
}

/// A value without any whitespace, as `wg` reads it.
fn squeezed(value: &str) -> String {
    value.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The comma-separated items of a list value, trimmed, empty ones skipped.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn interface_setting(iface: &mut Interface, key: &str, value: &str, n: usize, problems: &mut Vec<Problem>, notes: &mut Vec<Problem>) {
    let k = key.to_ascii_lowercase();
    match k.as_str() {
        "privatekey" => match PrivateKey::from_base64(&squeezed(value)) {
            Ok(key) => {
                if iface.private_key.is_some() {
                    notes.push(Problem::new(n, "PrivateKey is set a second time; the last one counts, as for wg"));
                }
                iface.private_key = Some(Lined { line: n, value: key });
            }
            Err(e) => problems.push(Problem::new(n, format!("PrivateKey is not a valid WireGuard key ({e}): use the base64 key `wg genkey` prints"))),
        },
        "address" => {
            for item in items(value) {
                match item.parse::<InterfaceAddress>() {
                    Ok(a) => iface.addresses.push(Lined { line: n, value: a }),
                    Err(e) => problems.push(Problem::new(n, format!("Address {item:?} is not an address with a prefix length like 10.8.0.1/24 ({e})"))),
                }
            }
        }
        "listenport" => match squeezed(value).parse::<u16>() {
            Ok(0) => notes.push(Problem::new(n, "ListenPort 0 (a random port) is not carried over: the server keeps the configured port")),
            Ok(p) => {
                if iface.listen_port.is_some() {
                    notes.push(Problem::new(n, "ListenPort is set a second time; the last one counts, as for wg"));
                }
                iface.listen_port = Some(Lined { line: n, value: p });
            }
            Err(_) => problems.push(Problem::new(n, format!("ListenPort {value:?} is not a port number (1-65535)"))),
        },
        "mtu" => match squeezed(value).parse::<u16>() {
            Ok(m) => iface.mtu = Some(Lined { line: n, value: m }),
            Err(_) => problems.push(Problem::new(n, format!("MTU {value:?} is not a number"))),
        },
        "dns" => {
            for item in items(value) {
                match item.parse::<IpAddr>() {
                    Ok(a) => iface.dns.push(Lined { line: n, value: a }),
                    Err(_) => notes.push(Problem::new(
                        n,
                        format!("DNS search domain {item:?} is not carried over: vpn gives devices DNS server addresses only"),
                    )),
                }
            }
        }
        "preup" | "postup" | "predown" | "postdown" if value.is_empty() => {}
        "preup" | "postup" | "predown" | "postdown" => notes.push(Problem::new(
            n,
            format!(
                "{key} = {} is not carried over: vpn sets up forwarding, NAT and the firewall itself (`vpn up`); anything else this hook did must be done another way",
                shown(value)
            ),
        )),
        "table" => notes.push(Problem::new(
            n,
            format!("Table = {} is not carried over: vpn routes the pools to its interface itself", shown(value)),
        )),
        "fwmark" => notes.push(Problem::new(n, format!("FwMark = {} is not carried over: vpn does not mark its packets", shown(value)))),
        "saveconfig" => notes.push(Problem::new(
            n,
            format!("SaveConfig = {} is not carried over: vpn's store is where devices live", shown(value)),
        )),
        _ => notes.push(Problem::new(n, format!("unknown setting {key} in [Interface] is ignored"))),
    }
}

fn peer_setting(p: &mut PeerDraft, key: &str, value: &str, n: usize, problems: &mut Vec<Problem>) {
    let k = key.to_ascii_lowercase();
    let mut bad = |problems: &mut Vec<Problem>, msg: String| {
        p.broken = true;
        problems.push(Problem::new(n, msg));
    };
    match k.as_str() {
        "publickey" => match PublicKey::from_base64(&squeezed(value)) {
            Ok(key) => {
                if p.public_key.is_some() {
                    bad(problems, "PublicKey is set twice in one [Peer]: each peer has one key".into());
                } else {
                    p.public_key = Some(Lined { line: n, value: key });
                }
            }
            Err(e) => bad(problems, format!("PublicKey {:?} is not a valid WireGuard key ({e})", shown(value))),
        },
        "presharedkey" => match PresharedKey::from_base64(&squeezed(value)) {
            Ok(psk) => p.preshared_key = (psk.as_bytes() != &[0u8; 32]).then_some(psk),
            Err(e) => bad(problems, format!("PresharedKey is not a valid key ({e}): use the base64 key `wg genpsk` prints")),
        },
        "allowedips" => {
            for item in items(value) {
                match vpn_dataplane::prefix::parse_addr_len(item) {
                    Ok((addr, len)) if len <= if addr.is_ipv4() { 32 } else { 128 } => p.allowed_ips.push(AllowedIp { line: n, addr, len }),
                    _ => bad(problems, format!("AllowedIPs entry {item:?} is not an address or prefix like 10.8.0.2/32")),
                }
            }
        }
        "endpoint" => p.notes.push(Problem::new(
            n,
            format!("Endpoint = {} is not carried over: the server learns a device's endpoint when it connects", shown(value)),
        )),
        "persistentkeepalive" => p.notes.push(Problem::new(
            n,
            format!(
                "PersistentKeepalive = {} is not carried over: the server does not send keepalives to devices (devices keep theirs)",
                shown(value)
            ),
        )),
        _ => p.notes.push(Problem::new(n, format!("unknown setting {key} in [Peer] is ignored"))),
    }
}

/// The name of a peer from its leading and inner comments (see the module documentation).
fn name_from(leading: &[Comment], inner: &[Comment]) -> Option<Lined<String>> {
    // What comes before an end marker names an earlier (maybe disabled) peer.
    let leading = match leading.iter().rposition(is_end_marker) {
        Some(end) => &leading[end + 1..],
        None => leading,
    };
    let structured = |c: &Comment| structured_name(c).map(|value| Lined { line: c.line, value });
    if let Some(n) = leading.iter().rev().find_map(structured).or_else(|| inner.iter().find_map(structured)) {
        return Some(n);
    }
    // A plain comment directly above [Peer] (blank lines allowed), or directly below it.
    let above = leading.last().filter(|c| plain_name(c).is_some());
    let below = inner.first().filter(|c| plain_name(c).is_some());
    above.or(below).and_then(|c| plain_name(c).map(|value| Lined { line: c.line, value }))
}

/// A name in one of the installers' forms.
fn structured_name(c: &Comment) -> Option<String> {
    let t = c.text.as_str();
    let word = |prefix: &str| -> Option<&str> {
        let head = t.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            return None;
        }
        let rest = &t[prefix.len()..];
        rest.starts_with(char::is_whitespace).then(|| rest.trim())
    };
    let clean = |s: &str| -> Option<String> {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_owned())
    };
    if let Some(rest) = word("BEGIN_PEER") {
        return clean(rest);
    }
    if c.hashes >= 3 {
        if let Some(rest) = word("begin") {
            return clean(rest.trim_end_matches('#'));
        }
    }
    // `### Client alice` (angristan) and `# Client: alice (id)` (wg-easy).
    let client = word("Client").or_else(|| {
        let head = t.get(..7)?;
        head.eq_ignore_ascii_case("Client:").then(|| t[7..].trim())
    });
    if let Some(rest) = client {
        return clean(strip_id(rest));
    }
    for key in ["Name", "friendly_name"] {
        let Some(head) = t.get(..key.len()) else { continue };
        if !head.eq_ignore_ascii_case(key) {
            continue;
        }
        let rest = t[key.len()..].trim_start();
        if let Some(v) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) {
            return clean(v);
        }
    }
    None
}

/// `alice (2f1c6a3e-...)` without the trailing id in parentheses (wg-easy).
fn strip_id(s: &str) -> &str {
    let s = s.trim_end();
    if let Some(open) = s.rfind(" (") {
        let inner = &s[open + 2..];
        if let Some(id) = inner.strip_suffix(')') {
            if id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return s[..open].trim_end();
            }
        }
    }
    s
}

/// A plain comment that can serve as a name: not a commented-out setting, not an end marker,
/// not an installer's remark.
fn plain_name(c: &Comment) -> Option<String> {
    let t = c.text.trim_end_matches('#').trim();
    let lower = t.to_ascii_lowercase();
    let skip = t.is_empty()
        || t.contains('=')
        || t.starts_with('[')
        || is_end_marker(c)
        || lower.starts_with("endpoint ")
        || !t.chars().any(char::is_alphanumeric)
        || t.chars().count() > 64;
    (!skip).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "YE9W7RL5a8GWgT6vE2Dda2+QgFGunfEChgTOw0LvTX8=";

    fn file(body: &str) -> String {
        format!("[Interface]\nPrivateKey = {KEY}\nAddress = 10.0.0.1/24\n{body}")
    }

    fn pubkey(i: u8) -> String {
        PublicKey([i; 32]).to_base64()
    }

    #[test]
    fn comments_anywhere_and_case_and_spacing() {
        let text = format!(
            "\u{feff}# a server\r\n[interface]\r\n  privatekey={KEY}  # the key\r\nADDRESS = 10.0.0.1/24 , fd00::1/64\r\nAddress=10.1.0.1/16\r\nListen Port = 51820\r\n\r\n[PEER]\r\nPublicKey =   {}\r\nAllowedIPs = 10.0.0.2/32,\r\nAllowedIPs = fd00::2/128 # v6\r\n",
            pubkey(1)
        );
        let f = parse(&text).unwrap();
        assert_eq!(f.interface.addresses.len(), 3);
        assert_eq!(f.interface.listen_port.as_ref().unwrap().value, 51820);
        assert_eq!(f.peers.len(), 1);
        assert_eq!(f.peers[0].line, 8);
        assert_eq!(f.peers[0].allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.0.2/32", "fd00::2/128"]);
        assert!(f.notes.is_empty(), "{:?}", f.notes);
    }

    #[test]
    fn errors_have_lines_and_never_echo_the_private_key() {
        let text = format!(
            "[Interface]\nPrivateKey = {}x\nAddress = 10.0.0.1/33\nListenPort = huge\n[Peer]\nPublicKey = notakey\nAllowedIPs = 10.0.0.2/32\n[Peer]\nAllowedIPs = 10.0.0.3/32\n[Router]\nstray line\n",
            &KEY[..40]
        );
        let e = parse(&text).unwrap_err();
        let lines: Vec<usize> = e.iter().map(|p| p.line).collect();
        assert_eq!(lines, [2, 3, 4, 6, 8, 10, 11], "{e:?}");
        assert!(!e.iter().any(|p| p.message.contains(&KEY[..40])), "{e:?}");
        assert!(e[3].message.contains("notakey"), "a public key may be shown: {}", e[3]);
        assert!(e[4].message.contains("no PublicKey"));
    }

    #[test]
    fn missing_interface_parts() {
        let e = parse("[Peer]\nPublicKey = x\n").unwrap_err();
        assert!(e.iter().any(|p| p.message.contains("no [Interface]")), "{e:?}");
        let e = parse("[Interface]\nListenPort = 1\n").unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("PrivateKey") && e[1].message.contains("Address"), "{e:?}");
        let e = parse(&format!("PrivateKey = {KEY}\n")).unwrap_err();
        assert!(e[0].message.contains("before any section"), "{e:?}");
    }

    #[test]
    fn notes_for_what_cannot_be_carried() {
        let text = file(&format!(
            "PostUp = iptables -A FORWARD -i %i -j ACCEPT\nTable = off\nFwMark = 0x1\nSaveConfig = true\nDNS = 1.1.1.1, corp.example\nJc = 4\n\n[Peer]\nPublicKey = {}\nEndpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\nAllowedIPs = 10.0.0.2/32\n",
            pubkey(1)
        ));
        let f = parse(&text).unwrap();
        let lines: Vec<usize> = f.notes.iter().map(|p| p.line).collect();
        assert_eq!(lines, [4, 5, 6, 7, 8, 9], "{:?}", f.notes);
        assert!(f.notes[0].message.contains("iptables"));
        assert!(f.notes[4].message.contains("corp.example"));
        assert_eq!(f.interface.dns.len(), 1);
        assert_eq!(f.peers[0].notes.iter().map(|p| p.line).collect::<Vec<_>>(), [13, 14]);
    }

    #[test]
    fn names_in_every_installer_style() {
        let cases = [
            ("### Client alice\n[Peer]\n", "alice"),
            ("# BEGIN_PEER alice\n[Peer]\n", "alice"),
            ("### begin alice ###\n[Peer]\n", "alice"),
            ("# Client: Alice's iPhone (2f1c6a3e-1b2c-4d5e-8f90-123456789abc)\n[Peer]\n", "Alice's iPhone"),
            ("# Name = alice\n[Peer]\n", "alice"),
            ("[Peer]\n# Name: alice\n", "alice"),
            ("[Peer]\n#friendly_name=alice\n", "alice"),
            ("#alice\n\n[Peer]\n", "alice"),
            ("[Peer]\n# alice\n", "alice"),
        ];
        for (head, want) in cases {
            let text = file(&format!("\n{head}PublicKey = {}\nAllowedIPs = 10.0.0.2/32\n", pubkey(1)));
            let f = parse(&text).unwrap_or_else(|e| panic!("{head}: {e:?}"));
            assert_eq!(f.peers[0].name.as_ref().map(|n| n.value.as_str()), Some(want), "{head}");
        }
        // Not names: commented-out settings, end markers, decorations.
        for head in
            ["#PostUp = iptables -F\n[Peer]\n", "# END_PEER bob\n[Peer]\n", "#########\n[Peer]\n", "# bob\nListenPort = 1\n[Peer]\n"]
        {
            let text = file(&format!("{head}PublicKey = {}\nAllowedIPs = 10.0.0.2/32\n", pubkey(1)));
            let f = parse(&text).unwrap();
            assert_eq!(f.peers[0].name, None, "{head}");
        }
    }

    #[test]
    fn end_markers_belong_to_the_previous_peer() {
        let text = file(&format!(
            "\n# BEGIN_PEER alice\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.2/32\n# END_PEER alice\n\n# BEGIN_PEER bob\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.3/32\n# END_PEER bob\n",
            pubkey(1),
            pubkey(2)
        ));
        let f = parse(&text).unwrap();
        let names: Vec<_> = f.peers.iter().map(|p| p.name.as_ref().unwrap().value.as_str()).collect();
        assert_eq!(names, ["alice", "bob"]);
        assert_eq!(f.peers[1].index, 2);
    }

    #[test]
    fn pivpn_disabled_peers_and_nyr_endpoint() {
        let text = format!(
            "# Do not alter the commented lines\n# ENDPOINT 203.0.113.7\n\n{}\n### begin old ###\n#[disabled] [Peer]\n#[disabled] PublicKey = {}\n#[disabled] AllowedIPs = 10.0.0.9/32\n### end old ###\n### begin bob ###\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.3/32\n### end bob ###\n",
            file(""),
            pubkey(1),
            pubkey(2)
        );
        let f = parse(&text).unwrap();
        assert_eq!(f.interface.endpoint_hint, Some(Lined { line: 2, value: "203.0.113.7".into() }));
        assert_eq!(f.peers.len(), 1);
        assert_eq!(f.peers[0].name.as_ref().unwrap().value, "bob");
        assert_eq!(f.notes.len(), 1);
        assert_eq!(f.notes[0].line, 9);
        assert!(f.notes[0].message.contains("\"old\"") && f.notes[0].message.contains("disabled"), "{:?}", f.notes);
    }

    #[test]
    fn a_name_before_an_end_marker_is_not_the_next_peers() {
        let text = file(&format!(
            "### begin old ###\n#[disabled] [Peer]\n#[disabled] PublicKey = {}\n### end old ###\n[Peer]\nPublicKey = {}\nAllowedIPs = 10.0.0.3/32\n",
            pubkey(1),
            pubkey(2)
        ));
        let f = parse(&text).unwrap();
        assert_eq!(f.peers[0].name, None);
        assert_eq!(f.notes.len(), 1);
    }

    #[test]
    fn keys_in_messages_are_hidden() {
        assert_eq!(shown(&format!("wg set %i private-key <(echo {KEY}) # é")), "wg set %i private-key <(echo [key hidden]) # é");
        let e = parse(&format!("[Interface]\nPrivateKey {KEY}\n[Peer]\nPublicKey = {KEY}x\n")).unwrap_err();
        assert_eq!(e.iter().map(|p| p.line).collect::<Vec<_>>(), [1, 1, 2, 4]);
        assert!(!e.iter().any(|p| p.message.contains(&KEY[..20])), "{e:?}");
    }

    #[test]
    fn zero_psk_is_none_and_hosts() {
        let text = file(&format!(
            "[Peer]\nPublicKey = {}\nPresharedKey = {}\nAllowedIPs = 10.0.0.2, 192.168.1.0/24\n",
            pubkey(1),
            PublicKey([0; 32]).to_base64()
        ));
        let f = parse(&text).unwrap();
        assert!(f.peers[0].preshared_key.is_none());
        assert!(f.peers[0].allowed_ips[0].is_host());
        assert!(!f.peers[0].allowed_ips[1].is_host());
    }
}
