//! Running `ip` and `nft`: directly (no shell), arguments separate, in the C locale so that error
//! messages are the ones [`hint_for`] knows, with optional standard input.

use std::io::{self, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{hint_for, NetError};

/// A program this module runs, with where to get it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Program {
    /// `ip` from iproute2.
    Ip,
    /// `nft` from nftables.
    Nft,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Ip => "ip",
            Program::Nft => "nft",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Program::Ip => "install iproute2 (apt-get install iproute2, dnf install iproute)",
            Program::Nft => "install nftables (apt-get install nftables, dnf install nftables)",
        }
    }
}

/// The command line as a person would type it, for error messages.
pub(super) fn command_line(program: Program, args: &[&str], stdin: bool) -> String {
    let mut s = program.name().to_owned();
    for a in args {
        s.push(' ');
        if !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/:=,@+".contains(&b)) {
            s.push_str(a);
        } else {
            s.push('\'');
            s.push_str(&a.replace('\'', r"'\''"));
            s.push('\'');
        }
    }
    if stdin {
        s.push_str(" (script on standard input)");
    }
    s
}

/// Runs `program args…`, feeding `stdin` when given; returns standard output on success.
pub(super) fn run(program: Program, args: &[&str], stdin: Option<&str>) -> Result<String, NetError> {
    let command = command_line(program, args, stdin.is_some());
    let mut child = None;
    // `PATH` first; then the usual places, since root's PATH under some service managers or `su`
    // lacks the sbin directories.
    let candidates = [program.name().to_owned(), format!("/usr/sbin/{}", program.name()), format!("/sbin/{}", program.name())];
    for (i, exe) in candidates.iter().enumerate() {
        if i > 0 && !Path::new(exe).exists() {
            continue;
        }
        let spawned = Command::new(exe)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(c) => {
                child = Some(c);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(NetError::Spawn { command, source }),
        }
    }
    let Some(mut child) = child else {
        return Err(NetError::NotFound { command, program: program.name(), hint: program.install_hint() });
    };
    if let Some(input) = stdin {
        if let Some(mut pipe) = child.stdin.take() {
            // A write error (the program exited early) shows in its exit status and stderr below.
            let _ = pipe.write_all(input.as_bytes());
        }
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn { command: command.clone(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let hint = hint_for(&stderr);
        return Err(NetError::Failed { command, status: out.status, stderr, hint });
    }
    String::from_utf8(out.stdout).map_err(|_| NetError::Output { command, message: "not UTF-8".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_odd_arguments() {
        assert_eq!(
            command_line(Program::Ip, &["addr", "replace", "10.8.0.1/24", "dev", "wg0"], false),
            "ip addr replace 10.8.0.1/24 dev wg0"
        );
        assert_eq!(command_line(Program::Nft, &["-f", "-"], true), "nft -f - (script on standard input)");
        assert_eq!(command_line(Program::Ip, &["a b", "it's", ""], false), r"ip 'a b' 'it'\''s' ''");
    }
}
