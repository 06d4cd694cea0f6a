//! The records the store hands out: [`User`], [`Device`], [`PendingRotation`], [`DeviceSecrets`],
//! [`AuditEvent`], and the input [`NewDevice`] ([`NewKeys`], [`NewAddresses`]), plus who made a change ([`Actor`]) and where addresses come from
//! ([`Pools`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::IpPrefix;

/// Who made a change, recorded in the audit log. Advisory: anyone who can write the store file
/// can write anything into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The operating-system user who ran the command.
    pub who: String,
    /// Where the change came from: `"cli"`, `"import"`, a host name...
    pub origin: String,
}

impl Actor {
    /// An actor from parts.
    pub fn new(who: impl Into<String>, origin: impl Into<String>) -> Actor {
        Actor { who: who.into(), origin: origin.into() }
    }

    /// The user running this process: `$SUDO_USER` (the person behind `sudo`), else `$USER`, else
    /// the numeric uid. Origin: `"cli"`, then the terminal it runs on (`on /dev/pts/3`) and the
    /// SSH client's address (`from 203.0.113.5 (ssh)`) when known.
    pub fn local() -> Actor {
        let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
        let who = var("SUDO_USER").or_else(|| var("USER")).unwrap_or_else(uid);
        let mut origin = "cli".to_owned();
        let tty = ["/proc/self/fd/0", "/proc/self/fd/2"].iter().find_map(|fd| {
            std::fs::read_link(fd).ok().filter(|p| p.starts_with("/dev/pts") || p.to_string_lossy().starts_with("/dev/tty"))
        });
        if let Some(tty) = tty {
            origin.push_str(&format!(" on {}", tty.display()));
        }
        // `SSH_CONNECTION` is "client-address client-port server-address server-port".
        if let Some(client) = var("SSH_CONNECTION").or_else(|| var("SSH_CLIENT")).and_then(|c| c.split(' ').next().map(str::to_owned)) {
            origin.push_str(&format!(" from {client} (ssh)"));
        }
        Actor { who, origin }
    }
}

/// The effective uid, read without `unsafe` as the owner of `/proc/self`.
fn uid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid().to_string()).unwrap_or_else(|_| "unknown".to_owned())
}

/// The address pools devices are numbered from. The server itself takes the first host address
/// of each (`.1`, `::1`); devices get the lowest free address after it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pools {
    /// The IPv4 pool, e.g. `10.8.0.0/24`.
    pub ipv4: Option<IpPrefix>,
    /// The IPv6 pool, e.g. `fd00:8::/64`. Only its first /64 is used when it is larger.
    pub ipv6: Option<IpPrefix>,
}

/// A user: a person who owns devices.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// The unique name.
    pub name: String,
    /// Whether the user's devices may connect.
    pub enabled: bool,
    /// When the user was added (Unix seconds).
    pub created_at: i64,
    /// How many devices the user has.
    pub devices: usize,
}

/// A device: one WireGuard peer of the server, belonging to a user.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    /// The owner's name.
    pub user: String,
    /// The device's name, unique for its user.
    pub name: String,
    /// The device's public key (base64 when serialized).
    #[serde(serialize_with = "public_key_base64")]
    pub public_key: PublicKey,
    /// Its IPv4 address, when an IPv4 pool was configured at creation.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address, when an IPv6 pool was configured at creation.
    pub ipv6: Option<Ipv6Addr>,
    /// The device's own flag.
    pub enabled: bool,
    /// Its user's flag.
    pub user_enabled: bool,
    /// When it was added (Unix seconds).
    pub created_at: i64,
    /// When it stops being allowed to connect (Unix seconds), if ever.
    pub expires_at: Option<i64>,
    /// When its current key pair was made (Unix seconds), for the rotation policy.
    pub key_created_at: i64,
    /// Whether the store holds its private key (not for a device imported from a wg-quick
    /// server config: its private key is only on the client).
    pub has_private_key: bool,
    /// A rotation under way, if any.
    pub rotation: Option<PendingRotation>,
}

