//! The server manager's costs, as an operator feels them:
//!
//! - `store/add_device/1000_users`: one device added (keys, address allocation, audit row, one
//!   transaction) to a store that already holds 1,000 users with a device each;
//! - `up/ready/1000_devices`: from opening that store (unlocking its keys included) to an engine holding every device as a peer (the part of `vpn up`
//!   between the configuration and answering handshakes; the interface and firewall setup are
//!   separate system commands);
//! - `cli/help` and `cli/device_add/1000_users`: the `vpn` binary end to end, process start
//!   included (needs `cargo build --release --bin vpn` first; skipped otherwise);
//! - `bulk/user_import/10000_users`: `vpn user import` of a CSV of 10,000 users with a device each
//!   into an empty store, the whole command (start, unlocking the store, checking the file,
//!   10,000 key pairs, one transaction); each run prints its time (same condition as `cli`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_main, Criterion};
use rand_core::OsRng;
use vpn_control::keyring;
use vpn_control::server_config::ServerConfig;
use vpn_control::store::{Actor, DeviceSecrets, NewDevice, Pools, SqliteStore, Store};
use vpn_crypto::{PresharedKey, PrivateKey};
use vpn_dataplane::memory::{MemoryNetwork, MemoryTun};
use vpn_dataplane::Engine;

const USERS: usize = 1_000;

fn secrets() -> DeviceSecrets {
    DeviceSecrets { private_key: Some(PrivateKey::generate(&mut OsRng)), preshared_key: PresharedKey::generate(&mut OsRng) }
}

/// A configuration and a store in `dir` with `USERS` users of one device each; the server key set.
fn populated(dir: &Path) -> (ServerConfig, PathBuf) {
    let mut config = ServerConfig::generated_default(&mut OsRng, "vpn.example.com".into());
    config.ipv4_pool = Some("10.8.0.0/16".parse().expect("pool"));
    config.store = dir.join("vpn.db");
    config.egress_interface = Some("lo".into());
    config.passphrase_file = dir.join("passphrase");
    config.audit_log = Some(dir.join("audit.jsonl"));
    let cfg_path = dir.join("vpn.toml");
    config.save(&cfg_path).expect("config");
    keyring::create_passphrase_file(&config.passphrase_file, &mut OsRng).expect("passphrase");
    let mut store = open_unlocked(&config);
    let actor = Actor { who: "bench".into(), origin: "bench".into() };
    store.set_server_key(&PrivateKey::generate(&mut OsRng), &actor).expect("key");
    let pools = Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool };
    for i in 0..USERS {
        let user = format!("user{i}");
        store.add_user(&user, &actor).expect("user");
        store.add_device(NewDevice::generated(&user, "phone", secrets()), &pools, &actor).expect("device");
    }
    (config, cfg_path)
}

/// The store of `config`, unlocked as `vpn` does it: the passphrase from its file (a random one,
/// as `vpn init` makes), the data key unwrapped with Argon2id at the cost stored with it.
fn open_unlocked(config: &ServerConfig) -> SqliteStore {
    let mut store = SqliteStore::open(&config.store).expect("store");
    let (pass, _) = keyring::find_passphrase(&config.passphrase_file).expect("passphrase").expect("passphrase file");
    store.unlock(&pass, keyring::KdfParams::RANDOM_PASSPHRASE, &Actor::new("bench", "bench")).expect("unlock");
    store
}

fn release_binary() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/vpn");
    p.exists().then_some(p)
}

mod benches {
    #![allow(missing_docs, unreachable_pub)]
    use super::*;

