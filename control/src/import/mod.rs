//! Migration into `vpn`: `vpn import wg-quick FILE` takes an existing WireGuard server's
//! wg-quick configuration (`/etc/wireguard/wg0.conf`) with its peers into the store, keeping
//! the server's key, the listen port, the subnets and every client's public key, pre-shared key
//! and address, so that the clients keep working with their configurations unchanged.
//!
//! Everything here is pure (no store, no file system), so every rule is tested on its own:
//!
//! | step | function | what |
//! |---|---|---|
//! | read | [`wg_quick::parse`] | the file to a [`WgQuickFile`]: every value checked, every problem with its line, peers' names from the installers' comments |
//! | plan | [`plan`] | the file to a [`Plan`]: pools, server key, and per peer its user, device, keys and addresses; what is refused and what is not carried over, each with its line |
//!
//! # The rules
//!
//! - **Pools.** The first `Address` of each family gives the pool, its network
//!   (`10.66.66.1/24` → `10.66.66.0/24`). `vpn` gives its server the first host of each pool
//!   (`.1`, `::1`): a server address elsewhere is reported, and a peer holding that address is
//!   refused. Further `Address`es of a family are reported and dropped (one pool per family).
//! - **Peers.** A peer keeps its public key and pre-shared key; its private key is not in a
//!   server configuration, so an imported device has none in the store (`vpn device rotate`
//!   issues it a new full configuration when wanted). Its device addresses are the first single
//!   host entry (`/32`, `/128`) of its `AllowedIPs` inside each pool. Every other entry (a
//!   site-to-site route, a second host) is reported and dropped: the peer is imported with its
//!   own addresses only, since a routed network has no place in a `vpn` device.
//! - **Refused peers** (reported with their line, not imported; the rest is): no host address
//!   inside the pools; an address that is the pool's network, the server's or the IPv4
//!   broadcast; an address or public key that an earlier peer (or, with `--merge`, a device of
//!   the store) already has; the server's own public key.
//! - **Names.** Without `--user`, a peer named `alice` in its comments (see [`wg_quick`] for the
//!   forms recognised) becomes user `alice` with device `device1` (`device2`, ... for further
//!   peers of the same name); a name `alice/phone` gives user `alice`, device `phone`; a peer
//!   without a name becomes user `peerN` (N its position among the file's peers). With
//!   `--user NAME`, every peer is a device of that user, named after its comment, else
//!   `peerN`. Names are fitted to the store's rules ([`crate::store::names`]): characters
//!   outside them become `_`, leading punctuation is dropped, the length is cut; a changed name
//!   is reported. A device name already taken gets `-2`, `-3`, ...
//! - **Not carried over, reported:** `PreUp`/`PostUp`/`PreDown`/`PostDown` (`vpn up` manages
//!   forwarding, NAT and its own firewall table), `Table`, `FwMark`, `SaveConfig`, DNS search
//!   domains, unknown settings, peers' `Endpoint` (learned when a device connects) and
//!   `PersistentKeepalive`, and peers commented out by PiVPN. `ListenPort`, `MTU` (1280 to
//!   9000) and `DNS` servers are carried over into the server configuration.

mod plan;
pub mod wg_quick;

use std::fmt;

pub use plan::{plan, Existing, Plan, PlanOptions, PlannedPeer, Skipped};
pub use wg_quick::WgQuickFile;

/// Something about one line of the file: an error, a refused peer, or something not carried
/// over. Messages never contain a private or pre-shared key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line, from 1.
    pub line: usize,
    /// What, and what to do about it.
    pub message: String,
}

