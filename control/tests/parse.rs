//! The `set` parser and the request framing: what `wg` sends, and the errno wireguard-go gives to
//! each malformed input (captured from wireguard-go 0.0.20220316 over its socket).

mod common;

use common::{hex, pk, to_uapi};
use proptest::prelude::*;
use vpn_control::uapi::parse::parse_set;
use vpn_control::uapi::{
    AllowedIpChange, Errno, Limits, Next, ParseErrorKind, PeerRequest, PrivateKeyChange, Request, RequestReader, SetRequest,
};
use vpn_crypto::keys::from_hex;
use vpn_crypto::{PresharedKey, PrivateKey};

fn one(input: &[u8]) -> Next {
    RequestReader::new(input, Limits::default()).next_request().unwrap()
}

fn set_errno(body: &str) -> Result<SetRequest, Errno> {
    match one(format!("set=1\n{body}\n").as_bytes()) {
        Next::Request(Request::Set(r)) => Ok(r),
        Next::Rejected(e) => Err(e.errno()),
        other => panic!("unexpected {other:?}"),
    }
}

const PEER: &str = "3574dd87a81c136f63b9a9f31acd651fbc1c6ebb8c36b21678eed2a3cca95876";

/// The bytes `wg setconf` sent to wireguard-go for a two-peer configuration.
const WG_SETCONF: &str = "set=1\n\
private_key=80f4fd6c4777c73a65765787b46e9e21d8cab3c58e30062a7a1b059de45d374e\n\
listen_port=51820\n\
fwmark=4660\n\
replace_peers=true\n\
public_key=03f63a6a36eaeccdb05e4b275ac14213a5e2bc5b4bbe6fc9d483778f990dbc62\n\
preshared_key=08c4f3c5888e6a730054d9860aeedeac2f436dec854895d648e6cf2d374f0965\n\
endpoint=192.0.2.1:51820\n\
persistent_keepalive_interval=25\n\
replace_allowed_ips=true\n\
allowed_ip=10.0.0.0/24\n\
allowed_ip=192.95.5.65/27\n\
public_key=3574dd87a81c136f63b9a9f31acd651fbc1c6ebb8c36b21678eed2a3cca95876\n\
endpoint=[2001:db8::1]:12345\n\
replace_allowed_ips=true\n\
allowed_ip=fd00::1/64\n\
allowed_ip=10.0.1.1/32\n\
\n";

#[test]
fn parses_what_wg_setconf_sends() {
    let Next::Request(Request::Set(req)) = one(WG_SETCONF.as_bytes()) else { panic!() };
    let key = |h: &str| from_hex(h).unwrap();
    assert_eq!(
        req.private_key,
        Some(PrivateKeyChange::Set(PrivateKey::from_bytes(key("80f4fd6c4777c73a65765787b46e9e21d8cab3c58e30062a7a1b059de45d374e"))))
    );
    assert_eq!(req.listen_port, Some(51820));
    assert_eq!(req.fwmark, Some(4660));
    assert!(req.replace_peers);
    assert_eq!(req.peers.len(), 2);
    let a = &req.peers[0];
    assert_eq!(hex(&a.public_key), "03f63a6a36eaeccdb05e4b275ac14213a5e2bc5b4bbe6fc9d483778f990dbc62");
    assert_eq!(a.preshared_key, Some(PresharedKey::from_bytes(key("08c4f3c5888e6a730054d9860aeedeac2f436dec854895d648e6cf2d374f0965"))));
    assert_eq!(a.endpoint, Some("192.0.2.1:51820".parse().unwrap()));
    assert_eq!(a.persistent_keepalive, Some(25));
    assert!(a.replace_allowed_ips && !a.update_only && !a.remove);
    assert_eq!(
        a.allowed_ips,
        vec![AllowedIpChange::Add("10.0.0.0/24".parse().unwrap()), AllowedIpChange::Add("192.95.5.64/27".parse().unwrap())]
    );
    let b = &req.peers[1];
    assert_eq!(b.endpoint, Some("[2001:db8::1]:12345".parse().unwrap()));
    assert_eq!(b.preshared_key, None);
    assert_eq!(b.persistent_keepalive, None);
    assert_eq!(
        b.allowed_ips,
        vec![AllowedIpChange::Add("fd00::/64".parse().unwrap()), AllowedIpChange::Add("10.0.1.1/32".parse().unwrap())]
    );
}

