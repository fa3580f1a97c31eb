//! [`Error`], and how a ureq error is classified into the core's [`TransportError`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::session::{Cause, Failure};
use tessera_core::{ErrorKind, Stage, TransportError};
use tessera_host::classify::{classify_io, rustls_detail};
pub use tessera_host::TrustError;

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
        source: Option<Arc<ureq::Error>>,
    },
    /// A downstream call did not complete at the network level.
    Transport {
        /// The classified failure.
        error: TransportError,
        /// ureq's error.
        source: ureq::Error,
    },
    /// A downstream call's URL would carry the bearer token in plaintext off the machine
    /// (`http://` to a host that is not loopback, without
    /// [`allow_insecure_http`](tessera_core::session::Config::allow_insecure_http)), or is
    /// not `http(s)://`. Refused before any connection.
    Insecure,
    /// A downstream response was larger than [`Options::max_body`](crate::Options).
    BodyTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Trust roots could not be read: [`Trust::from_pem`](crate::Trust::from_pem).
    Trust(TrustError),
    /// A proxy URL that is not a proxy address: [`Proxy::url`](crate::Proxy::url).
    Proxy,
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
            Error::Trust(_) | Error::Proxy => ErrorKind::Malformed,
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

    pub(crate) fn from_ureq(e: ureq::Error) -> Error {
        Error::Transport {
            error: classify(&e),
            source: e,
        }
    }
}

impl From<TrustError> for Error {
    fn from(e: TrustError) -> Self {
        Error::Trust(e)
    }
}

impl From<tessera_host::ProxyError> for Error {
    fn from(_: tessera_host::ProxyError) -> Self {
        Error::Proxy
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
            Error::Core(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Token {
                source: Some(e), ..
            } => Some(e.as_ref()),
            Error::Token { failure, .. } => Some(failure.as_ref()),
            Error::Transport { source, .. } => Some(source),
            Error::Trust(e) => Some(e),
            _ => None,
        }
    }
}

/// The session's cause for a failed token fetch.
pub(crate) fn cause(e: &ureq::Error) -> Cause {
    Cause::Transport(classify(e))
}

/// Classifies a ureq error by where the exchange failed, with a short fixed description
/// (never text from the error itself, which may quote a URL or a server's words).
pub fn classify(e: &ureq::Error) -> TransportError {
    use ureq::Error as U;
    let (stage, detail) = match e {
        U::Timeout(t) => (Stage::Timeout, timeout_detail(*t)),
        U::HostNotFound => (Stage::Dns, "host not found"),
        U::Io(io) => return classify_io(io),
        U::Protocol(p) => (Stage::Protocol, protocol_detail(p)),
        U::LargeResponseHeader(..) => (Stage::Protocol, "response header too large"),
        U::RedirectFailed | U::TooManyRedirects => (Stage::Protocol, "redirect not followed"),
        U::BadUri(_) => (Stage::Protocol, "invalid url"),
        U::Http(_) => (Stage::Protocol, "invalid request"),
        U::StatusCode(_) => (Stage::Protocol, "error status"),
        U::BodyExceedsLimit(_) => (Stage::Protocol, "body larger than allowed"),
        U::RequireHttpsOnly(_) => (Stage::Protocol, "https required"),
        U::Tls(_) | U::TlsRequired => (Stage::Tls, "handshake failed"),
        U::Pem(_) => (Stage::Tls, "bad certificate file"),
        U::Rustls(r) => (Stage::Tls, rustls_detail(r)),
        U::InvalidProxyUrl => (Stage::Connect, "invalid proxy url"),
        U::ConnectProxyFailed(_) => (Stage::Connect, "proxy refused the tunnel"),
        U::ConnectionFailed => (Stage::Connect, "connection failed"),
        U::Other(inner) => match inner.downcast_ref::<std::io::Error>() {
            Some(io) => return classify_io(io),
            None => (Stage::Io, "connection failed"),
        },
        _ => (Stage::Io, "network error"),
    };
    TransportError::new(stage, detail)
}

fn timeout_detail(t: ureq::Timeout) -> &'static str {
    use ureq::Timeout as T;
    match t {
        T::Resolve => "name resolution timed out",
        T::Connect => "connect timed out",
        T::SendRequest | T::SendBody | T::PerWrite => "send timed out",
        T::RecvResponse | T::PerRead => "no response in time",
        T::RecvBody => "body not received in time",
        _ => "timed out",
    }
}

fn protocol_detail(e: &ureq_proto::Error) -> &'static str {
    use ureq_proto::Error as P;
    match e {
        P::ChunkLenNotAscii | P::ChunkLenNotANumber | P::ChunkExpectedCrLf => "bad chunked framing",
        P::BodyLargerThanContentLength | P::BodyContentAfterFinish => "body longer than its length",
        P::TooManyContentLengthHeaders | P::BadContentLengthHeader | P::ConflictingBodyHeaders => {
            "conflicting body length"
        }
        P::HttpParseTooManyHeaders => "too many response headers",
        P::BadHeader(_) => "bad response header",
        P::HttpParseFail(_) | P::UnsupportedVersion => "bad status line or headers",
        P::NoLocationHeader | P::BadLocationHeader(_) => "bad redirect",
        P::OutputOverflow => "request too large",
        _ => "http protocol error",
    }
}

/// What reading a response body can fail with.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The network failed mid-body.
    Network(ureq::Error),
}
