//! `vpn`: userspace WireGuard and VPN server manager.
//!
//! Each subcommand is one thin function over the library crates: the server manager (`vpn init`,
//! `vpn up`/`down`, `vpn user ...`, `vpn device ...`, `vpn status`), the userspace WireGuard daemon
//! (`vpn daemon`, also installed as `vpnd` for `wg-quick`), `vpn bench`, and the key tools that
//! `wg genkey`, `wg pubkey` and `wg genpsk` users expect, with the same input and output.

mod bench;
mod daemon;
mod keys;
mod manage;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Userspace WireGuard and VPN server manager.
#[derive(Parser, Debug)]
#[command(name = "vpn", version, about, long_about = None)]
struct Cli {
    /// The server configuration file.
    #[arg(long, short, global = true, env = "VPN_CONFIG", default_value = vpn_control::server_config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Set up a VPN server: asks for endpoint, port, pools, DNS, egress (or take flags with --yes).
    Init(manage::init::InitArgs),
    /// Bring the server up in the foreground (creates a default setup on first run; root).
    Up {
        #[command(flatten)]
        tuning: TuningArgs,
    },
    /// Stop the running server and remove its interface and firewall rules (root).
    Down,
    /// Manage users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage devices (each gets addresses, keys and a client configuration).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Show every device: address, state, endpoint, last handshake, transfer.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Migrate an existing WireGuard server: `vpn import wg-quick /etc/wireguard/wg0.conf`.
    #[command(subcommand)]
    Import(manage::import::ImportCmd),
    /// Keys at rest and rotation: `vpn keys status`, `vpn keys passphrase`, `vpn keys rotate --server`.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Show the audit trail: who changed what, when, from where (newest first).
    Audit(manage::audit::AuditArgs),
    /// Print shell completions (bash, zsh, fish, ...) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
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
    /// TUN transmit queue in packets: room for the packets that wait while the reader has no
    /// core (default 4000) [env: VPN_TUN_QUEUE_LEN].
    #[arg(long, value_name = "PACKETS", value_parser = daemon::parse_tun_queue_len)]
    tun_queue_len: Option<u32>,
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
        if let Some(n) = self.tun_queue_len {
            t.tun_queue_len = n;
        }
        Ok(t)
    }
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    /// Add a user.
    Add {
        /// Name: letters, digits, '.', '_', '-', '@'.
        name: String,
    },
    /// List users.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a user and its devices.
    Show {
        /// The user.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user (or many: --match, --import, --all): none of its devices can connect.
    Disable {
        /// The user.
        #[arg(required_unless_present_any = ["pattern", "import", "all"], conflicts_with_all = ["pattern", "import", "all"])]
        name: Option<String>,
        #[command(flatten)]
        select: manage::bulk::Selection,
    },
    /// Enable a user (or many: --match, --import, --all) again.
    Enable {
        /// The user.
        #[arg(required_unless_present_any = ["pattern", "import", "all"], conflicts_with_all = ["pattern", "import", "all"])]
        name: Option<String>,
        #[command(flatten)]
        select: manage::bulk::Selection,
    },
    /// Remove a user (or many: --match, --import, --all) and all its devices.
    Remove {
        /// The user.
        #[arg(required_unless_present_any = ["pattern", "import", "all"], conflicts_with_all = ["pattern", "import", "all"])]
        name: Option<String>,
        #[command(flatten)]
        select: manage::bulk::Selection,
        /// Confirm removing its devices too (and, with a selection, the users listed).
        #[arg(long, short)]
        yes: bool,
    },
    /// Add users and devices from a CSV or JSON file: checked whole first, all or nothing (or
    /// resumable with --batch); --list shows past imports, --rollback ID undoes one.
    Import(manage::bulk::ImportArgs),
    /// Write every user and device (no secrets) as CSV or JSON, in the format import reads.
    Export(manage::bulk::ExportArgs),
}

/// Where a device's client configuration goes.
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Write the client configuration to this file (mode 0600) instead of stdout.
    #[arg(long, short, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Show the QR code in the terminal (default: when stdout is a terminal).
    #[arg(long, overrides_with = "no_qr")]
    qr: bool,
    /// Do not show the QR code.
    #[arg(long)]
    no_qr: bool,
    /// Also write the QR code as a PNG image (mode 0600).
    #[arg(long, value_name = "PATH")]
    png: Option<PathBuf>,
}

impl ExportArgs {
    fn output(&self) -> manage::devices::Output {
        let qr = if self.qr {
            Some(true)
        } else if self.no_qr {
            Some(false)
        } else {
            None
        };
        manage::devices::Output { file: self.output.clone(), qr, png: self.png.clone() }
    }
}

