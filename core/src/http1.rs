//! HTTP/1.1 framing for terminals, sans-IO: one codec for every connector (plain,
//! embedded-tls, MbedTLS).
//!
//! - [`parse_head`] reads a response head with `httparse` (what hyper uses): the status,
//!   the head's length, how the body is framed and whether the connection may be kept.
//!   Interim answers (`100 Continue`, `103 Early Hints`, any 1xx but `101`) are reported as
//!   [`Head::Interim`] for the transport to skip; a stream of them is bounded by the
//!   transport's timeout.
//! - [`BodyReader`] frames the body: `Content-Length`, `chunked` (chunk extensions and
//!   trailers read and bounded), or until the connection closes.
//! - The verdict: a connection is kept only when the framing left no doubt (RFC 9112 §9.3,
//!   §6.3): HTTP/1.1, no `Connection: close`, a body framed by length or by chunks and read
//!   to its end, no byte after it. `Transfer-Encoding: chunked` sent with a `Content-Length`
//!   is read as chunked (chunked wins) and the connection closed after; so is a head whose
//!   only transfer coding is `identity` (read by its length, or to the close).
//! - Refused (stage `protocol`): a malformed head, a `Content-Length` that is not plain
//!   digits (`+5`, `-1`, `5 5`) or that differs between copies, a transfer coding other than
//!   `chunked` (and `identity`), `101 Switching Protocols`, a bad chunk size or chunk end,
//!   trailers over [`MAX_TRAILERS`].
//!
//! The transport owns the socket: it reads bytes into its buffer, hands them here, and
//! writes the request with [`write_request`].

use core::time::Duration;

use crate::json::parse_uint;
use crate::request::Method;
use crate::transport::{Stage, Target, TransportError};
use crate::write::Out;

/// Most header lines a response head may have.
pub const MAX_HEADERS: usize = 48;

/// Most bytes of chunked trailers (and of one chunk-size line's extensions) read.
pub const MAX_TRAILERS: usize = 4096;

const fn bad(detail: &'static str) -> TransportError {
    TransportError::new(Stage::Protocol, detail)
}

/// The answer's head could not be read.
pub const MALFORMED_HEAD: TransportError = bad("malformed response head");
/// The head has more header lines than [`MAX_HEADERS`].
pub const TOO_MANY_HEADERS: TransportError = bad("too many response headers");
/// A `Content-Length` that is not one plain decimal number.
pub const BAD_LENGTH: TransportError = bad("invalid Content-Length");
/// A transfer coding the terminal does not decode.
pub const BAD_CODING: TransportError = bad("unsupported Transfer-Encoding");
/// `101 Switching Protocols` (never asked for).
pub const SWITCHING: TransportError = bad("unexpected 101 Switching Protocols");
/// Malformed chunked framing.
pub const BAD_CHUNK: TransportError = bad("malformed chunked body");
/// Trailers or a chunk-size line over [`MAX_TRAILERS`].
pub const LONG_TRAILERS: TransportError = bad("chunked trailers too long");
/// The connection closed before the body's end.
pub const CLOSED_IN_BODY: TransportError =
    TransportError::new(Stage::Io, "closed in the middle of the body");
/// The connection closed before a whole head arrived.
pub const CLOSED_IN_HEAD: TransportError =
    TransportError::new(Stage::Io, "closed before the response");

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Framing {
    /// No body (`HEAD`, `204`, `304`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection (never kept).
    Close,
}

/// A final response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Final {
    /// The status code.
    pub status: u16,
    /// Bytes of head (status line, headers, the empty line) at the start of the input.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may be kept after the body is read to its end (and nothing
    /// follows it).
    pub keep: bool,
    /// The server's `Keep-Alive: timeout=N`, when it sent one.
    pub idle_timeout: Option<Duration>,
}

/// What [`parse_head`] found at the start of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Head {
    /// Not a whole head yet: read more.
    Partial,
    /// An interim (1xx) answer of this many bytes: drop them and read the next head.
    Interim(usize),
    /// The final answer's head.
    Final(Final),
}

