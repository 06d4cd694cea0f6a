//! Bulk operations: `vpn user import FILE` (CSV or JSON, checked whole before any change, all or
//! nothing by default, resumable with `--batch`, recorded for `--list` and `--rollback`),
//! `vpn user export`, and `vpn user disable|enable|remove` over many users at once (`--match`,
//! `--import`, `--all`). The file formats and the checks are `vpn_control::bulk`; this is the
//! thin part that reads files, talks to the store and shows progress.

use std::io::{IsTerminal, Read, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_control::bulk::{self, Format, FreeAddresses, Glob, PlannedUser, Problem};
use vpn_control::store::{Actor, Applied, Change, DeviceSecrets, NewAddresses, NewDevice, NewKeys, Pools, SqliteStore, Store, User};

use super::{load_config, lock, notify, open_store, open_store_locked, table, time};

/// `vpn user import`.
#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// The file of users and devices (CSV with a header line, or a JSON array; `-` reads stdin).
    #[arg(required_unless_present_any = ["list", "rollback"], conflicts_with_all = ["list", "rollback"])]
    file: Option<PathBuf>,
    /// The file's format (default: its extension, else its first character: `[` is JSON).
    #[arg(long, value_name = "csv|json")]
    format: Option<Format>,
    /// Check the whole file against the store, list every problem and what would be added; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Commit every N users instead of all at once: an interrupted import keeps what it committed,
    /// and running the same command again adds the rest.
    #[arg(long, value_name = "N")]
    batch: Option<NonZeroUsize>,
    /// List the imports recorded in the store, newest first.
    #[arg(long, conflicts_with = "rollback")]
    list: bool,
    /// Undo an import: remove every user (with its devices) and every device it added.
    #[arg(long, value_name = "ID")]
    rollback: Option<i64>,
    /// Confirm --rollback.
    #[arg(long, short)]
    yes: bool,
    /// Print JSON (with --list).
    #[arg(long)]
    json: bool,
}

/// `vpn user export`.
#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    /// The format (default: the extension of --output, else csv).
    #[arg(long, value_name = "csv|json")]
    format: Option<Format>,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// Which users a bulk `disable`, `enable` or `remove` touches. `--match` and `--import` together
/// select the users that satisfy both.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct Selection {
    /// Every user whose whole name matches this pattern: `*` any run of characters, `?` one
    /// (quote it for the shell: 'test-*').
    #[arg(long = "match", value_name = "GLOB")]
    pub(crate) pattern: Option<String>,
    /// Every user added by this import (`vpn user import --list` shows them).
    #[arg(long, value_name = "ID")]
    pub(crate) import: Option<i64>,
    /// Every user.
    #[arg(long, conflicts_with_all = ["pattern", "import"])]
    pub(crate) all: bool,
}

impl Selection {
    /// Whether any selector was given.
    pub(crate) fn is_given(&self) -> bool {
        self.pattern.is_some() || self.import.is_some() || self.all
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(p) = &self.pattern {
            parts.push(format!("matching {p:?}"));
        }
        if let Some(id) = self.import {
            parts.push(format!("added by import {id}"));
        }
        if parts.is_empty() {
            "at all".to_owned()
        } else {
            parts.join(" and ")
        }
    }

    /// The selected users, sorted by name.
    fn users(&self, store: &SqliteStore) -> Result<Vec<User>> {
        let mut users = store.users()?;
        if let Some(p) = &self.pattern {
            let glob = Glob::new(p);
            users.retain(|u| glob.matches(&u.name));
        }
        if let Some(id) = self.import {
            if !store.imports()?.iter().any(|r| r.id == id) {
                bail!("no import numbered {id}: `vpn user import --list` shows them");
            }
            let of: std::collections::HashSet<String> = store.users_of_import(id)?.into_iter().collect();
            users.retain(|u| of.contains(&u.name));
        }
        Ok(users)
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the run has already taken
/// [`Progress::AFTER`] (a quick run never flashes one); redrawn at most every 100 ms.
struct Progress {
    on: bool,
    start: Instant,
    state: Mutex<Bar>,
}

struct Bar {
    total: usize,
    done: usize,
    phase: &'static str,
    /// The whole import is one store call: no fraction to show while it runs.
    one_transaction: bool,
    drawn: Option<Instant>,
}

impl Progress {
    const AFTER: Duration = Duration::from_millis(300);
    const EVERY: Duration = Duration::from_millis(100);
    const WIDTH: usize = 30;

    fn new(total: usize) -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            start: Instant::now(),
            state: Mutex::new(Bar { total, done: 0, phase: "", one_transaction: false, drawn: None }),
        }
    }

