//! `vpn status [--json]`: every device with its address, state, and, when the server runs, its
//! endpoint, last handshake and transfer, and the packets the server dropped, by reason.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use vpn_control::store::Store;

use super::{load_config, table, time};
use crate::server::mgmt::{self, PeerLive, Request};

#[derive(Serialize)]
struct DeviceStatus<'a> {
    user: &'a str,
    device: &'a str,
    ipv4: Option<std::net::Ipv4Addr>,
    ipv6: Option<std::net::Ipv6Addr>,
    state: &'static str,
    expires_at: Option<i64>,
    public_key: String,
    endpoint: Option<&'a str>,
    last_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
}

/// The running server's peers by base64 public key (empty when it is not running).
pub(crate) fn live_peers(config: &vpn_control::server_config::ServerConfig) -> HashMap<String, PeerLive> {
    match mgmt::request(&config.interface, &Request::Status) {
        Ok(Some(r)) => r.peers.unwrap_or_default().into_iter().map(|p| (p.public_key.clone(), p)).collect(),
        _ => HashMap::new(),
    }
}

/// `vpn status`.
pub(crate) fn run(config_path: &Path, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = super::open_store_locked(&config)?;
    let devices = store.devices(None)?;
    let live = mgmt::request(&config.interface, &Request::Status)?;
    let running = live.as_ref().is_some_and(|r| r.error.is_none());
    let port = live.as_ref().and_then(|r| r.listen_port);
    let drops = live.as_ref().and_then(|r| r.drops.clone());
    let peers: Vec<PeerLive> = live.and_then(|r| r.peers).unwrap_or_default();
    let by_key: HashMap<&str, &PeerLive> = peers.iter().map(|p| (p.public_key.as_str(), p)).collect();
    let now = time::unix_now();
    let list: Vec<DeviceStatus<'_>> = devices
        .iter()
        .map(|d| {
            let key = d.public_key.to_base64();
            let p = by_key.get(key.as_str()).copied();
            DeviceStatus {
                user: &d.user,
                device: &d.name,
                ipv4: d.ipv4,
                ipv6: d.ipv6,
                state: super::devices::state(d, now),
                expires_at: d.expires_at,
                endpoint: p.and_then(|p| p.endpoint.as_deref()),
                last_handshake: p.and_then(|p| p.last_handshake),
                rx_bytes: p.map_or(0, |p| p.rx_bytes),
                tx_bytes: p.map_or(0, |p| p.tx_bytes),
                public_key: key,
            }
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "interface": config.interface,
            "running": running,
            "listen_port": port,
            "drops": drops,
            "devices": list,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    match (running, port) {
        (true, Some(p)) => println!("{}: up, UDP port {p}, {} device(s)", config.interface, list.len()),
        _ => println!("{}: down (start it with `vpn up`), {} device(s)", config.interface, list.len()),
    }
    if let Some(line) = drops.as_ref().and_then(drops_line) {
        println!("{line}");
    }
    if list.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let addrs = [s.ipv4.map(|a| a.to_string()), s.ipv6.map(|a| a.to_string())].into_iter().flatten().collect::<Vec<_>>().join(", ");
            vec![
                s.user.to_string(),
                s.device.to_string(),
                addrs,
                s.state.to_string(),
                s.endpoint.unwrap_or("-").to_string(),
                s.last_handshake.map_or("never".into(), |t| time::ago(t as i64, now)),
                format!("{} / {}", table::bytes(s.rx_bytes), table::bytes(s.tx_bytes)),
            ]
        })
        .collect();
    print!("{}", table::render(&["USER", "DEVICE", "ADDRESSES", "STATE", "ENDPOINT", "HANDSHAKE", "RX / TX"], &rows));
    Ok(())
}

/// "dropped since start: 12 unknown_index, 3 no_route", most frequent first; `None` when nothing
/// was dropped.
fn drops_line(drops: &BTreeMap<String, u64>) -> Option<String> {
    vpn_tunnel::drop_summary(drops.iter().map(|(name, n)| (name.as_str(), *n))).map(|s| format!("dropped since start: {s}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_line_lists_the_most_frequent_first() {
        let drops: BTreeMap<String, u64> = [("no_route", 3), ("unknown_index", 12), ("invalid_mac1", 3), ("malformed", 0)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        assert_eq!(drops_line(&drops).as_deref(), Some("dropped since start: 12 unknown_index, 3 invalid_mac1, 3 no_route"));
        assert_eq!(drops_line(&BTreeMap::new()), None);
        assert_eq!(drops_line(&[("malformed".to_owned(), 0)].into_iter().collect()), None);
    }
}
