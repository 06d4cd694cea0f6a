//! The UAPI server over a real Unix socket in a temporary directory, with an in-memory backend.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{exchange, hex, pk, read_reply, MemBackend, TempDir, PICKED_PORT};
use vpn_control::uapi::server::ServerLimits;
use vpn_control::uapi::{Backend, ServerHandle, Shutdown, UapiError, UapiServer};
use vpn_dataplane::InterfaceConfig;

fn start(dir: &TempDir, backend: &Arc<MemBackend>) -> ServerHandle {
    start_with(dir, backend, ServerLimits::default())
}

fn start_with(dir: &TempDir, backend: &Arc<MemBackend>, limits: ServerLimits) -> ServerHandle {
    let server = UapiServer::bind_path(dir.path().join("wg0.sock")).unwrap().with_limits(limits);
    server.serve(Arc::clone(backend) as Arc<dyn Backend>, Shutdown::new()).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn get_and_set() {
    let dir = TempDir::new("getset");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    assert_eq!(text(&exchange(h.path(), b"get=1\n\n")), format!("listen_port={PICKED_PORT}\nerrno=0\n\n"));
    let body = format!("set=1\nlisten_port=51820\npublic_key={}\nendpoint=192.0.2.1:51820\nallowed_ip=10.0.0.1/24\n\n", hex(&pk(1)));
    assert_eq!(text(&exchange(h.path(), body.as_bytes())), "errno=0\n\n");
    let want = format!(
        "listen_port=51820\npublic_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=192.0.2.1:51820\n\
         last_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n\
         allowed_ip=10.0.0.0/24\nerrno=0\n\n",
        hex(&pk(1)),
        "0".repeat(64)
    );
    assert_eq!(text(&exchange(h.path(), b"get=1\n\n")), want);
}

#[test]
fn several_requests_on_one_connection() {
    let dir = TempDir::new("multi");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    // All in one write, including a bad request in the middle: each gets its answer, in order.
    let input = format!("set=1\nfwmark=7\n\nget=1\n\nset=1\nbogus\n\nset=1\npublic_key={}\n\nget=1\n\n", hex(&pk(9)));
    let out = text(&exchange(h.path(), input.as_bytes()));
    let replies: Vec<&str> = out.split_inclusive("\n\n").collect();
    assert_eq!(replies.len(), 5, "{out}");
    assert_eq!(replies[0], "errno=0\n\n");
    assert_eq!(replies[1], format!("listen_port={PICKED_PORT}\nfwmark=7\nerrno=0\n\n"));
    assert_eq!(replies[2], "errno=-71\n\n");
    assert_eq!(replies[3], "errno=0\n\n");
    assert!(replies[4].contains(&format!("public_key={}\n", hex(&pk(9)))));
    // And interleaved, waiting for each answer.
    let mut s = UnixStream::connect(h.path()).unwrap();
    for port in [1000u16, 1001, 1002] {
        s.write_all(format!("set=1\nlisten_port={port}\n\n").as_bytes()).unwrap();
        assert_eq!(text(&read_reply(&mut s)), "errno=0\n\n");
        s.write_all(b"get=1\n\n").unwrap();
        assert!(text(&read_reply(&mut s)).starts_with(&format!("listen_port={port}\n")));
    }
}

#[test]
fn failing_set_changes_nothing() {
    let dir = TempDir::new("atomic");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    let setup = format!(
        "set=1\nlisten_port=1111\npublic_key={}\nallowed_ip=10.1.0.0/16\npublic_key={}\nallowed_ip=10.2.0.0/16\n\n",
        hex(&pk(1)),
        hex(&pk(2))
    );
    assert_eq!(text(&exchange(h.path(), setup.as_bytes())), "errno=0\n\n");
    let before = backend.current();
    let applies = backend.applies.load(Ordering::SeqCst);

    // The third peer is invalid: nothing of the first two blocks (nor replace_peers) happens.
    let bad = format!(
        "set=1\nlisten_port=2222\nreplace_peers=true\npublic_key={}\nallowed_ip=10.9.0.0/16\npublic_key={}\nremove=true\npublic_key={}\nendpoint=999.1.1.1:5\n\n",
        hex(&pk(3)),
        hex(&pk(1)),
        hex(&pk(4))
    );
    assert_eq!(text(&exchange(h.path(), bad.as_bytes())), "errno=-22\n\n");
    assert_eq!(backend.current(), before);
    assert_eq!(backend.applies.load(Ordering::SeqCst), applies, "the backend was not even asked");

    // The backend refusing (port in use) also leaves everything as it was, and the errno reaches the client.
    *backend.busy_port.lock().unwrap() = Some(3333);
    let busy = format!("set=1\nlisten_port=3333\npublic_key={}\nremove=true\n\n", hex(&pk(1)));
    assert_eq!(text(&exchange(h.path(), busy.as_bytes())), "errno=-98\n\n");
    assert_eq!(backend.current(), before);
}

#[test]
fn hostile_inputs() {
    let dir = TempDir::new("hostile");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    let path = h.path().to_path_buf();

    // A 1 MiB line inside a set: EIO, then the connection is closed.
    let mut big = b"set=1\nlisten_port=".to_vec();
    big.extend(std::iter::repeat_n(b'1', 1 << 20));
    big.extend(b"\n\n");
    assert_eq!(text(&exchange(&path, &big)), "errno=-5\n\n");
    // A 1 MiB operation line: closed without a reply (wireguard-go: unknown operation).
    assert_eq!(text(&exchange(&path, &vec![b'g'; 1 << 20])), "");
    // NUL bytes.
    assert_eq!(text(&exchange(&path, b"set=1\nlisten_port\0=1\n\n")), "errno=-22\n\n");
    assert_eq!(text(&exchange(&path, b"get=1\0\n\n")), "");
    assert_eq!(text(&exchange(&path, b"\0\0\0\0")), "");
    // CRLF: fine inside a set, not on the operation line.
    assert_eq!(text(&exchange(&path, b"set=1\nlisten_port=4444\r\n\r\n")), "errno=0\n\n");
    assert_eq!(text(&exchange(&path, b"set=1\r\nlisten_port=4444\r\n\r\n")), "");
    // Junk, an empty connection, a connection that stops mid-request.
    assert_eq!(text(&exchange(&path, b"hello world\n\n")), "");
    assert_eq!(text(&exchange(&path, b"")), "");
    assert_eq!(text(&exchange(&path, b"set=1\nlisten_port=5555\n")), "errno=-5\n\n");
    assert_eq!(backend.current().listen_port, 4444, "a truncated set is not applied");
    // Invalid UTF-8 in values and keys.
    assert_eq!(text(&exchange(&path, b"set=1\nlisten_port=\xff\xfe\n\n")), "errno=-22\n\n");
    assert_eq!(text(&exchange(&path, b"set=1\n\xff=1\n\n")), "errno=-22\n\n");
    // Random bytes: whatever happens, the server keeps serving.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        let junk: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut input = b"set=1\n".to_vec();
        input.extend(&junk);
        let _ = exchange(&path, &input);
    }
    assert!(text(&exchange(&path, b"get=1\n\n")).ends_with("errno=0\n\n"));
}