#[derive(Subcommand, Debug)]
enum DeviceCmd {
    /// Add a device to a user: allocates addresses, generates its keys, prints its client config.
    Add {
        /// The user the device belongs to.
        user: String,
        /// Device name (default: device1, device2, ...).
        name: Option<String>,
        /// When it stops working: 2027-01-31, 2027-01-31T12:00:00Z, or a span like 30d.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// List devices (of one user, or all).
    List {
        /// Only this user's devices.
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a device; with --client (or --qr/--png/--output), its client configuration again.
    Show {
        /// The user.
        user: String,
        /// The device.
        name: String,
        /// Print the client configuration too.
        #[arg(long)]
        client: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        export: ExportArgs,
    },
    /// Remove a device: its client is cut off at once.
    Remove {
        /// The user.
        user: String,
        /// The device.
        name: String,
    },
    /// Disable a device (kept, but it cannot connect).
    Disable {
        /// The user.
        user: String,
        /// The device.
        name: String,
    },
    /// Enable a device again.
    Enable {
        /// The user.
        user: String,
        /// The device.
        name: String,
    },
    /// New keys for a device; prints its new config. The old keys keep working until the device
    /// connects with the new config, or until the grace period ends.
    Rotate {
        /// The user.
        user: String,
        /// The device.
        name: String,
        /// When the old keys stop at the latest: a span like 7d or a date (default: the config's
        /// rotation_grace_days).
        #[arg(long, value_name = "WHEN")]
        grace: Option<String>,
        /// Switch at once: the old keys stop working now.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        export: ExportArgs,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// How the store's keys are protected, and which rotations are due or under way.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change the passphrase that protects the store's keys (no key is re-encrypted).
    Passphrase {
        /// Read the new passphrase from this file (mode 0600).
        #[arg(long, value_name = "FILE")]
        from_file: Option<PathBuf>,
        /// Generate a random passphrase (written to the passphrase file).
        #[arg(long)]
        generate: bool,
    },
    /// Rotate the server's key; devices keep working with their old configs for a grace period.
    Rotate {
        /// Rotate the server's key (the only kind here; devices: `vpn device rotate`).
        #[arg(long, required = true)]
        server: bool,
        /// When the previous key stops being accepted: a span like 14d or a date (default: the
        /// config's rotation_grace_days).
        #[arg(long, value_name = "WHEN")]
        grace: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = cli.config.as_path();
    let result = match cli.command {
        Command::Init(args) => manage::init::run(cfg, &args),
        Command::Up { tuning } => tuning.resolve().and_then(|t| server::up(cfg, t)),
        Command::Down => server::down(cfg),
        Command::User(cmd) => match cmd {
            UserCmd::Add { name } => manage::users::add(cfg, &name),
            UserCmd::List { json } => manage::users::list(cfg, json),
            UserCmd::Show { name, json } => manage::users::show(cfg, &name, json),
            UserCmd::Disable { name, select } => manage::bulk::set_enabled(cfg, name.as_deref(), &select, false),
            UserCmd::Enable { name, select } => manage::bulk::set_enabled(cfg, name.as_deref(), &select, true),
            UserCmd::Remove { name, select, yes } => manage::bulk::remove(cfg, name.as_deref(), &select, yes),
            UserCmd::Import(args) => manage::bulk::import(cfg, &args),
            UserCmd::Export(args) => manage::bulk::export(cfg, &args),
        },
        Command::Device(cmd) => match cmd {
            DeviceCmd::Add { user, name, expires, export } => {
                manage::devices::add(cfg, &user, name.as_deref(), expires.as_deref(), &export.output())
            }
            DeviceCmd::List { user, json } => manage::devices::list(cfg, user.as_deref(), json),
            DeviceCmd::Show { user, name, client, json, export } => {
                manage::devices::show(cfg, &user, &name, client, json, &export.output())
            }
            DeviceCmd::Remove { user, name } => manage::devices::remove(cfg, &user, &name),
            DeviceCmd::Disable { user, name } => manage::devices::set_enabled(cfg, &user, &name, false),
            DeviceCmd::Enable { user, name } => manage::devices::set_enabled(cfg, &user, &name, true),
            DeviceCmd::Rotate { user, name, grace, now, export } => {
                manage::devices::rotate(cfg, &user, &name, grace.as_deref(), now, &export.output())
            }
        },
        Command::Keys(cmd) => match cmd {
            KeysCmd::Status { json } => manage::keys::status(cfg, json),
            KeysCmd::Passphrase { from_file, generate } => {
                manage::keys::passphrase(cfg, &manage::keys::NewPassphrase { from_file, generate })
            }
            KeysCmd::Rotate { server: _, grace } => manage::keys::rotate_server(cfg, grace.as_deref()),
        },
        Command::Status { json } => manage::status::run(cfg, json),
        Command::Import(cmd) => manage::import::run(cfg, &cmd),
        Command::Audit(args) => manage::audit::run(cfg, &args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vpn", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).map_err(Into::into),
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
