//! The server's configuration file (`/etc/vpn/vpn.toml`), read by `vpn up`: interface, port,
//! public endpoint, address pools, what devices are told (DNS, MTU, keepalive, routes), the store
//! and whether `vpn` manages the firewall.
//!
//! Every key but `endpoint` has a default; an unknown key is an error naming it. [`ServerConfig::to_toml`]
//! writes a commented file that [`ServerConfig::load`] reads back to the same value, and
//! [`ServerConfig::save`] replaces the file atomically.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use vpn_dataplane::IpPrefix;

use crate::netconf::{check_interface_name, InterfaceAddress};

/// Where `vpn up` looks for the configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vpn/vpn.toml";

/// The server's settings. See [`ServerConfig::to_toml`] for what each one means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The WireGuard interface's name (default `wg0`).
    #[serde(default = "default_interface")]
    pub interface: String,
    /// The UDP port the server listens on (default 51820).
    #[serde(default = "default_listen_port")]
    pub listen_port: u16,
    /// The public host name or IP address clients connect to, without a port.
    pub endpoint: String,
    /// The IPv4 pool devices get addresses from; the server takes its first host address.
    /// Written as `""` in the file when `None`; a missing key means the default `10.8.0.0/24`.
    #[serde(default = "default_ipv4_pool", with = "optional_network")]
    pub ipv4_pool: Option<IpPrefix>,
    /// The IPv6 pool devices get addresses from; the server takes `::1` in it. A missing key or
    /// `""` means none; [`ServerConfig::generated_default`] picks a random unique local /64.
    #[serde(default, with = "optional_network")]
    pub ipv6_pool: Option<IpPrefix>,
    /// DNS servers pushed to devices; empty leaves devices with their own.
    #[serde(default = "default_dns")]
    pub dns: Vec<IpAddr>,
    /// The interface to masquerade out of; `None` means the default route's, found at `vpn up`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_interface: Option<String>,
    /// The tunnel MTU, here and on devices (default 1420).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// The keepalive interval in seconds devices are given (default 25; 0 is off).
    #[serde(default = "default_keepalive")]
    pub persistent_keepalive: u16,
    /// What devices route through the tunnel (default everything).
    #[serde(default = "default_client_allowed_ips", with = "network_list")]
    pub client_allowed_ips: Vec<IpPrefix>,
    /// The database of users, devices and keys.
    #[serde(default = "default_store")]
    pub store: PathBuf,
    /// Whether `vpn up` manages the nftables table `inet vpn` (default true).
    #[serde(default = "default_firewall")]
    pub firewall: bool,
    /// The file holding the passphrase that protects the store's keys (default
    /// `/etc/vpn/passphrase`); `VPN_PASSPHRASE`, `VPN_PASSPHRASE_FILE` and the systemd
    /// credential `vpn-passphrase` take precedence.
    #[serde(default = "default_passphrase_file")]
    pub passphrase_file: PathBuf,
    /// The JSON-lines audit log, one line per change, beside the store's own audit table
    /// (default `/var/lib/vpn/audit.jsonl`, beside the store); `""` for none.
    #[serde(default = "default_audit_log", with = "optional_path")]
    pub audit_log: Option<PathBuf>,
    /// Rotate keys (devices' and the server's) older than this many days at `vpn up` and hourly
    /// while it runs; 0 (the default) turns the policy off.
    #[serde(default)]
    pub key_rotation_days: u32,
    /// How many days an old key keeps working after a rotation, for clients to take their new
    /// config (default 14).
    #[serde(default = "default_rotation_grace_days")]
    pub rotation_grace_days: u32,
}

/// Why a configuration cannot be read, used or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong kind.
    #[error("configuration file {}: {message}", .path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message: line, column, the offending text and what was expected.
        message: String,
    },
    /// A setting has a value `vpn` cannot use.
    #[error("{}invalid `{field}`: {reason}", file_prefix(.path))]
    Invalid {
        /// The file it came from, when known.
        path: Option<PathBuf>,
        /// The key.
        field: &'static str,
        /// What is wrong and what to write instead.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write configuration file {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("configuration file {}: ", p.display())).unwrap_or_default()
}

impl ConfigError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { path: None, field, reason: reason.into() }
    }

    fn in_file(self, file: &Path) -> Self {
        match self {
            ConfigError::Invalid { path: None, field, reason } => ConfigError::Invalid { path: Some(file.to_owned()), field, reason },
            other => other,
        }
    }
}

