//! # tessera-tokio
//!
//! An async Tessera client for tokio services: it drives the `tessera-core`
//! [`Session`](tessera_core::Session) over [reqwest](https://docs.rs/reqwest), the same
//! thin loop as tessera-std's threads and tessera-embassy's tasks.
//!
//! - [`Client::token`] returns a bearer token: from the cache with no network await and no
//!   lock held across an await; fetched once however many tasks ask at the same moment (the
//!   others wait on a [`Notify`](tokio::sync::Notify), not a timer); a due token is
//!   returned at once and refreshed in a background task.
//! - [`Client::call`] sends a [`reqwest::Request`] with `Authorization: Bearer …` added; on
//!   a 401 it reports the token rejected, fetches a new one once and retries once.
//! - `TokenLayer` (feature `middleware`) gives an existing
//!   `reqwest_middleware::ClientWithMiddleware` the same, as one layer.
//! - [`Client::start_refresher`] keeps the token fresh from a task of its own.
//! - [`Options::store`]: a [`FileStore`] or a `RedisStore` (feature `redis`) with
//!   tessera-std's records, so blocking and async processes with one credential share one
//!   token (one provider request per token lifetime, fleet-wide).
//! - Every future is cancellation-safe: one dropped mid-fetch (a `tokio::time::timeout`, a
//!   `select!`) gives its ticket back through the core, so the next caller fetches at once.
//!
//! ```no_run
//! use tessera_tokio::{Client, OwnedProvider};
//! use tessera_tokio::core::{Credentials, ProviderKind};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let token_url = std::env::var("TOKEN_URL")?; // e.g. https://idp.example/oauth2/token
//! let idp = OwnedProvider::new(ProviderKind::OAuth2, token_url).with_scope("payments");
//! let creds = Credentials::new("terminal-7", &std::env::var("CLIENT_SECRET")?)?;
//! let client = Client::new(idp, creds)?;
//!
//! // A payment that must not be taken twice, even when the call is retried after a 401.
//! let request = client
//!     .request(reqwest::Method::POST, "https://api.example/v1/payments")
//!     .header("Content-Type", "application/json")
//!     .header("Idempotency-Key", "order-1234-attempt-1")
//!     .body(r#"{"amount":1250,"currency":"EUR"}"#)
//!     .build()?;
//! let response = client.call(request).await?;
//! println!("{} {:?}", response.status(), response.headers().get("x-request-id"));
//! # Ok(())
//! # }
//! ```
//!
//! ## The same options as tessera-std
//!
//! [`Options`] has tessera-std's fields with the same meaning, and the types they share
//! come from one crate, `tessera-host` ([`Trust`], [`Proxy`], [`OwnedProvider`], [`Token`],
//! the clocks): timeouts, trust roots, proxy rules, the body limit and the plaintext
//! refusal read the same in a blocking and an async process.
//!
//! ## Security
//!
//! - A secret never crosses the network in plaintext: an `http://` token or downstream URL
//!   whose host is not loopback is refused before any connection ([`Error::Insecure`], kind
//!   `insecure`) unless `Options::session.allow_insecure_http` says otherwise. `http://`
//!   requests never go through a proxy; `https://` ones use [`Options::proxy`].
//! - TLS always verifies (rustls on ring): [`Trust::WebPki`] (default), [`Trust::Platform`]
//!   or the application's own roots ([`Trust::from_pem`]). Redirects are never followed.
//! - Network failures are classified ([`Error::transport`]): `dns`, `connect`, `tls`,
//!   `timeout`, `protocol`, `io`, each with a short fixed description; the reqwest error is
//!   the [`source`](std::error::Error::source).
//! - Tokens and secrets never reach `Debug`, logs or error text. The buffers tessera fills
//!   with them (the request it builds, the token answer it reads, handed-out tokens) are
//!   wiped, also when a future is dropped mid-fetch. hyper's own read and write buffers are
//!   outside tessera's reach: they are reused and freed without wiping, as with any reqwest
//!   request carrying a credential.
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
#[allow(unused_macros)]
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
mod error;
mod fleet;
mod http;
#[cfg(feature = "middleware")]
mod middleware;
mod options;
#[cfg(feature = "redis")]
mod redis_store;
mod store;

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use reqwest;
pub use tessera_core as core;
pub use tessera_host::{
    OwnedProvider, Proxy, ProxyUrl, Roots, StdClock, SystemWallClock, Token, Trust, TrustError,
    WallClock,
};

pub use client::{Client, Refresher};
pub use error::{classify, Error};
#[cfg(feature = "middleware")]
pub use middleware::TokenLayer;
pub use options::Options;
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use store::{Binding, FileStore, Lease, StoreError, StoreFuture, StoreKey, TokenStore};
