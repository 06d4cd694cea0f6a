//! The UAPI server: a Unix stream socket at `/var/run/wireguard/IFNAME.sock`, an accept thread and
//! one thread per connection, in front of a [`Backend`] (the engine).
//!
//! - The socket is created with mode 0600 (bound under a temporary name, restricted, then renamed
//!   into place, so it is never reachable with looser permissions) in a directory created 0755 if
//!   missing. A stale socket whose process is gone (connecting is refused) is replaced; a live one
//!   means another instance serves the interface, and [`UapiServer::bind`] refuses.
//! - At most [`ServerLimits::max_connections`] connections are served at once. When a new one
//!   arrives at the cap, the connection that has been quiet longest and is not in the middle of
//!   an operation is closed to make room; if all are busy, the new one is closed. A connection
//!   that sends nothing for [`ServerLimits::idle_timeout`] is closed, as is one that does not read
//!   its replies for as long. So idle clients can delay no one.
//! - `set` requests are serialized: read the configuration, [`apply`](super::apply()), hand the result to
//!   [`Backend::apply`], under one mutex. `get` only reads [`Backend::status`].
//! - The socket file is removed when the server stops, if it is still ours. Its deletion by
//!   someone else is visible through [`ServerHandle::socket_removed`] (wireguard-go shuts the
//!   interface down then; the daemon decides, e.g. by polling it every second).
//!
//! Memory is bounded by the limits: a connection holds at most one parsed request of at most
//! [`Limits::max_request`] bytes of text (the text itself is parsed line by line, not kept).
//! Replies are written with `write(2)`, so the process must ignore `SIGPIPE`, as Rust programs
//! do by default.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;
use vpn_dataplane::{InterfaceConfig, InterfaceStatus};

use super::format::{errno_response, get_response};
use super::reader::{Limits, Next, Request, RequestReader};
use super::{apply_detailed, Errno, SetRequest};
use crate::sys;
use vpn_crypto::PublicKey;

/// Where `wg` looks for UAPI sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The engine behind the UAPI.
pub trait Backend: Send + Sync + 'static {
    /// The live state, for `get`.
    fn status(&self) -> InterfaceStatus;
    /// The configuration currently in effect (what the next `set` applies to).
    fn config(&self) -> InterfaceConfig;
    /// Puts `new` into effect, entirely or not at all. The peers in `recreated` were removed and
    /// added again by the request: their sessions, endpoints and counters start afresh.
    ///
    /// Fails with `EADDRINUSE` when the listen port or fwmark cannot be applied to the UDP
    /// sockets; the backend guarantees that nothing changed then.
    fn apply(&self, new: InterfaceConfig, recreated: &[PublicKey]) -> Result<(), Errno>;
}

/// Why the UAPI socket could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UapiError {
    /// The interface name cannot be a socket file name.
    #[error("invalid interface name {0:?}: use 1 to 15 characters, without '/', ':' or spaces, and not '.' or '..'")]
    InvalidName(String),
    /// Another process is listening on the socket.
    #[error("an instance is already running for {name} (something accepts connections on {path}); stop it first")]
    AlreadyRunning {
        /// The interface name, or the socket path for [`UapiServer::bind_path`].
        name: String,
        /// The socket path.
        path: PathBuf,
    },
    /// Something that is not a socket is in the way.
    #[error("{path} exists and is not a socket; remove it if nothing uses it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A file system or socket operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UapiError {
    let path = path.to_path_buf();
    move |source| UapiError::Io { what, path, source }
}

/// Connection limits of a [`UapiServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections served at once (default 64; at least 1 is used).
    pub max_connections: usize,
    /// A connection that sends nothing, or reads nothing of a reply, this long is closed (default 10 s).
    pub idle_timeout: Duration,
    /// Line and request size limits.
    pub request: Limits,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { max_connections: 64, idle_timeout: Duration::from_secs(10), request: Limits::default() }
    }
}

/// A stop signal for [`UapiServer::serve`], cheap to clone and safe to trigger from any thread.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug, Default)]
struct ShutdownInner {
    flag: AtomicBool,
    /// Write ends of the wake-up pipes of the accept threads watching this signal, by id.
    wakers: Mutex<Vec<(u64, UnixStream)>>,
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every server using this signal to stop; they stop accepting at once.
    pub fn trigger(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        for (_, w) in lock(&self.inner.wakers).iter() {
            let _ = (&*w).write(&[1]);
        }
    }

