//! Durability of the CLI's changes: `vpn user add`, `vpn device add` and `vpn init --reconfigure`
//! killed with SIGKILL at random moments leave a store and a configuration that are whole: every
//! change is there completely (with its audit row and decryptable keys) or not at all.
//! (Faults at each step of an atomic write, full disks and the writers' lock are tested in
//! control/tests/durability.rs.)

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use vpn_control::server_config::ServerConfig;
use vpn_control::store::{SqliteStore, Store};

fn command(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpn"));
    // No server: the CLI says the change waits for `vpn up`. Never a real socket of this host.
    c.arg("-c").arg(config).args(args).env_remove("VPN_CONFIG");
    c
}

fn vpn(config: &Path, args: &[&str]) -> Output {
    command(config, args).output().expect("run vpn")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A random delay in 0..max, from the clock's low bits (no RNG dependency needed for this).
fn jitter(max: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let x = u64::from(nanos).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20;
    Duration::from_micros(x % max.as_micros() as u64)
}

/// How long `vpn ARGS` takes when left alone (at least 1 ms): kills are spread over that span,
/// so that they land before, during and after the change's commit.
fn duration_of(config: &Path, args: &[&str]) -> Duration {
    let start = Instant::now();
    let out = vpn(config, args);
    assert!(out.status.success(), "vpn {args:?}: {}", text(&out));
    start.elapsed().max(Duration::from_millis(1))
}

/// Starts `vpn ARGS`, kills it (SIGKILL) after `delay` unless it finished; says whether it
/// finished successfully on its own.
fn run_and_kill(config: &Path, args: &[&str], delay: Duration) -> bool {
    let mut child: Child = command(config, args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + delay;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() >= deadline {
            // Child::kill sends SIGKILL on Unix.
            let _ = child.kill();
            let status = child.wait().unwrap();
            return status.success();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
    store: PathBuf,
}

fn init() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let config = root.join("etc/vpn.toml");
    let store = root.join("lib/vpn.db");
    let out = vpn(
        &config,
        &[
            "init",
            "--yes",
            "--endpoint",
            "vpn.example.net",
            "--port",
            "51999",
            "--ipv4-pool",
            "10.77.0.0/24",
            "--ipv6-pool",
            "fd77:1::/64",
            "--egress",
            "eth9",
            // A name no real server uses, so no management socket of this host answers.
            "--interface",
            &format!("vd{}", std::process::id() % 100_000),
            "--store",
            store.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "init failed: {}", text(&out));
    Setup { _dir: dir, root, config, store }
}

/// `PRAGMA integrity_check` through the sqlite3 shell, or `None` if it is not installed.
fn integrity_check(db: &Path) -> Option<String> {
    match Command::new("sqlite3").arg(db).arg("PRAGMA integrity_check;").output() {
        Ok(o) => {
            assert!(o.status.success(), "sqlite3: {}", text(&o));
            Some(String::from_utf8(o.stdout).unwrap().trim().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run sqlite3: {e}"),
    }
}

#[test]
fn killed_user_and_device_adds_leave_whole_changes_only() {
    let s = init();
    let outputs = s.root.join("out");
    std::fs::create_dir(&outputs).unwrap();
    // What finished on its own: it must be there.
    let mut finished_users = BTreeSet::from(["calibration".to_string()]);
    let mut finished_devices = BTreeSet::from(["calibration".to_string()]);
    // A debug build that unlocks the store's keys takes longer than 30 ms: kill within 0-30 ms
    // or within the time a command really takes (plus a quarter), whichever is longer.
    let user_time = duration_of(&s.config, &["user", "add", "calibration"]).mul_f64(1.25).max(Duration::from_millis(30));
    let device_time =
        duration_of(&s.config, &["device", "add", "calibration", "phone", "--no-qr"]).mul_f64(1.25).max(Duration::from_millis(30));
    for i in 0..40 {
        let user = format!("u{i}");
        if run_and_kill(&s.config, &["user", "add", &user], jitter(user_time)) {
            finished_users.insert(user.clone());
        }
        let file = outputs.join(format!("{user}.conf"));
        let device_add = ["device", "add", &user, "phone", "--no-qr", "--output", file.to_str().unwrap()];
        if run_and_kill(&s.config, &device_add, jitter(device_time)) {
            finished_devices.insert(user);
        }
    }

    // The store opens (recovering its write-ahead log) and is sound.
    let store = SqliteStore::open(&s.store).expect("the store opens after the kills");
    let users: BTreeSet<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
    let devices = store.devices(None).unwrap();
    match integrity_check(&s.store) {
        Some(r) => assert_eq!(r, "ok"),
        None => eprintln!("note: sqlite3 is not installed; PRAGMA integrity_check not run (the store's own reads passed)"),
    }
    assert!(finished_users.is_subset(&users), "a user add that reported success is missing");
    let with_devices: BTreeSet<String> = devices.iter().map(|d| d.user.clone()).collect();
    assert!(finished_devices.is_subset(&with_devices), "a device add that reported success is missing");
    assert!(with_devices.is_subset(&users), "a device without its user");
    eprintln!(
        "{} users and {} devices present ({} and {} finished before the kill; kills within {user_time:?} and {device_time:?})",
        users.len() - 1,
        devices.len() - 1,
        finished_users.len() - 1,
        finished_devices.len() - 1
    );

    // Every present change has exactly one audit row, and every audit row's change is present.
    let audit = store.audit(1_000_000).unwrap();
    let count = |action: &str| -> BTreeMap<String, usize> {
        audit.iter().filter(|e| e.action == action).fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.target.clone()).or_default() += 1;
            m
        })
    };
    let user_rows = count("user.add");
    assert_eq!(user_rows.keys().cloned().collect::<BTreeSet<_>>(), users, "user.add rows match the users present");
    assert!(user_rows.values().all(|&n| n == 1), "{user_rows:?}");
    let device_rows = count("device.add");
    let labels: BTreeSet<String> = devices.iter().map(|d| d.label()).collect();
    assert_eq!(device_rows.keys().cloned().collect::<BTreeSet<_>>(), labels, "device.add rows match the devices present");
    assert!(device_rows.values().all(|&n| n == 1), "{device_rows:?}");
    drop(store);

    // Every device's keys decrypt: its client configuration can be written again, and an
    // exported file is either absent or exactly that configuration.
    for d in &devices {
        let out = vpn(&s.config, &["device", "show", &d.user, &d.name, "--client", "--no-qr"]);
        assert!(out.status.success(), "device {}: {}", d.label(), text(&out));
        let shown = String::from_utf8(out.stdout).unwrap();
        assert!(shown.contains("PrivateKey = ") && shown.contains("PresharedKey = "), "{shown}");
        let file = outputs.join(format!("{}.conf", d.user));
        if let Ok(exported) = std::fs::read_to_string(&file) {
            assert!(shown.contains(&exported), "a torn or stale client configuration in {}", file.display());
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
    // No client configuration exists for a device that does not.
    for entry in std::fs::read_dir(&outputs).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(user) = name.strip_suffix(".conf") {
            assert!(labels.contains(&format!("{user}/phone")), "{name} without its device");
        }
    }

    // And the store takes changes again.
    let out = vpn(&s.config, &["user", "add", "after"]);
    assert!(out.status.success(), "{}", text(&out));

    // The JSON-lines audit log, once a command has run after the kills, has every row of the
    // store's trail exactly once, in order (a row committed by a killed command is copied by the
    // next one), and no torn line: a kill cannot cut a write(2) short.
    let config = ServerConfig::load(&s.config).unwrap();
    if let Some(log) = &config.audit_log {
        let store_ids: Vec<i64> = {
            let store = SqliteStore::open(&s.store).unwrap();
            let mut ids: Vec<i64> = store.audit(1_000_000).unwrap().iter().map(|e| e.id).collect();
            ids.sort_unstable();
            ids
        };
        let contents = vpn_control::audit_log::read(log).unwrap();
        assert_eq!(contents.torn_tail, None);
        assert!(contents.damaged_lines.is_empty(), "{:?}", contents.damaged_lines);
        let log_ids: Vec<i64> = contents.records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(log_ids, store_ids, "the audit log file matches the store's trail");
        assert_eq!(std::fs::metadata(log).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_killed_configuration_rewrite_leaves_the_old_or_the_new_file() {
    let s = init();
    let span = duration_of(&s.config, &["init", "--yes", "--reconfigure", "--port", "51999"]).mul_f64(1.25).max(Duration::from_millis(30));
    let mut port = 51999;
    let (mut changed, mut finished_runs) = (0, 0);
    for i in 0..25u16 {
        let new_port = 52000 + i;
        let finished = run_and_kill(&s.config, &["init", "--yes", "--reconfigure", "--port", &new_port.to_string()], jitter(span));
        finished_runs += usize::from(finished);
        let config = ServerConfig::load(&s.config).expect("the configuration parses after a kill");
        assert!(config.listen_port == port || config.listen_port == new_port, "port {} after {port} -> {new_port}", config.listen_port);
        if finished {
            assert_eq!(config.listen_port, new_port);
        }
        changed += usize::from(config.listen_port != port);
        port = config.listen_port;
        assert_eq!(std::fs::metadata(&s.config).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A kill before the rename may leave a temporary file: private, and ignored. (The directory
    // also holds other private files, such as the store's passphrase.)
    for entry in std::fs::read_dir(s.config.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("vpn.toml") {
            assert!(name == "vpn.toml" || name.starts_with(".vpn.toml.tmp-"), "{name}");
        }
        assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{name}");
    }
    eprintln!("{changed} of 25 rewrites took effect ({finished_runs} finished before the kill; kills within {span:?})");
    let out = vpn(&s.config, &["init", "--yes", "--reconfigure", "--port", "51000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ServerConfig::load(&s.config).unwrap().listen_port, 51000);
}
