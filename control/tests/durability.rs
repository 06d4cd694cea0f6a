//! Durability: atomic file replacement under injected faults, under `SIGKILL` at each step and at
//! random moments, and on a full (tiny tmpfs) file system; the same full file system under the
//! SQLite store and the audit log; the writers' lock.
//!
//! The tiny file systems are mounted, so those tests need root; run as another user they are
//! skipped with a message (as root, a mount that fails is a test failure). Killed processes are
//! this test binary run again with `DURABILITY_CHILD` set (see [`child_process_entry`]).
#![allow(unsafe_code)] // mount(2), umount2(2) and geteuid(2) for the tiny file systems.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use serde_json::json;
use vpn_control::audit_log::{self, AuditLog};
use vpn_control::durable::{self, LockError, Step, WriterLock};
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, SqliteStore, Store, StoreError};

const OLD: &[u8] = b"old content\n";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A content that differs from [`OLD`] in every byte and in length.
fn new_content(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'A' + (i % 26) as u8).collect()
}

// ---------------------------------------------------------------------------------------------
// Injected faults

#[test]
fn a_fault_at_any_step_leaves_the_old_file_or_the_new_one_and_no_temporary_file() {
    let new = new_content(100_000);
    for step in Step::ALL {
        for had_old in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vpn.toml");
            if had_old {
                durable::write_atomic(&path, OLD, 0o600).unwrap();
            }
            let mut seen = Vec::new();
            let err = durable::write_atomic_with(&path, &new, 0o600, &mut |s| {
                seen.push(s);
                if s == step {
                    Err(io::Error::other("injected fault"))
                } else {
                    Ok(())
                }
            })
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("cannot write {}: ", path.display())) && msg.ends_with("injected fault"), "{step:?}: {msg}");
            assert_eq!(seen.last(), Some(&step), "the hook saw the steps in order up to the fault");
            match (step, had_old) {
                // The rename happened; only the directory sync "failed".
                (Step::Renamed, _) => {
                    assert_eq!(std::fs::read(&path).unwrap(), new, "{step:?}");
                    assert!(msg.contains("syncing its directory") && msg.contains("new content is in place"), "{msg}");
                }
                (_, true) => assert_eq!(std::fs::read(&path).unwrap(), OLD, "{step:?}"),
                (_, false) => assert!(!path.exists(), "{step:?}: a failed first write creates nothing"),
            }
            let expected: Vec<String> = if path.exists() { vec!["vpn.toml".into()] } else { vec![] };
            assert_eq!(names(dir.path()), expected, "{step:?}: nothing left behind");
            if path.exists() {
                assert_eq!(mode(&path), 0o600);
            }
        }
    }
}

