//! The naming rules for users and devices.
//!
//! Names end up in file names (`alice-laptop.conf`), shell commands and logs, so they are kept to
//! a small ASCII alphabet and must start with a letter or digit (never `-`, which reads as a
//! command-line flag, nor `.`). Names are case-sensitive, like Unix user names.

use super::StoreError;

/// The longest user name.
pub const MAX_USER_LEN: usize = 64;
/// The longest device name.
pub const MAX_DEVICE_LEN: usize = 32;

const USER_RULE: &str = "use 1-64 letters, digits, '.', '_', '-' or '@' (e.g. alice or alice@example.com)";
const USER_START: &str = "start with a letter or digit (e.g. alice)";
const DEVICE_RULE: &str = "use 1-32 letters, digits, '.', '_' or '-' (e.g. laptop)";
const DEVICE_START: &str = "start with a letter or digit (e.g. laptop)";

/// Checks a user name: 1 to 64 ASCII letters, digits, `.`, `_`, `-` or `@`, starting with a
/// letter or digit.
pub fn validate_user(name: &str) -> Result<(), StoreError> {
    validate(name, "user", MAX_USER_LEN, b"._-@", USER_RULE, USER_START)
}

/// Checks a device name: 1 to 32 ASCII letters, digits, `.`, `_` or `-`, starting with a letter
/// or digit.
pub fn validate_device(name: &str) -> Result<(), StoreError> {
    validate(name, "device", MAX_DEVICE_LEN, b"._-", DEVICE_RULE, DEVICE_START)
}

fn validate(name: &str, kind: &'static str, max: usize, extra: &[u8], rule: &'static str, start: &'static str) -> Result<(), StoreError> {
    let err = |reason| Err(StoreError::InvalidName { kind, name: name.to_owned(), reason });
    let b = name.as_bytes();
    if b.is_empty() || b.len() > max || !b.iter().all(|c| c.is_ascii_alphanumeric() || extra.contains(c)) {
        return err(rule);
    }
    if !b[0].is_ascii_alphanumeric() {
        return err(start);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for ok in ["a", "alice", "alice@example.com", "bob.smith", "x_1-2", "0day", &"a".repeat(64)] {
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "@x", "a b", "é", "a/b", &"a".repeat(65)] {
            assert!(validate_user(bad).is_err(), "{bad}");
        }
        for ok in ["laptop", "phone-2", "a.b_c", &"d".repeat(32)] {
            assert!(validate_device(ok).is_ok(), "{ok}");
        }
        for bad in ["", "my phone", "x@y", "_x", &"d".repeat(33)] {
            assert!(validate_device(bad).is_err(), "{bad}");
        }
    }
}
