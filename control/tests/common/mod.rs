//! Shared test helpers: an in-memory [`Backend`], temporary directories and a tiny UAPI client.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod store;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use vpn_control::uapi::{Backend, Errno};
use vpn_crypto::keys::from_hex;
use vpn_crypto::{PrivateKey, PublicKey};
use vpn_dataplane::{InterfaceConfig, InterfaceStatus, PeerStatus};

/// The port the fake engine "picks" when the configuration says 0.
pub const PICKED_PORT: u16 = 43210;

/// An engine that keeps the configuration in memory.
#[derive(Default)]
pub struct MemBackend {
    pub config: Mutex<InterfaceConfig>,
    /// `apply` fails with EADDRINUSE for this listen port.
    pub busy_port: Mutex<Option<u16>>,
    /// Successful `apply` calls.
    pub applies: AtomicUsize,
    /// `apply` calls started.
    pub entered: AtomicUsize,
    /// How long `apply` takes.
    pub apply_delay: Mutex<Duration>,
}

impl MemBackend {
    pub fn new(config: InterfaceConfig) -> Self {
        Self { config: Mutex::new(config), ..Self::default() }
    }

    pub fn current(&self) -> InterfaceConfig {
        self.config.lock().unwrap().clone()
    }
}

impl Backend for MemBackend {
    fn status(&self) -> InterfaceStatus {
        let c = self.current();
        InterfaceStatus {
            private_key: c.private_key.clone(),
            listen_port: if c.listen_port == 0 { PICKED_PORT } else { c.listen_port },
            fwmark: c.fwmark,
            peers: c
                .peers
                .iter()
                .map(|p| PeerStatus {
                    public_key: p.public_key,
                    preshared_key: p.preshared_key.clone(),
                    endpoint: p.endpoint,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    persistent_keepalive: p.persistent_keepalive,
                    allowed_ips: p.allowed_ips.clone(),
                })
                .collect(),
        }
    }

    fn config(&self) -> InterfaceConfig {
        self.current()
    }

    fn apply(&self, new: InterfaceConfig, _recreated: &[vpn_crypto::PublicKey]) -> Result<(), Errno> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(*self.apply_delay.lock().unwrap());
        if *self.busy_port.lock().unwrap() == Some(new.listen_port) && new.listen_port != 0 {
            return Err(Errno::EADDRINUSE);
        }
        *self.config.lock().unwrap() = new;
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!("vpnc-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `input`, closes the writing half, and returns everything until the server closes.
pub fn exchange(path: &Path, input: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // The server may close before reading everything (hostile inputs); that is fine.
    let _ = s.write_all(input);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Reads one reply (up to and including `errno=N\n\n`) from a live connection.
pub fn read_reply(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => return out,
            Ok(_) => out.push(byte[0]),
            Err(e) => panic!("reading reply: {e}"),
        }
        if out.ends_with(b"\n\n") {
            let body = &out[..out.len() - 2];
            let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
            if last.starts_with(b"errno=") {
                return out;
            }
        }
    }
}

pub fn private_key(hex: &str) -> PrivateKey {
    PrivateKey::from_bytes(from_hex(hex).unwrap())
}

pub fn public_key(hex: &str) -> PublicKey {
    PublicKey(from_hex(hex).unwrap())
}

/// A distinct public key for a small number.
pub fn pk(n: u32) -> PublicKey {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[31] = 0x40;
    PublicKey(b)
}

pub fn hex(k: &PublicKey) -> String {
    vpn_crypto::keys::to_hex(k.as_bytes())
}

/// Writes a request as `wg` would (with `remove=true` last in its block, so that a parser that
/// ignores lines after it still sees every field).
pub fn to_uapi(req: &vpn_control::uapi::SetRequest) -> String {
    use vpn_control::uapi::{AllowedIpChange, PrivateKeyChange};
    use vpn_crypto::keys::to_hex;
    let mut s = String::from("set=1\n");
    match &req.private_key {
        Some(PrivateKeyChange::Set(k)) => s += &format!("private_key={}\n", to_hex(k.as_bytes())),
        Some(PrivateKeyChange::Clear) => s += &format!("private_key={}\n", "0".repeat(64)),
        None => {}
    }
    if let Some(p) = req.listen_port {
        s += &format!("listen_port={p}\n");
    }
    if let Some(m) = req.fwmark {
        s += &format!("fwmark={m}\n");
    }
    if req.replace_peers {
        s += "replace_peers=true\n";
    }
    for p in &req.peers {
        s += &format!("public_key={}\n", hex(&p.public_key));
        if p.update_only {
            s += "update_only=true\n";
        }
        if let Some(k) = &p.preshared_key {
            s += &format!("preshared_key={}\n", to_hex(k.as_bytes()));
        }
        if let Some(e) = p.endpoint {
            s += &format!("endpoint={e}\n");
        }
        if let Some(k) = p.persistent_keepalive {
            s += &format!("persistent_keepalive_interval={k}\n");
        }
        if p.replace_allowed_ips {
            s += "replace_allowed_ips=true\n";
        }
        for c in &p.allowed_ips {
            match c {
                AllowedIpChange::Add(x) => s += &format!("allowed_ip={x}\n"),
                AllowedIpChange::Remove(x) => s += &format!("allowed_ip=-{x}\n"),
            }
        }
        s += "protocol_version=1\n";
        if p.remove {
            s += "remove=true\n";
        }
    }
    s + "\n"
}