/// Reads the response head at the start of `input`, for a request of `method`.
///
/// ```
/// use tessera_core::http1::{parse_head, Framing, Head};
/// use tessera_core::Method;
/// let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
/// let Head::Final(f) = parse_head(head, Method::Get).unwrap() else { panic!() };
/// assert_eq!((f.status, f.len, f.framing, f.keep), (200, 38, Framing::Length(2), true));
/// let early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
/// assert_eq!(parse_head(early, Method::Get), Ok(Head::Interim(40)));
/// ```
pub fn parse_head(input: &[u8], method: Method) -> Result<Head, TransportError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut storage);
    let len = match response.parse(input) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_HEADERS),
        Err(_) => return Err(MALFORMED_HEAD),
    };
    let status = response.code.ok_or(MALFORMED_HEAD)?;
    if status == 101 {
        return Err(SWITCHING);
    }
    if (100..200).contains(&status) {
        return Ok(Head::Interim(len));
    }
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut identity = false;
    let mut close = response.version != Some(1);
    let mut idle_timeout = None;
    for h in response.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|&b| b == b',') {
                let n = content_length(part)?;
                if length.is_some_and(|l| l != n) {
                    return Err(BAD_LENGTH);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in tokens(value) {
                if chunked {
                    // `chunked` must be the last coding (RFC 9112 §6.1).
                    return Err(BAD_CODING);
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else if coding.eq_ignore_ascii_case(b"identity") {
                    identity = true;
                } else {
                    return Err(BAD_CODING);
                }
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if tokens(value).any(|t| t.eq_ignore_ascii_case(b"close")) {
                close = true;
            }
        } else if name.eq_ignore_ascii_case("keep-alive") {
            idle_timeout = keep_alive_timeout(value).or(idle_timeout);
        }
    }
    let no_body = method == Method::Head || status == 204 || status == 304;
    let (framing, doubt) = match (no_body, chunked, length) {
        (true, _, _) => (Framing::Empty, false),
        // Chunked wins over a Content-Length; the mix is a smuggling shape: close after.
        (false, true, l) => (Framing::Chunked, l.is_some() || identity),
        (false, false, Some(n)) => (Framing::Length(n), identity),
        (false, false, None) => (Framing::Close, true),
    };
    Ok(Head::Final(Final {
        status,
        len,
        framing,
        keep: !close && !doubt,
        idle_timeout,
    }))
}

/// A `Content-Length` value: digits only, optional surrounding spaces.
fn content_length(value: &[u8]) -> Result<u64, TransportError> {
    let v = trim(value);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(BAD_LENGTH);
    }
    let n = parse_uint(v).map_err(|_| BAD_LENGTH)?;
    // `parse_uint` saturates; a length that large is not one.
    if n == u64::MAX {
        return Err(BAD_LENGTH);
    }
    Ok(n)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// `timeout=N` of a `Keep-Alive` header.
fn keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    tokens(value).find_map(|t| {
        let (k, v) = split_once(t, b'=')?;
        if !trim(k).eq_ignore_ascii_case(b"timeout") {
            return None;
        }
        let v = trim(v);
        (!v.is_empty() && v.iter().all(u8::is_ascii_digit))
            .then(|| parse_uint(v).ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

fn split_once(v: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = v.iter().position(|&b| b == sep)?;
    Some((v.get(..at)?, v.get(at + 1..)?))
}

/// The header lines of a head [`parse_head`] accepted (its first [`Final::len`] bytes), as
/// `(name, value)`, values trimmed; lines whose value is not UTF-8 are skipped.
pub fn headers(head: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = split_once(line, b':')?;
        let name = core::str::from_utf8(name).ok()?;
        let value = core::str::from_utf8(trim(value)).ok()?;
        (!name.is_empty()).then_some((name, value))
    })
}

/// Decodes a response body as its [`Framing`] says, from the bytes the transport reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyReader {
    state: State,
    /// Bytes of a size line's extensions, or of trailers, read so far.
    extra: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `n` more bytes of a length-framed body.
    Length(u64),
    /// Until the close.
    Close,
    /// Reading a chunk-size line: the size so far, whether a digit was seen, whether in
    /// the extensions.
    Size {
        size: u64,
        digits: bool,
        ext: bool,
    },
    /// The CR after a size line was read: expecting LF.
    SizeLf(u64),
    /// `n` more bytes of chunk data.
    Data(u64),
    /// After a chunk's data: expecting CR (`true`) or LF (`false`).
    DataEnd(bool),
    /// In trailers: at the start of a line (`true`) or inside one.
    Trailers(bool),
    /// The trailers' final CR was read: expecting LF.
    TrailersLf,
    Done,
}

/// What one [`BodyReader::feed`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes used (the rest belongs to whatever follows the body).
    pub consumed: usize,
    /// Body bytes written to the output.
    pub written: usize,
}

