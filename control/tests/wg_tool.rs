//! The stock `wg` tool (wireguard-tools) driving our UAPI server exactly as it drives
//! wireguard-go: `setconf`, `showconf`, `show`, `set`, `addconf`, `syncconf`, and an error.
//!
//! `wg` only talks to `/var/run/wireguard/NAME.sock`, so this test binds a unique interface name
//! there (it needs the right to create that socket, normally root) and removes it at the end.
//! It is skipped, with a message, only when `wg` is not installed.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use common::{MemBackend, TempDir};
use vpn_control::uapi::{Backend, Shutdown, UapiServer};
use vpn_crypto::{PresharedKey, PrivateKey};

fn wg(args: &[&str]) -> Output {
    Command::new("wg").args(args).env("WG_HIDE_KEYS", "never").output().expect("running wg")
}

fn ok(args: &[&str]) -> String {
    let out = wg(args);
    assert!(out.status.success(), "wg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wg_tool_drives_the_server() {
    if Command::new("wg").arg("--version").output().is_err() {
        eprintln!("SKIPPED wg_tool_drives_the_server: the `wg` binary (wireguard-tools) is not installed");
        return;
    }
    let name = format!("vpnt{}", std::process::id() % 1_000_000);
    let backend = Arc::new(MemBackend::default());
    let server = UapiServer::bind(&name).unwrap_or_else(|e| panic!("binding /var/run/wireguard/{name}.sock (needs root): {e}"));
    let socket = server.path().to_path_buf();
    let handle = server.serve(Arc::clone(&backend) as Arc<dyn Backend>, Shutdown::new()).unwrap();

    let dir = TempDir::new("wg");
    let own = PrivateKey::from_bytes([7; 32]);
    let (a, b, c) = (
        PrivateKey::from_bytes([1; 32]).public_key(),
        PrivateKey::from_bytes([2; 32]).public_key(),
        PrivateKey::from_bytes([3; 32]).public_key(),
    );
    let psk = PresharedKey::from_bytes([9; 32]);
    let conf = dir.path().join("wg.conf");
    std::fs::write(
        &conf,
        format!(
            "[Interface]\nPrivateKey = {own}\nListenPort = 51820\nFwMark = 0x1234\n\n\
             [Peer]\nPublicKey = {a}\nPresharedKey = {psk}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 10.0.0.0/24, 192.95.5.64/27\nPersistentKeepalive = 25\n\n\
             [Peer]\nPublicKey = {b}\nEndpoint = [2001:db8::1]:12345\nAllowedIPs = fd00::/64, 10.0.1.1/32\n",
            own = own.to_base64(),
            psk = psk.to_base64()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();

    ok(&["setconf", &name, conf_s]);
    let showconf = ok(&["showconf", &name]);
    assert_eq!(
        showconf,
        format!(
            "[Interface]\nListenPort = 51820\nFwMark = 0x1234\nPrivateKey = {own}\n\n\
             [Peer]\nPublicKey = {a}\nPresharedKey = {psk}\nAllowedIPs = 10.0.0.0/24, 192.95.5.64/27\nEndpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n\n\
             [Peer]\nPublicKey = {b}\nAllowedIPs = fd00::/64, 10.0.1.1/32\nEndpoint = [2001:db8::1]:12345\n",
            own = own.to_base64(),
            psk = psk.to_base64()
        )
    );
    assert!(ok(&["show", "interfaces"]).split_whitespace().any(|i| i == name));
    assert_eq!(ok(&["show", &name, "public-key"]).trim(), own.public_key().to_base64());
    assert_eq!(ok(&["show", &name, "private-key"]).trim(), own.to_base64());
    assert_eq!(ok(&["show", &name, "listen-port"]).trim(), "51820");
    let dump = ok(&["show", &name, "dump"]);
    let peer_line = dump.lines().find(|l| l.starts_with(&a.to_base64())).unwrap();
    assert_eq!(
        peer_line.split('\t').collect::<Vec<_>>(),
        vec![a.to_base64().as_str(), psk.to_base64().as_str(), "192.0.2.1:51820", "10.0.0.0/24,192.95.5.64/27", "0", "0", "0", "25"]
    );

    // wg set: remove a peer, add one with every option, change interface settings.
    let psk_file = dir.path().join("psk");
    std::fs::write(&psk_file, format!("{}\n", psk.to_base64())).unwrap();
    ok(&["set", &name, "peer", &b.to_base64(), "remove"]);
    ok(&[
        "set",
        &name,
        "listen-port",
        "51821",
        "fwmark",
        "off",
        "peer",
        &c.to_base64(),
        "allowed-ips",
        "10.0.0.0/24,10.3.0.0/16",
        "endpoint",
        "127.0.0.1:9",
        "persistent-keepalive",
        "off",
        "preshared-key",
        psk_file.to_str().unwrap(),
    ]);
    let cfg = backend.current();
    assert_eq!((cfg.listen_port, cfg.fwmark), (51821, 0));
    assert_eq!(cfg.peers.iter().map(|p| p.public_key).collect::<Vec<_>>(), vec![a, c]);
    // 10.0.0.0/24 moved from a to c.
    assert_eq!(cfg.peers[0].allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(), ["192.95.5.64/27"]);

    // addconf adds b back; syncconf makes it exactly the file again (c removed).
    ok(&["addconf", &name, conf_s]);
    assert_eq!(backend.current().peers.len(), 3);
    ok(&["syncconf", &name, conf_s]);
    assert_eq!(ok(&["showconf", &name]), showconf);

    // An error from the engine reaches `wg` as its errno.
    *backend.busy_port.lock().unwrap() = Some(40000);
    let out = wg(&["set", &name, "listen-port", "40000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Address already in use"), "{err}");
    assert_eq!(backend.current().listen_port, 51820);

    handle.shutdown();
    assert!(!Path::new(&socket).exists(), "the socket is removed on shutdown");
}
