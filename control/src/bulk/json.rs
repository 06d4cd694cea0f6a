//! The JSON form of a bulk file: an array of users (see [`super`] for the keys).
//!
//! serde_json checks the syntax (its error has the line) and builds the values, but a value does
//! not know where it was. A second pass, [`skim`], walks the (by then known to be valid) text
//! and records the line of every array element, object key and value, so that each problem
//! names the line of the user, device or key it is about.

use serde_json::{Map, Value};

use super::{parse_expiry, DeviceEntry, Parsed, Problem, UserEntry};
use crate::store::{Device, User};

/// Where a value starts, and the same for what it contains.
#[derive(Debug, Default)]
struct Pos {
    line: usize,
    /// The elements of an array.
    items: Vec<Pos>,
    /// The members of an object: key, the key's line, the value.
    members: Vec<(String, usize, Pos)>,
}

impl Pos {
    fn member(&self, key: &str) -> Option<&Pos> {
        self.members.iter().rev().find(|(k, _, _)| k == key).map(|(_, _, p)| p)
    }
}

/// A walk over valid JSON text that records line numbers ([`Pos`]).
struct Skim<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
}

impl Skim<'_> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.i += 1;
        }
    }

    /// Skips a string starting at its opening quote; returns its decoded text.
    fn string(&mut self) -> String {
        let start = self.i;
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        let raw = self.b.get(start..self.i.min(self.b.len())).unwrap_or_default();
        std::str::from_utf8(raw).ok().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
    }

    fn value(&mut self) -> Pos {
        self.ws();
        let mut pos = Pos { line: self.line, ..Pos::default() };
        match self.b.get(self.i) {
            Some(b'[') => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b']') | None => break,
                        Some(b',') => self.i += 1,
                        Some(_) => pos.items.push(self.value()),
                    }
                }
                self.i += 1;
            }
            Some(b'{') => {
                self.i += 1;
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b'}') | None => break,
                        Some(b',') => self.i += 1,
                        Some(_) => {
                            let line = self.line;
                            let key = self.string();
                            self.ws();
                            self.i += 1; // the colon
                            let value = self.value();
                            pos.members.push((key, line, value));
                        }
                    }
                }
                self.i += 1;
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self.b.get(self.i).is_some_and(|c| !matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')) {
                    self.i += 1;
                }
            }
            None => {}
        }
        pos
    }
}

fn skim(text: &str) -> Pos {
    Skim { b: text.as_bytes(), i: 0, line: 1 }.value()
}

/// The keys of a user object and of a device object.
const USER_KEYS: [&str; 3] = ["user", "enabled", "devices"];
const DEVICE_KEYS: [&str; 6] = ["name", "enabled", "expires", "public_key", "ipv4", "ipv6"];

/// Checks an object's keys against `known` (unknown and repeated keys are problems).
fn check_keys(pos: &Pos, known: &[&str], what: &str, problems: &mut Vec<Problem>) -> bool {
    let mut ok = true;
    for (i, (key, line, _)) in pos.members.iter().enumerate() {
        if !known.contains(&key.as_str()) {
            problems.push(Problem::new(*line, format!("unknown key {key:?} in a {what}: the keys are {}", known.join(", "))));
            ok = false;
        } else if pos.members[..i].iter().any(|(k, _, _)| k == key) {
            problems.push(Problem::new(*line, format!("the key {key:?} is given twice in this {what}")));
            ok = false;
        }
    }
    ok
}

/// The line of member `key` of the object at `pos` (the object's own line if it has none).
fn line_of(pos: &Pos, key: &str) -> usize {
    pos.member(key).map_or(pos.line, |p| p.line)
}

/// An optional boolean member.
fn flag(obj: &Map<String, Value>, pos: &Pos, key: &str, problems: &mut Vec<Problem>) -> Option<Option<bool>> {
    match obj.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(Value::Bool(b)) => Some(Some(*b)),
        Some(other) => {
            problems.push(Problem::new(line_of(pos, key), format!("{key} is {other}: use true or false")));
            None
        }
    }
}

