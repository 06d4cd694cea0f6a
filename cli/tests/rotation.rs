//! Key rotation through the real binary, without a running server (docs/operator-guide.md, "Key
//! rotation"; the running server's side is in netns-tests/rotation.sh): `vpn device rotate`
//! issues a new config with new keys and the same addresses, shows as `rotating` until it
//! completes, `--now` completes it at once; `vpn keys rotate --server` changes the server's
//! public key in every config, one rotation at a time; `vpn keys status` shows the deadlines;
//! the audit trail records each step; the configuration refuses a grace period that is not
//! shorter than the rotation period.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Out {
    ok: bool,
    out: String,
    err: String,
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

fn vpn(config: &Path, args: &[&str]) -> Out {
    let o = Command::new(env!("CARGO_BIN_EXE_vpn"))
        .arg("-c")
        .arg(config)
        .args(args)
        // No server: the CLI says the change waits for `vpn up`. Never a real socket of this host.
        // The passphrase: the file `vpn init` made, never this process's environment.
        .env_remove("VPN_CONFIG")
        .env_remove("VPN_PASSPHRASE")
        .env_remove("VPN_PASSPHRASE_FILE")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .output()
        .expect("run vpn");
    Out { ok: o.status.success(), out: String::from_utf8(o.stdout).unwrap(), err: String::from_utf8(o.stderr).unwrap() }
}

impl Setup {
    fn vpn(&self, args: &[&str]) -> Out {
        vpn(&self.config, args)
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.vpn(args);
        assert!(o.ok, "vpn {args:?} failed: {}{}", o.out, o.err);
        o
    }

    /// `device show --client`: the client config alone.
    fn client(&self, user: &str, device: &str) -> String {
        let out = self.ok(&["device", "show", user, device, "--client", "--no-qr"]).out;
        out[out.find("[Interface]").expect("a client config")..].to_string()
    }

    fn list(&self) -> String {
        self.ok(&["device", "list"]).out
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["keys", "status", "--json"]).out).unwrap()
    }

    fn audit(&self, action: &str) -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["audit", "--json", "--action", action, "--limit", "1000"]).out).unwrap();
        // --action is a prefix: keep the exact action.
        v.as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
    }
}

/// `vpn init` into a temporary directory, then user alice with device phone.
fn init() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("etc/vpn.toml");
    let store = root.join("lib/vpn.db");
    let s = Setup { _dir: dir, root, config };
    s.ok(&[
        "init",
        "--yes",
        "--endpoint",
        "vpn.example.net",
        "--port",
        "51997",
        "--ipv4-pool",
        "10.68.0.0/24",
        "--ipv6-pool",
        "fd68:1::/64",
        "--dns",
        "none",
        "--egress",
        "eth9",
        // A name no real server uses, so no management socket of this host answers.
        "--interface",
        &format!("vr{}", std::process::id() % 100_000),
        "--store",
        store.to_str().unwrap(),
    ]);
    s.ok(&["user", "add", "alice"]);
    s.ok(&["device", "add", "alice", "phone", "--no-qr"]);
    s
}

fn field<'a>(conf: &'a str, key: &str) -> &'a str {
    conf.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(" = "))).unwrap_or_else(|| panic!("no {key} in {conf}"))
}

