//! Keys at rest, end to end through the real binary (docs/operator-guide.md, "Keys at rest"):
//! `vpn init` creates a private passphrase file beside the configuration; every private key and
//! PSK in the store is sealed (neither the base64 text nor the raw 32 bytes of a key appear in
//! the database or its WAL); without the passphrase the listings work and what needs a secret
//! says how to give it; a wrong passphrase or a file readable by others is refused and changes
//! nothing; `VPN_PASSPHRASE`, `VPN_PASSPHRASE_FILE` and the systemd credential are sources, in
//! that order; `vpn keys passphrase` changes the passphrase without changing any key; and no
//! secret ever shows in the audit trail or in what a command writes to stderr.

use std::cell::RefCell;
use std::os::unix::fs::PermissionsExt;
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
    store: PathBuf,
    /// The passphrase file `vpn init` made: `<config dir>/passphrase`.
    pass: PathBuf,
    /// Everything every command wrote to stderr, and to stdout unless it was a client config.
    said: RefCell<Vec<String>>,
    /// Every secret seen (client private keys, PSKs, passphrases), to look for in what was said.
    secrets: RefCell<Vec<String>>,
}

impl Setup {
    /// `vpn -c CONFIG ARGS` with no passphrase from this process's environment, plus `env`.
    fn vpn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vpn"));
        c.arg("-c").arg(&self.config).args(args);
        // No server: the CLI says the change waits for `vpn up`. Never a real socket of this host.
        c.env_remove("VPN_CONFIG").env_remove("VPN_PASSPHRASE").env_remove("VPN_PASSPHRASE_FILE").env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.stdin(Stdio::null()).output().expect("run vpn");
        let out = Out { ok: o.status.success(), out: String::from_utf8(o.stdout).unwrap(), err: String::from_utf8(o.stderr).unwrap() };
        let mut said = self.said.borrow_mut();
        said.push(out.err.clone());
        if !out.out.contains("[Interface]") {
            said.push(out.out.clone());
        }
        out
    }

    fn vpn(&self, args: &[&str]) -> Out {
        self.vpn_env(args, &[])
    }

    /// A command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.vpn(args);
        assert!(o.ok, "vpn {args:?} failed: {}{}", o.out, o.err);
        o.out
    }

    /// The client configuration of a device (`device show --client`), its secrets recorded.
    fn client(&self, user: &str, device: &str, env: &[(&str, &str)]) -> String {
        let o = self.vpn_env(&["device", "show", user, device, "--client", "--no-qr"], env);
        assert!(o.ok, "device show {user} {device} --client failed: {}{}", o.out, o.err);
        let conf = o.out[o.out.find("[Interface]").expect("a client config")..].to_string();
        self.record(&conf);
        conf
    }

    /// Records the PrivateKey and PresharedKey of a client config as secrets.
    fn record(&self, conf: &str) {
        for key in ["PrivateKey = ", "PresharedKey = "] {
            let v = conf.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {conf}"));
            self.secrets.borrow_mut().push(v.trim().to_string());
        }
    }

    fn passphrase(&self) -> String {
        let p = std::fs::read_to_string(&self.pass).unwrap().trim_end().to_string();
        self.secrets.borrow_mut().push(p.clone());
        p
    }

    fn devices_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["device", "list", "--json"])).unwrap()
    }

    fn audit_len(&self) -> usize {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["audit", "--json", "--limit", "100000"])).unwrap();
        v.as_array().unwrap().len()
    }

    /// No recorded secret appears in anything a command said, in `vpn audit --json`, or in the
    /// JSON-lines audit log (if there is one).
    fn assert_no_leaks(&self) {
        let audit = self.ok(&["audit", "--json", "--limit", "100000"]);
        let jsonl = std::fs::read_to_string(self.store.parent().unwrap().join("audit.jsonl")).unwrap_or_default();
        let secrets = self.secrets.borrow();
        assert!(!secrets.is_empty());
        for s in secrets.iter() {
            assert!(!audit.contains(s.as_str()), "a secret is in `vpn audit --json`: {audit}");
            assert!(!jsonl.contains(s.as_str()), "a secret is in audit.jsonl");
            for said in self.said.borrow().iter() {
                assert!(!said.contains(s.as_str()), "a secret was printed outside a client config: {said}");
            }
        }
    }
}

