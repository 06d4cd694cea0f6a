//! `vpn device add|list|show|remove|disable|enable|rotate`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_control::client_config::{endpoint_with_port, qr_png, qr_terminal, ClientConfig};
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, Device, DeviceSecrets, NewDevice, Pools, Store};
use vpn_dataplane::IpPrefix;

use super::{load_config, notify, open_store, table, time};

/// Columns of a device listing.
pub(crate) const HEADER: &[&str] = &["USER", "DEVICE", "IPV4", "IPV6", "STATE", "EXPIRES", "PUBLIC KEY"];

/// A device's state in words.
pub(crate) fn state(d: &Device, now: i64) -> &'static str {
    match () {
        _ if !d.user_enabled => "user disabled",
        _ if !d.enabled => "disabled",
        _ if d.expires_at.is_some_and(|t| t <= now) => "expired",
        _ if d.rotation.is_some() => "rotating",
        _ => "enabled",
    }
}

/// One listing row.
pub(crate) fn row(d: &Device, now: i64) -> Vec<String> {
    vec![
        d.user.clone(),
        d.name.clone(),
        d.ipv4.map_or("-".into(), |a| a.to_string()),
        d.ipv6.map_or("-".into(), |a| a.to_string()),
        state(d, now).into(),
        d.expires_at.map_or("never".into(), time::format_date),
        d.public_key.to_base64(),
    ]
}

/// Where `device add` / `device show` put the client configuration.
pub(crate) struct Output {
    /// Write the configuration to this file (mode 0600) instead of stdout.
    pub(crate) file: Option<PathBuf>,
    /// Show the QR code (default: when stdout is a terminal).
    pub(crate) qr: Option<bool>,
    /// Also write the QR code as a PNG.
    pub(crate) png: Option<PathBuf>,
}

/// `vpn device add USER [NAME] [--expires WHEN]`.
pub(crate) fn add(config_path: &Path, user: &str, name: Option<&str>, expires: Option<&str>, out: &Output) -> Result<()> {
    let config = load_config(config_path)?;
    let now = time::unix_now();
    let expires_at = expires.map(|e| time::parse_expiry(e, now)).transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        bail!("the expiry {} is in the past: give a later date or a span like 30d", expires.unwrap_or_default());
    }
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => next_name(&store, user)?,
    };
    let pools = Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool };
    let new = NewDevice { expires_at, ..NewDevice::generated(user, &name, DeviceSecrets::generate(&mut OsRng)) };
    let device = store.add_device(new, &pools, &Actor::local())?;
    eprintln!(
        "device {}/{} added: {}{}",
        device.user,
        device.name,
        [device.ipv4.map(|a| a.to_string()), device.ipv6.map(|a| a.to_string())].into_iter().flatten().collect::<Vec<_>>().join(", "),
        device.expires_at.map_or(String::new(), |t| format!(", expires {}", time::format_utc(t)))
    );
    export(&config, &store, &device, out)?;
    notify(&config);
    Ok(())
}

/// The first free "deviceN" name of a user.
fn next_name(store: &dyn Store, user: &str) -> Result<String> {
    let taken: Vec<String> = store.devices(Some(user))?.into_iter().map(|d| d.name).collect();
    Ok((1..).map(|i| format!("device{i}")).find(|n| !taken.contains(n)).unwrap_or_else(|| "device".into()))
}

/// Prints (or writes) the device's client configuration, QR code and PNG: the configuration
/// with its new keys while a rotation is under way, since that is the one to hand out.
fn export(config: &ServerConfig, store: &dyn Store, device: &Device, out: &Output) -> Result<()> {
    let secrets = match &device.rotation {
        Some(r) => {
            eprintln!(
                "note: this is the new configuration of a key rotation; the old one works until the device connects with it, or until {} at the latest",
                time::format_utc(r.rotate_by)
            );
            store.pending_secrets(&device.user, &device.name)?
        }
        None => store.device_secrets(&device.user, &device.name)?,
    };
    let private_key = secrets.private_key.as_ref().ok_or_else(|| vpn_control::store::StoreError::NoPrivateKey(device.label()))?;
    let server_key = store.server_key()?.context("the server has no key yet: run `vpn init` or `vpn up` once")?;
    let addresses: Vec<IpPrefix> = vpn_control::peers::allowed_ips(device);
    let client = ClientConfig {
        private_key,
        addresses,
        dns: &config.dns,
        mtu: config.mtu,
        server_public_key: server_key.public_key(),
        preshared_key: &secrets.preshared_key,
        endpoint: endpoint_with_port(&config.endpoint, config.listen_port),
        allowed_ips: &config.client_allowed_ips,
        persistent_keepalive: config.persistent_keepalive,
    };
    let text = client.render();
    match &out.file {
        Some(path) => {
            write_private(path, text.as_bytes())?;
            eprintln!("client configuration written to {} (mode 0600)", path.display());
        }
        None => print!("{}", &*text),
    }
    let to_terminal = std::io::stdout().is_terminal();
    if out.qr.unwrap_or(to_terminal && out.file.is_none()) {
        println!("{}", qr_terminal(&text)?);
    }
    if let Some(png) = &out.png {
        qr_png(&text, png)?;
        eprintln!("QR code written to {} (mode 0600)", png.display());
    }
    Ok(())
}

