//! One plain HTTP exchange, on a kept connection or a new one, bounded by a timeout, with
//! every failure classified; and the downstream request and response types.

use core::fmt;

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::RawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embassy_time::{with_timeout, Duration};
use embedded_nal_async::{Dns, TcpConnect};
use tessera_core::transport::Target;
use tessera_core::{Method, Stage, TransportError};

use crate::connect::{connect, target};
use crate::error::{Fault, TIMED_OUT};
pub(crate) use crate::exchange::Exchanged;
use crate::exchange::{exchange as over, Outgoing as Wired, Reached};
use crate::kept::{Connection, Keep, Pool};

/// How many extra headers a downstream call may carry.
pub const MAX_EXTRA_HEADERS: usize = 8;

/// A downstream request for [`Client::call`](crate::Client::call): method, URL, extra
/// headers and body. The bearer token is added by the client.
///
/// ```
/// use tessera_embassy::ApiRequest;
/// let headers = [("Idempotency-Key", "7f3c-0042")];
/// let pay = ApiRequest::post("https://api.example/v1/payments", "application/json", b"{}")
///     .headers(&headers);
/// let status = ApiRequest::get("https://api.example/v1/status");
/// # let _ = (pay, status);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ApiRequest<'r> {
    /// The method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD` or `OPTIONS`.
    pub method: Method,
    /// The whole URL. An `http://` URL whose host is not loopback is refused (a bearer token
    /// is a secret) unless the settings allow insecure HTTP.
    pub url: &'r str,
    /// Extra request headers (`Idempotency-Key`, …), at most [`MAX_EXTRA_HEADERS`].
    pub headers: &'r [(&'r str, &'r str)],
    /// Content type and body (`POST`, `PUT`, `PATCH`).
    pub body: Option<(&'r str, &'r [u8])>,
}

impl<'r> ApiRequest<'r> {
    /// A `GET` of `url`.
    pub const fn get(url: &'r str) -> Self {
        ApiRequest {
            method: Method::Get,
            url,
            headers: &[],
            body: None,
        }
    }

    /// A `POST` of `body` (of media type `content_type`) to `url`.
    pub const fn post(url: &'r str, content_type: &'r str, body: &'r [u8]) -> Self {
        ApiRequest {
            method: Method::Post,
            url,
            headers: &[],
            body: Some((content_type, body)),
        }
    }

    /// A request of any `method` to `url`, with no body (add one with
    /// [`ApiRequest::body`]).
    pub const fn new(method: Method, url: &'r str) -> Self {
        ApiRequest {
            method,
            url,
            headers: &[],
            body: None,
        }
    }

    /// A `PUT` of `body` (of media type `content_type`) to `url`.
    pub const fn put(url: &'r str, content_type: &'r str, body: &'r [u8]) -> Self {
        Self::new(Method::Put, url).body(content_type, body)
    }

    /// A `PATCH` of `body` (of media type `content_type`) to `url`.
    pub const fn patch(url: &'r str, content_type: &'r str, body: &'r [u8]) -> Self {
        Self::new(Method::Patch, url).body(content_type, body)
    }

    /// A `DELETE` of `url`.
    pub const fn delete(url: &'r str) -> Self {
        Self::new(Method::Delete, url)
    }

    /// With a body of media type `content_type`.
    pub const fn body(mut self, content_type: &'r str, body: &'r [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// With extra request headers.
    pub const fn headers(mut self, headers: &'r [(&'r str, &'r str)]) -> Self {
        self.headers = headers;
        self
    }
}

/// A downstream response, borrowing the call's [`CallBuffers`](crate::CallBuffers).
#[derive(Clone, Copy)]
pub struct ApiResponse<'b> {
    status: u16,
    connection: Connection,
    /// `name:value\n` lines, names lowercased.
    head: &'b str,
    body: &'b [u8],
}

impl<'b> ApiResponse<'b> {
    pub(crate) fn new(status: u16, connection: Connection, head: &'b [u8], body: &'b [u8]) -> Self {
        ApiResponse {
            status,
            connection,
            head: core::str::from_utf8(head).unwrap_or_default(),
            body,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the call went on a new connection or a kept one, and the TLS handshake it
    /// cost (`none` on a kept connection or plain HTTP). A 401 retried counts as the
    /// retry's.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// The body.
    pub fn body(&self) -> &'b [u8] {
        self.body
    }

    /// The first value of header `name` (any case). Headers whose value is not UTF-8 are
    /// not kept.
    pub fn header(&self, name: &str) -> Option<&'b str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header kept, in order, names lowercased.
    pub fn headers(&self) -> impl Iterator<Item = (&'b str, &'b str)> + 'b {
        self.head.lines().filter_map(|l| l.split_once(':'))
    }
}

impl fmt::Debug for ApiResponse<'_> {
    /// Status, header names and body length: the values may carry anything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &format_args!("{} kept", self.headers().count()))
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// The network stack, the bound on one exchange, and the wall clock (for an HTTP-date
/// `Retry-After`).
pub(crate) struct Wire<'a, T, D> {
    pub(crate) tcp: &'a T,
    pub(crate) dns: &'a D,
    pub(crate) timeout: Duration,
    /// Unix seconds, when the application set the wall clock.
    pub(crate) wall_now: Option<u64>,
    /// How many connections are kept, and for how long.
    pub(crate) keep: Keep,
}

