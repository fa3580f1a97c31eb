//! What an application gives the client for MbedTLS: the program's `Tls` and the roots.

use core::fmt;

use mbedtls_rs::TlsReference;

use super::roots::Roots;

/// No longer needed: the server name and the request are written in the token fetch's
/// and each call's own buffers ([`Resources`](crate::Resources),
/// [`CallBuffers`](crate::CallBuffers)), and MbedTLS's record buffers are on its heap. Kept
/// so [`Mbedtls::new`] and [`Client::call_mbedtls`](crate::Client::call_mbedtls) still
/// compile; use [`Mbedtls::with_roots`] and [`Client::call`](crate::Client::call).
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
/// (by reference) and the roots. Give it to [`Builder::mbedtls`](crate::Builder::mbedtls);
/// then [`Client::call`](crate::Client::call) speaks `https://` through it.
pub struct Mbedtls<'r> {
    pub(crate) tls: TlsReference<'r>,
    pub(crate) roots: Roots<'r>,
}

impl<'r> Mbedtls<'r> {
    /// Servers verified against `roots`, sessions made on `tls` (`Tls::reference()`).
    pub fn with_roots(tls: TlsReference<'r>, roots: Roots<'r>) -> Self {
        Mbedtls { tls, roots }
    }

    /// [`Mbedtls::with_roots`]; `buffers` is no longer used (see [`MbedtlsBuffers`]).
    pub fn new<const TX: usize>(
        tls: TlsReference<'r>,
        roots: Roots<'r>,
        buffers: &'r mut MbedtlsBuffers<TX>,
    ) -> Self {
        let _ = buffers;
        Self::with_roots(tls, roots)
    }
}

impl fmt::Debug for Mbedtls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mbedtls")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}