/// Each body and the answer wireguard-go gave (`Ok` = errno=0).
#[test]
fn errnos_match_wireguard_go() {
    let p = |rest: &str| format!("public_key={PEER}\n{rest}");
    let cases: Vec<(String, Result<(), i64>)> = vec![
        ("foo=1\n".into(), Err(-22)),
        ("foo\n".into(), Err(-71)),
        ("listen_port=65536\n".into(), Err(-22)),
        ("listen_port=+5\n".into(), Err(-22)),
        ("listen_port=\n".into(), Err(-22)),
        ("listen_port=0051821\n".into(), Ok(())),
        ("listen_port = 51820\n".into(), Err(-22)),
        ("LISTEN_PORT=51820\n".into(), Err(-22)),
        ("listen_port=5=1\n".into(), Err(-22)),
        ("listen_port\0=1\n".into(), Err(-22)),
        ("listen_port=1\0\n".into(), Err(-22)),
        ("fwmark=0x10\n".into(), Err(-22)),
        ("fwmark=4294967296\n".into(), Err(-22)),
        ("fwmark=4294967295\n".into(), Ok(())),
        ("replace_peers=false\n".into(), Err(-22)),
        ("private_key=abcd\n".into(), Err(-22)),
        (format!("private_key={}\n", "AB".repeat(32)), Ok(())),
        (format!("private_key={}\n", "0".repeat(64)), Ok(())),
        ("public_key=zz\n".into(), Err(-22)),
        (p("foo=bar\n"), Err(-22)),
        (p("protocol_version=2\n"), Err(-22)),
        (p("protocol_version=1\n"), Ok(())),
        (p("endpoint=example.com:80\n"), Err(-22)),
        (p("endpoint=[fe80::1%1]:80\n"), Ok(())),
        (p("endpoint=[fe80::1%lo]:80\n"), Ok(())),
        (p("endpoint=[::ffff:1.2.3.4]:80\n"), Ok(())),
        (p("endpoint=1.2.3.4\n"), Err(-22)),
        (p("endpoint=::1:80\n"), Err(-22)),
        (p("endpoint=1.2.3.4:0\n"), Ok(())),
        (p("endpoint=1.2.3.4:080\n"), Ok(())),
        (p("allowed_ip=10.9.9.9\n"), Err(-22)),
        // wireguard-go built with Go 1.19 accepted these two; Go >= 1.22 (current wireguard-go
        // builds) refuses leading zeros and signs in the length, and so do we.
        (p("allowed_ip=10.9.9.0/024\n"), Err(-22)),
        (p("allowed_ip=10.9.9.0/+24\n"), Err(-22)),
        (p("allowed_ip=fe80::%lo/64\n"), Err(-22)),
        // Removal syntax: wireguard-go 0.0.20220316 did not know it (-22); 0.0.20250522 does.
        (p("allowed_ip=-10.0.1.1/32\n"), Ok(())),
        (p("persistent_keepalive_interval=65536\n"), Err(-22)),
        (p("preshared_key=00\n"), Err(-22)),
        (p("update_only=false\n"), Err(-22)),
        (p("remove=1\n"), Err(-22)),
        (p(&format!("private_key={}\n", "0".repeat(64))), Err(-22)),
        ("endpoint=1.2.3.4:5\n".into(), Err(-22)),
        // A bad value after remove=true is still refused (wireguard-go checks it on its dummy peer).
        (p("remove=true\nallowed_ip=bogus\n"), Err(-22)),
        (p("remove=true\nfoo\n"), Err(-71)),
    ];
    for (body, want) in cases {
        let got = set_errno(&body).map(|_| ()).map_err(|e| e.wire_value());
        assert_eq!(got, want, "body {body:?}");
    }
}

