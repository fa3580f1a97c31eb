//! # tessera-embassy
//!
//! An async Tessera client for embassy firmware: the `tessera-core` [`Session`] driven on any
//! embedded-nal-async `TcpConnect` + `Dns` (embassy-net's `TcpClient` and `DnsSocket` on a
//! board, `std-embedded-nal-async` on a desktop), with `embassy_time` for timeouts and
//! sleeps. No heap (except MbedTLS's own): every buffer the client needs is in one
//! [`Resources`] value, and each call's response is read into the caller's [`CallBuffers`].
//!
//! **One connector, one call.** The client's [`Connector`] type is its TLS choice and holds
//! the network stack and the kept connections: [`Plain`] (loopback, or a LAN sandbox the
//! settings allow), `EmbeddedTls` (feature `tls`) or `Mbedtls` (feature `mbedtls`).
//! [`Client::call`] is the only call for every method and scheme; a backend whose feature is
//! off cannot be named, so a missing TLS backend is a compile error. The connector resolves
//! and connects to the host the core parsed, and uses that host for SNI and the
//! certificate's host check. A [`Plain`] client refuses an `https://` URL (stage `tls`)
//! before sending anything.
//!
//! **HTTP/1.1, exactly.** Every connection (plain, embedded-tls, MbedTLS) runs one exchange
//! framed by the core's codec ([`tessera_core::http1`]: heads read by httparse, bodies by
//! `Content-Length` or chunks with bounded trailers, 1xx answers skipped). The URL is parsed
//! by the core ([`tessera_core::transport::parse_url`]): the host it checked is the host
//! resolved and connected to; `localhost` is loopback without a DNS question.
//!
//! **A payment costs no handshake.** After an answer whose framing left no doubt, the
//! connection is kept for the next request to its origin (plain HTTP, embedded-tls and
//! MbedTLS; up to
//! [`Settings::kept_connections`] (default [`KEPT_CONNECTIONS`], 2), each
//! [`Settings::kept_for`] (30 s) or less if the server's `Keep-Alive: timeout=` says so,
//! closed on any error or doubt; [`Client::close_connections`] closes them). Token requests
//! use them too. A connect or an MbedTLS handshake that fails for want of a socket or heap
//! while connections are kept closes them and tries once more. A kept connection found closed by the server is sent the request again once, on a
//! new connection, only if nothing of the answer was read and the request is idempotent
//! (GET, HEAD, PUT, DELETE, OPTIONS) or carries an `Idempotency-Key`; otherwise the caller
//! gets an `io` failure: a payment never reaches the API twice without its key. MbedTLS
//! reconnects resume a TLS 1.2 session (see [`mbedtls`](crate#tls-feature-mbedtls)).
//! [`ApiResponse::connection`] says, per call, whether the connection was new or kept and
//! which handshake it cost.
//!
//! **A point of sale never waits on the network for a token it already has.**
//!
//! - [`Client::token`] returns a cached token at once, also while it is being refreshed:
//!   the session sits in a blocking mutex held only while it decides (microseconds), never
//!   across network I/O. The fetch buffers belong to whichever task holds the fetch's
//!   ticket. Callers with no token wait for that one fetch on a signal, not a timer.
//! - [`Client::refresher`] runs in its own task: a caller that finds the token due hands it
//!   the refresh and returns at once. Without it, that caller runs the refresh itself.
//! - [`Client::call`] writes `Bearer <token>` straight into the call's own buffers, adds
//!   extra headers (an `Idempotency-Key`), exposes the response's headers, and on a first
//!   401 rejects the token, fetches a new one once and retries once.
//! - **Cancellation-safe**: drop a `token()` or `call()` future mid-fetch (a `select` with
//!   a timeout) and its ticket is released (the next caller may fetch at once, with no
//!   backoff) and every buffer that held the secret or a token is wiped.
//! - Every failure is classified ([`Error::stage`]: dns, connect, tls, timeout, protocol,
//!   io) with a short fixed detail. An `http://` URL whose host is not loopback carries no
//!   secret and no token unless [`Config::allow_insecure_http`](tessera_core::Config) says
//!   so (a LAN sandbox).
//!
//! ```no_run
//! use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
//! use static_cell::StaticCell;
//! use tessera_embassy::core::{Credentials, OAuth2};
//! use tessera_embassy::{ApiRequest, CallBuffers, Client, Error, Plain, Resources};
//! # type TcpClient = std_embedded_nal_async::Stack;
//! # type DnsSocket = std_embedded_nal_async::Stack;
//! // On a board: embassy-net's TcpClient and DnsSocket. `Plain`: a loopback sandbox here;
//! // `Mbedtls` (feature `mbedtls`) or `EmbeddedTls` (feature `tls`) for HTTPS.
//! type Net = Plain<'static, TcpClient, DnsSocket>;
//! type Tessera = Client<'static, CriticalSectionRawMutex, OAuth2<'static>, Net>;
//!
//! static RESOURCES: StaticCell<Resources> = StaticCell::new();
//! static CLIENT: StaticCell<Tessera> = StaticCell::new();
//!
//! fn setup(
//!     tcp: &'static TcpClient,
//!     dns: &'static DnsSocket,
//!     rng: &mut impl rand_core::RngCore,
//! ) -> &'static Tessera {
//!     let idp = OAuth2::new("http://127.0.0.1:8080/oauth2/token");
//!     let credentials = Credentials::new("terminal-7", "s3cr3t").unwrap();
//!     let resources = RESOURCES.init(Resources::new());
//!     CLIENT.init(Client::new(idp, credentials, Plain::new(tcp, dns), resources, rng))
//! }
//!
//! // Its own task (`#[embassy_executor::task]`): callers never wait for a refresh.
//! async fn refresher(client: &'static Tessera) -> ! {
//!     client.refresher().await
//! }
//!
//! // The payment task: the token goes into this call's buffers only.
//! async fn pay(client: &'static Tessera) -> Result<u16, Error> {
//!     let mut buffers: CallBuffers = CallBuffers::new();
//!     let headers = [("Idempotency-Key", "order-0042")];
//!     let request = ApiRequest::post("http://127.0.0.1:8080/v1/payments", "application/json", b"{}")
//!         .headers(&headers);
//!     let response = client.call(request, &mut buffers).await?;
//!     let _receipt = response.header("location");
//!     Ok(response.status())
//! }
//! ```
//!
//! ## Snapshots: a token through deep sleep and reboot
//!
//! [`Client::save`] seals the cached token into bytes the application keeps where a
//! restart does not reach (RTC memory through deep sleep, a flash sector), sized by
//! [`Resources::SNAPSHOT_CAPACITY`]; [`Client::restore`] takes it back into a new client,
//! whose first `token()` then sends no request while the token lives. The expiry is stored
//! as absolute wall time, so a restore needs the wall clock and the caller's word that it
//! is right (`None` discards the snapshot): see [`tessera_core::snapshot`] for the format,
//! the sealing and every refusal. `examples/esp32c3` keeps it in RTC fast memory across
//! deep sleep; `examples/rp2040-pico-w` in a flash sector, restored after SNTP.
//!
//! ## TLS (feature `tls`)
//!
//! HTTPS through embedded-tls: the connector `EmbeddedTls::new(tcp, dns, ca, rng)`, verifying
//! the server against the CA certificate the application gives; there is no "verify
//! nothing" mode, and an `https://` URL is never sent in plain HTTP. What embedded-tls
//! (0.18, as this crate drives it) checks, and what it does not:
//! - **checks**: the certificate chain's signatures up to the given CA, and the server
//!   name (SNI is sent) against the certificate's *common name*; subjectAltNames are not
//!   consulted, so the server's certificate must carry its host name as its CN;
//! - **TLS 1.3 only**, with `TLS_AES_128_GCM_SHA256`;
//! - **ECDSA certificates only** without a heap (RSA needs embedded-tls's `rsa` feature,
//!   which needs `alloc`): point it at the CA of an ECDSA chain, or terminate TLS in front;
//! - **not checked**: validity dates (it runs without a clock: an expired or not-yet-valid
//!   certificate passes), revocation (no OCSP or CRL), and certificates over 4 KiB;
//! - each connection's randomness comes from a 64-bit seed (ChaCha8 seeded with a `u64`);
//!   Tessera draws a fresh one from your RNG for every connection;
//! - **connections are kept, sessions are not resumed** (embedded-tls 0.18 has no session
//!   resumption): a request on a kept connection costs no handshake, a new connection a
//!   full one. Each open connection (in use or kept) owns one of the two record slots in
//!   [`Resources`] (65 KiB with this feature): two connections at once; an exchange that
//!   finds no free slot closes the kept ones, or waits on a signal for one in use. A slot
//!   is taken and given back under a critical section held for that alone (never across
//!   I/O) and wiped when its connection closes, also when the future is dropped.
//!
//! ## TLS (feature `mbedtls`)
//!
//! HTTPS through MbedTLS (mbedtls-rs): the connector `Mbedtls::new(tcp, dns,
//! tls.reference(), roots)`. TLS 1.2 and 1.3, RSA and ECDSA
//! chains (up to 8 intermediates, 16 KiB of certificates), the URL's host matched against the certificate's
//! subjectAltName (wildcards too), a bundle of roots; validity dates against a wall clock
//! with `mbedtls-dates` (without it, dates are not checked). It needs a heap (about 40 KiB
//! per connection for an RSA-2048 chain) and a C toolchain to build. The
//! `mbedtls` module (with the feature) says exactly what is checked.
//!
//! Connections are kept (above), and a **kept MbedTLS connection holds about 37 KiB of
//! heap** (its 16 KiB IN and 4 KiB OUT record buffers, contexts and the peer's chain:
//! 37,780 B with TLS 1.3 and 37,071 B with TLS 1.2 for an RSA-2048 chain, measured by
//! `tests/mbedtls_heap.rs`); size the heap for the kept connections plus one handshake. A
//! handshake that runs out of heap while connections are kept closes them and tries once
//! more. Reconnects **resume TLS 1.2 sessions** (the last session per origin, in RAM, offered
//! for the same server name only and dropped when a handshake fails): the server skips the
//! certificate chain. **TLS 1.3 sessions are not resumed**: MbedTLS 3.6 ignores TLS 1.3
//! tickets unless `conf_tls13_enable_signal_new_session_tickets` is set, which mbedtls-rs 0.3
//! neither does nor exposes (measured against rustls: a full handshake). A reconnect that
//! offered a saved session reports [`Handshake::Resumed`]; mbedtls-rs 0.3 does not say
//! whether the server accepted it (one that did not answers with a full handshake).
//!
//! **Which backend for which endpoint.** A provider's or payment API's endpoint (its
//! chain, its CA, its TLS versions are not yours): `mbedtls`, with `mbedtls-dates` and a
//! wall clock. An endpoint you control (your own gateway, with an ECDSA certificate whose
//! CN is its host name, TLS 1.3): `tls` also works, with no heap.
//!
//! ## Features
//!
//! `tls` and `mbedtls` (above; both may be enabled, each client uses the connector it was
//! given), `mbedtls-dates` (certificate dates), `defmt` and `log` (diagnostics; secrets and
//! tokens are never logged).
//!
//! [`Session`]: tessera_core::Session

