//! Host network setup: the nftables ruleset text, refusal of unsafe interface names, and — as root,
//! with `ip` and `nft` installed — the real thing inside a network namespace this test creates
//! (and deletes again), never in the host's own.
//!
//! The namespace test re-runs this test binary under `ip netns exec`, with `VPNNC_NETNS` naming
//! the namespace; the inner run checks that it really is in that namespace before touching
//! anything.

use std::process::Command;

use vpn_control::netconf::{
    apply_firewall, check_interface_name, configure_interface, default_route_interface, enable_forwarding, firewall_present,
    firewall_ruleset, remove_firewall, FirewallSpec, InterfaceSetup, NetError, NFT_TABLE,
};

fn spec() -> FirewallSpec {
    FirewallSpec {
        ifname: "wg0".into(),
        egress: "eth0".into(),
        listen_port: 51820,
        ipv4_pool: Some("10.8.0.0/24".parse().unwrap()),
        ipv6_pool: Some("fd11:2233:4455::/64".parse().unwrap()),
    }
}

#[test]
fn ruleset_v4_and_v6() {
    assert_eq!(NFT_TABLE, "vpn");
    assert_eq!(
        firewall_ruleset(&spec()).unwrap(),
        r#"add table inet vpn
delete table inet vpn
table inet vpn {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 51820 accept
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wg0" accept
		oifname "wg0" ct state established,related accept
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.8.0.0/24 oifname "eth0" masquerade
		ip6 saddr fd11:2233:4455::/64 oifname "eth0" masquerade
	}
}
"#
    );
}

#[test]
fn ruleset_v4_only() {
    let s = FirewallSpec { ipv6_pool: None, listen_port: 443, ifname: "vpn.0".into(), egress: "enp3s0-1_x".into(), ..spec() };
    assert_eq!(
        firewall_ruleset(&s).unwrap(),
        r#"add table inet vpn
delete table inet vpn
table inet vpn {
	chain input {
		type filter hook input priority filter; policy accept;
		udp dport 443 accept
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "vpn.0" accept
		oifname "vpn.0" ct state established,related accept
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.8.0.0/24 oifname "enp3s0-1_x" masquerade
	}
}
"#
    );
}

#[test]
fn refuses_hostile_interface_names() {
    for bad in ["eth0\"; flush ruleset", "eth0\n", "a b", "", ".", "..", "wg/0", "wg:0", "a234567890123456", "é0", "eth0'", "$(x)"] {
        assert!(check_interface_name(bad).is_err(), "{bad:?}");
        let s = FirewallSpec { egress: bad.into(), ..spec() };
        let e = firewall_ruleset(&s).unwrap_err();
        assert!(matches!(e, NetError::InvalidName { what: "egress interface", .. }), "{e:?}");
        assert!(e.to_string().starts_with("refusing egress interface name"), "{e}");
        let s = FirewallSpec { ifname: bad.into(), ..spec() };
        assert!(matches!(firewall_ruleset(&s), Err(NetError::InvalidName { what: "interface", .. })));
        assert!(matches!(apply_firewall(&s), Err(NetError::InvalidName { .. })), "refused before running nft");
        let setup = InterfaceSetup { ifname: bad.into(), mtu: 1420, addresses: vec![] };
        assert!(matches!(configure_interface(&setup), Err(NetError::InvalidName { .. })), "refused before running ip");
    }
    let e = firewall_ruleset(&FirewallSpec { ifname: "eth0\"; flush ruleset".into(), ..spec() }).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"refusing interface name "eth0\"; flush ruleset": it has characters other than letters, digits, '_', '.' and '-'"#
    );
    for good in ["wg0", "a", "eth0.100", "br-1a2b3c4d5e6f", "a23456789012345"] {
        assert_eq!(check_interface_name(good), Ok(()), "{good}");
    }
}