#[test]
fn framing_matches_wireguard_go() {
    // CRLF inside a set body is accepted (Go's line scanner drops the \r).
    assert!(matches!(one(b"set=1\nlisten_port=51820\r\n\r\n"), Next::Request(Request::Set(SetRequest { listen_port: Some(51820), .. }))));
    // But not on the operation line: wireguard-go closes the connection.
    assert!(RequestReader::new(&b"set=1\r\n\r\n"[..], Limits::default()).next_request().is_err());
    assert!(RequestReader::new(&b"get=1\x00\n\n"[..], Limits::default()).next_request().is_err());
    // get=1 then a stray byte: EINVAL, and the byte is consumed.
    let mut r = RequestReader::new(&b"get=1\nxget=1\n\n"[..], Limits::default());
    assert!(
        matches!(r.next_request().unwrap(), Next::Rejected(e) if e.kind == ParseErrorKind::TrailingGetData && e.errno() == Errno::EINVAL)
    );
    assert_eq!(r.next_request().unwrap(), Next::Request(Request::Get));
    assert_eq!(r.next_request().unwrap(), Next::End);
}

#[test]
fn error_positions_and_kinds() {
    let e = parse_set(format!("listen_port=1\npublic_key={PEER}\nendpoint=nope\n").as_bytes()).unwrap_err();
    assert_eq!(e.line, 4);
    assert_eq!(e.kind, ParseErrorKind::InvalidValue { key: "endpoint" });
    assert_eq!(e.to_string(), "UAPI request line 4: invalid value for endpoint");
    let e = parse_set(b"allowed_ip=10.0.0.0/8\n").unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::UnknownDeviceKey);
    let e = parse_set(format!("public_key={PEER}\nlisten_port=1\n").as_bytes()).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::UnknownPeerKey);
}

#[test]
fn block_rules() {
    // remove=true: the peer goes, later lines of its block are checked but not kept.
    let r = parse_set(format!("public_key={PEER}\nremove=true\nallowed_ip=10.0.0.0/8\nendpoint=1.2.3.4:5\n").as_bytes()).unwrap();
    assert!(r.peers[0].remove);
    assert!(r.peers[0].allowed_ips.is_empty() && r.peers[0].endpoint.is_none());
    // replace_allowed_ips in the middle drops the lines before it, as in wireguard-go.
    let r = parse_set(format!("public_key={PEER}\nallowed_ip=10.1.0.0/16\nreplace_allowed_ips=true\nallowed_ip=10.2.0.0/16\n").as_bytes())
        .unwrap();
    assert!(r.peers[0].replace_allowed_ips);
    assert_eq!(r.peers[0].allowed_ips, vec![AllowedIpChange::Add("10.2.0.0/16".parse().unwrap())]);
    // The same key twice makes two blocks; an all-zero PSK is kept as zeros (= none).
    let r =
        parse_set(format!("public_key={PEER}\npreshared_key={z}\npublic_key={PEER}\nupdate_only=true\n", z = "0".repeat(64)).as_bytes())
            .unwrap();
    assert_eq!(r.peers.len(), 2);
    assert_eq!(r.peers[0].preshared_key, Some(PresharedKey::default()));
    assert!(r.peers[1].update_only);
    // Last value wins for repeated scalar keys; an all-zero private key clears.
    let r = parse_set(format!("listen_port=1\nlisten_port=2\nprivate_key={}\n", "0".repeat(64)).as_bytes()).unwrap();
    assert_eq!(r.listen_port, Some(2));
    assert_eq!(r.private_key, Some(PrivateKeyChange::Clear));
}

