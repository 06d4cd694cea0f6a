//! `get` replies compared byte for byte with replies captured from wireguard-go 0.0.20220316
//! (Debian 12), for the same configuration and counters.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{private_key, public_key};
use vpn_control::uapi::{errno_response, get_response, Errno};
use vpn_crypto::keys::from_hex;
use vpn_crypto::PresharedKey;
use vpn_dataplane::{InterfaceStatus, IpPrefix, PeerStatus};

fn prefixes(list: &[&str]) -> Vec<IpPrefix> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

fn peer(key: &str, psk: Option<&str>, endpoint: Option<&str>, tx: u64, keepalive: u16, ips: &[&str]) -> PeerStatus {
    PeerStatus {
        public_key: public_key(key),
        preshared_key: psk.map(|h| PresharedKey::from_bytes(from_hex(h).unwrap())).unwrap_or_default(),
        endpoint: endpoint.map(|e| e.parse::<SocketAddr>().unwrap()),
        last_handshake: None,
        rx_bytes: 0,
        tx_bytes: tx,
        persistent_keepalive: keepalive,
        allowed_ips: prefixes(ips),
    }
}

/// Captured after this request (the second peer's prefixes were sent as 192.95.5.65/27 and
/// fd00::1/64; wireguard-go printed the peers in Go map order, reproduced here):
///
/// ```text
/// set=1
/// private_key=<k1> listen_port=51820 fwmark=4660 replace_peers=true
/// public_key=<p2> preshared_key=<psk> endpoint=192.0.2.1:51820 persistent_keepalive_interval=25
///   allowed_ip=10.0.0.0/24 allowed_ip=192.95.5.65/27
/// public_key=<p3> endpoint=[2001:db8::1]:12345 allowed_ip=fd00::1/64 allowed_ip=10.0.1.1/32
///   allowed_ip=::ffff:10.0.0.0/104 allowed_ip=2001:0db8:0:0:1:0:0:1/128
/// public_key=<p4>
/// ```
const CAPTURED_THREE_PEERS: &str = "\
private_key=80f4fd6c4777c73a65765787b46e9e21d8cab3c58e30062a7a1b059de45d374e\n\
listen_port=51820\n\
fwmark=4660\n\
public_key=a985c4693bf3ad8bd5f6491cc1529b882cb2dc8c9d3abc7f17377f2e1c575969\n\
preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n\
protocol_version=1\n\
last_handshake_time_sec=0\n\
last_handshake_time_nsec=0\n\
tx_bytes=0\n\
rx_bytes=0\n\
persistent_keepalive_interval=0\n\
public_key=03f63a6a36eaeccdb05e4b275ac14213a5e2bc5b4bbe6fc9d483778f990dbc62\n\
preshared_key=08c4f3c5888e6a730054d9860aeedeac2f436dec854895d648e6cf2d374f0965\n\
protocol_version=1\n\
endpoint=192.0.2.1:51820\n\
last_handshake_time_sec=0\n\
last_handshake_time_nsec=0\n\
tx_bytes=148\n\
rx_bytes=0\n\
persistent_keepalive_interval=25\n\
allowed_ip=10.0.0.0/24\n\
allowed_ip=192.95.5.64/27\n\
public_key=3574dd87a81c136f63b9a9f31acd651fbc1c6ebb8c36b21678eed2a3cca95876\n\
preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n\
protocol_version=1\n\
endpoint=[2001:db8::1]:12345\n\
last_handshake_time_sec=0\n\
last_handshake_time_nsec=0\n\
tx_bytes=148\n\
rx_bytes=0\n\
persistent_keepalive_interval=0\n\
allowed_ip=fd00::/64\n\
allowed_ip=10.0.1.1/32\n\
allowed_ip=::ffff:10.0.0.0/104\n\
allowed_ip=2001:db8::1:0:0:1/128\n\
errno=0\n\
\n";

