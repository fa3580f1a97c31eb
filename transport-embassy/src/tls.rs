//! HTTPS through embedded-tls (feature `tls`): the CA, the RNG and the record buffers.

/// embedded-tls's record buffers for one connection. 16,640 bytes each hold any record a
/// server may send (16 KiB of plaintext plus the record overhead).
pub struct TlsBuffers<const READ: usize = 16640, const WRITE: usize = 16640> {
    pub(crate) read: [u8; READ],
    pub(crate) write: [u8; WRITE],
}

impl<const READ: usize, const WRITE: usize> TlsBuffers<READ, WRITE> {
    /// Zeroed buffers.
    pub const fn new() -> Self {
        TlsBuffers {
            read: [0; READ],
            write: [0; WRITE],
        }
    }

    pub(crate) fn split(&mut self) -> (&mut [u8], &mut [u8]) {
        (&mut self.read, &mut self.write)
    }
}

impl<const READ: usize, const WRITE: usize> Default for TlsBuffers<READ, WRITE> {
    fn default() -> Self {
        Self::new()
    }
}

/// HTTPS for the client's token requests, and the trust and randomness its downstream
/// calls use (see the crate docs for what embedded-tls checks).
pub struct Tls<'r> {
    pub(crate) ca: &'r [u8],
    pub(crate) rng: &'r mut (dyn rand_core::RngCore + Send),
    pub(crate) buffers: (&'r mut [u8], &'r mut [u8]),
}

impl<'r> Tls<'r> {
    /// Verify servers against `ca` (one CA certificate, DER); draw each connection's seed
    /// from `rng` (the chip's TRNG); run token requests in `buffers`.
    pub fn new<const READ: usize, const WRITE: usize>(
        ca: &'r [u8],
        rng: &'r mut (dyn rand_core::RngCore + Send),
        buffers: &'r mut TlsBuffers<READ, WRITE>,
    ) -> Self {
        Tls {
            ca,
            rng,
            buffers: buffers.split(),
        }
    }
}