impl BodyReader {
    /// A reader for a body framed by `framing`.
    pub const fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size {
                size: 0,
                digits: false,
                ext: false,
            },
            Framing::Close => State::Close,
        };
        BodyReader { state, extra: 0 }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body ends only with the connection.
    pub fn until_close(&self) -> bool {
        self.state == State::Close
    }

    /// Decodes `input` into `out` until the body ends, `input` is used up, or `out` is
    /// full (then [`Progress::written`] is `out.len()` and input is left over: the caller
    /// has no room for the body).
    pub fn feed(&mut self, input: &[u8], out: &mut [u8]) -> Result<Progress, TransportError> {
        let mut at = 0usize;
        let mut written = 0usize;
        while at < input.len() && self.state != State::Done {
            let rest = input.get(at..).unwrap_or_default();
            match self.state {
                State::Length(n) | State::Data(n) => {
                    let room = out.len() - written;
                    if room == 0 {
                        break;
                    }
                    let take = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(rest.len())
                        .min(room);
                    if let (Some(dst), Some(src)) =
                        (out.get_mut(written..written + take), rest.get(..take))
                    {
                        dst.copy_from_slice(src);
                    }
                    written += take;
                    at += take;
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), l) => State::Length(l),
                        (_, 0) => State::DataEnd(true),
                        (_, l) => State::Data(l),
                    };
                }
                State::Close => {
                    let take = rest.len().min(out.len() - written);
                    if take == 0 {
                        break;
                    }
                    if let (Some(dst), Some(src)) =
                        (out.get_mut(written..written + take), rest.get(..take))
                    {
                        dst.copy_from_slice(src);
                    }
                    written += take;
                    at += take;
                }
                _ => {
                    let Some(&b) = rest.first() else { break };
                    at += 1;
                    self.step(b)?;
                }
            }
        }
        Ok(Progress {
            consumed: at,
            written,
        })
    }

    /// The connection closed: fine only for a body read to the close.
    pub fn on_close(&mut self) -> Result<(), TransportError> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(CLOSED_IN_BODY),
        }
    }

    /// One byte of chunked framing.
    fn step(&mut self, b: u8) -> Result<(), TransportError> {
        self.state = match self.state {
            State::Size { size, digits, ext } => match b {
                b'\r' if digits => State::SizeLf(size),
                b'\n' if digits => self.after_size(size),
                _ if ext => {
                    self.count()?;
                    State::Size { size, digits, ext }
                }
                b';' | b' ' | b'\t' if digits => {
                    self.count()?;
                    State::Size {
                        size,
                        digits,
                        ext: true,
                    }
                }
                _ => {
                    let d = (b as char).to_digit(16).ok_or(BAD_CHUNK)?;
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(d)))
                        .ok_or(BAD_CHUNK)?;
                    State::Size {
                        size,
                        digits: true,
                        ext,
                    }
                }
            },
            State::SizeLf(size) if b == b'\n' => self.after_size(size),
            State::DataEnd(true) if b == b'\r' => State::DataEnd(false),
            State::DataEnd(_) if b == b'\n' => State::Size {
                size: 0,
                digits: false,
                ext: false,
            },
            State::Trailers(start) => {
                self.count()?;
                match (start, b) {
                    (true, b'\r') => State::TrailersLf,
                    (true, b'\n') => State::Done,
                    (_, b'\n') => State::Trailers(true),
                    _ => State::Trailers(false),
                }
            }
            State::TrailersLf if b == b'\n' => State::Done,
            _ => return Err(BAD_CHUNK),
        };
        Ok(())
    }

    fn after_size(&mut self, size: u64) -> State {
        self.extra = 0;
        match size {
            0 => State::Trailers(true),
            n => State::Data(n),
        }
    }

    fn count(&mut self) -> Result<(), TransportError> {
        self.extra += 1;
        match self.extra > MAX_TRAILERS {
            true => Err(LONG_TRAILERS),
            false => Ok(()),
        }
    }
}

