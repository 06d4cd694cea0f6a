//! Bounded external commands, background processes and interruption for `vpn bench`.
//!
//! Every external program runs under coreutils `timeout` (so it dies even if the bench itself is
//! killed with SIGKILL) in a process group of its own (so a Ctrl-C at the terminal reaches only the
//! bench, which then stops its children in order). On top of that the bench waits for each command
//! with its own deadline and gives up early when SIGINT, SIGTERM or SIGHUP arrives: the signal
//! handlers only set a flag, which every wait loop and every step checks.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Set by the signal handlers; never cleared.
static INTERRUPT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// How often wait loops look at child processes and at the interrupt flag.
const POLL: Duration = Duration::from_millis(5);

/// Makes SIGINT, SIGTERM and SIGHUP set the interrupt flag instead of killing the process.
pub(crate) fn install_signal_handlers() -> Result<()> {
    let flag = INTERRUPT.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, flag.clone()).with_context(|| format!("cannot install a handler for signal {sig}"))?;
    }
    Ok(())
}

/// Whether a termination signal has arrived.
pub(crate) fn interrupted() -> bool {
    INTERRUPT.get().is_some_and(|f| f.load(Ordering::SeqCst))
}

/// The error that unwinds the bench after a termination signal (the caller exits with 130).
#[derive(Debug)]
pub(crate) struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted by a signal")
    }
}

impl std::error::Error for Interrupted {}

/// Whether `e` (or its cause chain) is an [`Interrupted`].
pub(crate) fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Interrupted>().is_some())
}