/// One request on the wire.
pub struct Outgoing<'r> {
    pub(crate) method: Method,
    pub(crate) url: &'r str,
    pub(crate) headers: &'r [(&'r str, &'r str)],
    pub(crate) body: &'r [u8],
}

/// Sends `out` and reads the answer: the request and then the head in `rx`, then (when
/// `keep_headers`) the response headers and the body into `into`. Bounded by the wire's
/// timeout.
///
/// Plain HTTP goes on a connection kept in `kept` for the origin when there is one. Found
/// dead (the server closed it while idle: an I/O failure before any byte of the answer),
/// the request is sent again once on a new connection only when `safe` (idempotent, or an
/// `Idempotency-Key`); otherwise it is an `io` failure, and the API saw it at most once. A
/// connection is kept after an answer whose framing left no doubt.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn exchange<'k, T: TcpConnect, D: Dns, M: RawMutex, const N: usize>(
    wire: &Wire<'k, T, D>,
    kept: &Mutex<M, RefCell<Pool<T::Connection<'k>, N>>>,
    out: Outgoing<'_>,
    rx: &mut [u8],
    into: &mut [u8],
    keep_headers: bool,
    safe: bool,
) -> Result<Exchanged, Fault> {
    let work = async {
        let to = target(out.url)?;
        let wired = Wired {
            method: out.method,
            to,
            headers: out.headers,
            body: out.body,
        };
        let mut reached = Reached::default();
        let now = embassy_time::Instant::now();
        let taken = kept
            .lock(|p| p.borrow_mut().take(&to, now))
            .and_then(still_open);
        if let Some(mut conn) = taken {
            let sent = over(
                &mut conn,
                false,
                &wired,
                rx,
                into,
                keep_headers,
                wire.wall_now,
                &mut reached,
            )
            .await;
            match sent {
                Ok(mut x) => {
                    x.connection.reused = true;
                    keep(kept, wire.keep, &to, conn, &x);
                    return Ok(x);
                }
                Err(Fault::Net(e)) if e.stage == Stage::Io && !reached.answered => {
                    drop(conn);
                    if !safe {
                        return Err(Fault::Net(DEAD_NOT_RESENT));
                    }
                    diag!(
                        debug,
                        "tessera: a kept connection was closed by the server; sending again on a new one"
                    );
                }
                // Closed (dropped): never kept after a failure.
                Err(e) => return Err(e),
            }
        }
        let mut conn = match connect(wire.tcp, wire.dns, &to).await {
            Ok(conn) => conn,
            // The stack's sockets may all be kept for other origins (embassy-net's
            // TcpClient has a fixed pool): they go, and the connect is tried again.
            Err(e) if e.stage == Stage::Connect && kept.lock(|p| !p.borrow().is_empty()) => {
                kept.lock(|p| p.borrow_mut().clear());
                diag!(
                    debug,
                    "tessera: could not connect with connections kept: closed them, trying again"
                );
                connect(wire.tcp, wire.dns, &to).await.map_err(Fault::Net)?
            }
            Err(e) => return Err(Fault::Net(e)),
        };
        let x = over(
            &mut conn,
            false,
            &wired,
            rx,
            into,
            keep_headers,
            wire.wall_now,
            &mut reached,
        )
        .await?;
        keep(kept, wire.keep, &to, conn, &x);
        Ok(x)
    };
    match with_timeout(wire.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(Fault::Net(TIMED_OUT)),
    }
}

/// A kept plain connection, if it still looks open: one read polled once must find
/// nothing to read (an end of stream means the server closed it while idle, a byte would be
/// garbage nobody asked for). What ureq does before reusing a connection, so a closed one is
/// replaced before anything is sent rather than found dead after.
fn still_open<C: embedded_io_async::Read>(mut conn: C) -> Option<C> {
    let mut byte = [0u8; 1];
    match embassy_futures::poll_once(conn.read(&mut byte)) {
        core::task::Poll::Pending => Some(conn),
        core::task::Poll::Ready(_) => None,
    }
}

/// A kept connection found closed, with a request that may not be sent twice.
pub(crate) const DEAD_NOT_RESENT: TransportError = TransportError::new(
    Stage::Io,
    "the kept connection was closed by the server; a request that is not idempotent is not sent again",
);

/// Keeps `conn` for `to`'s origin when the answer allows it; otherwise drops (closes) it.
fn keep<C, M: RawMutex, const N: usize>(
    kept: &Mutex<M, RefCell<Pool<C, N>>>,
    policy: Keep,
    to: &Target<'_>,
    conn: C,
    x: &Exchanged,
) {
    match (x.reusable, policy.idle_for(x.idle_timeout)) {
        (true, Some(idle)) => {
            let now = embassy_time::Instant::now();
            kept.lock(|p| p.borrow_mut().put(to, conn, idle, now, policy.limit));
        }
        _ => drop(conn),
    }
}
