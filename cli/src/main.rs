//! `vpn`: userspace WireGuard and VPN server manager.
//!
//! Each subcommand is one thin function over the library crates: the userspace WireGuard daemon
//! (`vpn daemon`, also installed as `vpnd` for `wg-quick`) and the key tools that `wg genkey`,
//! `wg pubkey` and `wg genpsk` users expect, with the same input and output.

mod bench;
mod daemon;
mod keys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Userspace WireGuard and VPN server manager.
#[derive(Parser, Debug)]
#[command(name = "vpn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark vpn against wireguard-go and boringtun in two network namespaces (root).
    Bench(bench::BenchArgs),
    /// Run a userspace WireGuard interface driven by `wg` (a drop-in for wireguard-go).
    Daemon {
        /// Stay in the foreground instead of detaching.
        #[arg(short, long)]
        foreground: bool,
        /// Interface name, e.g. wg0.
        ifname: String,
    },
    /// Print a new random private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key (base64) on stdin and print its public key, like `wg pubkey`.
    Pubkey,
    /// Print a new random pre-shared key (base64), like `wg genpsk`.
    Genpsk,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Daemon { foreground, ifname } => daemon::start(foreground, ifname),
        Command::Genkey => keys::genkey(),
        Command::Pubkey => keys::pubkey(),
        Command::Genpsk => keys::genpsk(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