fn default_interface() -> String {
    "wg0".into()
}
fn default_listen_port() -> u16 {
    51820
}
fn default_ipv4_pool() -> Option<IpPrefix> {
    IpPrefix::new(IpAddr::V4(Ipv4Addr::new(10, 8, 0, 0)), 24).ok()
}
fn default_dns() -> Vec<IpAddr> {
    vec![IpAddr::V4(Ipv4Addr::new(1, 1, 1, 1)), IpAddr::V6(Ipv6Addr::new(0x2606, 0x4700, 0x4700, 0, 0, 0, 0, 0x1111))]
}
fn default_mtu() -> u16 {
    1420
}
fn default_keepalive() -> u16 {
    25
}
fn default_client_allowed_ips() -> Vec<IpPrefix> {
    [IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)].into_iter().filter_map(|a| IpPrefix::new(a, 0).ok()).collect()
}
fn default_store() -> PathBuf {
    PathBuf::from("/var/lib/vpn/vpn.db")
}
fn default_firewall() -> bool {
    true
}
fn default_passphrase_file() -> PathBuf {
    PathBuf::from("/etc/vpn/passphrase")
}
fn default_audit_log() -> Option<PathBuf> {
    Some(PathBuf::from("/var/lib/vpn/audit.jsonl"))
}
fn default_rotation_grace_days() -> u32 {
    14
}

/// `Option<PathBuf>` as a string; `""` is `None`.
mod optional_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.collect_str(&p.display()),
            None => s.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = String::deserialize(d)?;
        Ok((!s.trim().is_empty()).then(|| PathBuf::from(s.trim())))
    }
}

/// Parses a network prefix strictly: a length is required and the host bits must be zero (so that
/// `10.8.0.1/24` is not silently read as `10.8.0.0/24`).
fn parse_network(s: &str) -> Result<IpPrefix, String> {
    let (addr, _) =
        s.split_once('/').ok_or_else(|| format!("{s:?} has no prefix length: write it like \"10.8.0.0/24\" or \"fd00::/64\""))?;
    let p: IpPrefix = s.parse().map_err(|e| format!("{s:?} is not an IP prefix: {e}"))?;
    if addr.parse::<IpAddr>().ok() != Some(p.addr()) {
        return Err(format!("{s:?} has host bits set: write the network address \"{p}\""));
    }
    Ok(p)
}

/// `Option<IpPrefix>` as a string; `""` is `None`.
mod optional_network {
    use serde::{Deserialize, Deserializer, Serializer};
    use vpn_dataplane::IpPrefix;

    pub(super) fn serialize<S: Serializer>(p: &Option<IpPrefix>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.collect_str(p),
            None => s.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpPrefix>, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Ok(None);
        }
        super::parse_network(s.trim()).map(Some).map_err(serde::de::Error::custom)
    }
}

/// `Vec<IpPrefix>` as a list of strings.
mod network_list {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use vpn_dataplane::IpPrefix;

