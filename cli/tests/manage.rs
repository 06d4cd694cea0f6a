//! The server manager's CLI end to end, without a running server and without root: `vpn init`,
//! users and devices, listings, client configurations, errors that say what to do,
//! completions and the man page. (`vpn up` itself runs in netns-tests/server.sh.)

use std::path::{Path, PathBuf};
use std::process::Command;

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
        // No server: the CLI says the change waits for `vpn up`. Never a real socket of this host.
        .env_remove("VPN_CONFIG")
        .output()
        .expect("run vpn");
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn init() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("etc/vpn.toml");
    let store = root.join("lib/vpn.db");
    let (ok, out, err) = vpn(
        &config,
        &[
            "init",
            "--yes",
            "--endpoint",
            "vpn.example.net",
            "--port",
            "51999",
            "--ipv4-pool",
            "10.66.0.0/29",
            "--ipv6-pool",
            "fd66:1::/64",
            "--dns",
            "192.0.2.53",
            "--egress",
            "eth9",
            // A name no real server uses, so no management socket of this host answers.
            "--interface",
            &format!("vt{}", std::process::id() % 100_000),
            "--store",
            store.to_str().unwrap(),
        ],
    );
    assert!(ok, "init failed: {out}{err}");
    assert!(out.contains("server public key"), "{out}");
    Setup { _dir: dir, config, root }
}

#[test]
fn init_writes_a_documented_config_and_refuses_to_run_twice() {
    let s = init();
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(text.contains("listen_port = 51999") && text.contains("10.66.0.0/29") && text.contains('#'), "{text}");
    let (ok, _, err) = vpn(&s.config, &["init", "--yes"]);
    assert!(!ok);
    assert!(err.contains("--reconfigure"), "{err}");
    // Reconfiguring keeps users.
    assert!(vpn(&s.config, &["user", "add", "alice"]).0);
    let (ok, _, err) = vpn(&s.config, &["init", "--yes", "--reconfigure", "--port", "51998"]);
    assert!(ok, "{err}");
    assert!(std::fs::read_to_string(&s.config).unwrap().contains("listen_port = 51998"));
    assert!(vpn(&s.config, &["user", "show", "alice"]).0);
    // Without a terminal and without --yes the wizard says what to do.
    let other = s.root.join("other.toml");
    let (ok, _, err) = vpn(&other, &["init"]);
    assert!(!ok && err.contains("--yes"), "{err}");
}