/// A device key rotation under way: the new key pair waits beside the old one until the client
/// uses it or the deadline passes, whichever comes first; then the old key stops working.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PendingRotation {
    /// The new public key (base64 when serialized).
    #[serde(serialize_with = "public_key_base64")]
    pub public_key: PublicKey,
    /// When the old key stops working at the latest (Unix seconds).
    pub rotate_by: i64,
}

impl Device {
    /// Enabled, its user enabled, and not expired at `now` (Unix seconds).
    pub fn is_active(&self, now: i64) -> bool {
        self.enabled && self.user_enabled && self.expires_at.is_none_or(|at| now < at)
    }

    /// `user/name`, as used in audit targets and messages.
    pub fn label(&self) -> String {
        format!("{}/{}", self.user, self.name)
    }
}

fn public_key_base64<S: serde::Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&key.to_base64())
}

/// The private key and pre-shared key of a device. Both zeroize on drop and print as
/// `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSecrets {
    /// The device's private key (its configuration's `PrivateKey`); `None` for a device imported
    /// with its public key only.
    pub private_key: Option<PrivateKey>,
    /// The key shared by the device and the server (`PresharedKey`).
    pub preshared_key: PresharedKey,
}

impl DeviceSecrets {
    /// Fresh secrets from a cryptographically secure generator.
    pub fn generate(rng: &mut dyn rand_core::CryptoRngCore) -> DeviceSecrets {
        DeviceSecrets { private_key: Some(PrivateKey::generate(rng)), preshared_key: PresharedKey::generate(rng) }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEvent {
    /// Increasing with time.
    pub id: i64,
    /// When (Unix seconds).
    pub at: i64,
    /// [`Actor::who`].
    pub who: String,
    /// [`Actor::origin`].
    pub origin: String,
    /// What: `user.add`, `user.enable`, `user.disable`, `user.remove`, `device.add`,
    /// `device.enable`, `device.disable`, `device.remove`, `device.rotate`,
    /// `device.rotate.complete`, `server.key`, `server.key.rotate`, `server.key.retire`,
    /// `keys.seal`, `keys.passphrase`, `import.start`, `import.finish`, `import.rollback`.
    pub action: String,
    /// On what: a user name, `user/device`, or `server`.
    pub target: String,
    /// Facts about the change (public keys, addresses; never a private key or PSK).
    pub details: serde_json::Value,
}

/// What [`Store::add_device`](super::Store::add_device) needs.
#[derive(Debug)]
pub struct NewDevice<'a> {
    /// The owner, who must exist.
    pub user: &'a str,
    /// The device's name ([`super::names::validate_device`]).
    pub name: &'a str,
    /// When it stops being allowed to connect (Unix seconds), if ever.
    pub expires_at: Option<i64>,
    /// Its keys.
    pub keys: NewKeys,
    /// Its addresses.
    pub addresses: NewAddresses,
}

impl<'a> NewDevice<'a> {
    /// A device with fresh `secrets` and addresses allocated from the pools.
    pub fn generated(user: &'a str, name: &'a str, secrets: DeviceSecrets) -> NewDevice<'a> {
        NewDevice { user, name, expires_at: None, keys: NewKeys::Full(secrets), addresses: NewAddresses::Allocate }
    }
}

/// The keys of a new device.
#[derive(Debug)]
pub enum NewKeys {
    /// Both keys (the public key is derived from the private one). A secrets value without a
    /// private key is refused.
    Full(DeviceSecrets),
    /// The public key only, as in a server's wg-quick config (the client keeps its private
    /// key); a zero pre-shared key means none.
    PublicOnly {
        /// The device's public key.
        public_key: PublicKey,
        /// The pre-shared key, all zero for none.
        preshared_key: PresharedKey,
    },
}

/// The addresses of a new device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewAddresses {
    /// The lowest free host address of each configured pool.
    Allocate,
    /// These addresses, which must be free host addresses of the configured pools (at least
    /// one given, each inside its family's pool).
    Fixed {
        /// The IPv4 address.
        ipv4: Option<Ipv4Addr>,
        /// The IPv6 address.
        ipv6: Option<Ipv6Addr>,
    },
}
