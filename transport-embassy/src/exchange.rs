//! One HTTP/1.1 exchange over an established connection (plain TCP, embedded-tls or
//! MbedTLS: anything `Read + Write`), framed by the core's codec
//! ([`tessera_core::http1`]): the request written in one piece, interim answers skipped,
//! the head's headers kept, the body read by its framing, and the verdict whether the
//! connection may carry another request.

use embedded_io_async::{Read, Write};
use tessera_core::http1::{self, BodyReader, Head};
use tessera_core::transport::{body_too_large, retry_after, Target};
use tessera_core::{Method, Stage, TransportError};

use crate::error::Fault;
use crate::kept::{Connection, Handshake};

/// One request, as the exchange writes it.
pub(crate) struct Outgoing<'r> {
    pub(crate) method: Method,
    /// Where to, as the core parsed it (the `Host` header and the request target).
    pub(crate) to: Target<'r>,
    pub(crate) headers: &'r [(&'r str, &'r str)],
    pub(crate) body: &'r [u8],
}

/// What one exchange produced; the kept headers and the body are in the caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Exchanged {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<core::time::Duration>,
    /// Bytes of kept headers at the start of the body buffer.
    pub(crate) kept: usize,
    /// Bytes of body after them.
    pub(crate) body_len: usize,
    /// Whether the connection may carry another request (framing exact, body read to its
    /// end, nothing after it, no `Connection: close`).
    pub(crate) reusable: bool,
    /// The server's `Keep-Alive: timeout=`, if any.
    pub(crate) idle_timeout: Option<core::time::Duration>,
    /// A new or a kept connection, and its handshake (set by the caller, who knows).
    pub(crate) connection: Connection,
}

/// How far an exchange got: whether any byte of the answer was read (a request on a kept
/// connection found dead may be sent again only if none was).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reached {
    pub(crate) answered: bool,
}

/// A read or write error of the connection, classified. `tls`: the connection is a TLS
/// session, whose own failures surface as `Other`.
pub(crate) fn io_fault(kind: embedded_io::ErrorKind, tls: bool) -> TransportError {
    use embedded_io::ErrorKind as K;
    match kind {
        K::TimedOut => TransportError::new(Stage::Timeout, "read or write timed out"),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected => {
            TransportError::new(Stage::Io, "connection reset")
        }
        K::Other if tls => TransportError::new(Stage::Tls, "TLS record error"),
        _ => TransportError::new(Stage::Io, "connection failed while in use"),
    }
}

/// Sends `out` on `conn` and reads the answer. `rx` holds the request head (and, when it
/// fits, the body: one write) and then the response as it arrives; the kept headers (when
/// `keep_headers`, `name:value\n`, names lowercased) and the body go to `into`. `wall_now`
/// (Unix seconds) lets an HTTP-date `Retry-After` be read. `reached` records whether any
/// byte of the answer came. The caller bounds the whole by its timeout (an endless stream
/// of `100 Continue` ends there).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<C: Read + Write>(
    conn: &mut C,
    tls: bool,
    out: &Outgoing<'_>,
    rx: &mut [u8],
    into: &mut [u8],
    keep_headers: bool,
    wall_now: Option<u64>,
    reached: &mut Reached,
) -> Result<Exchanged, Fault> {
    let io = |e: C::Error| Fault::Net(io_fault(embedded_io::Error::kind(&e), tls));
    // The request: head, then the body in the same write when it fits.
    let mut headers = out.headers.iter().copied();
    let head_len = http1::write_request(rx, out.method, &out.to, &mut headers, out.body.len())
        .map_err(Fault::Local)?
        .len();
    match rx.get_mut(head_len..head_len + out.body.len()) {
        Some(room) => {
            room.copy_from_slice(out.body);
            let all = rx.get(..head_len + out.body.len()).unwrap_or_default();
            conn.write_all(all).await.map_err(io)?;
        }
        None => {
            conn.write_all(rx.get(..head_len).unwrap_or_default())
                .await
                .map_err(io)?;
            conn.write_all(out.body).await.map_err(io)?;
        }
    }
    conn.flush().await.map_err(io)?;
    // The request held the secret or the token: gone before the answer is read in.
    rx.fill(0);

    // The head; interim answers (100, 103, …) are dropped as they come.
    let mut filled = 0usize;
    let head = loop {
        match http1::parse_head(rx.get(..filled).unwrap_or_default(), out.method)
            .map_err(Fault::Net)?
        {
            Head::Final(f) => break f,
            Head::Interim(len) => {
                rx.copy_within(len..filled, 0);
                filled -= len;
                continue;
            }
            Head::Partial => {}
        }
        let Some(room) = rx.get_mut(filled..).filter(|r| !r.is_empty()) else {
            return Err(Fault::Net(TransportError::new(
                Stage::Protocol,
                "response head too large",
            )));
        };
        let n = conn.read(room).await.map_err(io)?;
        if n == 0 {
            return Err(Fault::Net(http1::CLOSED_IN_HEAD));
        }
        reached.answered = true;
        filled += n;
    };

    let mut retry = None;
    let mut kept = 0usize;
    let mut needed = 0usize;
    for (name, value) in http1::headers(rx.get(..head.len).unwrap_or_default()) {
        if name.eq_ignore_ascii_case("retry-after") {
            retry = retry_after(value, wall_now);
        }
        if keep_headers {
            let len = name.len() + value.len() + 2;
            needed += len;
            // Once one line did not fit, none is written: the error says how much.
            if needed == kept + len {
                if let Some(line) = into.get_mut(kept..needed) {
                    let (n, rest) = line.split_at_mut(name.len());
                    n.copy_from_slice(name.as_bytes());
                    n.make_ascii_lowercase();
                    let (colon, rest) = rest.split_at_mut(1);
                    colon[0] = b':';
                    let (v, nl) = rest.split_at_mut(value.len());
                    v.copy_from_slice(value.as_bytes());
                    nl[0] = b'\n';
                    kept = needed;
                }
            }
        }
    }
    if needed > kept {
        return Err(Fault::Local(tessera_core::Error::Capacity {
            field: "response headers",
            needed,
            capacity: into.len(),
        }));
    }

    // The body: what followed the head in `rx`, then reads.
    let room = into.get_mut(kept..).unwrap_or_default();
    let capacity = room.len();
    let mut reader = BodyReader::new(head.framing);
    let mut written = 0usize;
    let mut start = head.len;
    let mut extra = false;
    loop {
        let input = rx.get(start..filled).unwrap_or_default();
        let p = reader
            .feed(input, room.get_mut(written..).unwrap_or_default())
            .map_err(Fault::Net)?;
        written += p.written;
        if reader.is_done() {
            extra = p.consumed < input.len();
            break;
        }
        if p.consumed < input.len() {
            // Input left and no room: the body is larger than the buffer.
            return Err(Fault::Local(body_too_large(capacity)));
        }
        let n = conn.read(rx).await.map_err(io)?;
        if n == 0 {
            reader.on_close().map_err(Fault::Net)?;
            break;
        }
        start = 0;
        filled = n;
    }
    rx.fill(0);
    Ok(Exchanged {
        status: head.status,
        retry_after: retry,
        kept,
        body_len: written,
        reusable: head.keep && !extra && !reader.until_close(),
        idle_timeout: head.idle_timeout,
        connection: Connection {
            reused: false,
            handshake: if tls {
                Handshake::Full
            } else {
                Handshake::None
            },
        },
    })
}
