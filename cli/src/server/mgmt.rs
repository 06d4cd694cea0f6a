//! The management socket of a running `vpn up`: `/run/vpn/IFNAME.sock` (root only, mode 0600).
//!
//! One JSON request per connection, one JSON reply: `{"op":"sync"}` makes the server re-read the
//! store and apply the difference to the running interface (the CLI sends it after every change),
//! `{"op":"status"}` returns the live peer state and the drop counters, `{"op":"shutdown"}` stops the server (`vpn
//! down`). Requests are handled one at a time, in order.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Directory of the management sockets.
pub(crate) const RUN_DIR: &str = "/run/vpn";
/// Longest wait for a reply (a sync of thousands of devices takes milliseconds).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request accepted.
const MAX_REQUEST: u64 = 4096;

/// What the CLI asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// Re-read the store and apply the difference.
    Sync,
    /// Live peer state.
    Status,
    /// Stop the server.
    Shutdown,
}

/// Live state of one peer, as `vpn status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerLive {
    /// Base64 public key.
    pub(crate) public_key: String,
    pub(crate) endpoint: Option<String>,
    /// Unix seconds of the last handshake.
    pub(crate) last_handshake: Option<u64>,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
}

/// The server's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reply {
    /// Empty when the request succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// After a sync: peers added, removed and changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) synced: Option<SyncReport>,
    /// For a status request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peers: Option<Vec<PeerLive>>,
    /// For a status request: the UDP port and interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listen_port: Option<u16>,
    /// For a status request: packets dropped since the server started, by reason (only the
    /// reasons that occurred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) drops: Option<BTreeMap<String, u64>>,
}

impl Reply {
    pub(crate) fn ok() -> Self {
        Self { error: None, synced: None, peers: None, listen_port: None, drops: None }
    }
    pub(crate) fn error(e: impl std::fmt::Display) -> Self {
        Self { error: Some(e.to_string()), ..Self::ok() }
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SyncReport {
    pub(crate) added: usize,
    pub(crate) removed: usize,
    pub(crate) changed: usize,
    pub(crate) active: usize,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} active peer(s): {} added, {} removed, {} changed", self.active, self.added, self.removed, self.changed)
    }
}

/// The socket path for an interface.
pub(crate) fn socket_path(ifname: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{ifname}.sock"))
}

/// Sends `request` to the server of `ifname`; `Ok(None)` when no server runs there.
pub(crate) fn request(ifname: &str, request: &Request) -> Result<Option<Reply>> {
    let path = socket_path(ifname);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("cannot reach the running server at {}: permission denied (run as root)", path.display())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot reach the running server at {}", path.display())),
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).context("the running server did not answer")?;
    let reply: Reply = serde_json::from_str(&reply).context("the running server sent an unreadable reply")?;
    Ok(Some(reply))
}

/// A bound management socket.
pub(crate) struct MgmtServer {
    listener: UnixListener,
    path: PathBuf,
}

/// The serving thread; stops on [`MgmtHandle::shutdown`] or drop, and removes the socket.
pub(crate) struct MgmtHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl MgmtServer {
    /// Claims the socket of `ifname`; refuses when a server already answers there.
    pub(crate) fn bind(ifname: &str) -> Result<Self> {
        std::fs::create_dir_all(RUN_DIR).with_context(|| format!("cannot create {RUN_DIR}"))?;
        let path = socket_path(ifname);
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                bail!("a vpn server for {ifname} is already running (socket {}); stop it with `vpn down`", path.display());
            }
            std::fs::remove_file(&path).with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path).with_context(|| format!("cannot create the management socket {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path })
    }

    /// Serves requests with `handler` on a thread of its own.
    pub(crate) fn serve(self, handler: impl Fn(Request) -> Reply + Send + 'static) -> Result<MgmtHandle> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let listener = self.listener;
        let thread = std::thread::Builder::new().name("mgmt".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = handle(stream, &handler) {
                            tracing::debug!(error = %e, "management request failed");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(50)),
                    Err(e) => {
                        tracing::warn!(error = %e, "management socket accept failed");
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })?;
        Ok(MgmtHandle { stop, thread: Some(thread), path: self.path })
    }
}

fn handle(stream: UnixStream, handler: &impl Fn(Request) -> Reply) -> Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Ok(req) => handler(req),
        Err(e) => Reply::error(format!("unreadable request: {e}")),
    };
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    (&stream).write_all(out.as_bytes())?;
    Ok(())
}

use std::io::Read as _;

impl MgmtHandle {
    /// Stops serving and removes the socket.
    pub(crate) fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for MgmtHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_a_stable_wire_form() {
        assert_eq!(serde_json::to_string(&Request::Sync).unwrap(), r#"{"op":"sync"}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"shutdown"}"#).unwrap(), Request::Shutdown);
        let r = Reply { synced: Some(SyncReport { added: 1, removed: 0, changed: 0, active: 3 }), ..Reply::ok() };
        let back: Reply = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
    }
}