/// Reads a JSON bulk file.
pub(super) fn parse(text: &str) -> Parsed {
    let mut problems = Vec::new();
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            problems.push(Problem::new(e.line(), format!("not valid JSON: {e}")));
            return Parsed { users: Vec::new(), problems };
        }
    };
    let root = skim(text);
    let Value::Array(elements) = value else {
        problems.push(Problem::new(
            root.line,
            r#"the file must be a JSON array of users, like [{"user": "alice", "devices": [{"name": "phone"}]}]"#,
        ));
        return Parsed { users: Vec::new(), problems };
    };
    let mut users = Vec::new();
    for (element, pos) in elements.iter().zip(&root.items) {
        let Value::Object(obj) = element else {
            problems.push(Problem::new(pos.line, format!(r#"expected a user object like {{"user": "alice"}}, found {element}"#)));
            continue;
        };
        check_keys(pos, &USER_KEYS, "user", &mut problems);
        let name = match obj.get("user") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                problems.push(Problem::new(line_of(pos, "user"), format!("user is {other}: give the name as a string")));
                continue;
            }
            None => {
                problems.push(Problem::new(pos.line, r#"a user without "user": give its name, like {"user": "alice"}"#));
                continue;
            }
        };
        let enabled = flag(obj, pos, "enabled", &mut problems);
        let mut devices = Vec::new();
        match obj.get("devices") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                let dpos = pos.member("devices").map(|p| p.items.as_slice()).unwrap_or_default();
                for (d, dp) in list.iter().zip(dpos) {
                    devices.extend(device(d, dp, &mut problems));
                }
            }
            Some(other) => {
                problems
                    .push(Problem::new(line_of(pos, "devices"), format!(r#"devices is {other}: give a list, like [{{"name": "phone"}}]"#)));
            }
        }
        // A user with a bad key, flag or device is still checked for its name and against the
        // store (its problems already stop the import), so that one run lists everything.
        users.push(UserEntry { name, enabled: enabled.flatten().unwrap_or(true), devices, line: pos.line });
    }
    Parsed { users, problems }
}

/// One device object; `None` (with the problems recorded) when it cannot be read.
fn device(value: &Value, pos: &Pos, problems: &mut Vec<Problem>) -> Option<DeviceEntry> {
    let Value::Object(obj) = value else {
        problems.push(Problem::new(pos.line, format!(r#"expected a device object like {{"name": "phone"}}, found {value}"#)));
        return None;
    };
    let mut ok = check_keys(pos, &DEVICE_KEYS, "device", problems);
    let name = match obj.get("name") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(Problem::new(line_of(pos, "name"), format!("name is {other}: give the device name as a string")));
            None
        }
        None => {
            problems.push(Problem::new(pos.line, r#"a device without "name": give its name, like {"name": "phone"}"#));
            None
        }
    };
    let enabled = flag(obj, pos, "enabled", problems);
    let expires_at = match obj.get("expires") {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => match parse_expiry(s) {
            Ok(t) => Some(Some(t)),
            Err(e) => {
                problems.push(Problem::new(line_of(pos, "expires"), format!("expires: {e}")));
                None
            }
        },
        Some(other) => {
            problems.push(Problem::new(
                line_of(pos, "expires"),
                format!("expires is {other}: give a date string like \"2027-01-31\", or null"),
            ));
            None
        }
    };
    for key in ["public_key", "ipv4", "ipv6"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_string() && !v.is_null()) {
            problems.push(Problem::new(line_of(pos, key), format!("{key} is {v}: give a string (it is informational, import ignores it)")));
            ok = false;
        }
    }
    match (name, enabled, expires_at, ok) {
        (Some(name), Some(enabled), Some(expires_at), true) => {
            Some(DeviceEntry { name, enabled: enabled.unwrap_or(true), expires_at, line: pos.line })
        }
        _ => None,
    }
}

/// Writes users and their devices as a JSON array: one user per element, keys in the order of
/// the documentation, one device per line.
pub(super) fn write(rows: &[(&User, Vec<&Device>)]) -> String {
    let text = |s: &str| Value::from(s).to_string();
    let opt = |v: Option<String>| v.map_or_else(|| "null".to_owned(), |s| text(&s));
    let mut out = String::from("[");
    for (i, (u, devices)) in rows.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&format!("  {{\n    \"user\": {},\n    \"enabled\": {},\n    \"devices\": [", text(&u.name), u.enabled));
        for (j, d) in devices.iter().enumerate() {
            out.push_str(if j == 0 { "\n" } else { ",\n" });
            out.push_str(&format!(
                "      {{\"name\": {}, \"enabled\": {}, \"expires\": {}, \"public_key\": {}, \"ipv4\": {}, \"ipv6\": {}}}",
                text(&d.name),
                d.enabled,
                opt(d.expires_at.map(super::format_expiry)),
                text(&d.public_key.to_base64()),
                opt(d.ipv4.map(|a| a.to_string())),
                opt(d.ipv6.map(|a| a.to_string())),
            ));
        }
        out.push_str(if devices.is_empty() { "]\n  }" } else { "\n    ]\n  }" });
    }
    out.push_str(if rows.is_empty() { "]\n" } else { "\n]\n" });
    out
}
