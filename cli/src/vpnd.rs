//! `vpnd IFNAME`: the daemon under wireguard-go's command-line contract, for
//! `WG_QUICK_USERSPACE_IMPLEMENTATION=vpnd wg-quick up IFNAME`.
//!
//! The packet engine it runs is not built yet: until it is, `vpnd` says so and exits with an
//! error instead of pretending to bring an interface up.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!("vpnd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!("vpnd: the userspace data plane is not available in this build yet; no interface was created.");
    eprintln!("Usage: vpnd [-f/--foreground] INTERFACE-NAME");
    ExitCode::FAILURE
}
