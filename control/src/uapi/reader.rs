//! Framing a UAPI byte stream into requests: [`RequestReader`].
//!
//! A connection carries any number of requests. Each starts with an operation line, `get=1` or
//! `set=1`; a `get=1` line must be followed by a blank line, a `set=1` body ends at a blank line.
//! Behaviour at the edges, as observed on wireguard-go and where we differ:
//!
//! | input | wireguard-go | here |
//! |---|---|---|
//! | unknown operation line (also `set=1\r`, `\n`, NUL) | closes the connection | same |
//! | `get=1\n` then a byte other than `\n` | `errno=-22`, goes on after that byte | same |
//! | `\r\n` line ends inside a `set` | accepted (Go's scanner drops the `\r`) | same |
//! | a `set` line over the limit | `errno=-5` (its limit is 64 KiB) then close | same, [`Limits::max_line`] (4 KiB) |
//! | a `set` request over [`Limits::max_request`] | no limit | `errno=-5`, then close |
//! | an invalid line in a `set` | answers at once, half the request applied; the rest of the body is then read as operation lines, which closes the connection | reads to the blank line, applies nothing, answers, and goes on with the next request |
//! | EOF inside a `set` body | applies what it read, `errno=0` | applies nothing, `errno=-5`, close |
//! | requests sent right after a `set` without waiting for its answer | often lost (its scanner reads ahead) | all answered in order |
//!
//! Buffers that held request lines are wiped, since lines may hold private and pre-shared keys.

use std::io::{self, Read};

use thiserror::Error;
use zeroize::Zeroize;

use super::parse::{ParseError, ParseErrorKind, SetParser, SetRequest};
use super::Errno;

/// Bounds on what one client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, without its `\n` (default 4096 bytes; the longest valid line is under 100).
    pub max_line: usize,
    /// Largest `set` request in bytes (default 8 MiB, enough for a `setconf` of 10,000 peers with
    /// several allowed IPs each).
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_line: 4096, max_request: 8 << 20 }
    }
}

/// A complete, valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get=1`: answer with the interface status.
    Get,
    /// `set=1`: apply these changes.
    Set(SetRequest),
}

/// What [`RequestReader::next_request`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A complete request to carry out and answer.
    Request(Request),
    /// A complete request that is invalid: answer `errno=` with [`ParseError::errno`] and go on.
    Rejected(ParseError),
    /// The client closed the connection between requests.
    End,
}

/// Why the connection must be closed (after writing [`ReadError::reply`], if any).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The operation line is not `get=1` or `set=1` (or is longer than a line may be).
    #[error("unknown UAPI operation")]
    UnknownOperation,
    /// A line of a `set` body is longer than [`Limits::max_line`].
    #[error("UAPI request line longer than {0} bytes")]
    LineTooLong(usize),
    /// A `set` request is larger than [`Limits::max_request`].
    #[error("UAPI request larger than {0} bytes")]
    RequestTooLarge(usize),
    /// The stream ended inside a `set` body (before its blank line).
    #[error("UAPI set request ended before its blank line")]
    Truncated,
    /// Reading failed (including the read timeout).
    #[error("reading UAPI request: {0}")]
    Io(#[from] io::Error),
}

impl ReadError {
    /// The errno to answer before closing, if the client should get one.
    pub fn reply(&self) -> Option<Errno> {
        match self {
            ReadError::LineTooLong(_) | ReadError::RequestTooLarge(_) | ReadError::Truncated => Some(Errno::EIO),
            ReadError::UnknownOperation | ReadError::Io(_) => None,
        }
    }
}

/// How a line read ended.
enum Line {
    /// A full line is in `self.line`, without its `\n`.
    Complete,
    /// The stream ended; `self.line` holds what came before (possibly nothing).
    Eof,
}

const BUF_LEN: usize = 8192;

/// Splits a byte stream into UAPI requests.
///
/// It reads through its own buffer (wiped on drop), so it can sit directly on a socket.
pub struct RequestReader<R> {
    inner: R,
    limits: Limits,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    line: Vec<u8>,
}

impl<R> std::fmt::Debug for RequestReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestReader").field("limits", &self.limits).field("buffered", &(self.end - self.start)).finish_non_exhaustive()
    }
}

impl<R: Read> RequestReader<R> {
    /// Reads requests from `inner`.
    pub fn new(inner: R, limits: Limits) -> Self {
        Self { inner, limits, buf: vec![0u8; BUF_LEN].into_boxed_slice(), start: 0, end: 0, line: Vec::new() }
    }

    /// The underlying reader.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the next request.
    ///
    /// After an `Err`, the connection should be closed; the stream position is unspecified.
    pub fn next_request(&mut self) -> Result<Next, ReadError> {
        let result = self.next_inner();
        self.line.zeroize();
        result
    }

    fn next_inner(&mut self) -> Result<Next, ReadError> {
        match self.read_line(self.limits.max_line) {
            Ok(Line::Complete) => {}
            Ok(Line::Eof) => return Ok(Next::End),
            Err(ReadError::LineTooLong(_)) => return Err(ReadError::UnknownOperation),
            Err(e) => return Err(e),
        }
        match self.line.as_slice() {
            b"get=1" => match self.read_byte()? {
                None => Ok(Next::End),
                Some(b'\n') => Ok(Next::Request(Request::Get)),
                Some(_) => Ok(Next::Rejected(ParseError { line: 2, kind: ParseErrorKind::TrailingGetData })),
            },
            b"set=1" => self.read_set(),
            _ => Err(ReadError::UnknownOperation),
        }
    }