#[test]
fn without_faults_every_step_is_seen_and_the_mode_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    let mut seen = Vec::new();
    durable::write_atomic_with(&path, b"secret", 0o600, &mut |s| {
        seen.push(s);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Step::ALL);
    assert_eq!(std::fs::read(&path).unwrap(), b"secret");
    assert_eq!(mode(&path), 0o600);
    // A looser umask-independent mode is exact too, and replacing a 0644 file makes it 0600.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    durable::write_atomic(&path, b"secret 2", 0o600).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn a_temporary_file_is_private_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key");
    durable::write_atomic_with(&path, b"secret", 0o600, &mut |s| {
        if s == Step::Created {
            let tmp: Vec<String> = names(dir.path()).into_iter().filter(|n| n.starts_with(".key.tmp-")).collect();
            assert_eq!(tmp.len(), 1, "one temporary file beside the target");
            assert_eq!(mode(&dir.path().join(&tmp[0])), 0o600, "the final mode from creation on");
        }
        Ok(())
    })
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Killed processes

/// Not a test of its own: the body of the child processes the other tests kill. Does nothing
/// unless `DURABILITY_CHILD` is set:
/// - `step:STEP:PATH`: `write_atomic` of [`new_content`] to PATH, stopping at STEP;
/// - `loop:PATH`: `write_atomic` of two contents in turn to PATH, for ever;
/// - `lock:PATH`: takes the [`WriterLock`] PATH and keeps it.
///
/// Each prints `READY` when the parent may kill it.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var("DURABILITY_CHILD") else { return };
    let mut parts = spec.splitn(3, ':');
    let (kind, arg) = (parts.next().unwrap(), parts.next().unwrap());
    let ready = || {
        println!("READY");
        io::stdout().flush().unwrap();
    };
    let hold = || -> ! {
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    };
    match kind {
        "step" => {
            let path = PathBuf::from(parts.next().unwrap());
            let stop = Step::ALL.into_iter().find(|s| format!("{s:?}") == arg).unwrap();
            durable::write_atomic_with(&path, &new_content(100_000), 0o600, &mut |s| {
                if s == stop {
                    ready();
                    hold();
                }
                Ok(())
            })
            .unwrap();
        }
        "loop" => {
            let path = PathBuf::from(arg);
            let contents = [vec![b'a'; 200_000], vec![b'b'; 300_000]];
            for i in 0.. {
                durable::write_atomic(&path, &contents[i % 2], 0o600).unwrap();
                if i == 0 {
                    ready();
                }
            }
        }
        "lock" => {
            let _lock = WriterLock::acquire(Path::new(arg), Duration::ZERO).unwrap();
            ready();
            hold();
        }
        other => panic!("unknown child {other}"),
    }
}

/// Runs [`child_process_entry`] in a new process and waits for its `READY`.
// The child goes back to the caller, who kills and reaps it (or is reaped here before a panic).
#[allow(clippy::zombie_processes)]
fn spawn_child(spec: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env("DURABILITY_CHILD", spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            let status = child.wait();
            panic!("the child {spec} ended before it was ready: {status:?}");
        }
        // libtest prints "test child_process_entry ... " before the test's own output.
        if line.trim_end().ends_with("READY") {
            return child;
        }
    }
}

/// SIGKILL (what `Child::kill` sends on Unix), and reap.
fn sigkill(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigkill_at_any_step_leaves_the_old_file_or_the_new_one() {
    for step in Step::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpn.toml");
        durable::write_atomic(&path, OLD, 0o600).unwrap();
        sigkill(spawn_child(&format!("step:{step:?}:{}", path.display())));
        let now = std::fs::read(&path).unwrap();
        if step == Step::Renamed {
            assert_eq!(now, new_content(100_000), "{step:?}");
        } else {
            assert_eq!(now, OLD, "{step:?}");
        }
        assert_eq!(mode(&path), 0o600);
        // A kill before the rename may leave the temporary file: private, and never read.
        for leftover in names(dir.path()).into_iter().filter(|n| n != "vpn.toml") {
            assert!(leftover.starts_with(".vpn.toml.tmp-") && step != Step::Renamed, "{step:?}: {leftover}");
            assert_eq!(mode(&dir.path().join(&leftover)), 0o600);
        }
        // The next write is not disturbed by it.
        durable::write_atomic(&path, b"after", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
    }
}

#[test]
fn sigkill_at_random_moments_leaves_one_whole_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    for _ in 0..15 {
        let child = spawn_child(&format!("loop:{}", path.display()));
        std::thread::sleep(Duration::from_micros(u64::from(OsRng.next_u32() % 30_000)));
        sigkill(child);
        let now = std::fs::read(&path).unwrap();
        assert!(now == vec![b'a'; 200_000] || now == vec![b'b'; 300_000], "a mix of {} bytes", now.len());
        assert_eq!(mode(&path), 0o600);
    }
    // Leftovers are at most one per killed process, all private.
    let leftovers: Vec<String> = names(dir.path()).into_iter().filter(|n| n != "state").collect();
    assert!(leftovers.len() <= 15, "{leftovers:?}");
    for l in leftovers {
        assert!(l.starts_with(".state.tmp-"), "{l}");
        assert_eq!(mode(&dir.path().join(l)), 0o600);
    }
}

