//! `vpn import wg-quick FILE`: moves an existing WireGuard server to `vpn`. Reads its wg-quick
//! configuration (refusing a file other users can read: it holds the server's private key),
//! prints the plan (pools, every peer with its user, device and addresses, what is refused and
//! what is not carried over, each with its line), and unless `--dry-run`, after a confirmation
//! (`--yes` on scripts), writes everything into the store in one all-or-nothing batch and then
//! the server configuration.
//!
//! The store must have no users, so that the import is the whole truth; `--merge` adds the
//! file's peers to a store that has some, when it has the same server key and pools (e.g. to
//! pick up peers added to `wg0.conf` after a first import); peers already in the store are
//! skipped. The rules for names, addresses and what is dropped are in
//! `vpn_control::import`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use vpn_control::import::{self, Existing, Plan, PlanOptions};
use vpn_control::netconf;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{names, Actor, Change, NewAddresses, NewDevice, NewKeys, Pools, Store, StoreError};
use vpn_crypto::PresharedKey;

use super::{open_store, open_store_locked, table, unlock};

/// `vpn import ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ImportCmd {
    /// Take an existing WireGuard server's wg-quick config (e.g. /etc/wireguard/wg0.conf) with its
    /// peers into the store, keeping keys and addresses, so clients keep their configs.
    #[command(name = "wg-quick")]
    WgQuick(WgQuickArgs),
}

/// `vpn import wg-quick FILE`.
#[derive(clap::Args, Debug)]
pub(crate) struct WgQuickArgs {
    /// The server's wg-quick configuration (mode 0600: it holds the private key).
    file: PathBuf,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Put every peer under this user (devices named after their comments, else peerN).
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    yes: bool,
    /// Add to a store that has users already (same server key and pools needed; peers already
    /// there are skipped).
    #[arg(long)]
    merge: bool,
    /// The public host name or IP clients connect to, when no configuration exists yet
    /// (default: from a `# ENDPOINT` comment, else the egress interface's address).
    #[arg(long, value_name = "HOST")]
    endpoint: Option<String>,
}

/// Runs an import subcommand.
pub(crate) fn run(config_path: &Path, cmd: &ImportCmd) -> Result<()> {
    match cmd {
        ImportCmd::WgQuick(args) => wg_quick(config_path, args),
    }
}

