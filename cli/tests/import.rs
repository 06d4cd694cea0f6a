//! `vpn import wg-quick FILE` end to end, without root: a server's wg0.conf goes into a fresh
//! setup with its keys and addresses; the dry run, an unprotected file, a second import and a
//! bad file change nothing; `--merge` picks up peers added later. (Real clients connecting
//! after a migration: netns-tests/migrate.sh.)

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVER_KEY: &str = "WXLEGNovXZ5AadAiG/NsCfvwEYa/aqiIaNMShttB5Q8=";
const ALICE: &str = "mZfjuAoKYo83U6z/1ul4DVJot82vl5LASJStFS5pIgo=";
const ALICE_PSK: &str = "a89lGOZdv9eR6iFYMhJajGAlnwI0b95ob1sGJiyJr1s=";
const BOB: &str = "ikIxBXsnZ8/JIdo7+I31Q4NGdfvhdG+ye1ZVSudhc20=";
const LAPTOP: &str = "0o+XS8c3w7gqzrMIA0vG3ZSDAetQFFZgOiyGq2TazA8=";
const NOBODY: &str = "O/sdxtGC5SPSOrxvUtO5xgnmp+VqVMqwvTZUeFnh1p4=";
const LATE: &str = "Fh96QVcWFlJWl0s5q+IL8UTmEE3F67COiflWqe7MVnc=";

/// A server as angristan's installer writes it, with a hand-added site-to-site route and a peer
/// that has no address of its own.
fn wg0() -> String {
    format!(
        "[Interface]
Address = 10.66.66.1/24, fd42:42:42::1/64
ListenPort = 51555
PrivateKey = {SERVER_KEY}
MTU = 1400
PostUp = iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE

### Client alice
[Peer]
PublicKey = {ALICE}
PresharedKey = {ALICE_PSK}
AllowedIPs = 10.66.66.2/32, fd42:42:42::2/128

### Client bob
[Peer]
PublicKey = {BOB}
AllowedIPs = 10.66.66.3/32, 192.168.10.0/24

# Name = alice/laptop
[Peer]
PublicKey = {LAPTOP}
AllowedIPs = fd42:42:42::4/128

### Client nobody
[Peer]
PublicKey = {NOBODY}
AllowedIPs = 172.16.0.0/16
"
    )
}

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

