//! # tessera-core
//!
//! The sans-IO heart of Tessera: build bearer-token requests for payment APIs into caller
//! buffers, read their responses into fixed-capacity grants or typed errors, and run the
//! token lifecycle ([`Session`]) against an injected clock. `#![no_std]`, no heap, no `unsafe`, no panics.
//!
//! Providers: [`Shogun`] (token and validate), [`Apimw`], [`Setu`] (sandbox and production),
//! [`StoneX`], and standard [`OAuth2`] client credentials; add your own through [`Provider`].
//!
//! ```
//! use tessera_core::{Credentials, Grant, Provider, Setu};
//!
//! let setu = Setu::sandbox();
//! let creds = Credentials::new("c0a411d5-b6f9", "b2b3e650-a31b").unwrap();
//! let mut buf = [0u8; 512];
//! let request = setu.token_request(&creds, &mut buf).unwrap();
//! assert_eq!(request.url.to_string(), "https://uat.setu.co/api/v2/auth/token");
//! // ... a transport sends `request` and reads the status and body ...
//! let body = br#"{"status":200,"success":true,"data":{"expiresIn":1800,"token":"opaque"}}"#;
//! let mut grant: Grant = Grant::new();
//! grant.store(&setu.parse_token(200, body).unwrap()).unwrap();
//! assert_eq!((grant.access_token(), grant.lifetime_s()), ("opaque", 1800));
//! ```
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(test)]
extern crate std;

pub mod codec;
mod credentials;
mod error;
mod grant;
pub mod http1;
mod ip;
pub mod json;
pub mod jwt;
mod provider;
mod redact;
mod request;
pub mod session;
pub mod snapshot;
mod time;
pub mod timestamp;
pub mod transport;
mod write;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use credentials::{Credentials, CLIENT_ID_CAPACITY, SECRET_CAPACITY};
pub use error::{
    Detail, DetailRef, Error, ErrorKind, ErrorReport, ResponseError, CODE_CAPACITY,
    MESSAGE_CAPACITY, TRACE_ID_CAPACITY,
};
pub use grant::{
    effective_lifetime, Grant, GrantRef, ScopeRef, Scopes, TokenInfo, TokenInfoRef,
    DEFAULT_LIFETIME_S, DEFAULT_REFRESH_CAPACITY, DEFAULT_TOKEN_CAPACITY, GRANT_CLIENT_ID_CAPACITY,
    MAX_SCOPES, SCOPE_CAPACITY,
};
pub use json::Problem;
pub use provider::{
    identity_piece, AnyProvider, Apimw, ClientAuth, OAuth2, Provider, ProviderKind, Setu, Shogun,
    StoneX, UnknownProvider, APIMW_BASE_URL, SETU_PRODUCTION_URL, SETU_SANDBOX_URL,
    SHOGUN_BASE_URL, STONEX_SANDBOX_URL, STONEX_TOKEN_PATH,
};
pub use request::{bearer_header, Headers, Layout, Method, Request, Span, Url, FORM, JSON};
pub use session::{Bearer, Config, Poll, Restored, Session, Step, Ticket, TokenId};
pub use time::{Clock, Instant};
pub use transport::{Stage, TransportError};