    /// Sets how many users are done and what is happening, and redraws if it is time to.
    fn set(&self, done: usize, phase: &'static str) {
        let mut bar = lock(&self.state);
        bar.done = done;
        bar.phase = phase;
        drop(bar);
        self.tick();
    }

    /// Redraws if it is time to (also with no news: the elapsed time moves).
    fn tick(&self) {
        if !self.on || self.start.elapsed() < Self::AFTER {
            return;
        }
        let mut bar = lock(&self.state);
        if bar.drawn.is_some_and(|t| t.elapsed() < Self::EVERY) {
            return;
        }
        bar.drawn = Some(Instant::now());
        let secs = self.start.elapsed().as_secs_f64();
        let line = if bar.one_transaction {
            // One store call with no news until it returns: a spinner and the time.
            let spin = ['|', '/', '-', '\\'][(secs * 10.0) as usize % 4];
            format!("\r\x1b[2K{spin} writing {} users in one transaction  {secs:.1} s", bar.total)
        } else {
            let filled = (bar.done * Self::WIDTH).checked_div(bar.total).unwrap_or(Self::WIDTH);
            format!(
                "\r\x1b[2K[{}{}] {}/{} users  {secs:.1} s  {}",
                "#".repeat(filled),
                "-".repeat(Self::WIDTH - filled),
                bar.done,
                bar.total,
                bar.phase
            )
        };
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }

    /// Erases the bar, before a final line or an error.
    fn clear(&self) {
        if lock(&self.state).drawn.take().is_some() {
            eprint!("\r\x1b[2K");
        }
    }

    /// Runs `f` (one long store call) while a second thread keeps the bar's time moving;
    /// `whole` says that the call is the whole import (then a spinner replaces the bar).
    fn during<T>(&self, whole: bool, f: impl FnOnce() -> T) -> T {
        lock(&self.state).one_transaction = whole;
        if !self.on {
            return f();
        }
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Self::EVERY);
                    self.tick();
                }
            });
            let out = f();
            stop.store(true, Ordering::Relaxed);
            out
        })
    }
}

/// Reads the file (or stdin for `-`); returns its text and the name to show and record.
fn read_input(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the import from stdin")?;
        return Ok((text, "stdin".to_owned()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text: save it as UTF-8 CSV or JSON", path.display()))?;
    Ok((text, path.display().to_string()))
}

/// `source:line: message`, as compilers print, so that editors can jump to it.
fn located(source: &str, p: &Problem) -> String {
    match p.line {
        0 => format!("{source}: {}", p.message),
        n => format!("{source}:{n}: {}", p.message),
    }
}

/// `vpn user import FILE [--format F] [--dry-run] [--batch N]`, `--list`, `--rollback ID`.
pub(crate) fn import(config_path: &Path, args: &ImportArgs) -> Result<()> {
    if args.list {
        return list_imports(config_path, args.json);
    }
    if let Some(id) = args.rollback {
        return rollback(config_path, id, args.yes);
    }
    let Some(path) = &args.file else { bail!("name the file to import, or use --list or --rollback ID") };
    let (text, source) = read_input(path)?;
    let format = args.format.or_else(|| Format::from_path(path)).unwrap_or_else(|| Format::sniff(&text));
    let config = load_config(config_path)?;
    let started = Instant::now();

    // Check everything before changing anything.
    let parsed = bulk::parse(&text, format);
    let mut store = if args.dry_run { open_store_locked(&config)? } else { open_store(&config)? };
    let pools = Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool };
    let devices = store.devices(None)?;
    let plan = bulk::plan(parsed.users, &store.users()?, &devices, &pools, time::unix_now());
    let mut problems = parsed.problems;
    problems.extend(plan.problems.iter().cloned());
    problems.sort_by_key(|p| p.line);
    for note in &plan.notes {
        eprintln!("{}", located(&source, &Problem { line: note.line, message: format!("note: {}", note.message) }));
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}", located(&source, p));
        }
        bail!(
            "{} problem{} in {source}: nothing was changed; fix {} and run the command again",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            if problems.len() == 1 { "it" } else { "them" }
        );
    }
    let digest = bulk::digest(&text);
    let running = store.imports()?.into_iter().find(|r| r.state == "running" && r.digest == digest);
    if args.dry_run {
        let resume = running.map_or(String::new(), |r| format!("; it would resume the interrupted import {}", r.id));
        println!("{source} is valid ({format}): {}{resume} (dry run: nothing was changed)", plan.summary("to add"));
        return Ok(());
    }

    let actor = Actor::new(Actor::local().who, "import");
    let changed: Vec<&PlannedUser> = plan.changes().collect();
    if changed.is_empty() {
        match running {
            // An interrupted run that had committed everything before it was stopped.
            Some(r) => {
                store.finish_import(r.id, &actor)?;
                println!("import {} of {source} finished: {}", r.id, plan.summary("added"));
            }
            None => println!("nothing to do: {}", plan.summary("to add")),
        }
        return Ok(());
    }
    let (record, resumed) = store.start_import(&source, &digest, changed.len() as i64, &actor)?;
    if resumed {
        eprintln!(
            "resuming import {} of {source}: {} of its {} users were added before it was interrupted",
            record.id, record.done, record.total
        );
    }
    // Addresses come from the snapshot the plan checked (see `FreeAddresses`).
    let mut free = FreeAddresses::new(&pools, &devices);
    let per_batch = args.batch.map_or(changed.len(), NonZeroUsize::get);
    let progress = Progress::new(changed.len());
    let mut committed = 0;
    for chunk in changed.chunks(per_batch) {
        progress.set(committed, "generating keys");
        let (changes, lines) = changes_for(chunk, &mut free)?;
        progress.set(committed, "writing");
        let result = progress
            .during(per_batch >= changed.len(), || store.apply_batch(changes, &pools, &actor, Some((record.id, chunk.len() as i64))));
        if let Err(e) = result {
            progress.clear();
            let line = lines.get(e.index).copied().unwrap_or(0);
            eprintln!("{}", located(&source, &Problem { line, message: e.error.to_string() }));
            if committed == 0 && !resumed {
                // Nothing of this import is in the store: do not leave it looking interrupted.
                let _ = store.rollback_import(record.id, &actor);
                bail!("the import stopped at line {line} and nothing was changed");
            }
            bail!(
                "the import stopped at line {line}; {committed} users before it were committed (import {}): fix the problem and run the \
                 same command again to add the rest, or undo with `vpn user import --rollback {}`",
                record.id,
                record.id
            );
        }
        // The batch cannot disable a device yet: new devices the file lists disabled are
        // disabled right after it (a re-run does it if this is interrupted).
        for u in chunk {
            for d in u.new_devices.iter().chain(&u.disable_devices).filter(|d| !d.enabled) {
                store.set_device_enabled(&u.name, &d.name, false, &actor).with_context(|| format!("{source}:{}", d.line))?;
            }
        }
        committed += chunk.len();
        progress.set(committed, "");
    }
    let record = store.finish_import(record.id, &actor)?;
    progress.clear();
    println!("import {} of {source}: {} ({:.1} s)", record.id, plan.summary("added"), started.elapsed().as_secs_f64());
    notify(&config);
    Ok(())
}