    pub(super) fn serialize<S: Serializer>(v: &[IpPrefix], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for p in v {
            seq.serialize_element(&p.to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpPrefix>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter().map(|s| super::parse_network(s.trim()).map_err(serde::de::Error::custom)).collect()
    }
}

impl ServerConfig {
    /// The defaults, with `endpoint` and a random unique local IPv6 /64 (RFC 4193: `fd` and a
    /// 40-bit random global ID, subnet 0).
    pub fn generated_default(rng: &mut dyn CryptoRngCore, endpoint: String) -> Self {
        let mut id = [0u8; 5];
        rng.fill_bytes(&mut id);
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[1..6].copy_from_slice(&id);
        let ipv6_pool = IpPrefix::new(IpAddr::V6(Ipv6Addr::from(b)), 64).ok();
        ServerConfig {
            interface: default_interface(),
            listen_port: default_listen_port(),
            endpoint,
            ipv4_pool: default_ipv4_pool(),
            ipv6_pool,
            dns: default_dns(),
            egress_interface: None,
            mtu: default_mtu(),
            persistent_keepalive: default_keepalive(),
            client_allowed_ips: default_client_allowed_ips(),
            store: default_store(),
            firewall: default_firewall(),
            passphrase_file: default_passphrase_file(),
            audit_log: default_audit_log(),
            key_rotation_days: 0,
            rotation_grace_days: default_rotation_grace_days(),
        }
    }

    /// Checks every setting; the error names the key, what is wrong and what would do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_interface_name(&self.interface).map_err(|r| ConfigError::invalid("interface", format!("{:?} {r}", self.interface)))?;
        if self.listen_port == 0 {
            return Err(ConfigError::invalid("listen_port", "0 is not a port: choose a UDP port such as 51820"));
        }
        check_endpoint(&self.endpoint).map_err(|r| ConfigError::invalid("endpoint", r))?;
        if self.ipv4_pool.is_none() && self.ipv6_pool.is_none() {
            return Err(ConfigError::invalid(
                "ipv4_pool",
                "no address pool: set ipv4_pool (e.g. \"10.8.0.0/24\") or ipv6_pool (e.g. \"fd00:1:2:3::/64\"), or both",
            ));
        }
        if let Some(p) = self.ipv4_pool {
            if !p.addr().is_ipv4() {
                return Err(ConfigError::invalid("ipv4_pool", format!("{p} is not an IPv4 prefix; IPv6 goes into ipv6_pool")));
            }
            if !(8..=30).contains(&p.len()) {
                return Err(ConfigError::invalid(
                    "ipv4_pool",
                    format!("{p}: the prefix length must be 8 to 30 (room for the server and at least one device), e.g. /24"),
                ));
            }
        }
        if let Some(p) = self.ipv6_pool {
            if !p.addr().is_ipv6() {
                return Err(ConfigError::invalid("ipv6_pool", format!("{p} is not an IPv6 prefix; IPv4 goes into ipv4_pool")));
            }
            if !(64..=120).contains(&p.len()) {
                return Err(ConfigError::invalid("ipv6_pool", format!("{p}: the prefix length must be 64 to 120, e.g. /64")));
            }
        }
        for (i, d) in self.dns.iter().enumerate() {
            let bad = d.is_unspecified()
                || d.is_multicast()
                || *d == IpAddr::V4(Ipv4Addr::BROADCAST)
                || matches!(d, IpAddr::V4(a) if a.octets()[0] == 0);
            if bad {
                return Err(ConfigError::invalid("dns", format!("{d} is not a DNS server address: use e.g. \"1.1.1.1\", or [] for none")));
            }
            if self.dns[..i].contains(d) {
                return Err(ConfigError::invalid("dns", format!("{d} is listed twice")));
            }
        }
        if let Some(e) = &self.egress_interface {
            check_interface_name(e).map_err(|r| {
                ConfigError::invalid("egress_interface", format!("{e:?} {r}; remove the key to use the default route's interface"))
            })?;
            if *e == self.interface {
                return Err(ConfigError::invalid(
                    "egress_interface",
                    format!("{e:?} is the tunnel itself: name the interface that leads to the internet (e.g. \"eth0\")"),
                ));
            }
        }
        if !(1280..=9000).contains(&self.mtu) {
            return Err(ConfigError::invalid(
                "mtu",
                format!("{} is out of range: the MTU must be 1280 (the IPv6 minimum) to 9000; 1420 suits most links", self.mtu),
            ));
        }
        if self.client_allowed_ips.is_empty() {
            return Err(ConfigError::invalid(
                "client_allowed_ips",
                "is empty, so devices would send nothing through the tunnel: use [\"0.0.0.0/0\", \"::/0\"] for everything, or the pools for just the VPN",
            ));
        }
        if !self.store.is_absolute() || self.store.to_str().is_none() || self.store.as_os_str().as_encoded_bytes().ends_with(b"/") {
            return Err(ConfigError::invalid(
                "store",
                format!("{:?} must be an absolute file path in UTF-8, e.g. \"/var/lib/vpn/vpn.db\"", self.store.display().to_string()),
            ));
        }
        for (field, path) in [("passphrase_file", Some(&self.passphrase_file)), ("audit_log", self.audit_log.as_ref())] {
            let Some(path) = path else { continue };
            if !path.is_absolute() || path.to_str().is_none() || path.as_os_str().as_encoded_bytes().ends_with(b"/") {
                return Err(ConfigError::invalid(
                    field,
                    format!("{:?} must be an absolute file path in UTF-8", path.display().to_string()),
                ));
            }
        }
        if self.key_rotation_days > 0 && self.rotation_grace_days >= self.key_rotation_days {
            return Err(ConfigError::invalid(
                "rotation_grace_days",
                format!(
                    "{} is not shorter than key_rotation_days ({}): an old key must stop working before the next rotation; e.g. 90 and 14",
                    self.rotation_grace_days, self.key_rotation_days
                ),
            ));
        }
        Ok(())
    }

    /// Reads and validates the file; errors name the file and the line or key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let config: ServerConfig = toml::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string().trim_end().to_owned() })?;
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// The configuration as a commented TOML file: every key is preceded by what it means and its
    /// default. [`ServerConfig::load`] reads it back to an equal value.
    pub fn to_toml(&self) -> String {
        let egress = match &self.egress_interface {
            Some(e) => format!("egress_interface = {}", quote(e)),
            None => "# egress_interface = \"eth0\"".to_owned(),
        };
        let pool = |p: Option<IpPrefix>| quote(&p.map(|p| p.to_string()).unwrap_or_default());
        let dns = list(self.dns.iter());
        let allowed = list(self.client_allowed_ips.iter());
        format!(
            r#"# Configuration of the vpn server, read by `vpn up`.
# Every key except `endpoint` may be left out; it then takes the default given in its comment.

# Name of the WireGuard network interface: 1 to 15 letters, digits, '_', '.' or '-'.
# Default: "wg0".
interface = {interface}

# UDP port the server listens on; the firewall opens it. Default: 51820.
listen_port = {listen_port}

# Public host name or IP address devices connect to, without the port (the port is listen_port).
# Required.
endpoint = {endpoint}

# IPv4 addresses for devices: a network address with a prefix length of /8 to /30. The server
# takes the first address in it (e.g. 10.8.0.1), devices the others. "" means no IPv4 in the
# tunnel. Default: "10.8.0.0/24".
ipv4_pool = {ipv4_pool}

# IPv6 addresses for devices: a network address with a prefix length of /64 to /120; the server
# takes ::1 in it. "" (or leaving the key out) means no IPv6 in the tunnel. Default: a random
# unique local fdXX:XXXX:XXXX::/64, chosen when the file is created.
ipv6_pool = {ipv6_pool}

# DNS servers devices use while connected; [] leaves devices with their own.
# Default: ["1.1.1.1", "2606:4700:4700::1111"].
dns = {dns}

# Network interface that leads to the internet; traffic from the pools leaving through it is
# masqueraded (NAT). Commented out: the interface of the default route, found at `vpn up`.
{egress}

# MTU of the tunnel, on the server and on devices: 1280 to 9000. Default: 1420 (fits a
# 1500-byte link, over IPv4 or IPv6).
mtu = {mtu}

# Seconds between keepalives devices send so that NAT routers keep their mapping; 0 turns them
# off. Default: 25.
persistent_keepalive = {keepalive}

# What devices send through the tunnel: ["0.0.0.0/0", "::/0"] is all their traffic; the pools
# alone would give access to the VPN only. Default: ["0.0.0.0/0", "::/0"].
client_allowed_ips = {allowed}

# Database of users, devices and keys (an absolute path). Default: "/var/lib/vpn/vpn.db".
store = {store}

# Whether `vpn up` manages the nftables table `inet vpn` (opens listen_port, forwards the
# tunnel's traffic, masquerades the pools); false leaves the firewall to you. Default: true.
firewall = {firewall}

# File holding the passphrase that encrypts the keys in the store (mode 0600, readable by root
# only; created with a random passphrase by `vpn init` / `vpn up` when missing). The environment
# variables VPN_PASSPHRASE and VPN_PASSPHRASE_FILE, and the systemd credential vpn-passphrase,
# take precedence. Default: "/etc/vpn/passphrase".
passphrase_file = {passphrase_file}

# JSON-lines audit log: one line per change (who, what, when, from where; never a secret), kept
# besides the store's own audit table. "" for none. Default: "/var/lib/vpn/audit.jsonl".
audit_log = {audit_log}

# Key rotation policy: keys older than this many days (each device's and the server's) are
# rotated by `vpn up`, at start and hourly; 0 turns it off. Default: 0.
key_rotation_days = {key_rotation_days}

# Days an old key keeps working after a rotation, so clients can take their new config; then it
# stops. Must be shorter than key_rotation_days. Default: 14.
rotation_grace_days = {rotation_grace_days}
"#,
            interface = quote(&self.interface),
            listen_port = self.listen_port,
            endpoint = quote(&self.endpoint),
            ipv4_pool = pool(self.ipv4_pool),
            ipv6_pool = pool(self.ipv6_pool),
            mtu = self.mtu,
            keepalive = self.persistent_keepalive,
            store = quote(&self.store.to_string_lossy()),
            firewall = self.firewall,
            passphrase_file = quote(&self.passphrase_file.to_string_lossy()),
            audit_log = quote(&self.audit_log.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()),
            key_rotation_days = self.key_rotation_days,
            rotation_grace_days = self.rotation_grace_days,
        )
    }

    /// Validates, then writes [`ServerConfig::to_toml`] atomically (temporary file in the same
    /// directory, mode 0600, synced, renamed over `path`, directory synced). A missing parent
    /// directory is created with mode 0755.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        self.validate().map_err(|e| e.in_file(path))?;
        let write = |source| ConfigError::Write { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::durable::create_dir(dir, 0o755).map_err(write)?;
        }
        crate::durable::write_atomic(path, self.to_toml().as_bytes(), 0o600).map_err(write)
    }