    fn read_set(&mut self) -> Result<Next, ReadError> {
        let mut parser = SetParser::new();
        let mut error: Option<ParseError> = None;
        let mut total = "set=1\n".len();
        loop {
            let ended = self.read_line(self.limits.max_line)?;
            total += self.line.len() + 1;
            if total > self.limits.max_request {
                return Err(ReadError::RequestTooLarge(self.limits.max_request));
            }
            if let Line::Eof = ended {
                return Err(ReadError::Truncated);
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            if self.line.is_empty() {
                break;
            }
            if error.is_none() {
                if let Err(e) = parser.feed_line(&self.line) {
                    error = Some(e);
                }
            }
            self.line.zeroize();
        }
        Ok(match error {
            Some(e) => Next::Rejected(e),
            None => Next::Request(Request::Set(parser.finish())),
        })
    }

    /// Reads up to and including `\n` into `self.line` (without the `\n`).
    fn read_line(&mut self, max: usize) -> Result<Line, ReadError> {
        self.line.zeroize();
        self.line.clear();
        loop {
            if self.start == self.end && !self.fill()? {
                return Ok(Line::Eof);
            }
            let avail = &self.buf[self.start..self.end];
            let (take, done) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (avail.len(), false),
            };
            if self.line.len() + take > max {
                return Err(ReadError::LineTooLong(max));
            }
            self.line.extend_from_slice(&avail[..take]);
            self.start += take + usize::from(done);
            if done {
                return Ok(Line::Complete);
            }
        }
    }

    fn read_byte(&mut self) -> Result<Option<u8>, ReadError> {
        if self.start == self.end && !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.start];
        self.start += 1;
        Ok(Some(b))
    }

    /// Refills the empty buffer; `false` at end of stream.
    fn fill(&mut self) -> Result<bool, ReadError> {
        self.buf[..self.end].zeroize();
        self.start = 0;
        self.end = 0;
        loop {
            match self.inner.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.end = n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

impl<R> Drop for RequestReader<R> {
    fn drop(&mut self) {
        self.buf.zeroize();
        self.line.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<Result<Next, String>> {
        let mut r = RequestReader::new(input, Limits::default());
        let mut out = Vec::new();
        loop {
            match r.next_request() {
                Ok(Next::End) => {
                    out.push(Ok(Next::End));
                    return out;
                }
                Ok(n) => out.push(Ok(n)),
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn framing() {
        assert_eq!(all(b"get=1\n\nget=1\n\n"), vec![Ok(Next::Request(Request::Get)), Ok(Next::Request(Request::Get)), Ok(Next::End)]);
        assert_eq!(all(b""), vec![Ok(Next::End)]);
        assert_eq!(all(b"get=1\n"), vec![Ok(Next::End)]);
        assert_eq!(all(b"get=1"), vec![Ok(Next::End)]);
        assert!(all(b"set=1\r\n\r\n")[0].is_err());
        assert!(all(b"\nget=1\n\n")[0].is_err());
        let r = all(b"get=1\nxget=1\n\n");
        assert!(matches!(r[0], Ok(Next::Rejected(ParseError { kind: ParseErrorKind::TrailingGetData, .. }))));
        assert_eq!(r[1], Ok(Next::Request(Request::Get)));
        let r = all(b"set=1\nlisten_port=5\r\n\r\nget=1\n\n");
        assert!(matches!(&r[0], Ok(Next::Request(Request::Set(s))) if s.listen_port == Some(5)));
        assert_eq!(r[1], Ok(Next::Request(Request::Get)));
        let r = all(b"set=1\nfoo\nlisten_port=1\n\nset=1\n\n");
        assert!(matches!(&r[0], Ok(Next::Rejected(e)) if e.errno() == Errno::EPROTO && e.line == 2));
        assert_eq!(r[1], Ok(Next::Request(Request::Set(SetRequest::default()))));
        assert!(matches!(all(b"set=1\nlisten_port=1\n")[0], Err(ref e) if e.contains("ended before")));
    }

    #[test]
    fn limits() {
        let mut long = b"set=1\nlisten_port=".to_vec();
        long.extend(std::iter::repeat_n(b'1', 5000));
        long.extend(b"\n\n");
        let mut r = RequestReader::new(&long[..], Limits::default());
        let e = r.next_request().unwrap_err();
        assert_eq!(e.reply(), Some(Errno::EIO));
        let mut r = RequestReader::new(&long[18..], Limits::default());
        assert!(matches!(r.next_request(), Err(ReadError::UnknownOperation)));
        let big = format!("set=1\n{}\n", "listen_port=1\n".repeat(100));
        let mut r = RequestReader::new(big.as_bytes(), Limits { max_line: 4096, max_request: 1000 });
        assert!(matches!(r.next_request(), Err(ReadError::RequestTooLarge(1000))));
    }
}
