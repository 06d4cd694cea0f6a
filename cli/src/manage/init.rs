//! `vpn init`: the first-run wizard. Asks (on a terminal) for the public endpoint, listen port,
//! address pools, DNS and egress interface, each with its default shown; every answer is also a
//! flag, and `--yes` takes the flags and defaults without asking. Writes the documented TOML
//! configuration and creates the store with the server's key. Refuses to overwrite an existing
//! setup unless `--reconfigure` (which keeps users, devices and keys).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_control::netconf;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, Store};
use vpn_crypto::PrivateKey;
use vpn_dataplane::IpPrefix;

/// The wizard's flags (each question's answer).
#[derive(clap::Args, Debug, Default)]
pub(crate) struct InitArgs {
    /// Public host name or IP address clients connect to (without port).
    #[arg(long)]
    endpoint: Option<String>,
    /// UDP listen port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// IPv4 address pool for devices (e.g. 10.8.0.0/24), or "none".
    #[arg(long, value_name = "CIDR|none")]
    ipv4_pool: Option<String>,
    /// IPv6 address pool for devices (e.g. fd12:3456:789a:1::/64), or "none".
    #[arg(long, value_name = "CIDR|none")]
    ipv6_pool: Option<String>,
    /// DNS servers for clients, comma-separated, or "none".
    #[arg(long, value_name = "IP,...|none")]
    dns: Option<String>,
    /// Interface to masquerade client traffic out of (default: the default route's).
    #[arg(long, value_name = "IFNAME")]
    egress: Option<String>,
    /// Name of the tunnel interface.
    #[arg(long, value_name = "IFNAME")]
    interface: Option<String>,
    /// Path of the store (SQLite).
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// File holding the passphrase that encrypts the store's keys (default: `passphrase` beside
    /// the configuration file; created with a random passphrase when missing).
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
    /// JSON-lines audit log ("" for none; default: `audit.jsonl` beside the store).
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// Do not ask: take the flags and the defaults.
    #[arg(long, short)]
    yes: bool,
    /// Change an existing setup (users, devices and keys are kept).
    #[arg(long)]
    reconfigure: bool,
}

/// Asks one question on the terminal, re-asking until `parse` accepts the answer.
fn ask<T>(prompt: &str, default: &str, parse: impl Fn(&str) -> Result<T>) -> Result<T> {
    let stdin = std::io::stdin();
    loop {
        eprint!("{prompt} [{default}]: ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            bail!("input ended before the wizard finished");
        }
        let answer = line.trim();
        match parse(if answer.is_empty() { default } else { answer }) {
            Ok(v) => return Ok(v),
            Err(e) => eprintln!("  {e:#}"),
        }
    }
}

fn parse_pool(s: &str, v6: bool) -> Result<Option<IpPrefix>> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let p: IpPrefix =
        s.parse().map_err(|e| anyhow::anyhow!("{s:?} is not a network like {}: {e}", if v6 { "fd00:1::/64" } else { "10.8.0.0/24" }))?;
    let typed: Option<std::net::IpAddr> = s.split('/').next().and_then(|a| a.parse().ok());
    if typed.is_some_and(|a| a != p.addr()) {
        bail!("{s:?} has host bits set: the pool is a network, did you mean {p}?");
    }
    if p.addr().is_ipv6() != v6 {
        bail!("{s:?} is an {} network; this pool takes {}", if v6 { "IPv4" } else { "IPv6" }, if v6 { "IPv6" } else { "IPv4" });
    }
    Ok(Some(p))
}

fn parse_dns(s: &str) -> Result<Vec<std::net::IpAddr>> {
    if s.eq_ignore_ascii_case("none") || s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|a| a.trim().parse().map_err(|_| anyhow::anyhow!("{a:?} is not an IP address (e.g. 1.1.1.1)"))).collect()
}

fn show_pool(p: Option<IpPrefix>) -> String {
    p.map_or("none".into(), |p| p.to_string())
}

fn show_dns(d: &[std::net::IpAddr]) -> String {
    if d.is_empty() {
        "none".into()
    } else {
        d.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }
}