#[test]
fn users_and_devices_from_add_to_remove() {
    let s = init();
    assert!(vpn(&s.config, &["user", "add", "alice"]).0);
    let (ok, _, err) = vpn(&s.config, &["user", "add", "alice"]);
    assert!(!ok && err.contains("alice"), "duplicate user: {err}");
    let conf = s.root.join("alice-phone.conf");
    let (ok, out, err) = vpn(&s.config, &["device", "add", "alice", "phone", "--no-qr", "-o", conf.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("10.66.0.2") && err.contains("fd66:1::2"), "{err}");
    assert!(err.contains("vpn up"), "says the change waits for the server: {err}");
    let client = std::fs::read_to_string(&conf).unwrap();
    assert!(client.contains("Address = 10.66.0.2/32, fd66:1::2/128"), "{client}");
    assert!(client.contains("Endpoint = vpn.example.net:51999"), "{client}");
    assert!(client.contains("DNS = 192.0.2.53"), "{client}");
    assert!(client.contains("PrivateKey = ") && client.contains("PresharedKey = "), "{client}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777, 0o600);

    // Default names, expiry, listings.
    let (ok, out, err) = vpn(&s.config, &["device", "add", "alice", "--expires", "2099-01-01", "--no-qr"]);
    assert!(ok, "{err}");
    assert!(out.contains("[Interface]"), "config on stdout: {out}");
    let (ok, out, _) = vpn(&s.config, &["device", "list", "--json"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["device1", "phone"]);
    assert_eq!(list[0]["expires_at"], 4_070_908_800i64);
    let (ok, out, _) = vpn(&s.config, &["user", "list"]);
    assert!(ok && out.contains("alice") && out.contains("enabled"), "{out}");
    // Secrets never show in listings.
    assert!(!out.contains("PrivateKey"));

    // The pool 10.66.0.0/29 has hosts .2 to .6 for devices: the 6th device does not fit.
    for i in 0..3 {
        assert!(vpn(&s.config, &["device", "add", "alice", &format!("d{i}"), "--no-qr"]).0);
    }
    let (ok, _, err) = vpn(&s.config, &["device", "add", "alice", "overflow", "--no-qr"]);
    assert!(!ok && err.contains("10.66.0.0/29"), "pool exhausted: {err}");

    // Show again, disable, remove.
    let (ok, out, _) = vpn(&s.config, &["device", "show", "alice", "phone", "--client", "--no-qr"]);
    assert!(ok && out.contains("Address = 10.66.0.2/32"), "{out}");
    assert!(vpn(&s.config, &["device", "disable", "alice", "phone"]).0);
    let (_, out, _) = vpn(&s.config, &["device", "list", "alice"]);
    assert!(out.lines().any(|l| l.contains("phone") && l.contains("disabled")), "{out}");
    assert!(vpn(&s.config, &["device", "remove", "alice", "phone"]).0);
    let (ok, _, err) = vpn(&s.config, &["device", "show", "alice", "phone"]);
    assert!(!ok && err.contains("phone"), "{err}");
    let (ok, _, err) = vpn(&s.config, &["user", "remove", "alice"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    assert!(vpn(&s.config, &["user", "remove", "alice", "--yes"]).0);
    let (_, out, _) = vpn(&s.config, &["device", "list", "--json"]);
    assert_eq!(out.trim(), "[]");

    let (ok, out, err) = vpn(&s.config, &["status", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"running\": false"), "{out}");

    // The audit trail recorded it all, newest first, filtered, without a secret.
    let (ok, out, err) = vpn(&s.config, &["audit", "--json", "--limit", "1000"]);
    assert!(ok, "{err}");
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = events.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"user.remove"));
    assert!(actions.contains(&"device.disable") && actions.contains(&"server.key"), "{actions:?}");
    let private = client.lines().find_map(|l| l.strip_prefix("PrivateKey = ")).unwrap();
    let psk = client.lines().find_map(|l| l.strip_prefix("PresharedKey = ")).unwrap();
    assert!(!out.contains(private) && !out.contains(psk), "no secret in the audit trail");
    let (ok, out, _) = vpn(&s.config, &["audit", "--action", "device.remove", "--json"]);
    assert!(ok);
    let removed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(removed.as_array().unwrap().len(), 1);
    assert_eq!(removed[0]["target"], "alice/phone");
    let (ok, out, _) = vpn(&s.config, &["audit", "--target", "alice/phone", "--since", "1d"]);
    assert!(ok && out.contains("device.add") && out.contains("device.remove"), "{out}");
    let (ok, _, err) = vpn(&s.config, &["audit", "--since", "yesterday"]);
    assert!(!ok && err.contains("2027-01-31"), "{err}");
}

#[test]
fn bad_input_says_what_is_wrong_and_changes_nothing() {
    let s = init();
    let (ok, _, err) = vpn(&s.config, &["user", "add", "no spaces"]);
    assert!(!ok && err.contains("no spaces"), "{err}");
    let (ok, _, err) = vpn(&s.config, &["device", "add", "ghost", "phone", "--no-qr"]);
    assert!(!ok && err.contains("ghost"), "{err}");
    assert!(vpn(&s.config, &["user", "add", "bob"]).0);
    let (ok, _, err) = vpn(&s.config, &["device", "add", "bob", "phone", "--expires", "someday", "--no-qr"]);
    assert!(!ok && err.contains("2027-01-31"), "{err}");
    let (ok, _, err) = vpn(&s.config, &["device", "add", "bob", "phone", "--expires", "2001-01-01", "--no-qr"]);
    assert!(!ok && err.contains("past"), "{err}");
    let (ok, _, err) = vpn(&s.config, &["device", "add", "bob", "my/phone", "--no-qr"]);
    assert!(!ok && err.contains("my/phone"), "{err}");
    let (_, out, _) = vpn(&s.config, &["device", "list", "--json"]);
    assert_eq!(out.trim(), "[]", "nothing was stored");
    let (ok, _, err) = vpn(&s.root.join("missing.toml"), &["user", "list"]);
    assert!(!ok && err.contains("vpn init"), "{err}");
    let (ok, _, err) = vpn(&s.config, &["init", "--yes", "--reconfigure", "--ipv4-pool", "10.66.0.1/24"]);
    assert!(!ok && err.contains("10.66.0.1/24"), "{err}");
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let nowhere = Path::new("/nonexistent/vpn.toml");
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = vpn(nowhere, &["completions", shell]);
        assert!(ok, "{err}");
        assert!(out.contains("device") && out.contains("status"), "{shell}: {out}");
    }
    let (ok, out, _) = vpn(nowhere, &["man"]);
    assert!(ok && out.contains(".TH") && out.contains("vpn"), "{out}");
}
