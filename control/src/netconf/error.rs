//! [`NetError`]: why a network setup step failed, with the command line that failed, what it said,
//! and how to fix it.

use std::io;
use std::process::ExitStatus;

/// A failed network setup step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The program is not installed (or not on `PATH`, `/usr/sbin` or `/sbin`).
    #[error("`{command}` failed: {program} not found: {hint}")]
    NotFound {
        /// The command line.
        command: String,
        /// The program that is missing.
        program: &'static str,
        /// How to install it.
        hint: &'static str,
    },
    /// The program exists but could not be started.
    #[error("`{command}` could not be started: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The command ran and failed.
    #[error("`{command}` failed ({status}): {}{}", stderr_text(.stderr), hint_text(.hint))]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote to standard error, trimmed.
        stderr: String,
        /// A likely fix, when the error is a known one.
        hint: Option<&'static str>,
    },
    /// The command succeeded but its output could not be understood.
    #[error("unexpected output from `{command}`: {message}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong with the output.
        message: String,
    },
    /// A `/proc/sys` setting could not be read or written.
    #[error("cannot set {path}: {source}{}", hint_text(.hint))]
    Sysctl {
        /// The file under `/proc/sys`.
        path: &'static str,
        /// The operating system's reason.
        source: io::Error,
        /// A likely fix.
        hint: Option<&'static str>,
    },
    /// An interface name that is not safe to use was refused.
    #[error("refusing {what} name {name:?}: it {reason}")]
    InvalidName {
        /// Which setting ("interface", "egress interface").
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A setting that cannot be turned into rules.
    #[error("invalid firewall setting: {0}")]
    InvalidSpec(String),
}

fn stderr_text(stderr: &str) -> &str {
    if stderr.is_empty() {
        "(no error message)"
    } else {
        stderr
    }
}

fn hint_text(hint: &Option<&'static str>) -> String {
    match hint {
        Some(h) => format!(" ({h})"),
        None => String::new(),
    }
}

/// The fix for an error a command printed, when it is a known one.
pub(super) fn hint_for(stderr: &str) -> Option<&'static str> {
    let s = stderr.to_ascii_lowercase();
    if s.contains("operation not permitted") || s.contains("permission denied") {
        Some("needs root: run as root, or with the CAP_NET_ADMIN capability")
    } else if s.contains("cannot find device") || s.contains("does not exist") {
        Some("the interface does not exist: is the tunnel up?")
    } else if s.contains("could not process rule: no such file or directory") {
        Some("the kernel lacks an nftables feature this ruleset uses: load nf_tables and nft_masq (modprobe nf_tables nft_masq)")
    } else if s.contains("protocol not supported") {
        Some("the kernel has no nftables support: load it with `modprobe nf_tables`")
    } else {
        None
    }
}
