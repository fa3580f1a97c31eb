//! The connector: how a client reaches a server. It holds the network stack (TCP and DNS),
//! the TLS backend (none, embedded-tls or MbedTLS) and its kept connections, so the TLS
//! choice is a type: a client whose connector cannot speak TLS has no way to be asked for
//! it by a different method, and a backend whose feature is off does not exist to be named.

use core::cell::RefCell;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::blocking_mutex::Mutex;
use embedded_nal_async::{Dns, TcpConnect};
use tessera_core::{Stage, TransportError};

use crate::error::Fault;
use crate::http::{exchange, Exchanged, Outgoing, Wire};
use crate::kept::{Keep, Pool};
use crate::resources::Records;

/// How many connections a client keeps at most per kind (plain, TLS): token host and API
/// host are often two origins. Each is one socket of the network stack's pool while it is
/// kept (and, with MbedTLS, about 37 KiB of heap).
/// [`Settings::kept_connections`](crate::Settings::kept_connections) lowers it.
pub const KEPT_CONNECTIONS: usize = 2;

/// How a [`Client`](crate::Client) reaches servers: [`Plain`] (loopback, or a LAN
/// sandbox the settings allow), `EmbeddedTls` (feature `tls`) or `Mbedtls` (feature
/// `mbedtls`). Each holds the network stack and keeps its own connections; every one speaks
/// plain `http://` too (the core refuses it off loopback unless the settings allow it).
/// Sealed: the three connectors are the crate's.
pub trait Connector<'r>: sealed::Exchange<'r> {}

impl<'r, X: sealed::Exchange<'r>> Connector<'r> for X {}

pub(crate) mod sealed {
    use super::*;

    /// What the client asks of a connector: one exchange, bounded by the policy's timeout,
    /// on a kept connection for the origin when there is one.
    #[allow(async_fn_in_trait)]
    pub trait Exchange<'r> {
        /// Sends `out` and reads the answer (see [`crate::http::exchange`]); `records`:
        /// the client's TLS record slots (embedded-tls takes one per connection).
        #[allow(clippy::too_many_arguments)]
        async fn exchange(
            &self,
            policy: Policy,
            records: Records<'r>,
            out: Outgoing<'_>,
            rx: &mut [u8],
            into: &mut [u8],
            keep_headers: bool,
            safe: bool,
        ) -> Result<Exchanged, Fault>;

        /// Closes every kept connection and forgets saved TLS sessions.
        fn close_all(&self);
    }
}

/// What the client decides for each exchange: its bound, the wall clock, what is kept.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub(crate) timeout: embassy_time::Duration,
    pub(crate) wall_now: Option<u64>,
    pub(crate) keep: Keep,
}

/// The plain TCP connections kept, under a critical section held only to move one in or
/// out (never across I/O).
pub(crate) type PlainPool<'r, T> = Mutex<
    CriticalSectionRawMutex,
    RefCell<Pool<<T as TcpConnect>::Connection<'r>, KEPT_CONNECTIONS>>,
>;

/// Plain HTTP over the network stack `tcp` + `dns` (embassy-net's `TcpClient` and
/// `DnsSocket` on a board, `std-embedded-nal-async` on a desktop): for loopback and a LAN
/// sandbox the settings allow. An `https://` URL is refused (stage `tls`) before anything
/// is sent: pick `EmbeddedTls` or `Mbedtls` for HTTPS.
pub struct Plain<'r, T: TcpConnect + 'r, D> {
    pub(crate) tcp: &'r T,
    pub(crate) dns: &'r D,
    pub(crate) kept: PlainPool<'r, T>,
}

impl<'r, T: TcpConnect + 'r, D: Dns> Plain<'r, T, D> {
    /// Plain HTTP over `tcp` + `dns`.
    pub fn new(tcp: &'r T, dns: &'r D) -> Self {
        Plain {
            tcp,
            dns,
            kept: Mutex::new(RefCell::new(Pool::new())),
        }
    }

    pub(crate) fn wire(&self, policy: Policy) -> Wire<'r, T, D> {
        Wire {
            tcp: self.tcp,
            dns: self.dns,
            timeout: policy.timeout,
            wall_now: policy.wall_now,
            keep: policy.keep,
        }
    }

    /// A plain `http://` exchange, on a kept connection when there is one.
    pub(crate) async fn plain(
        &self,
        policy: Policy,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        exchange(
            &self.wire(policy),
            &self.kept,
            out,
            rx,
            into,
            keep_headers,
            safe,
        )
        .await
    }
}

/// An `https://` URL given to a [`Plain`] client.
pub(crate) const PLAIN_ONLY: TransportError = TransportError::new(
    Stage::Tls,
    "https:// with the Plain connector: use EmbeddedTls or Mbedtls",
);

pub(crate) fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

impl<'r, T: TcpConnect + 'r, D: Dns> sealed::Exchange<'r> for Plain<'r, T, D> {
    async fn exchange(
        &self,
        policy: Policy,
        _records: Records<'r>,
        out: Outgoing<'_>,
        rx: &mut [u8],
        into: &mut [u8],
        keep_headers: bool,
        safe: bool,
    ) -> Result<Exchanged, Fault> {
        if is_https(out.url) {
            return Err(Fault::Net(PLAIN_ONLY));
        }
        self.plain(policy, out, rx, into, keep_headers, safe).await
    }

    fn close_all(&self) {
        self.kept.lock(|p| p.borrow_mut().clear());
    }
}
