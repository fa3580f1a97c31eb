//! # tessera-host
//!
//! What Tessera's two host clients share, written once: `tessera-std` (blocking, on ureq)
//! and `tessera-tokio` (async, on reqwest) take the same settings with the same meaning and
//! hand out the same tokens.
//!
//! - [`OwnedProvider`]: a shipped provider built from strings read at run time.
//! - [`Token`]: a handed-out bearer token, shared per token and wiped on drop.
//! - [`StdClock`], [`WallClock`]: the monotonic clock sessions run on, and the wall clock
//!   `Retry-After` dates and stored tokens' expiry are read against.
//! - [`Trust`]: which roots a server certificate must chain to (no "verify nothing").
//! - [`Proxy`]: which proxy `https://` requests take; plaintext never takes one.
//! - [`classify`]: socket and TLS failures as the core's transport stages.
//! - [`store`]: the token stores' records, names and rules ([`FileStore`], the Redis keys,
//!   the fetch lease, the fleet's steps before a fetch), so blocking and async processes
//!   with one credential share one token.
//!
//! Why a crate and not the core: these need `std` (strings, files, the environment, the
//! system clock) and the core is `no_std` without a heap. Why not inside one client crate:
//! an async service should not compile a blocking HTTP stack to read a PEM file, nor a
//! blocking one an async runtime. The HTTP-library glue (a `Trust` as ureq's or reqwest's
//! TLS setting) stays in each client, which owns its sockets.
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod classify;
mod clock;
pub mod defaults;
mod provider;
mod proxy;
pub mod store;
mod token;
mod trust;

pub use tessera_core as core;

pub use clock::{StdClock, SystemWallClock, WallClock};
pub use provider::OwnedProvider;
pub use proxy::{Proxy, ProxyError, ProxyUrl, Resolved};
pub use store::{Binding, FileStore, Lease, StoreError, StoreKey, TokenStore};
pub use token::Token;
pub use trust::{Roots, Trust, TrustError};
