//! Checked views over the four WireGuard messages.
//!
//! Every message starts with a little-endian u32 type, so the three reserved bytes after the type
//! byte must be zero. Handshake messages have an exact size; a data message is at least 32 bytes
//! (header and tag around an empty keepalive). [`Message::parse`] is the one entry point for bytes
//! from the network: anything it returns has the right size for its type, and field accessors
//! cannot go out of bounds.

use std::ops::Range;

/// Type of a handshake initiation.
pub const TYPE_INITIATION: u32 = 1;
/// Type of a handshake response.
pub const TYPE_RESPONSE: u32 = 2;
/// Type of a cookie reply.
pub const TYPE_COOKIE_REPLY: u32 = 3;
/// Type of a transport data message.
pub const TYPE_DATA: u32 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Size of a data message's header (type, receiver, counter).
pub const DATA_HEADER_LEN: usize = 16;
/// Size of the authentication tag that ends a data message.
pub const TAG_LEN: usize = 16;
/// Smallest data message: an encrypted empty payload (a keepalive).
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + TAG_LEN;
/// Bytes a data message adds around its padded plaintext.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;

/// Field ranges, named after the whitepaper.
pub mod field {
    use std::ops::Range;
    /// Message type (u32 little-endian).
    pub const TYPE: Range<usize> = 0..4;

    /// Initiation fields.
    pub mod initiation {
        use std::ops::Range;
        /// Sender index.
        pub const SENDER: Range<usize> = 4..8;
        /// Unencrypted ephemeral public key.
        pub const EPHEMERAL: Range<usize> = 8..40;
        /// Encrypted static public key (32 + tag).
        pub const STATIC: Range<usize> = 40..88;
        /// Encrypted TAI64N timestamp (12 + tag).
        pub const TIMESTAMP: Range<usize> = 88..116;
        /// mac1.
        pub const MAC1: Range<usize> = 116..132;
        /// mac2.
        pub const MAC2: Range<usize> = 132..148;
    }

    /// Response fields.
    pub mod response {
        use std::ops::Range;
        /// Sender index.
        pub const SENDER: Range<usize> = 4..8;
        /// Receiver index (the initiator's sender index).
        pub const RECEIVER: Range<usize> = 8..12;
        /// Unencrypted ephemeral public key.
        pub const EPHEMERAL: Range<usize> = 12..44;
        /// Encrypted empty payload (the tag alone).
        pub const EMPTY: Range<usize> = 44..60;
        /// mac1.
        pub const MAC1: Range<usize> = 60..76;
        /// mac2.
        pub const MAC2: Range<usize> = 76..92;
    }

    /// Cookie reply fields.
    pub mod cookie_reply {
        use std::ops::Range;
        /// Receiver index (the sender index of the message that triggered the reply).
        pub const RECEIVER: Range<usize> = 4..8;
        /// XChaCha20 nonce.
        pub const NONCE: Range<usize> = 8..32;
        /// Encrypted cookie (16 + tag).
        pub const COOKIE: Range<usize> = 32..64;
    }

    /// Data message fields.
    pub mod data {
        use std::ops::Range;
        /// Receiver index.
        pub const RECEIVER: Range<usize> = 4..8;
        /// Counter (u64 little-endian), also the AEAD nonce.
        pub const COUNTER: Range<usize> = 8..16;
        /// Start of the encrypted payload.
        pub const PAYLOAD: usize = 16;
    }
}

/// Why bytes from the network are not a WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Shorter than a type field.
    #[error("packet too short to carry a message type")]
    TooShort,
    /// The type is not 1..=4 or its reserved bytes are not zero.
    #[error("unknown message type")]
    UnknownType,
    /// The length does not match the message type.
    #[error("wrong length for the message type")]
    BadLength,
}

fn u32_at(b: &[u8], r: Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_le_bytes(a)
}

macro_rules! view {
    ($(#[$m:meta])* $name:ident, $len:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy)]
        pub struct $name<'a>(&'a [u8]);

        impl<'a> $name<'a> {
            /// Size of this message.
            pub const LEN: usize = $len;
            /// The whole message.
            pub fn bytes(&self) -> &'a [u8] {
                self.0
            }
        }

        impl std::fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({} bytes)", stringify!($name), self.0.len())
            }
        }
    };
}

view!(
    /// A handshake initiation (type 1), exactly 148 bytes.
    Initiation,
    INITIATION_LEN
);
view!(
    /// A handshake response (type 2), exactly 92 bytes.
    Response,
    RESPONSE_LEN
);
view!(
    /// A cookie reply (type 3), exactly 64 bytes.
    CookieReply,
    COOKIE_REPLY_LEN
);

impl<'a> Initiation<'a> {
    /// Sender index chosen by the initiator.
    pub fn sender(&self) -> u32 {
        u32_at(self.0, field::initiation::SENDER)
    }
    /// Everything mac1 covers.
    pub fn mac1_input(&self) -> &'a [u8] {
        &self.0[..field::initiation::MAC1.start]
    }
    /// The mac1 field.
    pub fn mac1(&self) -> &'a [u8] {
        &self.0[field::initiation::MAC1]
    }
    /// Everything mac2 covers.
    pub fn mac2_input(&self) -> &'a [u8] {
        &self.0[..field::initiation::MAC2.start]
    }
    /// The mac2 field.
    pub fn mac2(&self) -> &'a [u8] {
        &self.0[field::initiation::MAC2]
    }
}