#[test]
fn refuses_inconsistent_specs() {
    let e = firewall_ruleset(&FirewallSpec { egress: "wg0".into(), ..spec() }).unwrap_err();
    assert!(e.to_string().contains("is the tunnel wg0 itself"), "{e}");
    let e = firewall_ruleset(&FirewallSpec { ipv4_pool: Some("fd00::/64".parse().unwrap()), ..spec() }).unwrap_err();
    assert!(e.to_string().contains("not an IPv4 prefix"), "{e}");
    let e = firewall_ruleset(&FirewallSpec { ipv6_pool: Some("10.0.0.0/8".parse().unwrap()), ..spec() }).unwrap_err();
    assert!(e.to_string().contains("not an IPv6 prefix"), "{e}");
    let e = firewall_ruleset(&FirewallSpec { listen_port: 0, ..spec() }).unwrap_err();
    assert!(e.to_string().contains("port 0"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The real thing, in a network namespace.

const NETNS_VAR: &str = "VPNNC_NETNS";

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid: real effective saved fs"
    status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)) == Some("0")
}

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().map(|o| o.status.success()).unwrap_or(false)
}

/// Runs a command that must succeed; returns its standard output.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn nft_script(script: &str) {
    use std::io::Write;
    let mut child = Command::new("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "nft -f - failed on:\n{script}");
}

/// Deletes the namespace when the test ends, passing or failing.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn in_namespace() {
    if let Ok(ns) = std::env::var(NETNS_VAR) {
        return inside(&ns);
    }
    if !is_root() {
        eprintln!("note: skipping the network namespace test: not root");
        return;
    }
    if !runs("ip", "-V") || !runs("nft", "--version") {
        eprintln!("note: skipping the network namespace test: `ip` or `nft` is not installed");
        return;
    }
    let name = format!("vpnnc-{}", std::process::id());
    let add = Command::new("ip").args(["netns", "add", &name]).output().unwrap();
    if !add.status.success() {
        eprintln!("note: skipping the network namespace test: cannot create one: {}", String::from_utf8_lossy(&add.stderr).trim());
        return;
    }
    let _ns = Netns(name.clone());
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(exe)
        .args(["--exact", "in_namespace", "--nocapture", "--test-threads=1"])
        .env(NETNS_VAR, &name)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("--- inside {name} ---\n{stdout}\n{stderr}");
    assert!(out.status.success(), "the namespace run failed");
    assert!(stdout.contains("firewall checks passed") && stdout.contains("1 passed"), "the inner test did not run");
}

/// A link to play the tunnel or the uplink: a dummy interface, or a TUN device where the kernel
/// has no dummy driver.
fn add_link(name: &str) {
    let dummy = Command::new("ip").args(["link", "add", name, "type", "dummy"]).output().unwrap();
    if !dummy.status.success() {
        sh("ip", &["tuntap", "add", "dev", name, "mode", "tun"]);
    }
}

