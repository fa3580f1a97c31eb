//! [`Error`], and how a reqwest error is classified into the core's [`TransportError`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::session::{Cause, Failure};
use tessera_core::{ErrorKind, Stage, TransportError};
use tessera_host::classify::{classify_io, rustls_detail, rustls_in};
use tessera_host::TrustError;

use crate::http::{SendError, Unresolved};

/// What went wrong.
///
/// `Display` never shows a secret, a token or text a server sent, other than a provider's
/// error message with the secret scrubbed from it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// No token could be had: the session's last failure (invalid credentials, rate
    /// limited, server error, network, plaintext URL refused, …). `retry_in` is set while
    /// fetches back off.
    Token {
        /// Why (boxed: the provider's words make it large).
        failure: Box<Failure>,
        /// When a fetch will be tried again (none for refused credentials).
        retry_in: Option<Duration>,
        /// The network error behind a failure of [`Cause::Transport`], when this client
        /// saw it: [`std::error::Error::source`] returns it.
        source: Option<Arc<reqwest::Error>>,
    },
    /// A downstream call did not complete at the network level.
    Transport {
        /// The classified failure.
        error: TransportError,
        /// reqwest's error (none when tessera refused the answer itself: a head over its
        /// limit).
        source: Option<reqwest::Error>,
    },
    /// A downstream call's URL would carry the bearer token in plaintext off the machine
    /// (`http://` to a host that is not loopback, without
    /// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)), or is
    /// not `http(s)://`. Refused before any connection.
    Insecure,
    /// A validate answer was larger than [`Options::max_body`](crate::Options).
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Trust roots could not be read: [`Trust::from_pem`](crate::Trust::from_pem).
    Trust(TrustError),
    /// A proxy URL that is not a proxy address, or one reqwest cannot use.
    Proxy,
    /// The HTTP client could not be set up (the platform's certificate verifier is
    /// unavailable, or reqwest refused the configuration).
    Setup(Box<dyn StdError + Send + Sync>),
    /// A local limit in the core (e.g. an authorization header buffer).
    Core(tessera_core::Error),
}

impl Error {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Token { failure, .. } => failure.kind(),
            Error::Transport { .. } => ErrorKind::Transport,
            Error::Insecure => ErrorKind::Insecure,
            Error::BodyTooLarge { .. } => ErrorKind::Capacity,
            Error::Trust(_) | Error::Proxy | Error::Setup(_) => ErrorKind::Malformed,
            Error::Core(e) => e.kind(),
        }
    }

    /// The classified network failure (`stage` for the CLI's `"cause"`, `detail` for its
    /// `"detail"`), when this is one: a downstream call's, or a token fetch's.
    pub fn transport(&self) -> Option<TransportError> {
        match self {
            Error::Token { failure, .. } => failure.cause.transport(),
            Error::Transport { error, .. } => Some(*error),
            _ => None,
        }
    }

    pub(crate) fn from_reqwest(e: reqwest::Error) -> Error {
        Error::Transport {
            error: classify(&e),
            source: Some(e),
        }
    }

    pub(crate) fn from_send(e: SendError) -> Error {
        let error = e.classify();
        match e {
            SendError::Reqwest(e) => Error::Transport {
                error,
                source: Some(e),
            },
            SendError::HeadTooLarge => Error::Transport {
                error,
                source: None,
            },
        }
    }
}