fn private_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `vpn init` into a temporary directory, then user alice with devices phone and laptop.
fn init() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let s = Setup {
        config: root.join("etc/vpn.toml"),
        store: root.join("lib/vpn.db"),
        pass: root.join("etc/passphrase"),
        root,
        _dir: dir,
        said: RefCell::new(Vec::new()),
        secrets: RefCell::new(Vec::new()),
    };
    let store = s.store.to_str().unwrap().to_owned();
    // A name no real server uses, so no management socket of this host answers.
    let iface = format!("vk{}", std::process::id() % 100_000);
    s.ok(&[
        "init",
        "--yes",
        "--endpoint",
        "vpn.example.net",
        "--port",
        "51998",
        "--ipv4-pool",
        "10.67.0.0/24",
        "--ipv6-pool",
        "fd67:1::/64",
        "--dns",
        "none",
        "--egress",
        "eth9",
        "--interface",
        &iface,
        "--store",
        &store,
    ]);
    s.ok(&["user", "add", "alice"]);
    for d in ["phone", "laptop"] {
        let o = s.vpn(&["device", "add", "alice", d, "--no-qr"]);
        assert!(o.ok, "{}", o.err);
        s.record(&o.out);
    }
    s
}

/// The 32 bytes of a base64 key.
fn raw(b64: &str) -> [u8; 32] {
    vpn_crypto::keys::from_base64(b64).unwrap_or_else(|_| panic!("not a key: {b64}"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn init_makes_a_private_passphrase_file_and_every_key_is_sealed() {
    let s = init();
    assert!(s.pass.is_file(), "vpn init creates {}", s.pass.display());
    assert_eq!(mode(&s.pass), 0o600);
    let pass = s.passphrase();
    assert!(pass.len() >= 20, "a random passphrase of some length: {} characters", pass.len());
    let text = std::fs::read_to_string(&s.config).unwrap();
    assert!(text.contains(&format!("passphrase_file = \"{}\"", s.pass.display())), "{text}");

    let out = s.ok(&["keys", "status"]);
    assert!(out.contains("XChaCha20-Poly1305") && out.contains("argon2id"), "{out}");
    // The server's key and two devices' private keys and PSKs.
    assert!(out.lines().any(|l| l.starts_with("sealed secrets") && l.ends_with(" 5")), "{out}");
    assert!(out.contains(&format!("file {}", s.pass.display())), "names the passphrase source: {out}");
    assert!(!out.contains("plain secrets"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["keys", "status", "--json"])).unwrap();
    assert_eq!(v["keys"]["protected"], true, "{v}");
    assert_eq!(v["keys"]["sealed"], 5, "{v}");
    assert_eq!(v["keys"]["plaintext"], 0, "{v}");

    // Neither the text nor the bytes of any key are in the database files.
    let mut secrets: Vec<String> = s.secrets.borrow().clone();
    secrets.retain(|x| *x != pass);
    assert_eq!(secrets.len(), 4);
    // The server's private key too, read through the library with the passphrase.
    let mut store = vpn_control::store::SqliteStore::open(&s.store).unwrap();
    store
        .unlock(
            &vpn_control::keyring::Passphrase::new(pass.as_bytes().to_vec()),
            vpn_control::keyring::KdfParams::DEFAULT,
            &vpn_control::store::Actor::new("test", "test"),
        )
        .unwrap();
    use vpn_control::store::Store;
    let server = store.server_key().unwrap().unwrap();
    drop(store);
    secrets.push(vpn_crypto::keys::to_base64(server.as_bytes()));
    let mut files = 0;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", s.store.display()));
        let Ok(bytes) = std::fs::read(&path) else { continue };
        files += 1;
        for sec in &secrets {
            assert!(!contains(&bytes, sec.as_bytes()), "{} holds a key in base64", path.display());
            assert!(!contains(&bytes, &raw(sec)), "{} holds a key's raw bytes", path.display());
        }
        assert!(!contains(&bytes, pass.as_bytes()), "{} holds the passphrase", path.display());
    }
    assert!(files >= 1);
    s.assert_no_leaks();
}

#[test]
fn without_the_passphrase_listings_work_and_secrets_say_how_to_unlock() {
    let s = init();
    let before = s.client("alice", "phone", &[]);
    let devices = s.devices_json();
    let kept = s.root.join("kept-passphrase");
    std::fs::rename(&s.pass, &kept).unwrap();

    // What needs no secret works.
    let out = s.ok(&["device", "list"]);
    assert!(out.contains("phone") && out.contains("laptop") && out.contains("10.67.0.2"), "{out}");
    assert_eq!(s.devices_json(), devices);
    assert!(s.ok(&["user", "list"]).contains("alice"));
    assert!(s.ok(&["device", "show", "alice", "phone"]).contains("10.67.0.2"));
    assert!(s.ok(&["audit"]).contains("device.add"));
    let out = s.ok(&["keys", "status"]);
    assert!(out.contains("not found"), "keys status says there is no passphrase: {out}");

    // What does says how to give the passphrase.
    let o = s.vpn(&["device", "show", "alice", "phone", "--client", "--no-qr"]);
    assert!(!o.ok, "a client config without the passphrase: {}", o.out);
    assert!(!o.out.contains("PrivateKey"), "{}", o.out);
    assert!(o.err.contains("passphrase") && o.err.contains("VPN_PASSPHRASE_FILE") && o.err.contains("passphrase_file"), "{}", o.err);
    for args in [
        &["device", "add", "alice", "tablet", "--no-qr"][..],
        &["device", "rotate", "alice", "phone", "--no-qr"],
        &["keys", "rotate", "--server"],
        &["keys", "passphrase", "--generate"],
    ] {
        let o = s.vpn(args);
        assert!(!o.ok, "{args:?} worked without the passphrase: {}", o.out);
        assert!(o.err.contains("VPN_PASSPHRASE"), "{args:?}: {}", o.err);
    }
    // Nothing changed, and no new passphrase file was made up for a store that has one.
    assert_eq!(s.devices_json(), devices);
    assert!(!s.pass.exists(), "a new passphrase file was created for a protected store");

    std::fs::rename(&kept, &s.pass).unwrap();
    assert_eq!(s.client("alice", "phone", &[]), before);
    s.assert_no_leaks();
}

#[test]
fn a_wrong_passphrase_fails_clearly_and_changes_nothing() {
    let s = init();
    let before = [s.client("alice", "phone", &[]), s.client("alice", "laptop", &[])];
    let devices = s.devices_json();
    let audit = s.audit_len();
    let pass = s.passphrase();
    let wrong = [("VPN_PASSPHRASE", "wrong")];
    for args in [
        &["device", "show", "alice", "phone", "--client", "--no-qr"][..],
        &["device", "add", "alice", "tablet", "--no-qr"],
        &["device", "rotate", "alice", "phone", "--no-qr"],
        &["keys", "rotate", "--server"],
        &["keys", "passphrase", "--generate"],
    ] {
        let o = s.vpn_env(args, &wrong);
        assert!(!o.ok, "{args:?} worked with a wrong passphrase: {}", o.out);
        assert!(o.err.contains("cannot unlock") && o.err.contains("VPN_PASSPHRASE"), "{args:?}: {}", o.err);
        assert!(!o.out.contains("PrivateKey"), "{}", o.out);
    }
    // Listings need no passphrase, so a wrong one does not get in their way.
    let o = s.vpn_env(&["device", "list", "--json"], &wrong);
    assert!(o.ok, "{}", o.err);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&o.out).unwrap(), devices);
    // A wrong passphrase file is named in the error.
    let bad = s.root.join("bad-pass");
    private_file(&bad, "not the passphrase\n", 0o600);
    let o = s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("VPN_PASSPHRASE_FILE", bad.to_str().unwrap())]);
    assert!(!o.ok && o.err.contains("bad-pass"), "{}", o.err);

    assert_eq!(s.devices_json(), devices);
    assert_eq!(s.audit_len(), audit, "nothing was recorded");
    assert_eq!(s.passphrase(), pass);
    assert_eq!([s.client("alice", "phone", &[]), s.client("alice", "laptop", &[])], before);
    s.assert_no_leaks();
}