/// The store changes for some planned users, with fresh keys and the next free addresses, and
/// the file line of each.
fn changes_for<'a>(users: &[&'a PlannedUser], free: &mut FreeAddresses) -> Result<(Vec<Change<'a>>, Vec<usize>)> {
    let mut changes = Vec::new();
    let mut lines = Vec::new();
    for u in users {
        if !u.exists {
            changes.push(Change::AddUser { name: &u.name });
            lines.push(u.line);
            if !u.enabled {
                changes.push(Change::SetUserEnabled { name: &u.name, enabled: false });
                lines.push(u.line);
            }
        }
        for d in &u.new_devices {
            // The plan checked that the pools have room for every new device.
            let (ipv4, ipv6) = free.take().with_context(|| format!("line {}: no free address left for {}/{}", d.line, u.name, d.name))?;
            changes.push(Change::AddDevice(NewDevice {
                user: &u.name,
                name: &d.name,
                expires_at: d.expires_at,
                keys: NewKeys::Full(DeviceSecrets::generate(&mut OsRng)),
                addresses: NewAddresses::Fixed { ipv4, ipv6 },
            }));
            lines.push(d.line);
        }
    }
    Ok((changes, lines))
}

/// `vpn user import --list [--json]`.
fn list_imports(config_path: &Path, json: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let store = open_store_locked(&config)?;
    let imports = store.imports()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&imports)?);
        return Ok(());
    }
    if imports.is_empty() {
        println!("no imports yet: import users with `vpn user import FILE`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = imports
        .iter()
        .map(|r| {
            let state = match r.state.as_str() {
                "running" => "interrupted or running",
                s => s,
            };
            vec![
                r.id.to_string(),
                state.to_owned(),
                format!("{}/{}", r.done, r.total),
                time::format_utc(r.started_at),
                r.who.clone(),
                r.source.clone(),
            ]
        })
        .collect();
    print!("{}", table::render(&["ID", "STATE", "USERS", "STARTED", "WHO", "SOURCE"], &rows));
    Ok(())
}

/// "1 user", "2 users".
fn users_word(n: usize) -> String {
    format!("{n} user{}", if n == 1 { "" } else { "s" })
}

/// "1 device", "2 devices".
fn devices_word(n: usize) -> String {
    format!("{n} device{}", if n == 1 { "" } else { "s" })
}

/// Prints the names, one per line, under a heading.
fn print_names(heading: &str, users: &[User]) {
    println!("{heading}");
    for u in users {
        println!("  {}", u.name);
    }
}

/// `vpn user import --rollback ID [--yes]`.
fn rollback(config_path: &Path, id: i64, yes: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let mut store = open_store_locked(&config)?;
    let Some(record) = store.imports()?.into_iter().find(|r| r.id == id) else {
        bail!("no import numbered {id}: `vpn user import --list` shows them");
    };
    if record.state == "rolled_back" {
        bail!("import {id} was already rolled back");
    }
    let names = store.users_of_import(id)?;
    if !yes {
        println!(
            "import {id} ({}) added {} still in the store, which would be removed with their devices:",
            record.source,
            users_word(names.len())
        );
        for n in &names {
            println!("  {n}");
        }
        bail!(
            "rolling back import {id} removes {} and every device it added to other users: add --yes to confirm",
            users_word(names.len())
        );
    }
    let removed = store.rollback_import(id, &Actor::local())?;
    println!("import {id} rolled back: {} removed, with their devices", users_word(removed.len()));
    notify(&config);
    Ok(())
}

/// `vpn user export [--format F] [-o FILE]`.
pub(crate) fn export(config_path: &Path, args: &ExportArgs) -> Result<()> {
    let config = load_config(config_path)?;
    let store = open_store_locked(&config)?;
    let format = args.format.or_else(|| args.output.as_deref().and_then(Format::from_path)).unwrap_or(Format::Csv);
    let users = store.users()?;
    let devices = store.devices(None)?;
    let text = bulk::export(&users, &devices, format);
    match &args.output {
        None => std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write the export")?,
        Some(path) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("export");
            let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
            std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path).with_context(|| format!("cannot move {} into place", path.display()))?;
            eprintln!("{} users and {} devices written to {} ({format})", users.len(), devices.len(), path.display());
        }
    }
    Ok(())
}