    pub fn manager(c: &mut Criterion) {
        let dir = std::env::temp_dir().join(format!("vpn-bench-manager-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (config, cfg_path) = populated(&dir);
        let actor = Actor { who: "bench".into(), origin: "bench".into() };
        let pools = Pools { ipv4: config.ipv4_pool, ipv6: config.ipv6_pool };

        let mut g = c.benchmark_group("store");
        g.sample_size(30).measurement_time(Duration::from_secs(5));
        let mut store = open_unlocked(&config);
        let mut n = 0usize;
        g.bench_function("add_device/1000_users", |b| {
            b.iter(|| {
                n += 1;
                let user = format!("user{}", n % USERS);
                let name = format!("d{n}");
                store.add_device(NewDevice::generated(&user, &name, secrets()), &pools, &actor).expect("add")
            })
        });
        g.finish();
        // Back to 1,000 devices for the next measurements.
        for d in store.devices(None).expect("devices").into_iter().filter(|d| d.name != "phone") {
            store.remove_device(&d.user, &d.name, &actor).expect("remove");
        }
        drop(store);

        let mut g = c.benchmark_group("up");
        g.sample_size(10).measurement_time(Duration::from_secs(8));
        let net = MemoryNetwork::new();
        g.bench_function("ready/1000_devices", |b| {
            // The engine's shutdown (thread joins) is not part of `vpn up`'s start: dropped untimed.
            b.iter_with_large_drop(|| {
                let store = open_unlocked(&config);
                let key = store.server_key().expect("key").expect("key set");
                let desired = vpn_control::peers::desired(&config, &key, &store, 0).expect("desired");
                assert_eq!(desired.peers.len(), USERS);
                let engine = Engine::start(MemoryTun::new(1420), net.host("192.0.2.1".parse().expect("ip"))).expect("engine");
                engine.apply(desired).expect("apply");
                engine
            })
        });
        g.finish();

        if let Some(vpn) = release_binary() {
            let mut g = c.benchmark_group("cli");
            g.sample_size(20).measurement_time(Duration::from_secs(5));
            g.bench_function("help", |b| b.iter(|| Command::new(&vpn).arg("--help").stdout(Stdio::null()).status().expect("vpn --help")));
            let mut n = 0usize;
            g.bench_function("device_add/1000_users", |b| {
                b.iter(|| {
                    n += 1;
                    let status = Command::new(&vpn)
                        .args(["-c"])
                        .arg(&cfg_path)
                        .args(["device", "add", &format!("user{}", n % USERS), &format!("cli{n}"), "--no-qr"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .expect("vpn device add");
                    assert!(status.success());
                })
            });
            g.finish();
        } else {
            eprintln!("cli benchmarks skipped: build target/release/vpn first (cargo build --release --bin vpn)");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `bulk/user_import/10000_users`: one sample is one import into a fresh store (a second run of
/// the same file would find everything present), so the sampling is flat: ten imports. Needs
/// the release binary, like the `cli` group; needs no populated store.
fn user_import(c: &mut Criterion) {
    const N: usize = 10_000;
    let Some(vpn) = release_binary() else {
        eprintln!("bulk benchmarks skipped: build target/release/vpn first (cargo build --release --bin vpn)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("vpn-bench-import-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let csv = dir.join("import-10000.csv");
    let mut text = String::from("user,device\n");
    for i in 0..N {
        text.push_str(&format!("user{i:05},phone\n"));
    }
    std::fs::write(&csv, text).expect("import file");
    let mut g = c.benchmark_group("bulk");
    g.sample_size(10)
        .sampling_mode(criterion::SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1));
    let mut run = 0usize;
    g.bench_function("user_import/10000_users", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let here = dir.join(format!("import-{run}"));
                std::fs::create_dir_all(&here).expect("dir");
                let mut config = ServerConfig::generated_default(&mut OsRng, "vpn.example.com".into());
                config.ipv4_pool = Some("10.8.0.0/16".parse().expect("pool"));
                config.store = here.join("vpn.db");
                config.passphrase_file = here.join("passphrase");
                config.audit_log = Some(here.join("audit.jsonl"));
                config.egress_interface = Some("lo".into());
                // No server of this host answers on this interface's socket.
                config.interface = "vbench0".into();
                let cfg_path = here.join("vpn.toml");
                config.save(&cfg_path).expect("config");
                let start = std::time::Instant::now();
                let out = Command::new(&vpn).arg("-c").arg(&cfg_path).args(["user", "import"]).arg(&csv).output().expect("vpn user import");
                let took = start.elapsed();
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                eprintln!("vpn user import of {N} users with a device each: {:.2} s", took.as_secs_f64());
                total += took;
                let _ = std::fs::remove_dir_all(&here);
            }
            total
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

// `criterion_group!` defines an undocumented `pub fn`; keep it in a module of its own.
#[allow(missing_docs, unreachable_pub)]
mod group {
    criterion::criterion_group!(manager, super::user_import, super::benches::manager);
}

criterion_main!(group::manager);