// ---------------------------------------------------------------------------------------------
// A full file system

fn euid() -> u32 {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// A tiny tmpfs mounted on a new temporary directory, unmounted on drop.
struct Tmpfs {
    target: CString,
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one of `size` (e.g. "256k"); `None` (the test is skipped) when not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let data = CString::new(format!("size={size},mode=0700")).unwrap();
        // SAFETY: all four strings are valid NUL-terminated C strings that outlive the call;
        // tmpfs reads `data` as its option string.
        let rc = unsafe { libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), 0, data.as_ptr().cast()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if euid() != 0 {
                eprintln!("skipped: mounting a tiny tmpfs needs root ({e}); run the tests as root to include the full-disk checks");
                return None;
            }
            panic!("cannot mount a tmpfs on {} as root: {e}", dir.path().display());
        }
        Some(Tmpfs { target, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // SAFETY: `target` is a valid C string naming the mount point this value mounted.
        if unsafe { libc::umount2(self.target.as_ptr(), 0) } != 0 {
            // Something still uses it (a failing test's open file): detach it instead.
            // SAFETY: as above.
            unsafe { libc::umount2(self.target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Fills the file system of `dir` with a file `filler`, then frees `leave` bytes of it.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = [0x55u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(leave)).unwrap();
    f.sync_all().unwrap();
    path
}

#[test]
fn a_full_disk_fails_the_write_with_a_clear_error_and_keeps_the_old_file() {
    let Some(fs) = Tmpfs::mount("256k") else { return };
    let path = fs.path().join("vpn.toml");
    durable::write_atomic(&path, OLD, 0o600).unwrap();
    let filler = fill(fs.path(), 0);
    let err = durable::write_atomic(&path, &new_content(64 * 1024), 0o600).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("cannot write {}: ", path.display())), "{msg}");
    assert!(msg.contains("No space left on device (os error 28)"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), OLD);
    assert_eq!(names(fs.path()), ["filler", "vpn.toml"], "no temporary file left behind");
    assert_eq!(mode(&path), 0o600);

    // The configuration's save says the same, in its own words.
    let config = ServerConfig::generated_default(&mut OsRng, "vpn.example.com".into());
    let cpath = fs.path().join("etc/vpn.toml");
    let err = config.save(&cpath).unwrap_err().to_string();
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!cpath.exists());

    // Room again: the same write succeeds.
    std::fs::remove_file(&filler).unwrap();
    durable::write_atomic(&path, &new_content(64 * 1024), 0o600).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), new_content(64 * 1024));
    config.save(&cpath).unwrap();
    assert_eq!(ServerConfig::load(&cpath).unwrap(), config);
    assert_eq!(mode(&cpath), 0o600);
}

/// `PRAGMA integrity_check` on its own connection.
fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<String> =
        conn.prepare("PRAGMA integrity_check").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    rows.join("; ")
}

/// The users in the store, and how many `user.add` audit rows each has.
fn users_and_audit(store: &SqliteStore) -> (BTreeSet<String>, Vec<(String, usize)>) {
    let users: BTreeSet<String> = store.users().unwrap().into_iter().map(|u| u.name).collect();
    let audit = store.audit(1_000_000).unwrap();
    let counts = users.iter().map(|u| (u.clone(), audit.iter().filter(|e| e.action == "user.add" && &e.target == u).count())).collect();
    (users, counts)
}