/// Writes an HTTP/1.1 request head for `to` (the URL the core parsed and checked) into
/// `buf`: `METHOD path?query HTTP/1.1`, `Host` (with the port when not the default), the
/// `headers` given, `Content-Length` when there is a body (or the method carries one), and
/// the empty line. Returns the bytes written; a buffer too small is
/// [`Error::Capacity`](crate::Error::Capacity) (field `request head`) with the size needed.
///
/// Names and values are the caller's: a value with CR or LF is refused
/// ([`Error::Malformed`](crate::Error)), never written (header injection).
pub fn write_request<'b>(
    buf: &'b mut [u8],
    method: Method,
    to: &Target<'_>,
    headers: &mut dyn Iterator<Item = (&str, &str)>,
    body_len: usize,
) -> Result<&'b [u8], crate::Error> {
    let capacity = buf.len();
    let mut out = Out::new(buf);
    let mut digits = [0u8; 20];
    out.str(method.as_str());
    out.str(" ");
    out.str(to.path);
    out.str(to.query);
    out.str(" HTTP/1.1\r\nHost: ");
    out.str(to.host);
    if !to.port_is_default() {
        out.str(":");
        out.bytes(decimal(usize::from(to.port), &mut digits));
    }
    out.str("\r\n");
    for (name, value) in headers {
        let bad = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
        if bad(name) || bad(value) || name.is_empty() || name.contains(':') {
            return Err(crate::Error::malformed(
                "request header",
                crate::json::Problem::Charset,
            ));
        }
        out.str(name);
        out.str(": ");
        out.str(value);
        out.str("\r\n");
    }
    if body_len > 0 || method.has_body() {
        out.str("Content-Length: ");
        out.bytes(decimal(body_len, &mut digits));
        out.str("\r\n");
    }
    out.str("\r\n");
    let (written, _) = out.finish().map_err(|needed| crate::Error::Capacity {
        field: "request head",
        needed,
        capacity,
    })?;
    Ok(written)
}

