//! The nftables table `inet vpn`: open the listen port, forward the tunnel's traffic, masquerade
//! the pools out of the egress interface. It is replaced whole in one `nft -f -` transaction and
//! never touches another table.

use std::fmt::Write as _;

use vpn_dataplane::IpPrefix;

use super::command::{run, Program};
use super::error::NetError;
use super::validate_ifname;

/// The name of the table (family `inet`) that `vpn` owns.
pub const NFT_TABLE: &str = "vpn";

/// What the firewall rules are about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// The tunnel interface.
    pub ifname: String,
    /// The interface whose traffic to the internet is masqueraded.
    pub egress: String,
    /// The UDP port the server listens on.
    pub listen_port: u16,
    /// The IPv4 pool to masquerade, if any.
    pub ipv4_pool: Option<IpPrefix>,
    /// The IPv6 pool to masquerade, if any.
    pub ipv6_pool: Option<IpPrefix>,
}

/// The complete `nft -f` script for `spec`: it creates the table if absent, deletes it, and
/// declares it anew, so that applying it replaces an earlier version atomically (one transaction)
/// and never touches other tables.
///
/// Refuses interface names that are not plain ([`super::check_interface_name`]), a pool of the
/// wrong family, port 0, and an egress interface equal to the tunnel.
pub fn firewall_ruleset(spec: &FirewallSpec) -> Result<String, NetError> {
    validate_ifname("interface", &spec.ifname)?;
    validate_ifname("egress interface", &spec.egress)?;
    if spec.ifname == spec.egress {
        return Err(NetError::InvalidSpec(format!(
            "the egress interface is the tunnel {} itself: set `egress_interface` to the interface that leads to the internet",
            spec.ifname
        )));
    }
    if spec.listen_port == 0 {
        return Err(NetError::InvalidSpec("listen port 0: set the server's UDP port".into()));
    }
    if let Some(p) = spec.ipv4_pool.filter(|p| !p.addr().is_ipv4()) {
        return Err(NetError::InvalidSpec(format!("the IPv4 pool {p} is not an IPv4 prefix")));
    }
    if let Some(p) = spec.ipv6_pool.filter(|p| !p.addr().is_ipv6()) {
        return Err(NetError::InvalidSpec(format!("the IPv6 pool {p} is not an IPv6 prefix")));
    }
    let (t, i, e) = (NFT_TABLE, &spec.ifname, &spec.egress);
    let mut s = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        s,
        "add table inet {t}\n\
         delete table inet {t}\n\
         table inet {t} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tudp dport {port} accept\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tiifname \"{i}\" accept\n\
         \t\toifname \"{i}\" ct state established,related accept\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n",
        port = spec.listen_port
    );
    if let Some(p) = spec.ipv4_pool {
        let _ = writeln!(s, "\t\tip saddr {p} oifname \"{e}\" masquerade");
    }
    if let Some(p) = spec.ipv6_pool {
        let _ = writeln!(s, "\t\tip6 saddr {p} oifname \"{e}\" masquerade");
    }
    s.push_str("\t}\n}\n");
    Ok(s)
}

/// Installs (or replaces) the table with one `nft -f -` transaction: on any error nothing changes.
pub fn apply_firewall(spec: &FirewallSpec) -> Result<(), NetError> {
    let script = firewall_ruleset(spec)?;
    run(Program::Nft, &["-f", "-"], Some(&script))?;
    Ok(())
}

/// Deletes the table; an absent table is not an error.
pub fn remove_firewall() -> Result<(), NetError> {
    let script = format!("add table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    run(Program::Nft, &["-f", "-"], Some(&script))?;
    Ok(())
}

/// Whether the table exists.
pub fn firewall_present() -> Result<bool, NetError> {
    let out = run(Program::Nft, &["list", "tables", "inet"], None)?;
    let want = format!("table inet {NFT_TABLE}");
    Ok(out.lines().any(|l| l.trim() == want))
}