impl Problem {
    /// A problem at `line`.
    pub fn new(line: usize, message: impl Into<String>) -> Problem {
        Problem { line, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file is not a usable wg-quick server configuration: every problem, with its line.
    #[error("{}", list(.0))]
    Invalid(Vec<Problem>),
    /// The `--user` name breaks the naming rules.
    #[error(transparent)]
    Name(#[from] crate::store::StoreError),
    /// The file does not fit the setup it would be merged into.
    #[error("{0}")]
    Conflict(String),
}

fn list(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The installers' files in `control/tests/data/wg-quick/`, read and planned.
#[cfg(test)]
mod samples {
    use super::*;

    fn sample(text: &str, user: Option<&str>) -> Plan {
        let file = wg_quick::parse(text).unwrap_or_else(|e| panic!("{}", list(&e)));
        plan(&file, &PlanOptions { user, existing: None }).unwrap()
    }

    /// `user/device ipv4 ipv6` of every planned peer.
    fn rows(p: &Plan) -> Vec<String> {
        p.peers
            .iter()
            .map(|d| {
                let a = |x: Option<String>| x.unwrap_or_else(|| "-".into());
                format!("{}/{} {} {}", d.user, d.device, a(d.ipv4.map(|x| x.to_string())), a(d.ipv6.map(|x| x.to_string())))
            })
            .collect()
    }

    fn lines(v: &[Problem]) -> Vec<usize> {
        v.iter().map(|p| p.line).collect()
    }

    #[test]
    fn angristan() {
        let p = sample(include_str!("../../tests/data/wg-quick/angristan.conf"), None);
        assert_eq!(rows(&p), ["alice/device1 10.66.66.2 fd42:42:42::2", "bob-laptop/device1 10.66.66.3 fd42:42:42::3"]);
        assert_eq!(p.listen_port, Some(64123));
        assert_eq!(
            p.server_key.public_key().to_base64(),
            vpn_crypto::PrivateKey::from_base64("WXLEGNovXZ5AadAiG/NsCfvwEYa/aqiIaNMShttB5Q8=").unwrap().public_key().to_base64()
        );
        assert!(p.peers.iter().all(|d| d.preshared_key.is_some()));
        // Six hooks, each reported with its line.
        assert_eq!(lines(&p.warnings), [5, 6, 7, 8, 9, 10]);
        assert!(p.refused.is_empty());
    }

    #[test]
    fn nyr() {
        let p = sample(include_str!("../../tests/data/wg-quick/nyr.conf"), None);
        assert_eq!(rows(&p), ["alice/device1 10.7.0.2 fddd:2c4:2c4:2c4::2", "bob/device1 10.7.0.3 fddd:2c4:2c4:2c4::3"]);
        assert_eq!(p.endpoint.as_deref(), Some("203.0.113.10"));
        assert!(p.warnings.is_empty(), "{}", list(&p.warnings));
    }

    #[test]
    fn wg_easy() {
        let p = sample(include_str!("../../tests/data/wg-quick/wg-easy.conf"), None);
        assert_eq!(rows(&p), ["Alice_s_iPhone/device1 10.8.0.2 -", "Alice_s_iPhone/device2 10.8.0.3 -"]);
        assert_eq!(p.pools.ipv6, None);
        // PostUp, PostDown (the empty hooks are nothing), and the two renamed names.
        assert_eq!(lines(&p.warnings), [10, 12, 15, 21], "{}", list(&p.warnings));
        let p = sample(include_str!("../../tests/data/wg-quick/wg-easy.conf"), Some("alice"));
        assert_eq!(rows(&p), ["alice/Alice_s_iPhone 10.8.0.2 -", "alice/Alice_s_iPhone-2 10.8.0.3 -"]);
    }

    #[test]
    fn pivpn() {
        let p = sample(include_str!("../../tests/data/wg-quick/pivpn.conf"), None);
        assert_eq!(rows(&p), ["alice/device1 10.6.0.2 fd11:5ee:bad:c0de::2", "carol/device1 10.6.0.4 fd11:5ee:bad:c0de::4"]);
        assert_eq!(p.mtu, Some(1420));
        assert_eq!(lines(&p.warnings), [13]);
        assert!(p.warnings[0].message.contains("\"bob\" is disabled"), "{}", p.warnings[0]);
    }

    #[test]
    fn hand_written() {
        let p = sample(include_str!("../../tests/data/wg-quick/hand-written.conf"), None);
        assert_eq!(rows(&p), ["alice/device1 192.168.77.10 -", "branch-office/router 192.168.77.20 -", "peer3/device1 192.168.77.30 -"]);
        assert_eq!(p.listen_port, Some(51999));
        assert_eq!(p.mtu, Some(1380));
        assert_eq!(p.dns, Some(vec!["192.168.77.1".parse().unwrap()]));
        // The search domain, Table, FwMark, SaveConfig, alice's keepalive, the router's endpoint
        // and its routed network.
        assert_eq!(lines(&p.warnings), [6, 8, 9, 10, 16, 21, 23], "{}", list(&p.warnings));
        assert!(p.warnings[6].message.contains("10.20.0.0/16") && p.warnings[6].message.contains("branch-office/router"));
    }

    #[test]
    fn crlf_and_lf_read_the_same() {
        let lf = include_str!("../../tests/data/wg-quick/angristan.conf").replace("\r\n", "\n");
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(sample(&lf, None), sample(&crlf, None));
    }

    #[test]
    fn a_bad_key_is_reported_with_its_line_and_nothing_else_is_planned() {
        let text = include_str!("../../tests/data/wg-quick/nyr.conf")
            .replace("worZb/IH719PtU/mEoEECTM9cDVvfrRnlxCTdeZ/4xM=", "worZb/IH719PtU/mEoEECTM9cDVvfrRnlxCTdeZ/4x=");
        let e = wg_quick::parse(&text).unwrap_err();
        assert_eq!(lines(&e), [19]);
        assert_eq!(ImportError::Invalid(e).to_string(), "line 19: PublicKey \"worZb/IH719PtU/mEoEECTM9cDVvfrRnlxCTdeZ/4x=\" is not a valid WireGuard key (a key must be 44 characters long, got 43)");
    }
}
