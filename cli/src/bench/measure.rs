//! The measurements of one round of one implementation, through its tunnel from namespace A
//! (10.242.0.1) to namespace B (10.242.0.2):
//!
//! - memory: VmRSS of each daemon, idle after setup (with the idle peers), and VmHWM at the end;
//! - RTT: the median of `--pings` pings at 50 ms intervals, before any load;
//! - TCP: iperf3 with one stream and with `--streams` streams, A→B and B→A (`-R`), throughput
//!   as received;
//! - CPU: utime+stime of both daemons over the four TCP tests divided by the Gbit they moved
//!   (CPU-seconds per Gbit: lower is cheaper);
//! - UDP: iperf3 at `--udp-rate` with datagrams that fill the tunnel MTU and 4 MiB socket
//!   buffers at both ends; loss % and received rate.
//!
//! A failed test is recorded as an error and the others still run; a tunnel that does not carry
//! a ping fails the whole round of that implementation.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::exec;
use super::report::Metric;
use super::testbed::{Pair, Testbed, INNER_B, TUNNEL_MTU};
use super::Settings;

const IPERF_PORT: u16 = 5201;

/// Where samples go: `record(metric, value)`.
pub(crate) type Record<'a> = dyn FnMut(Metric, f64) + 'a;

/// Runs every measurement on `pair`. Failures of single tests are appended to `errors`; an
/// error return means the round could not be measured at all (or a signal arrived).
pub(crate) fn measure(pair: &mut Pair, tb: &Testbed, s: &Settings, record: &mut Record<'_>, errors: &mut Vec<String>) -> Result<()> {
    warm_up(pair, tb)?;
    exec::sleep(Duration::from_millis(300))?;
    for pid in [pair.a.pid, pair.b.pid] {
        record(Metric::RssIdle, exec::status_kib(pid, "VmRSS")? as f64 / 1024.0);
    }

    let mut soft = |name: &str, r: Result<()>| -> Result<()> {
        match r {
            Err(e) if exec::is_interrupted(&e) => Err(e),
            Err(e) => {
                eprintln!("    {name}: FAILED: {e:#}");
                errors.push(format!("{name}: {e:#}"));
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    };

    soft("ping RTT", rtt(tb, s).map(|ms| record(Metric::Rtt, ms)))?;

    pair.start_iperf_server(tb, IPERF_PORT, s.daemon_life_s())?;
    let mut ticks = 0u64;
    let mut gbit = 0.0f64;
    let tests =
        [(Metric::Tcp1Ab, 1, false), (Metric::Tcp1Ba, 1, true), (Metric::TcpNAb, s.streams, false), (Metric::TcpNBa, s.streams, true)];
    for (metric, streams, reverse) in tests {
        let r = (|| -> Result<()> {
            let before = pair.cpu_ticks()?;
            let t = tcp(tb, s, streams, reverse)?;
            let after = pair.cpu_ticks()?;
            record(metric, t.gbps);
            if let (Metric::Tcp1Ab, Some(r)) = (metric, t.retransmits) {
                record(Metric::Tcp1AbRetransmits, r as f64);
            }
            ticks += after.saturating_sub(before);
            gbit += t.gbit;
            Ok(())
        })();
        let r = r.map_err(|e| if pair.a.exited() || pair.b.exited() { e.context(pair.logs()) } else { e });
        soft(metric.key(), r)?;
    }
    if gbit > 0.0 {
        record(Metric::CpuPerGbit, ticks as f64 / s.clk_tck / gbit);
    }

    let r = udp(tb, s).map(|u| {
        record(Metric::UdpLoss, u.loss_percent);
        record(Metric::UdpRx, u.rx_gbps);
    });
    soft("udp", r)?;

    for pid in [pair.a.pid, pair.b.pid] {
        soft("peak RSS", exec::status_kib(pid, "VmHWM").map(|k| record(Metric::RssPeak, k as f64 / 1024.0)))?;
    }
    Ok(())
}

/// Pings B until the handshake is done (10 tries of 1 s).
fn warm_up(pair: &Pair, tb: &Testbed) -> Result<()> {
    for _ in 0..10 {
        let out = exec::run(&["ip", "netns", "exec", &tb.ns_a, "ping", "-n", "-c", "1", "-W", "1", INNER_B], 5)?;
        if out.status.success() {
            return Ok(());
        }
        if pair.a.exited() || pair.b.exited() {
            break;
        }
    }
    bail!("no ping reply through the tunnel (10 tries); {}", pair.logs())
}

/// Median RTT of `s.pings` pings, in ms.
fn rtt(tb: &Testbed, s: &Settings) -> Result<f64> {
    let n = s.pings.to_string();
    let limit = 5 + u64::from(s.pings) / 10;
    let out = exec::run(&["ip", "netns", "exec", &tb.ns_a, "ping", "-n", "-c", &n, "-i", "0.05", "-W", "1", INNER_B], limit)?;
    let mut times: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("time=")))
        .filter_map(|t| t.trim_end_matches("ms").parse::<f64>().ok())
        .collect();
    if times.is_empty() {
        bail!("no ping replies: {}", out.tail());
    }
    if times.len() < s.pings as usize {
        eprintln!("    ping: {} of {} replies", times.len(), s.pings);
    }
    median(&mut times).context("no ping times")
}

