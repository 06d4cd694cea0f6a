//! The audit log as a file of JSON lines: one JSON object per line, appended and synced one
//! record at a time, for operators and log shippers (`tail -f`, `jq`). The store keeps the same
//! records in its `audit` table; this file is their plain-text copy.
//!
//! - [`AuditLog::open`] creates the file 0600 (and its directory 0700 if missing) and opens it
//!   with `O_APPEND`;
//! - [`AuditLog::append`] writes a record, newline included, with a single `write(2)` and then
//!   `fdatasync`s: a record is on disk when `append` returns `Ok`. Writers take an exclusive
//!   `flock(2)` on the file (and a mutex between the threads sharing one `AuditLog`), so appends
//!   of several threads or processes never interleave, even within a long line;
//! - [`AuditLog::append_missing`] appends, under that same lock, the records that follow the
//!   last one in the file (by `id`): the store uses it to copy its new audit rows, so that
//!   concurrent commands write each row once and in order, and a row committed by a process that
//!   was killed before its line was written is written by the next one;
//! - [`read_all`] reads the records back. A crash in the middle of a write, or a full disk, can
//!   leave a torn last line: it is skipped and reported (a `tracing` warning; [`read`] returns
//!   the details). The next append starts a new line, so a torn fragment never swallows a later
//!   record.
//!
//! What a record holds is the caller's business (the store writes `{id, at, who, origin, action,
//! target, details}`); it must be a JSON object and must not contain secrets.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

use crate::durable;

/// The most bytes given to one `write(2)`: whole lines, several records at a time.
const WRITE_CHUNK: usize = 1 << 20;

/// An audit log file open for appending. It can be shared between threads (its methods take
/// `&self`).
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    /// Serializes the threads of this process; `flock` serializes processes (and other
    /// `AuditLog`s of the same file), but not two threads using the same descriptor.
    writing: Mutex<()>,
}

impl AuditLog {
    /// Opens (creating if missing, mode 0600) the log at `path` for appending; a missing
    /// directory is created 0700.
    pub fn open(path: &Path) -> io::Result<AuditLog> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("cannot open the audit log {}: {e}", path.display()));
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        durable::create_dir(dir, 0o700)?;
        let (file, created) = match OpenOptions::new().read(true).append(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (OpenOptions::new().read(true).append(true).open(path).map_err(with_path)?, false)
            }
            Err(e) => return Err(with_path(e)),
        };
        if created {
            // The new name must survive a crash as much as the records in it.
            durable::sync_dir(dir).map_err(with_path)?;
        }
        Ok(AuditLog { file, path: path.to_owned(), writing: Mutex::new(()) })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `record` (a JSON object) as one line and syncs it to disk.
    ///
    /// On error the record may be missing or torn (a full disk can cut a write short), never
    /// merged with another: readers skip a torn line.
    pub fn append(&self, record: &Value) -> io::Result<()> {
        self.locked(|| self.write_records(std::slice::from_ref(record)))
    }

    /// Appends the records that follow the last one in the file, and syncs them, all under the
    /// writers' lock: `records_after` gets the `id` of the last record that has an integer `id`
    /// (`None` if none has) and returns the records to append after it, in order.
    ///
    /// Several processes calling this with the same source write each record once.
    pub fn append_missing(&self, records_after: impl FnOnce(Option<i64>) -> io::Result<Vec<Value>>) -> io::Result<()> {
        self.locked(|| {
            let last = last_id(&self.file).map_err(|e| self.error("cannot read the audit log", e))?;
            let records = records_after(last)?;
            self.write_records(&records)
        })
    }

    /// Runs `f` holding the writers' lock.
    fn locked<T>(&self, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let _thread = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        durable::lock_exclusive(&self.file).map_err(|e| self.error("cannot lock the audit log", e))?;
        let out = f();
        // Closing the file would release it too; an error here leaves nothing to undo.
        let _ = durable::unlock(&self.file);
        out
    }

    fn error(&self, what: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{what} {}: {e}", self.path.display()))
    }

    /// Appends whole lines and syncs them; the caller holds the lock.
    fn write_records(&self, records: &[Value]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(i) = records.iter().position(|r| !r.is_object()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("audit record {i} is not a JSON object")));
        }
        let fail = |e: io::Error| self.error("cannot append to the audit log", e);
        let mut buf = Vec::with_capacity(256);
        // A torn line at the end (an interrupted write): end it, so that it swallows nothing.
        if ends_in_torn_line(&self.file).map_err(fail)? {
            buf.push(b'\n');
        }
        for (i, record) in records.iter().enumerate() {
            // serde_json escapes control characters, so the line holds no newline of its own.
            serde_json::to_writer(&mut buf, record)?;
            buf.push(b'\n');
            if buf.len() >= WRITE_CHUNK || i + 1 == records.len() {
                write_once(&self.file, &buf).map_err(fail)?;
                buf.clear();
            }
        }
        self.file.sync_data().map_err(fail)
    }
}

