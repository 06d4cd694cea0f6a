//! `vpnd [-f/--foreground] INTERFACE-NAME`: the userspace WireGuard daemon under wireguard-go's
//! exact command-line contract, for `WG_QUICK_USERSPACE_IMPLEMENTATION=vpnd wg-quick up wg0`.
//! Same as `vpn daemon`.

#[path = "daemon.rs"]
mod daemon;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!("vpnd v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = daemon::parse_args(&args).and_then(daemon::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpnd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