impl From<TrustError> for Error {
    fn from(e: TrustError) -> Self {
        Error::Trust(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token {
                failure,
                retry_in: Some(d),
                ..
            } => write!(
                f,
                "no token: {failure}; next attempt in {} ms",
                d.as_millis()
            ),
            Error::Token { failure, .. } => write!(f, "no token: {failure}"),
            Error::Transport { error, .. } => fmt::Display::fmt(error, f),
            Error::Insecure => fmt::Display::fmt(&tessera_core::Error::Insecure, f),
            Error::BodyTooLarge { limit } => write!(f, "response body larger than {limit} bytes"),
            Error::Trust(e) => fmt::Display::fmt(e, f),
            Error::Proxy => f.write_str("invalid proxy URL"),
            Error::Setup(_) => f.write_str("the HTTP client could not be set up"),
            Error::Core(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Error::Token {
                source: Some(e), ..
            } => Some(e.as_ref()),
            Error::Token { failure, .. } => Some(failure.as_ref()),
            Error::Transport {
                source: Some(e), ..
            } => Some(e),
            Error::Trust(e) => Some(e),
            Error::Setup(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// The session's cause for a failed token fetch.
pub(crate) fn cause(e: &reqwest::Error) -> Cause {
    Cause::Transport(classify(e))
}

/// Classifies a reqwest error by where the exchange failed, with a short fixed description
/// (never text from the error itself, which may quote a URL or a server's words).
///
/// reqwest says whether it was connecting, timed out, or reading the body; the errors under
/// it say the rest: the name resolver's (`dns`), rustls' (`tls`, with the reason), hyper's
/// (`protocol`: a broken status line, oversized headers, bad framing) and the socket's
/// (`io` and `connect`, by kind), through the table tessera-std uses too.
pub fn classify(e: &reqwest::Error) -> TransportError {
    let mut unresolved = None;
    let mut tls = None;
    let mut hyper = None;
    let mut io = None;
    let mut next: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = next {
        if let Some(u) = err.downcast_ref::<Unresolved>() {
            unresolved = Some(*u);
        } else if let Some(r) = err.downcast_ref::<rustls::Error>() {
            tls = Some(rustls_detail(r));
        } else if let Some(h) = err.downcast_ref::<hyper::Error>() {
            hyper = hyper.or(Some(h));
        } else if let Some(i) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = rustls_in(i) {
                tls = Some(rustls_detail(r));
            }
            io = io.or(Some(i));
        }
        next = err.source();
    }
    let (stage, detail) = if let Some(u) = unresolved {
        match u {
            Unresolved::NotFound => (Stage::Dns, "host not found"),
            Unresolved::TimedOut => (Stage::Timeout, "name resolution timed out"),
        }
    } else if let Some(detail) = tls {
        (Stage::Tls, detail)
    } else if e.is_timeout() {
        let detail = if e.is_connect() {
            "connect timed out"
        } else if e.is_body() || e.is_decode() {
            "body not received in time"
        } else {
            "no response in time"
        };
        (Stage::Timeout, detail)
    } else if let Some(h) = hyper.filter(|h| h.is_parse() || h.is_parse_status()) {
        // hyper's own fixed words for a head over its limit (`message head is too
        // large`); its `is_parse_too_large` exists only with its server feature.
        let detail = if h.to_string().contains("too large") {
            "response header too large"
        } else {
            "bad status line or headers"
        };
        (Stage::Protocol, detail)
    } else if let Some(i) = io {
        use std::io::ErrorKind as K;
        match i.kind() {
            // hyper's body decoder: a chunk size that is not hex, a missing CRLF.
            K::InvalidData | K::InvalidInput if !e.is_connect() => {
                (Stage::Protocol, "bad body framing")
            }
            _ => {
                let t = classify_io(i);
                (t.stage, t.detail)
            }
        }
    } else if hyper.is_some_and(|h| h.is_incomplete_message()) {
        (Stage::Io, "connection closed early")
    } else if e.is_connect() {
        (Stage::Connect, "connection failed")
    } else if e.is_redirect() {
        (Stage::Protocol, "redirect not followed")
    } else if e.is_builder() || e.is_request() && hyper.is_some_and(|h| h.is_user()) {
        (Stage::Protocol, "invalid request")
    } else if e.is_body() || e.is_decode() {
        (Stage::Io, "body not read")
    } else {
        (Stage::Io, "network error")
    };
    TransportError::new(stage, detail)
}