#[test]
fn a_passphrase_file_readable_by_others_is_refused_with_the_chmod_that_fixes_it() {
    let s = init();
    let before = s.client("alice", "phone", &[]);
    std::fs::set_permissions(&s.pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = s.vpn(&["device", "show", "alice", "phone", "--client", "--no-qr"]);
    assert!(!o.ok, "{}", o.out);
    assert!(o.err.contains(&format!("chmod 600 {}", s.pass.display())), "{}", o.err);
    // The same for a file named by VPN_PASSPHRASE_FILE.
    let other = s.root.join("other-pass");
    private_file(&other, &s.passphrase(), 0o640);
    let o = s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("VPN_PASSPHRASE_FILE", other.to_str().unwrap())]);
    assert!(!o.ok && o.err.contains(&format!("chmod 600 {}", other.display())), "{}", o.err);
    std::fs::set_permissions(&s.pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(s.client("alice", "phone", &[]), before);
    s.assert_no_leaks();
}

#[test]
fn the_passphrase_comes_from_the_environment_a_file_or_a_systemd_credential() {
    let s = init();
    let before = s.client("alice", "phone", &[]);
    let pass = s.passphrase();
    // The configured file is not needed when another source gives the passphrase; a wrong one
    // there even shows that the other source comes first.
    std::fs::write(&s.pass, "not the passphrase\n").unwrap();

    let file = s.root.join("secrets/pass");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    private_file(&file, &format!("{pass}\n"), 0o600);
    let env = [("VPN_PASSPHRASE_FILE", file.to_str().unwrap())];
    assert_eq!(s.client("alice", "phone", &env), before);
    let out = s.vpn_env(&["keys", "status"], &env).out;
    assert!(out.contains("VPN_PASSPHRASE_FILE"), "{out}");

    // systemd: $CREDENTIALS_DIRECTORY/vpn-passphrase, 0400 (group-read allowed for the ACL mask).
    let creds = s.root.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    private_file(&creds.join("vpn-passphrase"), &pass, 0o440);
    let env = [("CREDENTIALS_DIRECTORY", creds.to_str().unwrap())];
    assert_eq!(s.client("alice", "phone", &env), before);
    let out = s.vpn_env(&["keys", "status"], &env).out;
    assert!(out.contains("systemd credential vpn-passphrase"), "{out}");
    // A credential directory without the credential falls through to the file (wrong here).
    let empty = s.root.join("no-credentials");
    std::fs::create_dir_all(&empty).unwrap();
    let o = s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("CREDENTIALS_DIRECTORY", empty.to_str().unwrap())]);
    assert!(!o.ok && o.err.contains(&s.pass.display().to_string()), "{}", o.err);

    // VPN_PASSPHRASE, and it comes before the others.
    let env = [("VPN_PASSPHRASE", pass.as_str()), ("VPN_PASSPHRASE_FILE", "/nonexistent/pass")];
    assert_eq!(s.client("alice", "phone", &env), before);
    // A VPN_PASSPHRASE_FILE that does not exist is an error, not a fall-through.
    let o = s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("VPN_PASSPHRASE_FILE", "/nonexistent/pass")]);
    assert!(!o.ok && o.err.contains("/nonexistent/pass"), "{}", o.err);
    std::fs::write(&s.pass, format!("{pass}\n")).unwrap();
    s.assert_no_leaks();
}

