//! A device's `wg-quick` configuration, its terminal QR code and its PNG.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;

use vpn_control::client_config::{
    endpoint_with_port, qr_png, qr_terminal, ClientConfig, PNG_EC_LEVEL, PNG_QUIET_ZONE, PNG_SCALE, TERMINAL_EC_LEVEL, TERMINAL_QUIET_ZONE,
};
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::IpPrefix;

fn prefixes(v: &[&str]) -> Vec<IpPrefix> {
    v.iter().map(|s| s.parse().unwrap()).collect()
}

struct Keys {
    private: PrivateKey,
    psk: PresharedKey,
    dns: Vec<IpAddr>,
    allowed: Vec<IpPrefix>,
}

fn keys() -> Keys {
    Keys {
        private: PrivateKey::from_bytes([1; 32]),
        psk: PresharedKey::from_bytes([3; 32]),
        dns: vec!["1.1.1.1".parse().unwrap(), "2606:4700:4700::1111".parse().unwrap()],
        allowed: prefixes(&["0.0.0.0/0", "::/0"]),
    }
}

fn config<'a>(k: &'a Keys, endpoint: String) -> ClientConfig<'a> {
    ClientConfig {
        private_key: &k.private,
        addresses: prefixes(&["10.8.0.2/32", "fd11:2233:4455::2/128"]),
        dns: &k.dns,
        mtu: 1420,
        server_public_key: PublicKey([2; 32]),
        preshared_key: &k.psk,
        endpoint,
        allowed_ips: &k.allowed,
        persistent_keepalive: 25,
    }
}

#[test]
fn renders_wg_quick_format() {
    let k = keys();
    let c = config(&k, endpoint_with_port("vpn.example.com", 51820));
    assert_eq!(
        c.render().as_str(),
        "[Interface]\n\
         PrivateKey = AAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAUE=\n\
         Address = 10.8.0.2/32, fd11:2233:4455::2/128\n\
         DNS = 1.1.1.1, 2606:4700:4700::1111\n\
         MTU = 1420\n\
         \n\
         [Peer]\n\
         PublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\
         PresharedKey = AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n\
         Endpoint = vpn.example.com:51820\n\
         AllowedIPs = 0.0.0.0/0, ::/0\n\
         PersistentKeepalive = 25\n"
    );
    // The keys do not leak through Debug.
    let debug = format!("{c:?}");
    assert!(!debug.contains("AAEBAQEB") && !debug.contains("AwMDAwMD"), "{debug}");
}

#[test]
fn optional_lines_are_left_out() {
    let k = Keys { dns: vec![], psk: PresharedKey::default(), ..keys() };
    let mut c = config(&k, endpoint_with_port("2001:db8::1", 51820));
    c.persistent_keepalive = 0;
    c.addresses = prefixes(&["10.8.0.2/32"]);
    assert_eq!(
        c.render().as_str(),
        "[Interface]\n\
         PrivateKey = AAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAUE=\n\
         Address = 10.8.0.2/32\n\
         MTU = 1420\n\
         \n\
         [Peer]\n\
         PublicKey = AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n\
         Endpoint = [2001:db8::1]:51820\n\
         AllowedIPs = 0.0.0.0/0, ::/0\n"
    );
}

#[test]
fn endpoints_bracket_ipv6() {
    assert_eq!(endpoint_with_port("2001:db8::1", 51820), "[2001:db8::1]:51820");
    assert_eq!(endpoint_with_port("203.0.113.5", 443), "203.0.113.5:443");
    assert_eq!(endpoint_with_port("vpn.example.com", 51820), "vpn.example.com:51820");
    assert_eq!(endpoint_with_port("[2001:db8::1]", 1), "[2001:db8::1]:1");
}

/// Dark modules of `text`'s QR code, row by row.
fn modules(text: &str, level: qrcode::EcLevel) -> (usize, Vec<bool>) {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), level).unwrap();
    (code.width(), code.to_colors().into_iter().map(|c| c == qrcode::Color::Dark).collect())
}

#[test]
fn terminal_qr_has_the_expected_shape_and_modules() {
    let k = keys();
    // A long but realistic configuration.
    let mut c = config(&k, endpoint_with_port("vpn-gateway.subdomain.example.com", 51820));
    c.addresses = prefixes(&["10.108.200.254/32", "fd11:2233:4455:6677:8899:aabb:ccdd:eeff/128"]);
    let text = c.render();
    let qr = qr_terminal(&text).unwrap();
    let (w, dark) = modules(&text, TERMINAL_EC_LEVEL);
    let q = TERMINAL_QUIET_ZONE;
    let side = w + 2 * q;
    assert!(side <= 80, "{side} columns do not fit a terminal");
    let lines: Vec<&str> = qr.lines().collect();
    assert_eq!(lines.len(), side.div_ceil(2));
    for (row, line) in lines.iter().enumerate() {
        let inner = line.strip_prefix("\x1b[30;107m").and_then(|l| l.strip_suffix("\x1b[0m")).expect("colour escapes around each line");
        let chars: Vec<char> = inner.chars().collect();
        assert_eq!(chars.len(), side);
        for (x, ch) in chars.iter().enumerate() {
            let at = |y: usize| y >= q && x >= q && y - q < w && x - q < w && dark[(y - q) * w + (x - q)];
            let want = match (at(2 * row), at(2 * row + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            };
            assert_eq!(*ch, want, "row {row} column {x}");
        }
    }
    // The quiet zone is light.
    assert!(lines[0].contains(&" ".repeat(side)));
}

#[test]
fn png_decodes_to_the_code_in_black_and_white_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("laptop.png");
    let k = keys();
    let text = config(&k, endpoint_with_port("vpn.example.com", 51820)).render();
    qr_png(&text, &path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

    let decoder = png::Decoder::new(std::fs::File::open(&path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Grayscale, png::BitDepth::Eight));
    let (w, dark) = modules(&text, PNG_EC_LEVEL);
    let side = (w + 2 * PNG_QUIET_ZONE) * PNG_SCALE;
    assert_eq!((info.width as usize, info.height as usize), (side, side));
    let pixels = &buf[..info.buffer_size()];
    assert!(pixels.iter().all(|&p| p == 0 || p == 255));
    for y in 0..side {
        for x in 0..side {
            let (mx, my) = (x / PNG_SCALE, y / PNG_SCALE);
            let q = PNG_QUIET_ZONE;
            let want_dark = mx >= q && my >= q && mx - q < w && my - q < w && dark[(my - q) * w + (mx - q)];
            assert_eq!(pixels[y * side + x] == 0, want_dark, "pixel {x},{y}");
        }
    }
    // Rewriting replaces the file atomically and leaves nothing else behind.
    qr_png("other", &path).unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["laptop.png"]);
}

#[test]
fn too_long_text_is_an_error() {
    let e = qr_terminal(&"x".repeat(8000)).unwrap_err();
    assert!(e.to_string().contains("8000 bytes"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let e = qr_png("x", &dir.path().join("missing/dir/x.png")).unwrap_err();
    assert!(e.to_string().contains("missing/dir/x.png"), "{e}");
}
