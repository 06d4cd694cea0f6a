//! `vpn`: userspace WireGuard and VPN server manager.
//!
//! Each subcommand is one thin function over the library crates. What exists today: the key tools
//! that `wg genkey`, `wg pubkey` and `wg genpsk` users expect, with the same input and output.
//! The data plane (`vpn daemon`) and the server manager (`vpn up`, users, devices) come next.

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
