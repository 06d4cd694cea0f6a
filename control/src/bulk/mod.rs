//! Bulk files of users and devices: `vpn user import FILE` and `vpn user export`.
//!
//! Everything here is pure (no store, no clock, no file system), so that every check can be
//! tested on its own:
//!
//! | step | function | what |
//! |---|---|---|
//! | read | [`parse`] | CSV or JSON text to [`UserEntry`]s, with every problem of the file itself ([`Problem`], with its line): syntax, unknown columns or keys, names, dates, duplicates |
//! | check against the store | [`plan`] | which users and devices are new and which are already present (identical, so skipped: what makes a re-run resume), conflicts, pool capacity |
//! | write | [`export`] | users and devices back to CSV or JSON, never a secret |
//! | select | [`Glob`] | `--match` patterns of the bulk `disable`, `enable` and `remove` |
//!
//! # The formats
//!
//! CSV: a header line naming the columns, then one row per device; a row with an empty `device`
//! declares a user without devices (or only the user's own columns). Empty lines and lines whose
//! first character (after blanks) is `#` are skipped; fields may be quoted with `"` (a quote
//! inside doubled, as RFC 4180 says). Columns, in any order, all but `user` optional:
//!
//! | column | meaning | default |
//! |---|---|---|
//! | `user` | the user's name | required |
//! | `enabled` | the user's flag (`true`/`false`, `yes`/`no`, `1`/`0`); the rows of a user must not disagree | `true` |
//! | `device` | the device's name; empty for a user-only row | none |
//! | `device_enabled` | the device's own flag | `true` |
//! | `expires` | when the device stops working: `2027-01-31` (UTC midnight) or `2027-01-31T12:00:00Z`; empty for never | never |
//! | `public_key`, `ipv4`, `ipv6` | written by export for audits; ignored on import, which generates new keys and allocates addresses | |
//!
//! JSON: an array of users, each `{"user": "alice", "enabled": true, "devices": [{"name":
//! "phone", "enabled": true, "expires": "2027-01-31"}]}` with the same defaults and meanings
//! (`expires` may be `null`; devices may carry `public_key`, `ipv4`, `ipv6`, ignored on import).
//! Unknown columns and keys are refused, so that a misspelt one is not silently dropped.
//!
//! Expiry dates are absolute: a span like `30d` would mean something else on each run, and a
//! re-run must find what the first run added identical to resume it.

mod csv;
use crate::civil as date;
mod glob;
mod json;
mod plan;

use std::collections::HashMap;
use std::fmt;

use crate::store::{names, Device, User};

pub use glob::Glob;
pub use plan::{plan, FreeAddresses, Plan, PlannedUser};

/// A bulk file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON array of users.
    Json,
}

impl Format {
    /// The format a file name says (`.csv`, `.json`, any case), if it says one.
    pub fn from_path(path: &std::path::Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// The format of a file's contents, guessed from its first significant character: `[` is
    /// JSON, anything else CSV.
    pub fn sniff(text: &str) -> Format {
        let first = text.trim_start_matches('\u{feff}').trim_start();
        if first.starts_with('[') {
            Format::Json
        } else {
            Format::Csv
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            _ => Err(format!("unknown format {s:?}: use csv or json")),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Json => "json",
        })
    }
}

/// A user as a bulk file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// The user's name.
    pub name: String,
    /// The user's flag.
    pub enabled: bool,
    /// Its devices, in file order.
    pub devices: Vec<DeviceEntry>,
    /// The line (1-based) where the user first appears.
    pub line: usize,
}

/// A device as a bulk file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device's name, unique for its user.
    pub name: String,
    /// The device's own flag.
    pub enabled: bool,
    /// When it stops being allowed to connect (Unix seconds), if ever.
    pub expires_at: Option<i64>,
    /// Its line (1-based).
    pub line: usize,
}