/// Writes a file only the owner can read, atomically (see [`vpn_control::durable`]).
fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    Ok(vpn_control::durable::write_atomic(path, data, 0o600)?)
}

/// `vpn device rotate USER NAME [--grace SPAN] [--now]`: new keys for a device. The old keys keep
/// working until the device first connects with its new configuration, or until the grace
/// period ends (default: the config's `rotation_grace_days`); `--now` ends it at once.
pub(crate) fn rotate(config_path: &Path, user: &str, name: &str, grace: Option<&str>, immediate: bool, out: &Output) -> Result<()> {
    let config = load_config(config_path)?;
    let now = time::unix_now();
    let rotate_by = match grace {
        Some(g) => time::parse_expiry(g, now)?,
        None => now + i64::from(config.rotation_grace_days) * 86_400,
    };
    if rotate_by <= now && !immediate {
        bail!(
            "the grace period would end in the past ({}): give a later date or a span like 7d, or --now to switch at once",
            time::format_utc(rotate_by)
        );
    }
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let actor = Actor::local();
    let mut device = store.rotate_device(user, name, &DeviceSecrets::generate(&mut OsRng), rotate_by, &actor)?;
    if immediate {
        device = store.complete_rotation(user, name, "forced with --now", &actor)?;
        eprintln!("device {}/{}: new keys in force now; the old keys no longer work", device.user, device.name);
    } else {
        eprintln!(
            "device {}/{}: new keys issued; the old keys work until the device connects with the new configuration, or until {} at the latest",
            device.user,
            device.name,
            time::format_utc(rotate_by)
        );
    }
    export(&config, &store, &device, out)?;
    notify(&config);
    Ok(())
}

/// `vpn device list [USER] [--json]`.
pub(crate) fn list(config_path: &Path, user: Option<&str>, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = super::open_store_locked(&config)?;
    if let Some(u) = user {
        store.user(u)?;
    }
    let devices = store.devices(user)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("no devices yet: add one with `vpn device add USER NAME`");
        return Ok(());
    }
    let now = time::unix_now();
    let rows: Vec<Vec<String>> = devices.iter().map(|d| row(d, now)).collect();
    print!("{}", table::render(HEADER, &rows));
    Ok(())
}

/// `vpn device show USER NAME [--config] [--qr] [--png PATH] [--json]`.
pub(crate) fn show(config_path: &Path, user: &str, name: &str, with_config: bool, json: bool, out: &Output) -> Result<()> {
    let config = load_config(config_path)?;
    let store = open_store(&config)?;
    let device = store.device(user, name)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&device)?);
    } else {
        print!("{}", table::render(HEADER, &[row(&device, time::unix_now())]));
    }
    if with_config || out.file.is_some() || out.png.is_some() || out.qr == Some(true) {
        let out = Output { qr: Some(out.qr.unwrap_or(false)), file: out.file.clone(), png: out.png.clone() };
        export(&config, &store, &device, &out)?;
    }
    Ok(())
}

/// `vpn device enable|disable USER NAME`.
pub(crate) fn set_enabled(config_path: &Path, user: &str, name: &str, enabled: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let d = store.set_device_enabled(user, name, enabled, &Actor::local())?;
    println!("device {}/{} {}", d.user, d.name, if enabled { "enabled" } else { "disabled" });
    notify(&config);
    Ok(())
}

/// `vpn device remove USER NAME`.
pub(crate) fn remove(config_path: &Path, user: &str, name: &str) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    let d = store.remove_device(user, name, &Actor::local())?;
    println!("device {}/{} removed; its addresses are free again", d.user, d.name);
    notify(&config);
    Ok(())
}
