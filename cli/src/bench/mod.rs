//! `vpn bench`: whole-tunnel benchmark of vpn against other userspace WireGuard implementations.
//!
//! Builds its own testbed (root only): two network namespaces `vpnb-<pid>-a`/`-b` joined by a veth
//! pair (192.168.242.1/2, fd00:242::1/2), and for each implementation a daemon in each namespace
//! with the tunnel addresses 10.242.0.1/2 (MTU 1420), configured with `wg set` exactly as a user
//! would. vpn is `vpnd -f IFNAME` next to the running executable (else `vpn daemon -f IFNAME`, the
//! same daemon in the bigger binary); wireguard-go and boringtun-cli
//! are measured when they are installed (`--impl` selects).
//!
//! Rounds alternate the implementations (round 1: vpn, wireguard-go, boringtun; round 2: the same
//! again, …), each bringing its pair up, measuring and tearing it down, so that the noise of a
//! shared machine spreads over all of them. The report gives the median of each metric per
//! implementation and its ratio to vpn measured in the same run; `--json` gives every sample.
//!
//! Each round starts, before its implementations run, by measuring the crypto ceiling
//! ([`ceiling`]): single-core ChaCha20-Poly1305 seal and open rates on 1420-byte packets, and from
//! them what all the cores could move through the tunnel doing nothing but the AEAD. The report
//! gives vpn's one-stream TCP throughput as a share of it, measured in the same run on the same
//! machine state (issue #4 asks for at least 40 %).
//!
//! Everything created (namespaces, daemons, iperf3, sockets, the work directory with keys and
//! logs) is removed on success, on error, on panic and on SIGINT/SIGTERM/SIGHUP (then the exit
//! status is 130). Every external command runs with a time limit.

mod ceiling;
mod exec;
mod measure;
mod report;
mod testbed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use report::{ImplResult, Machine, Metric, Report};
use testbed::{Keys, Pair, Testbed, MAX_IDLE_PEERS};

/// Arguments of `vpn bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Rounds; each round measures every implementation once, in turn.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Duration of each iperf3 test, in seconds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    seconds: u32,
    /// Parallel TCP streams of the multi-stream tests.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=128))]
    streams: u32,
    /// Offered UDP rate (iperf3 syntax: 500M, 1G, 2.5G).
    #[arg(long, default_value = "1G", value_parser = parse_rate)]
    udp_rate: String,
    /// Pings for the RTT (at 50 ms intervals).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pings: u32,
    /// Extra idle peers (random keys, /32s in 10.243.0.0/16 and up) on both sides.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_IDLE_PEERS)))]
    peers: u32,
    /// Implementations to measure, in order (missing ones are skipped with a note).
    #[arg(long = "impl", value_enum, value_delimiter = ',', default_value = "vpn,wireguard-go,boringtun")]
    impls: Vec<ImplKind>,
    /// Print one JSON object (every sample, medians, ratios) instead of the table.
    #[arg(long)]
    json: bool,
    /// Fail unless vpn's one-stream TCP throughput, each direction, is at least RATIO times
    /// IMPL's, measured in this run (a regression guard for CI), e.g. boringtun=3.
    #[arg(long, value_name = "IMPL=RATIO", value_parser = parse_requirement)]
    require_ratio: Vec<(ImplKind, f64)>,
}

fn parse_requirement(s: &str) -> Result<(ImplKind, f64), String> {
    use clap::ValueEnum;
    let (name, ratio) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected IMPL=RATIO, e.g. boringtun=3"))?;
    let kind = ImplKind::from_str(name, true).map_err(|_| format!("{name:?} is not an implementation: use wireguard-go or boringtun"))?;
    if kind == ImplKind::Vpn {
        return Err("the ratio compares vpn with another implementation: use wireguard-go or boringtun".into());
    }
    match ratio.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok((kind, r)),
        _ => Err(format!("{ratio:?} is not a positive ratio, e.g. 3 or 2.5")),
    }
}

fn parse_rate(s: &str) -> Result<String, String> {
    let digits = s.strip_suffix(['K', 'M', 'G', 'k', 'm', 'g']).unwrap_or(s);
    match digits.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() && !digits.starts_with('+') => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not a rate like 500M, 1G or 2.5G")),
    }
}

/// A WireGuard implementation the bench knows how to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImplKind {
    /// This program (`vpnd -f` next to it, else `vpn daemon -f`).
    Vpn,
    /// wireguard-go (`wireguard-go -f`).
    #[value(alias = "wggo")]
    WireguardGo,
    /// boringtun-cli (`boringtun-cli -f --disable-drop-privileges`).
    #[value(alias = "boringtun-cli")]
    Boringtun,
}

impl ImplKind {
    /// The name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ImplKind::Vpn => "vpn",
            ImplKind::WireguardGo => "wireguard-go",
            ImplKind::Boringtun => "boringtun",
        }
    }
}

