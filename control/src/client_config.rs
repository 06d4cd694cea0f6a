//! A device's configuration in the `wg-quick` format, and the same text as a QR code (for the
//! WireGuard mobile apps) in the terminal or as a PNG file.
//!
//! The text holds the device's private key: [`ClientConfig::render`] returns it in a [`Zeroizing`]
//! buffer, and the PNG is written with mode 0600. The terminal rendering is a plain `String` for
//! printing; it is not wiped.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use qrcode::{Color, EcLevel, QrCode};
use vpn_crypto::keys::is_all_zero;
use vpn_crypto::{PresharedKey, PrivateKey, PublicKey};
use vpn_dataplane::IpPrefix;
use zeroize::Zeroizing;

/// Everything a device's `wg-quick` configuration says.
#[derive(Debug)]
pub struct ClientConfig<'a> {
    /// The device's private key.
    pub private_key: &'a PrivateKey,
    /// The device's addresses in the tunnel (a /32 and a /128).
    pub addresses: Vec<IpPrefix>,
    /// DNS servers to use while connected; none leaves the device's own.
    pub dns: &'a [IpAddr],
    /// The tunnel MTU.
    pub mtu: u16,
    /// The server's public key.
    pub server_public_key: PublicKey,
    /// The pre-shared key for this device (all zeros: none, and the line is left out).
    pub preshared_key: &'a PresharedKey,
    /// `host:port`, an IPv6 address in brackets (see [`endpoint_with_port`]).
    pub endpoint: String,
    /// What the device routes through the tunnel.
    pub allowed_ips: &'a [IpPrefix],
    /// Keepalive interval in seconds (0: the line is left out).
    pub persistent_keepalive: u16,
}

