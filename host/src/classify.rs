//! How the failures both host clients meet below their HTTP library (the socket's I/O
//! errors, rustls' errors) are classified into the core's [`TransportError`]: one table,
//! so a refused certificate reads the same through ureq and through reqwest.

use tessera_core::{Stage, TransportError};

/// Classifies a socket error by where the exchange failed: a TLS error inside it by
/// [`rustls_detail`], otherwise by its kind, with a short fixed description (never the
/// error's own text, which may quote a host or a server's words).
pub fn classify_io(io: &std::io::Error) -> TransportError {
    use std::io::ErrorKind as K;
    if let Some(r) = rustls_in(io) {
        return TransportError::new(Stage::Tls, rustls_detail(r));
    }
    let (stage, detail) = match io.kind() {
        K::ConnectionRefused => (Stage::Connect, "connection refused"),
        K::HostUnreachable => (Stage::Connect, "host unreachable"),
        K::NetworkUnreachable => (Stage::Connect, "network unreachable"),
        K::AddrNotAvailable => (Stage::Connect, "address not available"),
        K::TimedOut | K::WouldBlock => (Stage::Timeout, "timed out"),
        K::ConnectionReset => (Stage::Io, "connection reset"),
        K::ConnectionAborted => (Stage::Io, "connection aborted"),
        K::BrokenPipe => (Stage::Io, "connection closed while sending"),
        K::UnexpectedEof => (Stage::Io, "connection closed early"),
        K::NotConnected => (Stage::Io, "not connected"),
        _ => (Stage::Io, "read or write failed"),
    };
    TransportError::new(stage, detail)
}

/// The rustls error an I/O error carries, looking through I/O errors wrapped in I/O errors
/// (tokio-rustls' error inside hyper's connector error). `io::Error::source` skips the
/// error it wraps, so this reads `get_ref` instead.
pub fn rustls_in(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner = io.get_ref()?;
    for _ in 0..8 {
        if let Some(r) = inner.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
    None
}

/// A short fixed description of why rustls refused a peer (every one is stage `tls`).
pub fn rustls_detail(e: &rustls::Error) -> &'static str {
    use rustls::{CertificateError as C, Error as R};
    match e {
        R::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "certificate not trusted",
            C::BadSignature => "certificate signature invalid",
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "certificate not valid for host"
            }
            C::Expired | C::ExpiredContext { .. } => "certificate expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate not yet valid",
            C::Revoked => "certificate revoked",
            C::BadEncoding => "certificate malformed",
            _ => "certificate refused",
        },
        R::AlertReceived(_) => "alert from the server",
        R::InvalidMessage(_) | R::InappropriateMessage { .. } => "peer is not speaking tls",
        R::PeerIncompatible(_) => "no common tls version or cipher",
        R::NoCertificatesPresented => "no certificate presented",
        _ => "handshake failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_error_inside_io_is_tls() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let e = classify_io(&io);
        assert_eq!((e.stage, e.detail), (Stage::Tls, "certificate not trusted"));
        let wrapped = std::io::Error::other(io);
        assert_eq!(classify_io(&wrapped).detail, "certificate not trusted");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify_io(&refused).stage, Stage::Connect);
    }
}