/// An implementation found on this machine.
pub(crate) struct Impl {
    pub(crate) kind: ImplKind,
    pub(crate) binary: PathBuf,
}

/// The settings of a run.
pub(crate) struct Settings {
    pub(crate) rounds: u32,
    pub(crate) seconds: u32,
    pub(crate) streams: u32,
    pub(crate) udp_rate: String,
    pub(crate) pings: u32,
    pub(crate) peers: u32,
    /// Clock ticks per second of /proc/PID/stat.
    pub(crate) clk_tck: f64,
}

impl Settings {
    /// The longest a daemon or server of one round may live (a safety net only).
    pub(crate) fn daemon_life_s(&self) -> u64 {
        120 + 6 * (u64::from(self.seconds) + 25) + u64::from(self.pings) / 10 + u64::from(self.peers) / 50
    }
}

/// `vpn bench`. Exits with status 130 after cleaning up when a termination signal arrives.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    require_root()?;
    exec::install_signal_handlers()?;
    let result = bench(&args);
    // Every guard has been dropped here: the testbed is gone.
    if exec::interrupted() || result.as_ref().err().is_some_and(exec::is_interrupted) {
        eprintln!("vpn bench: interrupted; testbed and daemons removed");
        std::process::exit(130);
    }
    result
}

fn require_root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse::<u32>().ok())
        .context("cannot find the effective user ID in /proc/self/status")?;
    if euid != 0 {
        bail!("vpn bench must run as root: it creates network namespaces and TUN interfaces (try: sudo vpn bench)");
    }
    Ok(())
}

