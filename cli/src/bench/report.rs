//! The results of `vpn bench`: a table per metric (median per implementation, its ratio to the
//! reference implementation `vpn` and the reference's ratio to it, all samples), then the crypto
//! ceiling measured at the start of each round (see [`super::ceiling`]) and vpn's one-stream TCP
//! throughput as a share of its median; or with `--json` one machine-readable object with every
//! sample (the ceiling under `"crypto_ceiling"`), so that CI can compute its own guards.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::ceiling::{Ceiling, PACKET_BYTES};
use super::measure::median;
use super::Settings;

/// What is measured; the order is the order of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Metric {
    Tcp1Ab,
    Tcp1Ba,
    TcpNAb,
    TcpNBa,
    Tcp1AbRetransmits,
    CpuPerGbit,
    UdpLoss,
    UdpRx,
    Rtt,
    RssIdle,
    RssPeak,
}

impl Metric {
    const ALL: [Metric; 11] = [
        Metric::Tcp1Ab,
        Metric::Tcp1Ba,
        Metric::TcpNAb,
        Metric::TcpNBa,
        Metric::Tcp1AbRetransmits,
        Metric::CpuPerGbit,
        Metric::UdpLoss,
        Metric::UdpRx,
        Metric::Rtt,
        Metric::RssIdle,
        Metric::RssPeak,
    ];

    /// The JSON key (stable: CI scripts read it).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Metric::Tcp1Ab => "tcp1_ab_gbps",
            Metric::Tcp1Ba => "tcp1_ba_gbps",
            Metric::TcpNAb => "tcpn_ab_gbps",
            Metric::TcpNBa => "tcpn_ba_gbps",
            Metric::Tcp1AbRetransmits => "tcp1_ab_retransmits",
            Metric::CpuPerGbit => "cpu_s_per_gbit",
            Metric::UdpLoss => "udp_loss_percent",
            Metric::UdpRx => "udp_rx_gbps",
            Metric::Rtt => "rtt_ms",
            Metric::RssIdle => "rss_idle_mib",
            Metric::RssPeak => "rss_peak_mib",
        }
    }

    /// The unit.
    pub(crate) fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1Ab | Metric::Tcp1Ba | Metric::TcpNAb | Metric::TcpNBa | Metric::UdpRx => "Gbit/s",
            Metric::Tcp1AbRetransmits => "segments",
            Metric::CpuPerGbit => "CPU-s/Gbit",
            Metric::UdpLoss => "%",
            Metric::Rtt => "ms",
            Metric::RssIdle | Metric::RssPeak => "MiB per daemon",
        }
    }

    /// Whether a larger value is better.
    pub(crate) fn higher_is_better(self) -> bool {
        matches!(self, Metric::Tcp1Ab | Metric::Tcp1Ba | Metric::TcpNAb | Metric::TcpNBa | Metric::UdpRx)
    }

    /// A description for the table.
    pub(crate) fn title(self, s: &Settings) -> String {
        let n = s.streams;
        match self {
            Metric::Tcp1Ab => "TCP, 1 stream, A→B".to_string(),
            Metric::Tcp1Ba => "TCP, 1 stream, B→A".to_string(),
            Metric::TcpNAb => format!("TCP, {n} streams, A→B"),
            Metric::TcpNBa => format!("TCP, {n} streams, B→A"),
            Metric::Tcp1AbRetransmits => format!("TCP retransmits, 1 stream, A→B, {} s", s.seconds),
            Metric::CpuPerGbit => {
                "CPU per Gbit: both daemons' utime+stime over the TCP tests / Gbit moved (= cores per Gbit/s)".to_string()
            }
            Metric::UdpLoss => format!("UDP loss at {}bit/s offered", s.udp_rate),
            Metric::UdpRx => format!("UDP received at {}bit/s offered", s.udp_rate),
            Metric::Rtt => format!("RTT, median of {} pings, idle", s.pings),
            Metric::RssIdle => format!("RSS idle after setup, {} extra peers", s.peers),
            Metric::RssPeak => "RSS peak (VmHWM) after the tests".to_string(),
        }
    }
}

/// The machine the bench ran on.
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
    pub(crate) date: String,
    pub(crate) loadavg: String,
}

/// The samples of one implementation.
pub(crate) struct ImplResult {
    pub(crate) name: &'static str,
    pub(crate) binary: String,
    pub(crate) version: String,
    pub(crate) samples: BTreeMap<Metric, Vec<f64>>,
}

impl ImplResult {
    fn median(&self, m: Metric) -> Option<f64> {
        let mut v = self.samples.get(&m)?.clone();
        median(&mut v)
    }
}