/// `vpn user disable|enable NAME`, or `--match GLOB`, `--import ID`, `--all`: one transaction.
pub(crate) fn set_enabled(config_path: &Path, name: Option<&str>, select: &Selection, enabled: bool) -> Result<()> {
    if let Some(name) = name.filter(|_| !select.is_given()) {
        return super::users::set_enabled(config_path, name, enabled);
    }
    let config = load_config(config_path)?;
    let mut store = open_store_locked(&config)?;
    let users = select.users(&store)?;
    if users.is_empty() {
        bail!("no user {}: nothing was changed (`vpn user list` shows the users)", select.describe());
    }
    let (to_change, already): (Vec<User>, Vec<User>) = users.into_iter().partition(|u| u.enabled != enabled);
    let word = if enabled { "enabled" } else { "disabled" };
    if to_change.is_empty() {
        println!("every user {} ({}) is {word} already", select.describe(), already.len());
        return Ok(());
    }
    let changes = to_change.iter().map(|u| Change::SetUserEnabled { name: &u.name, enabled }).collect();
    store.apply_batch(changes, &Pools::default(), &Actor::local(), None)?;
    print_names(&format!("{word}:"), &to_change);
    let already = match already.len() {
        0 => String::new(),
        n => format!("; {} {word} already", users_word(n)),
    };
    println!("{} {word}{already}", users_word(to_change.len()));
    notify(&config);
    Ok(())
}

/// `vpn user remove NAME`, or `--match GLOB`, `--import ID`, `--all` with `--yes`: one
/// transaction.
pub(crate) fn remove(config_path: &Path, name: Option<&str>, select: &Selection, yes: bool) -> Result<()> {
    if let Some(name) = name.filter(|_| !select.is_given()) {
        return super::users::remove(config_path, name, yes);
    }
    let config = load_config(config_path)?;
    let mut store = open_store_locked(&config)?;
    let users = select.users(&store)?;
    if users.is_empty() {
        bail!("no user {}: nothing was changed (`vpn user list` shows the users)", select.describe());
    }
    let devices: usize = users.iter().map(|u| u.devices).sum();
    if !yes {
        print_names(
            &format!("{} {} would be removed, with {}:", users_word(users.len()), select.describe(), devices_word(devices)),
            &users,
        );
        bail!("removing {} and {} needs confirmation: add --yes", users_word(users.len()), devices_word(devices));
    }
    let changes = users.iter().map(|u| Change::RemoveUser { name: &u.name }).collect();
    let applied = store.apply_batch(changes, &Pools::default(), &Actor::local(), None)?;
    let devices: usize = applied.iter().map(|a| if let Applied::Removed(_, d) = a { d.len() } else { 0 }).sum();
    print_names("removed:", &users);
    println!("{} removed, with {}; their addresses are free again", users_word(users.len()), devices_word(devices));
    notify(&config);
    Ok(())
}