/// `vpn init`.
pub(crate) fn run(config_path: &Path, args: &InitArgs) -> Result<()> {
    let existing = config_path.exists();
    if existing && !args.reconfigure {
        bail!(
            "{} already exists: this server is set up. Use `vpn init --reconfigure` to change it (users, devices and keys are kept)",
            config_path.display()
        );
    }
    let interactive = !args.yes;
    if interactive && !std::io::stdin().is_terminal() {
        bail!("vpn init asks questions, but stdin is not a terminal: pass --yes to take the flags and defaults (see vpn init --help)");
    }
    // Reconfiguring reads the configuration under the writers' lock, so that two at once cannot
    // lose one's change.
    let early_lock = if existing { Some(super::writer_lock(&ServerConfig::load(config_path)?)?) } else { None };
    let mut c = if existing {
        ServerConfig::load(config_path)?
    } else {
        let egress = netconf::default_route_interface().ok().flatten();
        // The egress interface's address is the best guess for the endpoint; the wizard asks.
        let endpoint = egress.as_deref().and_then(crate::server::setup::primary_address).unwrap_or_else(|| "vpn.example.com".into());
        let mut c = ServerConfig::generated_default(&mut OsRng, endpoint);
        c.egress_interface = egress;
        c
    };
    // Flags override the starting point; then, interactively, each question shows the result.
    if let Some(e) = &args.endpoint {
        c.endpoint = e.clone();
    }
    if let Some(p) = args.port {
        c.listen_port = p;
    }
    if let Some(p) = &args.ipv4_pool {
        c.ipv4_pool = parse_pool(p, false)?;
    }
    if let Some(p) = &args.ipv6_pool {
        c.ipv6_pool = parse_pool(p, true)?;
    }
    if let Some(d) = &args.dns {
        c.dns = parse_dns(d)?;
    }
    if let Some(e) = &args.egress {
        c.egress_interface = Some(e.clone());
    }
    if let Some(i) = &args.interface {
        c.interface = i.clone();
    }
    if let Some(s) = &args.store {
        c.store = s.clone();
        if !existing && args.audit_log.is_none() {
            // The audit log lives beside the store unless told otherwise.
            c.audit_log = s.parent().map(|d| d.join("audit.jsonl"));
        }
    }
    if let Some(p) = &args.passphrase_file {
        c.passphrase_file = p.clone();
    } else if !existing {
        // Beside the configuration: /etc/vpn/passphrase for the default /etc/vpn/vpn.toml.
        if let Some(dir) = std::path::absolute(config_path).ok().as_deref().and_then(Path::parent) {
            c.passphrase_file = dir.join("passphrase");
        }
    }
    if let Some(a) = &args.audit_log {
        c.audit_log = (!a.as_os_str().is_empty()).then(|| a.clone());
    }
    if interactive {
        c.endpoint = ask("Public host name or IP clients connect to", &c.endpoint.clone(), |s| {
            let mut t = c.clone();
            t.endpoint = s.to_string();
            t.validate()?;
            Ok(s.to_string())
        })?;
        c.listen_port = ask("UDP listen port", &c.listen_port.to_string(), |s| {
            s.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| anyhow::anyhow!("{s:?} is not a port (1-65535)"))
        })?;
        c.ipv4_pool = ask("IPv4 pool for devices (or none)", &show_pool(c.ipv4_pool), |s| parse_pool(s, false))?;
        c.ipv6_pool = ask("IPv6 pool for devices (or none)", &show_pool(c.ipv6_pool), |s| parse_pool(s, true))?;
        c.dns = ask("DNS servers for clients (comma-separated, or none)", &show_dns(&c.dns), parse_dns)?;
        let egress_default = c.egress_interface.clone().unwrap_or_else(|| "auto".into());
        c.egress_interface = ask("Egress interface for NAT (auto = the default route's)", &egress_default, |s| {
            Ok(if s == "auto" { None } else { Some(s.to_string()) })
        })?;
    }
    c.validate().context("the configuration is not usable")?;
    // The configuration and the store change together, one command at a time.
    let _lock = match early_lock {
        Some(lock) => lock,
        None => super::writer_lock(&c)?,
    };
    c.save(config_path)?;
    let mut store = super::open_store(&c)?;
    let key = match store.server_key()? {
        Some(k) => k,
        None => {
            let k = PrivateKey::generate(&mut OsRng);
            store.set_server_key(&k, &Actor::local())?;
            k
        }
    };
    println!("{} {}", if existing { "updated" } else { "wrote" }, config_path.display());
    println!("store {}; server public key {}", c.store.display(), key.public_key().to_base64());
    println!("next: `vpn up` (or `systemctl enable --now vpn`), then `vpn user add NAME` and `vpn device add NAME DEVICE`");
    Ok(())
}