#[test]
fn a_full_disk_fails_store_changes_cleanly_and_keeps_every_reported_one() {
    let Some(fs) = Tmpfs::mount("1m") else { return };
    let db = fs.path().join("vpn.db");
    let mut store = SqliteStore::open(&db).unwrap();
    let actor = Actor::local();
    store.add_user("before", &actor).unwrap();
    let filler = fill(fs.path(), 96 * 1024);

    let mut added = BTreeSet::from(["before".to_string()]);
    let mut failures = 0;
    for i in 0..20_000 {
        let name = format!("user{i:05}-{}", "x".repeat(40));
        match store.add_user(&name, &actor) {
            Ok(_) => assert!(added.insert(name)),
            Err(e) => {
                assert!(matches!(e, StoreError::DiskFull), "not a clear disk-full error: {e:?}");
                assert!(e.to_string().contains("full"), "{e}");
                failures += 1;
                // Keep trying a little: repeated failures change nothing either.
                if failures == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(failures, 5, "the store never filled the disk ({} users added)", added.len());
    assert!(added.len() > 1, "some users fit before the disk was full");
    drop(store);

    // Still full: opening again either works and shows exactly the reported users, or fails
    // with an error that is not corruption.
    match SqliteStore::open(&db) {
        Ok(store) => assert_eq!(users_and_audit(&store).0, added),
        Err(e) => assert!(!matches!(e, StoreError::Corrupt(_)), "{e}"),
    }

    // With room again: every reported user is there, nothing else, each with one audit row,
    // and the database is sound.
    std::fs::remove_file(&filler).unwrap();
    let mut store = SqliteStore::open(&db).unwrap();
    let (users, audit) = users_and_audit(&store);
    assert_eq!(users, added);
    assert!(audit.iter().all(|(_, n)| *n == 1), "{audit:?}");
    assert_eq!(integrity(&db), "ok");
    store.add_user("after", &actor).unwrap();
    drop(store);
    assert_eq!(integrity(&db), "ok");
}

#[test]
fn a_full_disk_fails_an_audit_append_and_keeps_the_earlier_records() {
    let Some(fs) = Tmpfs::mount("256k") else { return };
    let path = fs.path().join("audit/audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    log.append(&json!({"id": 1})).unwrap();
    let filler = fill(fs.path(), 0);
    let big = json!({"id": 2, "details": "z".repeat(64 * 1024)});
    let err = log.append(&big).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    std::fs::remove_file(&filler).unwrap();
    log.append(&json!({"id": 3})).unwrap();
    let contents = audit_log::read(&path).unwrap();
    assert_eq!(contents.records, [json!({"id": 1}), json!({"id": 3})]);
    assert_eq!(contents.torn_tail, None);
}

// ---------------------------------------------------------------------------------------------
// The writers' lock

#[test]
fn the_writer_lock_is_exclusive_names_its_holder_and_is_released_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let lock = WriterLock::acquire(&path, Duration::ZERO).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(lock.path(), path);

    // Another thread waits, then gives up naming us.
    let p = path.clone();
    let err = std::thread::spawn(move || WriterLock::acquire(&p, Duration::from_millis(150)).unwrap_err()).join().unwrap();
    match &err {
        LockError::Busy { holder, waited, .. } => {
            assert_eq!(*holder, Some(std::process::id()));
            assert!(*waited >= Duration::from_millis(150));
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("pid {}", std::process::id())) && msg.contains(".lock") && msg.contains("try again"), "{msg}");

    // A waiter gets it as soon as the holder lets go.
    let p = path.clone();
    let waiter = std::thread::spawn(move || WriterLock::acquire(&p, Duration::from_secs(30)).map(drop));
    std::thread::sleep(Duration::from_millis(100));
    drop(lock);
    waiter.join().unwrap().unwrap();
    WriterLock::acquire(&path, Duration::ZERO).unwrap();
}

#[test]
fn the_writer_lock_serializes_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let inside = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (path, inside) = (path.clone(), inside.clone());
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let _lock = WriterLock::acquire(&path, Duration::from_secs(30)).unwrap();
                    assert_eq!(inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0, "two writers at once");
                    std::thread::sleep(Duration::from_micros(200));
                    inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_killed_holder_never_leaves_a_stale_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".lock");
    let child = spawn_child(&format!("lock:{}", path.display()));
    let pid = child.id();
    match WriterLock::acquire(&path, Duration::ZERO) {
        Err(LockError::Busy { holder, .. }) => assert_eq!(holder, Some(pid)),
        other => panic!("the child's lock was not seen: {other:?}"),
    }
    sigkill(child);
    WriterLock::acquire(&path, Duration::from_secs(5)).unwrap();
}

#[test]
fn a_missing_lock_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/.lock");
    let err = WriterLock::acquire(&path, Duration::ZERO).unwrap_err();
    assert!(matches!(err, LockError::Io { .. }), "{err:?}");
    assert!(err.to_string().starts_with(&format!("cannot lock {}", path.display())), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The audit log

#[test]
fn concurrent_audit_appends_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log/audit.jsonl");
    let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    // Well over PIPE_BUF, so nothing but O_APPEND and one write keep lines whole.
                    log.append(&json!({"thread": t, "i": i, "details": {"pad": "p".repeat(8192 + i)}})).unwrap();
                }
            })
        })
        .collect();
    // And a second writer with its own descriptor, as another process would have.
    let other = AuditLog::open(&path).unwrap();
    for i in 0..100 {
        other.append(&json!({"thread": 99, "i": i, "details": {}})).unwrap();
    }
    for t in threads {
        t.join().unwrap();
    }
    let contents = audit_log::read(&path).unwrap();
    assert_eq!(contents.torn_tail, None);
    assert!(contents.damaged_lines.is_empty());
    assert_eq!(contents.records.len(), 700);
    for t in (0..6).chain([99]) {
        let mine: Vec<u64> = contents.records.iter().filter(|r| r["thread"] == t).map(|r| r["i"].as_u64().unwrap()).collect();
        assert_eq!(mine, (0..100).collect::<Vec<_>>(), "thread {t}'s records, in order");
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 700);
    assert!(text.ends_with('\n'));
}

