//! # tessera-sandbox
//!
//! A real HTTP server on loopback (axum) that behaves like every provider Tessera speaks:
//! the exact paths, bodies, envelopes and error shapes of Shogun (token and validate),
//! APIMW, Setu, StoneX and a standard OAuth 2.0 token endpoint. Tokens are real JWTs
//! (HS256, with `iat` and `exp`); each provider's protected endpoint accepts only live
//! tokens it issued. Shogun locks the account after repeated failed logins. Faults can be
//! injected per endpoint ([`Fault`], hostile answers included), every request is counted and
//! its headers recorded, and a [`Gate`] holds an answer until a test releases it.
//! [`CountingListener`] proves whether a client connected at all.
//!
//! It runs in-process for tests ([`Sandbox::start`]) and as a binary
//! (`tessera-sandbox --port N`) for developing an integration by hand.
//!
//! | provider | token endpoint | protected endpoint |
//! |---|---|---|
//! | Shogun | `POST /shogun/api/v1/security/api/generate_token` (+ `GET …/validate_token`) | `GET /shogun/protected` |
//! | APIMW | `POST /apimw/v1/auth/token` | `GET /apimw/protected` |
//! | Setu | `POST /setu/api/v2/auth/token` | `GET /setu/protected` |
//! | StoneX | `POST /stonex/api/v/authentication` | `GET /stonex/protected` |
//! | OAuth 2.0 | `POST /oauth2/token` | `GET /oauth2/protected` |
//!
//! One module per job: `server` (start-up, TLS, connections), `faults` (injection and the
//! request handler), `providers` (each provider's answers), `jwt` (tokens and their
//! signatures), `gate`, `listener`, [`pki`] (the TLS matrix's certificates and
//! [`Sandbox::start_tls_with`]).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use tessera_core::ProviderKind;

mod faults;
mod gate;
mod jwt;
mod listener;
pub mod pki;
mod providers;
mod redis_server;
pub mod scenarios;
mod server;

pub use faults::{Fault, BROKEN_CHUNKED, GARBAGE_STATUS_LINE};
pub use gate::Gate;
pub use jwt::{iso8601_no_zone, issued_tokens};
pub use listener::CountingListener;
pub use redis_server::RedisServer;
pub use server::{base_url_at, certificate_pem, Sandbox};

/// The client id every provider accepts by default.
pub const CLIENT_ID: &str = "tessera-sandbox-client";
/// The secret every provider accepts by default. It holds a quote, a backslash, a colon, a
/// space and non-ASCII text, so every request encoder is exercised end to end.
pub const CLIENT_SECRET: &str = "s3cr3t: \"quoted\" back\\slash é";
/// Scopes granted (OAuth `scope`, StoneX `scope`, Shogun `authorities`).
pub const SCOPES: [&str; 2] = ["TRANSACTION_READ", "TRANSACTION_WRITE"];

/// An endpoint, for counting requests and injecting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A provider's token endpoint.
    Token(ProviderKind),
    /// Shogun's validate endpoint.
    Validate,
    /// A provider's protected test endpoint.
    Protected(ProviderKind),
}
