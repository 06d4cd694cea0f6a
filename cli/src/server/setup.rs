//! The host side of `vpn up`: the configuration (created with working defaults on first run),
//! the interface's addresses and MTU, forwarding, and the nftables table, removed again when the
//! server stops.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use rand_core::OsRng;
use vpn_control::netconf::{self, FirewallSpec, InterfaceSetup};
use vpn_control::server_config::ServerConfig;

/// Loads the configuration, or creates the default one (and says so) when there is none.
pub(crate) fn load_or_create(path: &Path) -> Result<ServerConfig> {
    if path.exists() {
        let config = ServerConfig::load(path)?;
        config.validate().with_context(|| format!("{} is not usable", path.display()))?;
        return Ok(config);
    }
    let egress = netconf::default_route_interface().ok().flatten();
    let endpoint = egress.as_deref().and_then(primary_address).unwrap_or_else(|| "vpn.example.com".to_string());
    let mut config = ServerConfig::generated_default(&mut OsRng, endpoint.clone());
    config.egress_interface = egress.clone();
    config.validate()?;
    config.save(path).with_context(|| format!("cannot write the default configuration to {}", path.display()))?;
    eprintln!("vpn up: no configuration at {}; created one with working defaults:", path.display());
    eprintln!("  interface {} on UDP port {}, clients connect to {endpoint}", config.interface, config.listen_port);
    if let Some(p) = config.ipv4_pool {
        eprintln!("  IPv4 pool {p}");
    }
    if let Some(p) = config.ipv6_pool {
        eprintln!("  IPv6 pool {p}");
    }
    eprintln!("  NAT out of {}, store {}", egress.as_deref().unwrap_or("(the default route's interface)"), config.store.display());
    eprintln!("  If clients must use another address or name, set `endpoint` in {} (or run `vpn init --reconfigure`).", path.display());
    eprintln!("  Add the first device with:  vpn user add alice && vpn device add alice laptop");
    Ok(config)
}

/// The first global IPv4 address of `ifname`, as the default endpoint.
pub(crate) fn primary_address(ifname: &str) -> Option<String> {
    let out = Command::new("ip").args(["-o", "-4", "addr", "show", "dev", ifname, "scope", "global"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(word.split('/').next()?.to_string())
}

/// The egress interface: configured, or the default route's.
fn egress(config: &ServerConfig) -> Result<String> {
    match &config.egress_interface {
        Some(e) => Ok(e.clone()),
        None => netconf::default_route_interface()?.context(
            "no default route to masquerade out of: set `egress_interface` in the configuration, or `firewall = false` to manage NAT yourself",
        ),
    }
}

fn firewall_spec(config: &ServerConfig) -> Result<FirewallSpec> {
    Ok(FirewallSpec {
        ifname: config.interface.clone(),
        egress: egress(config)?,
        listen_port: config.listen_port,
        ipv4_pool: config.ipv4_pool,
        ipv6_pool: config.ipv6_pool,
    })
}

/// (Re)applies the nftables table for `config`.
pub(crate) fn firewall(config: &ServerConfig) -> Result<()> {
    netconf::apply_firewall(&firewall_spec(config)?).context("cannot apply the nftables rules")
}

/// What `up` changed on the host; dropping it removes the firewall table (the interface goes
/// with the TUN device).
pub(crate) struct HostSetup {
    firewall: bool,
}

impl HostSetup {
    /// Addresses and MTU, forwarding, firewall.
    pub(crate) fn apply(config: &ServerConfig) -> Result<HostSetup> {
        let addresses = config.server_address4().into_iter().chain(config.server_address6()).collect();
        netconf::configure_interface(&InterfaceSetup { ifname: config.interface.clone(), mtu: config.mtu, addresses })
            .context("cannot configure the interface")?;
        netconf::enable_forwarding(config.ipv4_pool.is_some(), config.ipv6_pool.is_some()).context("cannot enable forwarding")?;
        if config.firewall {
            firewall(config)?;
        }
        Ok(HostSetup { firewall: config.firewall })
    }
}

impl Drop for HostSetup {
    fn drop(&mut self) {
        if self.firewall {
            if let Err(e) = netconf::remove_firewall() {
                tracing::warn!(error = %e, "cannot remove the nftables table");
            }
        }
    }
}

/// Settings whose change needs the server restarted.
pub(crate) fn needs_restart(old: &ServerConfig, new: &ServerConfig) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.interface != new.interface {
        v.push("interface");
    }
    if old.ipv4_pool != new.ipv4_pool || old.ipv6_pool != new.ipv6_pool {
        v.push("address pools");
    }
    if old.store != new.store {
        v.push("store");
    }
    if old.firewall != new.firewall {
        v.push("firewall");
    }
    v
}

/// After a server was killed: removes its firewall table and interface if they are still there.
pub(crate) fn remove_leftovers(config: &ServerConfig) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if netconf::firewall_present().unwrap_or(false) {
        netconf::remove_firewall()?;
        done.push(format!("nftables table inet {}", netconf::NFT_TABLE));
    }
    if Path::new("/sys/class/net").join(&config.interface).exists() {
        let out = Command::new("ip").args(["link", "del", "dev", &config.interface]).output().context("cannot run ip")?;
        if out.status.success() {
            done.push(format!("interface {}", config.interface));
        }
    }
    let sock = super::mgmt::socket_path(&config.interface);
    if sock.exists() && std::fs::remove_file(&sock).is_ok() {
        done.push(format!("socket {}", sock.display()));
    }
    Ok(done)
}
