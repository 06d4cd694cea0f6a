//! The testbed of `vpn bench`: two network namespaces joined by a veth pair, and one WireGuard
//! pair (a daemon in each namespace) per implementation and round.
//!
//! Names carry the bench's PID so that concurrent runs and other test suites do not collide:
//! namespaces `vpnb-<pid>-a` and `vpnb-<pid>-b`, veth `vb<pid>va`/`vb<pid>vb`, WireGuard
//! interfaces `wb<pid><round%10><impl><a|b>` (their UAPI sockets live in the shared
//! `/var/run/wireguard`). Only these addresses are used, all inside the two namespaces:
//! outer 192.168.242.1/2 and fd00:242::1/2, inner 10.242.0.1/2 (idle peers: 10.243.0.0/16 up).
//!
//! Everything created is owned by a guard whose `Drop` removes it, so an error, a panic or a
//! signal (which unwinds as an error) leaves nothing behind.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::exec::{self, Proc};
use super::{Impl, ImplKind};

/// Outer (veth) address of side A.
pub(crate) const OUTER_A: &str = "192.168.242.1";
/// Outer (veth) address of side B.
pub(crate) const OUTER_B: &str = "192.168.242.2";
/// Inner (tunnel) address of side A.
pub(crate) const INNER_A: &str = "10.242.0.1";
/// Inner (tunnel) address of side B.
pub(crate) const INNER_B: &str = "10.242.0.2";
const PORT_A: u16 = 42001;
const PORT_B: u16 = 42002;
/// Tunnel MTU.
pub(crate) const TUNNEL_MTU: u32 = 1420;
const WG_RUN_DIR: &str = "/var/run/wireguard";
/// Idle peers get /32s from 10.243.0.0/16 upwards, at most this many.
pub(crate) const MAX_IDLE_PEERS: u32 = 10 * 65536;

/// The two namespaces, the veth pair and a private work directory (keys, logs).
pub(crate) struct Testbed {
    pub(crate) ns_a: String,
    pub(crate) ns_b: String,
    pub(crate) workdir: PathBuf,
    tag: u32,
    /// Namespaces this run created (only these are deleted).
    namespaces: Vec<String>,
    workdir_created: bool,
}