/// Something wrong with a bulk file (or, from [`plan`], with applying it to the store), at a
/// line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line (1-based) it is about; 0 for the file as a whole.
    pub line: usize,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Problem {
        Problem { line, message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// What [`parse`] read: the users it could read, and every problem it found, in line order. A
/// file with problems must not be applied, but its readable users can still be checked against
/// the store with [`plan`] so that one run lists everything wrong.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The users, in file order; entries with a problem of their own are left out.
    pub users: Vec<UserEntry>,
    /// Everything wrong with the file, sorted by line.
    pub problems: Vec<Problem>,
}

/// Reads a bulk file: its syntax, columns or keys, names, flags, dates, and duplicates within the
/// file. Never stops at the first problem (a JSON syntax error excepted: nothing after it can
/// be read).
pub fn parse(text: &str, format: Format) -> Parsed {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = match format {
        Format::Csv => csv::parse(text),
        Format::Json => json::parse(text),
    };
    check_names(&mut parsed);
    parsed.problems.sort_by_key(|p| p.line);
    parsed
}

/// Checks names and duplicates; leaves out the users and devices that have a problem.
fn check_names(parsed: &mut Parsed) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let users = std::mem::take(&mut parsed.users);
    for mut user in users {
        if let Err(e) = names::validate_user(&user.name) {
            parsed.problems.push(Problem::new(user.line, e.to_string()));
            continue;
        }
        if let Some(first) = seen.get(&user.name) {
            parsed
                .problems
                .push(Problem::new(user.line, format!("user {} is already listed at line {first}: list each user once", user.name)));
            continue;
        }
        seen.insert(user.name.clone(), user.line);
        // Keep the user (so that the store check still runs for it) without its bad devices.
        let mut devices: HashMap<String, usize> = HashMap::new();
        for d in std::mem::take(&mut user.devices) {
            if let Err(e) = names::validate_device(&d.name) {
                parsed.problems.push(Problem::new(d.line, e.to_string()));
            } else if let Some(first) = devices.get(&d.name) {
                parsed.problems.push(Problem::new(
                    d.line,
                    format!("device {}/{} is already listed at line {first}: give each device of a user its own name", user.name, d.name),
                ));
            } else {
                devices.insert(d.name.clone(), d.line);
                user.devices.push(d);
            }
        }
        parsed.users.push(user);
    }
}

/// Reads a flag: `true`/`false`, `yes`/`no`, `1`/`0`, `enabled`/`disabled` (any case).
pub(crate) fn parse_flag(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "enabled" | "on" => Some(true),
        "false" | "no" | "0" | "disabled" | "off" => Some(false),
        _ => None,
    }
}

/// Reads an expiry date ([`date`]).
pub(crate) fn parse_expiry(s: &str) -> Result<i64, String> {
    date::parse(s)
}

/// Formats an expiry the way files hold it: `2027-01-31` at midnight UTC, else
/// `2027-01-31T12:00:00Z`.
pub fn format_expiry(t: i64) -> String {
    date::format(t)
}

/// A digest of a bulk file's content (`blake2s:` and 64 hex digits), which recognises a re-run
/// of the same file (to resume it).
pub fn digest(text: &str) -> String {
    let h = vpn_crypto::blake2s::hash(&[text.as_bytes()]);
    let mut out = String::from("blake2s:");
    for b in h {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Writes `users` and their `devices` (as the store lists them) in `format`: every user, its
/// flag, its devices with their flags and expiry dates, and, for audits, each device's public
/// key and addresses. Never a private key or pre-shared key. Importing the result into an empty
/// store gives the same users, devices, flags and expiry dates (with new keys and addresses).
pub fn export(users: &[User], devices: &[Device], format: Format) -> String {
    let mut by_user: HashMap<&str, Vec<&Device>> = HashMap::new();
    for d in devices {
        by_user.entry(d.user.as_str()).or_default().push(d);
    }
    let rows: Vec<(&User, Vec<&Device>)> = users.iter().map(|u| (u, by_user.remove(u.name.as_str()).unwrap_or_default())).collect();
    match format {
        Format::Csv => csv::write(&rows),
        Format::Json => json::write(&rows),
    }
}

#[cfg(test)]
mod tests;