/// An executable named `name` on PATH.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The binary of `kind`: for vpn, `vpnd` next to our own executable (the same daemon code in the
/// binary `wg-quick` runs, without the server manager, whose larger code would count in the
/// daemon's RSS), else our own executable (`vpn daemon`); otherwise `$WIREGUARD_GO`/`$BORINGTUN`,
/// then PATH (and ~/.cargo/bin for boringtun-cli, where `cargo install` puts it).
fn resolve(kind: ImplKind) -> Result<PathBuf, String> {
    let (var, name) = match kind {
        ImplKind::Vpn => {
            let me = std::env::current_exe().map_err(|e| format!("cannot find our own executable: {e}"))?;
            let vpnd = me.with_file_name("vpnd");
            return Ok(if vpnd.is_file() { vpnd } else { me });
        }
        ImplKind::WireguardGo => ("WIREGUARD_GO", "wireguard-go"),
        ImplKind::Boringtun => ("BORINGTUN", "boringtun-cli"),
    };
    if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(format!("${var} = {} is not a file", p.display()));
    }
    if let Some(p) = find_in_path(name) {
        return Ok(p);
    }
    if kind == ImplKind::Boringtun {
        if let Some(home) = std::env::var_os("HOME") {
            let p = Path::new(&home).join(".cargo/bin/boringtun-cli");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(format!("{name} is not on PATH (set ${var} to use another path)"))
}

/// The first line of `BIN --version`.
fn version(imp: &Impl) -> String {
    let Some(bin) = imp.binary.to_str() else { return "?".to_string() };
    match exec::run(&[bin, "--version"], 5) {
        Ok(o) => o.stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("?").to_string(),
        Err(_) => "?".to_string(),
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".to_string());
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".to_string());
    let loadavg = read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        kernel: read("/proc/sys/kernel/osrelease"),
        date: utc_now(),
        loadavg,
    }
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    utc_date(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_date(secs: u64) -> String {
    crate::manage::time::format_utc(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn clk_tck() -> f64 {
    exec::run(&["getconf", "CLK_TCK"], 5).ok().and_then(|o| o.stdout.trim().parse::<f64>().ok()).filter(|v| *v > 0.0).unwrap_or(100.0)
}

fn bench(args: &BenchArgs) -> Result<()> {
    let missing: Vec<&str> = ["ip", "wg", "iperf3", "ping", "timeout", "kill"].into_iter().filter(|t| find_in_path(t).is_none()).collect();
    if !missing.is_empty() {
        bail!(
            "vpn bench needs {} on PATH (Debian/Ubuntu: apt-get install -y iproute2 wireguard-tools iperf3 iputils-ping coreutils procps)",
            missing.join(", ")
        );
    }
    let mut impls = Vec::new();
    let mut skipped = Vec::new();
    for kind in &args.impls {
        if impls.iter().any(|i: &Impl| i.kind == *kind) {
            continue;
        }
        match resolve(*kind) {
            Ok(binary) => impls.push(Impl { kind: *kind, binary }),
            Err(why) => {
                eprintln!("vpn bench: skipping {}: {why}", kind.name());
                skipped.push((kind.name().to_string(), why));
            }
        }
    }
    if impls.is_empty() {
        bail!("no implementation to measure");
    }
    let settings = Settings {
        rounds: args.rounds,
        seconds: args.seconds,
        streams: args.streams,
        udp_rate: args.udp_rate.clone(),
        pings: args.pings,
        peers: args.peers,
        clk_tck: clk_tck(),
    };
    let mut results: Vec<ImplResult> = impls
        .iter()
        .map(|i| ImplResult { name: i.kind.name(), binary: i.binary.display().to_string(), version: version(i), samples: BTreeMap::new() })
        .collect();
    let machine = machine();
    let mut errors = Vec::new();
    let mut ceilings = Vec::new();
    {
        let report =
            Report { machine: &machine, settings: &settings, impls: &results, ceiling: &ceilings, skipped: &skipped, errors: &errors };
        eprint!("{}", report.header());
    }

    let tb = Testbed::create()?;
    // The key tools are in `vpn` itself (never in vpnd, which would take the word for an interface).
    let keys = Keys::generate(&tb, &std::env::current_exe().context("cannot find our own executable")?)?;
    let idle_peers = if settings.peers > 0 { Some(testbed::write_idle_peers(&tb, settings.peers)?) } else { None };
    eprintln!("testbed: namespaces {} and {}, work directory {}", tb.ns_a, tb.ns_b, tb.workdir.display());

    for round in 1..=settings.rounds {
        // While nothing else of the bench runs: the previous round's daemons have stopped.
        exec::check_interrupt()?;
        eprintln!("round {round}/{}: crypto ceiling, {} cores", settings.rounds, machine.nproc);
        let c = ceiling::measure(machine.nproc);
        eprintln!(
            "    {:<22} {} Gbit/s (seal {} GB/s, open {} GB/s per core)",
            "crypto_ceiling_gbps",
            report::fmt_num(c.gbps),
            report::fmt_num(c.seal_bytes_per_s / 1e9),
            report::fmt_num(c.open_bytes_per_s / 1e9)
        );
        ceilings.push(c);
        for (idx, imp) in impls.iter().enumerate() {
            exec::check_interrupt()?;
            eprintln!("round {round}/{}: {}", settings.rounds, imp.kind.name());
            let samples = &mut results[idx].samples;
            let mut record = |m: Metric, v: f64| {
                eprintln!("    {:<22} {} {}", m.key(), report::fmt_num(v), m.unit());
                samples.entry(m).or_default().push(v);
            };
            let mut round_errors = Vec::new();
            let r = Pair::up(
                &tb,
                imp,
                idx,
                round,
                &keys,
                idle_peers.as_deref().map(|p| (p, settings.peers as usize)),
                settings.daemon_life_s(),
            )
            .and_then(|mut pair| measure::measure(&mut pair, &tb, &settings, &mut record, &mut round_errors));
            for e in round_errors {
                errors.push(format!("round {round}, {}: {e}", imp.kind.name()));
            }
            match r {
                Ok(()) => {}
                Err(e) if exec::is_interrupted(&e) => return Err(e),
                Err(e) => {
                    eprintln!("    FAILED: {e:#}");
                    errors.push(format!("round {round}, {}: {e:#}", imp.kind.name()));
                }
            }
        }
    }
    drop(tb);

    let report = Report { machine: &machine, settings: &settings, impls: &results, ceiling: &ceilings, skipped: &skipped, errors: &errors };
    if args.json {
        let text = serde_json::to_string_pretty(&report.json()).context("cannot format the JSON report")?;
        println!("{text}");
    } else {
        println!("{}", report.table());
    }
    if !errors.is_empty() {
        bail!("{} measurement(s) failed (listed in the report)", errors.len());
    }
    let mut unmet = Vec::new();
    for (kind, min) in &args.require_ratio {
        for line in report.require_ratio(kind.name(), *min) {
            eprintln!("vpn bench: {line}");
            if !line.starts_with("ok") {
                unmet.push(line);
            }
        }
    }
    if !unmet.is_empty() {
        bail!("{} throughput requirement(s) not met", unmet.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_requirements_parse_or_say_what_is_wrong() {
        assert_eq!(parse_requirement("boringtun=3"), Ok((ImplKind::Boringtun, 3.0)));
        assert_eq!(parse_requirement("wireguard-go=2.5"), Ok((ImplKind::WireguardGo, 2.5)));
        assert!(parse_requirement("boringtun").unwrap_err().contains("IMPL=RATIO"));
        assert!(parse_requirement("vpn=2").unwrap_err().contains("another implementation"));
        assert!(parse_requirement("boringtun=-1").unwrap_err().contains("positive"));
        assert!(parse_requirement("nope=1").unwrap_err().contains("not an implementation"));
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn rates() {
        for ok in ["1G", "500M", "2.5G", "100k", "1000000"] {
            assert_eq!(parse_rate(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "G", "1X", "-1G", "0", "+1G", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn medians() {
        assert_eq!(measure::median(&mut []), None);
        assert_eq!(measure::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(measure::median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
