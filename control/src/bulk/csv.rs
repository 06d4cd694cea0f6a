//! The CSV form of a bulk file: a header line, then one row per device (see [`super`] for the
//! columns). A small reader of RFC 4180 records (quoted fields, doubled quotes, quoted line
//! breaks) that keeps each record's first line for messages, plus `#` comment lines and blank
//! lines, which RFC 4180 does not have.

use std::collections::HashMap;

use super::{parse_expiry, parse_flag, DeviceEntry, Parsed, Problem, UserEntry};
use crate::store::{Device, User};

/// The columns, in the order export writes them.
const COLUMNS: [&str; 8] = ["user", "enabled", "device", "device_enabled", "expires", "public_key", "ipv4", "ipv6"];

/// One record: its fields, unquoted and trimmed, and the line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Splits `text` into records, skipping blank and comment lines; malformed records become
/// problems.
fn records(text: &str) -> (Vec<Record>, Vec<Problem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
    'records: while let Some((line, first)) = lines.next() {
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut chars: Vec<char> = first.chars().collect();
        let mut i = 0;
        loop {
            // One field, starting at `i`.
            while i < chars.len() && chars[i] != ',' && chars[i].is_whitespace() {
                i += 1;
            }
            if chars.get(i) == Some(&'"') {
                i += 1;
                let mut field = String::new();
                loop {
                    match chars.get(i) {
                        Some('"') if chars.get(i + 1) == Some(&'"') => {
                            field.push('"');
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            field.push(c);
                            i += 1;
                        }
                        // A line break inside quotes: the field goes on on the next line.
                        None => match lines.next() {
                            Some((_, next)) => {
                                field.push('\n');
                                chars = next.chars().collect();
                                i = 0;
                            }
                            None => {
                                problems.push(Problem::new(line, "a quoted field is never closed: add the closing \""));
                                break 'records;
                            }
                        },
                    }
                }
                while i < chars.len() && chars[i] != ',' && chars[i].is_whitespace() {
                    i += 1;
                }
                if i < chars.len() && chars[i] != ',' {
                    problems
                        .push(Problem::new(line, "text after a closing quote: quote the whole field, and double quotes inside it (\"\")"));
                    continue 'records;
                }
                fields.push(field);
            } else {
                let start = i;
                while i < chars.len() && chars[i] != ',' {
                    i += 1;
                }
                let field: String = chars[start..i].iter().collect();
                fields.push(field.trim().to_owned());
            }
            if i < chars.len() {
                i += 1; // the comma
            } else {
                break;
            }
        }
        out.push(Record { line, fields });
    }
    (out, problems)
}

/// Reads a CSV bulk file.
pub(super) fn parse(text: &str) -> Parsed {
    let (records, mut problems) = records(text);
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        problems.push(Problem::new(0, format!("the file has no header line: start it with a line like `{}`", COLUMNS[..5].join(","))));
        return Parsed { users: Vec::new(), problems };
    };
    // Which field holds each known column.
    let mut at: HashMap<&str, usize> = HashMap::new();
    let mut header_ok = true;
    for (i, name) in header.fields.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) if at.contains_key(c) => {
                problems.push(Problem::new(header.line, format!("the column {c} is named twice")));
                header_ok = false;
            }
            Some(c) => {
                at.insert(c, i);
            }
            None => {
                problems.push(Problem::new(header.line, format!("unknown column {name:?}: the columns are {}", COLUMNS.join(", "))));
                header_ok = false;
            }
        }
    }
    if !at.contains_key("user") {
        problems.push(Problem::new(
            header.line,
            format!("the header has no user column: start the file with a line like `{}`", COLUMNS[..5].join(",")),
        ));
    }
    if !header_ok || !at.contains_key("user") {
        return Parsed { users: Vec::new(), problems };
    }

    let width = header.fields.len();
    let mut users: Vec<UserEntry> = Vec::new();
    // The index of each user in `users`, and where its flag was set (value, line).
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut flags: Vec<Option<(bool, usize)>> = Vec::new();
    for r in records {
        if r.fields.len() != width {
            problems.push(Problem::new(r.line, format!("{} fields, but the header has {width}: check the commas", r.fields.len())));
            continue;
        }
        let get = |c: &str| at.get(c).map_or("", |&i| r.fields[i].as_str());
        let user = get("user");
        if user.is_empty() {
            problems.push(Problem::new(r.line, "no user name: every row needs one"));
            continue;
        }
        let mut row_ok = true;
        let mut flag = |c: &str, problems: &mut Vec<Problem>| match get(c) {
            "" => None,
            v => match parse_flag(v) {
                Some(b) => Some(b),
                None => {
                    problems.push(Problem::new(r.line, format!("{c} is {v:?}: use true or false")));
                    row_ok = false;
                    None
                }
            },
        };
        let enabled = flag("enabled", &mut problems);
        let device_enabled = flag("device_enabled", &mut problems);
        let device = get("device");
        let expires = match get("expires") {
            "" => None,
            v => match parse_expiry(v) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(Problem::new(r.line, format!("expires: {e}")));
                    row_ok = false;
                    None
                }
            },
        };
        if device.is_empty() && (device_enabled.is_some() || expires.is_some()) {
            problems.push(Problem::new(r.line, "device_enabled or expires without a device: name the device, or leave them empty"));
            row_ok = false;
        }
        let i = *index.entry(user.to_owned()).or_insert_with(|| {
            users.push(UserEntry { name: user.to_owned(), enabled: true, devices: Vec::new(), line: r.line });
            flags.push(None);
            users.len() - 1
        });
        if let Some(e) = enabled {
            match flags[i] {
                Some((before, line)) if before != e => {
                    let word = |b| if b { "enabled" } else { "disabled" };
                    problems.push(Problem::new(
                        r.line,
                        format!(
                            "user {user} is {} here but {} at line {line}: give every row of a user the same enabled value",
                            word(e),
                            word(before)
                        ),
                    ));
                    row_ok = false;
                }
                Some(_) => {}
                None => {
                    flags[i] = Some((e, r.line));
                    users[i].enabled = e;
                }
            }
        }
        if row_ok && !device.is_empty() {
            users[i].devices.push(DeviceEntry {
                name: device.to_owned(),
                enabled: device_enabled.unwrap_or(true),
                expires_at: expires,
                line: r.line,
            });
        }
    }
    Parsed { users, problems }
}

/// Quotes a field when it needs it (it never does for valid names, dates, keys and addresses).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r', '#']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes users and their devices as CSV, with every column.
pub(super) fn write(rows: &[(&User, Vec<&Device>)]) -> String {
    let mut out = COLUMNS.join(",");
    out.push('\n');
    for (user, devices) in rows {
        let enabled = if user.enabled { "true" } else { "false" };
        if devices.is_empty() {
            out.push_str(&format!("{},{enabled},,,,,,\n", field(&user.name)));
        }
        for d in devices {
            let cells = [
                field(&user.name),
                enabled.to_owned(),
                field(&d.name),
                (if d.enabled { "true" } else { "false" }).to_owned(),
                d.expires_at.map(super::format_expiry).unwrap_or_default(),
                d.public_key.to_base64(),
                d.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                d.ipv6.map(|a| a.to_string()).unwrap_or_default(),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}
