//! The server configuration file: defaults, validation messages, the commented TOML round trip,
//! unknown keys, and the atomic 0600 save.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rand_core::{CryptoRng, RngCore};
use vpn_control::server_config::{ConfigError, ServerConfig, DEFAULT_CONFIG_PATH};

/// A deterministic "secure" generator for tests.
struct Counter(u8);
impl RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            self.0 = self.0.wrapping_add(0x11);
            *b = self.0;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for Counter {}

fn config() -> ServerConfig {
    ServerConfig::generated_default(&mut Counter(0), "vpn.example.com".into())
}

fn invalid(c: &ServerConfig) -> (String, String) {
    match c.validate() {
        Err(e @ ConfigError::Invalid { field, .. }) => (field.to_string(), e.to_string()),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn defaults_validate() {
    let c = config();
    c.validate().unwrap();
    assert_eq!(DEFAULT_CONFIG_PATH, "/etc/vpn/vpn.toml");
    assert_eq!(c.interface, "wg0");
    assert_eq!(c.listen_port, 51820);
    assert_eq!(c.ipv4_pool.unwrap().to_string(), "10.8.0.0/24");
    assert_eq!(c.ipv6_pool.unwrap().to_string(), "fd11:2233:4455::/64");
    assert_eq!(c.mtu, 1420);
    assert_eq!(c.persistent_keepalive, 25);
    assert_eq!(c.client_allowed_ips.iter().map(|p| p.to_string()).collect::<Vec<_>>(), ["0.0.0.0/0", "::/0"]);
    assert_eq!(c.store, PathBuf::from("/var/lib/vpn/vpn.db"));
    assert!(c.firewall);
    assert_eq!(c.egress_interface, None);
    assert_eq!(c.server_address4().unwrap().to_string(), "10.8.0.1/24");
    assert_eq!(c.server_address6().unwrap().to_string(), "fd11:2233:4455::1/64");
}

#[test]
fn ula_is_random_fd_slash_64() {
    let a = ServerConfig::generated_default(&mut rand_core::OsRng, "203.0.113.5".into());
    let b = ServerConfig::generated_default(&mut rand_core::OsRng, "203.0.113.5".into());
    let (pa, pb) = (a.ipv6_pool.unwrap(), b.ipv6_pool.unwrap());
    assert_ne!(pa, pb);
    assert_eq!(pa.len(), 64);
    let std::net::IpAddr::V6(v6) = pa.addr() else { panic!() };
    assert_eq!(v6.octets()[0], 0xfd);
    assert_eq!(&v6.octets()[6..], &[0; 10]);
}

#[test]
fn round_trip_through_the_commented_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpn.toml");
    let mut variants = vec![config()];
    let mut c = config();
    c.egress_interface = Some("eth0".into());
    c.ipv4_pool = None;
    c.dns = vec![];
    c.persistent_keepalive = 0;
    c.firewall = false;
    c.endpoint = "2001:db8::1".into();
    c.client_allowed_ips = vec!["10.8.0.0/24".parse().unwrap(), "192.168.1.0/24".parse().unwrap()];
    c.store = "/srv/vpn \"quoted\"/db".into();
    variants.push(c);
    let mut c = config();
    c.ipv6_pool = None;
    c.interface = "vpn.0-a_b".into();
    c.listen_port = 443;
    c.mtu = 1280;
    variants.push(c);
    for c in variants {
        let text = c.to_toml();
        std::fs::write(&path, &text).unwrap();
        assert_eq!(ServerConfig::load(&path).unwrap(), c, "{text}");
        // Every key is documented by a comment just above it.
        for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let before = text.split(line).next().unwrap();
            assert!(before.trim_end().lines().last().unwrap().starts_with('#'), "{line} has no comment above it");
        }
    }
    let text = config().to_toml();
    assert!(text.contains("# egress_interface = \"eth0\""));
    assert!(text.contains("Default: 1420"));
}

#[test]
fn missing_keys_take_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpn.toml");
    std::fs::write(&path, "endpoint = \"vpn.example.com\"\n").unwrap();
    let c = ServerConfig::load(&path).unwrap();
    let mut want = config();
    want.ipv6_pool = None;
    assert_eq!(c, want);
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpn.toml");
    std::fs::write(&path, "endpoint = \"vpn.example.com\"\nlisten_prot = 51820\n").unwrap();
    let e = ServerConfig::load(&path).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Parse { .. }), "{e:?}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("unknown field `listen_prot`"), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn parse_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vpn.toml");
    let cases = [
        ("endpoint = \"x.example\"\nipv4_pool = \"10.8.0.1/24\"\n", "host bits set: write the network address \"10.8.0.0/24\""),
        ("endpoint = \"x.example\"\nmtu = \"big\"\n", "invalid type"),
        ("endpoint = \"x.example\"\ndns = [\"1.1.1\"]\n", "invalid IP address"),
        ("endpoint = \"x.example\"\nclient_allowed_ips = [\"0.0.0.0\"]\n", "no prefix length"),
        ("mtu = 1420\n", "missing field `endpoint`"),
        ("endpoint = \n", "line 1"),
    ];
    for (text, want) in cases {
        std::fs::write(&path, text).unwrap();
        let msg = ServerConfig::load(&path).unwrap_err().to_string();
        assert!(msg.contains(want), "{text:?}: {msg}");
        assert!(msg.contains("vpn.toml"), "{msg}");
    }
    std::fs::write(&path, "endpoint = \"x.example\"\nmtu = 100\n").unwrap();
    let msg = ServerConfig::load(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("configuration file {}: invalid `mtu`", path.display())), "{msg}");
    let missing = dir.path().join("absent.toml");
    let msg = ServerConfig::load(&missing).unwrap_err().to_string();
    assert!(msg.contains("cannot read configuration file") && msg.contains("absent.toml"), "{msg}");
}