    /// Whether [`trigger`](Self::trigger) was called.
    pub fn is_triggered(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    fn register(&self, id: u64, waker: UnixStream) {
        lock(&self.inner.wakers).push((id, waker));
    }

    fn unregister(&self, id: u64) {
        lock(&self.inner.wakers).retain(|(i, _)| *i != id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The socket file we created, identified by device and inode so we never remove another's.
#[derive(Debug, Clone)]
struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    fn removed(&self) -> bool {
        match fs::symlink_metadata(&self.path) {
            Ok(m) => (m.dev(), m.ino()) != self.id,
            Err(_) => true,
        }
    }

    fn remove_if_ours(&self) {
        if !self.removed() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A bound UAPI socket, not yet serving. Dropping it removes the socket file.
#[derive(Debug)]
pub struct UapiServer {
    listener: Option<UnixListener>,
    file: SocketFile,
    limits: ServerLimits,
}

impl UapiServer {
    /// Creates `/var/run/wireguard/IFNAME.sock`.
    pub fn bind(ifname: &str) -> Result<UapiServer, UapiError> {
        validate_ifname(ifname)?;
        let dir = Path::new(SOCKET_DIR);
        fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io_err("creating directory", dir))?;
        Self::bind_at(dir.join(format!("{ifname}.sock")), ifname.to_string())
    }

    /// Creates a UAPI socket at `path` (its directory must exist); for tests and embedding.
    pub fn bind_path(path: impl AsRef<Path>) -> Result<UapiServer, UapiError> {
        let path = path.as_ref().to_path_buf();
        let name = path.display().to_string();
        Self::bind_at(path, name)
    }

    /// Replaces the default [`ServerLimits`].
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Whether the socket file was deleted or replaced since it was created.
    pub fn socket_removed(&self) -> bool {
        self.file.removed()
    }

    fn bind_at(path: PathBuf, name: String) -> Result<UapiServer, UapiError> {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => match UnixStream::connect(&path) {
                Ok(_) => return Err(UapiError::AlreadyRunning { name, path }),
                // A socket nobody listens on: the process that made it is gone. Replace it.
                Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound) => {}
                Err(e) => return Err(UapiError::Io { what: "probing existing socket", path, source: e }),
            },
            Ok(_) => return Err(UapiError::NotASocket { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(UapiError::Io { what: "inspecting", path, source: e }),
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(".uapi-{}-{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io_err("binding", &tmp))?;
        let placed = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))
            .map_err(io_err("restricting permissions of", &tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err("moving socket into place at", &path)));
        if let Err(e) = placed {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let meta = fs::symlink_metadata(&path).map_err(io_err("inspecting", &path))?;
        let file = SocketFile { path, id: (meta.dev(), meta.ino()) };
        listener.set_nonblocking(true).map_err(io_err("configuring", &file.path))?;
        Ok(UapiServer { listener: Some(listener), file, limits: ServerLimits::default() })
    }

    /// Starts serving on a new accept thread and returns at once.
    ///
    /// Serving stops when `shutdown` is triggered or the returned handle is dropped; then the
    /// connections are closed and the socket file is removed (if it is still ours).
    pub fn serve(mut self, backend: Arc<dyn Backend>, shutdown: Shutdown) -> Result<ServerHandle, UapiError> {
        let path = self.file.path.clone();
        let pipe_err = || io_err("creating wake-up pipe for", &path);
        // Until the accept thread runs, an early return drops `self`, which removes the socket file.
        let (wake_tx, wake_rx) = UnixStream::pair().map_err(pipe_err())?;
        wake_tx.set_nonblocking(true).map_err(pipe_err())?;
        wake_rx.set_nonblocking(true).map_err(pipe_err())?;
        let wake_tx2 = wake_tx.try_clone().map_err(pipe_err())?;
        let Some(listener) = self.listener.take() else { unreachable!("only `serve` takes the listener, and it consumes the server") };

        static SERVERS: AtomicU64 = AtomicU64::new(0);
        let id = SERVERS.fetch_add(1, Ordering::Relaxed);
        let stop = Shutdown::new();
        stop.register(id, wake_tx2);
        shutdown.register(id, wake_tx);
        let user_signal = shutdown.clone();
        let signals = [shutdown, stop.clone()];
        let shared = Arc::new(Shared {
            backend,
            limits: self.limits,
            set_lock: Mutex::new(()),
            conns: Mutex::new(Conns::default()),
            conns_done: Condvar::new(),
            epoch: Instant::now(),
        });
        let file = self.file.clone();
        let spawned = thread::Builder::new().name("uapi-accept".into()).spawn(move || {
            accept_loop(&shared, &listener, &wake_rx, &signals);
            drop(listener);
            file.remove_if_ours();
            shared.close_all();
            for s in &signals {
                s.unregister(id);
            }
        });
        match spawned {
            // From here on the accept thread removes the socket file.
            Ok(accept) => Ok(ServerHandle { file: self.file.clone(), stop, accept: Some(accept) }),
            Err(e) => {
                user_signal.unregister(id);
                self.file.remove_if_ours();
                Err(UapiError::Io { what: "starting accept thread for", path, source: e })
            }
        }
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        if self.listener.is_some() {
            self.file.remove_if_ours();
        }
    }
}

/// A running UAPI server. Dropping it stops the server and waits for it.
#[derive(Debug)]
pub struct ServerHandle {
    file: SocketFile,
    stop: Shutdown,
    accept: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Whether the socket file was deleted or replaced by someone else.
    pub fn socket_removed(&self) -> bool {
        self.file.removed()
    }

    /// Stops the server: no new connections, open ones closed, socket file removed. Waits for
    /// the accept thread and (up to a few seconds) for connection threads.
    pub fn shutdown(mut self) {
        self.stop_and_wait();
    }

    /// Waits until the server stops because its [`Shutdown`] was triggered.
    pub fn join(mut self) {
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }

    fn stop_and_wait(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop_and_wait();
    }
}

fn validate_ifname(name: &str) -> Result<(), UapiError> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(UapiError::InvalidName(name.to_string()))
    }
}

/// State shared by the accept thread and the connection threads.
struct Shared {
    backend: Arc<dyn Backend>,
    limits: ServerLimits,
    /// Serializes `set` requests: read config, apply, hand to the backend.
    set_lock: Mutex<()>,
    conns: Mutex<Conns>,
    /// Signalled when a connection thread ends.
    conns_done: Condvar,
    epoch: Instant,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    open: HashMap<u64, Conn>,
    /// Connection threads still running (evicted ones included).
    threads: usize,
}

/// A connection as the accept thread sees it, to close it from outside.
struct Conn {
    stream: UnixStream,
    /// Milliseconds since `Shared::epoch` of the last byte received or reply sent.
    activity: Arc<AtomicU64>,
    /// Carrying out a request (not waiting for the client).
    busy: Arc<AtomicBool>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis().try_into().unwrap_or(u64::MAX)
    }

    /// Registers `stream` and starts its thread, making room at the cap if an idle connection can go.
    fn admit(self: &Arc<Self>, stream: UnixStream) {
        let mut conns = lock(&self.conns);
        if conns.open.len() >= self.limits.max_connections.max(1) {
            let victim = conns
                .open
                .iter()
                .filter(|(_, c)| !c.busy.load(Ordering::SeqCst))
                .min_by_key(|(_, c)| c.activity.load(Ordering::SeqCst))
                .map(|(&id, _)| id);
            match victim.and_then(|id| conns.open.remove(&id)) {
                Some(old) => {
                    tracing::debug!("UAPI: connection limit reached, closing the longest idle connection");
                    let _ = old.stream.shutdown(std::net::Shutdown::Both);
                }
                None => {
                    tracing::warn!("UAPI: {} connections busy, refusing a new one", conns.open.len());
                    return;
                }
            }
        }
        let Ok(handle) = stream.try_clone() else { return };
        let id = conns.next_id;
        conns.next_id += 1;
        let activity = Arc::new(AtomicU64::new(self.now_ms()));
        let busy = Arc::new(AtomicBool::new(false));
        conns.open.insert(id, Conn { stream: handle, activity: Arc::clone(&activity), busy: Arc::clone(&busy) });
        conns.threads += 1;
        drop(conns);
        let shared = Arc::clone(self);
        let spawned = thread::Builder::new().name("uapi-conn".into()).spawn(move || {
            let _guard = ConnGuard { shared: &shared, id };
            shared.serve_conn(stream, &activity, &busy);
        });
        if spawned.is_err() {
            tracing::warn!("UAPI: cannot start a connection thread, closing the connection");
            let mut conns = lock(&self.conns);
            conns.open.remove(&id);
            conns.threads -= 1;
        }
    }

    fn serve_conn(&self, stream: UnixStream, activity: &AtomicU64, busy: &AtomicBool) {
        let timeout = Some(self.limits.idle_timeout).filter(|t| !t.is_zero());
        if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
            return;
        }
        let mut reader = RequestReader::new(Activity { stream: &stream, shared: self, activity }, self.limits.request);
        loop {
            let next = reader.next_request();
            busy.store(true, Ordering::SeqCst);
            let reply = match next {
                Ok(Next::End) => return,
                Ok(Next::Request(Request::Get)) => get_response(&self.backend.status()),
                Ok(Next::Request(Request::Set(req))) => errno_response(self.set(&req)).into(),
                Ok(Next::Rejected(e)) => {
                    tracing::info!(errno = %e.errno(), "UAPI request refused: {e}");
                    errno_response(Err(e.errno())).into()
                }
                Err(e) => {
                    tracing::debug!("UAPI: closing connection: {e}");
                    if let Some(errno) = e.reply() {
                        let _ = (&stream).write_all(&errno_response(Err(errno)));
                    }
                    return;
                }
            };
            if (&stream).write_all(&reply).is_err() {
                return;
            }
            activity.store(self.now_ms(), Ordering::SeqCst);
            busy.store(false, Ordering::SeqCst);
        }
    }

    /// One `set`, serialized with all others.
    fn set(&self, req: &SetRequest) -> Result<(), Errno> {
        let _serial = lock(&self.set_lock);
        let current = self.backend.config();
        let result = apply_detailed(&current, req).and_then(|a| self.backend.apply(a.config, &a.recreated));
        match &result {
            Ok(()) => tracing::debug!("UAPI: configuration applied ({} peer blocks)", req.peers.len()),
            Err(e) => tracing::info!(errno = %e, "UAPI: set refused, configuration unchanged"),
        }
        result
    }

    /// Closes every connection and waits (a few seconds at most) for their threads.
    fn close_all(&self) {
        let mut conns = lock(&self.conns);
        for (_, c) in conns.open.drain() {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while conns.threads > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("UAPI: {} connection threads still busy at shutdown", conns.threads);
                break;
            }
            conns = self.conns_done.wait_timeout(conns, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// Unregisters a connection when its thread ends, even by panic.
struct ConnGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        let mut conns = lock(&self.shared.conns);
        conns.open.remove(&self.id);
        conns.threads -= 1;
        self.shared.conns_done.notify_all();
    }
}

/// Reads from the socket and records when bytes arrived.
struct Activity<'a> {
    stream: &'a UnixStream,
    shared: &'a Shared,
    activity: &'a AtomicU64,
}

impl Read for Activity<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.stream.read(buf)?;
        if n > 0 {
            self.activity.store(self.shared.now_ms(), Ordering::SeqCst);
        }
        Ok(n)
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &UnixListener, wake: &UnixStream, signals: &[Shutdown]) {
    let stopped = || signals.iter().any(Shutdown::is_triggered);
    while !stopped() {
        match sys::poll_readable([listener.as_fd(), wake.as_fd()], 1000) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("UAPI: poll failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let mut drain = [0u8; 64];
        while matches!((&*wake).read(&mut drain), Ok(n) if n > 0) {}
        if stopped() {
            break;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(false).is_ok() {
                        shared.admit(stream);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    tracing::warn!("UAPI: accept failed: {e}");
                    thread::sleep(Duration::from_millis(50));
                    break;
                }
            }
        }
    }
}
