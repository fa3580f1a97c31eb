//! # tessera-std
//!
//! A blocking, thread-safe Tessera client for host applications: it drives the
//! `tessera-core` [`Session`](tessera_core::Session) over [ureq](https://docs.rs/ureq) with
//! `std::time::Instant`.
//!
//! - [`Client::token`] returns a bearer token: cached, refreshed before expiry (in the
//!   background, so no caller waits for a refresh), and fetched once however many threads
//!   ask at the same moment: the others wait for that fetch, they do not start their own.
//! - [`Client::call`] sends an [`http::Request`] with `Authorization: Bearer …` added and
//!   returns the [`http::Response`], headers included; on a 401 it reports the token
//!   rejected, fetches a new one once and retries once.
//! - [`Client::start_refresher`] keeps the token fresh from a background thread.
//! - [`OwnedProvider`] builds a provider from strings read at run time.
//!
//! ```no_run
//! use tessera_std::{Client, OwnedProvider, http};
//! use tessera_std::core::{Credentials, ProviderKind};
//!
//! let token_url = std::env::var("TOKEN_URL")?; // e.g. https://idp.example/oauth2/token
//! let idp = OwnedProvider::new(ProviderKind::OAuth2, token_url).with_scope("payments");
//! let creds = Credentials::new("terminal-7", &std::env::var("CLIENT_SECRET")?)?;
//! let client = Client::new(idp, creds);
//!
//! // A payment that must not be taken twice, even when the call is retried after a 401.
//! let request = http::Request::post("https://api.example/v1/payments")
//!     .header("Content-Type", "application/json")
//!     .header("Idempotency-Key", "order-1234-attempt-1")
//!     .body(r#"{"amount":1250,"currency":"EUR"}"#)?;
//! let response = client.call(request)?;
//! println!("{} {:?}", response.status(), response.headers().get("x-request-id"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Security
//!
//! - A secret never crosses the network in plaintext: an `http://` token or downstream URL
//!   whose host is not loopback is refused before any connection ([`Error::Insecure`], kind
//!   `insecure`) unless `Options::session.allow_insecure_http` says otherwise (a LAN
//!   sandbox). `http://` requests never go through a proxy; `https://` ones use
//!   [`Options::proxy`] ([`Proxy::Env`] by default).
//! - TLS always verifies: [`Trust::WebPki`] (default), [`Trust::Platform`] (the OS store),
//!   or the application's own roots ([`Trust::from_pem`]).
//! - Network failures are classified ([`Error::transport`]): `dns`, `connect`, `tls`,
//!   `timeout`, `protocol`, `io`, each with a short fixed description; the ureq error is the
//!   [`source`](std::error::Error::source).
//! - Tokens and secrets never reach `Debug`, logs or error text; the buffers that held them
//!   are wiped.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// `log::debug!` with the `log` feature; without it the arguments are type-checked, never
/// evaluated.
macro_rules! debug {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            log::debug!($($t)*);
        }
        #[cfg(not(feature = "log"))]
        {
            if false {
                let _ = format_args!($($t)*);
            }
        }
    }};
}

/// `log::warn!`, likewise.
macro_rules! warn {
    ($($t:tt)*) => {{
        #[cfg(feature = "log")]
        {
            log::warn!($($t)*);
        }
        #[cfg(not(feature = "log"))]
        {
            if false {
                let _ = format_args!($($t)*);
            }
        }
    }};
}

mod call;
mod client;
mod clock;
mod error;
mod options;
mod provider;
#[cfg(feature = "redis")]
mod redis_store;
mod store;
mod token;
mod wire;

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use tessera_core as core;
/// The `http` crate (as ureq re-exports it): [`Client::call`] takes and returns its types.
pub use ureq::http;

pub use client::{Client, Refresher};
pub use clock::{StdClock, SystemWallClock, WallClock};
pub use error::{classify, Error, TrustError};
pub use options::{Options, Proxy, ProxyError, ProxyUrl, Roots, Trust};
pub use provider::OwnedProvider;
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use store::{Binding, FileStore, Lease, StoreError, StoreKey, TokenStore};
pub use token::Token;