    /// The server's IPv4 address: the first host of the pool, with the pool's prefix length
    /// (`10.8.0.0/24` → `10.8.0.1/24`).
    pub fn server_address4(&self) -> Option<InterfaceAddress> {
        let p = self.ipv4_pool?;
        let IpAddr::V4(net) = p.addr() else { return None };
        InterfaceAddress::new(IpAddr::V4(Ipv4Addr::from(u32::from(net).wrapping_add(1))), p.len()).ok()
    }

    /// The server's IPv6 address: `::1` in the pool, with the pool's prefix length.
    pub fn server_address6(&self) -> Option<InterfaceAddress> {
        let p = self.ipv6_pool?;
        let IpAddr::V6(net) = p.addr() else { return None };
        InterfaceAddress::new(IpAddr::V6(Ipv6Addr::from(u128::from(net).wrapping_add(1))), p.len()).ok()
    }
}

/// Checks the endpoint: an IP address or a host name, and no port.
fn check_endpoint(e: &str) -> Result<(), String> {
    if e.is_empty() {
        return Err("is empty: set the public host name or IP address devices connect to, e.g. \"vpn.example.com\"".into());
    }
    if let Ok(ip) = e.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(format!("{e} cannot be reached by devices: set the server's public address or host name"));
        }
        return Ok(());
    }
    let unbracketed = e.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    if unbracketed.is_some_and(|s| s.parse::<Ipv6Addr>().is_ok()) {
        return Err(format!("{e:?}: write the IPv6 address without brackets (the port comes from listen_port)"));
    }
    if e.contains(':') {
        return Err(format!("{e:?} is neither an IP address nor a host name; a port does not belong here (set listen_port)"));
    }
    let name = e.strip_suffix('.').unwrap_or(e);
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err(format!("{e:?} is not a valid host name (labels of letters, digits and '-', separated by dots) nor an IP address"));
    }
    if name.rsplit('.').next().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{e:?} looks like an IP address but is not one"));
    }
    Ok(())
}

/// A TOML string literal, escaped.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A TOML array of strings.
fn list<T: ToString>(items: impl Iterator<Item = T>) -> String {
    let v: Vec<String> = items.map(|i| quote(&i.to_string())).collect();
    format!("[{}]", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in ["vpn.example.com", "203.0.113.5", "2001:db8::1", "host", "a-b.example.com.", "xn--bcher-kva.example"] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "vpn.example.com:51820",
            "[2001:db8::1]",
            "203.0.113.5:51820",
            "a_b.com",
            "-a.com",
            "1.2.3.999",
            "a..b",
            "0.0.0.0",
            "127.0.0.1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_are_strict() {
        assert_eq!(parse_network("10.8.0.0/24").unwrap().to_string(), "10.8.0.0/24");
        assert!(parse_network("10.8.0.1/24").unwrap_err().contains("host bits"));
        assert!(parse_network("10.8.0.0").unwrap_err().contains("no prefix length"));
        assert!(parse_network("10.8.0.0/33").is_err());
        assert!(parse_network("fd00::1/64").unwrap_err().contains("\"fd00::/64\""));
    }
}