impl Testbed {
    /// Creates the namespaces, the veth pair and the work directory.
    pub(crate) fn create() -> Result<Testbed> {
        let tag = std::process::id();
        let mut tb = Testbed {
            ns_a: format!("vpnb-{tag}-a"),
            ns_b: format!("vpnb-{tag}-b"),
            workdir: std::env::temp_dir().join(format!("vpnb-{tag}")),
            tag,
            namespaces: Vec::new(),
            workdir_created: false,
        };
        if tb.workdir.exists() {
            // Left by an earlier bench that had our PID and was killed: it is gone.
            std::fs::remove_dir_all(&tb.workdir).with_context(|| format!("cannot remove stale {}", tb.workdir.display()))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tb.workdir)
            .with_context(|| format!("cannot create work directory {}", tb.workdir.display()))?;
        tb.workdir_created = true;
        for ns in [tb.ns_a.clone(), tb.ns_b.clone()] {
            exec::check(&["ip", "netns", "add", &ns], 10).with_context(|| format!("cannot create network namespace {ns}"))?;
            tb.namespaces.push(ns.clone());
            exec::check(&["ip", "-n", &ns, "link", "set", "lo", "up"], 10)?;
            // No router advertisements or autoconfiguration noise on the test links.
            exec::cleanup(
                &["ip", "netns", "exec", &ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0"],
                10,
            );
        }
        let (va, vb) = (format!("vb{tag}va"), format!("vb{tag}vb"));
        let (a, b) = (tb.ns_a.clone(), tb.ns_b.clone());
        exec::check(&["ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b], 10)
            .context("cannot create the veth pair")?;
        exec::check(&["ip", "-n", &a, "addr", "add", &format!("{OUTER_A}/24"), "dev", &va], 10)?;
        exec::check(&["ip", "-n", &b, "addr", "add", &format!("{OUTER_B}/24"), "dev", &vb], 10)?;
        exec::check(&["ip", "-n", &a, "addr", "add", "fd00:242::1/64", "dev", &va, "nodad"], 10)?;
        exec::check(&["ip", "-n", &b, "addr", "add", "fd00:242::2/64", "dev", &vb, "nodad"], 10)?;
        exec::check(&["ip", "-n", &a, "link", "set", &va, "up"], 10)?;
        exec::check(&["ip", "-n", &b, "link", "set", &vb, "up"], 10)?;
        Ok(tb)
    }

    /// A path in the work directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.workdir.join(name)
    }

    /// The WireGuard interface name of implementation `idx`, side `a`/`b`, in `round`.
    pub(crate) fn ifname(&self, round: u32, idx: usize, side: char) -> String {
        format!("wb{}{}{}{}", self.tag, round % 10, idx % 10, side)
    }

    /// Writes a private file (keys) in the work directory.
    pub(crate) fn write_private(&self, name: &str, content: &str) -> Result<PathBuf> {
        use std::io::Write;
        let path = self.path(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(content.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Anything still running in our namespaces was started by us.
            if let Ok(out) = exec::run_cleanup_output(&["ip", "netns", "pids", ns], 10) {
                for pid in out.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                    exec::kill_pid(pid);
                }
            }
            if !exec::cleanup(&["ip", "netns", "del", ns], 15) {
                eprintln!("vpn bench: warning: could not delete network namespace {ns}; remove it with `ip netns del {ns}`");
            }
        }
        self.namespaces.clear();
        // UAPI sockets of our interfaces that a killed daemon left behind.
        let prefix = format!("wb{}", self.tag);
        if let Ok(dir) = std::fs::read_dir(WG_RUN_DIR) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(&prefix) && name.ends_with(".sock") && name.len() == prefix.len() + 3 + 5 {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        if self.workdir_created {
            let _ = std::fs::remove_dir_all(&self.workdir);
            self.workdir_created = false;
        }
    }
}

/// The two key pairs of a run (private keys in files for `wg set`).
pub(crate) struct Keys {
    pub(crate) private_a: PathBuf,
    pub(crate) private_b: PathBuf,
    pub(crate) public_a: String,
    pub(crate) public_b: String,
}

impl Keys {
    /// Generates both key pairs with `vpn genkey` and `vpn pubkey`.
    pub(crate) fn generate(tb: &Testbed, vpn: &Path) -> Result<Keys> {
        let vpn = vpn.to_str().context("the path of the vpn executable is not UTF-8")?;
        let one = |side: &str| -> Result<(PathBuf, String)> {
            let private = exec::check(&[vpn, "genkey"], 10).context("`vpn genkey` failed")?;
            let private = private.trim();
            let out = exec::run_with_input(&[vpn, "pubkey"], format!("{private}\n").as_bytes(), 10)?;
            if !out.status.success() {
                bail!("`vpn pubkey` failed: {}", out.tail());
            }
            let public = out.stdout.trim().to_string();
            if public.len() != 44 {
                bail!("`vpn pubkey` printed {public:?}, not a key");
            }
            Ok((tb.write_private(&format!("{side}.key"), &format!("{private}\n"))?, public))
        };
        let (private_a, public_a) = one("a")?;
        let (private_b, public_b) = one("b")?;
        Ok(Keys { private_a, private_b, public_a, public_b })
    }
}

/// Writes the `wg addconf` file with `n` idle peers: random public keys, distinct /32s from
/// 10.243.0.0/16 on, no endpoints.
pub(crate) fn write_idle_peers(tb: &Testbed, n: u32) -> Result<PathBuf> {
    use rand_core::{OsRng, RngCore};
    use std::fmt::Write;
    if n > MAX_IDLE_PEERS {
        bail!("at most {MAX_IDLE_PEERS} idle peers");
    }
    let mut text = String::with_capacity(n as usize * 90);
    let mut key = [0u8; 32];
    for i in 0..n {
        OsRng.fill_bytes(&mut key);
        let (hi, mid, lo) = (243 + i / 65536, (i / 256) % 256, i % 256);
        let _ = write!(text, "[Peer]\nPublicKey = {}\nAllowedIPs = 10.{hi}.{mid}.{lo}/32\n\n", vpn_crypto::keys::to_base64(&key));
    }
    tb.write_private("idle-peers.conf", &text)
}

/// A WireGuard daemon in one namespace. Dropping it stops the process, removes a socket it left
/// behind and deletes the interface if it is still there.
pub(crate) struct Daemon {
    proc_: Proc,
    pub(crate) ifname: String,
    ns: String,
    socket: PathBuf,
    /// PID of the daemon process itself (for /proc statistics).
    pub(crate) pid: u32,
}

impl Daemon {
    /// Starts `imp` in namespace `ns` with interface `ifname` and waits until it answers `wg show`.
    pub(crate) fn start(tb: &Testbed, imp: &Impl, ns: &str, ifname: &str, max_life_s: u64) -> Result<Daemon> {
        let socket = Path::new(WG_RUN_DIR).join(format!("{ifname}.sock"));
        if socket.exists() {
            bail!("{} already exists: another daemon uses the name {ifname}", socket.display());
        }
        let bin = imp.binary.to_str().context("binary path is not UTF-8")?;
        let mut argv = vec!["ip", "netns", "exec", ns, bin];
        let env: &[(&str, &str)] = match imp.kind {
            ImplKind::Vpn => {
                if imp.binary.file_name().is_some_and(|n| n == "vpnd") {
                    argv.extend(["-f", ifname]);
                } else {
                    argv.extend(["daemon", "-f", ifname]);
                }
                &[("LOG_LEVEL", "error")]
            }
            ImplKind::WireguardGo => {
                argv.extend(["-f", ifname]);
                &[("LOG_LEVEL", "error"), ("WG_PROCESS_FOREGROUND", "1")]
            }
            ImplKind::Boringtun => {
                argv.extend(["-f", "--disable-drop-privileges", "-v", "error", ifname]);
                &[("WG_SUDO", "1")]
            }
        };
        let log = tb.path(&format!("{ifname}.log"));
        let label = format!("{} ({ifname})", imp.kind.name());
        let proc_ = Proc::spawn(&label, &argv, env, &log, max_life_s)?;
        let mut d = Daemon { proc_, ifname: ifname.to_string(), ns: ns.to_string(), socket, pid: 0 };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if d.proc_.exited() {
                bail!("{label} exited during start-up: {}", d.proc_.log_tail(10));
            }
            if d.socket.exists() && exec::run(&["wg", "show", ifname], 3)?.status.success() {
                break;
            }
            if Instant::now() >= end {
                bail!("{label} did not create its UAPI socket {} within 10 s: {}", d.socket.display(), d.proc_.log_tail(10));
            }
            exec::sleep(Duration::from_millis(50))?;
        }
        d.pid = d.proc_.program_pid(Duration::from_secs(2))?;
        Ok(d)
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        self.proc_.log_tail(8)
    }

    /// Whether the daemon process has exited.
    pub(crate) fn exited(&self) -> bool {
        self.proc_.exited()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc_.stop(Duration::from_secs(5));
        if self.socket.exists() {
            let _ = std::fs::remove_file(&self.socket);
        }
        // A TUN interface goes with its process; delete it in case it did not.
        if exec::cleanup(&["ip", "-n", &self.ns, "link", "show", &self.ifname], 5) {
            exec::cleanup(&["ip", "-n", &self.ns, "link", "del", &self.ifname], 5);
        }
    }
}

/// One implementation's pair: a daemon in each namespace, configured as each other's peer, and
/// the iperf3 server in B once started.
pub(crate) struct Pair {
    server: Option<Proc>,
    pub(crate) a: Daemon,
    pub(crate) b: Daemon,
}

impl Pair {
    /// Starts and configures both daemons of `imp`, and adds the idle peers (the file and its
    /// number of peers), if any.
    pub(crate) fn up(
        tb: &Testbed,
        imp: &Impl,
        idx: usize,
        round: u32,
        keys: &Keys,
        idle_peers: Option<(&Path, usize)>,
        max_life_s: u64,
    ) -> Result<Pair> {
        let a = Daemon::start(tb, imp, &tb.ns_a, &tb.ifname(round, idx, 'a'), max_life_s)?;
        let b = Daemon::start(tb, imp, &tb.ns_b, &tb.ifname(round, idx, 'b'), max_life_s)?;
        let pair = Pair { server: None, a, b };
        let path = |p: &Path| p.to_str().map(str::to_string).context("work directory path is not UTF-8");
        let (ka, kb) = (path(&keys.private_a)?, path(&keys.private_b)?);
        let (pa, pb) = (PORT_A.to_string(), PORT_B.to_string());
        let (ea, eb) = (format!("{OUTER_A}:{PORT_A}"), format!("{OUTER_B}:{PORT_B}"));
        let (ia, ib) = (format!("{INNER_A}/32"), format!("{INNER_B}/32"));
        let (ifa, ifb) = (pair.a.ifname.as_str(), pair.b.ifname.as_str());
        exec::check(
            &["wg", "set", ifa, "private-key", &ka, "listen-port", &pa, "peer", &keys.public_b, "allowed-ips", &ib, "endpoint", &eb],
            15,
        )?;
        exec::check(
            &["wg", "set", ifb, "private-key", &kb, "listen-port", &pb, "peer", &keys.public_a, "allowed-ips", &ia, "endpoint", &ea],
            15,
        )?;
        if let Some((conf, idle_peer_count)) = idle_peers {
            let conf = path(conf)?;
            let limit = 30 + idle_peer_count as u64 / 100;
            for ifname in [ifa, ifb] {
                exec::check(&["wg", "addconf", ifname, &conf], limit).context("cannot add the idle peers")?;
                let peers = exec::check(&["wg", "show", ifname, "peers"], limit)?.lines().filter(|l| !l.trim().is_empty()).count();
                let want = idle_peer_count + 1;
                if peers != want {
                    bail!("{ifname} has {peers} peers after `wg addconf`, expected {want}");
                }
            }
        }
        let mtu = TUNNEL_MTU.to_string();
        for (ns, ifname, addr) in [(&tb.ns_a, ifa, INNER_A), (&tb.ns_b, ifb, INNER_B)] {
            exec::check(&["ip", "-n", ns, "addr", "add", &format!("{addr}/24"), "dev", ifname], 10)?;
            exec::check(&["ip", "-n", ns, "link", "set", ifname, "mtu", &mtu, "up"], 10)?;
        }
        Ok(pair)
    }

    /// Starts `iperf3 -s` in namespace B and waits until it listens.
    pub(crate) fn start_iperf_server(&mut self, tb: &Testbed, port: u16, max_life_s: u64) -> Result<()> {
        let log = tb.path(&format!("{}.iperf3.log", self.b.ifname));
        let port_s = port.to_string();
        let p = Proc::spawn("iperf3 server", &["ip", "netns", "exec", &tb.ns_b, "iperf3", "-s", "-p", &port_s], &[], &log, max_life_s)?;
        let pid = p.program_pid(Duration::from_secs(3))?;
        self.server = Some(p);
        let end = Instant::now() + Duration::from_secs(5);
        while !listening(pid, port) {
            if self.server.as_ref().is_some_and(Proc::exited) || Instant::now() >= end {
                let tail = self.server.as_ref().map(|p| p.log_tail(5)).unwrap_or_default();
                bail!("iperf3 server in {} does not listen on port {port}: {tail}", tb.ns_b);
            }
            exec::sleep(Duration::from_millis(20))?;
        }
        Ok(())
    }

    /// Daemon CPU time (both sides) in clock ticks.
    pub(crate) fn cpu_ticks(&self) -> Result<u64> {
        Ok(exec::cpu_ticks(self.a.pid).context("daemon A")? + exec::cpu_ticks(self.b.pid).context("daemon B")?)
    }

    /// Logs of both daemons, for error messages.
    pub(crate) fn logs(&self) -> String {
        let state = |d: &Daemon| if d.exited() { " (exited)" } else { "" };
        format!("log A{}: {}; log B{}: {}", state(&self.a), self.a.log_tail(), state(&self.b), self.b.log_tail())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop(Duration::from_secs(2));
        }
        // The daemons stop when the fields drop.
    }
}

/// Whether process `pid` (in some namespace) sees a TCP socket listening on `port`.
fn listening(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(1).is_some_and(|a| a.ends_with(&want)) && cols.get(3) == Some(&"0A")
            })
        })
    })
}
