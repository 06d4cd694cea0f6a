//! Bulk operations end to end with the real `vpn` binary: `vpn user import` (CSV and JSON,
//! `--dry-run`, all or nothing, resume after a SIGKILL, `--list`, `--rollback`), `vpn user
//! export` and its round trip, and `vpn user disable|enable|remove` by `--match`, `--import`,
//! `--all`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Setup {
    _dir: tempfile::TempDir,
    config: PathBuf,
    root: PathBuf,
}

fn command(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpn"));
    c.arg("-c").arg(config).args(args).env_remove("VPN_CONFIG").env_remove("VPN_PASSPHRASE");
    c
}

fn vpn(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = command(config, args).output().expect("run vpn");
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// A server config and store with an IPv4 pool of `pool` and an IPv6 /64.
fn init(pool: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("etc/vpn.toml");
    let store = root.join("lib/vpn.db");
    let iface = format!("vb{}", std::process::id() % 100_000);
    let (ok, out, err) = vpn(
        &config,
        &[
            "init",
            "--yes",
            "--endpoint",
            "vpn.example.net",
            "--ipv4-pool",
            pool,
            "--ipv6-pool",
            "fd67:1::/64",
            "--egress",
            "eth9",
            // A name no real server uses, so no management socket of this host answers.
            "--interface",
            &iface,
            "--store",
            store.to_str().unwrap(),
        ],
    );
    assert!(ok, "init failed: {out}{err}");
    Setup { _dir: dir, config, root }
}

impl Setup {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        vpn(&self.config, args)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.root.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let (ok, out, err) = self.run(args);
        assert!(ok, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// (user, enabled) sorted by name.
    fn users(&self) -> Vec<(String, bool)> {
        let list = self.json(&["user", "list", "--json"]);
        list.as_array().unwrap().iter().map(|u| (u["name"].as_str().unwrap().to_owned(), u["enabled"].as_bool().unwrap())).collect()
    }

    /// (user, device, enabled, expires_at) sorted by (user, device).
    fn devices(&self) -> Vec<(String, String, bool, Option<i64>)> {
        let list = self.json(&["device", "list", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["user"].as_str().unwrap().to_owned(),
                    d["name"].as_str().unwrap().to_owned(),
                    d["enabled"].as_bool().unwrap(),
                    d["expires_at"].as_i64(),
                )
            })
            .collect()
    }

    fn imports(&self) -> Value {
        self.json(&["user", "import", "--list", "--json"])
    }
}

const JAN_2027: i64 = 1_798_761_600;

const CSV: &str = "\
# people of the example office
user,enabled,device,device_enabled,expires
alice,true,phone,,2027-01-01
alice,,laptop,false,
bob,false,,,
carol,,tablet,,2027-01-01T12:00:00Z
";

const JSON: &str = r#"[
  {"user": "dave", "devices": [{"name": "phone"}, {"name": "laptop", "enabled": false, "expires": "2027-01-01"}]},
  {"user": "erin", "enabled": false, "devices": [{"name": "phone"}]},
  {"user": "fay"}
]"#;

