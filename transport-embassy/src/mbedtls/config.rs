//! What an application gives the client for MbedTLS: the program's `Tls`, the roots, a buffer.

use core::fmt;

use mbedtls_rs::TlsReference;

use super::roots::Roots;

/// The buffer the server name is written in for MbedTLS (which copies it), wiped after
/// every exchange. The request itself is written in the call's head buffer and sent in one
/// write (one or two TLS records); MbedTLS's record buffers are on its heap, not here.
pub struct MbedtlsBuffers<const TX: usize = 1024> {
    pub(crate) tx: [u8; TX],
}

impl<const TX: usize> MbedtlsBuffers<TX> {
    /// A zeroed buffer.
    pub const fn new() -> Self {
        MbedtlsBuffers { tx: [0; TX] }
    }
}

impl<const TX: usize> MbedtlsBuffers<TX> {
    /// Whether the buffer is all zero (nothing it held is left): for tests.
    #[doc(hidden)]
    pub fn is_wiped(&self) -> bool {
        self.tx.iter().all(|&b| b == 0)
    }
}

impl<const TX: usize> Default for MbedtlsBuffers<TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// HTTPS through MbedTLS for a [`Client`](crate::Client): the program's `mbedtls_rs::Tls`
/// (by reference), the roots, and the buffer token requests are written in. Give it to
/// [`Builder::mbedtls`](crate::Builder::mbedtls); calls use
/// [`Client::call_mbedtls`](crate::Client::call_mbedtls) with their own buffer.
pub struct Mbedtls<'r> {
    pub(crate) tls: TlsReference<'r>,
    pub(crate) roots: Roots<'r>,
    pub(crate) tx: &'r mut [u8],
}

impl<'r> Mbedtls<'r> {
    /// Servers verified against `roots`, sessions made on `tls` (`Tls::reference()`),
    /// token requests gathered in `buffers`.
    pub fn new<const TX: usize>(
        tls: TlsReference<'r>,
        roots: Roots<'r>,
        buffers: &'r mut MbedtlsBuffers<TX>,
    ) -> Self {
        Mbedtls {
            tls,
            roots,
            tx: &mut buffers.tx,
        }
    }
}

impl fmt::Debug for Mbedtls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbedtls")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}