fn sysctl(path: &str) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// Runs inside namespace `ns`.
fn inside(ns: &str) {
    // Never act on a namespace other than the one this test created.
    let here = sh("ip", &["netns", "identify", &std::process::id().to_string()]);
    assert_eq!(here.trim(), ns, "not inside the test's network namespace; refusing to touch the network");

    add_link("vtest0");
    add_link("veg0");
    add_link("veg1");
    nft_script("table inet other {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n");
    let other = sh("nft", &["list", "table", "inet", "other"]);

    // Interface: MTU, addresses (twice: replacing is harmless), up.
    let setup = InterfaceSetup {
        ifname: "vtest0".into(),
        mtu: 1420,
        addresses: vec!["10.8.0.1/24".parse().unwrap(), "fd11:2233:4455::1/64".parse().unwrap()],
    };
    configure_interface(&setup).unwrap();
    configure_interface(&setup).unwrap();
    let link: serde_json::Value = serde_json::from_str(&sh("ip", &["-j", "addr", "show", "dev", "vtest0"])).unwrap();
    let link = &link[0];
    assert_eq!(link["mtu"], 1420);
    assert!(link["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{link}");
    let addrs: Vec<String> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(addrs, ["10.8.0.1/24", "fd11:2233:4455::1/64"]);
    assert!(sh("ip", &["route", "show", "10.8.0.0/24"]).contains("dev vtest0"));

    let e = configure_interface(&InterfaceSetup { ifname: "nope0".into(), ..setup.clone() }).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("`ip link set dev nope0 mtu 1420` failed"), "{msg}");
    assert!(msg.contains("the interface does not exist"), "{msg}");

    // Forwarding, in this namespace only; router advertisements stay accepted.
    assert_eq!(sysctl("/proc/sys/net/ipv6/conf/veg0/accept_ra"), "1");
    enable_forwarding(true, true).unwrap();
    assert_eq!(sysctl("/proc/sys/net/ipv4/ip_forward"), "1");
    assert_eq!(sysctl("/proc/sys/net/ipv6/conf/all/forwarding"), "1");
    assert_eq!(sysctl("/proc/sys/net/ipv6/conf/veg0/accept_ra"), "2");
    enable_forwarding(true, true).unwrap();

    // The default route's interface: none, then IPv6 only, then IPv4 wins.
    assert_eq!(default_route_interface().unwrap(), None);
    sh("ip", &["link", "set", "veg0", "up"]);
    sh("ip", &["link", "set", "veg1", "up"]);
    sh("ip", &["-6", "route", "add", "default", "dev", "veg0"]);
    assert_eq!(default_route_interface().unwrap().as_deref(), Some("veg0"));
    sh("ip", &["addr", "add", "192.0.2.2/24", "dev", "veg1"]);
    sh("ip", &["route", "add", "default", "via", "192.0.2.1", "dev", "veg1"]);
    assert_eq!(default_route_interface().unwrap().as_deref(), Some("veg1"));

    // The firewall table: applied, re-applied identically, replaced, removed; `other` untouched.
    let fw = FirewallSpec {
        ifname: "vtest0".into(),
        egress: "veg1".into(),
        listen_port: 51820,
        ipv4_pool: Some("10.8.0.0/24".parse().unwrap()),
        ipv6_pool: Some("fd11:2233:4455::/64".parse().unwrap()),
    };
    assert!(!firewall_present().unwrap());
    remove_firewall().unwrap();
    apply_firewall(&fw).unwrap();
    assert!(firewall_present().unwrap());
    let table = sh("nft", &["list", "table", "inet", "vpn"]);
    for want in [
        "udp dport 51820 accept",
        "iifname \"vtest0\" accept",
        "oifname \"vtest0\" ct state established,related accept",
        "ip saddr 10.8.0.0/24 oifname \"veg1\" masquerade",
        "ip6 saddr fd11:2233:4455::/64 oifname \"veg1\" masquerade",
        "type nat hook postrouting priority srcnat; policy accept;",
    ] {
        assert!(table.contains(want), "{want:?} missing from:\n{table}");
    }
    assert_eq!(sh("nft", &["list", "table", "inet", "other"]), other);

    apply_firewall(&fw).unwrap();
    assert_eq!(sh("nft", &["list", "table", "inet", "vpn"]), table, "re-applying changes nothing");
    assert_eq!(sh("nft", &["list", "tables"]).lines().filter(|l| l.trim() == "table inet vpn").count(), 1);

    apply_firewall(&FirewallSpec { listen_port: 443, ipv6_pool: None, ..fw.clone() }).unwrap();
    let replaced = sh("nft", &["list", "table", "inet", "vpn"]);
    assert!(replaced.contains("udp dport 443 accept") && !replaced.contains("51820"), "{replaced}");
    assert!(!replaced.contains("ip6 saddr"), "{replaced}");
    assert_eq!(sh("nft", &["list", "table", "inet", "other"]), other);

    remove_firewall().unwrap();
    assert!(!firewall_present().unwrap());
    remove_firewall().unwrap();
    let tables = sh("nft", &["list", "tables"]);
    assert_eq!(tables.trim(), "table inet other");
    assert_eq!(sh("nft", &["list", "table", "inet", "other"]), other);
    println!("namespace {ns}: interface, forwarding, default route and firewall checks passed");
}
