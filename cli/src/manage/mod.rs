//! The server manager's CLI commands: `vpn init`, `vpn user ...`, `vpn device ...`, `vpn status`,
//! `vpn audit`.
//! Each command is one thin function over the store (`vpn_control::store`) and the running
//! server's management socket; shared helpers live here.

pub(crate) mod audit;
pub(crate) mod devices;
pub(crate) mod init;
pub(crate) mod status;
pub(crate) mod table;
pub(crate) mod time;
pub(crate) mod users;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, Context, Result};
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{SqliteStore, StoreError};

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

/// Opens the store named by the configuration.
pub(crate) fn open_store(config: &ServerConfig) -> Result<SqliteStore> {
    SqliteStore::open(&config.store).map_err(|e| match e {
        StoreError::Io(ref io) if io.kind() == std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot open the store {}: permission denied (it holds private keys and is readable by root only: run with sudo)",
            config.store.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open the store {}", config.store.display())),
    })
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