#[test]
fn three_peers_match_wireguard_go() {
    let status = InterfaceStatus {
        private_key: Some(private_key("80f4fd6c4777c73a65765787b46e9e21d8cab3c58e30062a7a1b059de45d374e")),
        listen_port: 51820,
        fwmark: 4660,
        peers: vec![
            peer("a985c4693bf3ad8bd5f6491cc1529b882cb2dc8c9d3abc7f17377f2e1c575969", None, None, 0, 0, &[]),
            peer(
                "03f63a6a36eaeccdb05e4b275ac14213a5e2bc5b4bbe6fc9d483778f990dbc62",
                Some("08c4f3c5888e6a730054d9860aeedeac2f436dec854895d648e6cf2d374f0965"),
                Some("192.0.2.1:51820"),
                148,
                25,
                &["10.0.0.0/24", "192.95.5.65/27"],
            ),
            peer(
                "3574dd87a81c136f63b9a9f31acd651fbc1c6ebb8c36b21678eed2a3cca95876",
                None,
                Some("[2001:db8::1]:12345"),
                148,
                0,
                &["fd00::1/64", "10.0.1.1/32", "::ffff:10.0.0.0/104", "2001:0db8:0:0:1:0:0:1/128"],
            ),
        ],
    };
    let got = get_response(&status);
    assert_eq!(String::from_utf8_lossy(&got), CAPTURED_THREE_PEERS);
}

/// Captured from a wireguard-go interface right after a handshake with a second wireguard-go
/// over 127.0.0.1 (persistent keepalive 1 s).
const CAPTURED_AFTER_HANDSHAKE: &str = "\
private_key=886ff6808d1e797571d45074a0ade9330696c6ae494fec76c5f8367776d4ad50\n\
listen_port=51801\n\
public_key=217d8794aa909fc84495ac8d446896ddba93274c1417d467c25747818f0b6e2a\n\
preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n\
protocol_version=1\n\
endpoint=127.0.0.1:51802\n\
last_handshake_time_sec=1795894561\n\
last_handshake_time_nsec=914288066\n\
tx_bytes=584\n\
rx_bytes=92\n\
persistent_keepalive_interval=1\n\
allowed_ip=10.77.0.2/32\n\
errno=0\n\
\n";

#[test]
fn handshake_counters_match_wireguard_go() {
    let mut p =
        peer("217d8794aa909fc84495ac8d446896ddba93274c1417d467c25747818f0b6e2a", None, Some("127.0.0.1:51802"), 584, 1, &["10.77.0.2/32"]);
    p.last_handshake = Some(Duration::new(1_795_894_561, 914_288_066));
    p.rx_bytes = 92;
    let status = InterfaceStatus {
        private_key: Some(private_key("886ff6808d1e797571d45074a0ade9330696c6ae494fec76c5f8367776d4ad50")),
        listen_port: 51801,
        fwmark: 0,
        peers: vec![p],
    };
    assert_eq!(String::from_utf8_lossy(&get_response(&status)), CAPTURED_AFTER_HANDSHAKE);
}

/// wireguard-go with nothing configured but a bound port answers only the port.
#[test]
fn empty_interface_matches_wireguard_go() {
    let status = InterfaceStatus { private_key: None, listen_port: 41837, fwmark: 0, peers: vec![] };
    assert_eq!(&get_response(&status)[..], b"listen_port=41837\nerrno=0\n\n");
    // No port (not bound): wireguard-go omits the line.
    let status = InterfaceStatus { listen_port: 0, ..status };
    assert_eq!(&get_response(&status)[..], b"errno=0\n\n");
}

#[test]
fn errno_replies() {
    assert_eq!(errno_response(Ok(())), b"errno=0\n\n");
    assert_eq!(errno_response(Err(Errno::EINVAL)), b"errno=-22\n\n");
    assert_eq!(errno_response(Err(Errno::EPROTO)), b"errno=-71\n\n");
    assert_eq!(errno_response(Err(Errno::EIO)), b"errno=-5\n\n");
    assert_eq!(errno_response(Err(Errno::EADDRINUSE)), b"errno=-98\n\n");
}

#[test]
fn scoped_ipv6_endpoint_uses_numeric_scope() {
    let status = InterfaceStatus {
        private_key: None,
        listen_port: 1,
        fwmark: 0,
        peers: vec![peer("217d8794aa909fc84495ac8d446896ddba93274c1417d467c25747818f0b6e2a", None, Some("[fe80::1%3]:51820"), 0, 0, &[])],
    };
    let text = String::from_utf8(get_response(&status).to_vec()).unwrap();
    assert!(text.contains("\nendpoint=[fe80::1%3]:51820\n"), "{text}");
}
