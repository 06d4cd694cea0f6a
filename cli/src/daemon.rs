//! `vpn daemon [-f|--foreground] IFNAME` and `vpnd`: wireguard-go's command-line contract.
//!
//! Creates the TUN interface and the UAPI socket `/var/run/wireguard/IFNAME.sock`, then serves
//! until SIGTERM/SIGINT, until the interface is deleted or until the socket is removed. Without
//! `-f` it detaches: the parent starts a copy of itself in the background, waits until that copy
//! has the interface and the socket ready (so `wg setconf` can follow at once, as `wg-quick`
//! does), and exits. Logs go through `tracing` to stderr; in the background they are discarded
//! unless `LOG_LEVEL` is set (as with wireguard-go).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use vpn_control::uapi::{Backend, Errno, Shutdown, UapiServer};
use vpn_dataplane::tun::{Tun, TunOptions};
use vpn_dataplane::udp::{SystemNetwork, UdpOptions};
use vpn_dataplane::{Engine, EngineOptions, InterfaceConfig, InterfaceStatus, StopReason};

/// Environment variable marking the detached child.
const CHILD_ENV: &str = "VPN_DAEMON_CHILD";
/// Tunnel MTU of a new interface (wg-quick sets its own afterwards).
const DEFAULT_MTU: u16 = 1420;

/// Parsed command line.
pub(crate) struct Args {
    pub(crate) foreground: bool,
    pub(crate) ifname: String,
    pub(crate) tuning: Tuning,
}

/// Data-path switches. `vpnd` keeps wireguard-go's command line, so they also come from the
/// environment: `VPN_TUN_OFFLOAD`, `VPN_UDP_GSO`, `VPN_UDP_GRO` (`on`/`off`),
/// `VPN_CRYPTO_THREADS` (a number; 0 keeps all crypto on the reader threads) and
/// `VPN_TUN_QUEUE_LEN` (the TUN transmit queue, in packets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuning {
    pub(crate) tun_offload: bool,
    pub(crate) udp_gso: bool,
    pub(crate) udp_gro: bool,
    pub(crate) crypto_threads: Option<usize>,
    pub(crate) tun_queue_len: u32,
}

/// The range `VPN_TUN_QUEUE_LEN` and `--tun-queue-len` accept.
const TUN_QUEUE_LEN_RANGE: std::ops::RangeInclusive<u32> = 16..=100_000;

/// Parses a TUN queue length (`VPN_TUN_QUEUE_LEN`, `--tun-queue-len`) within
/// [`TUN_QUEUE_LEN_RANGE`].
pub(crate) fn parse_tun_queue_len(s: &str) -> Result<u32, String> {
    let range = TUN_QUEUE_LEN_RANGE;
    s.parse::<u32>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{s:?} is not a queue length: use a number of packets from {} to {}", range.start(), range.end()))
}

impl Tuning {
    /// The defaults (every offload on, crypto threads by CPU count), changed by the environment.
    pub(crate) fn from_env() -> Result<Self> {
        fn switch(name: &str) -> Result<bool> {
            match std::env::var(name).ok().as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("" | "on" | "1" | "true" | "yes") => Ok(true),
                Some("off" | "0" | "false" | "no") => Ok(false),
                Some(v) => bail!("{name}={v:?} is not a switch: use on or off"),
            }
        }
        let crypto_threads = match std::env::var("VPN_CRYPTO_THREADS") {
            Err(_) => None,
            Ok(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= 64)
                    .with_context(|| format!("VPN_CRYPTO_THREADS={v:?} is not a thread count: use a number from 0 to 64"))?,
            ),
        };
        let tun_queue_len = match std::env::var("VPN_TUN_QUEUE_LEN") {
            Err(_) => vpn_dataplane::tun::DEFAULT_TX_QUEUE_LEN,
            Ok(v) => parse_tun_queue_len(v.trim()).map_err(|e| anyhow::anyhow!("VPN_TUN_QUEUE_LEN={e}"))?,
        };
        Ok(Self {
            tun_offload: switch("VPN_TUN_OFFLOAD")?,
            udp_gso: switch("VPN_UDP_GSO")?,
            udp_gro: switch("VPN_UDP_GRO")?,
            crypto_threads,
            tun_queue_len,
        })
    }

    /// How to open the TUN device.
    pub(crate) fn tun_options(&self) -> TunOptions {
        TunOptions { offload: self.tun_offload, queue_len: self.tun_queue_len }
    }
}

#[allow(dead_code)] // used by the vpnd binary only
/// Parses wireguard-go's arguments: `[-f|--foreground] INTERFACE-NAME`.
pub(crate) fn parse_args(args: &[String]) -> Result<Args> {
    let mut foreground = false;
    let mut name = None;
    for a in args {
        match a.as_str() {
            "-f" | "--foreground" => foreground = true,
            s if s.starts_with('-') => bail!("unknown option {s}\nUsage: vpnd [-f/--foreground] INTERFACE-NAME"),
            s if name.is_none() => name = Some(s.to_string()),
            _ => bail!("too many arguments\nUsage: vpnd [-f/--foreground] INTERFACE-NAME"),
        }
    }
    let Some(ifname) = name else { bail!("missing interface name\nUsage: vpnd [-f/--foreground] INTERFACE-NAME") };
    validate_ifname(&ifname)?;
    Ok(Args { foreground, ifname, tuning: Tuning::from_env()? })
}

fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        bail!("invalid interface name {name:?}: use 1 to 15 characters without '/', ':' or spaces (e.g. wg0)");
    }
    Ok(())
}

#[allow(dead_code)] // used by the vpn binary only
/// `vpn daemon`.
pub(crate) fn start(foreground: bool, ifname: String, tuning: Tuning) -> Result<()> {
    validate_ifname(&ifname)?;
    run(Args { foreground, ifname, tuning })
}

/// Runs the daemon (detaching first unless `foreground`).
pub(crate) fn run(args: Args) -> Result<()> {
    if !args.foreground && std::env::var_os(CHILD_ENV).is_none() {
        return detach(&args.ifname);
    }
    init_logging(std::env::var_os(CHILD_ENV).is_some());
    let ready = std::env::var_os(CHILD_ENV).is_some();
    match serve(&args.ifname, args.tuning, ready) {
        Ok(()) => Ok(()),
        Err(e) => {
            if ready {
                // The parent is waiting on our stdout: tell it why.
                let _ = writeln!(std::io::stdout(), "ERROR {e:#}");
            }
            Err(e)
        }
    }
}

pub(crate) fn init_logging(background: bool) {
    let level = match std::env::var("LOG_LEVEL").as_deref() {
        Ok("verbose" | "debug") => "debug",
        Ok("error") => "error",
        Ok("silent") => "off",
        _ if background => "off",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}

/// Starts a background copy and waits until it reports the interface ready.
fn detach(ifname: &str) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find our own executable to start in the background")?;
    let mut cmd = Command::new(exe);
    let args: Vec<String> = std::env::args().skip(1).collect();
    cmd.args(&args).env(CHILD_ENV, "1").stdin(Stdio::null()).stdout(Stdio::piped());
    if std::env::var_os("LOG_LEVEL").is_none() {
        cmd.stderr(Stdio::null());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().context("cannot start the background daemon")?;
    let stdout = child.stdout.take().context("no pipe to the background daemon")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).context("the background daemon did not report")?;
    match line.trim_end().split_once(' ') {
        _ if line.trim_end() == "READY" => Ok(()),
        Some(("ERROR", msg)) => bail!("{msg}"),
        _ => {
            let status = child.wait().ok();
            bail!("the background daemon for {ifname} exited before it was ready ({status:?})")
        }
    }
}

/// The engine as the UAPI sees it.
pub(crate) struct EngineBackend(pub(crate) Arc<Engine>);

impl Backend for EngineBackend {
    fn status(&self) -> InterfaceStatus {
        self.0.status()
    }
    fn config(&self) -> InterfaceConfig {
        self.0.config()
    }
    fn apply(&self, new: InterfaceConfig, recreated: &[vpn_crypto::PublicKey]) -> Result<(), Errno> {
        self.0.apply_recreating(new, recreated).map_err(|e| match e {
            vpn_dataplane::ApplyError::AddrInUse(_) => Errno::EADDRINUSE,
            _ => Errno::EIO,
        })
    }
}

fn serve(ifname: &str, tuning: Tuning, report_ready: bool) -> Result<()> {
    if !is_root() {
        bail!("creating a network interface needs root (CAP_NET_ADMIN): run with sudo");
    }
    // Claim the UAPI socket first: a live daemon for this interface makes us refuse before we
    // touch the interface.
    let server = UapiServer::bind(ifname).with_context(|| format!("cannot serve the UAPI for {ifname}"))?;
    let tun =
        Tun::open_with(ifname, DEFAULT_MTU, tuning.tun_options()).with_context(|| format!("cannot create the TUN interface {ifname}"))?;
    let (tso, uso) = (tun.offload(), tun.udp_offload());
    let net = SystemNetwork::new(UdpOptions { gso: tuning.udp_gso, gro: tuning.udp_gro });
    let options = EngineOptions { crypto_threads: tuning.crypto_threads };
    let engine = Arc::new(Engine::start_with(Arc::new(tun), Arc::new(net), options).context("cannot start the packet engine")?);
    tracing::info!(tso, uso, udp_gso = tuning.udp_gso, udp_gro = tuning.udp_gro, crypto_threads = engine.crypto_threads(), "data path");
    let handle = server.serve(Arc::new(EngineBackend(Arc::clone(&engine))), Shutdown::new()).context("cannot start the UAPI server")?;
    tracing::info!(interface = ifname, port = engine.listen_port(), "up");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("cannot install signal handlers")?;
    }
    // A hangup of the terminal we were started from must not stop a daemon.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::new(AtomicBool::new(false)));
    if report_ready {
        let mut out = std::io::stdout();
        let _ = writeln!(out, "READY");
        let _ = out.flush();
    }
    let sys = format!("/sys/class/net/{ifname}");
    let reason = loop {
        if let Some(r) = engine.wait(Duration::from_millis(250)) {
            break format!("{r:?}");
        }
        if stop.load(Ordering::Relaxed) {
            break "signal".to_string();
        }
        if handle.socket_removed() {
            break "UAPI socket removed".to_string();
        }
        if !Path::new(&sys).exists() {
            break "interface deleted".to_string();
        }
    };
    tracing::info!(interface = ifname, reason, "shutting down");
    handle.shutdown();
    engine.shutdown();
    if matches!(engine.wait(Duration::ZERO), Some(StopReason::TunGone(_))) {
        tracing::info!("interface gone");
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    // Effective uid 0; the daemon needs CAP_NET_ADMIN for TUN and SO_MARK.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}