#[test]
fn concurrent_exports_write_each_record_once_and_in_order() {
    // As the store uses it: each writer commits a row to a shared source, then copies whatever
    // the log misses. Each writer has its own descriptor, as separate processes would.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let source = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (path, source) = (path.clone(), source.clone());
            std::thread::spawn(move || {
                let log = AuditLog::open(&path).unwrap();
                for _ in 0..50 {
                    {
                        let mut rows = source.lock().unwrap();
                        let id = rows.len() as i64 + 1;
                        rows.push(json!({"id": id, "who": t, "details": {"pad": "p".repeat(3000)}}));
                    }
                    log.append_missing(|after| {
                        let rows = source.lock().unwrap();
                        Ok(rows.iter().filter(|r| r["id"].as_i64().unwrap() > after.unwrap_or(0)).cloned().collect())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ids: Vec<i64> = audit_log::read_all(&path).unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());
}

#[test]
fn a_torn_last_audit_line_is_skipped_and_the_next_record_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for id in 1..=3 {
        log.append(
            &json!({"id": id, "at": 1_700_000_000, "who": "root", "origin": "cli", "action": "user.add", "target": "u", "details": {}}),
        )
        .unwrap();
    }
    drop(log);
    // Cut the last record in half, as a crash during its write could.
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 40).unwrap();
    let contents = audit_log::read(&path).unwrap();
    assert_eq!(contents.records.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
    assert!(contents.torn_tail.is_some());
    assert_eq!(audit_log::read_all(&path).unwrap().len(), 2);
    // Appending after the torn line ends it first: the new record stays readable.
    AuditLog::open(&path).unwrap().append(&json!({"id": 4})).unwrap();
    let contents = audit_log::read(&path).unwrap();
    assert_eq!(contents.records.iter().map(|r| r["id"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 4]);
    assert_eq!(contents.damaged_lines, [3]);
    assert_eq!(contents.torn_tail, None);
    assert!(audit_log::read(&dir.path().join("missing")).unwrap_err().to_string().contains("cannot read the audit log"));
}