#[test]
fn changing_the_passphrase_keeps_every_key() {
    let s = init();
    let before = [s.client("alice", "phone", &[]), s.client("alice", "laptop", &[])];
    let old = s.passphrase();

    let o = s.vpn(&["keys", "passphrase", "--generate"]);
    assert!(o.ok, "{}", o.err);
    let new = s.passphrase();
    assert_ne!(new, old, "the passphrase file holds a new passphrase");
    assert_eq!(mode(&s.pass), 0o600);
    assert_eq!([s.client("alice", "phone", &[]), s.client("alice", "laptop", &[])], before, "same keys after the change");
    let o = s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("VPN_PASSPHRASE", old.as_str())]);
    assert!(!o.ok, "the old passphrase still unlocks the store");
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["audit", "--json", "--action", "keys.passphrase"])).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");

    // --from-file: refused when others can read it, and nothing changes.
    let mine = s.root.join("my-pass");
    private_file(&mine, "correct horse battery staple\n", 0o644);
    s.secrets.borrow_mut().push("correct horse battery staple".into());
    let o = s.vpn(&["keys", "passphrase", "--from-file", mine.to_str().unwrap()]);
    assert!(!o.ok && o.err.contains(&format!("chmod 600 {}", mine.display())), "{}", o.err);
    assert_eq!(s.passphrase(), new);
    assert_eq!(s.client("alice", "phone", &[]), before[0]);
    // ... and taken at 0600.
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.ok(&["keys", "passphrase", "--from-file", mine.to_str().unwrap()]);
    assert_eq!(s.passphrase(), "correct horse battery staple");
    assert_eq!(mode(&s.pass), 0o600);
    assert_eq!(s.client("alice", "laptop", &[]), before[1]);
    assert_eq!(s.client("alice", "phone", &[("VPN_PASSPHRASE", "correct horse battery staple")]), before[0]);

    // With the passphrase from the environment, --generate cannot store the new one anywhere:
    // refused, and the store still opens with the current passphrase.
    let env_file = s.root.join("env-pass");
    private_file(&env_file, "correct horse battery staple\n", 0o600);
    let env = [("VPN_PASSPHRASE_FILE", env_file.to_str().unwrap())];
    let o = s.vpn_env(&["keys", "passphrase", "--generate"], &env);
    assert!(!o.ok && o.err.contains("--from-file"), "{}", o.err);
    assert_eq!(s.client("alice", "phone", &env), before[0], "a refused --generate left the store locked away");
    // --from-file with an environment source changes it and says to update that source.
    let next = s.root.join("next-pass");
    private_file(&next, "another long passphrase 42\n", 0o600);
    s.secrets.borrow_mut().push("another long passphrase 42".into());
    let o = s.vpn_env(&["keys", "passphrase", "--from-file", next.to_str().unwrap()], &env);
    assert!(o.ok && o.out.contains("VPN_PASSPHRASE_FILE"), "{}{}", o.out, o.err);
    assert_eq!(s.client("alice", "phone", &[("VPN_PASSPHRASE_FILE", next.to_str().unwrap())]), before[0]);
    std::fs::write(&s.pass, "another long passphrase 42\n").unwrap();
    s.assert_no_leaks();
}