#[test]
fn idle_connections_cannot_starve_clients() {
    let dir = TempDir::new("idle");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    let idle: Vec<UnixStream> = (0..200).map(|_| UnixStream::connect(h.path()).unwrap()).collect();
    // Some of them have started a request and stalled.
    for s in idle.iter().take(20) {
        (&*s).write_all(b"set=1\nlisten_port=1\n").unwrap();
    }
    let started = Instant::now();
    let out = exchange(h.path(), b"get=1\n\n");
    assert!(text(&out).ends_with("errno=0\n\n"), "{}", text(&out));
    eprintln!("answered after {:?} with 200 idle connections", started.elapsed());
    // The stalled requests were never applied.
    assert_eq!(backend.current().listen_port, 0);
    drop(idle);
    // The server is still healthy afterwards.
    assert!(text(&exchange(h.path(), b"get=1\n\n")).ends_with("errno=0\n\n"));
}

#[test]
fn idle_connections_time_out() {
    let dir = TempDir::new("timeout");
    let backend = Arc::new(MemBackend::default());
    let limits = ServerLimits { idle_timeout: Duration::from_millis(200), ..ServerLimits::default() };
    let h = start_with(&dir, &backend, limits);
    let mut s = UnixStream::connect(h.path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"set=1\nlisten_port=7\n").unwrap();
    let mut buf = Vec::new();
    // The server closes the stalled connection; nothing was applied, no reply was sent.
    assert_eq!(s.read_to_end(&mut buf).unwrap(), 0);
    assert_eq!(backend.current().listen_port, 0);
}

#[test]
fn connection_cap_evicts_the_quietest_idle_connection() {
    // With a cap of 2, a third client still gets served: the quietest idle one makes room.
    let dir = TempDir::new("cap");
    let backend = Arc::new(MemBackend::default());
    let limits = ServerLimits { max_connections: 2, ..ServerLimits::default() };
    let h = start_with(&dir, &backend, limits);
    // Both are admitted and answered once, `a` before `b`.
    let mut a = UnixStream::connect(h.path()).unwrap();
    a.write_all(b"get=1\n\n").unwrap();
    read_reply(&mut a);
    std::thread::sleep(Duration::from_millis(20));
    let mut b = UnixStream::connect(h.path()).unwrap();
    b.write_all(b"get=1\n\n").unwrap();
    read_reply(&mut b);
    assert!(text(&exchange(h.path(), b"get=1\n\n")).ends_with("errno=0\n\n"));
    // `a` was the quietest: it has been closed.
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(a.read(&mut buf).unwrap_or(0), 0);
    // `b` was kept and still works.
    b.write_all(b"get=1\n\n").unwrap();
    assert!(text(&read_reply(&mut b)).ends_with("errno=0\n\n"));
}