#[test]
fn validation_messages() {
    type Edit = fn(&mut ServerConfig);
    let cases: &[(Edit, &str, &str)] = &[
        (|c| c.interface = String::new(), "interface", "is empty"),
        (|c| c.interface = "a-very-long-interface".into(), "interface", "longer than 15"),
        (|c| c.interface = "wg/0".into(), "interface", "characters other than"),
        (|c| c.interface = "wg 0".into(), "interface", "characters other than"),
        (|c| c.listen_port = 0, "listen_port", "0 is not a port"),
        (|c| c.endpoint = String::new(), "endpoint", "is empty"),
        (|c| c.endpoint = "vpn.example.com:51820".into(), "endpoint", "a port does not belong here"),
        (|c| c.endpoint = "[2001:db8::1]".into(), "endpoint", "without brackets"),
        (|c| c.endpoint = "bad_host!".into(), "endpoint", "not a valid host name"),
        (|c| c.endpoint = "0.0.0.0".into(), "endpoint", "cannot be reached"),
        (
            |c| {
                c.ipv4_pool = None;
                c.ipv6_pool = None
            },
            "ipv4_pool",
            "no address pool",
        ),
        (|c| c.ipv4_pool = Some("10.0.0.0/31".parse().unwrap()), "ipv4_pool", "must be 8 to 30"),
        (|c| c.ipv4_pool = Some("10.0.0.0/7".parse().unwrap()), "ipv4_pool", "must be 8 to 30"),
        (|c| c.ipv4_pool = Some("fd00::/64".parse().unwrap()), "ipv4_pool", "not an IPv4 prefix"),
        (|c| c.ipv6_pool = Some("fd00::/48".parse().unwrap()), "ipv6_pool", "must be 64 to 120"),
        (|c| c.ipv6_pool = Some("fd00::/124".parse().unwrap()), "ipv6_pool", "must be 64 to 120"),
        (|c| c.ipv6_pool = Some("10.0.0.0/24".parse().unwrap()), "ipv6_pool", "not an IPv6 prefix"),
        (|c| c.dns = vec!["0.0.0.0".parse().unwrap()], "dns", "not a DNS server address"),
        (|c| c.dns = vec!["ff02::1".parse().unwrap()], "dns", "not a DNS server address"),
        (|c| c.dns = vec!["9.9.9.9".parse().unwrap(), "9.9.9.9".parse().unwrap()], "dns", "listed twice"),
        (|c| c.egress_interface = Some("e0\";drop".into()), "egress_interface", "characters other than"),
        (|c| c.egress_interface = Some("wg0".into()), "egress_interface", "the tunnel itself"),
        (|c| c.mtu = 1279, "mtu", "1280 (the IPv6 minimum) to 9000"),
        (|c| c.mtu = 9001, "mtu", "1280 (the IPv6 minimum) to 9000"),
        (|c| c.client_allowed_ips.clear(), "client_allowed_ips", "is empty"),
        (|c| c.store = "vpn.db".into(), "store", "absolute"),
    ];
    for (edit, field, want) in cases {
        let mut c = config();
        edit(&mut c);
        let (f, msg) = invalid(&c);
        assert_eq!(f, *field, "{msg}");
        assert!(msg.starts_with(&format!("invalid `{field}`: ")), "{msg}");
        assert!(msg.contains(want), "{field}: {msg} lacks {want:?}");
    }
    // Edge values that are fine.
    let mut c = config();
    c.mtu = 9000;
    c.dns.clear();
    c.ipv4_pool = Some("10.0.0.0/8".parse().unwrap());
    c.ipv6_pool = Some("fd00::/120".parse().unwrap());
    c.endpoint = "2001:db8::1".into();
    c.validate().unwrap();
}

#[test]
fn atomic_save_is_0600_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("etc/vpn/vpn.toml");
    let c = config();
    c.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dmode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dmode & 0o700, 0o700);
    assert_eq!(ServerConfig::load(&path).unwrap(), c);
    // Replacing leaves no temporary file behind.
    let mut c2 = c.clone();
    c2.mtu = 1380;
    c2.save(&path).unwrap();
    assert_eq!(ServerConfig::load(&path).unwrap(), c2);
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["vpn.toml"]);
    // An invalid configuration is not written.
    let mut bad = c2.clone();
    bad.mtu = 10;
    assert!(bad.save(&path).unwrap_err().to_string().contains("invalid `mtu`"));
    assert_eq!(ServerConfig::load(&path).unwrap(), c2);
}