/// Everything the report shows.
pub(crate) struct Report<'a> {
    pub(crate) machine: &'a Machine,
    pub(crate) settings: &'a Settings,
    pub(crate) impls: &'a [ImplResult],
    /// The crypto ceiling, one sample per round.
    pub(crate) ceiling: &'a [Ceiling],
    pub(crate) skipped: &'a [(String, String)],
    pub(crate) errors: &'a [String],
}

/// `a / b`, when that is a finite number.
fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    let (a, b) = (a?, b?);
    let r = a / b;
    (b != 0.0 && r.is_finite()).then_some(r)
}

/// A number with about three significant digits.
pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
}

impl Report<'_> {
    /// The reference implementation: `vpn` when measured, otherwise the first one.
    fn reference(&self) -> Option<&ImplResult> {
        self.impls.iter().find(|i| i.name == "vpn").or_else(|| self.impls.first())
    }

    /// The samples of one field of the crypto ceiling.
    fn ceiling_samples(&self, field: fn(&Ceiling) -> f64) -> Vec<f64> {
        self.ceiling.iter().map(field).collect()
    }

    /// The median of one field of the crypto ceiling.
    fn ceiling_median(&self, field: fn(&Ceiling) -> f64) -> Option<f64> {
        median(&mut self.ceiling_samples(field))
    }

    /// vpn's one-stream TCP medians, A→B and B→A, as fractions of the median crypto ceiling;
    /// `None` when vpn was not measured.
    pub(crate) fn vpn_tcp1_share(&self) -> Option<(Option<f64>, Option<f64>)> {
        let vpn = self.impls.iter().find(|i| i.name == "vpn")?;
        let ceiling = self.ceiling_median(|c| c.gbps);
        Some((ratio(vpn.median(Metric::Tcp1Ab), ceiling), ratio(vpn.median(Metric::Tcp1Ba), ceiling)))
    }

    /// The crypto ceiling section of the table: empty when it was not measured.
    fn ceiling_table(&self) -> String {
        let mut out = String::new();
        if self.ceiling.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\nCrypto ceiling: {} cores sealing and opening {PACKET_BYTES}-byte packets, nothing else [Gbit/s]",
            self.machine.nproc
        );
        let samples = self.ceiling_samples(|c| c.gbps).iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(" ");
        let gb = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| fmt_num(v / 1e9));
        let _ = writeln!(out, "  median {}   samples {samples}", self.ceiling_median(|c| c.gbps).map_or_else(|| "-".to_string(), fmt_num));
        let _ = writeln!(
            out,
            "  per core (medians): seal {} GB/s, open {} GB/s",
            gb(self.ceiling_median(|c| c.seal_bytes_per_s)),
            gb(self.ceiling_median(|c| c.open_bytes_per_s))
        );
        if let Some((ab, ba)) = self.vpn_tcp1_share() {
            let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{:.1} %", v * 100.0));
            let _ = writeln!(out, "vpn TCP 1 stream as a share of the crypto ceiling: A→B {}, B→A {}", pct(ab), pct(ba));
        }
        out
    }

    /// The `"crypto_ceiling"` object of the JSON report.
    fn ceiling_json(&self) -> Value {
        let field = |f: fn(&Ceiling) -> f64| json!({ "samples": self.ceiling_samples(f), "median": self.ceiling_median(f) });
        let (ab, ba) = self.vpn_tcp1_share().unwrap_or((None, None));
        json!({
            "cores": self.machine.nproc,
            "packet_bytes": PACKET_BYTES,
            "seal_bytes_per_s_per_core": field(|c| c.seal_bytes_per_s),
            "open_bytes_per_s_per_core": field(|c| c.open_bytes_per_s),
            "gbps": field(|c| c.gbps),
            "vpn_tcp1_share": { "ab": ab, "ba": ba },
        })
    }

    /// Checks that vpn's one-stream TCP medians are at least `min` times `other`'s, each
    /// direction; one line per check, starting with "ok" when met.
    pub(crate) fn require_ratio(&self, other: &str, min: f64) -> Vec<String> {
        let find = |name: &str| self.impls.iter().find(|i| i.name == name);
        let (Some(vpn), Some(them)) = (find("vpn"), find(other)) else {
            return vec![format!("cannot check vpn >= {min}x {other}: both must be measured in the same run")];
        };
        [Metric::Tcp1Ab, Metric::Tcp1Ba]
            .into_iter()
            .map(|m| match ratio(vpn.median(m), them.median(m)) {
                Some(r) if r >= min => format!("ok: {} vpn/{other} = {r:.2} (required >= {min})", m.key()),
                Some(r) => format!("FAILED: {} vpn/{other} = {r:.2}, required >= {min}", m.key()),
                None => format!("FAILED: {} has no median for vpn or {other}", m.key()),
            })
            .collect()
    }

    /// The header lines: machine and settings.
    pub(crate) fn header(&self) -> String {
        let m = self.machine;
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "vpn bench, {}", m.date);
        let _ = writeln!(out, "machine: {} CPUs, {}, Linux {}, load average {}", m.nproc, m.cpu_model, m.kernel, m.loadavg);
        let _ = writeln!(
            out,
            "settings: {} round(s), {} s per test, {} TCP streams, UDP at {}bit/s, {} idle extra peers, tunnel MTU 1420",
            s.rounds, s.seconds, s.streams, s.udp_rate, s.peers
        );
        for i in self.impls {
            let _ = writeln!(out, "  {:<13} {} ({})", i.name, i.binary, i.version);
        }
        for (name, why) in self.skipped {
            let _ = writeln!(out, "  {name:<13} skipped: {why}");
        }
        out
    }

    /// The tables, one per metric.
    pub(crate) fn table(&self) -> String {
        let mut out = self.header();
        let Some(reference) = self.reference() else { return out };
        let rname = reference.name;
        let name_w = self.impls.iter().map(|i| i.name.len()).max().unwrap_or(4).max(14);
        for m in Metric::ALL {
            if self.impls.iter().all(|i| !i.samples.contains_key(&m)) {
                continue;
            }
            let better = if m.higher_is_better() { "higher is better" } else { "lower is better" };
            let _ = writeln!(out, "\n{} [{}; {}]", m.title(self.settings), m.unit(), better);
            let (c1, c2) = (format!("x/{rname}"), format!("{rname}/x"));
            let rw = c1.len().max(9);
            let _ = writeln!(out, "  {:<name_w$} {:>10} {:>rw$} {:>rw$}   samples", "implementation", "median", c1, c2);
            let rmed = reference.median(m);
            for i in self.impls {
                let med = i.median(m);
                let samples = i.samples.get(&m).map(|v| v.iter().map(|x| fmt_num(*x)).collect::<Vec<_>>().join(" ")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {:<name_w$} {:>10} {:>rw$} {:>rw$}   {}",
                    i.name,
                    med.map_or_else(|| "-".to_string(), fmt_num),
                    fmt_opt(ratio(med, rmed), 2),
                    fmt_opt(ratio(rmed, med), 2),
                    samples
                );
            }
        }
        out.push_str(&self.ceiling_table());
        if !self.errors.is_empty() {
            let _ = writeln!(out, "\nerrors ({}):", self.errors.len());
            for e in self.errors {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }

    /// The JSON object: machine, settings, and per implementation per metric every sample, the
    /// median and the ratios to the reference.
    pub(crate) fn json(&self) -> Value {
        let m = self.machine;
        let s = self.settings;
        let reference = self.reference();
        let mut impls = Map::new();
        for i in self.impls {
            let mut metrics = Map::new();
            for metric in Metric::ALL {
                let Some(samples) = i.samples.get(&metric) else { continue };
                let med = i.median(metric);
                let rmed = reference.and_then(|r| r.median(metric));
                metrics.insert(
                    metric.key().to_string(),
                    json!({
                        "unit": metric.unit(),
                        "higher_is_better": metric.higher_is_better(),
                        "samples": samples,
                        "median": med,
                        "ratio_to_reference": ratio(med, rmed),
                        "reference_ratio_to_this": ratio(rmed, med),
                    }),
                );
            }
            impls.insert(i.name.to_string(), json!({ "binary": i.binary, "version": i.version, "metrics": metrics }));
        }
        json!({
            "tool": "vpn bench",
            "version": env!("CARGO_PKG_VERSION"),
            "date": m.date,
            "machine": { "nproc": m.nproc, "cpu_model": m.cpu_model, "kernel": m.kernel, "loadavg": m.loadavg },
            "settings": {
                "rounds": s.rounds,
                "seconds": s.seconds,
                "streams": s.streams,
                "udp_rate": s.udp_rate,
                "pings": s.pings,
                "peers": s.peers,
                "tunnel_mtu": 1420,
            },
            "reference": reference.map(|r| r.name),
            "order": self.impls.iter().map(|i| i.name).collect::<Vec<_>>(),
            "implementations": impls,
            "crypto_ceiling": self.ceiling_json(),
            "skipped": self.skipped.iter().map(|(n, why)| json!({ "implementation": n, "reason": why })).collect::<Vec<_>>(),
            "errors": self.errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings { rounds: 2, seconds: 2, streams: 4, udp_rate: "1G".into(), pings: 20, peers: 0, clk_tck: 100.0 }
    }

    fn machine() -> Machine {
        Machine {
            nproc: 4,
            cpu_model: "test CPU".into(),
            kernel: "6.0".into(),
            date: "2024-01-01T00:00:00Z".into(),
            loadavg: "0 0 0".into(),
        }
    }

    fn imp(name: &'static str, ab: &[f64], ba: &[f64]) -> ImplResult {
        let samples = BTreeMap::from([(Metric::Tcp1Ab, ab.to_vec()), (Metric::Tcp1Ba, ba.to_vec())]);
        ImplResult { name, binary: format!("/bin/{name}"), version: "1".into(), samples }
    }

    fn ceilings() -> Vec<Ceiling> {
        // Medians: seal 1 GB/s, open 3 GB/s, 20 Gbit/s.
        [(1e9, 3e9, 20.0), (0.5e9, 2e9, 10.0), (2e9, 4e9, 30.0)]
            .map(|(seal_bytes_per_s, open_bytes_per_s, gbps)| Ceiling { seal_bytes_per_s, open_bytes_per_s, gbps })
            .to_vec()
    }

    #[test]
    fn ceiling_and_vpn_share_in_table_and_json() {
        let (m, s, c) = (machine(), settings(), ceilings());
        let impls = [imp("vpn", &[9.0, 10.0, 11.0], &[8.0]), imp("boringtun", &[3.0], &[3.0])];
        let r = Report { machine: &m, settings: &s, impls: &impls, ceiling: &c, skipped: &[], errors: &[] };
        assert_eq!(r.vpn_tcp1_share(), Some((Some(0.5), Some(0.4))));

        let t = r.table();
        assert!(t.contains("Crypto ceiling: 4 cores sealing and opening 1420-byte packets, nothing else [Gbit/s]"), "{t}");
        assert!(t.contains("  median 20.00   samples 20.00 10.00 30.00"), "{t}");
        assert!(t.contains("  per core (medians): seal 1.000 GB/s, open 3.000 GB/s"), "{t}");
        assert!(t.contains("vpn TCP 1 stream as a share of the crypto ceiling: A→B 50.0 %, B→A 40.0 %"), "{t}");
        // After the per-metric tables.
        assert!(t.find("Crypto ceiling").unwrap() > t.find("TCP, 1 stream, B→A").unwrap());

        let j = r.json();
        let cc = &j["crypto_ceiling"];
        assert_eq!(cc["cores"], 4);
        assert_eq!(cc["packet_bytes"], 1420);
        assert_eq!(cc["gbps"]["median"], 20.0);
        assert_eq!(cc["gbps"]["samples"], json!([20.0, 10.0, 30.0]));
        assert_eq!(cc["seal_bytes_per_s_per_core"]["median"], 1e9);
        assert_eq!(cc["open_bytes_per_s_per_core"]["median"], 3e9);
        assert_eq!(cc["vpn_tcp1_share"], json!({ "ab": 0.5, "ba": 0.4 }));
        // The existing keys are still there.
        assert_eq!(j["implementations"]["vpn"]["metrics"]["tcp1_ab_gbps"]["median"], 10.0);
        assert_eq!(j["reference"], "vpn");
    }

    #[test]
    fn no_share_without_vpn_and_no_section_without_samples() {
        let (m, s, c) = (machine(), settings(), ceilings());
        let impls = [imp("boringtun", &[3.0], &[3.0])];
        let r = Report { machine: &m, settings: &s, impls: &impls, ceiling: &c, skipped: &[], errors: &[] };
        assert_eq!(r.vpn_tcp1_share(), None);
        let t = r.table();
        assert!(t.contains("Crypto ceiling: 4 cores"), "{t}");
        assert!(!t.contains("share of the crypto ceiling"), "{t}");
        assert_eq!(r.json()["crypto_ceiling"]["vpn_tcp1_share"], json!({ "ab": null, "ba": null }));

        let impls = [imp("vpn", &[9.0], &[])];
        let r = Report { machine: &m, settings: &s, impls: &impls, ceiling: &[], skipped: &[], errors: &[] };
        assert_eq!(r.vpn_tcp1_share(), Some((None, None)));
        assert!(!r.table().contains("Crypto ceiling"));
        let j = r.json();
        assert_eq!(j["crypto_ceiling"]["gbps"], json!({ "samples": [], "median": null }));
        assert_eq!(j["crypto_ceiling"]["vpn_tcp1_share"], json!({ "ab": null, "ba": null }));
    }
}