impl ClientConfig<'_> {
    /// The configuration in `wg-quick` format:
    ///
    /// ```text
    /// [Interface]
    /// PrivateKey = …
    /// Address = 10.8.0.2/32, fd00::2/128
    /// DNS = 1.1.1.1          (left out when there is none)
    /// MTU = 1420
    ///
    /// [Peer]
    /// PublicKey = …
    /// PresharedKey = …       (left out when all zero)
    /// Endpoint = vpn.example.com:51820
    /// AllowedIPs = 0.0.0.0/0, ::/0
    /// PersistentKeepalive = 25  (left out when 0)
    /// ```
    pub fn render(&self) -> Zeroizing<String> {
        // Reserved up front so that the buffer holding the keys is never reallocated (which would
        // leave a copy behind that Zeroizing cannot wipe).
        let lists = self.addresses.len() + self.dns.len() + self.allowed_ips.len();
        let mut s = Zeroizing::new(String::with_capacity(512 + 48 * lists + self.endpoint.len()));
        let private = Zeroizing::new(self.private_key.to_base64());
        // Writing to a String cannot fail.
        let _ = writeln!(s, "[Interface]\nPrivateKey = {}", private.as_str());
        let _ = writeln!(s, "Address = {}", join(&self.addresses));
        if !self.dns.is_empty() {
            let _ = writeln!(s, "DNS = {}", join(self.dns));
        }
        let _ = writeln!(s, "MTU = {}\n\n[Peer]\nPublicKey = {}", self.mtu, self.server_public_key.to_base64());
        if !is_all_zero(self.preshared_key.as_bytes()) {
            let psk = Zeroizing::new(self.preshared_key.to_base64());
            let _ = writeln!(s, "PresharedKey = {}", psk.as_str());
        }
        let _ = writeln!(s, "Endpoint = {}\nAllowedIPs = {}", self.endpoint, join(self.allowed_ips));
        if self.persistent_keepalive != 0 {
            let _ = writeln!(s, "PersistentKeepalive = {}", self.persistent_keepalive);
        }
        s
    }
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `host:port`, with an IPv6 address in brackets (`[2001:db8::1]:51820`). A host already in
/// brackets is kept as it is.
pub fn endpoint_with_port(host: &str, port: u16) -> String {
    if host.parse::<Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Why a QR code could not be made or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The text does not fit in a QR code.
    #[error("cannot encode {len} bytes as a QR code ({source}): shorten the configuration (fewer DNS servers or allowed IPs)")]
    Encode {
        /// The text's length.
        len: usize,
        /// The encoder's reason.
        source: qrcode::types::QrError,
    },
    /// The PNG encoder failed.
    #[error("cannot encode the QR code as PNG: {0}")]
    Png(#[from] png::EncodingError),
    /// The image is too large for PNG dimensions (cannot happen with real QR codes).
    #[error("the QR code is too large for an image")]
    TooLarge,
    /// The file could not be written.
    #[error("cannot write {}: {source} (check that the directory exists and is writable)", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Light modules around the code in the terminal. Two (rather than the standard four), with
/// [`TERMINAL_EC_LEVEL`], keeps a full configuration within 80 columns; the explicit white
/// background makes the border visible on any terminal.
pub const TERMINAL_QUIET_ZONE: usize = 2;
/// Error correction in the terminal: low (7%), since a screen is not smudged and a smaller code
/// fits an 80-column terminal.
pub const TERMINAL_EC_LEVEL: EcLevel = EcLevel::L;
/// Error correction in a PNG: medium (15%), which survives printing.
pub const PNG_EC_LEVEL: EcLevel = EcLevel::M;
/// Light modules around the code in a PNG (the standard's four).
pub const PNG_QUIET_ZONE: usize = 4;
/// Pixels per module in a PNG.
pub const PNG_SCALE: usize = 8;

/// Sets black text on a bright white background, so that the code reads the same on dark and
/// light terminals.
const BLACK_ON_WHITE: &str = "\x1b[30;107m";
const RESET: &str = "\x1b[0m";

fn encode(text: &str, level: EcLevel) -> Result<QrCode, QrError> {
    QrCode::with_error_correction_level(text.as_bytes(), level).map_err(|source| QrError::Encode { len: text.len(), source })
}

/// Whether the module at (`x`, `y`) of the code with `q` quiet modules around it is dark.
fn dark(colors: &[Color], width: usize, q: usize, x: usize, y: usize) -> bool {
    let (Some(x), Some(y)) = (x.checked_sub(q), y.checked_sub(q)) else { return false };
    x < width && y < width && colors[y * width + x] == Color::Dark
}

/// The QR code of `text` for the terminal: each character is two modules stacked (`█` both dark,
/// `▀` top dark, `▄` bottom dark, space both light), black on an explicit white background, with
/// a [`TERMINAL_QUIET_ZONE`], at [`TERMINAL_EC_LEVEL`]. `width + 2·zone` characters wide, `⌈(width + 2·zone) / 2⌉` lines,
/// each line wrapped in colour escapes and ending in `\n`.
pub fn qr_terminal(text: &str) -> Result<String, QrError> {
    let code = encode(text, TERMINAL_EC_LEVEL)?;
    let (w, q) = (code.width(), TERMINAL_QUIET_ZONE);
    let colors = code.to_colors();
    let side = w + 2 * q;
    let line_len = BLACK_ON_WHITE.len() + RESET.len() + 1 + side * '█'.len_utf8();
    let mut out = String::with_capacity(side.div_ceil(2) * line_len);
    for row in (0..side).step_by(2) {
        out.push_str(BLACK_ON_WHITE);
        for x in 0..side {
            let top = dark(&colors, w, q, x, row);
            let bottom = row + 1 < side && dark(&colors, w, q, x, row + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push_str(RESET);
        out.push('\n');
    }
    Ok(out)
}

/// Writes the QR code of `text` (at [`PNG_EC_LEVEL`]) as an 8-bit grayscale PNG ([`PNG_SCALE`] pixels per module, a
/// [`PNG_QUIET_ZONE`], black 0 on white 255), atomically and with mode 0600 since the text holds a
/// private key.
pub fn qr_png(text: &str, path: &Path) -> Result<(), QrError> {
    let code = encode(text, PNG_EC_LEVEL)?;
    let (w, q) = (code.width(), PNG_QUIET_ZONE);
    let colors = code.to_colors();
    let side = (w + 2 * q) * PNG_SCALE;
    let mut pixels = Zeroizing::new(vec![255u8; side * side]);
    for (y, row) in pixels.chunks_exact_mut(side).enumerate() {
        for (x, px) in row.iter_mut().enumerate() {
            if dark(&colors, w, q, x / PNG_SCALE, y / PNG_SCALE) {
                *px = 0;
            }
        }
    }
    let dim = u32::try_from(side).map_err(|_| QrError::TooLarge)?;
    let mut file = Zeroizing::new(Vec::with_capacity(side * side / 8));
    {
        let mut enc = png::Encoder::new(&mut *file, dim, dim);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(&pixels)?;
        writer.finish()?;
    }
    crate::durable::write_atomic(path, &file, 0o600).map_err(|source| QrError::Write { path: path.to_owned(), source })
}