fn vpn(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vpn"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("VPN_CONFIG")
        .env_remove("VPN_PASSPHRASE")
        .env_remove("VPN_PASSPHRASE_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .expect("run vpn");
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// `vpn init` in a temporary directory: a server without users yet.
fn init() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("etc/vpn.toml");
    let store = root.join("lib/vpn.db");
    let interface = format!("vi{}", std::process::id() % 100_000);
    let args = [
        "init",
        "--yes",
        "--endpoint",
        "vpn.example.net",
        "--egress",
        "eth9",
        "--interface",
        &interface,
        "--store",
        store.to_str().unwrap(),
    ];
    let (ok, out, err) = vpn(&config, &args);
    assert!(ok, "init failed: {out}{err}");
    Setup { _dir: dir, config, root }
}

/// Writes `text` to `name` with `mode`.
fn write(s: &Setup, name: &str, text: &str, mode: u32) -> PathBuf {
    let path = s.root.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn devices(s: &Setup) -> serde_json::Value {
    let (ok, out, err) = vpn(&s.config, &["device", "list", "--json"]);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

/// What a refused command must leave as it was: the configuration and the devices.
fn snapshot(s: &Setup) -> (String, serde_json::Value) {
    (std::fs::read_to_string(&s.config).unwrap(), devices(s))
}

#[test]
fn a_wg_quick_server_moves_in_with_its_keys_and_addresses() {
    let s = init();
    let before = snapshot(&s);

    // A file others can read is refused before it is read.
    let file = write(&s, "wg0.conf", &wg0(), 0o644);
    let f = file.to_str().unwrap();
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", f, "--yes"]);
    assert!(!ok && err.contains("chmod 600"), "{err}");
    assert_eq!(snapshot(&s), before);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The dry run shows the whole plan and changes nothing.
    let (ok, out, err) = vpn(&s.config, &["import", "wg-quick", f, "--dry-run"]);
    assert!(ok, "{out}{err}");
    for want in ["alice", "device1", "10.66.66.2", "fd42:42:42::2", "bob", "laptop", "fd42:42:42::4", "10.66.66.0/24", "fd42:42:42::/64"] {
        assert!(out.contains(want), "the plan lacks {want}: {out}");
    }
    assert!(out.contains("4 peer(s) in the file: 3 to import (2 new user(s)), 1 refused"), "{out}");
    assert!(out.contains("line 25:") && out.contains(NOBODY), "the refused peer with its line: {out}");
    assert!(out.contains("line 6: PostUp"), "the hook is reported: {out}");
    assert!(out.contains("line 17:") && out.contains("192.168.10.0/24"), "the dropped route is reported: {out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(!out.contains(SERVER_KEY) && !out.contains(ALICE_PSK) && !err.contains(SERVER_KEY), "no secret is printed");
    assert_eq!(snapshot(&s), before);

    // Without a terminal to confirm on, --yes is needed.
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", f]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert_eq!(snapshot(&s), before);

    let (ok, out, err) = vpn(&s.config, &["import", "wg-quick", f, "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("imported 3 device(s)"), "{out}");

    // Every peer is a device with its own key and addresses.
    let (ok, table, err) = vpn(&s.config, &["device", "list"]);
    assert!(ok, "{err}");
    for (user, device, key, v4, v6) in [
        ("alice", "device1", ALICE, "10.66.66.2", "fd42:42:42::2"),
        ("alice", "laptop", LAPTOP, "-", "fd42:42:42::4"),
        ("bob", "device1", BOB, "10.66.66.3", "-"),
    ] {
        let line = table.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no device with key {key}: {table}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[..4], [user, device, v4, v6], "{line}");
    }
    assert!(!table.contains(NOBODY), "the refused peer is not imported: {table}");
    let list = devices(&s);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert_eq!(list[0]["public_key"], ALICE);
    assert_eq!(list[0]["ipv4"], "10.66.66.2");

    // The configuration took the file's port, pools and MTU, and kept the rest.
    let text = std::fs::read_to_string(&s.config).unwrap();
    for want in [
        "listen_port = 51555",
        "ipv4_pool = \"10.66.66.0/24\"",
        "ipv6_pool = \"fd42:42:42::/64\"",
        "mtu = 1400",
        "endpoint = \"vpn.example.net\"",
        "eth9",
    ] {
        assert!(text.contains(want), "{want} missing from the configuration:\n{text}");
    }

    // An imported device's private key is on the client only: its config cannot be written.
    let (ok, _, err) = vpn(&s.config, &["device", "show", "alice", "device1", "--client", "--no-qr"]);
    assert!(!ok && err.contains("rotate"), "{err}");

    // The audit trail says the import did it.
    let (ok, out, _) = vpn(&s.config, &["audit", "--json", "--limit", "100"]);
    assert!(ok);
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(events.as_array().unwrap().iter().any(|e| e["action"] == "device.add" && e["origin"] == "import"), "{out}");
    assert!(!out.contains(SERVER_KEY) && !out.contains(ALICE_PSK));

    // A second import is refused without --merge and changes nothing.
    let after = snapshot(&s);
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", f, "--yes"]);
    assert!(!ok && err.contains("--merge") && err.contains("nothing was changed"), "{err}");
    assert_eq!(snapshot(&s), after);

    // With --merge, peers already there are skipped and a peer added since is imported.
    let (ok, out, err) = vpn(&s.config, &["import", "wg-quick", f, "--merge", "--yes"]);
    assert!(ok && out.contains("3 already in the store") && out.contains("nothing to import"), "{out}{err}");
    assert_eq!(snapshot(&s), after);
    let more = format!("{}\n### Client carol\n[Peer]\nPublicKey = {LATE}\nAllowedIPs = 10.66.66.9/32\n", wg0());
    let file2 = write(&s, "wg0-later.conf", &more, 0o600);
    let (ok, out, err) = vpn(&s.config, &["import", "wg-quick", file2.to_str().unwrap(), "--merge", "--yes"]);
    assert!(ok, "{out}{err}");
    let list = devices(&s);
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert!(
        list.as_array().unwrap().iter().any(|d| d["user"] == "carol" && d["ipv4"] == "10.66.66.9" && d["public_key"] == LATE),
        "{list}"
    );

    // A merge with another server key is refused.
    let other = wg0().replace(SERVER_KEY, "a89lGOZdv9eR6iFYMhJajGAlnwI0b95ob1sGJiyJr1s=");
    let file3 = write(&s, "other.conf", &other, 0o600);
    let before = snapshot(&s);
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", file3.to_str().unwrap(), "--merge", "--yes"]);
    assert!(!ok && err.contains("server key"), "{err}");
    assert_eq!(snapshot(&s), before);
}

#[test]
fn a_broken_file_is_refused_with_every_problem_and_its_line() {
    let s = init();
    let before = snapshot(&s);
    let broken = wg0().replace(&BOB[..43], "not-a-key").replace("ListenPort = 51555", "ListenPort = 99999");
    let file = write(&s, "wg0.conf", &broken, 0o600);
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", file.to_str().unwrap(), "--yes"]);
    assert!(!ok, "{err}");
    assert!(err.contains("line 3: ListenPort") && err.contains("line 16: PublicKey"), "{err}");
    assert!(!err.contains(SERVER_KEY));
    assert_eq!(snapshot(&s), before);

    // A --user that breaks the naming rules.
    std::fs::write(&file, wg0()).unwrap();
    let (ok, _, err) = vpn(&s.config, &["import", "wg-quick", file.to_str().unwrap(), "--user", "no spaces", "--dry-run"]);
    assert!(!ok && err.contains("no spaces"), "{err}");
}

#[test]
fn user_puts_every_peer_under_one_user() {
    let s = init();
    let file = write(&s, "wg0.conf", &wg0(), 0o600);
    let (ok, out, err) = vpn(&s.config, &["import", "wg-quick", file.to_str().unwrap(), "--user", "family", "--yes"]);
    assert!(ok, "{out}{err}");
    let list = devices(&s);
    let names: Vec<String> =
        list.as_array().unwrap().iter().map(|d| format!("{}/{}", d["user"].as_str().unwrap(), d["name"].as_str().unwrap())).collect();
    assert_eq!(names, ["family/alice", "family/alice_laptop", "family/bob"]);
}