/// Fails with [`Interrupted`] once a termination signal has arrived.
pub(crate) fn check_interrupt() -> Result<()> {
    if interrupted() {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Sleeps, waking up early with [`Interrupted`] on a termination signal.
pub(crate) fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// The last lines of standard error (or output), for error messages.
    pub(crate) fn tail(&self) -> String {
        let text = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        last_lines(text, 5)
    }
}

/// The last `n` non-empty lines of `text`, joined with " | ".
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// How a command line is shown in messages.
pub(crate) fn show(argv: &[&str]) -> String {
    argv.join(" ")
}

/// Runs `argv` with a time limit of `limit_s` seconds; a termination signal kills it and fails
/// with [`Interrupted`]. Does not look at the exit status.
pub(crate) fn run(argv: &[&str], limit_s: u64) -> Result<Output> {
    exec(argv, None, limit_s, true)
}

/// Like [`run`], feeding `input` on standard input.
pub(crate) fn run_with_input(argv: &[&str], input: &[u8], limit_s: u64) -> Result<Output> {
    exec(argv, Some(input), limit_s, true)
}

/// Runs `argv` and requires exit status 0; returns standard output.
pub(crate) fn check(argv: &[&str], limit_s: u64) -> Result<String> {
    let out = run(argv, limit_s)?;
    if !out.status.success() {
        bail!("`{}` failed ({}): {}", show(argv), out.status, out.tail());
    }
    Ok(out.stdout)
}

/// For cleanup: runs `argv` even after a termination signal, ignoring every failure. Returns
/// whether it exited with status 0.
pub(crate) fn cleanup(argv: &[&str], limit_s: u64) -> bool {
    exec(argv, None, limit_s, false).is_ok_and(|o| o.status.success())
}

/// For cleanup: like [`cleanup`], returning standard output of a successful run.
pub(crate) fn run_cleanup_output(argv: &[&str], limit_s: u64) -> Result<String> {
    let out = exec(argv, None, limit_s, false)?;
    if !out.status.success() {
        bail!("`{}` failed: {}", show(argv), out.tail());
    }
    Ok(out.stdout)
}

/// SIGKILL to one process.
pub(crate) fn kill_pid(pid: u32) {
    signal_pid(pid, "KILL");
}

fn reader<R: Read + Send + 'static>(mut r: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

fn collect(rx: Option<mpsc::Receiver<Vec<u8>>>) -> String {
    // Everything that could hold the pipe open is dead once the process group is gone; the
    // timeout only guards against a grandchild that escaped the group.
    let bytes = rx.and_then(|rx| rx.recv_timeout(Duration::from_secs(2)).ok()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn timeout_cmd(argv: &[&str], limit_s: u64, kill_after_s: u64) -> Result<Command> {
    let Some(first) = argv.first() else { bail!("empty command line") };
    if first.is_empty() {
        bail!("empty program name");
    }
    let mut cmd = Command::new("timeout");
    cmd.arg("-k").arg(kill_after_s.to_string()).arg(limit_s.max(1).to_string()).args(argv);
    cmd.env("LC_ALL", "C").process_group(0);
    Ok(cmd)
}

fn exec(argv: &[&str], input: Option<&[u8]>, limit_s: u64, interruptible: bool) -> Result<Output> {
    if interruptible {
        check_interrupt()?;
    }
    let limit_s = limit_s.max(1);
    let mut cmd = timeout_cmd(argv, limit_s, 2)?;
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{}` (is coreutils `timeout` installed?)", show(argv)))?;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // Small inputs (a key) fit in the pipe buffer: this does not block.
        let _ = stdin.write_all(data);
    }
    let out_rx = child.stdout.take().map(reader);
    let err_rx = child.stderr.take().map(reader);
    let deadline = start + Duration::from_secs(limit_s + 5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill_group(&mut child);
                return Err(e).with_context(|| format!("cannot wait for `{}`", show(argv)));
            }
        }
        if interruptible && interrupted() {
            kill_group(&mut child);
            return Err(Interrupted.into());
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            bail!("`{}` did not finish within {} s", show(argv), limit_s);
        }
        std::thread::sleep(POLL);
    };
    let out = Output { status, stdout: collect(out_rx), stderr: collect(err_rx) };
    if matches!(status.code(), Some(124 | 137)) && start.elapsed() >= Duration::from_secs(limit_s) {
        bail!("`{}` timed out after {} s: {}", show(argv), limit_s, out.tail());
    }
    Ok(out)
}

/// Stops a command early: SIGTERM to `timeout` (which passes it on and reaps the program), up to
/// a second for that, then SIGKILL to the whole process group (it leads its group); reaps it.
fn kill_group(child: &mut Child) {
    let pid = child.id();
    signal_pid(pid, "TERM");
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end && !proc_stat(pid).is_none_or(|f| f.first().is_some_and(|s| s == "Z" || s == "X")) {
        std::thread::sleep(POLL);
    }
    signal_group(pid, "KILL");
    let _ = child.wait();
}

/// Sends a signal to process group `pgid` with the `kill` utility (the workspace has no unsafe
/// code for `kill(2)`).
fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Sends a signal to one process.
fn signal_pid(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Fields of `/proc/PID/stat` after the command name, starting with the state (field 3).
pub(crate) fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let f = proc_stat(pid).with_context(|| format!("process {pid} is gone"))?;
    let field = |i: usize, name: &str| -> Result<u64> {
        f.get(i)
            .with_context(|| format!("/proc/{pid}/stat has no {name}"))?
            .parse::<u64>()
            .with_context(|| format!("bad {name} in /proc/{pid}/stat"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

/// A field of `/proc/PID/status` in KiB, e.g. `VmRSS`.
pub(crate) fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("cannot read /proc/{pid}/status"))?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let num = v.split_whitespace().next().with_context(|| format!("empty {key} in /proc/{pid}/status"))?;
            return num.parse().with_context(|| format!("bad {key} {num:?} in /proc/{pid}/status"));
        }
    }
    bail!("/proc/{pid}/status has no {key} line")
}

/// The children of `pid` (from the parent field of every `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if proc_stat(p).is_some_and(|f| f.get(1).and_then(|s| s.parse::<u32>().ok()) == Some(pid)) {
            out.push(p);
        }
    }
    out
}

/// A background process (a daemon, an iperf3 server) that the bench started. It runs under
/// `timeout` with a maximum life; dropping it stops it.
pub(crate) struct Proc {
    child: Option<Child>,
    label: String,
    log: PathBuf,
}

impl Proc {
    /// Starts `argv` with `env` set (and `RUST_LOG` removed), output to the file `log`, killed
    /// after `max_life_s` seconds in any case.
    pub(crate) fn spawn(label: &str, argv: &[&str], env: &[(&str, &str)], log: &Path, max_life_s: u64) -> Result<Proc> {
        check_interrupt()?;
        let mut cmd = timeout_cmd(argv, max_life_s, 3)?;
        let file = std::fs::File::create(log).with_context(|| format!("cannot create log file {}", log.display()))?;
        let file2 = file.try_clone().with_context(|| format!("cannot open log file {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(file2).env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {label}: `{}`", show(argv)))?;
        Ok(Proc { child: Some(child), label: label.to_string(), log: log.to_path_buf() })
    }

    /// Whether it has exited (without reaping it, so that its PID and group stay reserved).
    pub(crate) fn exited(&self) -> bool {
        self.child.as_ref().is_none_or(|c| self.exited_pid(c.id()))
    }

    /// The PID of the program itself (the child of `timeout`; `ip netns exec` does not fork),
    /// waiting up to `wait` for it to appear.
    pub(crate) fn program_pid(&self, wait: Duration) -> Result<u32> {
        let Some(child) = &self.child else { bail!("{} is not running", self.label) };
        let end = Instant::now() + wait;
        loop {
            let kids = children_of(child.id());
            if let [pid] = kids[..] {
                return Ok(pid);
            }
            if self.exited() {
                bail!("{} exited: {}", self.label, self.log_tail(10));
            }
            if Instant::now() >= end {
                bail!("cannot find the process of {} (children of {}: {kids:?})", self.label, child.id());
            }
            sleep(Duration::from_millis(20))?;
        }
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let t = last_lines(&text, n);
        if t.is_empty() {
            "(no output)".to_string()
        } else {
            t
        }
    }

    /// SIGTERM (which `timeout` passes on), up to `grace` to exit, then SIGKILL to the whole
    /// process group; reaps it. Safe to call more than once.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        if !self.exited_pid(pid) {
            signal_pid(pid, "TERM");
            let end = Instant::now() + grace;
            while !self.exited_pid(pid) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Whatever is left in the group (the program, if `timeout` itself is gone or stuck).
        signal_group(pid, "KILL");
        let _ = child.wait();
    }

    fn exited_pid(&self, pid: u32) -> bool {
        proc_stat(pid).is_none_or(|f| f.first().is_some_and(|s| s == "Z" || s == "X"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}
