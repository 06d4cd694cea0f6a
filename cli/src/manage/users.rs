//! `vpn user add|list|show|disable|enable|remove`.

use std::path::Path;

use anyhow::{bail, Result};
use vpn_control::store::{Actor, Store};

use super::{load_config, notify, table, time};

/// `vpn user add NAME`.
pub(crate) fn add(config_path: &Path, name: &str) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let user = store.add_user(name, &Actor::local())?;
    println!("user {} added; add a device with: vpn device add {} NAME", user.name, user.name);
    Ok(())
}

/// `vpn user list [--json]`: users with their devices' live state summed up (latest handshake,
/// transfer) when the server runs.
pub(crate) fn list(config_path: &Path, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = super::open_store_locked(&config)?;
    let users = store.users()?;
    let devices = store.devices(None)?;
    let live = super::status::live_peers(&config);
    let now = time::unix_now();
    #[derive(serde::Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        user: &'a vpn_control::store::User,
        active_devices: usize,
        last_handshake: Option<u64>,
        rx_bytes: u64,
        tx_bytes: u64,
    }
    let rows: Vec<Row<'_>> = users
        .iter()
        .map(|u| {
            let mine: Vec<_> = devices.iter().filter(|d| d.user == u.name).collect();
            let peers: Vec<_> = mine.iter().filter_map(|d| live.get(&d.public_key.to_base64())).collect();
            Row {
                user: u,
                active_devices: mine.iter().filter(|d| d.is_active(now)).count(),
                last_handshake: peers.iter().filter_map(|p| p.last_handshake).max(),
                rx_bytes: peers.iter().map(|p| p.rx_bytes).sum(),
                tx_bytes: peers.iter().map(|p| p.tx_bytes).sum(),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no users yet: add one with `vpn user add NAME`");
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let state = if r.user.enabled { "enabled" } else { "disabled" };
            vec![
                r.user.name.clone(),
                state.into(),
                format!("{} of {}", r.active_devices, r.user.devices),
                r.last_handshake.map_or("never".into(), |t| time::ago(t as i64, now)),
                format!("{} / {}", table::bytes(r.rx_bytes), table::bytes(r.tx_bytes)),
                time::format_date(r.user.created_at),
            ]
        })
        .collect();
    print!("{}", table::render(&["USER", "STATE", "ACTIVE DEVICES", "LAST HANDSHAKE", "RX / TX", "CREATED"], &table_rows));
    Ok(())
}

/// `vpn user show NAME [--json]`: the user and its devices.
pub(crate) fn show(config_path: &Path, name: &str, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = super::open_store_locked(&config)?;
    let user = store.user(name)?;
    let devices = store.devices(Some(name))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "user": user, "devices": devices }))?);
        return Ok(());
    }
    println!("user {}: {}, created {}", user.name, if user.enabled { "enabled" } else { "disabled" }, time::format_date(user.created_at));
    let now = time::unix_now();
    let rows: Vec<Vec<String>> = devices.iter().map(|d| super::devices::row(d, now)).collect();
    if rows.is_empty() {
        println!("no devices: add one with `vpn device add {name} NAME`");
    } else {
        print!("{}", table::render(super::devices::HEADER, &rows));
    }
    Ok(())
}

/// `vpn user enable|disable NAME`.
pub(crate) fn set_enabled(config_path: &Path, name: &str, enabled: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let user = store.set_user_enabled(name, enabled, &Actor::local())?;
    println!("user {} {}", user.name, if enabled { "enabled" } else { "disabled: its devices cannot connect" });
    notify(&config);
    Ok(())
}

/// `vpn user remove NAME --yes`: the user and all its devices.
pub(crate) fn remove(config_path: &Path, name: &str, yes: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let devices = store.devices(Some(name))?;
    if !devices.is_empty() && !yes {
        bail!("user {name} has {} device(s), which would be removed too: add --yes to confirm", devices.len());
    }
    let removed = store.remove_user(name, &Actor::local())?;
    println!("user {name} removed, with {} device(s)", removed.len());
    notify(&config);
    Ok(())
}