#[test]
fn secrets_never_show_in_the_audit_trail_or_on_stderr() {
    let s = init();
    s.passphrase();
    // A tour of the commands that touch keys, with every config's secrets recorded.
    for d in ["phone", "laptop"] {
        s.client("alice", d, &[]);
    }
    let o = s.vpn(&["device", "rotate", "alice", "phone", "--no-qr"]);
    assert!(o.ok, "{}", o.err);
    s.record(&o.out);
    s.client("alice", "phone", &[]);
    let o = s.vpn(&["device", "rotate", "alice", "laptop", "--now", "--no-qr"]);
    assert!(o.ok, "{}", o.err);
    s.record(&o.out);
    s.ok(&["keys", "rotate", "--server"]);
    s.client("alice", "laptop", &[]);
    s.ok(&["keys", "status"]);
    s.ok(&["keys", "status", "--json"]);
    s.ok(&["keys", "passphrase", "--generate"]);
    s.passphrase();
    s.ok(&["device", "list", "--json"]);
    s.ok(&["device", "show", "alice", "phone", "--json"]);
    s.ok(&["device", "disable", "alice", "laptop"]);
    s.ok(&["device", "remove", "alice", "laptop"]);
    // Failures too.
    s.vpn_env(&["device", "show", "alice", "phone", "--client", "--no-qr"], &[("VPN_PASSPHRASE", "wrong")]);
    s.vpn(&["keys", "rotate", "--server"]);
    let conf = s.root.join("phone.conf");
    s.ok(&["device", "show", "alice", "phone", "-o", conf.to_str().unwrap()]);
    s.record(&std::fs::read_to_string(&conf).unwrap());
    assert!(s.secrets.borrow().len() >= 12);
    s.assert_no_leaks();
}