/// One `write(2)` of all of `buf` (retried only if interrupted before writing anything): with
/// `O_APPEND` the kernel places it at the end in one piece. A short write (a full disk) is an
/// error; the torn line it leaves is ended by the next write.
fn write_once(mut file: &File, buf: &[u8]) -> io::Result<()> {
    let n = loop {
        match file.write(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    if n < buf.len() {
        return Err(io::Error::new(io::ErrorKind::StorageFull, format!("short write ({n} of {} bytes): is the disk full?", buf.len())));
    }
    Ok(())
}

/// Whether a non-empty file's last byte is not a newline.
fn ends_in_torn_line(file: &File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// The integer `id` of the last record in the file that has one, reading back from the end.
fn last_id(file: &File) -> io::Result<Option<i64>> {
    let len = file.metadata()?.len();
    let mut window: u64 = 16 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut data = vec![0u8; (len - start) as usize];
        file.read_exact_at(&mut data, start)?;
        // Unless at the start of the file, the first piece may be the end of a longer line.
        let whole = if start == 0 { &data[..] } else { data.iter().position(|&b| b == b'\n').map_or(&data[..0], |i| &data[i + 1..]) };
        let found = whole.split(|&b| b == b'\n').rev().filter_map(record_in).find_map(|r| r.get("id").and_then(Value::as_i64));
        if found.is_some() || start == 0 {
            return Ok(found);
        }
        window = window.saturating_mul(4);
    }
}

/// What [`read`] found in an audit log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Contents {
    /// The records, in file order.
    pub records: Vec<Value>,
    /// The length in bytes of a torn last line (no final newline and not a JSON object) that was
    /// skipped.
    pub torn_tail: Option<usize>,
    /// The (1-based) numbers of complete lines that were not JSON objects (fragments of records
    /// torn by a crash or a full disk), skipped. Where a fragment ran into a whole record, the
    /// record is kept.
    pub damaged_lines: Vec<usize>,
}

/// Reads every record of the log at `path`, skipping a torn last line and damaged lines with a
/// warning (see [`read`] for the details).
pub fn read_all(path: &Path) -> io::Result<Vec<Value>> {
    let contents = read(path)?;
    if let Some(bytes) = contents.torn_tail {
        tracing::warn!(path = %path.display(), bytes, "the audit log ends in a torn line (an interrupted write); skipped it");
    }
    if !contents.damaged_lines.is_empty() {
        tracing::warn!(path = %path.display(), lines = ?contents.damaged_lines, "the audit log has damaged lines; skipped them");
    }
    Ok(contents.records)
}

/// Reads every record of the log at `path`, and says what it skipped.
pub fn read(path: &Path) -> io::Result<Contents> {
    let mut file = File::open(path).map_err(|e| io::Error::new(e.kind(), format!("cannot read the audit log {}: {e}", path.display())))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)?;
    Ok(parse(&data))
}

