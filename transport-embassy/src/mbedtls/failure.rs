//! A failed handshake as a classified transport failure.

use mbedtls_rs::sys;
use mbedtls_rs::SessionError;
use tessera_core::{Stage, TransportError};

/// certificate verification flags MbedTLS left.
/// A failed `Session::new` or handshake as a classified failure; `flags` are the
pub(super) fn handshake_failure(e: SessionError, flags: u32) -> TransportError {
    use embedded_io::ErrorKind as K;
    match e {
        SessionError::Io(K::TimedOut) => {
            TransportError::new(Stage::Timeout, "TLS handshake timed out")
        }
        SessionError::Io(_) => {
            TransportError::new(Stage::Io, "connection failed during the TLS handshake")
        }
        SessionError::MbedTls(m) => {
            let detail = match m.code() {
                sys::MBEDTLS_ERR_X509_CERT_VERIFY_FAILED => verify_detail(flags),
                code => code_detail(code, cfg!(feature = "mbedtls-dates")),
            };
            TransportError::new(Stage::Tls, detail)
        }
    }
}

const NO_CLOCK: &str = "no wall clock: certificate dates cannot be checked";
pub(super) const OUT_OF_MEMORY: &str = "out of memory for TLS";

pub(super) fn code_detail(code: i32, dates: bool) -> &'static str {
    match code {
        // The date hook had no time (verify flags are then all ones). Without the hook it
        // is a chain longer than MbedTLS takes.
        sys::MBEDTLS_ERR_X509_FATAL_ERROR if dates => NO_CLOCK,
        sys::MBEDTLS_ERR_X509_FATAL_ERROR => "certificate chain too long",
        sys::MBEDTLS_ERR_SSL_ALLOC_FAILED | sys::MBEDTLS_ERR_X509_ALLOC_FAILED => OUT_OF_MEMORY,
        c if (-0x2FFF..=-0x2000).contains(&c) => "the server's certificate could not be parsed",
        sys::MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE => "the server refused the TLS handshake",
        sys::MBEDTLS_ERR_SSL_HANDSHAKE_FAILURE | sys::MBEDTLS_ERR_SSL_BAD_PROTOCOL_VERSION => {
            "no TLS version or cipher suite in common"
        }
        sys::MBEDTLS_ERR_SSL_BAD_CERTIFICATE => "the server's certificate could not be used",
        sys::MBEDTLS_ERR_SSL_CONN_EOF | sys::MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY => {
            "the server closed the connection during the TLS handshake"
        }
        sys::MBEDTLS_ERR_SSL_INVALID_RECORD
        | sys::MBEDTLS_ERR_SSL_DECODE_ERROR
        | sys::MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE => "malformed TLS message from the server",
        // A handshake message larger than the IN record buffer.
        sys::MBEDTLS_ERR_SSL_BAD_INPUT_DATA | sys::MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL => {
            "a TLS message did not fit the record buffer"
        }
        _ => "the TLS handshake failed",
    }
}

/// The verify flags as the one reason that matters most: trust first (an untrusted chain's
/// names and dates mean nothing), then the host, then the dates.
fn verify_detail(flags: u32) -> &'static str {
    const EXPIRED: u32 = sys::MBEDTLS_X509_BADCERT_EXPIRED;
    const FUTURE: u32 = sys::MBEDTLS_X509_BADCERT_FUTURE;
    if flags & (sys::MBEDTLS_X509_BADCERT_NOT_TRUSTED | sys::MBEDTLS_X509_BADCERT_MISSING) != 0 {
        "certificate not trusted"
    } else if flags & sys::MBEDTLS_X509_BADCERT_CN_MISMATCH != 0 {
        "certificate not valid for host"
    } else if flags & (EXPIRED | FUTURE) == EXPIRED | FUTURE {
        NO_CLOCK
    } else if flags & EXPIRED != 0 {
        "certificate expired"
    } else if flags & FUTURE != 0 {
        "certificate not yet valid"
    } else if flags
        & (sys::MBEDTLS_X509_BADCERT_KEY_USAGE
            | sys::MBEDTLS_X509_BADCERT_EXT_KEY_USAGE
            | sys::MBEDTLS_X509_BADCERT_NS_CERT_TYPE)
        != 0
    {
        "certificate not for TLS servers"
    } else if flags
        & (sys::MBEDTLS_X509_BADCERT_BAD_MD
            | sys::MBEDTLS_X509_BADCERT_BAD_PK
            | sys::MBEDTLS_X509_BADCERT_BAD_KEY)
        != 0
    {
        "certificate uses a refused algorithm or key size"
    } else {
        "certificate not trusted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_flags_name_the_first_reason() {
        assert_eq!(
            verify_detail(
                sys::MBEDTLS_X509_BADCERT_NOT_TRUSTED | sys::MBEDTLS_X509_BADCERT_CN_MISMATCH
            ),
            "certificate not trusted"
        );
        assert_eq!(verify_detail(u32::MAX), "certificate not trusted");
        assert_eq!(
            verify_detail(sys::MBEDTLS_X509_BADCERT_EXPIRED | sys::MBEDTLS_X509_BADCERT_FUTURE),
            NO_CLOCK
        );
        assert_eq!(
            verify_detail(sys::MBEDTLS_X509_BADCERT_EXPIRED),
            "certificate expired"
        );
    }
}
