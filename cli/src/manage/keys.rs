//! `vpn keys status|passphrase|rotate`: how the store's keys are protected, changing the
//! passphrase that protects them, and rotating the server's key.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_control::keyring::{self, KdfParams, Passphrase, PassphraseSource};
use vpn_control::store::{Actor, Store};
use vpn_crypto::PrivateKey;

use super::{load_config, notify, open_store_locked, time};

/// `vpn keys status [--json]`.
pub(crate) fn status(config_path: &Path, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = open_store_locked(&config)?;
    let source = keyring::find_passphrase(&config.passphrase_file).ok().flatten().map(|(_, s)| s.to_string());
    let s = store.key_status()?;
    let now = time::unix_now();
    let max_age = i64::from(config.key_rotation_days) * 86_400;
    let devices = store.devices(None)?;
    let due: Vec<String> = if config.key_rotation_days > 0 {
        devices.iter().filter(|d| d.rotation.is_none() && now - d.key_created_at >= max_age).map(|d| d.label()).collect()
    } else {
        Vec::new()
    };
    let pending: Vec<(String, i64)> = devices.iter().filter_map(|d| d.rotation.as_ref().map(|r| (d.label(), r.rotate_by))).collect();
    if json {
        let v = serde_json::json!({
            "store": config.store,
            "keys": s,
            "passphrase_source": source,
            "policy": { "key_rotation_days": config.key_rotation_days, "rotation_grace_days": config.rotation_grace_days },
            "due": due,
            "pending": pending.iter().map(|(d, by)| serde_json::json!({ "device": d, "rotate_by": by })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("store            {}", config.store.display());
    match &s.kdf {
        Some(kdf) => println!("protection       XChaCha20-Poly1305 per key, data key wrapped with {kdf}"),
        None => println!("protection       none yet: the next command that unlocks the store (e.g. `vpn up`) encrypts the keys"),
    }
    println!(
        "passphrase       {}",
        source.as_deref().unwrap_or("not found (set VPN_PASSPHRASE_FILE, or see passphrase_file in the config)")
    );
    println!("sealed secrets   {}", s.sealed);
    if s.plaintext > 0 {
        println!("plain secrets    {} (encrypted at the next unlock)", s.plaintext);
    }
    if s.public_key_only > 0 {
        println!("public key only  {} device(s) imported without their private key (it stays on the client)", s.public_key_only);
    }
    let age = |t: Option<i64>| t.map_or("unknown".to_owned(), |t| format!("{} days", (now - t).max(0) / 86_400));
    println!("server key       {}, age {}", if s.server_key { "set" } else { "not set" }, age(s.server_key_created_at));
    if let Some(until) = s.server_retiring_until {
        println!("previous server key accepted until {}", time::format_utc(until));
    }
    if config.key_rotation_days > 0 {
        println!(
            "rotation policy  every {} days, grace {} days (applied by `vpn up`)",
            config.key_rotation_days, config.rotation_grace_days
        );
        println!("due now          {}", if due.is_empty() { "none".to_owned() } else { due.join(", ") });
    } else {
        println!("rotation policy  off (set key_rotation_days in the config)");
    }
    for (d, by) in &pending {
        println!("rotating         {d}: old key works until the device connects with its new config, or {}", time::format_utc(*by));
    }
    Ok(())
}

/// Where the new passphrase of `vpn keys passphrase` comes from.
pub(crate) struct NewPassphrase {
    /// Read it from this file (which must not be readable by others).
    pub(crate) from_file: Option<PathBuf>,
    /// Generate a random one.
    pub(crate) generate: bool,
}

/// Reads a passphrase twice from the terminal.
fn prompt_twice() -> Result<Passphrase> {
    if !std::io::stdin().is_terminal() {
        bail!("no new passphrase: pass --from-file FILE or --generate, or run in a terminal to type it");
    }
    let read = |prompt: &str| -> Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let a = zeroize::Zeroizing::new(read("new passphrase (shown as typed): ")?);
    let b = zeroize::Zeroizing::new(read("again: ")?);
    if *a != *b {
        bail!("the two passphrases differ; nothing was changed");
    }
    if a.len() < 12 {
        bail!("a passphrase of fewer than 12 characters is too easy to guess; nothing was changed");
    }
    Ok(Passphrase::new(a.as_bytes().to_vec()))
}

/// `vpn keys passphrase [--from-file FILE | --generate]`: wraps the data key under a new
/// passphrase (no key is re-encrypted). When the current passphrase came from the configured
/// passphrase file, that file is replaced with the new one; the change is staged in the store
/// first, so a crash at any moment leaves a store that the file unlocks.
pub(crate) fn passphrase(config_path: &Path, new: &NewPassphrase) -> Result<()> {
    let config = load_config(config_path)?;
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    if !store.is_unlocked() {
        bail!("{}", vpn_control::store::StoreError::Locked);
    }
    let (_, source) = keyring::find_passphrase(&config.passphrase_file)?.context("the current passphrase was not found")?;
    let params = if new.generate { KdfParams::RANDOM_PASSPHRASE } else { KdfParams::DEFAULT };
    let pass = match (&new.from_file, new.generate) {
        (Some(_), true) => bail!("give either --from-file or --generate, not both"),
        (Some(f), false) => {
            let bytes = vpn_control::keyfile::read_secret_file(f)?;
            let text = std::str::from_utf8(&bytes).context("the new passphrase file is not UTF-8 text")?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(text);
            if text.is_empty() {
                bail!("{} is empty: put the new passphrase in it", f.display());
            }
            Passphrase::new(text.as_bytes().to_vec())
        }
        (None, true) => Passphrase::generate(&mut OsRng),
        (None, false) => prompt_twice()?,
    };
    let actor = Actor::local();
    match &source {
        PassphraseSource::File(path) if *path == config.passphrase_file => {
            store.stage_passphrase(&pass, params)?;
            let mut text = zeroize::Zeroizing::new(pass.as_bytes().to_vec());
            text.push(b'\n');
            vpn_control::durable::write_atomic(path, &text, 0o600)?;
            store.commit_passphrase(&actor)?;
            println!("passphrase changed; {} holds the new one (keep a copy with your backups)", path.display());
        }
        other => {
            // Checked before the change: a generated passphrase that is neither stored nor
            // shown would leave the store unreadable.
            if new.generate {
                bail!("a generated passphrase cannot be shown or stored when the current one comes from {other}; use --from-file (nothing was changed)");
            }
            store.change_passphrase(&pass, params, &actor)?;
            println!("passphrase changed; update {other} with the new one now, or the next start cannot unlock the store");
        }
    }
    Ok(())
}

/// `vpn keys rotate --server [--grace SPAN]`: a new key for the server. Devices connect with their
/// current configs until the grace period ends; each needs its new config (with the server's
/// new public key) before then: `vpn device show USER DEVICE --client`.
pub(crate) fn rotate_server(config_path: &Path, grace: Option<&str>) -> Result<()> {
    let config = load_config(config_path)?;
    let now = time::unix_now();
    let retire_at = match grace {
        Some(g) => time::parse_expiry(g, now)?,
        None => now + i64::from(config.rotation_grace_days) * 86_400,
    };
    if retire_at <= now {
        bail!(
            "the grace period would end in the past ({}): give a later date or a span like 14d (without one, every device would lose the server at once)",
            time::format_utc(retire_at)
        );
    }
    let (mut store, _lock) = super::open_store_for_write(&config)?;
    if let Some((_, until)) = store.retiring_server_key()? {
        if until > now {
            bail!(
                "a server key rotation is already under way (the previous key is accepted until {}): wait for it to end, or the devices still on the oldest key are cut off",
                time::format_utc(until)
            );
        }
    }
    let key = PrivateKey::generate(&mut OsRng);
    store.rotate_server_key(&key, retire_at, &Actor::local())?;
    println!("server key rotated; new public key {}", key.public_key().to_base64());
    println!(
        "devices keep connecting with their current configs until {}; give each its new config before then (`vpn device show USER DEVICE --client`)",
        time::format_utc(retire_at)
    );
    notify(&config);
    Ok(())
}