#![no_std]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// `unsafe` in the crate: installing MbedTLS's wall-clock hook (`mbedtls-dates`), `Send` for
// kept MbedTLS sessions (`mbedtls`), and lending embedded-tls's record slots of `Resources`
// to one connection at a time (`tls`, in `tls.rs`). The reasoning is at each.
#![deny(unsafe_code)]

/// A diagnostic line to `defmt` and/or `log`, as enabled; nothing otherwise. Arguments are
/// `Display` and `defmt::Format`, and never a secret or a token.
macro_rules! diag {
    ($level:ident, $($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($($t)*);
        #[cfg(feature = "log")]
        log::$level!($($t)*);
    }};
}

mod client;
mod connect;
mod connector;
mod error;
mod exchange;
mod http;
mod kept;
#[cfg(feature = "mbedtls")]
pub mod mbedtls;
mod resources;
#[cfg(feature = "tls")]
mod tls;

pub use client::{Builder, Client, EmbassyClock, Settings, Token};
pub use connector::{Connector, Plain, KEPT_CONNECTIONS};
pub use error::Error;
pub use http::{ApiRequest, ApiResponse, MAX_EXTRA_HEADERS};
pub use kept::{Connection, Handshake, WireStats};
#[cfg(feature = "mbedtls")]
pub use mbedtls::Mbedtls;
pub use resources::{snapshot_capacity, CallBuffers, Resources};
pub use tessera_core as core;
#[cfg(feature = "tls")]
pub use tls::{EmbeddedTls, RECORD_BUFFER};