/// The result of one iperf3 TCP test.
struct Tcp {
    gbps: f64,
    gbit: f64,
    retransmits: Option<u64>,
}

fn iperf_client(tb: &Testbed, s: &Settings, extra: &[&str]) -> Result<Value> {
    let secs = s.seconds.to_string();
    let port = IPERF_PORT.to_string();
    let mut argv =
        vec!["ip", "netns", "exec", &tb.ns_a, "iperf3", "-c", INNER_B, "-p", &port, "-t", &secs, "-J", "--connect-timeout", "3000"];
    argv.extend_from_slice(extra);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = exec::run(&argv, u64::from(s.seconds) + 20)?;
        let v: Value = match serde_json::from_str(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                return Err(e).with_context(|| format!("`{}` did not print JSON ({}): {}", exec::show(&argv), out.status, out.tail()));
            }
        };
        if let Some(err) = v.get("error").and_then(Value::as_str) {
            // The server may still be finishing the previous test.
            if attempt < 3 && (err.contains("busy") || err.contains("unable to connect")) {
                exec::sleep(Duration::from_secs(1))?;
                continue;
            }
            bail!("iperf3: {err}");
        }
        if !out.status.success() {
            bail!("`{}` failed ({}): {}", exec::show(&argv), out.status, out.tail());
        }
        return Ok(v);
    }
}

fn num(v: &Value, path: &[&str]) -> Result<f64> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key).with_context(|| format!("iperf3 JSON has no {}", path.join(".")))?;
    }
    cur.as_f64().with_context(|| format!("iperf3 JSON: {} is not a number", path.join(".")))
}

fn tcp(tb: &Testbed, s: &Settings, streams: u32, reverse: bool) -> Result<Tcp> {
    let p = streams.to_string();
    let mut extra = vec!["-P", &p];
    if reverse {
        extra.push("-R");
    }
    let v = iperf_client(tb, s, &extra)?;
    let bps = num(&v, &["end", "sum_received", "bits_per_second"])?;
    let bytes = num(&v, &["end", "sum_received", "bytes"])?;
    let retransmits = if reverse { None } else { v.pointer("/end/sum_sent/retransmits").and_then(Value::as_u64) };
    Ok(Tcp { gbps: bps / 1e9, gbit: bytes * 8.0 / 1e9, retransmits })
}

/// The result of one iperf3 UDP test.
struct Udp {
    loss_percent: f64,
    rx_gbps: f64,
}

fn udp(tb: &Testbed, s: &Settings) -> Result<Udp> {
    // Datagrams that exactly fill the tunnel MTU (IPv4 + UDP headers). A 4 MiB socket buffer at
    // both iperf3 ends, so that what is measured is the tunnel's loss, not the receiving
    // iperf3's default 208 KiB buffer overflowing while it waits for a core.
    let len = (TUNNEL_MTU - 28).to_string();
    let v = iperf_client(tb, s, &["-u", "-b", &s.udp_rate, "-l", &len, "-w", "4M"])?;
    // iperf3 3.12 and later report the receiver's view in sum_received; older ones in sum.
    let sum = if v.pointer("/end/sum_received/lost_percent").is_some() { "sum_received" } else { "sum" };
    let loss_percent = num(&v, &["end", sum, "lost_percent"])?;
    let rx_gbps = match v.pointer("/end/sum_received/bits_per_second").and_then(Value::as_f64) {
        Some(b) => b / 1e9,
        None => num(&v, &["end", "sum", "bits_per_second"])? / 1e9 * (1.0 - loss_percent / 100.0),
    };
    Ok(Udp { loss_percent, rx_gbps })
}

/// The median (mean of the middle two for an even count); `None` when empty. Sorts `v`.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}
