//! `vpn genkey`, `vpn pubkey`, `vpn genpsk`: byte-compatible with `wg genkey`, `wg pubkey` and
//! `wg genpsk` (base64 on one line; `pubkey` reads exactly one key, tolerating trailing
//! whitespace only).

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_crypto::{PresharedKey, PrivateKey};

/// Warns, as `wg` does, when a secret is about to be written to a file others can read.
fn warn_if_world_accessible_stdout() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata("/dev/stdout") {
            if meta.file_type().is_file() && meta.mode() & 0o007 != 0 {
                eprintln!("Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.");
            }
        }
    }
}

fn print_line(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}").context("cannot write to standard output")?;
    out.flush().context("cannot write to standard output")
}

/// `vpn genkey`.
pub(crate) fn genkey() -> Result<()> {
    warn_if_world_accessible_stdout();
    print_line(&PrivateKey::generate(&mut OsRng).to_base64())
}

/// `vpn genpsk`.
pub(crate) fn genpsk() -> Result<()> {
    warn_if_world_accessible_stdout();
    print_line(&PresharedKey::generate(&mut OsRng).to_base64())
}

/// `vpn pubkey`.
pub(crate) fn pubkey() -> Result<()> {
    let mut input = zeroize::Zeroizing::new(Vec::with_capacity(64));
    std::io::stdin().lock().take(4096).read_to_end(&mut input).context("cannot read the private key from standard input")?;
    let text = std::str::from_utf8(&input).ok().map(str::trim_end);
    let Some(text) = text.filter(|t| t.len() >= 44) else {
        bail!("key is not the correct length or format: pipe a base64 private key, e.g. `vpn genkey | vpn pubkey`");
    };
    if text.len() > 44 {
        bail!("trailing characters found after the key: give exactly one base64 private key");
    }
    let key = PrivateKey::from_base64(text).context("key is not the correct length or format")?;
    print_line(&key.public_key().to_base64())
}