#[test]
fn connection_cap_refuses_when_all_are_busy() {
    let dir = TempDir::new("capbusy");
    let backend = Arc::new(MemBackend::default());
    *backend.apply_delay.lock().unwrap() = Duration::from_millis(500);
    let limits = ServerLimits { max_connections: 1, ..ServerLimits::default() };
    let h = start_with(&dir, &backend, limits);
    let path = h.path().to_path_buf();
    let slow = std::thread::spawn(move || exchange(&path, b"set=1\nlisten_port=9\n\n"));
    while backend.entered.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The only slot is busy applying: the newcomer is closed at once, without an answer.
    assert_eq!(text(&exchange(h.path(), b"get=1\n\n")), "");
    assert_eq!(text(&slow.join().unwrap()), "errno=0\n\n");
    assert!(text(&exchange(h.path(), b"get=1\n\n")).starts_with("listen_port=9\n"));
}

#[test]
fn concurrent_sets_are_serialized() {
    let dir = TempDir::new("concurrent");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    let path = h.path().to_path_buf();
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..10u32 {
                    let body = format!("set=1\npublic_key={}\nallowed_ip=10.{t}.{i}.0/24\n\n", hex(&pk(t * 100 + i)));
                    assert_eq!(text(&exchange(&path, body.as_bytes())), "errno=0\n\n");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let cfg = backend.current();
    assert_eq!(cfg.peers.len(), 80, "no set was lost to a race");
}

#[test]
fn ten_thousand_peer_setconf_fits() {
    let dir = TempDir::new("big");
    let backend = Arc::new(MemBackend::default());
    let h = start(&dir, &backend);
    let mut body = String::from("set=1\nreplace_peers=true\n");
    for n in 0..10_000u32 {
        body += &format!(
            "public_key={}\npreshared_key={}\nendpoint=[2001:db8::{:x}]:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=10.{}.{}.0/24\nallowed_ip=fd00:{:x}::/64\n",
            hex(&pk(n)),
            "ab".repeat(32),
            n,
            n / 256,
            n % 256,
            n
        );
    }
    body += "\n";
    assert!(body.len() > 2 << 20, "a realistic size: {} bytes", body.len());
    let started = Instant::now();
    assert_eq!(text(&exchange(h.path(), body.as_bytes())), "errno=0\n\n");
    eprintln!("10,000 peers ({} bytes) applied in {:?}", body.len(), started.elapsed());
    assert_eq!(backend.current().peers.len(), 10_000);
    let out = exchange(h.path(), b"get=1\n\n");
    assert_eq!(out.windows(11).filter(|w| w == b"public_key=").count(), 10_000);
}

#[test]
fn socket_file_lifecycle() {
    let dir = TempDir::new("life");
    let path = dir.path().join("wg0.sock");
    let backend = Arc::new(MemBackend::new(InterfaceConfig::default()));

    // A stale socket (nobody listening) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let server = UapiServer::bind_path(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    // A live one is refused, with a message that says so.
    match UapiServer::bind_path(&path) {
        Err(e @ UapiError::AlreadyRunning { .. }) => assert!(e.to_string().contains("already running"), "{e}"),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    // Something else in the way is refused too.
    let file = dir.path().join("file.sock");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(UapiServer::bind_path(&file), Err(UapiError::NotASocket { .. })));

    let h = server.serve(backend.clone() as Arc<dyn Backend>, Shutdown::new()).unwrap();
    assert!(!h.socket_removed());
    // Deleting the file is visible to the daemon.
    std::fs::remove_file(&path).unwrap();
    assert!(h.socket_removed());
    // A new instance may take the path meanwhile; stopping the old one must not remove its socket.
    let other = UapiServer::bind_path(&path).unwrap();
    assert!(h.socket_removed());
    h.shutdown();
    assert!(path.exists(), "the new instance's socket survives the old one's shutdown");
    drop(other);
    assert!(!path.exists(), "an unserved server removes its socket on drop");

    // Shutdown through the token removes the socket and stops accepting.
    let token = Shutdown::new();
    let h = UapiServer::bind_path(&path).unwrap().serve(backend as Arc<dyn Backend>, token.clone()).unwrap();
    let mut open = UnixStream::connect(&path).unwrap();
    token.trigger();
    h.join();
    assert!(!path.exists());
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    assert_eq!(open.read_to_end(&mut buf).unwrap_or(0), 0, "open connections are closed");
}

#[test]
fn interface_names_are_validated() {
    for bad in ["", ".", "..", "a/b", "sixteen-chars-xx", "has space", "a:b", "nul\0"] {
        assert!(matches!(UapiServer::bind(bad), Err(UapiError::InvalidName(_))), "{bad:?}");
    }
}
