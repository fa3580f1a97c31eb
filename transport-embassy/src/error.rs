//! What went wrong, classified by [`Stage`].

use core::fmt;

use tessera_core::{ErrorKind, Instant, Stage, TransportError};

/// What went wrong with a [`token`](crate::Client::token) or a
/// [`call`](crate::Client::call). Small and `Copy`; never holds a secret or server text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error {
    /// No token could be had. [`Client::failure`](crate::Client::failure) has the provider's
    /// words.
    Token {
        /// The kind of the last failure.
        kind: ErrorKind,
        /// When the session allows the next fetch (none for refused credentials).
        retry_at: Option<Instant>,
        /// Where the last fetch failed on the network, when it did.
        transport: Option<TransportError>,
    },
    /// A downstream call failed on the network (or timed out: stage `timeout`).
    Transport(TransportError),
    /// Refused before sending ([`tessera_core::Error::Insecure`]), or a buffer is too
    /// small: the error says which and how much it needed.
    Core(tessera_core::Error),
}

impl Error {
    /// The group callers act on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Token { kind, .. } => *kind,
            Error::Transport(_) => ErrorKind::Transport,
            Error::Core(e) => e.kind(),
        }
    }

    /// The classified network failure (a downstream call's, or the last token fetch's).
    pub fn transport(&self) -> Option<TransportError> {
        match self {
            Error::Token { transport, .. } => *transport,
            Error::Transport(e) => Some(*e),
            Error::Core(_) => None,
        }
    }

    /// Where on the network it failed: dns, connect, tls, timeout, protocol or io.
    pub fn stage(&self) -> Option<Stage> {
        self.transport().map(|t| t.stage)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Token {
                kind,
                transport: Some(t),
                ..
            } => write!(f, "no token: {kind}: {t}"),
            Error::Token { kind, .. } => write!(f, "no token: {kind}"),
            Error::Transport(e) => fmt::Display::fmt(e, f),
            Error::Core(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for Error {}

/// What one exchange on the wire could not do.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// The network failed, classified.
    Net(TransportError),
    /// The answer did not fit a buffer.
    Local(tessera_core::Error),
}

impl From<Fault> for Error {
    fn from(f: Fault) -> Self {
        match f {
            Fault::Net(e) => Error::Transport(e),
            Fault::Local(e) => Error::Core(e),
        }
    }
}

pub(crate) const TIMED_OUT: TransportError =
    TransportError::new(Stage::Timeout, "no answer within the timeout");

#[cfg(feature = "tls")]
pub(crate) fn tls_detail(e: &embedded_tls::TlsError) -> &'static str {
    use embedded_tls::TlsError as T;
    match e {
        T::InvalidCertificate | T::InvalidSignature | T::DecodeError => {
            "the server's certificate was not trusted"
        }
        T::Io(_) | T::IoError | T::ConnectionClosed => "connection failed during the handshake",
        _ => "the TLS handshake failed",
    }
}
