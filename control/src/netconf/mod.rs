//! Host network setup for `vpn up` on Linux, as root: the tunnel interface's MTU and addresses,
//! IP forwarding, the default route's interface, and the nftables table `inet vpn`.
//!
//! Everything goes through the `ip` and `nft` commands (run directly, never through a shell, each
//! argument separate; rulesets are fed to `nft -f -` on standard input) and `/proc/sys`. Interface
//! names are checked ([`check_interface_name`]) before they reach a command or a ruleset.
//!
//! | module | what |
//! |---|---|
//! | `address` | [`InterfaceAddress`]: an interface address with its subnet's prefix length (`10.8.0.1/24`) |
//! | `command` | running `ip`/`nft`, and turning failures into [`NetError`]s with a hint |
//! | `interface` | [`configure_interface`], [`set_mtu`], [`enable_forwarding`], [`default_route_interface`] |
//! | `firewall` | [`firewall_ruleset`], [`apply_firewall`], [`remove_firewall`], [`firewall_present`] |

mod address;
mod command;
mod error;
mod firewall;
mod interface;

pub use address::InterfaceAddress;
pub use error::NetError;
pub use firewall::{apply_firewall, firewall_present, firewall_ruleset, remove_firewall, FirewallSpec, NFT_TABLE};
pub use interface::{configure_interface, default_route_interface, enable_forwarding, set_mtu, InterfaceSetup};

/// The longest Linux interface name (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Checks that `name` is a usable interface name: 1 to 15 characters from `A-Z a-z 0-9 _ . -`,
/// and not `.` or `..`. This is stricter than Linux (which takes most bytes), so that a name can
/// go into an nftables ruleset or a command line without any quoting question.
///
/// Returns what is wrong, as a phrase to put after the name.
pub fn check_interface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty: interface names have 1 to 15 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("has characters other than letters, digits, '_', '.' and '-'");
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err("is longer than 15 characters, the Linux limit for interface names");
    }
    if name == "." || name == ".." {
        return Err("is not allowed as an interface name");
    }
    Ok(())
}

/// [`check_interface_name`] as a [`NetError`]; `what` names the setting ("interface", "egress
/// interface").
fn validate_ifname(what: &'static str, name: &str) -> Result<(), NetError> {
    check_interface_name(name).map_err(|reason| NetError::InvalidName { what, name: name.to_owned(), reason })
}