fn wg_quick(config_path: &Path, args: &WgQuickArgs) -> Result<()> {
    if let Some(u) = &args.user {
        names::validate_user(u)?;
    }
    let bytes = vpn_control::keyfile::read_secret_file(&args.file)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not UTF-8 text ({e}): is it a wg-quick configuration?", args.file.display()))?;
    let file = import::wg_quick::parse(text).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!("{} is not a usable wg-quick server configuration; nothing was changed:\n{}", args.file.display(), lines.join("\n"))
    })?;

    // The setup it goes into.
    let existing_config = if config_path.exists() { Some(ServerConfig::load(config_path)?) } else { None };
    let mut config = match &existing_config {
        Some(c) => c.clone(),
        None => new_config(config_path, &args.file),
    };
    // One change at a time: the plan is made and applied under the writers' lock.
    let _lock = if args.dry_run { None } else { Some(super::writer_lock(&config)?) };
    // A dry run unlocks the store only if it is protected already: unlocking an unprotected
    // store creates its passphrase and seals its keys.
    let store = match config.store.exists() {
        false => None,
        true if args.dry_run => {
            let mut s = open_store_locked(&config)?;
            if s.is_protected()? {
                unlock(&mut s, &config)?;
            }
            Some(s)
        }
        true => Some(open_store(&config)?),
    };
    let mut notes = Vec::new();
    let (users, devices, server_key) = match &store {
        Some(s) => {
            let key = match s.server_key() {
                Ok(k) => k,
                Err(StoreError::Locked) => None,
                Err(e) => return Err(e.into()),
            };
            (s.users()?, s.devices(None)?, key)
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let existing = Existing::new(&users, &devices);
    let merging = !existing.is_empty();
    if merging && !args.merge {
        bail!(
            "the store {} already has {} user(s) and {} device(s): an import fills an empty store; add --merge to add the file's peers to them (same server key and pools needed); nothing was changed",
            config.store.display(),
            users.len(),
            devices.len()
        );
    }
    let plan = import::plan(&file, &PlanOptions { user: args.user.as_deref(), existing: merging.then_some(&existing) })?;
    let store_key = server_key.as_ref().map(|k| k.public_key());
    if merging {
        if store_key.is_none() && store.is_some() {
            notes.push("the store's server key could not be read (locked): the import itself checks that it matches the file's".to_owned());
        }
        plan.check_merge(store_key.as_ref(), &Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool }).context("nothing was changed")?;
    } else if let Some(k) = store_key.filter(|k| *k != plan.server_key.public_key()) {
        notes.push(format!("the store's server key (public key {k}) is replaced by the file's: the store has no devices that use it"));
    }
    apply_settings(&mut config, &plan, merging, existing_config.is_none(), args, &mut notes);
    config.validate().context("the configuration after the import would not be usable; nothing was changed")?;

    print_plan(&args.file, config_path, existing_config.is_some(), &config, &plan, &notes);
    if args.dry_run {
        println!("\ndry run: nothing was changed");
        return Ok(());
    }
    if plan.peers.is_empty() && merging {
        println!("\nnothing to import");
        return Ok(());
    }
    confirm(args.yes, &plan, &config, config_path)?;

    // The store first, all or nothing; then the configuration that points at it.
    let mut store = match store {
        Some(s) => s,
        None => open_store(&config)?,
    };
    let actor = Actor { origin: "import".into(), ..Actor::local() };
    let key_changes = store.server_key()?.as_ref() != Some(&plan.server_key);
    let pools = Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool };
    let zero_psk = PresharedKey::from_bytes([0; 32]);
    let mut changes: Vec<Change<'_>> = Vec::new();
    if key_changes {
        // In the same transaction as the peers: the server's key and its peers change together.
        changes.push(Change::SetServerKey(&plan.server_key));
    }
    changes.extend(plan.new_users.iter().map(|name| Change::AddUser { name }));
    changes.extend(plan.peers.iter().map(|p| {
        Change::AddDevice(NewDevice {
            user: &p.user,
            name: &p.device,
            expires_at: None,
            keys: NewKeys::PublicOnly {
                public_key: p.public_key,
                preshared_key: p.preshared_key.clone().unwrap_or_else(|| zero_psk.clone()),
            },
            addresses: NewAddresses::Fixed { ipv4: p.ipv4, ipv6: p.ipv6 },
        })
    }));
    if let Err(e) = Store::apply_batch(&mut store, changes, &pools, &actor) {
        let what = match e.index.checked_sub(usize::from(key_changes)) {
            Some(i) => failed_change(&plan, i),
            None => "the server's key".to_owned(),
        };
        return Err(anyhow::Error::new(e).context(format!("the import failed at {what}; no user or device was added")));
    }
    config.save(config_path).with_context(|| {
        format!(
            "the store {} holds the import, but the configuration could not be written: fix that and run `vpn init --reconfigure`",
            config.store.display()
        )
    })?;
    println!(
        "\nimported {} device(s) for {} new user(s) into {}; {} {}",
        plan.peers.len(),
        plan.new_users.len(),
        config.store.display(),
        if existing_config.is_some() { "updated" } else { "wrote" },
        config_path.display()
    );
    println!(
        "next: stop the old server (`systemctl disable --now wg-quick@{}` or `wg-quick down {}`), then `vpn up`{}",
        stem(&args.file).unwrap_or_else(|| "wg0".into()),
        args.file.display(),
        if existing_config.is_some() { " (or `vpn down && vpn up` if vpn was running)" } else { "" }
    );
    println!("imported devices have no private key here: `vpn device rotate USER DEVICE` gives one a new full config when wanted");
    Ok(())
}

/// The change of the batch at `index`, in words.
fn failed_change(plan: &Plan, index: usize) -> String {
    let users = plan.new_users.len();
    if index < users {
        format!("user {}", plan.new_users[index])
    } else if let Some(p) = plan.peers.get(index - users) {
        format!("device {}/{} (the peer at line {})", p.user, p.device, p.line)
    } else {
        "the end of the batch".into()
    }
}

/// The file name without `.conf`: wg-quick's interface name.
fn stem(file: &Path) -> Option<String> {
    file.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
}

/// A configuration for a server that has none yet: the defaults (as `vpn init --yes` makes
/// them), the interface named like the file's.
fn new_config(config_path: &Path, file: &Path) -> ServerConfig {
    let egress = netconf::default_route_interface().ok().flatten();
    let endpoint = egress.as_deref().and_then(crate::server::setup::primary_address).unwrap_or_else(|| "vpn.example.com".into());
    let mut c = ServerConfig::generated_default(&mut OsRng, endpoint);
    c.egress_interface = egress;
    if let Some(name) = stem(file).filter(|n| netconf::check_interface_name(n).is_ok()) {
        c.interface = name;
    }
    // The passphrase file beside the configuration, as `vpn init` puts it.
    if let Some(dir) = std::path::absolute(config_path).ok().as_deref().and_then(Path::parent) {
        c.passphrase_file = dir.join("passphrase");
    }
    c
}