impl<'a> Response<'a> {
    /// Sender index chosen by the responder.
    pub fn sender(&self) -> u32 {
        u32_at(self.0, field::response::SENDER)
    }
    /// The initiator's sender index.
    pub fn receiver(&self) -> u32 {
        u32_at(self.0, field::response::RECEIVER)
    }
    /// Everything mac1 covers.
    pub fn mac1_input(&self) -> &'a [u8] {
        &self.0[..field::response::MAC1.start]
    }
    /// The mac1 field.
    pub fn mac1(&self) -> &'a [u8] {
        &self.0[field::response::MAC1]
    }
    /// Everything mac2 covers.
    pub fn mac2_input(&self) -> &'a [u8] {
        &self.0[..field::response::MAC2.start]
    }
    /// The mac2 field.
    pub fn mac2(&self) -> &'a [u8] {
        &self.0[field::response::MAC2]
    }
}

impl<'a> CookieReply<'a> {
    /// The index the reply is addressed to.
    pub fn receiver(&self) -> u32 {
        u32_at(self.0, field::cookie_reply::RECEIVER)
    }
    /// The 24-byte nonce.
    pub fn nonce(&self) -> &'a [u8; 24] {
        self.0[field::cookie_reply::NONCE].try_into().expect("checked length")
    }
    /// The encrypted cookie and its tag.
    pub fn encrypted_cookie(&self) -> &'a [u8] {
        &self.0[field::cookie_reply::COOKIE]
    }
}

/// A transport data message (type 4), at least 32 bytes.
#[derive(Clone, Copy)]
pub struct Data<'a>(&'a [u8]);

impl<'a> Data<'a> {
    /// The receiver index, which names the keypair.
    pub fn receiver(&self) -> u32 {
        u32_at(self.0, field::data::RECEIVER)
    }
    /// The sender's counter (nonce).
    pub fn counter(&self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.0[field::data::COUNTER]);
        u64::from_le_bytes(a)
    }
    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl std::fmt::Debug for Data<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} bytes)", self.0.len())
    }
}

/// A parsed message from the network.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Type 1.
    Initiation(Initiation<'a>),
    /// Type 2.
    Response(Response<'a>),
    /// Type 3.
    CookieReply(CookieReply<'a>),
    /// Type 4.
    Data(Data<'a>),
}

impl<'a> Message<'a> {
    /// Checks type, reserved bytes and length; the only constructor for untrusted bytes.
    pub fn parse(b: &'a [u8]) -> Result<Self, ParseError> {
        if b.len() < 4 {
            return Err(ParseError::TooShort);
        }
        match u32_at(b, field::TYPE) {
            TYPE_INITIATION if b.len() == INITIATION_LEN => Ok(Message::Initiation(Initiation(b))),
            TYPE_RESPONSE if b.len() == RESPONSE_LEN => Ok(Message::Response(Response(b))),
            TYPE_COOKIE_REPLY if b.len() == COOKIE_REPLY_LEN => Ok(Message::CookieReply(CookieReply(b))),
            TYPE_DATA if b.len() >= DATA_MIN_LEN => Ok(Message::Data(Data(b))),
            TYPE_INITIATION | TYPE_RESPONSE | TYPE_COOKIE_REPLY | TYPE_DATA => Err(ParseError::BadLength),
            _ => Err(ParseError::UnknownType),
        }
    }
}

/// Writes a little-endian u32 into `b[r]`.
pub(crate) fn put_u32(b: &mut [u8], r: Range<usize>, v: u32) {
    b[r].copy_from_slice(&v.to_le_bytes());
}

/// Writes the data header (type, receiver, counter) into the first 16 bytes of `b`.
///
/// # Panics
/// If `b` is shorter than 16 bytes (a caller bug).
pub fn write_data_header(b: &mut [u8], receiver: u32, counter: u64) {
    put_u32(b, field::TYPE, TYPE_DATA);
    put_u32(b, field::data::RECEIVER, receiver);
    b[field::data::COUNTER].copy_from_slice(&counter.to_le_bytes());
}

/// The padded length of a plaintext of `len` bytes: the next multiple of 16, capped at `mtu` (but
/// never below `len`).
pub fn padded_len(len: usize, mtu: usize) -> usize {
    let padded = (len + 15) & !15;
    padded.min(mtu.max(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_sizes() {
        for (t, len) in [(1u8, 148usize), (2, 92), (3, 64)] {
            let mut b = vec![0u8; len];
            b[0] = t;
            assert!(Message::parse(&b).is_ok());
            b.push(0);
            assert_eq!(Message::parse(&b).unwrap_err(), ParseError::BadLength);
            b.truncate(len - 1);
            assert_eq!(Message::parse(&b).unwrap_err(), ParseError::BadLength);
        }
        let mut d = vec![0u8; 31];
        d[0] = 4;
        assert_eq!(Message::parse(&d).unwrap_err(), ParseError::BadLength);
        d.push(0);
        assert!(matches!(Message::parse(&d), Ok(Message::Data(_))));
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        let mut b = vec![0u8; 148];
        b[0] = 1;
        b[2] = 1;
        assert_eq!(Message::parse(&b).unwrap_err(), ParseError::UnknownType);
        assert_eq!(Message::parse(&[1, 0]).unwrap_err(), ParseError::TooShort);
        assert_eq!(Message::parse(&[5, 0, 0, 0]).unwrap_err(), ParseError::UnknownType);
    }

    #[test]
    fn padding() {
        assert_eq!(padded_len(0, 1420), 0);
        assert_eq!(padded_len(1, 1420), 16);
        assert_eq!(padded_len(84, 1420), 96);
        assert_eq!(padded_len(1419, 1420), 1420);
        assert_eq!(padded_len(1420, 1420), 1420);
        assert_eq!(padded_len(1500, 1420), 1500);
    }
}
