//! The tunnel interface's MTU and addresses, IP forwarding, and which interface the default route
//! leaves through.

use std::fs;
use std::io;

use super::command::{command_line, run, Program};
use super::error::NetError;
use super::{validate_ifname, InterfaceAddress};

/// What [`configure_interface`] sets on the tunnel interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSetup {
    /// The interface (it must exist: the daemon creates it).
    pub ifname: String,
    /// Its MTU.
    pub mtu: u16,
    /// The server's addresses with the pools' prefix lengths (`10.8.0.1/24`, `fd…::1/64`); the
    /// routes for the pools come with them.
    pub addresses: Vec<InterfaceAddress>,
}

/// Sets the MTU, assigns each address (`ip addr replace`, so re-running is harmless) and brings
/// the interface up.
pub fn configure_interface(s: &InterfaceSetup) -> Result<(), NetError> {
    set_mtu(&s.ifname, s.mtu)?;
    for a in &s.addresses {
        let a = a.to_string();
        run(Program::Ip, &["addr", "replace", &a, "dev", &s.ifname], None)?;
    }
    run(Program::Ip, &["link", "set", "dev", &s.ifname, "up"], None)?;
    Ok(())
}

/// Sets the MTU of `ifname` (the data plane follows a change on the running interface within a
/// second).
pub fn set_mtu(ifname: &str, mtu: u16) -> Result<(), NetError> {
    validate_ifname("interface", ifname)?;
    run(Program::Ip, &["link", "set", "dev", ifname, "mtu", &mtu.to_string()], None)?;
    Ok(())
}

const IPV4_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const IPV6_FORWARD: &str = "/proc/sys/net/ipv6/conf/all/forwarding";
const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

/// Turns on routing between interfaces: `net.ipv4.ip_forward` when `v4`,
/// `net.ipv6.conf.all.forwarding` when `v6`. Settings already on are left alone.
///
/// Turning IPv6 forwarding on makes Linux ignore router advertisements on interfaces whose
/// `accept_ra` is 1, so a host that got its IPv6 default route by SLAAC in the kernel would lose it
/// when the route expires. Before turning it on, such interfaces are therefore switched to
/// `accept_ra = 2` ("accept even when forwarding"), which keeps their behaviour as it was.
pub fn enable_forwarding(v4: bool, v6: bool) -> Result<(), NetError> {
    if v4 {
        set_sysctl(IPV4_FORWARD, None)?;
    }
    if v6 {
        if read_sysctl(IPV6_FORWARD, Some(IPV6_HINT))? != "1" {
            keep_accepting_router_advertisements();
        }
        set_sysctl(IPV6_FORWARD, Some(IPV6_HINT))?;
    }
    Ok(())
}

const IPV6_HINT: &str = "is IPv6 disabled in this kernel (ipv6.disable=1)? Then remove ipv6_pool from the configuration";

fn read_sysctl(path: &'static str, missing_hint: Option<&'static str>) -> Result<String, NetError> {
    fs::read_to_string(path).map(|s| s.trim().to_owned()).map_err(|source| sysctl_error(path, source, missing_hint))
}

/// Writes `1` unless the setting is already `1`.
fn set_sysctl(path: &'static str, missing_hint: Option<&'static str>) -> Result<(), NetError> {
    if read_sysctl(path, missing_hint)? == "1" {
        return Ok(());
    }
    fs::write(path, "1\n").map_err(|source| sysctl_error(path, source, missing_hint))?;
    tracing::info!(setting = path, "enabled forwarding");
    Ok(())
}

fn sysctl_error(path: &'static str, source: io::Error, missing_hint: Option<&'static str>) -> NetError {
    let hint = match source.kind() {
        io::ErrorKind::PermissionDenied => Some("needs root: run as root"),
        io::ErrorKind::NotFound => missing_hint,
        _ if source.raw_os_error() == Some(libc::EROFS) => {
            Some("/proc/sys is read-only here (a container?): enable forwarding on the host, or give the container CAP_NET_ADMIN and its own network namespace")
        }
        _ => None,
    };
    NetError::Sysctl { path, source, hint }
}

/// Sets `accept_ra` from 1 to 2 on every interface (not `all`/`default`), best effort.
fn keep_accepting_router_advertisements() {
    let Ok(dir) = fs::read_dir(IPV6_CONF) else { return };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if name == "all" || name == "default" {
            continue;
        }
        let path = entry.path().join("accept_ra");
        if fs::read_to_string(&path).map(|s| s.trim() == "1").unwrap_or(false) {
            match fs::write(&path, "2\n") {
                Ok(()) => tracing::info!(interface = ?name, "accept_ra set to 2 so that IPv6 forwarding keeps router advertisements"),
                Err(e) => tracing::warn!(interface = ?name, error = %e, "cannot set accept_ra to 2"),
            }
        }
    }
}

/// The interface of the first IPv4 default route, else of the first IPv6 one; `None` when there
/// is no default route (unreachable and blackhole defaults do not count).
pub fn default_route_interface() -> Result<Option<String>, NetError> {
    for family in ["-4", "-6"] {
        let args = ["-j", family, "route", "show", "default"];
        let out = run(Program::Ip, &args, None)?;
        let dev =
            first_route_dev(&out).map_err(|message| NetError::Output { command: command_line(Program::Ip, &args, false), message })?;
        if dev.is_some() {
            return Ok(dev);
        }
    }
    Ok(None)
}

/// The `dev` of the first unicast route in `ip -j route` output (a multipath route's first hop).
fn first_route_dev(json: &str) -> Result<Option<String>, String> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    let routes: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("not the expected JSON: {e}"))?;
    let routes = routes.as_array().ok_or("not a JSON array of routes")?;
    for r in routes {
        if r.get("type").and_then(|t| t.as_str()).is_some_and(|t| t != "unicast") {
            continue;
        }
        let dev = r.get("dev").or_else(|| r.get("nexthops").and_then(|n| n.get(0)).and_then(|h| h.get("dev")));
        if let Some(dev) = dev.and_then(|d| d.as_str()) {
            return Ok(Some(dev.to_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_default_routes() {
        let out = r#"[{"type":"unreachable","dst":"default","metric":10,"flags":[]},{"dst":"default","gateway":"192.0.2.1","dev":"eth0","metric":50,"flags":[]}]"#;
        assert_eq!(first_route_dev(out).unwrap().as_deref(), Some("eth0"));
        let multipath = r#"[{"dst":"default","flags":[],"nexthops":[{"gateway":"192.0.2.1","dev":"ens3","weight":1,"flags":[]}]}]"#;
        assert_eq!(first_route_dev(multipath).unwrap().as_deref(), Some("ens3"));
        assert_eq!(first_route_dev("[]\n").unwrap(), None);
        assert_eq!(first_route_dev("").unwrap(), None);
        assert!(first_route_dev("default via 1.2.3.4").is_err());
    }
}