/// Carries the file's settings into `config`. When merging, the configuration stays as it is
/// and differences are noted.
fn apply_settings(config: &mut ServerConfig, plan: &Plan, merging: bool, fresh: bool, args: &WgQuickArgs, notes: &mut Vec<String>) {
    if let Some(e) = &args.endpoint {
        config.endpoint = e.clone();
    } else if fresh {
        match &plan.endpoint {
            Some(e) => config.endpoint = e.clone(),
            None => notes.push(format!(
                "endpoint {} is a guess: it only goes into configs exported later; set it with --endpoint or `vpn init --reconfigure --endpoint HOST`",
                config.endpoint
            )),
        }
    }
    let show_dns = |d: &[IpAddr]| d.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    if merging {
        if plan.listen_port.is_some_and(|p| p != config.listen_port) {
            notes.push(format!("the file's ListenPort is not applied when merging: the server keeps port {}", config.listen_port));
        }
        if plan.mtu.is_some_and(|m| m != config.mtu) {
            notes.push(format!("the file's MTU is not applied when merging: the server keeps {}", config.mtu));
        }
        if plan.dns.as_ref().is_some_and(|d| *d != config.dns) {
            notes.push(format!("the file's DNS is not applied when merging: devices keep {}", show_dns(&config.dns)));
        }
        return;
    }
    if let Some(p) = plan.listen_port {
        config.listen_port = p;
    }
    config.ipv4_pool = plan.pools.ipv4;
    config.ipv6_pool = plan.pools.ipv6;
    if let Some(m) = plan.mtu {
        config.mtu = m;
    }
    if let Some(d) = &plan.dns {
        config.dns = d.clone();
    }
}

fn print_plan(file: &Path, config_path: &Path, exists: bool, config: &ServerConfig, plan: &Plan, notes: &[String]) {
    let pool = |p: Option<vpn_control::store::IpPrefix>, family: &str| p.map(|p| format!("{family} {p}"));
    let pools: Vec<String> = [pool(plan.pools.ipv4, "IPv4"), pool(plan.pools.ipv6, "IPv6")].into_iter().flatten().collect();
    let servers: Vec<String> = plan.server_addresses.iter().map(|a| a.addr().to_string()).collect();
    println!("import of {}", file.display());
    println!("  server public key  {}", plan.server_key.public_key());
    println!("  pools              {} (server {})", pools.join(", "), servers.join(", "));
    println!(
        "  configuration      {} ({}): interface {}, port {}, MTU {}, DNS {}, endpoint {}",
        config_path.display(),
        if exists { "updated" } else { "new" },
        config.interface,
        config.listen_port,
        config.mtu,
        if config.dns.is_empty() { "none".into() } else { config.dns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") },
        config.endpoint
    );
    println!("  store              {}", config.store.display());
    let mut summary =
        format!("{} peer(s) in the file: {} to import ({} new user(s))", plan.peers_in_file, plan.peers.len(), plan.new_users.len());
    if !plan.skipped.is_empty() {
        summary += &format!(", {} already in the store", plan.skipped.len());
    }
    if !plan.refused.is_empty() {
        summary += &format!(", {} refused", plan.refused.len());
    }
    println!("\n{summary}");
    if !plan.peers.is_empty() {
        let rows: Vec<Vec<String>> = plan
            .peers
            .iter()
            .map(|p| {
                vec![
                    p.line.to_string(),
                    p.user.clone(),
                    p.device.clone(),
                    p.ipv4.map_or("-".into(), |a| a.to_string()),
                    p.ipv6.map_or("-".into(), |a| a.to_string()),
                    if p.preshared_key.is_some() { "yes" } else { "no" }.into(),
                    p.public_key.to_base64(),
                ]
            })
            .collect();
        print!("{}", table::render(&["LINE", "USER", "DEVICE", "IPV4", "IPV6", "PSK", "PUBLIC KEY"], &rows));
    }
    if !plan.skipped.is_empty() {
        println!("\nalready in the store (skipped):");
        for s in &plan.skipped {
            println!("  line {}: {} is device {}", s.line, s.public_key, s.device);
        }
    }
    if !plan.refused.is_empty() {
        println!("\nrefused (not imported):");
        for r in &plan.refused {
            println!("  {r}");
        }
    }
    if !plan.warnings.is_empty() {
        println!("\nnot carried over:");
        for w in &plan.warnings {
            println!("  {w}");
        }
    }
    if !notes.is_empty() {
        println!("\nnotes:");
        for n in notes {
            println!("  {n}");
        }
    }
}

/// Asks before writing, unless `--yes`.
fn confirm(yes: bool, plan: &Plan, config: &ServerConfig, config_path: &Path) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal, so there is no one to confirm: add --yes to import, or --dry-run to see the plan only; nothing was changed");
    }
    let problems = if plan.refused.is_empty() { String::new() } else { format!(", leaving out {} refused peer(s)", plan.refused.len()) };
    eprint!(
        "\nimport {} device(s) into {}{problems}, and write {}? [y/N] ",
        plan.peers.len(),
        config.store.display(),
        config_path.display()
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}