/// `vpn pubkey` of a private key.
fn pubkey(private: &str) -> String {
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_vpn")).arg("pubkey").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("run vpn pubkey");
    child.stdin.take().unwrap().write_all(format!("{private}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The listing row of alice/phone.
fn phone_row(list: &str) -> String {
    list.lines().find(|l| l.contains("alice") && l.contains("phone")).unwrap_or_else(|| panic!("no alice/phone in {list}")).to_string()
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn device_rotation_issues_a_new_config_and_completes_with_now() {
    let s = init();
    let old = s.client("alice", "phone");
    let old_pub = pubkey(field(&old, "PrivateKey"));
    assert!(phone_row(&s.list()).contains(&old_pub));

    let t0 = now();
    let o = s.ok(&["device", "rotate", "alice", "phone", "--no-qr"]);
    let new = o.out.clone();
    assert!(new.contains("[Interface]"), "rotate prints the new config: {new}");
    assert_ne!(field(&new, "PrivateKey"), field(&old, "PrivateKey"));
    assert_ne!(field(&new, "PresharedKey"), field(&old, "PresharedKey"));
    assert_eq!(field(&new, "Address"), field(&old, "Address"), "the device keeps its addresses");
    assert_eq!(field(&new, "PublicKey"), field(&old, "PublicKey"), "the server's key is unchanged");
    assert!(o.err.contains("old keys work until"), "{}", o.err);
    let new_pub = pubkey(field(&new, "PrivateKey"));

    // Rotating: the old key is still the device's, the new config is the one shown.
    let row = phone_row(&s.list());
    assert!(row.contains("rotating") && row.contains(&old_pub), "{row}");
    let o = s.ok(&["device", "show", "alice", "phone", "--client", "--no-qr"]);
    assert!(o.err.contains("new configuration of a key rotation"), "{}", o.err);
    assert_eq!(s.client("alice", "phone"), new);
    // The default grace: rotation_grace_days (14) from now, in keys status.
    let v = s.status_json();
    let pending = v["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{v}");
    assert_eq!(pending[0]["device"], "alice/phone");
    let by = pending[0]["rotate_by"].as_i64().unwrap();
    assert!((t0 + 14 * 86_400..=now() + 14 * 86_400).contains(&by), "deadline {by}");
    assert_eq!(v["keys"]["rotations_pending"], 1);
    let out = s.ok(&["keys", "status"]).out;
    assert!(out.lines().any(|l| l.starts_with("rotating") && l.contains("alice/phone") && l.contains('T') && l.contains('Z')), "{out}");

    // A second rotation replaces the pending one, with its own --grace.
    let o = s.ok(&["device", "rotate", "alice", "phone", "--grace", "3d", "--no-qr"]);
    let newer = o.out;
    assert_ne!(field(&newer, "PrivateKey"), field(&new, "PrivateKey"));
    assert_eq!(field(&newer, "Address"), field(&old, "Address"));
    assert_eq!(s.client("alice", "phone"), newer);
    let by = s.status_json()["pending"][0]["rotate_by"].as_i64().unwrap();
    assert!((t0 + 3 * 86_400..=now() + 3 * 86_400).contains(&by), "deadline {by}");

    // --now: in force at once.
    let o = s.ok(&["device", "rotate", "alice", "phone", "--now", "--no-qr"]);
    let last = o.out;
    assert!(o.err.contains("in force now"), "{}", o.err);
    assert_eq!(field(&last, "Address"), field(&old, "Address"));
    let last_pub = pubkey(field(&last, "PrivateKey"));
    let row = phone_row(&s.list());
    assert!(row.contains("enabled") && !row.contains("rotating"), "{row}");
    assert!(row.contains(&last_pub), "the listed public key is the new config's: {row} vs {last_pub}");
    assert!(!row.contains(&old_pub) && !row.contains(&new_pub));
    assert_eq!(s.client("alice", "phone"), last);
    let o = s.ok(&["device", "show", "alice", "phone", "--client", "--no-qr"]);
    assert!(!o.err.contains("key rotation"), "no rotation any more: {}", o.err);
    let v = s.status_json();
    assert!(v["pending"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["keys"]["rotations_pending"], 0);

    // The audit trail: three rotations started, one completed, with public keys only.
    let started = s.audit("device.rotate");
    assert_eq!(started.len(), 3, "{started:?}");
    assert!(started.iter().all(|e| e["target"] == "alice/phone"));
    let done = s.audit("device.rotate.complete");
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0]["details"]["new_public_key"], last_pub.as_str(), "{done:?}");
    let all = s.ok(&["audit", "--json", "--limit", "1000"]).out;
    for conf in [&old, &new, &newer, &last] {
        assert!(!all.contains(field(conf, "PrivateKey")) && !all.contains(field(conf, "PresharedKey")));
    }
}

#[test]
fn rotating_errors_say_what_is_wrong() {
    let s = init();
    let o = s.vpn(&["device", "rotate", "alice", "ghost", "--no-qr"]);
    assert!(!o.ok && o.err.contains("ghost"), "{}", o.err);
    let o = s.vpn(&["device", "rotate", "alice", "phone", "--grace", "soon", "--no-qr"]);
    assert!(!o.ok && o.err.contains("soon"), "{}", o.err);
    let o = s.vpn(&["keys", "rotate"]);
    assert!(!o.ok && o.err.contains("--server"), "{}", o.err);
    assert!(!s.list().contains("rotating"));
    assert!(s.audit("device.rotate").is_empty());
}

#[test]
fn server_rotation_changes_every_config_once_at_a_time() {
    let s = init();
    s.ok(&["device", "add", "alice", "laptop", "--no-qr"]);
    let before = [s.client("alice", "phone"), s.client("alice", "laptop")];
    let old_server = field(&before[0], "PublicKey").to_string();

    let t0 = now();
    let o = s.ok(&["keys", "rotate", "--server"]);
    let new_server =
        o.out.lines().find_map(|l| l.strip_prefix("server key rotated; new public key ")).expect("new key printed").to_string();
    assert_ne!(new_server, old_server);
    for (i, d) in ["phone", "laptop"].iter().enumerate() {
        let after = s.client("alice", d);
        assert_eq!(field(&after, "PublicKey"), new_server, "{after}");
        // Only the server's key changed.
        assert_eq!(after.replace(&new_server, &old_server), before[i]);
    }
    let v = s.status_json();
    let until = v["keys"]["server_retiring_until"].as_i64().expect("a deadline");
    assert!((t0 + 14 * 86_400..=now() + 14 * 86_400).contains(&until), "{v}");
    let out = s.ok(&["keys", "status"]).out;
    assert!(out.contains("previous server key accepted until 20"), "{out}");

    // One rotation at a time.
    let o = s.vpn(&["keys", "rotate", "--server", "--grace", "1d"]);
    assert!(!o.ok && o.err.contains("already under way"), "{}", o.err);
    assert_eq!(field(&s.client("alice", "phone"), "PublicKey"), new_server);
    assert_eq!(s.status_json()["keys"]["server_retiring_until"], until);

    let rows = s.audit("server.key.rotate");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["details"]["old_public_key"], old_server.as_str());
    assert_eq!(rows[0]["details"]["new_public_key"], new_server.as_str());
    assert_eq!(rows[0]["details"]["old_accepted_until"], until);
}

#[test]
fn server_rotation_with_a_grace_period() {
    let s = init();
    let t0 = now();
    s.ok(&["keys", "rotate", "--server", "--grace", "2d"]);
    let until = s.status_json()["keys"]["server_retiring_until"].as_i64().unwrap();
    assert!((t0 + 2 * 86_400..=now() + 2 * 86_400).contains(&until), "{until}");
    let o = s.vpn(&["keys", "rotate", "--server", "--grace", "later"]);
    assert!(!o.ok && o.err.contains("later"), "{}", o.err);
}

/// Sets the two policy lines of the configuration file.
fn set_policy(s: &Setup, rotate: u32, grace: u32) {
    let text = std::fs::read_to_string(&s.config).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("key_rotation_days") {
                format!("key_rotation_days = {rotate}")
            } else if l.starts_with("rotation_grace_days") {
                format!("rotation_grace_days = {grace}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&s.config, text.join("\n") + "\n").unwrap();
}

#[test]
fn the_policy_needs_a_grace_period_shorter_than_the_rotation_period() {
    let s = init();
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(text.contains("key_rotation_days = 0") && text.contains("rotation_grace_days = 14"), "{text}");
    for (rotate, grace) in [(7, 14), (14, 14)] {
        set_policy(&s, rotate, grace);
        let o = s.vpn(&["device", "list"]);
        assert!(!o.ok, "{rotate}/{grace} accepted");
        assert!(o.err.contains("rotation_grace_days") && o.err.contains("key_rotation_days"), "{}", o.err);
        assert!(o.err.contains(&format!("{grace} is not shorter than key_rotation_days ({rotate})")), "{}", o.err);
    }
    set_policy(&s, 90, 14);
    let out = s.ok(&["keys", "status"]).out;
    assert!(out.contains("every 90 days, grace 14 days"), "{out}");
    assert!(out.contains("due now          none"), "{out}");
    // A rotation's default grace follows the configuration.
    set_policy(&s, 30, 5);
    let t0 = now();
    s.ok(&["device", "rotate", "alice", "phone", "--no-qr"]);
    let by = s.status_json()["pending"][0]["rotate_by"].as_i64().unwrap();
    assert!((t0 + 5 * 86_400..=now() + 5 * 86_400).contains(&by), "{by}");
    // Off with 0, whatever the grace.
    set_policy(&s, 0, 14);
    assert!(s.ok(&["keys", "status"]).out.contains("rotation policy  off"));
    let _ = &s.root;
}
