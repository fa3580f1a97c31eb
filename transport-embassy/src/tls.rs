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

/// embedded-tls's crypto for one connection: a ChaCha8 stream seeded from the client's RNG,
/// and the chain checked against the application's CA.
struct Provider {
    rng: rand_chacha::ChaCha8Rng,
    verifier:
        embedded_tls::pki::CertVerifier<embedded_tls::Aes128GcmSha256, embedded_tls::NoClock, 4096>,
}

impl embedded_tls::CryptoProvider for Provider {
    type CipherSuite = embedded_tls::Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut self.rng
    }

    fn verifier(
        &mut self,
    ) -> Result<&mut impl embedded_tls::TlsVerifier<Self::CipherSuite>, embedded_tls::TlsError>
    {
        Ok(&mut self.verifier)
    }
}

/// A TLS 1.3 session over `socket` with `host` (SNI and the certificate's name), verified
/// against `conn`'s CA; the handshake's failures are classified (stage `tls`).
pub(crate) async fn open<'a, S>(
    socket: S,
    host: &str,
    conn: crate::http::TlsConn<'a>,
) -> Result<embedded_tls::TlsConnection<'a, S, embedded_tls::Aes128GcmSha256>, crate::error::Fault>
where
    S: embedded_io_async::Read + embedded_io_async::Write + 'a,
{
    use rand_core_06::SeedableRng;
    let config = embedded_tls::TlsConfig::new()
        .with_server_name(host)
        .with_ca(embedded_tls::Certificate::X509(conn.ca));
    let mut session = embedded_tls::TlsConnection::new(socket, conn.read, conn.write);
    let provider = Provider {
        rng: rand_chacha::ChaCha8Rng::seed_from_u64(conn.seed),
        verifier: embedded_tls::pki::CertVerifier::new(),
    };
    session
        .open(embedded_tls::TlsContext::new(&config, provider))
        .await
        .map_err(|e| {
            crate::error::Fault::Net(tessera_core::TransportError::new(
                tessera_core::Stage::Tls,
                crate::error::tls_detail(&e),
            ))
        })?;
    Ok(session)
}
