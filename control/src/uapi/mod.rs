//! The cross-platform userspace API (UAPI) that `wg`, `wg-quick` and wireguard-go speak over
//! `/var/run/wireguard/IFNAME.sock`.
//!
//! A client writes requests, each a `get=1` or `set=1` line, `key=value` lines, and a blank line;
//! several may follow one another on one connection. Every request is answered by zero or more
//! `key=value` lines (a `get` only), then `errno=N` (0 or a negative errno number) and a blank line.
//!
//! The pieces are pure and separately testable:
//!
//! | module | what |
//! |---|---|
//! | [`parse`] | `set` bodies into a [`SetRequest`] (every value validated, nothing applied) |
//! | [`reader`] | framing of a byte stream into requests, with line and size limits |
//! | [`apply`](mod@apply) | a [`SetRequest`] on an [`InterfaceConfig`](vpn_dataplane::InterfaceConfig), returning the new one or an error |
//! | [`mod@format`] | an [`InterfaceStatus`](vpn_dataplane::InterfaceStatus) as the bytes of a `get` reply |
//! | [`server`] | the Unix socket listener, connection threads and the [`Backend`] trait |
//!
//! Unlike wireguard-go, a `set` is atomic: it is parsed completely and applied to a copy of the
//! configuration, and the engine receives the whole result or nothing. The divergences from
//! wireguard-go are listed in the docs of each module.

pub mod apply;
mod errno;
pub mod format;
pub mod parse;
pub mod reader;
pub mod server;

pub use apply::{apply, apply_detailed, Applied, MAX_PEERS};
pub use errno::Errno;
pub use format::{errno_response, get_response, write_status};
pub use parse::{parse_set, AllowedIpChange, ParseError, ParseErrorKind, PeerRequest, PrivateKeyChange, SetParser, SetRequest};
pub use reader::{Limits, Next, ReadError, Request, RequestReader};
pub use server::{Backend, ServerHandle, ServerLimits, Shutdown, UapiError, UapiServer, SOCKET_DIR};
