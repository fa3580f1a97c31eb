//! # tessera-sandbox
//!
//! A real HTTP server on loopback that behaves like every payment-API token provider Tessera
//! speaks, for testing an integration without a provider account or a network: the exact
//! paths, bodies, envelopes and error shapes of Shogun (token and validate), APIMW, Setu,
//! StoneX and a standard OAuth 2.0 token endpoint. Tokens are real JWTs (HS256, with `iat`
//! and `exp`); each provider's protected endpoint accepts only live tokens it issued, so it
//! stands in for your payment API.
//!
//! What a test can make happen, and check:
//! - **revocation** ([`Sandbox::revoke_all`]) and token lifetimes ([`Sandbox::set_lifetime`]);
//! - **Shogun's lockout** after repeated failed logins ([`Sandbox::set_lockout`],
//!   [`Sandbox::unlock`]) and rotated credentials ([`Sandbox::set_credentials`]);
//! - **faults** queued per endpoint ([`Sandbox::inject`] a [`Fault`]): statuses, 429 with
//!   `Retry-After`, HTML error pages, delays, slow drips, cut bodies, resets, and hostile
//!   answers HTTP libraries refuse to produce;
//! - **counted requests** ([`Sandbox::count`]) and the headers each endpoint last received
//!   ([`Sandbox::last_headers`]);
//! - **a [`Gate`]** that holds an answer until the test releases it, for "what happens
//!   while a refresh is in flight";
//! - **[`CountingListener`]**, which proves whether a client connected at all, and
//!   **[`HostileServer`]**, which answers with framing HTTP servers refuse to produce;
//! - **[`ManualClock`]**, the monotonic clock a test moves by hand, so a backoff runs out
//!   or a token comes due when the test says, never after a sleep.
//!
//! It runs in-process ([`Sandbox::start`]; dropping it stops the server), over HTTPS with a
//! CA made at start-up ([`Sandbox::start_tls`]), and as a binary (`tessera-sandbox --port N`)
//! for developing an integration by hand. Every provider accepts [`CLIENT_ID`] and
//! [`CLIENT_SECRET`] until told otherwise.
//!
//! ```
//! use tessera_sandbox::{Endpoint, ProviderKind, Sandbox};
//!
//! let sandbox = Sandbox::start()?;
//! let token_url = sandbox.base_url(ProviderKind::OAuth2); // give this to your client
//! let api = sandbox.protected_url(ProviderKind::OAuth2);  // your payment API stands here
//! # let _ = (token_url, api);
//! assert_eq!(sandbox.count(Endpoint::Token(ProviderKind::OAuth2)), 0);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! | provider | token endpoint | protected endpoint (any method) |
//! |---|---|---|
//! | Shogun | `POST /shogun/api/v1/security/api/generate_token` (+ `GET …/validate_token`) | `/shogun/protected` |
//! | APIMW | `POST /apimw/v1/auth/token` | `/apimw/protected` |
//! | Setu | `POST /setu/api/v2/auth/token` | `/setu/protected` |
//! | StoneX | `POST /stonex/api/v/authentication` | `/stonex/protected` |
//! | OAuth 2.0 | `POST /oauth2/token` | `/oauth2/protected` |
//!
//! ## Feature `suite`
//!
//! Tessera's own test suite, not for users: the end-to-end scenarios every transport runs
//! (`scenarios`, `store_scenarios`), the TLS matrix's certificate chains (`pki`, which reads
//! RSA key fixtures from Tessera's repository at run time) and a `redis-server` process
//! helper. The published crate does not ship those fixtures.
//!
//! One module per job: `server` (start-up, TLS, connections), `faults` (injection and the
//! request handler), `providers` (each provider's answers), `jwt` (tokens and their
//! signatures), `gate`, `listener`, `hostile`, `clock`; with `suite`, `scenarios`,
//! `store_scenarios`, `pki` and `redis_server`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tessera_core::ProviderKind;

mod clock;
mod faults;
mod gate;
mod hostile;
mod jwt;
mod listener;
#[cfg(feature = "suite")]
pub mod pki;
mod providers;
#[cfg(feature = "suite")]
mod redis_server;
#[cfg(feature = "suite")]
pub mod scenarios;
mod server;
#[cfg(feature = "suite")]
pub mod store_scenarios;

pub use clock::ManualClock;
pub use faults::{Fault, BROKEN_CHUNKED, GARBAGE_STATUS_LINE};
pub use gate::Gate;
pub use hostile::{Hostile, HostileServer, Outcome};
pub use jwt::{iso8601_no_zone, issued_tokens};
pub use listener::CountingListener;
#[cfg(feature = "suite")]
pub use redis_server::RedisServer;
pub use server::{base_url_at, certificate_pem, Sandbox, Wire};

/// The client id every provider accepts by default.
pub const CLIENT_ID: &str = "tessera-sandbox-client";
/// The secret every provider accepts by default. It holds a quote, a backslash, a colon, a
/// space and non-ASCII text, so every request encoder is exercised end to end.
pub const CLIENT_SECRET: &str = "s3cr3t: \"quoted\" back\\slash é";
/// Scopes granted (OAuth `scope`, StoneX `scope`, Shogun `authorities`).
pub const SCOPES: [&str; 2] = ["TRANSACTION_READ", "TRANSACTION_WRITE"];

/// An endpoint, for counting requests and injecting faults. More may be added in a minor
/// version (`non_exhaustive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A provider's token endpoint.
    Token(ProviderKind),
    /// Shogun's validate endpoint.
    Validate,
    /// A provider's protected test endpoint.
    Protected(ProviderKind),
}