fn decimal(mut n: usize, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    digits.get(at..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn final_of(head: &[u8], method: Method) -> Final {
        match parse_head(head, method).unwrap() {
            Head::Final(f) => f,
            other => panic!("{other:?}"),
        }
    }

    fn read_all(
        framing: Framing,
        input: &[u8],
    ) -> Result<(std::vec::Vec<u8>, usize), TransportError> {
        let mut r = BodyReader::new(framing);
        let mut out = [0u8; 256];
        // One byte at a time: every state boundary is crossed between reads.
        let mut total = 0;
        let mut written = 0;
        for i in 0..input.len() {
            if r.is_done() {
                break;
            }
            let p = r.feed(&input[i..=i], &mut out[written..])?;
            total += p.consumed;
            written += p.written;
        }
        if !r.is_done() {
            r.on_close()?;
        }
        Ok((out[..written].to_vec(), total))
    }

    #[test]
    fn length_and_keep() {
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
            Method::Post,
        );
        assert_eq!((f.framing, f.keep), (Framing::Length(5), true));
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive, Close\r\n\r\n",
            Method::Post,
        );
        assert!(!f.keep);
        let f = final_of(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", Method::Get);
        assert!(!f.keep, "HTTP/1.0 is not kept");
        let f = final_of(b"HTTP/1.1 200 OK\r\n\r\n", Method::Get);
        assert_eq!((f.framing, f.keep), (Framing::Close, false));
        let f = final_of(b"HTTP/1.1 204 No Content\r\n\r\n", Method::Delete);
        assert_eq!((f.framing, f.keep), (Framing::Empty, true));
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
            Method::Head,
        );
        assert_eq!(f.framing, Framing::Empty);
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nKeep-Alive: max=5, timeout=7\r\n\r\n",
            Method::Get,
        );
        assert_eq!(
            (f.framing, f.idle_timeout),
            (Framing::Length(5), Some(Duration::from_secs(7)))
        );
    }

    #[test]
    fn lengths_that_are_not_numbers_are_refused() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad, Method::Get), Err(BAD_LENGTH), "{bad:?}");
        }
    }

    #[test]
    fn chunked_wins_over_a_length_and_is_not_kept() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let f = final_of(head, Method::Get);
            assert_eq!((f.framing, f.keep), (Framing::Chunked, false));
        }
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::Get,
        );
        assert_eq!((f.framing, f.keep), (Framing::Chunked, true));
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n",
            Method::Get,
        );
        assert_eq!((f.framing, f.keep), (Framing::Length(2), false));
        let f = final_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
            Method::Get,
        );
        assert_eq!((f.framing, f.keep), (Framing::Close, false));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad, Method::Get), Err(BAD_CODING));
        }
    }

    #[test]
    fn interim_answers_are_skipped_and_101_refused() {
        assert_eq!(
            parse_head(b"HTTP/1.1 100 Continue\r\n\r\n", Method::Post),
            Ok(Head::Interim(25))
        );
        assert_eq!(
            parse_head(
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n",
                Method::Get
            ),
            Ok(Head::Interim(44))
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 101 Switching\r\n\r\n", Method::Get),
            Err(SWITCHING)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nX: y", Method::Get),
            Ok(Head::Partial)
        );
        assert_eq!(
            parse_head(b"garbage\r\n\r\n", Method::Get),
            Err(MALFORMED_HEAD)
        );
    }

    #[test]
    fn header_lines() {
        let head = b"HTTP/1.1 200 OK\r\nRetry-After:  5 \r\nX-Id: a:b\r\n\r\n";
        let f = final_of(head, Method::Get);
        let lines: std::vec::Vec<_> = headers(&head[..f.len]).collect();
        assert_eq!(lines, [("Retry-After", "5"), ("X-Id", "a:b")]);
    }

    #[test]
    fn chunked_bodies() {
        let (body, used) = read_all(
            Framing::Chunked,
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\nEXTRA",
        )
        .unwrap();
        assert_eq!(body, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(used, 57);
        let (body, _) = read_all(Framing::Chunked, b"3\nabc\n0\n\n").unwrap();
        assert_eq!(body, b"abc");
        assert_eq!(read_all(Framing::Chunked, b"z\r\n"), Err(BAD_CHUNK));
        assert_eq!(read_all(Framing::Chunked, b"3\r\nabcd"), Err(BAD_CHUNK));
        assert_eq!(read_all(Framing::Chunked, b"3\r\nab"), Err(CLOSED_IN_BODY));
        assert_eq!(
            read_all(Framing::Chunked, b"ffffffffffffffffff\r\n"),
            Err(BAD_CHUNK)
        );
        let mut long = std::vec::Vec::from(&b"0\r\nX: "[..]);
        long.resize(MAX_TRAILERS + 10, b'a');
        assert_eq!(read_all(Framing::Chunked, &long), Err(LONG_TRAILERS));
    }

    #[test]
    fn length_bodies_stop_at_their_end() {
        let (body, used) = read_all(Framing::Length(3), b"abcdef").unwrap();
        assert_eq!((&body[..], used), (&b"abc"[..], 3));
        assert_eq!(read_all(Framing::Length(3), b"ab"), Err(CLOSED_IN_BODY));
        let (body, used) = read_all(Framing::Close, b"abcdef").unwrap();
        assert_eq!((&body[..], used), (&b"abcdef"[..], 6));
        // No room: stops with input left over.
        let mut r = BodyReader::new(Framing::Length(10));
        let p = r.feed(b"0123456789", &mut [0u8; 4]).unwrap();
        assert_eq!((p.consumed, p.written, r.is_done()), (4, 4, false));
    }

    #[test]
    fn request_heads() {
        use crate::transport::parse_url;
        let mut buf = [0u8; 256];
        let mut h = [("Authorization", "Bearer x")].into_iter();
        let to = parse_url("https://api.example:8443/v1/p?q#frag").unwrap();
        let head = write_request(&mut buf, Method::Post, &to, &mut h, 2).unwrap();
        assert_eq!(
            head,
            b"POST /v1/p?q HTTP/1.1\r\nHost: api.example:8443\r\nAuthorization: Bearer x\r\nContent-Length: 2\r\n\r\n"
        );
        let to = parse_url("http://h").unwrap();
        let mut h = core::iter::empty();
        let head = write_request(&mut buf, Method::Get, &to, &mut h, 0).unwrap();
        assert_eq!(head, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut h = core::iter::empty();
        let head = write_request(&mut buf, Method::Put, &to, &mut h, 0).unwrap();
        assert_eq!(
            head,
            b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
        );
        let mut h = [("X", "a\r\nEvil: 1")].into_iter();
        assert!(write_request(&mut buf, Method::Get, &to, &mut h, 0).is_err());
        let mut h = core::iter::empty();
        assert!(matches!(
            write_request(&mut [0u8; 8], Method::Get, &to, &mut h, 0),
            Err(crate::Error::Capacity { needed: 27, .. })
        ));
    }
}
