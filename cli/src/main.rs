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
        #[command(flatten)]
        tuning: TuningArgs,
    },
    /// Print a new random private key (base64), like `wg genkey`.
    Genkey,
    /// Read a private key (base64) on stdin and print its public key, like `wg pubkey`.
    Pubkey,
    /// Print a new random pre-shared key (base64), like `wg genpsk`.
    Genpsk,
}

/// Data-path switches of `vpn daemon` (each also an environment variable, for `vpnd`).
#[derive(clap::Args, Debug)]
struct TuningArgs {
    /// Turn off TUN segmentation offload (TSO/USO, and GRO on writes) [env: VPN_TUN_OFFLOAD=off].
    #[arg(long)]
    no_tun_offload: bool,
    /// Turn off UDP GSO (send datagrams one by one, still batched) [env: VPN_UDP_GSO=off].
    #[arg(long)]
    no_udp_gso: bool,
    /// Turn off UDP GRO on receive [env: VPN_UDP_GRO=off].
    #[arg(long)]
    no_udp_gro: bool,
    /// Crypto threads beside the readers; 0 keeps crypto on the readers (default: none on 2 CPUs, else CPUs - 2)
    /// [env: VPN_CRYPTO_THREADS].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=64))]
    crypto_threads: Option<u16>,
}

impl TuningArgs {
    /// The environment's choices, overridden by flags.
    fn resolve(&self) -> anyhow::Result<daemon::Tuning> {
        let mut t = daemon::Tuning::from_env()?;
        t.tun_offload &= !self.no_tun_offload;
        t.udp_gso &= !self.no_udp_gso;
        t.udp_gro &= !self.no_udp_gro;
        if let Some(n) = self.crypto_threads {
            t.crypto_threads = Some(usize::from(n));
        }
        Ok(t)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Daemon { foreground, ifname, tuning } => tuning.resolve().and_then(|t| daemon::start(foreground, ifname, t)),
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