#[test]
fn imports_csv_and_json() {
    let s = init("10.67.0.0/24");
    let csv = s.write("people.csv", CSV);
    let (ok, out, err) = s.run(&["user", "import", &csv]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("3 users and 3 devices added"), "{out}");
    let json = s.write("people.json", JSON);
    let (ok, out, err) = s.run(&["user", "import", &json]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("3 users and 3 devices added"), "{out}");
    let t = |s: &str| s.to_owned();
    assert_eq!(
        s.users(),
        [(t("alice"), true), (t("bob"), false), (t("carol"), true), (t("dave"), true), (t("erin"), false), (t("fay"), true)]
    );
    assert_eq!(
        s.devices(),
        [
            (t("alice"), t("laptop"), false, None),
            (t("alice"), t("phone"), true, Some(JAN_2027)),
            (t("carol"), t("tablet"), true, Some(JAN_2027 + 12 * 3600)),
            (t("dave"), t("laptop"), false, Some(JAN_2027)),
            (t("dave"), t("phone"), true, None),
            (t("erin"), t("phone"), true, None),
        ]
    );
    // Every device got its own addresses from the pools.
    let list = s.json(&["device", "list", "--json"]);
    let v4: HashSet<&str> = list.as_array().unwrap().iter().map(|d| d["ipv4"].as_str().unwrap()).collect();
    let v6: HashSet<&str> = list.as_array().unwrap().iter().map(|d| d["ipv6"].as_str().unwrap()).collect();
    assert_eq!((v4.len(), v6.len()), (6, 6));
    // A format given outright wins over the name; stdin works too.
    let mut child = command(&s.config, &["user", "import", "-", "--format", "json", "--dry-run"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(JSON.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 users and 0 devices to add; 3 users and 3 devices already present"));
    // Both imports are recorded.
    let imports = s.imports();
    let states: Vec<(&str, i64, i64)> = imports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["state"].as_str().unwrap(), r["done"].as_i64().unwrap(), r["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(states, [("done", 3, 3), ("done", 3, 3)]);
    // The audit trail says they came from an import.
    let audit = s.json(&["audit", "--json", "--limit", "100", "--action", "user.add"]);
    assert!(audit.as_array().unwrap().iter().all(|e| e["origin"] == "import"), "{audit}");
}

#[test]
fn dry_run_lists_every_problem_with_its_line_and_changes_nothing() {
    let s = init("10.67.0.0/24");
    assert!(s.run(&["user", "add", "alice"]).0);
    assert!(s.run(&["user", "disable", "alice"]).0);
    let bad = s.write(
        "bad.csv",
        "user,device,expires\nalice,phone,\nbob,my phone,\nbob,tab,2027-02-30\ncarol,tab,\ncarol,tab,\n-dan,,\nerin,x,y,z\n",
    );
    let (ok, out, err) = s.run(&["user", "import", &bad, "--dry-run"]);
    assert!(!ok, "{out}");
    for (line, what) in [
        (2, "alice exists already and is disabled"),
        (3, "my phone"),
        (4, "2027-02-30"),
        (6, "already listed at line 5"),
        (7, "-dan"),
        (8, "4 fields"),
    ] {
        assert!(
            err.contains(&format!("bad.csv:{line}: ")) && err.lines().any(|l| l.contains(&format!(":{line}: ")) && l.contains(what)),
            "line {line} {what}: {err}"
        );
    }
    assert!(err.contains("6 problems") && err.contains("nothing was changed"), "{err}");
    // The same problems without --dry-run: still nothing changed.
    let (ok, _, err2) = s.run(&["user", "import", &bad]);
    assert!(!ok && err2.contains("6 problems"), "{err2}");
    assert_eq!(s.users().len(), 1);
    assert!(s.imports().as_array().unwrap().is_empty(), "no import was recorded");

    // JSON: syntax errors and element problems carry their lines.
    let broken = s.write("broken.json", "[\n  {\"user\": \"x\"},\n  {\"user\": \"y\",}\n]\n");
    let (ok, _, err) = s.run(&["user", "import", &broken, "--dry-run"]);
    assert!(!ok && err.contains("broken.json:3: not valid JSON"), "{err}");
    let wrong = s.write(
        "wrong.json",
        "[\n  {\"user\": \"x\",\n   \"devices\": [\n     {\"name\": \"a\", \"expires\": \"later\"}]},\n  {\"usr\": \"y\"}\n]\n",
    );
    let (ok, _, err) = s.run(&["user", "import", &wrong, "--dry-run"]);
    assert!(!ok && err.contains("wrong.json:4: expires") && err.contains("wrong.json:5: unknown key \"usr\""), "{err}");

    // A valid file: the dry run says what it would do, and does not.
    let good = s.write("good.csv", "user,device\nbob,phone\nbob,laptop\ncarol,\n");
    let (ok, out, err) = s.run(&["user", "import", &good, "--dry-run"]);
    assert!(ok, "{err}");
    assert!(out.contains("2 users and 2 devices to add; 0 users and 0 devices already present") && out.contains("dry run"), "{out}");
    assert_eq!(s.users().len(), 1);
    assert!(s.devices().is_empty());
}

#[test]
fn one_bad_row_or_a_full_pool_changes_nothing() {
    // 10.67.0.0/28: devices may take .2 to .14, 13 addresses.
    let s = init("10.67.0.0/28");
    let mut text = String::from("user,device\n");
    for i in 0..12 {
        text.push_str(&format!("user{i},phone\n"));
    }
    text.push_str("user12,bad/name\n");
    let f = s.write("one-bad.csv", &text);
    let (ok, _, err) = s.run(&["user", "import", &f]);
    assert!(!ok && err.contains("one-bad.csv:14: invalid device name"), "{err}");
    assert!(s.users().is_empty());
    // One device too many for the pool: refused before any change, at the line that overflows.
    let mut text = String::from("user,device\n");
    for i in 0..14 {
        text.push_str(&format!("user{i},phone\n"));
    }
    let f = s.write("too-many.csv", &text);
    let (ok, _, err) = s.run(&["user", "import", &f]);
    assert!(!ok && err.contains("too-many.csv:15: no free IPv4 address left for user13/phone"), "{err}");
    assert!(s.users().is_empty() && s.devices().is_empty());
    // Thirteen fit.
    let text: String = text.lines().take(14).map(|l| format!("{l}\n")).collect();
    let f = s.write("just-right.csv", &text);
    let (ok, out, err) = s.run(&["user", "import", &f]);
    assert!(ok && out.contains("13 users and 13 devices added"), "{out}{err}");
}

#[test]
fn export_then_import_into_an_empty_store_round_trips() {
    let s = init("10.67.0.0/24");
    assert!(s.run(&["user", "import", &s.write("a.csv", CSV)]).0);
    assert!(s.run(&["user", "import", &s.write("b.json", JSON)]).0);
    assert!(s.run(&["user", "add", "zed"]).0);
    for format in ["csv", "json"] {
        let file = s.root.join(format!("export.{format}"));
        let (ok, _, err) = s.run(&["user", "export", "-o", file.to_str().unwrap()]);
        assert!(ok, "{err}");
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains("PrivateKey") && !text.to_lowercase().contains("preshared"), "no secret: {text}");
        // The same on stdout with --format.
        let (ok, out, _) = s.run(&["user", "export", "--format", format]);
        assert!(ok);
        assert_eq!(out, text);
        let other = init("10.68.0.0/24");
        let (ok, out, err) = other.run(&["user", "import", file.to_str().unwrap()]);
        assert!(ok, "{format}: {out}{err}");
        assert_eq!(other.users(), s.users(), "{format}");
        assert_eq!(other.devices(), s.devices(), "{format}");
        // Importing the export back into the same store is a no-op.
        let (ok, out, _) = s.run(&["user", "import", file.to_str().unwrap()]);
        assert!(ok && out.contains("nothing to do"), "{out}");
    }
}

/// A CSV of `n` users with one device each.
fn many(n: usize) -> String {
    let mut text = String::from("user,device\n");
    for i in 0..n {
        text.push_str(&format!("user{i:05},phone\n"));
    }
    text
}

#[test]
fn an_import_killed_mid_way_resumes_to_exactly_the_intended_set() {
    const N: usize = 3_000;
    let s = init("10.67.0.0/20");
    let file = s.write("many.csv", &many(N));
    let mut child =
        command(&s.config, &["user", "import", &file, "--batch", "100"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Kill it once some batches are committed and before the last one.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut killed_at = None;
    let mut finished = None;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            finished = Some(status);
            break;
        }
        let imports = s.imports();
        let done = imports.as_array().unwrap().first().map_or(0, |r| r["done"].as_i64().unwrap());
        if done >= 100 {
            killed_at = Some(done);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill(); // SIGKILL (a no-op if it has exited)
    child.wait().unwrap();
    assert!(finished.is_none(), "the import finished ({finished:?}) before it could be interrupted: make the test file larger");
    let killed_at = killed_at.expect("the import never got going");
    let imports = s.imports();
    let record = &imports.as_array().unwrap()[0];
    assert_eq!(record["state"], "running", "{record}");
    let done = record["done"].as_i64().unwrap();
    assert!(done >= killed_at && (done as usize) < N, "killed mid-way: {done}");
    let users = s.users();
    assert_eq!(users.len() as i64, done, "whole batches only: the record counts what is committed");
    assert_eq!(users.len() % 100, 0);
    // The plan of a re-run sees the rest.
    let (ok, out, _) = s.run(&["user", "import", &file, "--dry-run"]);
    assert!(
        ok && out.contains(&format!(
            "{} users and {} devices to add; {done} users and {done} devices already present",
            N - done as usize,
            N - done as usize
        )) && out.contains("resume the interrupted import 1"),
        "{out}"
    );

    let (ok, out, err) = s.run(&["user", "import", &file, "--batch", "100"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("resuming import 1"), "{err}");
    let users = s.users();
    let expected: Vec<(String, bool)> = (0..N).map(|i| (format!("user{i:05}"), true)).collect();
    assert_eq!(users, expected, "exactly the file's users, none missing, none twice");
    let list = s.json(&["device", "list", "--json"]);
    let devices = list.as_array().unwrap();
    assert_eq!(devices.len(), N);
    let v4: HashSet<&str> = devices.iter().map(|d| d["ipv4"].as_str().unwrap()).collect();
    let v6: HashSet<&str> = devices.iter().map(|d| d["ipv6"].as_str().unwrap()).collect();
    let keys: HashSet<&str> = devices.iter().map(|d| d["public_key"].as_str().unwrap()).collect();
    assert_eq!((v4.len(), v6.len(), keys.len()), (N, N, N), "addresses and keys unique");
    let imports = s.imports();
    assert_eq!(imports.as_array().unwrap().len(), 1, "the same import, resumed: {imports}");
    assert_eq!(
        (imports[0]["state"].as_str(), imports[0]["done"].as_i64(), imports[0]["total"].as_i64()),
        (Some("done"), Some(N as i64), Some(N as i64))
    );
    // All of it is one import: a rollback removes every user of both runs.
    let (ok, out, err) = s.run(&["user", "import", "--rollback", "1", "--yes"]);
    assert!(ok && out.contains(&format!("{N} users removed")), "{out}{err}");
    assert!(s.users().is_empty());
}

#[test]
fn rollback_removes_exactly_what_an_import_added() {
    let s = init("10.67.0.0/24");
    assert!(s.run(&["user", "add", "keep"]).0);
    assert!(s.run(&["device", "add", "keep", "own", "--no-qr"]).0);
    let f = s.write("add.csv", "user,device\nkeep,own\nkeep,imported\nnew1,phone\nnew2,\n");
    let (ok, out, err) = s.run(&["user", "import", &f]);
    assert!(ok && out.contains("import 1"), "{out}{err}");
    let other = s.write("other.csv", "user\nlater\n");
    assert!(s.run(&["user", "import", &other]).0);
    // Without --yes: the list, and nothing removed.
    let (ok, out, err) = s.run(&["user", "import", "--rollback", "1"]);
    assert!(!ok && err.contains("--yes") && out.contains("new1") && out.contains("new2") && !out.contains("keep"), "{out}{err}");
    assert_eq!(s.users().len(), 4);
    let (ok, out, err) = s.run(&["user", "import", "--rollback", "1", "--yes"]);
    assert!(ok && out.contains("2 users removed"), "{out}{err}");
    let t = |s: &str| s.to_owned();
    assert_eq!(s.users(), [(t("keep"), true), (t("later"), true)]);
    assert_eq!(s.devices().into_iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(), [(t("keep"), t("own"))]);
    let (ok, out, _) = s.run(&["user", "import", "--list"]);
    assert!(ok && out.lines().any(|l| l.starts_with("1 ") && l.contains("rolled_back")), "{out}");
    let (ok, _, err) = s.run(&["user", "import", "--rollback", "1", "--yes"]);
    assert!(!ok && err.contains("already rolled back"), "{err}");
    let (ok, _, err) = s.run(&["user", "import", "--rollback", "99", "--yes"]);
    assert!(!ok && err.contains("--list"), "{err}");
}

#[test]
fn disable_enable_and_remove_by_filter() {
    let s = init("10.67.0.0/24");
    let f = s.write("t.csv", "user,device\ntest-1,a\ntest-2,a\ntest-3,\n");
    assert!(s.run(&["user", "import", &f]).0);
    assert!(s.run(&["user", "add", "alice"]).0);
    assert!(s.run(&["user", "add", "test"]).0);

    let (ok, out, err) = s.run(&["user", "disable", "--match", "test-*"]);
    assert!(ok, "{err}");
    assert!(out.contains("test-1") && out.contains("test-3") && out.contains("3 users disabled"), "{out}");
    let t = |s: &str| s.to_owned();
    assert_eq!(s.users(), [(t("alice"), true), (t("test"), true), (t("test-1"), false), (t("test-2"), false), (t("test-3"), false)]);
    let (ok, out, _) = s.run(&["user", "disable", "--match", "test-?"]);
    assert!(ok && out.contains("disabled already"), "{out}");
    let (ok, out, err) = s.run(&["user", "enable", "--import", "1", "--match", "*-2"]);
    assert!(ok && out.contains("1 user enabled"), "{out}{err}");
    assert_eq!(s.users()[3], (t("test-2"), true));
    let (ok, _, err) = s.run(&["user", "disable", "--match", "nobody*"]);
    assert!(!ok && err.contains("no user matching"), "{err}");
    // Name and selection exclude each other; one of them is needed.
    assert!(!s.run(&["user", "disable", "alice", "--all"]).0);
    assert!(!s.run(&["user", "disable"]).0);
    assert!(!s.run(&["user", "remove", "--all", "--match", "x"]).0);

    // Remove needs --yes, and lists what it would remove.
    let (ok, out, err) = s.run(&["user", "remove", "--match", "test-*"]);
    assert!(!ok && err.contains("add --yes") && out.contains("test-1") && !out.contains("alice"), "{out}{err}");
    assert_eq!(s.users().len(), 5);
    let (ok, out, err) = s.run(&["user", "remove", "--match", "test-*", "--yes"]);
    assert!(ok && out.contains("3 users removed, with 2 devices"), "{out}{err}");
    assert_eq!(s.users(), [(t("alice"), true), (t("test"), true)]);
    let (ok, _, _) = s.run(&["user", "disable", "--all"]);
    assert!(ok);
    assert!(s.users().iter().all(|u| !u.1));
    let (ok, out, _) = s.run(&["user", "remove", "--all", "--yes"]);
    assert!(ok && out.contains("2 users removed"), "{out}");
    assert!(s.users().is_empty());
    // One user by name still works as before.
    assert!(s.run(&["user", "add", "solo"]).0);
    assert!(s.run(&["user", "disable", "solo"]).0);
    assert!(s.run(&["user", "remove", "solo"]).0);
}