#[test]
fn private_keys_are_clamped_and_never_printed() {
    let r = parse_set(format!("private_key={}\n", "ff".repeat(32)).as_bytes()).unwrap();
    let Some(PrivateKeyChange::Set(k)) = &r.private_key else { panic!() };
    assert_eq!(k.as_bytes()[0], 0xf8);
    assert_eq!(k.as_bytes()[31], 0x7f);
    let dbg = format!("{r:?}");
    assert!(!dbg.contains("ffff") && !dbg.contains("255"), "{dbg}");
}

fn arb_prefix() -> impl Strategy<Value = vpn_dataplane::IpPrefix> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| vpn_dataplane::IpPrefix::new(std::net::Ipv4Addr::from(a).into(), l).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| vpn_dataplane::IpPrefix::new(std::net::Ipv6Addr::from(a).into(), l).unwrap()),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = std::net::SocketAddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(a, p)| std::net::SocketAddr::from((std::net::Ipv4Addr::from(a), p))),
        (any::<u128>(), any::<u16>(), any::<u32>()).prop_map(|(a, p, s)| std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
            a.into(),
            p,
            0,
            s
        ))),
    ]
}

fn arb_peer() -> impl Strategy<Value = PeerRequest> {
    (
        0u32..50,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(any::<[u8; 32]>()),
        proptest::option::of(arb_endpoint()),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
        proptest::collection::vec((any::<bool>(), arb_prefix()), 0..6),
    )
        .prop_map(|(k, update_only, remove, psk, endpoint, ka, replace, ips)| PeerRequest {
            public_key: pk(k),
            update_only,
            remove,
            preshared_key: psk.map(PresharedKey::from_bytes),
            endpoint,
            persistent_keepalive: ka,
            replace_allowed_ips: replace,
            allowed_ips: ips.into_iter().map(|(add, p)| if add { AllowedIpChange::Add(p) } else { AllowedIpChange::Remove(p) }).collect(),
        })
}

fn arb_request() -> impl Strategy<Value = SetRequest> {
    (
        proptest::option::of(proptest::option::of(any::<[u8; 32]>())),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
        proptest::collection::vec(arb_peer(), 0..5),
    )
        .prop_map(|(key, listen_port, fwmark, replace_peers, peers)| SetRequest {
            private_key: key.map(|k| match k {
                Some(b) if b != [0; 32] => PrivateKeyChange::Set(PrivateKey::from_bytes(b)),
                _ => PrivateKeyChange::Clear,
            }),
            listen_port,
            fwmark,
            replace_peers,
            peers,
        })
}

proptest! {
    /// Whatever we can express, we read back identically.
    #[test]
    fn round_trip(req in arb_request()) {
        let text = to_uapi(&req);
        let parsed = match one(text.as_bytes()) {
            Next::Request(Request::Set(r)) => r,
            other => panic!("{other:?} for {text}"),
        };
        prop_assert_eq!(parsed, req);
    }

    /// Arbitrary bytes never panic and the reader always terminates.
    #[test]
    fn junk_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let mut r = RequestReader::new(&bytes[..], Limits { max_line: 64, max_request: 1024 });
        for _ in 0..2000 {
            match r.next_request() {
                Ok(Next::End) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// Plausible lines in random order never panic either.
    #[test]
    fn line_soup_never_panics(lines in proptest::collection::vec(prop_oneof![
        Just(format!("public_key={PEER}")),
        Just("remove=true".to_string()),
        Just("update_only=true".to_string()),
        Just("replace_allowed_ips=true".to_string()),
        Just("replace_peers=true".to_string()),
        "allowed_ip=-?[0-9a-f:.]{0,20}/[0-9]{0,4}",
        "endpoint=\\[?[0-9a-f:.%a-z]{0,30}\\]?:[0-9]{0,6}",
        "listen_port=[0-9+-]{0,7}",
        "[a-z_]{0,12}=[ -~]{0,10}",
        "[ -~]{0,20}",
    ], 0..30)) {
        let body = lines.join("\n") + "\n";
        let _ = parse_set(body.as_bytes());
    }
}
