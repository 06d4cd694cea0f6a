//! The server manager's CLI commands: `vpn init`, `vpn user ...`, `vpn device ...`, `vpn status`,
//! `vpn audit`.
//! Each command is one thin function over the store (`vpn_control::store`) and the running
//! server's management socket; shared helpers live here.

pub(crate) mod audit;
pub(crate) mod bulk;
pub(crate) mod devices;
pub(crate) mod import;
pub(crate) mod init;
pub(crate) mod keys;
pub(crate) mod status;
pub(crate) mod table;
pub(crate) mod time;
pub(crate) mod users;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use vpn_control::keyring;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, SqliteStore, StoreError};

use crate::server::mgmt::{self, Request};

pub(crate) use time::unix_now;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails with a clear message unless running as root.
pub(crate) fn require_root(command: &str, why: &str) -> Result<()> {
    if !crate::daemon::is_root() {
        bail!("{command} needs root ({why}): run it with sudo");
    }
    Ok(())
}

/// The server configuration at `path`, with advice when there is none.
pub(crate) fn load_config(path: &Path) -> Result<ServerConfig> {
    if !path.exists() {
        bail!("no server configuration at {}: run `vpn init` (or `vpn up`, which creates a default one) first", path.display());
    }
    let config = ServerConfig::load(path)?;
    config.validate().with_context(|| format!("{} is not usable", path.display()))?;
    Ok(config)
}

/// Opens the store named by the configuration and unlocks its keys (see [`unlock`]).
pub(crate) fn open_store(config: &ServerConfig) -> Result<SqliteStore> {
    let mut store = open_store_locked(config)?;
    unlock(&mut store, config)?;
    Ok(store)
}

/// How long a command waits for another one that is changing the same state.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// For a command that changes state: takes the writers' lock (`<store>.lock`, so commands that
/// change the store and the files beside it run one at a time), then opens and unlocks the
/// store. The lock is released when the returned guard is dropped.
pub(crate) fn open_store_for_write(config: &ServerConfig) -> Result<(SqliteStore, vpn_control::durable::WriterLock)> {
    let lock = writer_lock(config)?;
    Ok((open_store(config)?, lock))
}

/// The writers' lock of the store named by `config` (see [`open_store_for_write`]).
pub(crate) fn writer_lock(config: &ServerConfig) -> Result<vpn_control::durable::WriterLock> {
    let mut path = config.store.clone().into_os_string();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    if let Some(dir) = path.parent() {
        vpn_control::durable::create_dir(dir, 0o700).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    Ok(vpn_control::durable::WriterLock::acquire(&path, WRITER_WAIT)?)
}

/// Unlocks the store's keys with the passphrase from the environment, the systemd credential or
/// the configured file. A store without a data key yet (new, or from before keys were
/// encrypted) with no passphrase anywhere gets a fresh random one in the configured file, and
/// its keys are sealed. A protected store with no passphrase stays locked: what needs no secret
/// still works, and what does says how to give the passphrase.
pub(crate) fn unlock(store: &mut SqliteStore, config: &ServerConfig) -> Result<()> {
    let found = keyring::find_passphrase(&config.passphrase_file).context("cannot read the store's passphrase")?;
    // A passphrase given by a person is stretched with Argon2id at its full cost; the random one
    // made here needs no stretching (see `KdfParams::RANDOM_PASSPHRASE`).
    let mut params = keyring::KdfParams::DEFAULT;
    let (passphrase, source) = match found {
        Some(found) => found,
        None if !store.is_protected()? => {
            params = keyring::KdfParams::RANDOM_PASSPHRASE;
            let p = keyring::create_passphrase_file(&config.passphrase_file, &mut rand_core::OsRng).with_context(|| {
                format!("cannot create the passphrase file {} that protects the store's keys", config.passphrase_file.display())
            })?;
            eprintln!(
                "created {} (mode 0600): a random passphrase that encrypts the keys in the store; back it up with the store",
                config.passphrase_file.display()
            );
            (p, keyring::PassphraseSource::File(config.passphrase_file.clone()))
        }
        None => return Ok(()),
    };
    let done = store
        .unlock(&passphrase, params, &Actor::local())
        .with_context(|| format!("cannot unlock the store {} with the passphrase from {source}", config.store.display()))?;
    if done.sealed_now > 0 {
        eprintln!("encrypted {} key(s) that were stored in plain text", done.sealed_now);
    }
    Ok(())
}

/// Opens the store named by the configuration, without unlocking its keys, with its JSON-lines
/// audit log when one is configured.
pub(crate) fn open_store_locked(config: &ServerConfig) -> Result<SqliteStore> {
    let mut store = SqliteStore::open(&config.store).map_err(|e| match e {
        StoreError::Io(ref io) if io.kind() == std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot open the store {}: permission denied (it holds private keys and is readable by root only: run with sudo)",
            config.store.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store {}", config.store.display())),
    })?;
    if let Some(log) = &config.audit_log {
        // Rows the log misses (it could not be written, or a command was killed between its
        // commit and its line) are written by the next command that can.
        if let Err(e) = store.set_audit_log(log) {
            eprintln!("warning: the audit log {} cannot be written ({e}); changes are still recorded in the store", log.display());
        }
    }
    Ok(store)
}

/// Tells a running server to apply the store's new state, and says what happened.
pub(crate) fn notify(config: &ServerConfig) {
    match mgmt::request(&config.interface, &Request::Sync) {
        Ok(Some(reply)) => match (reply.error, reply.synced) {
            (Some(e), _) => eprintln!("warning: the running server could not apply the change: {e}"),
            (None, Some(r)) => eprintln!("applied live to {}: {r}", config.interface),
            (None, None) => {}
        },
        Ok(None) => eprintln!("note: no server is running for {}; the change takes effect at `vpn up`", config.interface),
        Err(e) => eprintln!("warning: cannot reach the running server: {e:#}; the change takes effect at its next sync or restart"),
    }
}