/// Parses the bytes of a log.
fn parse(data: &[u8]) -> Contents {
    let mut out = Contents::default();
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    // The piece after the last newline: empty if the file ends properly.
    let tail = lines.pop().unwrap_or_default();
    for (i, line) in lines.into_iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match object(line) {
            Some(v) => out.records.push(v),
            None => {
                out.damaged_lines.push(i + 1);
                // A fragment followed by a whole record: keep the record.
                if let Some(v) = glued_record(line) {
                    out.records.push(v);
                }
            }
        }
    }
    if !tail.iter().all(u8::is_ascii_whitespace) {
        match object(tail) {
            // Whole but for its newline: cut exactly there.
            Some(v) => out.records.push(v),
            None => out.torn_tail = Some(tail.len()),
        }
    }
    out
}

/// The line as a JSON object, if it is one.
fn object(line: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(line).ok().filter(Value::is_object)
}

/// A whole record at the end of a damaged line: a torn fragment that a later record ran into
/// (possible only if a writer ignored the lock).
fn glued_record(line: &[u8]) -> Option<Value> {
    (1..line.len()).filter(|&j| line[j] == b'{').find_map(|j| object(&line[j..]))
}

/// The record a line holds, whole or after a fragment.
fn record_in(line: &[u8]) -> Option<Value> {
    object(line).or_else(|| glued_record(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn torn_and_damaged_lines_are_reported() {
        let a = json!({"id": 1, "details": {"x": "{"}});
        let b = json!({"id": 2});
        let good = format!("{a}\n{b}\n");
        assert_eq!(parse(good.as_bytes()), Contents { records: vec![a.clone(), b.clone()], ..Contents::default() });
        // A torn last line.
        let torn = format!("{a}\n{{\"id\": 2, \"det");
        let c = parse(torn.as_bytes());
        assert_eq!(c.records, std::slice::from_ref(&a));
        assert_eq!(c.torn_tail, Some(14));
        // A fragment another writer's record ran into, then a fragment on its own line.
        let glued = format!("{{\"id\": 0, \"details\": {{\"x{b}\n{{\"id\n{a}");
        let c = parse(glued.as_bytes());
        assert_eq!(c.records, [b, a]);
        assert_eq!(c.damaged_lines, [1, 2]);
        assert_eq!(c.torn_tail, None);
        assert_eq!(parse(b""), Contents::default());
        assert_eq!(parse(b"[1]\n").damaged_lines, [1]);
    }

    #[test]
    fn append_missing_continues_after_the_last_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append_missing(|after| {
            assert_eq!(after, None);
            Ok(vec![json!({"id": 1}), json!({"id": 2})])
        })
        .unwrap();
        log.append(&json!({"note": "no id"})).unwrap();
        log.append_missing(|after| {
            assert_eq!(after, Some(2));
            Ok(vec![])
        })
        .unwrap();
        // Far more than the first window read back, and a torn line at the end.
        let pad = "p".repeat(5000);
        log.append_missing(|_| Ok((3..=40).map(|id| json!({"id": id, "pad": pad})).collect())).unwrap();
        for _ in 0..10 {
            log.append(&json!({"pad": pad})).unwrap();
        }
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\": 99, \"ac").unwrap();
        log.append_missing(|after| {
            assert_eq!(after, Some(40));
            Ok(vec![json!({"id": 41})])
        })
        .unwrap();
        let ids: Vec<i64> = read(&path).unwrap().records.iter().filter_map(|r| r["id"].as_i64()).collect();
        assert_eq!(ids, (1..=41).collect::<Vec<_>>());
        assert!(log.append_missing(|_| Ok(vec![json!("not an object")])).is_err());
    }

    #[test]
    fn appends_end_a_torn_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.append(&json!({"id": 1})).unwrap();
        drop(log);
        // As a crash in the middle of a write would leave it.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"id\": 2, \"ac").unwrap();
        let log = AuditLog::open(&path).unwrap();
        log.append(&json!({"id": 3})).unwrap();
        assert!(log.append(&json!([3])).is_err());
        let c = read(&path).unwrap();
        assert_eq!(c.records, [json!({"id": 1}), json!({"id": 3})]);
        assert_eq!(c.damaged_lines, [2]);
        assert_eq!(read_all(&path).unwrap().len(), 2);
    }
}
