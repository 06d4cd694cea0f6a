//! `vpn audit`: the audit trail kept in the store (who changed what, when, from where), newest
//! first, filtered. It never holds a secret (the store records public keys and addresses only).

use std::path::Path;

use anyhow::{bail, Result};
use vpn_control::store::Store;

use super::{load_config, table, time};

/// Filters of `vpn audit`.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct AuditArgs {
    /// Only actions starting with this (e.g. `device.` or `user.remove`).
    #[arg(long)]
    action: Option<String>,
    /// Only changes to targets containing this (a user name, or `user/device`).
    #[arg(long)]
    target: Option<String>,
    /// Only changes made by this account.
    #[arg(long)]
    who: Option<String>,
    /// Only changes since then: a date (2027-01-31), a UTC time, or a span back from now (7d, 12h).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// At most this many entries (newest first).
    #[arg(long, short = 'n', default_value_t = 50)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// How far back the filters look: the newest entries of the trail.
const SCAN: usize = 1_000_000;

/// `vpn audit`.
pub(crate) fn run(config_path: &Path, args: &AuditArgs) -> Result<()> {
    let config = load_config(config_path)?;
    let store = super::open_store_locked(&config)?;
    let now = time::unix_now();
    let since = match &args.since {
        None => None,
        // A span counts back from now; a date or time is absolute.
        Some(s) if s.ends_with(['d', 'h', 'm']) && s[..s.len() - 1].chars().all(|c| c.is_ascii_digit()) => {
            Some(now - (time::parse_expiry(s, now)? - now))
        }
        Some(s) => Some(time::parse_expiry(s, now)?),
    };
    if args.limit == 0 {
        bail!("--limit 0 shows nothing: give a positive number");
    }
    let events: Vec<_> = store
        .audit(SCAN)?
        .into_iter()
        .filter(|e| args.action.as_ref().is_none_or(|a| e.action.starts_with(a.as_str())))
        .filter(|e| args.target.as_ref().is_none_or(|t| e.target.contains(t.as_str())))
        .filter(|e| args.who.as_ref().is_none_or(|w| &e.who == w))
        .filter(|e| since.is_none_or(|s| e.at >= s))
        .take(args.limit)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    if events.is_empty() {
        println!("no audit entries match");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| vec![time::format_utc(e.at), e.who.clone(), e.origin.clone(), e.action.clone(), e.target.clone(), e.details.to_string()])
        .collect();
    print!("{}", table::render(&["WHEN", "WHO", "FROM", "ACTION", "TARGET", "DETAILS"], &rows));
    Ok(())
}
